//! Getting a checkout ready: the resume probe, single-branch clones, the work branch, the
//! repo-local identity, and the resume refresh from the base branch.

use std::path::Path;

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{
    AutotagOption, BranchType, ConfigLevel, Direction, FetchOptions, Oid, Remote, RemoteRedirect,
};
use tokio_util::sync::CancellationToken;

use super::credentials::{checkout_remote, supports_shallow, NetState};
use super::{open, GitError, GitRemote, Identity};

/// Whether `refs/heads/<branch>` exists on the remote.
///
/// Compares the full ref name, so a remote `feature/x` does not make `x` exist (the seed's
/// `ls-remote` tail match gave false resumes, seed-behaviour Q1).
pub fn remote_branch_exists(
    remote: &GitRemote,
    branch: &str,
    cancel: &CancellationToken,
) -> Result<bool, GitError> {
    const OP: &str = "ls-remote";
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let mut remote = Remote::create_detached(remote.url()).map_err(|e| state.error(OP, e))?;
    let connection = remote
        .connect_auth(Direction::Fetch, Some(state.callbacks()), None)
        .map_err(|e| state.error(OP, e))?;
    let wanted = format!("refs/heads/{branch}");
    let heads = connection.list().map_err(|e| state.error(OP, e))?;
    Ok(heads.iter().any(|head| head.name() == wanted))
}

/// Clones only `branch` into `dir` (which must not exist or be empty) and checks it out.
///
/// With `shallow`, fetches depth 1. `file://`, `http://` and `https://` remotes are cloned with
/// the git CLI ([`super::cli_clone`]); others (ssh, plain paths) with libgit2. `origin` stores
/// the remote's URL: at most the user name `x-access-token`, never the token. Later fetches and
/// pushes do not use `origin`.
pub fn clone_branch(
    remote: &GitRemote,
    branch: &str,
    dir: &Path,
    shallow: bool,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    const OP: &str = "clone";
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let url = remote.url();
    if super::cli_clone::Transport::of(url).is_some() {
        return super::cli_clone::clone_branch(remote, branch, dir, shallow, cancel);
    }

    let mut fetch = FetchOptions::new();
    fetch
        .remote_callbacks(state.callbacks())
        .follow_redirects(RemoteRedirect::Initial);
    if shallow && supports_shallow(url) {
        fetch.depth(1);
    }
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    let mut builder = RepoBuilder::new();
    builder
        .branch(branch)
        .fetch_options(fetch)
        .remote_create(move |repo, name, url| repo.remote_with_fetch(name, url, &refspec));
    builder.clone(url, dir).map_err(|e| state.error(OP, e))?;
    Ok(())
}

/// Creates branch `name` at HEAD and checks it out (`git checkout -b <name>`).
pub fn create_branch(dir: &Path, name: &str) -> Result<(), GitError> {
    const OP: &str = "branch";
    let repo = open(OP, dir)?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| GitError::local(OP, e))?;
    let branch = repo
        .branch(name, &head, false)
        .map_err(|e| GitError::local(OP, e))?;
    let refname = branch.get().name().map_err(|e| GitError::local(OP, e))?;
    // Same commit, so the work tree and index already match: only HEAD moves.
    repo.set_head(refname).map_err(|e| GitError::local(OP, e))
}

/// Sets the repo-local `user.name` and `user.email`, which the agent's own commits inherit,
/// and turns git's automatic gc and maintenance off in the checkout.
pub fn set_identity(dir: &Path, id: &Identity) -> Result<(), GitError> {
    const OP: &str = "config";
    let repo = open(OP, dir)?;
    let mut config = repo
        .config()
        .and_then(|c| c.open_level(ConfigLevel::Local))
        .map_err(|e| GitError::local(OP, e))?;
    config
        .set_str("user.name", &id.name)
        .and_then(|()| config.set_str("user.email", &id.email))
        // No automatic gc or detached maintenance from an agent's commits: it would outlive
        // the agent and race the workspace's removal.
        .and_then(|()| config.set_i32("gc.auto", 0))
        .and_then(|()| config.set_bool("maintenance.auto", false))
        .map_err(|e| GitError::local(OP, e))
}

/// The commit HEAD points at, in hex.
pub fn head_oid(dir: &Path) -> Result<String, GitError> {
    const OP: &str = "rev-parse";
    let repo = open(OP, dir)?;
    let oid = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| GitError::local(OP, e))?
        .id();
    Ok(oid.to_string())
}

/// The branch HEAD is on (also when it has no commit yet), or `None` when HEAD is detached.
pub fn current_branch(dir: &Path) -> Result<Option<String>, GitError> {
    const OP: &str = "rev-parse";
    let repo = open(OP, dir)?;
    let head = repo
        .find_reference("HEAD")
        .map_err(|e| GitError::local(OP, e))?;
    let target = head.symbolic_target().map_err(|e| GitError::local(OP, e))?;
    Ok(target
        .and_then(|target| target.strip_prefix("refs/heads/"))
        .map(str::to_owned))
}

/// What [`refresh_from_base_if_clean`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The base had nothing the branch lacks.
    UpToDate,
    /// The branch had nothing of its own: it now points at the base tip.
    FastForwarded,
    /// A merge commit joins the branch and the base.
    Merged,
    /// The merge would conflict: the branch, index and work tree are untouched at the old tip.
    Conflicted,
}

/// Fetches `origin <base_branch>` and merges it into the current branch when that merges
/// cleanly (seed-behaviour 4.1 step 6), fast-forwarding when possible.
///
/// The merge is computed in memory, so a conflict leaves nothing to abort: the branch stays
/// exactly at its old tip. The work tree is updated with a safe checkout before the branch
/// moves, so a failure there leaves the branch where it was too.
pub fn refresh_from_base_if_clean(
    dir: &Path,
    remote: &GitRemote,
    base_branch: &str,
    id: &Identity,
    cancel: &CancellationToken,
) -> Result<Refresh, GitError> {
    const OP: &str = "refresh";
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let repo = open(OP, dir)?;
    let local = |e| GitError::local(OP, e);

    let tracking = fetch_tracking(&repo, remote, &state, base_branch, OP)?;
    let base_ref = repo.find_reference(&tracking).map_err(local)?;
    let theirs = base_ref.peel_to_commit().map_err(local)?;
    let annotated = repo
        .reference_to_annotated_commit(&base_ref)
        .map_err(local)?;
    let (analysis, _) = repo.merge_analysis(&[&annotated]).map_err(local)?;
    if analysis.is_up_to_date() {
        return Ok(Refresh::UpToDate);
    }

    let mut head = repo.head().map_err(local)?;
    if !head.is_branch() {
        return Err(GitError::Git {
            op: OP,
            message: "HEAD is not on a branch".to_owned(),
        });
    }
    let ours = head.peel_to_commit().map_err(local)?;

    let (target, outcome, reflog) = if analysis.is_fast_forward() {
        (theirs.id(), Refresh::FastForwarded, "refresh: fast-forward")
    } else {
        let mut index = repo.merge_commits(&ours, &theirs, None).map_err(local)?;
        if index.has_conflicts() {
            return Ok(Refresh::Conflicted);
        }
        let tree_id = index.write_tree_to(&repo).map_err(local)?;
        let tree = repo.find_tree(tree_id).map_err(local)?;
        let signature = id.signature()?;
        let ours_name = head.shorthand().unwrap_or("HEAD");
        let message = format!("Merge branch '{base_branch}' into {ours_name}");
        let merge: Oid = repo
            .commit(
                None,
                &signature,
                &signature,
                &message,
                &tree,
                &[&ours, &theirs],
            )
            .map_err(local)?;
        (merge, Refresh::Merged, "refresh: merge")
    };

    let target_commit = repo.find_commit(target).map_err(local)?;
    repo.checkout_tree(
        target_commit.as_object(),
        Some(CheckoutBuilder::new().safe()),
    )
    .map_err(local)?;
    head.set_target(target, reflog).map_err(local)?;
    Ok(outcome)
}

/// Fetches `refs/heads/<branch>` of `remote` into `refs/remotes/origin/<branch>` (through the
/// job's remote, never the checkout's `origin`) and returns that tracking ref's name.
pub(crate) fn fetch_tracking(
    repo: &git2::Repository,
    remote: &GitRemote,
    state: &NetState<'_>,
    branch: &str,
    op: &'static str,
) -> Result<String, GitError> {
    let tracking = format!("refs/remotes/origin/{branch}");
    let refspec = format!("+refs/heads/{branch}:{tracking}");
    let mut remote = checkout_remote(repo, remote, op)?;
    let mut fetch = FetchOptions::new();
    fetch
        .remote_callbacks(state.callbacks())
        .follow_redirects(RemoteRedirect::Initial)
        .download_tags(AutotagOption::None);
    remote
        .fetch(&[&refspec], Some(&mut fetch), None)
        .map_err(|e| state.error(op, e))?;
    Ok(tracking)
}

/// The local branch `name`, as an error naming the operation when it is missing.
pub(crate) fn require_local_branch(
    repo: &git2::Repository,
    op: &'static str,
    name: &str,
) -> Result<(), GitError> {
    repo.find_branch(name, BranchType::Local)
        .map(|_| ())
        .map_err(|e| GitError::local(op, e))
}

/// Whether HEAD's tree is the tree of `refs/remotes/origin/<base_branch>`: the work adds
/// nothing to its base (it was merged, squashed or rebased in already). `None` when the base
/// was never fetched into this checkout.
pub fn matches_base(dir: &Path, base_branch: &str) -> Result<Option<bool>, GitError> {
    const OP: &str = "rev-parse";
    let repo = open(OP, dir)?;
    let local = |e| GitError::local(OP, e);
    let base = match repo.find_reference(&format!("refs/remotes/origin/{base_branch}")) {
        Ok(reference) => reference.peel_to_tree().map_err(local)?,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(local(e)),
    };
    let head = repo.head().and_then(|h| h.peel_to_tree()).map_err(local)?;
    Ok(Some(head.id() == base.id()))
}
