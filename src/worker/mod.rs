//! The worker: the consume loop, the flow of one job, and the one function that decides how a
//! delivery is settled (contract section 4).
//!
//! - [`run`]: the job driver (phases, result body, failure mapping).
//! - [`coding`]: the ordinary coding flow.
//! - [`events`]: where events go (broker, stdout, memory) and the per-job reporter.
//! - [`watchdog`]: the max-duration cap and the agent-inactivity window.
//! - [`workspace`]: the job's private checkout and HOME.

pub mod coding;
pub mod events;
pub mod run;
pub mod watchdog;
pub mod workspace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::broker::{self, BrokerError, JobConsumer, JobDelivery, Publisher, Settlement, Topology};
use crate::config::Config;
use crate::job::outcome::{Event, JobState, ResultBody};
use crate::job::{parse_job, AgentJob, InvalidJob};
use crate::metrics::Metrics;
use crate::telemetry::SecretRegistry;
use events::{publish_with_retry, BrokerSink, CurrentSink, EventSink};
use run::{invalid_job_result, run_job, JobContext, JobEnd};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// How a delivery ended, as far as acknowledgement is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEnd {
    /// The job's terminal result was published and confirmed.
    ResultConfirmed,
    /// The result could not be published after retries (contract 4.3).
    ResultUnpublished,
    /// Interrupted from outside (contract 4.4): committed work pushed, nothing published.
    Interrupted,
    /// Invalid, and its `invalid-job` result was confirmed or it had no readable `jobId`.
    InvalidSettled,
    /// Invalid, and its `invalid-job` result could not be published.
    InvalidUnannounced,
}

/// The acknowledgement policy, in one place (contract section 4).
pub fn settlement(end: DeliveryEnd) -> Settlement {
    match end {
        DeliveryEnd::ResultConfirmed => Settlement::Ack,
        // Requeued: the redelivery resumes the branch and publishes the same outcome.
        DeliveryEnd::ResultUnpublished => Settlement::Requeue,
        DeliveryEnd::Interrupted => Settlement::Requeue,
        DeliveryEnd::InvalidSettled => Settlement::DeadLetter,
        // Back to the queue so the refusal is announced later; the delivery limit still ends
        // a message that can never be announced in the dead-letter queue.
        DeliveryEnd::InvalidUnannounced => Settlement::Requeue,
    }
}

/// The broker objects named by the configuration.
pub fn topology(config: &Config) -> Topology {
    let a = &config.amqp;
    Topology {
        jobs_queue: a.jobs_queue.clone(),
        dead_exchange: a.dead_exchange.clone(),
        dead_queue: a.dead_queue.clone(),
        events_exchange: a.events_exchange.clone(),
        results_queue: a.results_queue.clone(),
        followups_queue: a.followups_queue.clone(),
        progress_queue: a.progress_queue.clone(),
        delivery_limit: a.delivery_limit,
        progress_max_length: a.progress_max_length,
        // Above the max job duration, so the broker never takes back a job that is still
        // within its time budget.
        consumer_timeout_ms: Some(
            config
                .job
                .max_duration_ms
                .saturating_add(config.worker.shutdown_grace_ms)
                .saturating_add(15 * 60 * 1000),
        ),
    }
}

/// Deliveries of a `jobId` that arrived while that job was already running here; they are
/// settled with the running one (contract 4.6).
type Running = Arc<Mutex<HashMap<String, Vec<JobDelivery>>>>;

/// One connection to the broker with its publisher and consumer.
struct Session {
    conn: lapin::Connection,
    publisher: Publisher,
    sink: Arc<dyn EventSink>,
    consumer: JobConsumer,
}

impl Session {
    async fn open(config: &Config) -> Result<Self, BrokerError> {
        let name = if config.amqp.connection_name.trim().is_empty() {
            format!(
                "executor-harness pid={} host={}",
                std::process::id(),
                hostname()
            )
        } else {
            config.amqp.connection_name.trim().to_owned()
        };
        let conn = broker::connect(&config.amqp.url, &name, config.amqp.heartbeat_secs).await?;
        let topo = topology(config);
        if config.amqp.declare {
            broker::declare_topology(&conn, &topo).await?;
        }
        let confirm_timeout = Duration::from_millis(config.amqp.confirm_timeout_ms);
        let publisher = Publisher::open(&conn, confirm_timeout).await?;
        let sink: Arc<dyn EventSink> = Arc::new(BrokerSink {
            publisher: publisher.clone(),
            exchange: config.amqp.events_exchange.clone(),
        });
        let consumer = JobConsumer::open(
            &conn,
            &topo.jobs_queue,
            config.worker.concurrency,
            &format!("executor-harness-{}", std::process::id()),
        )
        .await?;
        Ok(Self {
            conn,
            publisher,
            sink,
            consumer,
        })
    }

    /// Connection, consumer channel and publisher channel all still open.
    fn healthy(&self) -> bool {
        self.conn.status().connected() && self.consumer.is_open() && self.publisher.is_open()
    }
}

/// Opens a session, retrying with backoff while the failure can pass (the broker is down or
/// restarting). A failure that cannot pass (bad credentials, a conflicting topology) is fatal.
async fn open_session(
    config: &Config,
    shutdown: &CancellationToken,
) -> Option<Result<Session, BrokerError>> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Session::open(config).await {
            Ok(s) => return Some(Ok(s)),
            Err(e) if !e.can_be_recovered() => return Some(Err(e)),
            Err(e) => {
                // Jitter keeps a fleet from reconnecting in lockstep.
                let wait = delay + delay.mul_f64(fastrand::f64() * 0.25);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot reach the broker");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
                delay = (delay * 2).min(MAX_RECONNECT_DELAY);
            }
        }
    }
}

/// Longest wait between two connection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);
/// How often the consume loop checks that its connection and channels are still open: a lost
/// channel is noticed within this, even when no delivery arrives.
const HEALTH_CHECK: Duration = Duration::from_millis(500);

/// Why a session stopped consuming.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Consumes jobs until `shutdown` is cancelled, then drains: in-flight jobs get
/// `worker.shutdown_grace_ms`, whatever still runs is interrupted and requeued. A lost
/// connection or channel interrupts the jobs it carried (their deliveries go back to the
/// queue) and the worker reconnects, re-declares and consumes again.
pub async fn run_worker(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    secrets: SecretRegistry,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let ctx = JobContext::new(config.clone(), metrics.clone(), secrets);
    sweep_leftovers(&config).await;
    let tracker = TaskTracker::new();
    let interrupt = CancellationToken::new();
    let running: Running = Arc::default();
    let policy = config.validation_policy();
    let sink = Arc::new(CurrentSink::default());
    let mut sessions = 0u64;

    loop {
        let mut session = match open_session(&config, &shutdown).await {
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
        sink.set(Some(session.sink.clone()));
        metrics.amqp_connected.set(1);
        metrics.set_ready(true);
        tracing::info!(queue = %config.amqp.jobs_queue, concurrency = config.worker.concurrency, "worker consuming");

        // Cancelled when this session is lost: its jobs' deliveries are gone with it.
        let lost = interrupt.child_token();
        let shared = Shared {
            ctx: &ctx,
            sink: &sink,
            tracker: &tracker,
            running: &running,
            policy: &policy,
        };
        let end = consume(&mut session, &shared, &lost, &shutdown).await;
        metrics.set_ready(false);
        sink.set(None);
        match end {
            SessionEnd::Shutdown => {
                if let Err(e) = session.consumer.cancel().await {
                    tracing::warn!(error = %e, "cannot cancel the consumer");
                }
                drain(&config, &tracker, &interrupt).await;
                metrics.amqp_connected.set(0);
                let _ = session.conn.close(200, "worker shutdown".into()).await;
                return Ok(());
            }
            SessionEnd::Lost(why) => {
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
    Check,
    Next(Box<Option<Result<JobDelivery, BrokerError>>>),
}

/// What every session of the consume loop shares.
struct Shared<'a> {
    ctx: &'a JobContext,
    sink: &'a Arc<CurrentSink>,
    tracker: &'a TaskTracker,
    running: &'a Running,
    policy: &'a crate::job::ValidationPolicy,
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
    } = *shared;
    let config = &ctx.config;
    let metrics = &ctx.metrics;
    let mut health = tokio::time::interval(HEALTH_CHECK);
    loop {
        let step = tokio::select! {
            _ = shutdown.cancelled() => Step::Shutdown,
            _ = health.tick() => Step::Check,
            next = session.consumer.next() => Step::Next(Box::new(next)),
        };
        let next = match step {
            Step::Shutdown => return SessionEnd::Shutdown,
            Step::Check if session.healthy() => continue,
            Step::Check => return SessionEnd::Lost("a channel or the connection closed".into()),
            Step::Next(next) => *next,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return SessionEnd::Lost(format!("consumer failed: {e}")),
            None => return SessionEnd::Lost("the broker ended the consumer".into()),
        };
        let attempt = delivery.attempt;
        match parse_job(&delivery.body, policy) {
            Err(invalid) => {
                let sink: Arc<dyn EventSink> = sink.clone();
                let metrics = metrics.clone();
                let attempts = config.amqp.publish_attempts;
                tracker.spawn(async move {
                    let end = announce_invalid(&invalid, attempt, sink.as_ref(), attempts).await;
                    let reason = if invalid.message.contains("not valid JSON") {
                        "not-json"
                    } else if invalid.message.contains("exceeds") {
                        "oversize"
                    } else {
                        "invalid-job"
                    };
                    if settle(&delivery, settlement(end)).await
                        && end == DeliveryEnd::InvalidSettled
                    {
                        metrics.jobs_rejected.with_label_values(&[reason]).inc();
                    }
                });
            }
            Ok(job) => {
                let delivery = {
                    let mut r = running.lock().unwrap_or_else(|p| p.into_inner());
                    match r.get_mut(&job.job_id) {
                        Some(waiting) => {
                            waiting.push(delivery);
                            None
                        }
                        None => {
                            r.insert(job.job_id.clone(), Vec::new());
                            Some(delivery)
                        }
                    }
                };
                let Some(delivery) = delivery else {
                    tracing::info!(job_id = %job.job_id, "duplicate delivery of a running job: held until it settles");
                    continue;
                };
                let span = tracing::info_span!(
                    "job",
                    job.id = %job.job_id,
                    job.attempt = attempt,
                    mode = job.mode.as_str(),
                    repo = %job.repo_slug(),
                    branch = %job.branch,
                );
                let task = JobTask {
                    ctx: ctx.clone(),
                    sink: sink.clone(),
                    running: running.clone(),
                    cancel: lost.child_token(),
                };
                tracker.spawn(task.run(job, delivery).instrument(span));
            }
        }
    }
}

struct JobTask {
    ctx: JobContext,
    sink: Arc<dyn EventSink>,
    running: Running,
    cancel: CancellationToken,
}

impl JobTask {
    async fn run(self, job: AgentJob, delivery: JobDelivery) {
        let m = self.ctx.metrics.clone();
        let mode = job.mode.as_str();
        m.jobs_received.with_label_values(&[mode]).inc();
        m.jobs_in_flight.inc();
        let started = Instant::now();
        let started_at = events::now_ms();
        let attempt = delivery.attempt;
        let end = run_job(&self.ctx, &job, attempt, self.sink.clone(), self.cancel).await;
        let last_chance = is_last_attempt(attempt, self.ctx.config.amqp.delivery_limit);
        let end = match end {
            // One more requeue would dead-letter it unannounced: finish it instead (4.5).
            JobEnd::Interrupted if last_chance => {
                tracing::warn!(
                    attempt,
                    "interrupted on its last allowed delivery: finishing it as failed"
                );
                JobEnd::Finished(Box::new(last_attempt_result(
                    &job.job_id,
                    attempt,
                    started_at,
                )))
            }
            other => other,
        };
        let outcome = match end {
            JobEnd::Interrupted => {
                m.jobs_requeued.with_label_values(&["interrupted"]).inc();
                DeliveryEnd::Interrupted
            }
            JobEnd::Finished(body) => {
                let event = Event::Result(*body);
                match publish_with_retry(
                    self.sink.as_ref(),
                    &event,
                    self.ctx.config.amqp.publish_attempts,
                )
                .await
                {
                    Ok(()) => {
                        if let Event::Result(b) = &event {
                            record_finished(&m, mode, b, started.elapsed());
                        }
                        DeliveryEnd::ResultConfirmed
                    }
                    Err(e) => {
                        m.publish_failures.with_label_values(&[e.reason()]).inc();
                        m.jobs_requeued.with_label_values(&["publish-failed"]).inc();
                        tracing::error!(error = %e, "the result could not be published: leaving the job unacked");
                        DeliveryEnd::ResultUnpublished
                    }
                }
            }
        };
        m.jobs_in_flight.dec();
        let duplicates = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.job_id)
            .unwrap_or_default();
        let how = settlement(outcome);
        settle(&delivery, how).await;
        for dup in duplicates {
            settle(&dup, how).await;
        }
    }
}

/// With `x-delivery-limit = L` the broker delivers a message at most `L + 1` times; the last of
/// those must not be requeued again.
pub fn is_last_attempt(attempt: u32, delivery_limit: u32) -> bool {
    attempt > delivery_limit
}

/// The result of a job whose last allowed delivery was interrupted.
fn last_attempt_result(job_id: &str, attempt: u32, started_at: u64) -> ResultBody {
    ResultBody {
        job_id: job_id.to_owned(),
        attempt,
        state: JobState::Failed,
        started_at,
        finished_at: events::now_ms(),
        phase_timings_ms: Default::default(),
        result: None,
        error: Some(format!(
            "the job was interrupted on its last allowed delivery (attempt {attempt}); its committed work was pushed to its branch"
        )),
        failure_cause: Some(crate::job::outcome::FailureCause::Agent),
        detail: None,
    }
}

fn record_finished(m: &Metrics, mode: &str, body: &ResultBody, took: Duration) {
    let cause = body.failure_cause.map(|c| c.as_str()).unwrap_or("none");
    let state = body.state.as_str();
    m.jobs_finished
        .with_label_values(&[mode, state, cause])
        .inc();
    m.job_duration
        .with_label_values(&[mode, state])
        .observe(took.as_secs_f64());
    for (phase, ms) in &body.phase_timings_ms.0 {
        m.phase_duration
            .with_label_values(&[phase])
            .observe(*ms as f64 / 1000.0);
    }
    debug_assert!(matches!(body.state, JobState::Done | JobState::Failed));
}

/// Publishes the `invalid-job` result when the body's `jobId` could be read.
async fn announce_invalid(
    invalid: &InvalidJob,
    attempt: u32,
    sink: &dyn EventSink,
    attempts: u32,
) -> DeliveryEnd {
    tracing::warn!(job_id = ?invalid.job_id, error = %invalid.message, "invalid job message");
    let Some(job_id) = &invalid.job_id else {
        return DeliveryEnd::InvalidSettled;
    };
    let event = Event::Result(invalid_job_result(job_id, attempt, &invalid.message));
    match publish_with_retry(sink, &event, attempts).await {
        Ok(()) => DeliveryEnd::InvalidSettled,
        Err(e) => {
            tracing::error!(error = %e, "cannot publish the invalid-job result");
            DeliveryEnd::InvalidUnannounced
        }
    }
}

/// Settles a delivery on its own channel; an ack that did nothing is logged, not trusted.
async fn settle(delivery: &JobDelivery, how: Settlement) -> bool {
    match delivery.settle(how).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, settlement = ?how, "cannot settle the delivery: the broker will redeliver it");
            false
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_attempt_is_the_one_past_the_delivery_limit() {
        assert!(!is_last_attempt(1, 5));
        assert!(!is_last_attempt(5, 5));
        assert!(is_last_attempt(6, 5));
        assert!(is_last_attempt(1, 0));
    }

    #[test]
    fn only_a_confirmed_result_or_a_settled_refusal_removes_a_delivery_for_good() {
        assert_eq!(settlement(DeliveryEnd::ResultConfirmed), Settlement::Ack);
        assert_eq!(
            settlement(DeliveryEnd::ResultUnpublished),
            Settlement::Requeue
        );
        assert_eq!(settlement(DeliveryEnd::Interrupted), Settlement::Requeue);
        assert_eq!(
            settlement(DeliveryEnd::InvalidSettled),
            Settlement::DeadLetter
        );
        assert_eq!(
            settlement(DeliveryEnd::InvalidUnannounced),
            Settlement::Requeue
        );
    }
}
