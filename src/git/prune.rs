//! Pruning old completion refs (contract section 9): every finished job leaves one ref on its
//! remote, and a remote with thousands of them makes every ref advertisement, probe and push
//! slower. The worker deletes those older than `git.completion_ref_max_age_ms` when it next
//! records a completion on that remote.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use git2::{AutotagOption, Direction, FetchOptions, Remote, RemoteRedirect, Repository};
use tokio_util::sync::CancellationToken;

use super::credentials::{checkout_remote, supports_shallow, NetState};
use super::push::{push_refspecs, PushAttempt};
use super::{GitError, GitRemote};

/// Most refs one prune fetches and may delete: keeps one prune bounded on a remote that
/// collected a great many; the rest wait for the next prune.
const MAX_REFS_PER_PRUNE: usize = 5000;

/// Deletes the refs under `prefix` (other than `keep`) whose commit is older than `max_age`,
/// and returns how many the remote deleted.
///
/// A record's age is its commit's date: the result's `finishedAt` (older records are dated like
/// the work's head, which makes them look older, never younger). The refs are fetched, depth 1
/// where the transport allows, into a bare scratch repository at `scratch_dir` (removed again),
/// so the checkout gains nothing; deletions are pushed from there, never forced. A ref another
/// worker deleted or rewrote meanwhile is simply not counted.
pub fn prune_completion_refs(
    remote: &GitRemote,
    prefix: &str,
    keep: &str,
    max_age: Duration,
    scratch_dir: &Path,
    cancel: &CancellationToken,
) -> Result<usize, GitError> {
    const OP: &str = "prune";
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let prefix = if prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    if !prefix.starts_with("refs/") {
        return Ok(0);
    }

    let listed: Vec<String> = {
        let mut detached = Remote::create_detached(remote.url()).map_err(|e| state.error(OP, e))?;
        let connection = detached
            .connect_auth(Direction::Fetch, Some(state.callbacks()), None)
            .map_err(|e| state.error(OP, e))?;
        let heads = connection.list().map_err(|e| state.error(OP, e))?;
        heads
            .iter()
            .map(|h| h.name().to_owned())
            .filter(|name| name.starts_with(&prefix) && name != keep)
            .take(MAX_REFS_PER_PRUNE)
            .collect()
    };
    if listed.is_empty() {
        return Ok(0);
    }

    let _ = std::fs::remove_dir_all(scratch_dir);
    let outcome = prune_listed(remote, &state, &listed, max_age, scratch_dir, OP);
    let _ = std::fs::remove_dir_all(scratch_dir);
    outcome
}

fn prune_listed(
    remote: &GitRemote,
    state: &NetState<'_>,
    listed: &[String],
    max_age: Duration,
    scratch_dir: &Path,
    op: &'static str,
) -> Result<usize, GitError> {
    let local = |e| GitError::local(op, e);
    let repo = Repository::init_bare(scratch_dir).map_err(local)?;
    {
        let fetch_state = state.renewed();
        let mut anonymous = checkout_remote(&repo, remote, op)?;
        let mut fetch = FetchOptions::new();
        fetch
            .remote_callbacks(fetch_state.callbacks())
            .follow_redirects(RemoteRedirect::Initial)
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        if supports_shallow(remote.url()) {
            fetch.depth(1);
        }
        let specs: Vec<String> = listed.iter().map(|r| format!("+{r}:{r}")).collect();
        anonymous
            .fetch(&specs, Some(&mut fetch), None)
            .map_err(|e| fetch_state.error(op, e))?;
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let oldest_kept = now.saturating_sub(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
    let stale: Vec<String> = listed
        .iter()
        .filter(|name| {
            repo.refname_to_id(name)
                .and_then(|oid| repo.find_commit(oid))
                .map(|c| c.committer().when().seconds() < oldest_kept)
                .unwrap_or(false)
        })
        .cloned()
        .collect();
    if stale.is_empty() {
        return Ok(0);
    }
    let deletions: Vec<String> = stale.iter().map(|r| format!(":{r}")).collect();
    let push_state = state.renewed();
    match push_refspecs(&repo, remote, &push_state, op, &deletions)? {
        PushAttempt::Sent(report) => Ok(stale.len() - report.rejected.len()),
        // Deletions are never fast-forward questions; nothing was sent.
        PushAttempt::NotFastForward(_) => Ok(0),
    }
}
