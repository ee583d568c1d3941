//! One session with the broker: the connection, the publisher, the jobs consumer (with the
//! prefetch the job limit leaves), the dead-letter watch and the control listener; opened again
//! with backoff while the broker cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::events::{BrokerSink, EventSink};
use super::{hostname, topology};
use crate::broker::{self, BrokerError, ControlListener, JobConsumer, Publisher};
use crate::config::Config;

/// One connection to the broker with its publisher and consumer.
pub(super) struct Session {
    pub conn: broker::BrokerConnection,
    pub publisher: Publisher,
    pub sink: Arc<dyn EventSink>,
    pub consumer: JobConsumer,
    /// The dead-letter watch queue (see `dead_letters`), one message at a time.
    pub dead: JobConsumer,
    /// This worker's own queue of control messages (cancels).
    pub control: ControlListener,
}

impl Session {
    /// Opens a session whose jobs consumer has `prefetch` slots (at least 1).
    async fn open(config: &Config, prefetch: u16) -> Result<Self, BrokerError> {
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
            prefetch.max(1),
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
    pub fn healthy(&self) -> bool {
        self.conn.status().connected()
            && self.consumer.is_open()
            && self.dead.is_open()
            && self.control.is_open()
            && self.publisher.is_open()
    }
}

/// Opens a session, retrying with backoff while the failure can pass (the broker is down or
/// restarting). A failure that cannot pass (bad credentials, a conflicting topology) is fatal.
pub(super) async fn open_session(
    config: &Config,
    prefetch: u16,
    shutdown: &CancellationToken,
) -> Option<Result<Session, BrokerError>> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Session::open(config, prefetch).await {
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
