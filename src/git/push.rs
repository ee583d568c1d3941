//! Non-forced pushes: checkpoints, the final push, and the shared push call the completion ref
//! uses.

use std::path::Path;

use git2::{ErrorCode, PushOptions, RemoteRedirect, Repository};

use super::clone::require_local_branch;
use super::credentials::{checkout_remote, NetState};
use super::{clean, open, GitAuth, GitError, GitRemote};
use tokio_util::sync::CancellationToken;

/// Pushes `refs/heads/<local_branch>` to `refs/heads/<remote_branch>` on `remote`, never forced.
///
/// Ok only when every ref update was accepted: a status reported through
/// `push_update_reference` (a hook, a protected branch, a non-fast-forward on the server) and
/// libgit2's own non-fast-forward check both give [`GitError::Rejected`]. The remote branch may
/// have another name than the local one (the seed could only push same-named branches, Q2).
/// Cancellation is honoured up to the moment the pack is sent; once sent, the push settles.
pub fn push_branch(
    dir: &Path,
    remote: &GitRemote,
    local_branch: &str,
    remote_branch: &str,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    const OP: &str = "push";
    let auth = remote.auth();
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let repo = open(OP, dir)?;
    require_local_branch(&repo, OP, local_branch)?;
    let remote_ref = format!("refs/heads/{remote_branch}");
    let refspec = format!("refs/heads/{local_branch}:{remote_ref}");
    match push_refspecs(&repo, remote, &state, OP, &[refspec])? {
        PushAttempt::NotFastForward(message) => Err(non_fast_forward(remote_ref, &message, auth)),
        PushAttempt::Sent(report) => match report.rejected.into_iter().next() {
            Some((refname, reason)) => Err(rejection(&state, auth, refname, reason)),
            None => Ok(()),
        },
    }
}

/// What the remote answered to one push call that was sent.
pub(crate) struct PushReport {
    /// The ref updates the remote refused, with its reason, in the order reported.
    pub(crate) rejected: Vec<(String, String)>,
}

/// The result of [`push_refspecs`] when the transport did not fail.
pub(crate) enum PushAttempt {
    Sent(PushReport),
    /// libgit2 refused to send a non-forced update that is not a fast-forward (or whose remote
    /// value is unknown locally); nothing was sent. libgit2 does not say which ref it was.
    NotFastForward(String),
}

/// One push call of `refspecs` to `remote`, with the credential and cancellation callbacks.
///
/// libgit2 has no atomic push (it never asks for the `atomic` capability), so the remote applies
/// each update on its own: the caller reads [`PushReport::rejected`] per ref.
pub(crate) fn push_refspecs(
    repo: &Repository,
    remote: &GitRemote,
    state: &NetState<'_>,
    op: &'static str,
    refspecs: &[String],
) -> Result<PushAttempt, GitError> {
    let mut remote = checkout_remote(repo, remote, op)?;
    let mut callbacks = state.callbacks();
    callbacks.push_update_reference(|refname, status| {
        if let Some(reason) = status {
            state
                .rejected
                .borrow_mut()
                .push((refname.to_owned(), reason.to_owned()));
        }
        Ok(())
    });
    callbacks.push_negotiation(|_| {
        if !state.keep_going() {
            return Err(state.cancelled_error());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options
        .remote_callbacks(callbacks)
        .follow_redirects(RemoteRedirect::Initial);

    let pushed = remote.push(refspecs, Some(&mut options));
    if let Err(err) = pushed {
        if err.code() == ErrorCode::NotFastForward {
            return Ok(PushAttempt::NotFastForward(err.message().to_owned()));
        }
        return Err(state.error(op, err));
    }
    let rejected = state.rejected.borrow_mut().drain(..).collect();
    Ok(PushAttempt::Sent(PushReport { rejected }))
}

/// A ref update the remote refused, with what the remote printed (hook output explains it).
pub(crate) fn rejection(
    state: &NetState<'_>,
    auth: &GitAuth,
    refname: String,
    reason: String,
) -> GitError {
    let remote_said = state.remote_text();
    let reason = if remote_said.is_empty() {
        reason
    } else {
        format!("{reason} (remote: {remote_said})")
    };
    GitError::Rejected {
        refname,
        reason: clean(&reason, auth.secret()),
    }
}

/// libgit2's own refusal of a non-fast-forward update, attributed to `refname`.
pub(crate) fn non_fast_forward(refname: String, message: &str, auth: &GitAuth) -> GitError {
    GitError::Rejected {
        refname,
        reason: clean(&format!("non-fast-forward: {message}"), auth.secret()),
    }
}
