//! Non-forced pushes of the work branch: checkpoints and the final push.

use std::path::Path;

use git2::{ErrorCode, PushOptions};
use tokio_util::sync::CancellationToken;

use super::checkout::require_local_branch;
use super::credentials::NetState;
use super::{clean, open, GitAuth, GitError};

/// Pushes `refs/heads/<local_branch>` to `refs/heads/<remote_branch>` on `origin`, never forced.
///
/// Ok only when every ref update was accepted: a status reported through
/// `push_update_reference` (a hook, a protected branch, a non-fast-forward on the server) and
/// libgit2's own non-fast-forward check both give [`GitError::Rejected`]. The remote branch may
/// have another name than the local one (the seed could only push same-named branches, Q2).
/// Cancellation is honoured up to the moment the pack is sent; once sent, the push settles.
pub fn push_branch(
    dir: &Path,
    local_branch: &str,
    remote_branch: &str,
    auth: &GitAuth,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    const OP: &str = "push";
    let state = NetState::new(auth, cancel);
    state.check_cancel(OP)?;
    let repo = open(OP, dir)?;
    require_local_branch(&repo, OP, local_branch)?;
    let mut remote = repo
        .find_remote("origin")
        .map_err(|e| GitError::local(OP, e))?;

    let remote_ref = format!("refs/heads/{remote_branch}");
    let refspec = format!("refs/heads/{local_branch}:{remote_ref}");
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
    callbacks.push_negotiation(|_updates| {
        if cancel.is_cancelled() {
            return Err(state.cancelled_error());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);

    if let Err(err) = remote.push(&[&refspec], Some(&mut options)) {
        if err.code() == ErrorCode::NotFastForward {
            return Err(GitError::Rejected {
                refname: remote_ref,
                reason: clean(
                    &format!("non-fast-forward: {}", err.message()),
                    auth.secret(),
                ),
            });
        }
        return Err(state.error(OP, err));
    }
    let rejected = state.rejected.borrow_mut().drain(..).next();
    match rejected {
        Some((refname, reason)) => {
            let remote_said = state.remote_text();
            let reason = if remote_said.is_empty() {
                reason
            } else {
                format!("{reason} (remote: {remote_said})")
            };
            Err(GitError::Rejected {
                refname,
                reason: clean(&reason, auth.secret()),
            })
        }
        None => Ok(()),
    }
}
