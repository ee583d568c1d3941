//! What the driver owns for a job beside its reporter and tasks: the workspace, the checkout
//! (fresh or warm), and where its completion is recorded; and the recording itself.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::git::{self, Checkout, FileLimit, GitAuth, GitRemote, Identity, Runner};
use crate::job::outcome::ResultBody;
use crate::job::{AgentJob, Mode};
use crate::worker::completion::{CompletionRecord, Pruning};
use crate::worker::context::JobContext;
use crate::worker::error::{FlowError, JobEnd, Stop, WorkerFault};
use crate::worker::warm::{warm_dir, WarmError, WarmLease};
use crate::worker::workspace::Workspace;

/// What the driver owns for a job beside its reporter and tasks.
pub(super) struct JobOwned {
    pub ws: Workspace,
    pub checkout: Checkout,
    /// The warm checkout the job holds, when it asked for one (`persistentCheckout`).
    pub warm: Option<WarmLease>,
    pub record: Option<CompletionRecord>,
}

impl JobOwned {
    pub(super) async fn prepare(
        ctx: &JobContext,
        job: &AgentJob,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> Result<Self, Stop> {
        let config = &ctx.config;
        // The worker's disk, not the job, is at fault: another worker (or this one, once an
        // operator fixed it) can run the job.
        let ws = Workspace::create(&config.work_dir(), &job.job_id, attempt).map_err(|e| {
            Stop::WorkerFault(WorkerFault {
                reason: "workspace",
                message: format!(
                    "cannot create the job workspace under {}: {e}",
                    config.work_dir().display()
                ),
            })
        })?;
        // No `file://` remote inside the work directory: other jobs' checkouts are there.
        let (urls, roots) = (
            [job.repo.clone_url.clone(), job.push_clone_url().to_owned()],
            vec![config.work_dir()],
        );
        tokio::task::spawn_blocking(move || {
            urls.iter()
                .try_for_each(|url| git::refuse_local_url_under(url, &roots))
        })
        .await
        .map_err(|e| FlowError::Task(e.to_string()))?
        .map_err(FlowError::Git)?;
        // Every fetch and push goes to the validated clone URL, whatever the checkout's config
        // says by then: the agent can rewrite `origin`. A bootstrap's is its target's.
        let remote = GitRemote::new(job.push_clone_url(), GitAuth::token(job.gh_token.clone()))
            .map_err(FlowError::Git)?;
        let identity = Identity {
            name: config.git.author_name.clone(),
            email: config.git.author_email.clone(),
        };
        let runner = Runner::new(ctx.metrics.clone(), config.git_timeout(), cancel.clone());
        // Explore and plain coding may work in the repository's warm checkout (seed 4.5); the
        // other flows always start from a fresh one.
        let warm_capable = matches!(
            (job.mode, &job.bootstrap, &job.merge_base),
            (Mode::Explore, _, _) | (Mode::Coding, None, None)
        );
        let warm = match job.persistent_checkout && warm_capable {
            true => {
                let dir = warm_dir(
                    &config.work_dir().join("warm"),
                    &job.repo.owner,
                    &job.repo.name,
                );
                match ctx.warm_locks.acquire(dir, cancel).await {
                    Ok(lease) => Some(lease),
                    Err(WarmError::Cancelled) => return Err(Stop::Interrupted),
                    Err(e) => return Err(Stop::Failed(FlowError::Warm(e))),
                }
            }
            false => None,
        };
        let dir = warm
            .as_ref()
            .map_or_else(|| ws.checkout(), |w| w.dir().to_path_buf());
        let checkout = Checkout::new(
            dir,
            remote,
            identity,
            FileLimit(config.git.max_file_bytes),
            runner,
        )
        .with_object_cache(git::ObjectCache::new(
            config.work_dir().join("objects"),
            config.git.object_cache_max_bytes,
            Duration::from_secs(config.git.object_cache_max_age_days.saturating_mul(86_400)),
        ));
        // Explore writes nothing to the remote: no record, not even its probe, so a read-only
        // token suffices.
        let recorded = config.git.completion_refs && job.mode != Mode::Explore;
        let record = recorded.then(|| CompletionRecord {
            ref_name: git::completion_ref(&config.git.completion_ref_prefix, &job.job_id),
            scratch: ws.root().join("completion"),
        });
        Ok(Self {
            ws,
            checkout,
            warm,
            record,
        })
    }

    /// Records the finished job on its remote before its result goes out, so a redelivery
    /// after a crash re-publishes this result instead of running the agent again. Returns the
    /// end to publish: this body, or the one another run of the job recorded first (a replay).
    pub(super) async fn record_completion(
        &self,
        ctx: &JobContext,
        body: ResultBody,
        head: &str,
    ) -> JobEnd {
        let Some(record) = &self.record else {
            return JobEnd::Finished(Box::new(body));
        };
        let json = match serde_json::to_string(&body) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the result for its completion record");
                return JobEnd::Finished(Box::new(body));
            }
        };
        let pruning = Pruning::new(&ctx.config.git, ctx.prune_gate.clone());
        match record.record(&self.checkout, head, json, &pruning).await {
            Some(winner) => {
                // One job, one outcome.
                tracing::warn!(
                    "another run of this job recorded its result first: publishing that one"
                );
                JobEnd::Replayed(winner)
            }
            None => JobEnd::Finished(Box::new(body)),
        }
    }
}
