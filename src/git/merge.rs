//! Conflict resolution's git side (seed 4.3): merging the base branch into the pull request's
//! branch, the conflicted paths, and completing the merge once the agent is done.
//!
//! The merge runs in the checkout (libgit2's `git_merge`), so a conflict leaves what
//! `git merge` leaves: unmerged index entries, markers in the work tree and `MERGE_HEAD`, which
//! the agent's own `git add` and `git commit` work with.

use std::collections::BTreeSet;
use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{Commit, Index, Oid, RepositoryState};
use tokio_util::sync::CancellationToken;

use super::clone::{current_branch, fetch_tracking};
use super::credentials::NetState;
use super::limits::{check_work_tree, FileLimit};
use super::markers::marked_paths;
use super::{open, GitError, GitRemote, Identity};

/// How merging the base branch into the checkout's branch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseMerge {
    /// No conflicts. `head` is the branch's tip now: the old tip when the branch already had
    /// the base, else a fast-forward or a merge commit.
    Clean { head: String },
    /// The merge stopped with conflicts.
    Conflicted(ConflictedMerge),
}

/// A merge left in progress for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictedMerge {
    /// The branch being merged into (HEAD's).
    pub branch: String,
    /// The branch's tip before the merge.
    pub pr_tip: String,
    /// The base commit merged in.
    pub base_tip: String,
    /// The paths left unmerged in the index, sorted.
    pub paths: Vec<String>,
}

/// What the agent left of a conflicted merge, and what was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The merge is committed (by the agent or here): `head` is the tip to push.
    Committed { head: String },
    /// Nothing was committed: these paths are still unmerged in the index, or hold conflict
    /// markers, or (every conflicted path) the agent abandoned the merge.
    Unresolved { paths: Vec<String> },
}

/// Fetches `base` into `refs/remotes/origin/<base>` through the job's remote and merges it into
/// the current branch (`git merge --no-edit origin/<base>`): up to date, fast-forward, a merge
/// commit, or conflicts left in the index and work tree.
pub fn merge_base_branch(
    dir: &Path,
    remote: &GitRemote,
    base: &str,
    id: &Identity,
    cancel: &CancellationToken,
) -> Result<BaseMerge, GitError> {
    const OP: &str = "merge";
    let local = |e| GitError::local(OP, e);
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let repo = open(OP, dir)?;
    let tracking = fetch_tracking(&repo, remote, &state, base, OP)?;

    let base_ref = repo.find_reference(&tracking).map_err(local)?;
    let theirs = base_ref.peel_to_commit().map_err(local)?;
    let annotated = repo
        .reference_to_annotated_commit(&base_ref)
        .map_err(local)?;
    let mut head = repo.head().map_err(local)?;
    let ours = head.peel_to_commit().map_err(local)?;
    let Some(branch) = head
        .shorthand()
        .ok()
        .filter(|_| head.is_branch())
        .map(str::to_owned)
    else {
        return Err(GitError::Git {
            op: OP,
            message: "HEAD is not on a branch".to_owned(),
        });
    };
    let (analysis, _) = repo.merge_analysis(&[&annotated]).map_err(local)?;
    if analysis.is_up_to_date() {
        return Ok(BaseMerge::Clean {
            head: ours.id().to_string(),
        });
    }
    if analysis.is_fast_forward() {
        repo.checkout_tree(theirs.as_object(), Some(CheckoutBuilder::new().safe()))
            .map_err(local)?;
        head.set_target(theirs.id(), "merge: fast-forward")
            .map_err(local)?;
        return Ok(BaseMerge::Clean {
            head: theirs.id().to_string(),
        });
    }

    let mut checkout = CheckoutBuilder::new();
    checkout.safe().allow_conflicts(true);
    repo.merge(&[&annotated], None, Some(&mut checkout))
        .map_err(local)?;
    let mut index = repo.index().map_err(local)?;
    if index.has_conflicts() {
        return Ok(BaseMerge::Conflicted(ConflictedMerge {
            branch,
            pr_tip: ours.id().to_string(),
            base_tip: theirs.id().to_string(),
            paths: unmerged(&index).map_err(local)?,
        }));
    }
    let tree = repo
        .find_tree(index.write_tree().map_err(local)?)
        .map_err(local)?;
    let signature = id.signature()?;
    let message = format!("Merge remote-tracking branch 'origin/{base}' into {branch}");
    let merge = repo
        .commit(
            Some("HEAD"),
            &signature,
            &signature,
            &message,
            &tree,
            &[&ours, &theirs],
        )
        .map_err(local)?;
    repo.cleanup_state().map_err(local)?;
    Ok(BaseMerge::Clean {
        head: merge.to_string(),
    })
}

/// Completes `merge` after the agent: refuses (commits nothing) while a path is unmerged in
/// the index (the agent must `git add` what it resolved) or a conflicted path's staged content
/// holds a marker neither side had; otherwise stages tracked edits (`git add -u`: untracked
/// leftovers never reach the commit) and commits the merge with the branch's tip and the base
/// as its parents. When the agent committed the merge itself, only tracked edits it left after
/// that are committed, on top.
pub fn complete_merge(
    dir: &Path,
    merge: &ConflictedMerge,
    message: &str,
    id: &Identity,
    limit: FileLimit,
) -> Result<MergeOutcome, GitError> {
    const OP: &str = "commit";
    let local = |e| GitError::local(OP, e);
    let unresolved = |paths: Vec<String>| Ok(MergeOutcome::Unresolved { paths });
    if current_branch(dir)?.as_deref() != Some(merge.branch.as_str()) {
        return Err(GitError::Git {
            op: OP,
            message: format!("HEAD is no longer on the branch '{}'", merge.branch),
        });
    }
    let repo = open(OP, dir)?;
    let mut index = repo.index().map_err(local)?;
    let left = unmerged(&index).map_err(local)?;
    if !left.is_empty() {
        return unresolved(left);
    }
    check_work_tree(&repo, limit, OP)?;
    index.update_all(["*"], None).map_err(local)?;
    index.write().map_err(local)?;
    let tree_id = index.write_tree().map_err(local)?;
    let tree = repo.find_tree(tree_id).map_err(local)?;

    let pr_tip = Oid::from_str(&merge.pr_tip).map_err(local)?;
    let base_tip = Oid::from_str(&merge.base_tip).map_err(local)?;
    let marked =
        marked_paths(&repo, &tree, &merge.paths, &[pr_tip, base_tip], limit).map_err(local)?;
    if !marked.is_empty() {
        return unresolved(marked);
    }

    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(local)?;
    let has_base = head.id() == base_tip
        || repo
            .graph_descendant_of(head.id(), base_tip)
            .map_err(local)?;
    let base = repo.find_commit(base_tip).map_err(local)?;
    let parents: Vec<&Commit<'_>> = match (has_base, repo.state()) {
        (true, _) if head.tree_id() == tree_id => {
            repo.cleanup_state().map_err(local)?;
            return Ok(MergeOutcome::Committed {
                head: head.id().to_string(),
            });
        }
        (true, _) => vec![&head],
        (false, RepositoryState::Merge) => vec![&head, &base],
        // The merge was abandoned (`git merge --abort`, a reset): a commit now would drop the
        // base's side, and the pull request would still conflict.
        (false, _) => return unresolved(merge.paths.clone()),
    };
    let signature = id.signature()?;
    let commit = repo
        .commit(
            Some("HEAD"),
            &signature,
            &signature,
            message,
            &tree,
            &parents,
        )
        .map_err(local)?;
    repo.cleanup_state().map_err(local)?;
    Ok(MergeOutcome::Committed {
        head: commit.to_string(),
    })
}

/// The paths with conflict entries in `index`, sorted (`git diff --name-only --diff-filter=U`).
fn unmerged(index: &Index) -> Result<Vec<String>, git2::Error> {
    let mut paths = BTreeSet::new();
    for conflict in index.conflicts()? {
        let conflict = conflict?;
        for entry in [conflict.our, conflict.their, conflict.ancestor]
            .into_iter()
            .flatten()
        {
            paths.insert(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    Ok(paths.into_iter().collect())
}
