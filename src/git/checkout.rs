//! [`Checkout`]: a job's working copy as one value (its directory, its remote and credential,
//! the commit identity, the size limit and the runner), whose async methods hide the blocking
//! pool and the per-step timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::runner::Runner;
use super::{
    BaseMerge, ConflictedMerge, FileLimit, GitError, GitRemote, Identity, MergeOutcome,
    ObjectCache, Refresh, RemoteProbe,
};

/// A job's working copy. Cloning it is cheap (it is a few strings and handles).
#[derive(Clone)]
pub struct Checkout {
    pub(super) dir: PathBuf,
    pub(super) remote: GitRemote,
    pub(super) identity: Identity,
    pub(super) limit: FileLimit,
    pub(super) runner: Runner,
    pub(super) objects: Option<ObjectCache>,
}

impl Checkout {
    /// The working copy at `dir` (not cloned yet) of `remote`.
    pub fn new(
        dir: PathBuf,
        remote: GitRemote,
        identity: Identity,
        limit: FileLimit,
        runner: Runner,
    ) -> Self {
        Self {
            dir,
            remote,
            identity,
            limit,
            runner,
            objects: None,
        }
    }

    /// The same checkout, cloned through the object cache `objects` when there is one.
    pub fn with_object_cache(self, objects: Option<ObjectCache>) -> Self {
        Self { objects, ..self }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn remote(&self) -> &GitRemote {
        &self.remote
    }

    /// The same checkout on another cancellation token: the last push of a stopped run must
    /// not be stopped by the token that stopped the run.
    pub fn with_cancel(&self, cancel: CancellationToken) -> Self {
        Self {
            runner: self.runner.with_cancel(cancel),
            ..self.clone()
        }
    }

    /// One ls-remote: whether `refs/heads/<branch>` exists and where `completion_ref` points.
    pub async fn probe(
        &self,
        branch: Option<&str>,
        completion_ref: Option<&str>,
    ) -> Result<RemoteProbe, GitError> {
        let (remote, branch) = (self.remote.clone(), branch.map(str::to_owned));
        let completion_ref = completion_ref.map(str::to_owned);
        self.runner
            .run("probe", move |c| match (&branch, &completion_ref) {
                (b, Some(r)) => super::probe_remote(&remote, b.as_deref(), r, c),
                (Some(b), None) => Ok(RemoteProbe {
                    branch_exists: super::remote_branch_exists(&remote, b, c)?,
                    completion: None,
                }),
                (None, None) => Ok(RemoteProbe {
                    branch_exists: false,
                    completion: None,
                }),
            })
            .await
    }

    /// The message of the commit `completion_ref` points at, read through a bare scratch
    /// repository at `scratch`.
    pub async fn read_completion(
        &self,
        completion_ref: &str,
        scratch: PathBuf,
    ) -> Result<String, GitError> {
        let (remote, r) = (self.remote.clone(), completion_ref.to_owned());
        self.runner
            .run("probe", move |c| {
                super::read_completion(&remote, &r, &scratch, c)
            })
            .await
    }

    /// Merges `base` into the current branch when that merges cleanly (seed 4.1 step 6).
    pub async fn refresh_from(&self, base: &str) -> Result<Refresh, GitError> {
        let (dir, remote, id) = (self.dir.clone(), self.remote.clone(), self.identity.clone());
        let base = base.to_owned();
        self.runner
            .run("refresh", move |c| {
                super::refresh_from_base_if_clean(&dir, &remote, &base, &id, c)
            })
            .await
    }

    /// Whether the work (HEAD's tree) is exactly its fetched base's: a resumed branch whose
    /// earlier work was merged has nothing left to deliver. `None` when the base was not fetched.
    pub async fn matches_base(&self, base_branch: &str) -> Result<Option<bool>, GitError> {
        let (dir, base) = (self.dir.clone(), base_branch.to_owned());
        self.runner
            .run("commit", move |_| super::matches_base(&dir, &base))
            .await
    }

    /// Fetches `base` through the checkout's remote and merges `origin/<base>` into the current
    /// branch, leaving conflicts in the index and work tree (seed 4.3 step 4).
    pub async fn merge_base(&self, base: &str) -> Result<BaseMerge, GitError> {
        let (dir, remote, id) = (self.dir.clone(), self.remote.clone(), self.identity.clone());
        let base = base.to_owned();
        self.runner
            .run("merge", move |c| {
                super::merge_base_branch(&dir, &remote, &base, &id, c)
            })
            .await
    }

    /// The `git diff` of the conflicted `paths`, capped for the agent's prompt.
    pub async fn conflict_diff(&self, paths: &[String]) -> Result<String, GitError> {
        let (dir, paths) = (self.dir.clone(), paths.to_vec());
        self.runner
            .run("commit", move |_| super::conflict_diff(&dir, &paths))
            .await
    }

    /// Completes the conflicted `merge` once the agent is done, or says what is unresolved.
    pub async fn complete_merge(
        &self,
        merge: &ConflictedMerge,
        message: &str,
    ) -> Result<MergeOutcome, GitError> {
        let (dir, id, limit) = (self.dir.clone(), self.identity.clone(), self.limit);
        let (merge, message) = (merge.clone(), message.to_owned());
        self.runner
            .run("commit", move |_| {
                super::complete_merge(&dir, &merge, &message, &id, limit)
            })
            .await
    }

    /// Bootstrap's no-op guard: with a reference clone, whether the agent changed anything
    /// since `start` (its own commits count); from scratch (`None`), whether it wrote any file.
    pub async fn has_new_content(&self, start: Option<&str>) -> Result<bool, GitError> {
        let (dir, start) = (self.dir.clone(), start.map(str::to_owned));
        self.runner
            .run("commit", move |_| match start {
                Some(start) => super::changed_since(&dir, &start),
                None => super::holds_any_file(&dir),
            })
            .await
    }

    /// Replaces the checkout's history with one parentless commit of its work tree on
    /// `branch`; returns the commit.
    pub async fn fresh_history(&self, branch: &str, message: &str) -> Result<String, GitError> {
        let (dir, id, limit) = (self.dir.clone(), self.identity.clone(), self.limit);
        let (branch, message) = (branch.to_owned(), message.to_owned());
        self.runner
            .run("commit", move |_| {
                super::fresh_history(&dir, &branch, &message, &id, limit)
            })
            .await
    }

    /// Force-pushes `branch` to the same branch of the checkout's remote (bootstrap only: its
    /// target's history is replaced on purpose).
    pub async fn force_push(&self, branch: &str) -> Result<(), GitError> {
        let (dir, remote, branch) = (self.dir.clone(), self.remote.clone(), branch.to_owned());
        self.runner
            .run("push", move |c| {
                super::force_push_branch(&dir, &remote, &branch, c)
            })
            .await
    }

    /// The commit HEAD points at.
    pub async fn head(&self) -> Result<String, GitError> {
        let dir = self.dir.clone();
        self.runner
            .run("commit", move |_| super::head_oid(&dir))
            .await
    }

    /// Keeps `pattern` out of git (`.git/info/exclude`).
    pub async fn exclude(&self, pattern: &str) -> Result<(), GitError> {
        let (dir, pattern) = (self.dir.clone(), pattern.to_owned());
        self.runner
            .run("commit", move |_| super::exclude_path(&dir, &pattern))
            .await
    }

    /// The safety-net commit of tracked edits; whether a commit was made.
    pub async fn commit_tracked(&self, message: &str) -> Result<bool, GitError> {
        let (dir, id, limit) = (self.dir.clone(), self.identity.clone(), self.limit);
        let message = message.to_owned();
        self.runner
            .run("commit", move |_| {
                super::commit_tracked_edits(&dir, &message, &id, limit)
            })
            .await
    }

    /// Files neither tracked nor ignored.
    pub async fn untracked(&self) -> Result<Vec<String>, GitError> {
        let dir = self.dir.clone();
        self.runner
            .run("commit", move |_| super::untracked_files(&dir))
            .await
    }

    /// The untracked entries and changed tracked files, in one status walk.
    pub async fn tree_state(&self) -> Result<super::TreeState, GitError> {
        let dir = self.dir.clone();
        self.runner
            .run("status", move |_| super::tree_state(&dir))
            .await
    }

    /// After an install that started from `before`: what it created kept out of git at its
    /// own place, the tracked files it changed put back; returns both lists.
    pub async fn set_aside(
        &self,
        before: super::TreeState,
    ) -> Result<(Vec<String>, Vec<String>), GitError> {
        let dir = self.dir.clone();
        self.runner
            .run("exclude", move |_| super::set_aside(&dir, &before))
            .await
    }

    /// Pushes `head` of `local_branch` to `remote_branch`, never forced, after checking that
    /// the commits the remote lacks (not reachable from `known`) add no file over the limit.
    pub async fn push(
        &self,
        head: &str,
        local_branch: &str,
        remote_branch: &str,
        known: Vec<String>,
    ) -> Result<(), GitError> {
        let (dir, remote, limit) = (self.dir.clone(), self.remote.clone(), self.limit);
        let (head, lb, rb) = (
            head.to_owned(),
            local_branch.to_owned(),
            remote_branch.to_owned(),
        );
        self.runner
            .run("push", move |c| {
                // Checkpoints push while the agent runs: its `.git` is checked again here.
                super::reclaim::ensure_plain(&dir)?;
                super::check_new_blobs(&dir, &head, &known, limit)?;
                super::push_branch(&dir, &remote, &lb, &rb, c)
            })
            .await
    }

    /// Takes the checkout's `.git` back after the job's processes ran in it ([`super::reclaim`]):
    /// fails when it points elsewhere, else replaces its config with the worker's.
    pub async fn reclaim(&self) -> Result<(), GitError> {
        let (dir, id) = (self.dir.clone(), self.identity.clone());
        let url = self.remote.url().to_owned();
        self.runner
            .run("reclaim", move |_| super::reclaim::reclaim(&dir, &url, &id))
            .await
    }

    /// Records the job's result at `completion_ref` on the remote (a commit over `head`).
    pub async fn record_completion(
        &self,
        head: &str,
        completion_ref: &str,
        message: String,
    ) -> Result<(), GitError> {
        let (dir, remote, id) = (self.dir.clone(), self.remote.clone(), self.identity.clone());
        let (head, r) = (head.to_owned(), completion_ref.to_owned());
        self.runner
            .run("push", move |c| {
                super::push_completion(&dir, &remote, &head, &r, &message, &id, c)
            })
            .await
    }

    /// Deletes completion refs under `prefix` older than `max_age` (not `keep`).
    pub async fn prune_completions(
        &self,
        prefix: &str,
        keep: &str,
        max_age: Duration,
        scratch: PathBuf,
    ) -> Result<usize, GitError> {
        let remote = self.remote.clone();
        let (prefix, keep) = (prefix.to_owned(), keep.to_owned());
        self.runner
            .run("prune", move |c| {
                super::prune_completion_refs(&remote, &prefix, &keep, max_age, &scratch, c)
            })
            .await
    }
}
