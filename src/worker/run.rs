//! The job driver: runs the flow a job's mode selects, tracks its phases, and turns whatever
//! happened into the terminal result body (seed 4.0.1, 3.6-3.7), or into an interruption that
//! publishes nothing and gives the delivery back.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::AgentError;
use crate::config::Config;
use crate::forge::PrError;
use crate::git::GitError;
use crate::job::outcome::{AgentResult, FailureCause, JobState, PhaseTimings, ResultBody};
use crate::job::{AgentJob, HarnessAuth, Mode};
use crate::metrics::Metrics;
use crate::redact::Redactor;
use crate::telemetry::SecretRegistry;
use crate::worker::coding::{self, CodingEnd};
use crate::worker::completion::PruneGate;
use crate::worker::events::{now_ms, EventSink};
use crate::worker::reporter::JobReporter;
use crate::worker::watchdog::{KillReason, Watchdog};
use crate::worker::workspace::ServiceDirError;

/// What every job shares: configuration, metrics, the HTTP client for the PR API.
#[derive(Clone)]
pub struct JobContext {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Built on first use: most jobs open no PR, and an idle worker should not hold the TLS
    /// roots in memory.
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    pub secrets: SecretRegistry,
    /// When this worker last pruned old completion refs from each remote.
    pub(crate) prune_gate: Arc<PruneGate>,
}

impl JobContext {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>, secrets: SecretRegistry) -> Self {
        Self {
            config,
            metrics,
            http: Arc::default(),
            secrets,
            prune_gate: Arc::default(),
        }
    }
}

impl JobContext {
    /// The HTTP client for the PR/MR API (one per worker, so connections are reused).
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(crate::forge::http_client)
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum JobEnd {
    /// A terminal result, to publish and then ack.
    Finished(Box<ResultBody>),
    /// Stopped from outside (shutdown, lost channel): committed work was pushed as a checkpoint,
    /// no result is published, the delivery goes back to the queue.
    Interrupted,
}

/// A failure of a flow, mapped to the contract's causes by [`FlowError::failure_cause`].
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Pr(#[from] PrError),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    ServiceDir(#[from] ServiceDirError),
    #[error("a blocking task failed: {0}")]
    Task(String),
    #[error("the job was interrupted")]
    Interrupted,
}

impl FlowError {
    pub fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> FlowError {
        move |source| FlowError::Io { context, source }
    }

    pub fn failure_cause(&self) -> FailureCause {
        match self {
            // The repository's own layout makes the checkout unusable.
            FlowError::Git(_) | FlowError::ServiceDir(_) => FailureCause::Git,
            FlowError::Agent(e) => e.failure_cause(),
            FlowError::Pr(e) => e.failure_cause(),
            FlowError::Io { .. } | FlowError::Unsupported(_) | FlowError::Task(_) => {
                FailureCause::Agent
            }
            // Never published: an interruption gives the delivery back instead.
            FlowError::Interrupted => FailureCause::Agent,
        }
    }
}

/// Runs one job to its end.
pub async fn run_job(
    ctx: &JobContext,
    job: &AgentJob,
    attempt: u32,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) -> JobEnd {
    let started_at = now_ms();
    let redactor = job.redactor();
    let _secrets = ctx.secrets.register(job_secrets(job));
    let reporter = JobReporter::start(
        &job.job_id,
        attempt,
        redactor.clone(),
        sink,
        ctx.metrics.clone(),
    );
    tracing::info!("job started");
    reporter.announce();

    // The job's own token: a watchdog cancels it; an interruption (shutdown, lost channel)
    // reaches it through its parent.
    let job_token = cancel.child_token();
    let watchdog = Watchdog::start(
        reporter.clock(),
        Duration::from_millis(ctx.config.job.inactivity_ms),
        Duration::from_millis(ctx.config.job.max_duration_ms),
        reporter.clone(),
        job_token.clone(),
    );
    let outcome = match (job.mode, &job.bootstrap, &job.merge_base) {
        (Mode::Coding, None, None) => coding::run(ctx, job, attempt, &reporter, &job_token).await,
        (Mode::Coding, Some(_), _) => Err(unsupported("bootstrap")),
        (Mode::Coding, None, Some(_)) => Err(unsupported("conflict-resolution")),
        (Mode::Explore, _, _) => Err(unsupported("explore")),
        (Mode::Preview, _, _) => Err(unsupported("preview")),
    };
    let killed = watchdog.stop().await;
    let failed_in = reporter.phase();
    let breadcrumb = reporter.breadcrumb();
    // A watchdog's verdict wins over whatever the stopped flow reported (seed 3.6); a flow that
    // returned normally keeps its result (Q20).
    let outcome = match (outcome, killed) {
        (Err(_), Some(reason)) => Err(Killed(reason)),
        (Err(e), None) => Err(Failed(e)),
        (Ok(r), _) => Ok(r),
    };

    let mut completion = None;
    let body = match outcome {
        Ok(CodingEnd::AlreadyFinished(body)) => {
            reporter.finish().await;
            return JobEnd::Finished(body);
        }
        Err(Failed(FlowError::Interrupted)) => {
            reporter.finish().await;
            tracing::warn!(phase = %failed_in, "job interrupted: giving it back to the queue");
            return JobEnd::Interrupted;
        }
        Ok(CodingEnd::Ran {
            result,
            completion: record,
        }) => {
            completion = record;
            let timings = reporter.finish_phases("done");
            let result = redact_result(result, &redactor);
            tracing::info!(
                duration_ms = now_ms().saturating_sub(started_at),
                job_error = result.error.as_deref(),
                "job finished"
            );
            ResultBody {
                job_id: job.job_id.clone(),
                attempt,
                state: JobState::Done,
                started_at,
                finished_at: now_ms(),
                phase_timings_ms: timings,
                failure_cause: result.error.as_ref().and(result.failure_cause),
                result: Some(result),
                error: None,
                detail: None,
            }
        }
        Err(end) => {
            let timings = reporter.finish_phases("failed");
            let (cause, error, detail, reason) = match end {
                Killed(k) => (
                    k.failure_cause(),
                    k.message(),
                    k.detail(&timings, &breadcrumb),
                    k.label(),
                ),
                Failed(e) => (
                    e.failure_cause(),
                    e.to_string(),
                    failure_detail(&timings, &failed_in, &breadcrumb),
                    "error",
                ),
            };
            let error = redactor.redact(&error);
            let detail = redactor.redact(&detail);
            tracing::error!(
                duration_ms = now_ms().saturating_sub(started_at),
                reason,
                failure_cause = cause.as_str(),
                error = %error,
                "job failed"
            );
            ResultBody {
                job_id: job.job_id.clone(),
                attempt,
                state: JobState::Failed,
                started_at,
                finished_at: now_ms(),
                phase_timings_ms: timings,
                result: None,
                error: Some(error),
                failure_cause: Some(cause),
                detail: Some(detail),
            }
        }
    };
    // The finished job is recorded on its remote before its result goes out, so a redelivery
    // after a crash re-publishes this result instead of running the agent again.
    let mut body = body;
    if let Some(c) = completion {
        match serde_json::to_string(&body) {
            Ok(json) => {
                if let Some(winner) = c.record(json).await {
                    // Another run of this job recorded its result first: one job, one outcome.
                    tracing::warn!(
                        "another run of this job recorded its result first: publishing that one"
                    );
                    body = *winner;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the result for its completion record")
            }
        }
    }
    // Every follow-up and progress message goes out before the result.
    reporter.finish().await;
    JobEnd::Finished(Box::new(body))
}

/// How a flow ended badly: killed by a watchdog, or failed on its own.
enum End {
    Killed(KillReason),
    Failed(FlowError),
}
use End::{Failed, Killed};

fn unsupported(flow: &str) -> FlowError {
    FlowError::Unsupported(format!("{flow} jobs are not supported by this worker yet"))
}

fn job_secrets(job: &AgentJob) -> Vec<crate::redact::Secret> {
    let mut v = vec![job.gh_token.clone()];
    match &job.auth {
        HarnessAuth::Pi { session_token, .. } => v.push(session_token.clone()),
        HarnessAuth::Subscription {
            subscription_token: Some(t),
            ..
        } => v.push(t.clone()),
        HarnessAuth::Subscription { .. } => {}
    }
    v
}

/// `Phase timings: clone=3s, agent=41s. Failed in agent phase; <breadcrumb>.` (seed 3.7).
pub fn failure_detail(timings: &PhaseTimings, phase: &str, breadcrumb: &str) -> String {
    let list = timings.describe();
    if list.is_empty() {
        format!("Failed in {phase} phase; {breadcrumb}.")
    } else {
        format!("Phase timings: {list}. Failed in {phase} phase; {breadcrumb}.")
    }
}

/// Every string of a result passes the job's redactor before it leaves the worker.
fn redact_result(mut r: AgentResult, redactor: &Redactor) -> AgentResult {
    for field in [&mut r.summary, &mut r.error, &mut r.pr_url] {
        if let Some(s) = field.as_mut() {
            *s = redactor.redact(s);
        }
    }
    r
}

/// A `failed` result for a message that failed validation (contract 4.2).
pub fn invalid_job_result(job_id: &str, attempt: u32, message: &str) -> ResultBody {
    let now = now_ms();
    ResultBody {
        job_id: job_id.to_owned(),
        attempt,
        state: JobState::Failed,
        started_at: now,
        finished_at: now,
        phase_timings_ms: PhaseTimings::default(),
        result: None,
        error: Some(Redactor::patterns_only().redact(message)),
        failure_cause: Some(FailureCause::InvalidJob),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_detail_names_the_phase_timings_and_the_breadcrumb() {
        let mut t = PhaseTimings::default();
        t.add("starting", 100);
        t.add("clone", 2500);
        t.add("failed", 0);
        assert_eq!(
            failure_detail(&t, "clone", "no tool had completed yet"),
            "Phase timings: starting=0s, clone=3s, failed=0s. Failed in clone phase; no tool had completed yet."
        );
        assert_eq!(
            failure_detail(&PhaseTimings::default(), "starting", "x"),
            "Failed in starting phase; x."
        );
    }
}
