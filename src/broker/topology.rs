//! The broker topology of contract section 2, declared idempotently.
//!
//! Every declare runs on a throwaway channel: a PRECONDITION_FAILED closes the channel it
//! happened on, and a fresh channel per step lets the failure be reported as a
//! [`BrokerError::DeclareConflict`] naming that one object, with the broker's reply text.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{precondition_failed, server_version, short_name, BrokerConnection, BrokerError};

/// Routing key of terminal results.
pub const RESULT_KEY: &str = "job.result";
/// Routing key of follow-up items.
pub const FOLLOWUP_KEY: &str = "job.followup";
/// Routing key of progress updates.
pub const PROGRESS_KEY: &str = "job.progress";

/// The first broker version that honours the `x-consumer-timeout` queue argument.
const CONSUMER_TIMEOUT_SINCE: (u32, u32, u32) = (3, 12, 0);

/// Names and limits of every broker object the worker relies on: the `[amqp.topology]` section
/// of the configuration, and what is declared, consumed and published to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Quorum queue the jobs are consumed from.
    pub jobs_queue: String,
    /// Fanout exchange the jobs queue dead-letters to.
    pub dead_exchange: String,
    /// Where poison and invalid jobs end, untouched, with the broker's `x-death`.
    pub dead_queue: String,
    /// The workers' own copy of every dead-lettered job, also bound to the dead-letter
    /// exchange: a job that died at the delivery limit (its worker killed during every
    /// delivery) still gets a result from whichever worker consumes it.
    pub dead_watch_queue: String,
    /// Topic exchange every event is published to.
    pub events_exchange: String,
    /// Durable topic exchange of control messages (`job.cancel`); every worker binds its own
    /// exclusive, auto-delete queue to it.
    pub control_exchange: String,
    /// Bound to `job.result`.
    pub results_queue: String,
    /// Bound to `job.followup`.
    pub followups_queue: String,
    /// Bound to `job.progress`; bounded, because progress is only worth its latest state.
    pub progress_queue: String,
    /// Deliveries of one job message before the broker dead-letters it (`x-delivery-limit`).
    pub delivery_limit: u32,
    /// Length bound of the progress queue; the oldest message is dropped beyond it.
    pub progress_max_length: u32,
    /// `x-consumer-timeout` of the jobs queue; must exceed the longest job. Only brokers from
    /// 3.12 on honour it per queue; older ones need `consumer_timeout` in `rabbitmq.conf`.
    /// Derived from the job limits, not configured.
    #[serde(skip)]
    pub consumer_timeout_ms: Option<u64>,
}

impl Topology {
    /// The default delivery limit (contract section 2).
    pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;
    /// The default length bound of the progress queue.
    pub const DEFAULT_PROGRESS_MAX_LENGTH: u32 = 100_000;

    /// `<prefix>.jobs`, `<prefix>.dead`, `<prefix>.jobs.dead`, `<prefix>.jobs.dead.watch`,
    /// `<prefix>.events`, `<prefix>.control`,
    /// `<prefix>.results`, `<prefix>.followups`, `<prefix>.progress`, with default limits.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            jobs_queue: format!("{prefix}.jobs"),
            dead_exchange: format!("{prefix}.dead"),
            dead_queue: format!("{prefix}.jobs.dead"),
            dead_watch_queue: format!("{prefix}.jobs.dead.watch"),
            events_exchange: format!("{prefix}.events"),
            control_exchange: format!("{prefix}.control"),
            results_queue: format!("{prefix}.results"),
            followups_queue: format!("{prefix}.followups"),
            progress_queue: format!("{prefix}.progress"),
            delivery_limit: Self::DEFAULT_DELIVERY_LIMIT,
            progress_max_length: Self::DEFAULT_PROGRESS_MAX_LENGTH,
            consumer_timeout_ms: None,
        }
    }

    /// Every queue, for tests and tools that clean up.
    pub fn queues(&self) -> [&str; 6] {
        [
            &self.jobs_queue,
            &self.dead_queue,
            &self.dead_watch_queue,
            &self.results_queue,
            &self.followups_queue,
            &self.progress_queue,
        ]
    }

    /// Every exchange.
    pub fn exchanges(&self) -> [&str; 3] {
        [
            &self.dead_exchange,
            &self.events_exchange,
            &self.control_exchange,
        ]
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::with_prefix("harness")
    }
}

/// Declares the whole topology. Idempotent: declaring it again with the same settings changes
/// nothing; declaring it over an object with other settings is a
/// [`BrokerError::DeclareConflict`].
pub async fn declare_topology(conn: &BrokerConnection, topo: &Topology) -> Result<(), BrokerError> {
    declare_exchange(conn, &topo.dead_exchange, ExchangeKind::Fanout).await?;
    declare_queue(conn, &topo.dead_queue, FieldTable::default()).await?;
    bind(conn, &topo.dead_queue, &topo.dead_exchange, "").await?;
    declare_queue(conn, &topo.dead_watch_queue, FieldTable::default()).await?;
    bind(conn, &topo.dead_watch_queue, &topo.dead_exchange, "").await?;

    let version = server_version(conn);
    let supports_timeout = version.is_some_and(|v| v >= CONSUMER_TIMEOUT_SINCE);
    if let (Some(ms), false) = (topo.consumer_timeout_ms, supports_timeout) {
        warn!(
            consumer_timeout_ms = ms,
            queue = %topo.jobs_queue,
            server_version = %conn.version_text(),
            "this broker does not take a per-queue consumer timeout (RabbitMQ 3.12+): set \
             consumer_timeout in rabbitmq.conf above the max job duration, or long jobs are \
             requeued while they run (see deploy/rabbitmq/rabbitmq.conf)"
        );
    }
    declare_queue(
        conn,
        &topo.jobs_queue,
        jobs_arguments(topo, supports_timeout),
    )
    .await?;

    declare_exchange(conn, &topo.events_exchange, ExchangeKind::Topic).await?;
    declare_exchange(conn, &topo.control_exchange, ExchangeKind::Topic).await?;
    declare_queue(conn, &topo.results_queue, FieldTable::default()).await?;
    declare_queue(conn, &topo.followups_queue, FieldTable::default()).await?;
    declare_queue(conn, &topo.progress_queue, progress_arguments(topo)).await?;
    bind(conn, &topo.results_queue, &topo.events_exchange, RESULT_KEY).await?;
    bind(
        conn,
        &topo.followups_queue,
        &topo.events_exchange,
        FOLLOWUP_KEY,
    )
    .await?;
    bind(
        conn,
        &topo.progress_queue,
        &topo.events_exchange,
        PROGRESS_KEY,
    )
    .await?;
    debug!(jobs_queue = %topo.jobs_queue, "topology declared");
    Ok(())
}

fn jobs_arguments(topo: &Topology, supports_timeout: bool) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(topo.delivery_limit.into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        long_string(&topo.dead_exchange),
    );
    if let (Some(ms), true) = (topo.consumer_timeout_ms, supports_timeout) {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        args.insert("x-consumer-timeout".into(), AMQPValue::LongLongInt(ms));
    }
    args
}

fn progress_arguments(topo: &Topology) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(topo.progress_max_length.into()),
    );
    args.insert("x-overflow".into(), long_string("drop-head"));
    args
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

async fn declare_exchange(
    conn: &Connection,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), BrokerError> {
    let object = format!("exchange '{name}'");
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let (channel, name) = step_channel(conn, &object, name).await?;
    let declared = channel
        .exchange_declare(name, kind, options, FieldTable::default())
        .await;
    finish_step(channel, object, declared).await
}

async fn declare_queue(conn: &Connection, name: &str, args: FieldTable) -> Result<(), BrokerError> {
    let object = format!("queue '{name}'");
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let (channel, name) = step_channel(conn, &object, name).await?;
    let declared = channel.queue_declare(name, options, args).await.map(|_| ());
    finish_step(channel, object, declared).await
}

async fn bind(
    conn: &Connection,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), BrokerError> {
    let object = format!("binding of queue '{queue}' to exchange '{exchange}' ({routing_key:?})");
    let (channel, queue) = step_channel(conn, &object, queue).await?;
    let bound = channel
        .queue_bind(
            queue,
            short_name("an exchange name", exchange)?,
            short_name("a routing key", routing_key)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    finish_step(channel, object, bound).await
}

/// How many consumers `queue` has now (a passive declare: nothing is created or changed).
pub async fn queue_consumers(conn: &Connection, queue: &str) -> Result<u32, BrokerError> {
    let object = format!("queue '{queue}'");
    let (channel, name) = step_channel(conn, &object, queue).await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(name, options, FieldTable::default())
        .await;
    let consumers = declared.as_ref().map(|q| q.consumer_count()).ok();
    finish_step(channel, object, declared.map(|_| ())).await?;
    Ok(consumers.unwrap_or_default())
}

/// A fresh channel for one declare step, and the step's name as an AMQP short string.
async fn step_channel(
    conn: &Connection,
    object: &str,
    name: &str,
) -> Result<(Channel, lapin::types::ShortString), BrokerError> {
    let name = short_name("a queue or exchange name", name)?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|source| BrokerError::Declare {
            object: object.to_owned(),
            source,
        })?;
    Ok((channel, name))
}

async fn finish_step(
    channel: Channel,
    object: String,
    outcome: lapin::Result<()>,
) -> Result<(), BrokerError> {
    match outcome {
        Ok(()) => {
            // The step succeeded; a failure to close the throwaway channel changes nothing.
            if let Err(error) = channel.close(200, "declared".into()).await {
                debug!(%error, "closing a declare channel failed");
            }
            Ok(())
        }
        Err(source) => match precondition_failed(&source) {
            Some(detail) => Err(BrokerError::DeclareConflict { object, detail }),
            None => Err(BrokerError::Declare { object, source }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_names_every_object() {
        let topo = Topology::with_prefix("t1");
        assert_eq!(topo.jobs_queue, "t1.jobs");
        assert_eq!(topo.dead_exchange, "t1.dead");
        assert_eq!(topo.dead_queue, "t1.jobs.dead");
        assert_eq!(topo.events_exchange, "t1.events");
        assert_eq!(topo.results_queue, "t1.results");
        assert_eq!(topo.followups_queue, "t1.followups");
        assert_eq!(topo.progress_queue, "t1.progress");
        assert_eq!(Topology::default().jobs_queue, "harness.jobs");
    }

    #[test]
    fn the_consumer_timeout_is_only_declared_where_the_broker_supports_it() {
        let topo = Topology {
            consumer_timeout_ms: Some(7_200_000),
            ..Topology::with_prefix("t2")
        };
        let old = jobs_arguments(&topo, false);
        assert!(!old.contains_key("x-consumer-timeout"));
        let new = jobs_arguments(&topo, true);
        assert_eq!(
            new.inner().get("x-consumer-timeout"),
            Some(&AMQPValue::LongLongInt(7_200_000))
        );
        assert_eq!(
            new.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }
}
