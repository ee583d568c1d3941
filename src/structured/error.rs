//! [`RepairError`]: why a structured-repair call produced no text. Every text is redacted.

use std::time::Duration;

/// Why a repair call produced no text. Every text is redacted.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("repair call failed: HTTP {status}{}", dash(.detail))]
    Proxy { status: u16, detail: String },
    #[error("subscription repair call failed: HTTP {status}{}", dash(.detail))]
    Subscription { status: u16, detail: String },
    /// No answer after the retries.
    #[error("{0}")]
    Network(String),
    #[error("the repair answer is over {0} bytes")]
    TooLarge(usize),
    #[error("structured repair timed out after {0:?}")]
    TimedOut(Duration),
    #[error("structured repair aborted: the job was stopped")]
    Cancelled,
    /// The token holds bytes an HTTP header cannot carry; its value is never quoted.
    #[error("the repair token cannot be sent in an HTTP header")]
    InvalidToken,
}

fn dash(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" \u{2014} {detail}")
    }
}
