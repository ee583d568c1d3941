//! The job consumer: qos before consume, manual acknowledgement, and [`JobDelivery::settle`],
//! the one call that acks, requeues or dead-letters a delivery.

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Acker, Channel, Connection, Consumer};

use super::{short_name, BrokerError};

/// Consumes jobs from one queue on a channel of its own.
///
/// Dropping it cancels the consumer; the channel stays open as long as a delivery it handed
/// out is alive (each holds the channel), so their settles still go through.
pub struct JobConsumer {
    channel: Channel,
    consumer: Consumer,
    tag: ShortString,
}

impl std::fmt::Debug for JobConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobConsumer")
            .field("channel", &self.channel.id())
            .field("tag", &self.tag)
            .finish()
    }
}

impl JobConsumer {
    /// Opens a channel, limits it to `prefetch` unacknowledged deliveries
    /// (`basic.qos(prefetch, global = false)`) and starts consuming `queue` with manual
    /// acknowledgement.
    pub async fn open(
        conn: &Connection,
        queue: &str,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<Self, BrokerError> {
        let queue = short_name("a queue name", queue)?;
        let tag = short_name("a consumer tag", consumer_tag)?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "opening the consume channel",
                source,
            })?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "basic.qos",
                source,
            })?;
        let consumer = channel
            .basic_consume(
                queue,
                tag.clone(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "basic.consume",
                source,
            })?;
        Ok(Self {
            channel,
            consumer,
            tag,
        })
    }

    /// The next delivery. `None` once the consumer is cancelled (by [`JobConsumer::cancel`]
    /// or by the broker) or its channel closed; an error (a lost channel or connection) comes
    /// first in that last case.
    pub async fn next(&mut self) -> Option<Result<JobDelivery, BrokerError>> {
        match self.consumer.next().await? {
            Ok(delivery) => Some(Ok(JobDelivery::new(delivery, self.channel.clone()))),
            Err(error) => Some(Err(BrokerError::Consume(error))),
        }
    }

    /// `basic.cancel`: no new deliveries, while the channel stays open for the acks of the
    /// ones in flight. Deliveries the broker had already sent still come out of
    /// [`JobConsumer::next`] before it returns `None`.
    pub async fn cancel(&self) -> Result<(), BrokerError> {
        self.channel
            .basic_cancel(self.tag.clone(), BasicCancelOptions::default())
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "basic.cancel",
                source,
            })
    }

    /// Closes the channel: every unsettled delivery goes back to the queue.
    pub async fn close(&self) -> Result<(), BrokerError> {
        self.channel
            .close(200, "consumer closed".into())
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "closing the consume channel",
                source,
            })
    }

    /// A handle that cancels this consumer from another task.
    pub fn canceller(&self) -> ConsumerCanceller {
        ConsumerCanceller {
            channel: self.channel.clone(),
            tag: self.tag.clone(),
        }
    }

    /// The consumer tag.
    pub fn tag(&self) -> &str {
        self.tag.as_str()
    }

    /// Whether the channel is still open.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

/// Cancels one consumer (`basic.cancel`) from wherever it is held.
#[derive(Clone)]
pub struct ConsumerCanceller {
    channel: Channel,
    tag: ShortString,
}

impl ConsumerCanceller {
    /// Returns once the broker confirmed: no delivery is sent to the consumer after that.
    pub async fn cancel(&self) -> Result<(), BrokerError> {
        self.channel
            .basic_cancel(self.tag.clone(), BasicCancelOptions::default())
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "basic.cancel",
                source,
            })
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done: the broker forgets the message.
    Ack,
    /// Back to the queue for another attempt (`basic.nack`, requeue).
    Requeue,
    /// To the dead-letter exchange, untouched (`basic.reject`, no requeue).
    DeadLetter,
}

impl Settlement {
    /// The AMQP method that carries it, for logs and metric labels.
    pub fn method(self) -> &'static str {
        match self {
            Settlement::Ack => "basic.ack",
            Settlement::Requeue => "basic.nack",
            Settlement::DeadLetter => "basic.reject",
        }
    }
}

/// One job message and what settles it.
pub struct JobDelivery {
    pub body: Vec<u8>,
    /// 1 on first delivery; `x-delivery-count` + 1 on a quorum queue's redeliveries.
    pub attempt: u32,
    /// The broker's redelivered flag (set after a requeue or a lost channel).
    pub redelivered: bool,
    pub delivery_tag: u64,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Why the broker last dead-lettered this message (`reason` of the newest `x-death`
    /// entry: `delivery_limit`, `rejected`, `expired`, `maxlen`); `None` if it never was.
    pub death_reason: Option<String>,
    acker: Acker,
    /// Keeps the delivery's channel open until it is settled.
    _channel: Channel,
}

impl std::fmt::Debug for JobDelivery {
    // The body holds the job's tokens: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDelivery")
            .field("body_len", &self.body.len())
            .field("attempt", &self.attempt)
            .field("redelivered", &self.redelivered)
            .field("delivery_tag", &self.delivery_tag)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

impl JobDelivery {
    fn new(delivery: Delivery, channel: Channel) -> Self {
        let headers = delivery.properties.headers().as_ref();
        let delivery_count = headers.and_then(|h| header_u32(h, "x-delivery-count"));
        let death_reason = headers.and_then(last_death_reason);
        Self {
            attempt: delivery_count.map_or(1, |count| count.saturating_add(1)),
            redelivered: delivery.redelivered,
            delivery_tag: delivery.delivery_tag,
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string()),
            correlation_id: delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|s| s.to_string()),
            death_reason,
            body: delivery.data,
            acker: delivery.acker,
            _channel: channel,
        }
    }

    /// Acks, requeues (`nack`, requeue) or dead-letters (`reject`, no requeue) on the
    /// delivery's own channel. An ack that did nothing (its channel closed, or the delivery
    /// already settled) is an error: the message is not settled by this worker.
    pub async fn settle(&self, how: Settlement) -> Result<(), BrokerError> {
        let outcome = match how {
            Settlement::Ack => self.acker.ack(BasicAckOptions::default()).await,
            Settlement::Requeue => {
                self.acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
            }
            Settlement::DeadLetter => {
                self.acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
            }
        };
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(BrokerError::NotSettled { how: how.method() }),
            Err(source) => Err(BrokerError::Settle {
                how: how.method(),
                source,
            }),
        }
    }

    /// Whether [`JobDelivery::settle`] can still do something (the channel lives and the
    /// delivery is unsettled).
    pub fn can_settle(&self) -> bool {
        self.acker.usable()
    }
}

/// The `reason` of the newest `x-death` entry (the broker puts the newest first).
fn last_death_reason(headers: &FieldTable) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(newest) = deaths.as_slice().first()? else {
        return None;
    };
    match newest.inner().get("reason")? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// An integer header as u32, whatever integer type the broker chose for it.
fn header_u32(headers: &FieldTable, name: &str) -> Option<u32> {
    let value: i64 = match headers.inner().get(name)? {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_count_of_any_integer_type_is_read() {
        for value in [
            AMQPValue::LongLongInt(2),
            AMQPValue::LongInt(2),
            AMQPValue::ShortUInt(2),
            AMQPValue::ShortShortUInt(2),
        ] {
            let mut headers = FieldTable::default();
            headers.insert("x-delivery-count".into(), value);
            assert_eq!(header_u32(&headers, "x-delivery-count"), Some(2));
        }
    }

    #[test]
    fn the_newest_dead_letter_reason_is_read_from_x_death() {
        let death = |reason: &str| {
            let mut t = FieldTable::default();
            t.insert("reason".into(), AMQPValue::LongString(reason.into()));
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            AMQPValue::FieldTable(t)
        };
        let mut headers = FieldTable::default();
        assert_eq!(last_death_reason(&headers), None);
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![death("delivery_limit"), death("rejected")].into()),
        );
        assert_eq!(
            last_death_reason(&headers).as_deref(),
            Some("delivery_limit")
        );
        headers.insert("x-death".into(), AMQPValue::LongString("junk".into()));
        assert_eq!(last_death_reason(&headers), None);
    }

    #[test]
    fn a_missing_negative_or_textual_delivery_count_is_none() {
        let mut headers = FieldTable::default();
        assert_eq!(header_u32(&headers, "x-delivery-count"), None);
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(-1));
        assert_eq!(header_u32(&headers, "x-delivery-count"), None);
        headers.insert("x-delivery-count".into(), AMQPValue::LongString("2".into()));
        assert_eq!(header_u32(&headers, "x-delivery-count"), None);
    }
}
