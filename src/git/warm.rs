//! Warm checkouts (seed 4.5): one checkout per repository, reused by the jobs that ask for it
//! (`persistentCheckout`), brought to the job's branch instead of cloned again.
//!
//! A reused checkout was last touched by an agent, which may have left anything in it. Before
//! it is used again it is swept back to what the worker would have cloned: the repository's
//! local configuration is rewritten (no `url.*.insteadOf`, hooks path, includes or extra
//! remotes survive), hooks and object alternates are removed, the exclude file is emptied,
//! tracked files are reset, and every untracked or ignored entry is deleted except the
//! dependency caches named by `git.clean_keep` (`node_modules`, ...). A checkout whose origin
//! is another repository, or that is not a repository, is remade by a fresh full clone.

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{AutotagOption, FetchOptions, RemoteRedirect, Repository, ResetType, StatusOptions};
use tokio_util::sync::CancellationToken;

use super::credentials::{checkout_remote, NetState};
use super::reclaim::{plain_git_dir, replace_config};
use super::{clone_branch, set_identity, GitError, GitRemote, Identity};

/// What a warm checkout is brought to.
pub struct WarmTarget<'a> {
    /// The local branch the job works on.
    pub branch: &'a str,
    /// The remote branch the work starts from: the branch itself when it exists on the remote
    /// (a resume, in-place work, explore), else the base.
    pub start_from: &'a str,
    /// The base branch, fetched as well when it is another.
    pub base: &'a str,
    /// Untracked or ignored names kept by the sweep, at any depth.
    pub keep: &'a [String],
}

/// Brings the checkout at `dir` to `target`, reusing it when it is a clean-able checkout of
/// `remote` (and `fresh` is false: the caller knows an earlier preparation never finished),
/// cloning it afresh otherwise. Returns the tip the work starts from.
pub fn prepare_warm(
    dir: &Path,
    remote: &GitRemote,
    target: &WarmTarget<'_>,
    id: &Identity,
    fresh: bool,
    cancel: &CancellationToken,
) -> Result<String, GitError> {
    const OP: &str = "clone";
    // The sweep runs with the worker's rights over a `.git` the last agent owned: only a plain
    // one is reused, so no write of the worker's goes through a link the agent left.
    let reusable = (!fresh && plain_git_dir(&dir.join(".git")).is_ok())
        .then(|| Repository::open(dir).ok())
        .flatten()
        .filter(|repo| !repo.is_bare() && origin_is(repo, remote))
        .filter(|repo| repo.head().and_then(|h| h.peel_to_commit()).is_ok());
    match reusable {
        Some(repo) => sweep(&repo, remote, target.keep)?,
        None => {
            super::remove_any(OP, dir)?;
            clone_branch(remote, target.base, dir, false, cancel)?;
        }
    }
    let repo = Repository::open(dir).map_err(|e| GitError::local(OP, e))?;
    fetch_branches(&repo, remote, target, cancel)?;
    let tip = switch(&repo, target)?;
    set_identity(dir, id)?;
    Ok(tip)
}

/// Whether the checkout's `origin` is the job's repository (credentials aside).
fn origin_is(repo: &Repository, remote: &GitRemote) -> bool {
    let Ok(origin) = repo.find_remote("origin") else {
        return false;
    };
    let strip = |u: &str| {
        url::Url::parse(u)
            .map(|mut u| {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            })
            .unwrap_or_else(|_| u.to_owned())
    };
    origin.url().map(strip).ok() == Some(strip(remote.url()))
}

/// Sweeps a reused checkout back to what a clone would give, but for the kept caches.
fn sweep(repo: &Repository, remote: &GitRemote, keep: &[String]) -> Result<(), GitError> {
    const OP: &str = "sweep";
    let local = |e| GitError::local(OP, e);
    let git_dir = repo.path().to_path_buf();
    // The local config, replaced: what an agent wrote there (insteadOf rules, a hooks path,
    // includes, other remotes) must not reach the next job.
    replace_config(&git_dir, remote.url())?;
    for leftover in ["hooks", "objects/info/alternates", "info/exclude"] {
        super::remove_any(OP, &git_dir.join(leftover))?;
    }
    // Reopen: the config and alternates just changed under the handle.
    let repo = Repository::open(repo.workdir().unwrap_or(repo.path())).map_err(local)?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(local)?;
    repo.reset(
        head.as_object(),
        ResetType::Hard,
        Some(CheckoutBuilder::new().force()),
    )
    .map_err(local)?;
    let workdir = repo.workdir().ok_or_else(|| GitError::Git {
        op: OP,
        message: "the warm checkout has no work tree".to_owned(),
    })?;
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .include_ignored(true)
        .recurse_untracked_dirs(false)
        .recurse_ignored_dirs(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options)).map_err(local)?;
    for entry in statuses.iter() {
        let status = entry.status();
        if !(status.is_wt_new() || status.is_ignored()) {
            continue;
        }
        let rel = String::from_utf8_lossy(entry.path_bytes()).into_owned();
        let name = rel.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if keep.iter().any(|k| k == name) {
            continue;
        }
        // A symlinked directory is removed as a link, never followed.
        super::remove_any(OP, &workdir.join(rel.trim_end_matches('/')))?;
    }
    Ok(())
}

/// Fetches the start branch (and the base, when another) into `refs/remotes/origin/*`, through
/// the job's remote. Explicit destinations: relying on `FETCH_HEAD` would reset a resumed
/// branch to the base tip.
fn fetch_branches(
    repo: &Repository,
    remote: &GitRemote,
    target: &WarmTarget<'_>,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    const OP: &str = "fetch";
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let mut refspecs = vec![format!(
        "+refs/heads/{0}:refs/remotes/origin/{0}",
        target.start_from
    )];
    if target.base != target.start_from {
        refspecs.push(format!(
            "+refs/heads/{0}:refs/remotes/origin/{0}",
            target.base
        ));
    }
    let mut anonymous = checkout_remote(repo, remote, OP)?;
    let mut fetch = FetchOptions::new();
    fetch
        .remote_callbacks(state.callbacks())
        .follow_redirects(RemoteRedirect::Initial)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    anonymous
        .fetch(&refspecs, Some(&mut fetch), None)
        .map_err(|e| state.error(OP, e))
}

/// `git checkout -f -B <branch> refs/remotes/origin/<start_from>`: the kept caches that
/// collide with tracked paths are overwritten, and a stale local branch of that name is reset.
fn switch(repo: &Repository, target: &WarmTarget<'_>) -> Result<String, GitError> {
    const OP: &str = "checkout";
    let local = |e| GitError::local(OP, e);
    let start = repo
        .find_reference(&format!("refs/remotes/origin/{}", target.start_from))
        .and_then(|r| r.peel_to_commit())
        .map_err(local)?;
    repo.checkout_tree(start.as_object(), Some(CheckoutBuilder::new().force()))
        .map_err(local)?;
    // A branch cannot be reset while HEAD is on it: stand on the commit itself meanwhile.
    repo.set_head_detached(start.id()).map_err(local)?;
    let branch = repo.branch(target.branch, &start, true).map_err(local)?;
    let refname = branch.get().name().map_err(local)?.to_owned();
    // The branch is at the commit just checked out with force: work tree and index already
    // match it, and another walk of a large tree would only cost time.
    repo.set_head(&refname).map_err(local)?;
    Ok(start.id().to_string())
}
