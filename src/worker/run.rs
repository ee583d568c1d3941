//! The job driver. It owns everything a job has for the whole job: its workspace and checkout
//! (`owned`), its reporter, watchdog and helper tasks. It runs the flow the job's mode selects, turns what
//! happened into the terminal result body (seed 4.0.1, 3.6-3.7) or an interruption, records a
//! finished job's completion ref, and removes the workspace.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::job::outcome::{AgentResult, FailureCause, PhaseTimings, ResultBody};
use crate::job::{AgentJob, HarnessAuth, Mode};
use crate::redact::Redactor;
use crate::worker::context::{FlowEnd, JobContext, JobRun};
use crate::worker::error::{failure_detail, FlowError, JobEnd, Stop};
use crate::worker::events::{now_ms, EventSink};
use crate::worker::owned::JobOwned;
use crate::worker::reporter::JobReporter;
use crate::worker::tasks::JobTasks;
use crate::worker::watchdog::{KillReason, Watchdog, Windows};
use crate::worker::workspace::Workspace;
use crate::worker::{bootstrap, coding, conflict};

/// Runs one job to its end, its workspace removed.
pub async fn run_job(
    ctx: &JobContext,
    job: &AgentJob,
    attempt: u32,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) -> JobEnd {
    let (end, workspace) = run_job_keeping_workspace(ctx, job, attempt, sink, cancel).await;
    if let Some(ws) = workspace {
        ws.remove().await;
    }
    end
}

/// Runs one job to its end and hands its workspace back for the caller to remove once the
/// result is out: removing a large checkout takes a tenth of a second or more, which the
/// result need not wait for. Dropped unremoved (a panic), the workspace still removes itself.
pub(super) async fn run_job_keeping_workspace(
    ctx: &JobContext,
    job: &AgentJob,
    attempt: u32,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
) -> (JobEnd, Option<Workspace>) {
    let started_at = now_ms();
    let redactor = job.redactor();
    let _secrets = ctx.secrets.register(job_secrets(job));
    let tasks = JobTasks::new();
    let reporter = JobReporter::start(
        &job.job_id,
        attempt,
        redactor.clone(),
        sink,
        ctx.metrics.clone(),
        &tasks,
    );
    tracing::info!("job started");
    reporter.announce();

    // The job's own token: a watchdog cancels it; an interruption (shutdown, lost channel)
    // reaches it through its parent.
    let job_token = cancel.child_token();
    let watchdog = Watchdog::start(
        reporter.clock(),
        windows(&ctx.config),
        reporter.clone(),
        job_token.clone(),
        &tasks,
    );
    // A cancel stops the job as a watchdog would; a job cancelled before it came does not run.
    let registered = ctx
        .cancels
        .register(&job.job_id, watchdog.killer(&job_token));
    if registered.is_none() {
        tracing::info!("job cancelled before it ran: finishing it without running");
        watchdog.killer(&job_token).kill(KillReason::Cancelled);
    }
    let prepared = match registered {
        Some(_) => JobOwned::prepare(ctx, job, attempt, &job_token).await,
        None => Err(Stop::Interrupted),
    };
    let (owned, outcome) = match prepared {
        Ok(owned) => {
            let run = JobRun {
                ctx,
                job,
                ws: &owned.ws,
                checkout: &owned.checkout,
                warm: owned.warm.as_ref(),
                record: owned.record.as_ref(),
                reporter: &reporter,
                tasks: &tasks,
                cancel: &job_token,
            };
            let outcome = run_flow(&run).await;
            (Some(owned), outcome)
        }
        Err(stop) => (None, Err(stop)),
    };
    drop(registered);
    let killed = watchdog.stop().await;
    let ending = Ending {
        job,
        attempt,
        started_at,
        redactor: &redactor,
        reporter: &reporter,
    };
    let end = ending.conclude(outcome, killed);
    let end = match (end, &owned) {
        (
            Concluded::Ran {
                body,
                head: Some(head),
            },
            Some(owned),
        ) => owned.record_completion(ctx, *body, &head).await,
        (Concluded::Ran { body, .. }, _) => JobEnd::Finished(body),
        (Concluded::End(end), _) => end,
    };
    // The warm checkout's lease (when the job held one) ends here; only the scratch
    // workspace outlives the job's tasks.
    let workspace = owned.map(|owned| owned.ws);
    // Every follow-up and progress message goes out before the result.
    reporter.finish().await;
    tasks.end().await;
    (end, workspace)
}

async fn run_flow(run: &JobRun<'_>) -> Result<FlowEnd, Stop> {
    let job = run.job;
    match (job.mode, &job.bootstrap, &job.merge_base) {
        // With `infra` (the tester stand-up, seed 4.8, not built) it falls to the refusal below.
        (Mode::Explore, ..) if job.infra.is_none() => crate::worker::explore::run(run).await,
        (Mode::Coding, None, None) => coding::run(run).await,
        (Mode::Coding, Some(spec), _) => bootstrap::run(run, spec).await,
        (Mode::Coding, None, Some(base)) => conflict::run(run, base).await,
        (Mode::Explore, _, _) => Err(unsupported("explore")),
        (Mode::Preview, _, _) => Err(unsupported("preview")),
    }
}

/// The end of a run once the watchdog has spoken: a body still to record, or the end itself.
enum Concluded {
    Ran {
        body: Box<ResultBody>,
        head: Option<String>,
    },
    End(JobEnd),
}

/// What the result body of a job is made from, beside the flow's outcome.
struct Ending<'a> {
    job: &'a AgentJob,
    attempt: u32,
    started_at: u64,
    redactor: &'a Redactor,
    reporter: &'a JobReporter,
}

impl Ending<'_> {
    /// Turns the flow's outcome and the watchdog's verdict into the job's end. A watchdog's
    /// verdict wins over whatever the stopped flow reported (seed 3.6); a flow that returned
    /// normally keeps its result (Q20).
    fn conclude(&self, outcome: Result<FlowEnd, Stop>, killed: Option<KillReason>) -> Concluded {
        let failed_in = self.reporter.phase();
        let breadcrumb = self.reporter.breadcrumb();
        let cold = self.reporter.cold_start_note().unwrap_or_default();
        match (outcome, killed) {
            (Ok(FlowEnd::Replayed(body)), _) => {
                tracing::info!(
                    state = body.state.as_str(),
                    failure_cause = body.failure_cause.map_or("none", |c| c.as_str()),
                    "job already finished: publishing its recorded result again"
                );
                Concluded::End(JobEnd::Replayed(body))
            }
            (Err(Stop::WorkerFault(fault)), _) => {
                tracing::error!(reason = fault.reason, error = %fault, "this worker cannot run the job: giving it back to the queue");
                Concluded::End(JobEnd::WorkerFault(fault))
            }
            (Ok(FlowEnd::Ran { mut result, head }), _) => {
                let timings = self.reporter.finish_phases("done");
                let spent = self.reporter.ledger().spent();
                result.usage = spent.usage;
                result.call_metrics = spent.call_metrics;
                result.call_metrics_dropped = spent.call_metrics_dropped;
                result.tool_servers = spent.tool_servers;
                let result = redact_result(result, self.redactor);
                tracing::info!(
                    duration_ms = self.took_ms(),
                    state = "done",
                    failure_cause = result.failure_cause.map_or("none", |c| c.as_str()),
                    job_error = result.error.as_deref().unwrap_or(""),
                    "job finished"
                );
                let body = ResultBody::done(
                    &self.job.job_id,
                    self.attempt,
                    self.started_at,
                    now_ms(),
                    timings,
                    result,
                );
                Concluded::Ran {
                    body: Box::new(body),
                    head,
                }
            }
            (Err(_), Some(k)) => {
                let timings = self.reporter.finish_phases("failed");
                let detail = k.detail(&timings, &breadcrumb) + &cold;
                self.failed(timings, k.failure_cause(), k.message(), detail, k.label())
            }
            (Err(Stop::Interrupted), None) => {
                tracing::warn!(phase = %failed_in, "job interrupted: giving it back to the queue");
                Concluded::End(JobEnd::Interrupted)
            }
            (Err(Stop::Failed(e)), None) => {
                let timings = self.reporter.finish_phases("failed");
                let detail = failure_detail(&timings, &failed_in, &breadcrumb) + &cold;
                self.failed(timings, e.failure_cause(), e.to_string(), detail, "error")
            }
        }
    }

    /// A `failed` body, redacted, with its log line.
    fn failed(
        &self,
        timings: PhaseTimings,
        cause: FailureCause,
        error: String,
        detail: String,
        reason: &str,
    ) -> Concluded {
        let error = self.redactor.redact(&error);
        let detail = self.redactor.redact(&detail);
        tracing::error!(
            duration_ms = self.took_ms(),
            state = "failed",
            reason,
            failure_cause = cause.as_str(),
            error = %error,
            "job finished"
        );
        let mut body = ResultBody::failed(
            &self.job.job_id,
            self.attempt,
            self.started_at,
            now_ms(),
            timings,
            cause,
            error,
            Some(detail),
        );
        body.spent = Some(Box::new(self.reporter.ledger().spent()));
        Concluded::End(JobEnd::Finished(Box::new(body)))
    }

    fn took_ms(&self) -> u64 {
        now_ms().saturating_sub(self.started_at)
    }
}

/// The watchdogs' windows the configuration sets.
fn windows(config: &crate::config::Config) -> Windows {
    let ms = Duration::from_millis;
    Windows {
        inactivity: ms(config.job.inactivity_ms),
        max_duration: ms(config.job.max_duration_ms),
        tool_silence: ms(config.job.tool_silence_ms),
        cold_start: ms(config.job.cold_start_ms),
    }
}

fn unsupported(flow: &str) -> Stop {
    Stop::Failed(FlowError::Unsupported(format!(
        "{flow} jobs are not supported by this worker yet"
    )))
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
    v.extend(
        job.test_secrets
            .iter()
            .chain(&job.generator_secrets)
            .map(|e| e.value.clone()),
    );
    v.extend(job.package_registries.iter().map(|r| r.token.clone()));
    v.extend(
        job.mcp_servers
            .iter()
            .flat_map(|s| s.secret_values())
            .cloned(),
    );
    v
}

/// Every string of a result passes the job's redactor before it leaves the worker: the
/// summary as prose (its counts and words are kept, Q16), the error and the URL strictly.
fn redact_result(mut r: AgentResult, redactor: &Redactor) -> AgentResult {
    if let Some(s) = r.summary.as_mut() {
        *s = redactor.redact_prose(s);
    }
    for field in [&mut r.error, &mut r.pr_url] {
        if let Some(s) = field.as_mut() {
            *s = redactor.redact(s);
        }
    }
    r
}
