//! The pieces of an HTTP call with retries that the code-host client ([`crate::forge`]) and the
//! model repair client ([`crate::structured`]) share: what counts as transient, how long to
//! wait (`Retry-After` honoured, capped; else backoff with jitter), and an error's full text.

use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::{Response, StatusCode};

/// An attempt worth retrying; the last one is handed back as is.
pub enum Failed {
    Status(Response),
    Network(reqwest::Error),
}

impl Failed {
    pub fn is_retryable(&self) -> bool {
        match self {
            Failed::Status(_) => true,
            // A request that cannot even be built (a malformed base URL) fails the same way on
            // every attempt.
            Failed::Network(err) => !err.is_builder(),
        }
    }

    /// The wait before the next attempt: the answer's `Retry-After` (capped at `cap`) when it
    /// asks for one, else `backoff` plus up to 25 % jitter.
    pub fn delay(&self, backoff: Duration, cap: Duration, now: SystemTime) -> Duration {
        let asked = match self {
            Failed::Status(resp) => resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, now, cap)),
            Failed::Network(_) => None,
        };
        asked.unwrap_or_else(|| backoff + backoff.mul_f64(0.25 * fastrand::f64()))
    }
}

/// 5xx and 429 are worth another attempt; other answers are final.
pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` in delay-seconds or HTTP-date form, capped; zero or past values are ignored.
pub fn retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if !(secs.is_finite() && secs > 0.0) {
            return None;
        }
        return Duration::try_from_secs_f64(secs.min(cap.as_secs_f64())).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).ok()?;
    (!wait.is_zero()).then(|| wait.min(cap))
}

/// An error with its sources, since reqwest's own text omits the cause ("connection refused").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
