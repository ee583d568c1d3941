//! The HTTP side of a repair call: the client, the POST with retries on transient answers
//! (seed 5.6 step 6: 429, 5xx and network errors; `Retry-After` or a doubling backoff with
//! jitter), and bounded reads of the answer.

use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{redirect, Client, Response};
use serde_json::Value;

use super::error::RepairError;
use crate::http_retry::{error_chain, is_transient, Failed};
use crate::redact::{head_chars, Redactor};

/// How much of a refusal's body the error quotes.
const DETAIL_CHARS: usize = 300;
/// An answer longer than this is refused rather than buffered: the endpoint is outside input.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
const NETWORK_FALLBACK: &str = "repair request failed after retries";

/// The retry and time limits of one repair call; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct RepairLimits {
    pub attempts: usize,
    /// First backoff, doubled per retry up to `max_backoff`.
    pub base: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
    /// The whole call, every attempt and wait included: a hung endpoint cannot hold the job.
    pub timeout: Duration,
}

impl RepairLimits {
    /// The seed's retry (3 attempts, 500 ms doubling up to 8 s, `Retry-After` up to 8 s), and
    /// five minutes for the call: a long document at a slow model's pace, no more.
    pub const SEED: RepairLimits = RepairLimits {
        attempts: 3,
        base: Duration::from_millis(500),
        max_backoff: Duration::from_millis(8000),
        max_retry_after: Duration::from_millis(8000),
        timeout: Duration::from_secs(300),
    };
}

/// The client for repair calls: no overall request timeout (the call has its own bound) and no
/// redirects, which would carry the token's header to wherever the endpoint points.
pub fn repair_client() -> Client {
    Client::builder()
        .user_agent("executor-harness")
        .connect_timeout(Duration::from_secs(10))
        .redirect(redirect::Policy::none())
        .build()
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "HTTP client settings refused, using the defaults");
            Client::new()
        })
}

/// One repair call's HTTP: the client, its limits, and the redactor that knows the token.
pub(super) struct Http<'a> {
    pub(super) client: &'a Client,
    pub(super) limits: &'a RepairLimits,
    pub(super) redactor: &'a Redactor,
}

impl Http<'_> {
    /// POSTs `body` with retries on 429, 5xx and network errors (seed 5.6 step 6). After the
    /// last attempt a transient answer is returned like any other, for the caller to quote.
    pub(super) async fn post(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: &Value,
    ) -> Result<Response, RepairError> {
        let limits = self.limits;
        let attempt = || async {
            let sent = self
                .client
                .post(url)
                .headers(headers.clone())
                .json(body)
                .send()
                .await;
            match sent {
                Ok(resp) if is_transient(resp.status()) => Err(Failed::Status(resp)),
                Ok(resp) => Ok(resp),
                Err(err) => Err(Failed::Network(err)),
            }
        };
        let backoff = ExponentialBuilder::new()
            .with_min_delay(limits.base)
            .with_factor(2.0)
            .with_max_delay(limits.max_backoff)
            .with_max_times(limits.attempts.saturating_sub(1));
        let mut attempt_no = 0u32;
        let outcome = attempt
            .retry(backoff)
            .when(Failed::is_retryable)
            .adjust(|failed, next| next.map(|b| delay(limits, failed, b, SystemTime::now())))
            .notify(|failed, wait| {
                attempt_no += 1;
                let status = match failed {
                    Failed::Status(resp) => resp.status().as_u16().to_string(),
                    Failed::Network(err) => self.redactor.redact(&error_chain(err)),
                };
                tracing::warn!(
                    status = %status,
                    attempt = attempt_no,
                    wait_ms = wait.as_millis() as u64,
                    "structured-output: repair upstream transient failure \u{2014} backing off"
                );
            })
            .await;
        match outcome {
            Ok(resp) | Err(Failed::Status(resp)) => Ok(resp),
            Err(Failed::Network(err)) => {
                let message = error_chain(&err);
                Err(RepairError::Network(if message.is_empty() {
                    NETWORK_FALLBACK.to_owned()
                } else {
                    self.redactor.redact(&message)
                }))
            }
        }
    }

    /// A success's JSON; a body that is not JSON simply holds no repair.
    pub(super) async fn answer(&self, resp: Response) -> Result<Value, RepairError> {
        let bytes = read_capped(resp).await.map_err(|e| self.network(e))?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The start of a refusal's body, redacted before it is cut so no token leaks in part.
    pub(super) async fn detail(&self, resp: Response) -> String {
        let bytes = read_capped(resp).await.unwrap_or_default();
        let text = self.redactor.redact(&String::from_utf8_lossy(&bytes));
        head_chars(text.trim(), DETAIL_CHARS).to_owned()
    }

    fn network(&self, err: ReadError) -> RepairError {
        match err {
            ReadError::TooLarge => RepairError::TooLarge(MAX_ANSWER_BYTES),
            ReadError::Http(e) => RepairError::Network(self.redactor.redact(&error_chain(&e))),
        }
    }
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// The body, refused past [`MAX_ANSWER_BYTES`].
async fn read_capped(mut resp: Response) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The wait before the next attempt (see [`Failed::delay`]).
fn delay(limits: &RepairLimits, failed: &Failed, backoff: Duration, now: SystemTime) -> Duration {
    failed.delay(backoff, limits.max_retry_after, now)
}

pub(super) fn sensitive(value: &str) -> Result<HeaderValue, RepairError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| RepairError::InvalidToken)?;
    value.set_sensitive(true);
    Ok(value)
}
