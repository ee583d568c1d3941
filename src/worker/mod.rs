//! The worker: the consume loop, the flow of one job, and how its delivery is finished
//! (contract section 4).
//!
//! - `consume`: the consume loop, reconnection and the drain ([`run_worker`]); `session`: one
//!   connection's publisher and consumers; `budget`: `worker.max_jobs`.
//! - [`startup`]: the checks that the worker can work (its work dir, the agents' programs).
//! - [`context`]: what a flow works with ([`context::JobContext`], [`context::JobRun`]) and
//!   hands back ([`context::FlowEnd`]).
//! - [`run`]: the job driver: it owns the job's workspace, checkout, reporter, watchdog and
//!   helper tasks, runs the flow, builds the result body and records the completion.
//! - [`coding`]: the ordinary coding flow, in phases; `agent_run`: the agent step flows share.
//! - [`conflict`]: conflict resolution (the base merged into a pull request's branch, conflicts
//!   resolved by the agent, the merge pushed with two parents).
//! - [`bootstrap`]: a new repository from a reference clone or from scratch, as one fresh
//!   commit force-pushed to the target.
//! - `dependencies`: the dependency install before the agent, its artifacts kept out of git.
//! - `pull_request`: the repository's PR template offered to the agent, the agent's
//!   description read, the PR opened or the open one refreshed.
//! - `validation`: pre-PR validation checks with the agent's repair loop.
//! - `commands`: the job's own shell commands (install, checks), run and watched as its agent.
//! - [`cancels`]: the jobs running here to stop on a `job.cancel`, and the cancelled ids
//!   remembered so a later delivery does not run.
//! - [`error`]: a job's failures and how its run ends (interruption is an outcome).
//! - [`settle`]: publishing a job's end or a refusal, the ack policy, settling and counting.
//! - [`explore`]: the read-only explore flow, prose or a structured document.
//! - `completion`: reading and recording a job's completion ref, one outcome per job when two
//!   runs race, and pruning old refs.
//! - `dead_letters`: the result of a job that died at the delivery limit.
//! - [`reporter`]: the per-job progress and follow-up publisher; `ledger`: the job's model
//!   calls, tool spans and token total, scrubbed, bounded and numbered job-wide.
//! - [`tasks`]: a job's helper tasks, in its span, ended with it.
//! - [`events`]: where events go (broker, stdout, memory).
//! - [`watchdog`]: the max-duration cap and the agent-inactivity window.
//! - [`workspace`]: the job's private checkout and HOME.
//! - [`warm`]: where warm checkouts live, and the locks that give one to one job at a time.

mod agent_run;
pub mod bootstrap;
mod budget;
pub mod cancels;
pub mod coding;
mod commands;
mod completion;
pub mod conflict;
mod consume;
pub mod context;
mod dead_letters;
mod dependencies;
pub mod error;
pub mod events;
pub mod explore;
mod ledger;
mod owned;
mod pull_request;
pub mod reporter;
pub mod run;
mod session;
pub mod settle;
pub mod startup;
pub mod tasks;
mod validation;
pub mod warm;
pub mod watchdog;
pub mod workspace;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_lite::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::broker::{BrokerError, JobDelivery, Topology};
use crate::config::Config;
use crate::job::AgentJob;
use crate::metrics::SlotGuard;
use budget::Budget;
use context::JobContext;
use error::JobEnd;
use events::EventSink;
use run::run_job_keeping_workspace;
use settle::{finish_delivery, worker_failure, DeliveryEnd, Finish};

pub use consume::run_worker;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Startup(#[from] startup::StartupError),
}

/// The configured topology, with the consumer timeout the job limits call for: above the max
/// job duration, so the broker never takes back a job that is still within its time budget.
pub fn topology(config: &Config) -> Topology {
    Topology {
        consumer_timeout_ms: Some(
            config
                .job
                .max_duration_ms
                .saturating_add(config.worker.shutdown_grace_ms)
                .saturating_add(15 * 60 * 1000),
        ),
        ..config.amqp.topology.clone()
    }
}

/// Deliveries of a `jobId` that arrived while that job was already running here; they are
/// settled with the running one (contract 4.6).
type Running = Arc<Mutex<HashMap<String, Vec<Held>>>>;

/// A delivery held while another delivery of its job runs, with the token of the session it
/// came on.
struct Held {
    job: AgentJob,
    delivery: JobDelivery,
    cancel: CancellationToken,
    slot: SlotGuard,
}

/// The span every line a job causes is logged in: its fields appear on each line (contract 8).
pub fn job_span(job: &AgentJob, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        "job",
        jobId = %job.job_id,
        attempt,
        mode = job.mode.as_str(),
        repo = %job.repo_slug(),
        branch = %job.branch,
    )
}

/// One delivery of a valid job, from its run to its settle.
struct JobTask {
    ctx: JobContext,
    sink: Arc<dyn EventSink>,
    running: Running,
    tracker: TaskTracker,
    cancel: CancellationToken,
    budget: Arc<Budget>,
}

impl JobTask {
    /// Runs the delivery among the worker's tasks, in the job's span; `slot` is released
    /// once it is settled.
    fn spawn(self, job: AgentJob, delivery: JobDelivery, slot: SlotGuard) {
        let span = job_span(&job, delivery.attempt);
        let tracker = self.tracker.clone();
        tracker.spawn(self.run(job, delivery, slot).instrument(span));
    }

    async fn run(self, job: AgentJob, delivery: JobDelivery, slot: SlotGuard) {
        let m = self.ctx.metrics.clone();
        let mode = job.mode.as_str();
        m.jobs_received.with_label_values(&[mode]).inc();
        m.jobs_in_flight.inc();
        let started = Instant::now();
        let started_at = events::now_ms();
        let attempt = delivery.attempt;
        // A bug that panics inside one job must not leave its delivery unsettled until the
        // worker restarts: it becomes a failed result like any other failure.
        let (end, workspace) = AssertUnwindSafe(run_job_keeping_workspace(
            &self.ctx,
            &job,
            attempt,
            self.sink.clone(),
            self.cancel,
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "the job's task panicked");
            let end = JobEnd::Finished(Box::new(worker_failure(
                &job.job_id,
                attempt,
                started_at,
                "the worker failed internally while running this job".into(),
            )));
            (end, None)
        });
        let finish = Finish {
            metrics: &m,
            sink: self.sink.as_ref(),
            publish_attempts: self.ctx.config.amqp.publish_attempts,
            delivery_limit: self.ctx.config.amqp.topology.delivery_limit,
        };
        let outcome = finish
            .publish_end(
                mode,
                attempt,
                &job.job_id,
                started_at,
                started.elapsed(),
                end,
            )
            .await;
        // After the result: the job's scratch checkout is nobody's business any more.
        if let Some(ws) = workspace {
            ws.remove().await;
        }
        m.jobs_in_flight.dec();
        let mut held = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.job_id)
            .unwrap_or_default();
        // A redelivery that came in on a live session while this run wound down after an
        // interruption (a lost connection) takes over, instead of being requeued too, which
        // would cost it an attempt. A shutdown cancels its token: then it goes back as well.
        let successor = match outcome {
            DeliveryEnd::Interrupted => held
                .iter()
                .position(|h| !h.cancel.is_cancelled() && h.delivery.can_settle())
                .map(|i| held.remove(i)),
            _ => None,
        };
        let (duplicates, slots): (Vec<_>, Vec<_>) = match &successor {
            Some(next) => {
                self.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(next.job.job_id.clone(), held);
                (Vec::new(), Vec::new())
            }
            None => held.into_iter().map(|h| (h.delivery, h.slot)).unzip(),
        };
        for _ in 0..=duplicates.len() {
            self.budget.before_settle().await;
        }
        finish_delivery(&m, outcome, &delivery, duplicates, None).await;
        drop((slot, slots));
        if let Some(next) = successor {
            tracing::info!(
                attempt = next.delivery.attempt,
                "a redelivery held during the interruption runs now"
            );
            let task = JobTask {
                cancel: next.cancel,
                ..self
            };
            task.spawn(next.job, next.delivery, next.slot);
        }
    }
}

fn hostname() -> String {
    crate::sys::hostname().unwrap_or_else(|_| "unknown".into())
}
