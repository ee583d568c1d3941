//! The consume loop: one session per broker connection (connect, declare, publish, consume),
//! reconnection with backoff when a connection or channel is lost, and the drain on shutdown
//! or once `worker.max_jobs` deliveries were taken.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::budget::Budget;
use super::context::JobContext;
use super::dead_letters::finish_dead_letter;
use super::events::{CurrentSink, EventSink};
use super::session::{open_session, Session};
use super::settle::{finish_delivery, Finish};
use super::{startup, workspace, Held, JobTask, Running, WorkerError};
use crate::broker::{BrokerError, JobDelivery};
use crate::config::Config;
use crate::job::accept_job;
use crate::metrics::Metrics;
use crate::telemetry::SecretRegistry;

/// How often the consume loop checks that its connection and channels are still open: a lost
/// channel is noticed within this, even when no delivery arrives.
const HEALTH_CHECK: Duration = Duration::from_millis(500);

/// Why a session stopped consuming.
enum SessionEnd {
    Shutdown,
    /// The job limit is reached and every job taken has finished.
    Done,
    Lost(String),
}

/// Consumes jobs until `shutdown` is cancelled, then drains: in-flight jobs get
/// `worker.shutdown_grace_ms`, whatever still runs is interrupted and requeued. A lost
/// connection or channel interrupts the jobs it carried (their deliveries go back to the
/// queue) and the worker reconnects, re-declares and consumes again. With `worker.max_jobs`,
/// it stops taking jobs at the limit, lets the ones it took finish, and returns.
///
/// A failed start-up check (see `startup`) is an error, or with `worker.startup_checks =
/// "not-ready"` a `/readyz` reason until the checks pass.
pub async fn run_worker(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    secrets: SecretRegistry,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    metrics.slots.set(i64::from(config.worker.concurrency));
    if !startup::wait_until_able(&config, &metrics, &shutdown).await? {
        return Ok(());
    }
    let ctx = JobContext::start(config.clone(), metrics.clone(), secrets).await?;
    sweep_leftovers(&config).await;
    let tracker = TaskTracker::new();
    let interrupt = CancellationToken::new();
    let running: Running = Arc::default();
    let policy = config.validation_policy();
    let sink = Arc::new(CurrentSink::default());
    let budget = Arc::new(Budget::new(config.worker.max_jobs));
    let mut sessions = 0u64;

    loop {
        if budget.stopped() {
            // Reached the limit while disconnected: finish what was taken.
            finish_taken(&config, &tracker, &interrupt, &shutdown).await;
            return Ok(());
        }
        let prefetch = budget.prefetch(config.worker.concurrency);
        let mut session = match open_session(&config, prefetch, &shutdown).await {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                interrupt.cancel();
                tracker.close();
                tracker.wait().await;
                return Err(e.into());
            }
        };
        sessions += 1;
        if sessions > 1 {
            metrics.amqp_reconnects.inc();
            tracing::info!("reconnected to the broker");
        }
        budget.opened(prefetch, session.consumer.canceller()).await;
        sink.set(Some(session.sink.clone()));
        metrics.amqp_connected.set(1);
        metrics.set_ready(true);
        tracing::info!(queue = %config.amqp.topology.jobs_queue, concurrency = config.worker.concurrency, prefetch, max_jobs = config.worker.max_jobs, "worker consuming");

        // Cancelled when this session is lost: its jobs' deliveries are gone with it.
        let lost = interrupt.child_token();
        let shared = Shared {
            ctx: &ctx,
            sink: &sink,
            tracker: &tracker,
            running: &running,
            policy: &policy,
            budget: &budget,
        };
        let end = consume(&mut session, &shared, &lost, &shutdown).await;
        metrics.set_ready(false);
        match end {
            SessionEnd::Done => {
                tracing::info!(
                    max_jobs = config.worker.max_jobs,
                    "took every job allowed and finished them: stopping"
                );
                sink.set(None);
                metrics.amqp_connected.set(0);
                let _ = session.conn.close(200, "job limit reached".into()).await;
                return Ok(());
            }
            SessionEnd::Shutdown => {
                for consumer in [&session.consumer, &session.dead] {
                    if let Err(e) = consumer.cancel().await {
                        tracing::warn!(error = %e, "cannot cancel the consumer");
                    }
                }
                // The publisher stays up through the drain: a job that finishes within the
                // grace publishes its result and is acked (contract 6).
                drain(&config, &tracker, &interrupt).await;
                sink.set(None);
                metrics.amqp_connected.set(0);
                let _ = session.conn.close(200, "worker shutdown".into()).await;
                return Ok(());
            }
            SessionEnd::Lost(why) => {
                sink.set(None);
                metrics.amqp_connected.set(0);
                tracing::warn!(reason = %why, in_flight = tracker.len(), "lost the broker: interrupting this session's jobs and reconnecting");
                lost.cancel();
                let _ = session.conn.close(200, "session lost".into()).await;
            }
        }
    }
    // Shut down while disconnected.
    drain(&config, &tracker, &interrupt).await;
    Ok(())
}

/// A worker killed mid-job leaves its workspace (and a per-run config home) behind: remove
/// those of dead processes before taking new work.
async fn sweep_leftovers(config: &Config) {
    let mut roots = vec![config.work_dir().join("jobs")];
    roots.extend(config.codex_home_root());
    let removed = tokio::task::spawn_blocking(move || {
        roots
            .iter()
            .map(|r| workspace::sweep_stale(r))
            .sum::<usize>()
    })
    .await
    .unwrap_or_default();
    if removed > 0 {
        tracing::info!(removed, "removed what a stopped worker left behind");
    }
}

/// Waits for the jobs taken to finish on their own; a shutdown meanwhile drains as usual.
async fn finish_taken(
    config: &Config,
    tracker: &TaskTracker,
    interrupt: &CancellationToken,
    shutdown: &CancellationToken,
) {
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => {}
        _ = shutdown.cancelled() => drain(config, tracker, interrupt).await,
    }
}

async fn drain(config: &Config, tracker: &TaskTracker, interrupt: &CancellationToken) {
    tracker.close();
    let grace = Duration::from_millis(config.worker.shutdown_grace_ms);
    tracing::info!(
        in_flight = tracker.len(),
        grace_ms = grace.as_millis() as u64,
        "draining"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("grace period over: interrupting the jobs still running");
        interrupt.cancel();
        tracker.wait().await;
    }
}

enum Step {
    Shutdown,
    Done,
    Check,
    Next(Box<Option<Result<JobDelivery, BrokerError>>>),
    Dead(Box<Option<Result<JobDelivery, BrokerError>>>),
    Control(Option<Result<String, BrokerError>>),
}

/// What every session of the consume loop shares.
struct Shared<'a> {
    ctx: &'a JobContext,
    sink: &'a Arc<CurrentSink>,
    tracker: &'a TaskTracker,
    running: &'a Running,
    policy: &'a crate::job::ValidationPolicy,
    budget: &'a Arc<Budget>,
}

async fn consume(
    session: &mut Session,
    shared: &Shared<'_>,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let Shared {
        ctx,
        sink,
        tracker,
        running,
        policy,
        budget,
    } = *shared;
    let config = &ctx.config;
    let metrics = &ctx.metrics;
    let mut health = tokio::time::interval(HEALTH_CHECK);
    // Past the job limit: no delivery is taken, cancels still are, until the jobs finish.
    let mut taking = true;
    loop {
        if taking && budget.stopped() {
            taking = false;
            // Not consuming any more: a probe should not count on this worker.
            metrics.set_ready(false);
            stop_taking(session, tracker).await;
        }
        let step = tokio::select! {
            _ = shutdown.cancelled() => Step::Shutdown,
            _ = tracker.wait(), if !taking => Step::Done,
            _ = health.tick() => Step::Check,
            next = session.consumer.next(), if taking => Step::Next(Box::new(next)),
            dead = session.dead.next(), if taking => Step::Dead(Box::new(dead)),
            control = session.control.next() => Step::Control(control),
        };
        let next = match step {
            Step::Shutdown => return SessionEnd::Shutdown,
            Step::Done => return SessionEnd::Done,
            // The consumer was cancelled to keep within the job limit.
            Step::Next(next) if next.is_none() && budget.stopped() => continue,
            Step::Check if session.healthy() => continue,
            Step::Check => return SessionEnd::Lost("a channel or the connection closed".into()),
            Step::Next(next) => *next,
            Step::Control(Some(Ok(job_id))) => {
                let here = ctx.cancels.cancel(&job_id);
                let label = if here { "running" } else { "remembered" };
                metrics.cancels_received.with_label_values(&[label]).inc();
                tracing::info!(jobId = %job_id, running_here = here, "job.cancel received");
                continue;
            }
            Step::Control(Some(Err(e))) => {
                return SessionEnd::Lost(format!("control consumer failed: {e}"))
            }
            Step::Control(None) => {
                return SessionEnd::Lost("the broker ended the control consumer".into())
            }
            Step::Dead(dead) => match *dead {
                Some(Ok(delivery)) => {
                    let span = tracing::info_span!("dead_letter");
                    tracker.spawn(
                        finish_dead_letter(
                            ctx.clone(),
                            sink.clone(),
                            policy.clone(),
                            delivery,
                            lost.child_token(),
                        )
                        .instrument(span),
                    );
                    continue;
                }
                Some(Err(e)) => {
                    return SessionEnd::Lost(format!("dead-letter consumer failed: {e}"))
                }
                None => {
                    return SessionEnd::Lost("the broker ended the dead-letter consumer".into())
                }
            },
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return SessionEnd::Lost(format!("consumer failed: {e}")),
            None => return SessionEnd::Lost("the broker ended the consumer".into()),
        };
        let slot = metrics.hold_slot();
        if budget.took() {
            tracing::info!(
                max_jobs = config.worker.max_jobs,
                "took the last job allowed: finishing the jobs taken, then stopping"
            );
        }
        let attempt = delivery.attempt;
        match accept_job(&delivery.body, policy) {
            Err(invalid) => {
                let sink: Arc<dyn EventSink> = sink.clone();
                let metrics = metrics.clone();
                let (attempts, limit) = (
                    config.amqp.publish_attempts,
                    config.amqp.topology.delivery_limit,
                );
                let budget = budget.clone();
                tracker.spawn(async move {
                    let _slot = slot;
                    let finish = Finish {
                        metrics: &metrics,
                        sink: sink.as_ref(),
                        publish_attempts: attempts,
                        delivery_limit: limit,
                    };
                    let end = finish.announce_invalid(&invalid, attempt).await;
                    budget.before_settle().await;
                    finish_delivery(&metrics, end, &delivery, Vec::new(), Some(invalid.kind)).await;
                });
            }
            Ok(job) => {
                let delivery = {
                    let mut r = running.lock().unwrap_or_else(|p| p.into_inner());
                    match r.get_mut(&job.job_id) {
                        Some(waiting) => {
                            tracing::info!(jobId = %job.job_id, attempt, "duplicate delivery of a running job: held until it settles");
                            waiting.push(Held {
                                job,
                                delivery,
                                cancel: lost.child_token(),
                                slot,
                            });
                            None
                        }
                        None => {
                            r.insert(job.job_id.clone(), Vec::new());
                            Some((job, delivery, slot))
                        }
                    }
                };
                let Some((job, delivery, slot)) = delivery else {
                    continue;
                };
                let task = JobTask {
                    ctx: ctx.clone(),
                    sink: sink.clone(),
                    running: running.clone(),
                    tracker: tracker.clone(),
                    cancel: lost.child_token(),
                    budget: budget.clone(),
                };
                task.spawn(job, delivery, slot);
            }
        }
    }
}

/// Stops the jobs and dead-letter consumers; the tracker closes so its wait ends with the jobs.
async fn stop_taking(session: &Session, tracker: &TaskTracker) {
    for consumer in [&session.consumer, &session.dead] {
        if let Err(e) = consumer.cancel().await {
            tracing::debug!(error = %e, "cannot cancel a consumer at the job limit");
        }
    }
    tracker.close();
}
