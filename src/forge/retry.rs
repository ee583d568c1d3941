//! The retry policy for transient answers (seed `withApiRetry`): 5xx, 429 and network errors,
//! with a doubling backoff plus jitter, or the wait the answer's `Retry-After` asks for.

use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};

use reqwest::{RequestBuilder, Response};

use super::PrError;
use crate::http_retry::{error_chain, is_transient, Failed};
use crate::redact::Redactor;

const NETWORK_FALLBACK: &str = "API request failed after retries";

/// Retry limits for transient answers (seed `withApiRetry`); tests shorten the base.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
    pub(super) attempts: usize,
    /// First backoff; doubled per retry up to `max_backoff`.
    pub(super) base: Duration,
    pub(super) max_backoff: Duration,
    pub(super) max_retry_after: Duration,
}

impl RetryPolicy {
    pub(super) const SEED: RetryPolicy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(500),
        max_backoff: Duration::from_millis(4000),
        max_retry_after: Duration::from_millis(8000),
    };

    pub(super) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_factor(2.0)
            .with_max_delay(self.max_backoff)
            .with_max_times(self.attempts.saturating_sub(1))
    }

    /// The wait before the next attempt: the answer's `Retry-After` when it asks for one,
    /// else the backoff plus up to 25 % jitter.
    pub(super) fn delay(&self, failed: &Failed, backoff: Duration, now: SystemTime) -> Duration {
        failed.delay(backoff, self.max_retry_after, now)
    }
}

/// Sends with retries on 5xx, 429 and network errors. After the last attempt a transient
/// answer is returned like any other, so the caller quotes its status.
pub(super) async fn send_with_retry(
    make: impl Fn() -> RequestBuilder,
    policy: &RetryPolicy,
    redactor: &Redactor,
) -> Result<Response, PrError> {
    let make = &make;
    let attempt = move || async move {
        match make().send().await {
            Ok(resp) if is_transient(resp.status()) => Err(Failed::Status(resp)),
            Ok(resp) => Ok(resp),
            Err(err) => Err(Failed::Network(err)),
        }
    };
    let mut retry = 0u32;
    let outcome = attempt
        .retry(policy.backoff())
        .when(Failed::is_retryable)
        .adjust(|failed, next| next.map(|backoff| policy.delay(failed, backoff, SystemTime::now())))
        .notify(|failed, wait| {
            retry += 1;
            match failed {
                Failed::Status(resp) => tracing::warn!(
                    retry,
                    status = resp.status().as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    "transient API answer, retrying"
                ),
                Failed::Network(err) => tracing::warn!(
                    retry,
                    error = %redactor.redact(&error_chain(err)),
                    wait_ms = wait.as_millis() as u64,
                    "API request failed, retrying"
                ),
            }
        })
        .await;
    match outcome {
        Ok(resp) | Err(Failed::Status(resp)) => Ok(resp),
        Err(Failed::Network(err)) => {
            let message = error_chain(&err);
            let message = if message.is_empty() {
                NETWORK_FALLBACK.to_owned()
            } else {
                redactor.redact(&message)
            };
            Err(PrError::Network(message))
        }
    }
}
