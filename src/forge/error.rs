//! [`PrError`], why a pull or merge request could not be opened, and its failure cause.

use crate::job::outcome::FailureCause;

/// Why the pull or merge request could not be opened. The texts are the seed's (section 3.7).
#[derive(Debug, thiserror::Error)]
pub enum PrError {
    /// `body` is already redacted and cut to its first 300 characters.
    #[error("Failed to open PR (HTTP {status}): {body}")]
    Github { status: u16, body: String },
    #[error("GitHub did not return a PR url")]
    GithubNoUrl,
    /// `body` is already redacted and cut to its first 300 characters.
    #[error("Failed to open merge request (HTTP {status}): {body}")]
    Gitlab { status: u16, body: String },
    #[error("GitLab did not return a merge request url")]
    GitlabNoUrl,
    /// The request never got an answer, after the retries; the text is redacted.
    #[error("{0}")]
    Network(String),
    /// The token holds bytes an HTTP header cannot carry; its value is never quoted.
    #[error("The git token cannot be sent in an HTTP header")]
    InvalidToken,
    #[error("Cannot open a GitLab merge request without the repo clone URL")]
    MissingCloneUrl,
    /// The clone URL itself is not quoted: it may carry credentials.
    #[error("Cannot open a GitLab merge request: the repo clone URL is not a valid URL")]
    InvalidCloneUrl,
    /// The job's token was cancelled (watchdog, shutdown) during a request or a wait.
    #[error("Cancelled while opening the pull request")]
    Cancelled,
}

impl PrError {
    pub fn failure_cause(&self) -> FailureCause {
        match self {
            PrError::Github { .. }
            | PrError::GithubNoUrl
            | PrError::Gitlab { .. }
            | PrError::GitlabNoUrl
            | PrError::Network(_)
            | PrError::InvalidToken => FailureCause::Api,
            PrError::MissingCloneUrl | PrError::InvalidCloneUrl => FailureCause::Agent,
            // Whoever cancelled knows why (a watchdog's cause, a shutdown) and reports that;
            // `agent` is what the seed reports for a plain abort reason.
            PrError::Cancelled => FailureCause::Agent,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self, PrError::Cancelled)
    }
}
