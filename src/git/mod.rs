//! Git work for a job.
//!
//! [`Checkout`] is the job's working copy as one value; its async methods run the blocking
//! git2 functions below on the blocking pool with the per-step timeout ([`runner`]), and
//! [`checkpoint`] pushes committed work while the agent runs. The blocking functions:
//!
//! - [`credentials`]: the token, the credential callback that cannot loop and offers the token
//!   only to the clone URL's origin, cancellation in the transfer callbacks, the one remote every
//!   fetch and push goes through, and the mapping of libgit2 failures to [`GitError`].
//! - [`clone`]: the resume probe, single-branch clones, the work branch, the identity and the
//!   resume refresh from the base branch.
//! - [`cli_clone`]: the clones of `file://`, `http://` and `https://` remotes, run with the git
//!   CLI in a child process; [`askpass`]: how the token reaches that child.
//! - [`object_cache`]: the per-repository mirrors fresh checkouts are copied from after every
//!   job's own fetch into them, and [`object_cache_sweep`], which keeps them within their age
//!   and size bounds.
//! - [`push`]: non-forced pushes that count only when every ref update was accepted.
//! - [`merge`]: conflict resolution's merge of the base branch into the pull request's branch
//!   (conflicts left for the agent as `git merge` leaves them) and its completion with two
//!   parents once nothing is unmerged.
//! - [`markers`]: the capped `git diff` of the conflicted files for the agent's prompt, and the
//!   check that no conflict marker the agent left reaches the merge commit.
//! - [`bootstrap`]: bootstrap's no-op guard, the fresh single-commit history built from the
//!   work tree (symlinks never followed, the size limit and `.gitignore` honoured) and its
//!   force push to the target repository.
//! - [`completion`]: completion refs (`refs/harness/done/<jobId>`): naming, the pre-start probe,
//!   reading a stored result without a work tree, and pushing one after the final push.
//! - [`prune`]: deleting completion refs older than the configured age from a remote.
//! - [`artifacts`]: what a dependency install leaves: its new entries excluded at their own
//!   place, the tracked files it rewrote put back.
//! - [`remedy`]: the fix for the git failures an operator can act on.
//! - [`commit`]: the safety-net commit of tracked edits, the untracked-leftover listing and
//!   `.git/info/exclude`.
//! - [`warm`]: warm checkouts reused across jobs: swept back to a clone's state (config,
//!   hooks, untracked files; dependency caches kept), fetched and force-switched to the branch.
//! - [`restamp`]: the index's stat data brought up to date after a checkout changed hands, so
//!   the agent's first git command does not re-read the whole work tree.
//! - [`local_url`]: the `file://` remotes refused, those inside the worker's work directory.
//! - [`limits`]: the per-file size limit, checked on the work tree before the safety-net commit
//!   and on new commits before any push, from metadata only.
//!
//! The token reaches libgit2 only through the credential callback, and the git CLI only through
//! its askpass program and the environment of that one git process: remote URLs carry at most
//! the user name `x-access-token`, so neither `.git/config`, an argv nor any error text can
//! hold it.

mod artifacts;
mod askpass;
mod bootstrap;
mod checkout;
mod checkout_clone;
mod checkpoint;
mod cli_clone;
mod clone;
mod commit;
mod completion;
mod credentials;
mod limits;
mod local_url;
mod markers;
mod merge;
mod object_cache;
mod object_cache_sweep;
mod prune;
mod push;
mod reclaim;
mod remedy;
mod restamp;
mod runner;
#[cfg(test)]
mod test_git;
mod warm;

use std::fmt;
use std::path::Path;

use crate::redact::{Redactor, Secret};

pub use artifacts::{set_aside, tree_state, TreeState};
pub use bootstrap::{changed_since, force_push_branch, fresh_history, holds_any_file};
pub use checkout::Checkout;
pub use checkpoint::{checkpoint_loop, Checkpoints};
pub use clone::{
    clone_branch, create_branch, current_branch, head_oid, matches_base,
    refresh_from_base_if_clean, remote_branch_exists, set_identity, Refresh,
};
pub use commit::{commit_tracked_edits, exclude_path, untracked_files};
pub use completion::{completion_ref, probe_remote, push_completion, read_completion, RemoteProbe};
pub use credentials::TOKEN_USERNAME;
pub use limits::{check_new_blobs, FileLimit};
pub use local_url::refuse_local_url_under;
pub use markers::{conflict_diff, CONFLICT_DIFF_MAX_CHARS};
pub use merge::{complete_merge, merge_base_branch, BaseMerge, ConflictedMerge, MergeOutcome};
pub use object_cache::ObjectCache;
pub use prune::prune_completion_refs;
pub use push::push_branch;
pub use remedy::describe_git_failure;
pub use restamp::restamp_index;
pub use runner::Runner;
pub use warm::{prepare_warm, WarmTarget};

/// A failed git operation. Every message has been through the redactor, so none holds a token.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The remote refused our credential, or asked for one we do not have.
    #[error("git {op}: authentication failed: {message}")]
    Auth { op: &'static str, message: String },
    /// The job's cancellation token fired before or during the operation.
    #[error("git {op}: cancelled")]
    Cancelled { op: &'static str },
    /// The remote (or libgit2's own fast-forward check) refused a ref update of a push.
    #[error("git push: {refname} was rejected: {reason}")]
    Rejected { refname: String, reason: String },
    /// The operation ran past the git timeout and was stopped (seed-later 4.1's stall).
    #[error(
        "git {op} timed out after {after} with no end in sight — the operation stalled. Likely a \
         very large clone or push, or a slow or blocked network."
    )]
    Stalled { op: &'static str, after: String },
    /// Any other libgit2 failure, named by the operation that hit it.
    #[error("git {op}: {message}")]
    Git { op: &'static str, message: String },
    /// A file under `.git` (the exclude file) could not be written.
    #[error("git {op}: {message}")]
    Io { op: &'static str, message: String },
    /// The work holds a file over `git.max_file_bytes`: refused before its bytes are read, so
    /// the worker's memory never follows the size of what an agent writes.
    #[error(
        "git {op}: '{path}' is {size} bytes, over the {limit}-byte limit for one file \
         (git.max_file_bytes); remove it from the work or keep it out of git"
    )]
    TooLarge {
        op: &'static str,
        path: String,
        size: u64,
        limit: u64,
    },
}

impl GitError {
    /// True when the operation stopped because the job was cancelled, not because git failed.
    pub fn is_cancelled(&self) -> bool {
        match self {
            GitError::Cancelled { .. } => true,
            GitError::Auth { .. }
            | GitError::Stalled { .. }
            | GitError::Rejected { .. }
            | GitError::Git { .. }
            | GitError::Io { .. }
            | GitError::TooLarge { .. } => false,
        }
    }

    /// True when the remote refused the credential (a retry with the same token is pointless).
    pub fn is_auth(&self) -> bool {
        match self {
            GitError::Auth { .. } => true,
            GitError::Cancelled { .. }
            | GitError::Stalled { .. }
            | GitError::Rejected { .. }
            | GitError::Git { .. }
            | GitError::Io { .. }
            | GitError::TooLarge { .. } => false,
        }
    }

    /// A generic failure of a local (non-network) operation.
    pub(crate) fn local(op: &'static str, err: git2::Error) -> Self {
        GitError::Git {
            op,
            message: clean(err.message(), None),
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, err: std::io::Error) -> Self {
        GitError::Io {
            op,
            message: clean(&format!("{}: {err}", path.display()), None),
        }
    }
}

/// Redacts a libgit2 message: the pattern rules, plus the token by value when we hold one.
pub(crate) fn clean(message: &str, token: Option<&Secret>) -> String {
    let redactor = match token {
        Some(token) => Redactor::patterns_only().with_secret(token),
        None => Redactor::patterns_only(),
    };
    redactor.redact(message.trim())
}

/// The credential for network operations: a token, or nothing (public repositories, local
/// remotes). `Debug` never prints the token.
#[derive(Clone, Default)]
pub struct GitAuth {
    token: Option<Secret>,
}

impl GitAuth {
    pub fn token(token: Secret) -> Self {
        Self { token: Some(token) }
    }

    pub fn none() -> Self {
        Self { token: None }
    }

    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.token.as_ref()
    }
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.token.is_some() { "***" } else { "none" };
        f.debug_struct("GitAuth").field("token", &shown).finish()
    }
}

/// Where a job's git traffic goes and the credential it may carry there.
///
/// Built once from the job's validated clone URL: every clone, fetch and push of the job goes to
/// this URL (never to whatever the checkout's configuration names), and the token is offered
/// only to its scheme, host and port. The stored URL is [`credentials::remote_url`]'s form: at
/// most the user name `x-access-token`, never a password.
#[derive(Clone, Debug)]
pub struct GitRemote {
    url: String,
    auth: GitAuth,
}

impl GitRemote {
    pub fn new(url: &str, auth: GitAuth) -> Result<Self, GitError> {
        Ok(Self {
            url: credentials::remote_url(url)?,
            auth,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn auth(&self) -> &GitAuth {
        &self.auth
    }
}

/// The author and committer of every commit the worker makes, and the repo-local identity the
/// agent's own commits inherit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    /// The seed's bot identity (seed-behaviour 4.0.5).
    pub fn bot() -> Self {
        Self {
            name: "cat-factory[bot]".to_owned(),
            email: "cat-factory[bot]@users.noreply.github.com".to_owned(),
        }
    }

    pub(crate) fn signature(&self) -> Result<git2::Signature<'static>, GitError> {
        git2::Signature::now(&self.name, &self.email).map_err(|e| GitError::local("identity", e))
    }
}

/// [`crate::owned_dir::remove_any`] for a git step named `op`.
pub(crate) fn remove_any(op: &'static str, path: &Path) -> Result<(), GitError> {
    crate::owned_dir::remove_any(path).map_err(|e| GitError::io(op, path, e))
}

pub(crate) fn open(op: &'static str, dir: &Path) -> Result<git2::Repository, GitError> {
    git2::Repository::open(dir).map_err(|e| GitError::local(op, e))
}

/// Bounds libgit2's own network waits (process-wide), so a peer that stops answering
/// mid-transfer cannot hold a git step past its timeout: cancellation is only checked in
/// transfer callbacks, which a silent socket never calls.
///
/// The read timeout also bounds the git CLI's clones ([`cli_clone`]: `http.lowSpeedTime`).
pub fn set_network_timeouts(connect: std::time::Duration, read: std::time::Duration) {
    let ms = |d: std::time::Duration| d.as_millis().min(i32::MAX as u128) as libc::c_int;
    // Called once at start-up, before any git operation runs on another thread.
    crate::sys::set_git_server_timeouts(ms(connect), ms(read));
    let read_ms = u64::try_from(read.as_millis()).unwrap_or(u64::MAX);
    NETWORK_READ_TIMEOUT_MS.store(read_ms, std::sync::atomic::Ordering::Relaxed);
}

/// The read timeout [`set_network_timeouts`] set, in milliseconds; 0 when none was set.
static NETWORK_READ_TIMEOUT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The read timeout [`set_network_timeouts`] set, if any (as with libgit2, none by default).
pub(crate) fn network_read_timeout() -> Option<std::time::Duration> {
    match NETWORK_READ_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        ms => Some(std::time::Duration::from_millis(ms)),
    }
}

/// Bounds libgit2's memory (process-wide): its defaults map pack windows of 1 GiB up to 8 GiB
/// in all and cache 256 MiB of objects, so every large repository a job touched stayed in the
/// worker's resident memory, once per concurrent job. Reads past the bound unmap the least
/// recently used window and read again, which costs little on a local disk.
pub fn bound_memory() {
    const MIB: usize = 1024 * 1024;
    crate::sys::set_git_memory_bounds(8 * MIB, 32 * MIB, 16 * MIB as isize);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_auth_debug_never_shows_the_token() {
        let auth = GitAuth::token(Secret::new("ghs_verysecretvalue"));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("verysecret"), "{shown}");
        assert!(shown.contains("***"));
        assert!(format!("{:?}", GitAuth::none()).contains("none"));
    }

    #[test]
    fn error_messages_are_redacted_by_pattern_and_by_known_token() {
        let token = Secret::new("plain-token-value");
        let msg = clean(
            "failed https://x-access-token:ghs_abc@host/r.git with plain-token-value",
            Some(&token),
        );
        assert!(!msg.contains("ghs_abc"), "{msg}");
        assert!(!msg.contains("plain-token-value"), "{msg}");
    }

    #[test]
    fn only_the_cancelled_variant_reports_cancellation() {
        assert!(GitError::Cancelled { op: "clone" }.is_cancelled());
        let other = GitError::Git {
            op: "clone",
            message: "boom".into(),
        };
        assert!(!other.is_cancelled());
        assert!(!other.is_auth());
    }
}
