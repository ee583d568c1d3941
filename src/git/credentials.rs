//! The token's only way into libgit2 (the credential callback), cancellation through the
//! transfer callbacks, and the mapping of a failed network operation to a [`GitError`].
//!
//! Like cargo's `with_authentication`, the callback remembers what it already offered: libgit2
//! calls it again when the remote refuses a credential, and offering the same token again would
//! loop until the server gives up. The second ask is answered with an auth error instead.

use std::cell::{Cell, RefCell};

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{clean, GitAuth, GitError};
use crate::redact::tail_chars;

/// The user name sent with the token. GitHub requires it for installation tokens; GitLab
/// accepts any non-blank name with a personal access token.
pub const TOKEN_USERNAME: &str = "x-access-token";

/// What one network operation saw: whether the token was offered, whether the callback gave up
/// on authentication or on cancellation, and the ref updates a push had rejected.
pub(crate) struct NetState<'a> {
    auth: &'a GitAuth,
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
    pub(crate) fn new(auth: &'a GitAuth, cancel: &'a CancellationToken) -> Self {
        Self {
            auth,
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
        NetState::new(self.auth, self.cancel)
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
        callbacks.credentials(move |_url, _user_from_url, allowed| self.credential(allowed));
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

    fn credential(&self, allowed: CredentialType) -> Result<Cred, git2::Error> {
        if self.cancel.is_cancelled() {
            return Err(self.cancelled_error());
        }
        let Some(token) = self.auth.secret() else {
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
        let message = clean(err.message(), self.auth.secret());
        if let Some(why) = self.auth_refused.take() {
            return GitError::Auth {
                op,
                message: clean(&why, self.auth.secret()),
            };
        }
        if err.code() == ErrorCode::Auth {
            return GitError::Auth { op, message };
        }
        GitError::Git { op, message }
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
    use crate::redact::Secret;

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
        let auth = GitAuth::token(Secret::new("tok-123456"));
        let cancel = CancellationToken::new();
        let state = NetState::new(&auth, &cancel);
        let first = state.credential(CredentialType::USER_PASS_PLAINTEXT);
        assert!(first.is_ok());
        let second = state.credential(CredentialType::USER_PASS_PLAINTEXT);
        let err = second.err().expect("second ask is refused");
        assert_eq!(err.code(), ErrorCode::Auth);
        let mapped = state.error("clone", err);
        assert!(mapped.is_auth(), "{mapped:?}");
    }

    #[test]
    fn no_token_is_an_auth_error_at_the_first_ask() {
        let auth = GitAuth::none();
        let cancel = CancellationToken::new();
        let state = NetState::new(&auth, &cancel);
        let err = state
            .credential(CredentialType::USER_PASS_PLAINTEXT)
            .err()
            .expect("refused");
        assert!(state.error("ls-remote", err).is_auth());
    }

    #[test]
    fn a_cancelled_token_stops_progress_and_maps_to_cancelled() {
        let auth = GitAuth::none();
        let cancel = CancellationToken::new();
        let state = NetState::new(&auth, &cancel);
        assert!(state.keep_going());
        cancel.cancel();
        assert!(!state.keep_going());
        let err = git2::Error::new(ErrorCode::User, ErrorClass::Net, "aborted");
        assert!(state.error("clone", err).is_cancelled());
    }
}
