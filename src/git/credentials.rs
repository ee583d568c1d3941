//! The token's only way into libgit2 (the credential callback), cancellation through the
//! transfer callbacks, and the mapping of a failed network operation to a [`GitError`].
//!
//! Like cargo's `with_authentication`, the callback remembers what it already offered: libgit2
//! calls it again when the remote refuses a credential, and offering the same token again would
//! loop until the server gives up. The second ask is answered with an auth error instead.

use std::cell::{Cell, RefCell};

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, Remote, RemoteCallbacks, Repository};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{clean, GitError, GitRemote};
use crate::redact::tail_chars;

/// The user name sent with the token. GitHub requires it for installation tokens; GitLab
/// accepts any non-blank name with a personal access token.
pub const TOKEN_USERNAME: &str = "x-access-token";

/// What one network operation saw: whether the token was offered, whether the callback gave up
/// on authentication or on cancellation, and the ref updates a push had rejected.
pub(crate) struct NetState<'a> {
    remote: &'a GitRemote,
    cancel: &'a CancellationToken,
    token_offered: Cell<bool>,
    auth_refused: Cell<Option<String>>,
    cancelled: Cell<bool>,
    pub(crate) rejected: RefCell<Vec<(String, String)>>,
    /// The tail of what the remote printed (hook output explains a rejection).
    remote_text: RefCell<String>,
}

/// How much remote text is kept for an error message.
const REMOTE_TEXT_MAX_CHARS: usize = 1000;

impl<'a> NetState<'a> {
    pub(crate) fn new(remote: &'a GitRemote, cancel: &'a CancellationToken) -> Self {
        Self {
            remote,
            cancel,
            token_offered: Cell::new(false),
            auth_refused: Cell::new(None),
            cancelled: Cell::new(false),
            rejected: RefCell::new(Vec::new()),
            remote_text: RefCell::new(String::new()),
        }
    }

    /// The state for a further network operation of the same job. A new connection asks for
    /// the credential again, which must not count as the remote refusing it.
    pub(crate) fn renewed(&self) -> NetState<'a> {
        NetState::new(self.remote, self.cancel)
    }

    /// Fails fast when the job is already cancelled, before any connection is made.
    pub(crate) fn check_cancel(&self, op: &'static str) -> Result<(), GitError> {
        if self.cancel.is_cancelled() {
            return Err(GitError::Cancelled { op });
        }
        Ok(())
    }

    /// The callbacks every network operation installs: credentials and cancellation.
    pub(crate) fn callbacks<'s>(&'s self) -> RemoteCallbacks<'s> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, _user_from_url, allowed| self.credential(url, allowed));
        callbacks.transfer_progress(move |_progress| self.keep_going());
        callbacks.sideband_progress(move |text| {
            self.remember_remote_text(text);
            self.keep_going()
        });
        callbacks
    }

    /// Returning false from a progress callback makes libgit2 abort with `GIT_EUSER`.
    pub(crate) fn keep_going(&self) -> bool {
        if self.cancel.is_cancelled() {
            self.cancelled.set(true);
            return false;
        }
        true
    }

    fn remember_remote_text(&self, text: &[u8]) {
        let mut kept = self.remote_text.borrow_mut();
        kept.push_str(&String::from_utf8_lossy(text));
        let tail = tail_chars(&kept, REMOTE_TEXT_MAX_CHARS).to_owned();
        *kept = tail;
    }

    /// What the remote printed, one line per message, without progress noise.
    pub(crate) fn remote_text(&self) -> String {
        let kept = self.remote_text.borrow();
        kept.lines()
            .flat_map(|line| line.rsplit('\r').next())
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// An error to return from a callback that aborts because of cancellation.
    pub(crate) fn cancelled_error(&self) -> git2::Error {
        self.cancelled.set(true);
        git2::Error::new(ErrorCode::User, ErrorClass::Callback, "cancelled")
    }

    fn credential(&self, asking: &str, allowed: CredentialType) -> Result<Cred, git2::Error> {
        if self.cancel.is_cancelled() {
            return Err(self.cancelled_error());
        }
        // A redirect (or anything else that moved the connection) must not take the token to
        // another host: it goes only to the origin of the job's own clone URL.
        if !same_origin(asking, &self.remote.url) {
            return Err(self.refuse(&format!(
                "{} asks for credentials, but the job's token is only for {}",
                origin_text(asking),
                origin_text(&self.remote.url)
            )));
        }
        let Some(token) = self.remote.auth.secret() else {
            return Err(self.refuse("the remote asks for credentials and the job has no token"));
        };
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return Err(self.refuse(&format!(
                "the remote asks for a credential other than a token ({allowed:?})"
            )));
        }
        if self.token_offered.replace(true) {
            return Err(self.refuse("the remote refused the token"));
        }
        Cred::userpass_plaintext(TOKEN_USERNAME, token.expose())
    }

    fn refuse(&self, why: &str) -> git2::Error {
        self.auth_refused.set(Some(why.to_owned()));
        git2::Error::new(ErrorCode::Auth, ErrorClass::Http, why)
    }

    /// Maps a failed operation: cancellation first (the callbacks saw it, or libgit2 reports a
    /// user abort while the token is cancelled), then authentication, then a generic failure.
    pub(crate) fn error(&self, op: &'static str, err: git2::Error) -> GitError {
        if self.cancelled.get() || (self.cancel.is_cancelled() && err.code() == ErrorCode::User) {
            return GitError::Cancelled { op };
        }
        let message = clean(err.message(), self.remote.auth.secret());
        if let Some(why) = self.auth_refused.take() {
            return GitError::Auth {
                op,
                message: clean(&why, self.remote.auth.secret()),
            };
        }
        if err.code() == ErrorCode::Auth {
            return GitError::Auth { op, message };
        }
        GitError::Git { op, message }
    }
}

/// The remote every fetch and push of a checkout goes through: an anonymous remote on the
/// job's validated URL, never the checkout's `origin`, which the agent can point anywhere.
/// libgit2 still applies the checkout's `url.<base>.insteadOf` and `pushInsteadOf` to an
/// anonymous remote, so a URL the configuration rewrote is refused instead of contacted.
pub(crate) fn checkout_remote<'r>(
    repo: &'r Repository,
    remote: &GitRemote,
    op: &'static str,
) -> Result<Remote<'r>, GitError> {
    let anonymous = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| GitError::local(op, e))?;
    let fetch_url = anonymous.url_bytes() == remote.url.as_bytes();
    let push_url = anonymous
        .pushurl_bytes()
        .is_none_or(|push| push == remote.url.as_bytes());
    if !(fetch_url && push_url) {
        return Err(GitError::Git {
            op,
            message: "the checkout's git configuration rewrites the job's remote URL \
                      (url.<base>.insteadOf or pushInsteadOf): refusing to contact another remote"
                .to_owned(),
        });
    }
    Ok(anonymous)
}

/// Scheme, host and port of `url`, when it parses as a URL with a host.
fn origin_of(url: &str) -> Option<(String, String, Option<u16>)> {
    let url = Url::parse(url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    Some((url.scheme().to_owned(), host, url.port_or_known_default()))
}

fn same_origin(a: &str, b: &str) -> bool {
    match (origin_of(a), origin_of(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `scheme://host[:port]` of a URL for an error message (never its user info or path).
fn origin_text(url: &str) -> String {
    match origin_of(url) {
        Some((scheme, host, Some(port))) => format!("{scheme}://{host}:{port}"),
        Some((scheme, host, None)) => format!("{scheme}://{host}"),
        None => "a remote without a host".to_owned(),
    }
}

/// The URL libgit2 is given and `origin` stores: never a password, and for `https` the user
/// name `x-access-token` (seed-behaviour 4.0.4 item 1). Other schemes are left as they are.
pub(crate) fn remote_url(raw: &str) -> Result<String, GitError> {
    let lower = raw.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Ok(raw.to_owned());
    }
    let invalid = || GitError::Git {
        op: "url",
        message: "the clone URL is not a valid http(s) URL".to_owned(),
    };
    let mut url = Url::parse(raw).map_err(|_| invalid())?;
    url.set_password(None).map_err(|()| invalid())?;
    if url.scheme() == "https" {
        url.set_username(TOKEN_USERNAME).map_err(|()| invalid())?;
    }
    Ok(url.into())
}

/// libgit2's local transport (plain paths and `file://`) refuses a depth, so those clone full.
pub(crate) fn supports_shallow(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file://") {
        return false;
    }
    if lower.contains("://") {
        return true;
    }
    // scp-like `user@host:path` is ssh; anything else is a local path.
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::GitAuth;
    use crate::redact::Secret;

    const URL: &str = "https://github.com/o/r.git";

    fn remote(auth: GitAuth) -> GitRemote {
        GitRemote::new(URL, auth).unwrap()
    }

    #[test]
    fn https_urls_get_the_token_username_and_lose_any_password() {
        assert_eq!(
            remote_url("https://github.com/o/r.git").unwrap(),
            "https://x-access-token@github.com/o/r.git"
        );
        let cleaned = remote_url("https://someone:ghs_leaked@github.com/o/r.git").unwrap();
        assert_eq!(cleaned, "https://x-access-token@github.com/o/r.git");
    }

    #[test]
    fn http_file_and_path_urls_keep_their_shape_without_a_password() {
        assert_eq!(
            remote_url("http://127.0.0.1:8080/r.git").unwrap(),
            "http://127.0.0.1:8080/r.git"
        );
        assert_eq!(
            remote_url("http://u:p@127.0.0.1:8080/r.git").unwrap(),
            "http://u@127.0.0.1:8080/r.git"
        );
        assert_eq!(
            remote_url("file:///tmp/r.git").unwrap(),
            "file:///tmp/r.git"
        );
        assert_eq!(remote_url("/tmp/r.git").unwrap(), "/tmp/r.git");
    }

    #[test]
    fn only_network_transports_are_cloned_shallow() {
        assert!(supports_shallow("https://github.com/o/r.git"));
        assert!(supports_shallow("ssh://git@host/o/r.git"));
        assert!(supports_shallow("git@github.com:o/r.git"));
        assert!(!supports_shallow("file:///tmp/r.git"));
        assert!(!supports_shallow("/tmp/r.git"));
        assert!(!supports_shallow("relative/r.git"));
    }

    #[test]
    fn the_token_is_offered_once_then_refused_with_an_auth_error() {
        let remote = remote(GitAuth::token(Secret::new("tok-123456")));
        let cancel = CancellationToken::new();
        let state = NetState::new(&remote, &cancel);
        let first = state.credential(URL, CredentialType::USER_PASS_PLAINTEXT);
        assert!(first.is_ok());
        let second = state.credential(URL, CredentialType::USER_PASS_PLAINTEXT);
        let err = second.err().expect("second ask is refused");
        assert_eq!(err.code(), ErrorCode::Auth);
        let mapped = state.error("clone", err);
        assert!(mapped.is_auth(), "{mapped:?}");
    }

    #[test]
    fn no_token_is_an_auth_error_at_the_first_ask() {
        let remote = remote(GitAuth::none());
        let cancel = CancellationToken::new();
        let state = NetState::new(&remote, &cancel);
        let err = state
            .credential(URL, CredentialType::USER_PASS_PLAINTEXT)
            .err()
            .expect("refused");
        assert!(state.error("ls-remote", err).is_auth());
    }

    #[test]
    fn a_cancelled_token_stops_progress_and_maps_to_cancelled() {
        let remote = remote(GitAuth::none());
        let cancel = CancellationToken::new();
        let state = NetState::new(&remote, &cancel);
        assert!(state.keep_going());
        cancel.cancel();
        assert!(!state.keep_going());
        let err = git2::Error::new(ErrorCode::User, ErrorClass::Net, "aborted");
        assert!(state.error("clone", err).is_cancelled());
    }

    #[test]
    fn the_token_is_offered_only_to_the_scheme_host_and_port_of_the_clone_url() {
        let remote = remote(GitAuth::token(Secret::new("tok-123456")));
        let cancel = CancellationToken::new();
        for elsewhere in [
            "https://127.0.0.2/steal.git",
            "http://github.com/o/r.git",
            "https://github.com:8443/o/r.git",
            "https://github.com.evil.example/o/r.git",
            "not a url",
        ] {
            let state = NetState::new(&remote, &cancel);
            let err = state
                .credential(elsewhere, CredentialType::USER_PASS_PLAINTEXT)
                .err()
                .unwrap_or_else(|| panic!("{elsewhere} got the token"));
            let mapped = state.error("push", err);
            assert!(mapped.is_auth(), "{mapped:?}");
            assert!(!mapped.to_string().contains("tok-123456"), "{mapped}");
        }
        // Same origin, other spellings: user info, case, explicit default port.
        for same in [
            "https://x-access-token@github.com/o/r.git",
            "https://GitHub.com:443/o/other.git",
        ] {
            let state = NetState::new(&remote, &cancel);
            assert!(
                state
                    .credential(same, CredentialType::USER_PASS_PLAINTEXT)
                    .is_ok(),
                "{same}"
            );
        }
    }

    #[test]
    fn a_checkout_whose_config_rewrites_the_url_gets_no_remote() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(tmp.path()).unwrap();
        let remote = remote(GitAuth::none());
        assert!(checkout_remote(&repo, &remote, "push").is_ok());
        let mut config = repo.config().unwrap();
        config
            .set_str(
                "url.http://127.0.0.2:9/.pushInsteadOf",
                "https://x-access-token@github.com/",
            )
            .unwrap();
        let err = checkout_remote(&repo, &remote, "push").err().unwrap();
        assert!(err.to_string().contains("insteadOf"), "{err}");
        config
            .remove("url.http://127.0.0.2:9/.pushInsteadOf")
            .unwrap();
        config
            .set_str("url.http://127.0.0.2:9/.insteadOf", "https://")
            .unwrap();
        assert!(checkout_remote(&repo, &remote, "fetch").is_err());
    }
}
