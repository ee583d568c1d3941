//! The fix for the git failures an operator can act on (seed-later 4.1): a refused credential,
//! a repository that is gone or out of the credential's sight, a rate limit, a credential
//! without write access. The failure's own text stays first; the fix is a line of its own.

use std::sync::LazyLock;

use regex::Regex;

use super::GitError;

pub const RATE_LIMITED: &str = "The git host rate-limited this run (a primary/secondary rate limit or abuse-detection trip). This is usually transient — wait a few minutes and retry. If it persists, reduce the number of concurrent runs against this host.";
pub const NOT_FOUND: &str = "The repository could not be found or is not visible to the credential used for this run. It may have been deleted, renamed, or made private, or the token (the job's ghToken) no longer has access to it. Confirm the repository still exists and that the token can see it, then retry.";
pub const AUTH_REFUSED: &str = "Git authentication was rejected — the credential this run used was refused. The token (the job's ghToken) is most likely expired, rotated, revoked, or no longer installed on this repository. Issue a fresh token with access to the repository, then retry.";
pub const NO_WRITE: &str = "Git authenticated but the credential lacks WRITE access to push to this repository. Grant the token write permission on the repository — and, if the target branch is protected, the permission its branch-protection rule requires — then retry.";

static RATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)rate limit|secondary rate|abuse detection|status code: 429|returned error: 429",
    )
    .expect("static regex")
});
static NOT_FOUND_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)repository not found|repository '[^']*' not found|remote: not found|returned error: 404|status code: 404|could not read from remote repository|could not find repository|failed to resolve path|does not appear to be a git repository")
        .expect("static regex")
});
static AUTH_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)authentication failed|invalid username or password|could not read username|could not read password|terminal prompts disabled|support for password authentication was removed|returned error: 401|status code: 401|http basic: access denied|too many redirects or authentication replays")
        .expect("static regex")
});
static WRITE_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)permission to \S+ denied|remote: permission|protected branch|pre-receive hook declined|returned error: 403|status code: 403|http 403")
        .expect("static regex")
});

/// Whether `text` (a git or libgit2 message) says the credential was refused or could not be
/// given.
pub(crate) fn says_auth_failed(text: &str) -> bool {
    AUTH_TEXT.is_match(text)
}

/// The fix for `text`, the first that applies: rate limit, not found (unless the text is an
/// authentication failure), authentication, write access.
pub fn describe_git_failure(text: &str) -> Option<&'static str> {
    if RATE.is_match(text) {
        Some(RATE_LIMITED)
    } else if NOT_FOUND_TEXT.is_match(text) && !AUTH_TEXT.is_match(text) {
        Some(NOT_FOUND)
    } else if AUTH_TEXT.is_match(text) {
        Some(AUTH_REFUSED)
    } else if WRITE_TEXT.is_match(text) {
        Some(NO_WRITE)
    } else {
        None
    }
}

impl GitError {
    /// The fix an operator can apply, when this failure has a known one.
    pub fn remedy(&self) -> Option<&'static str> {
        match self {
            GitError::Auth { message, .. } => {
                Some(describe_git_failure(message).unwrap_or(AUTH_REFUSED))
            }
            GitError::Rejected { reason, .. } => describe_git_failure(reason),
            GitError::Git { message, .. } => describe_git_failure(message),
            GitError::Cancelled { .. }
            | GitError::Stalled { .. }
            | GitError::Io { .. }
            | GitError::TooLarge { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_class_gets_its_fix_and_the_first_rule_wins() {
        let fix = describe_git_failure;
        assert_eq!(fix("unexpected http status code: 404"), Some(NOT_FOUND));
        assert_eq!(
            fix("failed to resolve path '/srv/gone.git'"),
            Some(NOT_FOUND)
        );
        assert_eq!(
            fix("fatal: repository 'https://h/o/gone.git/' not found"),
            Some(NOT_FOUND),
            "the git CLI's words"
        );
        assert_eq!(
            fix("Repository not found. Authentication failed for 'https://h/r'"),
            Some(AUTH_REFUSED),
            "an auth failure that also says not found is an auth failure"
        );
        assert_eq!(
            fix("remote: API rate limit exceeded; repository not found"),
            Some(RATE_LIMITED)
        );
        assert_eq!(fix("unexpected http status code: 403"), Some(NO_WRITE));
        assert_eq!(fix("pre-receive hook declined"), Some(NO_WRITE));
        assert_eq!(fix("the remote hung up"), None);
    }

    #[test]
    fn an_auth_error_always_has_the_credential_fix() {
        let e = GitError::Auth {
            op: "clone",
            message: "remote authentication required but no callback set".into(),
        };
        assert_eq!(e.remedy(), Some(AUTH_REFUSED));
    }
}
