//! The clones that make a [`Checkout`]: fresh, resumed, warm, and from another remote, each
//! through the object cache when the checkout has one, then the identity set.

use super::object_cache::clone_branch_via;
use super::{Checkout, GitError, GitRemote};

impl Checkout {
    /// A fresh start: a clone of `base` (depth 1 with `shallow`, where the transport allows),
    /// then the work branch `new_branch` on it when there is one. Sets the identity; returns
    /// the tip the work starts from.
    pub async fn clone_fresh(
        &self,
        base: &str,
        new_branch: Option<&str>,
        shallow: bool,
    ) -> Result<String, GitError> {
        let (remote, dir, objects) = (self.remote.clone(), self.dir.clone(), self.objects.clone());
        let metrics = self.runner.metrics();
        let (base, new_branch) = (base.to_owned(), new_branch.map(str::to_owned));
        self.runner
            .run("clone", move |c| {
                clone_branch_via(objects.as_ref(), &metrics, &remote, &base, &dir, shallow, c)?;
                match new_branch {
                    Some(nb) => super::create_branch(&dir, &nb),
                    None => Ok(()),
                }
            })
            .await?;
        self.prepare().await
    }

    /// A resume: a full clone of the work branch an earlier attempt pushed. Sets the identity;
    /// returns its tip.
    pub async fn clone_resume(&self, branch: &str) -> Result<String, GitError> {
        let (remote, dir, branch) = (self.remote.clone(), self.dir.clone(), branch.to_owned());
        let (objects, metrics) = (self.objects.clone(), self.runner.metrics());
        self.runner
            .run("clone", move |c| {
                clone_branch_via(objects.as_ref(), &metrics, &remote, &branch, &dir, false, c)
            })
            .await?;
        self.prepare().await
    }

    /// A warm checkout (seed 4.5) at this checkout's directory: swept, fetched and switched
    /// to `branch` from `start_from` (the base too, when another), or cloned afresh when it is
    /// not a reusable checkout of this remote or `fresh` says its last preparation never
    /// finished. Sets the identity; returns the tip the work starts from.
    pub async fn prepare_warm(
        &self,
        branch: &str,
        start_from: &str,
        base: &str,
        keep: Vec<String>,
        fresh: bool,
    ) -> Result<String, GitError> {
        let (dir, remote, id) = (self.dir.clone(), self.remote.clone(), self.identity.clone());
        let (branch, start_from, base) =
            (branch.to_owned(), start_from.to_owned(), base.to_owned());
        self.runner
            .run("clone", move |c| {
                let target = super::WarmTarget {
                    branch: &branch,
                    start_from: &start_from,
                    base: &base,
                    keep: &keep,
                };
                super::prepare_warm(&dir, &remote, &target, &id, fresh, c)
            })
            .await
    }

    /// A clone of `branch` from `source`, another remote than the checkout's (bootstrap's
    /// reference repository, while the checkout's remote is the target), depth 1 where the
    /// transport allows. Sets the identity; returns the tip.
    pub async fn clone_from(&self, source: &GitRemote, branch: &str) -> Result<String, GitError> {
        let (source, dir, branch) = (source.clone(), self.dir.clone(), branch.to_owned());
        let (objects, metrics) = (self.objects.clone(), self.runner.metrics());
        self.runner
            .run("clone", move |c| {
                clone_branch_via(objects.as_ref(), &metrics, &source, &branch, &dir, true, c)
            })
            .await?;
        self.prepare().await
    }

    async fn prepare(&self) -> Result<String, GitError> {
        let (dir, id) = (self.dir.clone(), self.identity.clone());
        self.runner
            .run("commit", move |_| {
                super::set_identity(&dir, &id)?;
                super::head_oid(&dir)
            })
            .await
    }
}
