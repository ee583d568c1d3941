//! The consume loop: one session per broker connection (connect, declare, publish, consume),
//! reconnection with backoff when a connection or channel is lost, and the drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::context::JobContext;
use super::dead_letters::finish_dead_letter;
use super::events::{BrokerSink, CurrentSink, EventSink};
use super::settle::{finish_delivery, Finish};
use super::{hostname, topology, workspace, Held, JobTask, Running, WorkerError};
use crate::broker::{self, BrokerError, ControlListener, JobConsumer, JobDelivery, Publisher};
use crate::config::Config;
use crate::job::accept_job;
use crate::metrics::Metrics;
use crate::telemetry::SecretRegistry;

/// One connection to the broker with its publisher and consumer.
struct Session {
    conn: broker::BrokerConnection,
    publisher: Publisher,
    sink: Arc<dyn EventSink>,
    consumer: JobConsumer,
    /// The dead-letter watch queue (see `dead_letters`), one message at a time.
    dead: JobConsumer,
    /// This worker's own queue of control messages (cancels).
    control: ControlListener,
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
            exchange: config.amqp.topology.events_exchange.clone(),
        });
        let consumer = JobConsumer::open(
            &conn,
            &topo.jobs_queue,
            config.worker.concurrency,
            &format!("executor-harness-{}", std::process::id()),
        )
        .await?;
        let dead = JobConsumer::open(
            &conn,
            &topo.dead_watch_queue,
            1,
            &format!("executor-harness-dead-{}", std::process::id()),
        )
        .await?;
        let control = ControlListener::open(&conn, &topo.control_exchange).await?;
        Ok(Self {
            conn,
            publisher,
            sink,
            consumer,
            dead,
            control,
        })
    }

    /// Connection, consumer channel and publisher channel all still open.
    fn healthy(&self) -> bool {
        self.conn.status().connected()
            && self.consumer.is_open()
            && self.dead.is_open()
            && self.control.is_open()
            && self.publisher.is_open()
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
    let ctx = JobContext::start(config.clone(), metrics.clone(), secrets).await?;
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
        tracing::info!(queue = %config.amqp.topology.jobs_queue, concurrency = config.worker.concurrency, "worker consuming");

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
        match end {
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
            dead = session.dead.next() => Step::Dead(Box::new(dead)),
            control = session.control.next() => Step::Control(control),
        };
        let next = match step {
            Step::Shutdown => return SessionEnd::Shutdown,
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
        let attempt = delivery.attempt;
        match accept_job(&delivery.body, policy) {
            Err(invalid) => {
                let sink: Arc<dyn EventSink> = sink.clone();
                let metrics = metrics.clone();
                let (attempts, limit) = (
                    config.amqp.publish_attempts,
                    config.amqp.topology.delivery_limit,
                );
                tracker.spawn(async move {
                    let finish = Finish {
                        metrics: &metrics,
                        sink: sink.as_ref(),
                        publish_attempts: attempts,
                        delivery_limit: limit,
                    };
                    let end = finish.announce_invalid(&invalid, attempt).await;
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
                            });
                            None
                        }
                        None => {
                            r.insert(job.job_id.clone(), Vec::new());
                            Some((job, delivery))
                        }
                    }
                };
                let Some((job, delivery)) = delivery else {
                    continue;
                };
                let task = JobTask {
                    ctx: ctx.clone(),
                    sink: sink.clone(),
                    running: running.clone(),
                    tracker: tracker.clone(),
                    cancel: lost.child_token(),
                };
                task.spawn(job, delivery);
            }
        }
    }
}
