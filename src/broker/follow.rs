//! Following one job's events (`enqueue --wait`) on a private queue, so the backend's own
//! queues lose nothing.

use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use super::{short_name, BrokerError};
use crate::job::outcome::correlation_id;

/// Binding key that matches every job event (`job.result`, `job.followup`, `job.progress`).
const ALL_JOB_EVENTS: &str = "job.#";

/// An exclusive, auto-delete, server-named queue bound to the events exchange, yielding one
/// job's events. Open it before enqueueing the job, or the first events can be missed.
pub struct EventFollower {
    /// The job's events carry it: the `jobId`, or the hash of an over-long one.
    correlation_id: String,
    queue: String,
    consumer: Consumer,
    /// Dropping the channel deletes the queue (exclusive).
    channel: Channel,
}

impl std::fmt::Debug for EventFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFollower")
            .field("correlation_id", &self.correlation_id)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl EventFollower {
    /// Declares the private queue, binds it with `job.#` and starts consuming it.
    pub async fn open(
        conn: &Connection,
        events_exchange: &str,
        job_id: &str,
    ) -> Result<Self, BrokerError> {
        let (queue, consumer, channel) =
            private_queue(conn, events_exchange, ALL_JOB_EVENTS).await?;
        Ok(Self {
            correlation_id: correlation_id(job_id).into_owned(),
            queue,
            consumer,
            channel,
        })
    }

    /// The next event of the followed job, as its `type` property and its JSON body; other
    /// jobs' events are skipped. `None` when the consumer or its channel ends.
    pub async fn next(&mut self) -> Option<Result<(String, serde_json::Value), BrokerError>> {
        loop {
            let delivery = match self.consumer.next().await? {
                Ok(delivery) => delivery,
                Err(error) => return Some(Err(BrokerError::Consume(error))),
            };
            let props = &delivery.properties;
            if props.correlation_id().as_ref().map(|id| id.as_str())
                != Some(self.correlation_id.as_str())
            {
                continue;
            }
            let kind = props
                .kind()
                .as_ref()
                .map_or_else(String::new, |kind| kind.to_string());
            return Some(
                serde_json::from_slice(&delivery.data)
                    .map(|body| (kind, body))
                    .map_err(|error| BrokerError::MalformedEvent {
                        message_id: props
                            .message_id()
                            .as_ref()
                            .map_or_else(String::new, |id| id.to_string()),
                        reason: error.to_string(),
                    }),
            );
        }
    }

    /// The server-generated name of the private queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether the channel is still open.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

/// An exclusive, auto-delete, server-named queue bound to `exchange` with `binding_key`, and
/// its consumer (no acks: a private copy loses nothing unacknowledged). Returns the queue's
/// name, the consumer and the channel, whose closing deletes the queue.
pub(super) async fn private_queue(
    conn: &Connection,
    exchange: &str,
    binding_key: &str,
) -> Result<(String, Consumer, Channel), BrokerError> {
    let exchange = short_name("an exchange name", exchange)?;
    let channel_error = |operation| move |source| BrokerError::Channel { operation, source };
    let channel = conn
        .create_channel()
        .await
        .map_err(channel_error("opening a private queue's channel"))?;
    let declared = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(channel_error("declaring a private queue"))?;
    let queue = declared.name().clone();
    channel
        .queue_bind(
            queue.clone(),
            exchange,
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(channel_error("binding a private queue"))?;
    let consumer = channel
        .basic_consume(
            queue.clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(channel_error("consuming a private queue"))?;
    Ok((queue.to_string(), consumer, channel))
}
