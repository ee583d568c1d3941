//! [`PrError`], why a pull or merge request could not be opened, and its failure cause.

use crate::job::outcome::FailureCause;

const GITHUB_SCOPE: &str = "the token needs the \"Pull requests: write\" permission (or, as a classic token, the `repo` scope) and write access to the repository";
const GITLAB_SCOPE: &str =
    "the GitLab token needs the `api` scope and Developer+ access to the project";

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

    /// The fix for a refusal of the code host (seed-later 4.2), shown under the stable first
    /// line. "Already exists" and "no commits between" never get here.
    pub fn remedy(&self) -> Option<String> {
        let (status, noun, scope) = match self {
            PrError::Github { status, .. } => (*status, "pull request", GITHUB_SCOPE),
            PrError::Gitlab { status, .. } => (*status, "merge request", GITLAB_SCOPE),
            PrError::GithubNoUrl
            | PrError::GitlabNoUrl
            | PrError::Network(_)
            | PrError::InvalidToken
            | PrError::MissingCloneUrl
            | PrError::InvalidCloneUrl
            | PrError::Cancelled => return None,
        };
        Some(match status {
            401 => format!("The credential was rejected while opening the {noun}. The token (the job's ghToken) is most likely expired, rotated, or revoked — issue a fresh one, then retry."),
            403 => format!("The credential lacks permission to open a {noun}: {scope}. Grant it, then retry."),
            404 => format!("The repository could not be found while opening the {noun} — it may have been deleted, renamed, or made private, or the credential can no longer see it. Confirm the repo and the credential's access to it, then retry."),
            400 | 422 => format!("GitHub/GitLab rejected the {noun} as invalid. Usually the head or base branch does not exist, the two branches are identical (nothing to compare), or the base branch is protected against direct PRs. Check the branch names and that the head has commits ahead of the base, then retry."),
            _ => return None,
        })
    }
}
