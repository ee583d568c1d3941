//! Publishing with confirms: a publish counts only when the broker confirmed it AND did not
//! return it as unroutable (contract section 2).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Mutex;
use tracing::debug;

use super::BrokerError;

pub(super) const CONTENT_TYPE: &str = "application/json";
/// Persistent: the message survives a broker restart in a durable queue.
const PERSISTENT: u8 = 2;

/// Why a publish does not count as done.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker refused the message (basic.nack).
    #[error("the broker nacked the message")]
    Nacked,
    /// No queue is bound for the routing key: the broker returned the message.
    #[error("the message is unroutable: no queue is bound for its routing key")]
    Unroutable,
    /// No confirm arrived in time; the message may or may not have been taken.
    #[error("no publisher confirm arrived in time")]
    ConfirmTimeout,
    /// The channel is closed or the connection is gone (including a channel the broker
    /// closed because of this publish, such as one to an exchange that does not exist).
    #[error("the publish channel is closed: {0}")]
    ChannelClosed(#[source] lapin::Error),
    /// The channel is not in confirm mode, so nothing says the broker took the message.
    #[error("the channel is not in confirm mode")]
    NotConfirmed,
    /// A property does not fit AMQP (a short string over 255 bytes).
    #[error("the message's {field} is longer than 255 bytes")]
    InvalidMessage { field: &'static str },
}

impl PublishError {
    /// A fixed label for metrics (`harness_publish_failures_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Nacked => "nacked",
            PublishError::Unroutable => "unroutable",
            PublishError::ConfirmTimeout => "confirm_timeout",
            PublishError::ChannelClosed(_) => "channel_closed",
            PublishError::NotConfirmed => "not_confirmed",
            PublishError::InvalidMessage { .. } => "invalid_message",
        }
    }

    /// Whether the same message could be taken on another try: the broker's answer and the
    /// channel can change; a message that does not fit AMQP never will.
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Nacked
            | PublishError::Unroutable
            | PublishError::ConfirmTimeout
            | PublishError::ChannelClosed(_)
            | PublishError::NotConfirmed => true,
            PublishError::InvalidMessage { .. } => false,
        }
    }
}

/// One event to publish.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    /// Deterministic, so consumers can deduplicate (contract section 3.2).
    pub message_id: &'a str,
    /// The job id.
    pub correlation_id: &'a str,
    /// The AMQP `type` property: `result`, `followup` or `progress`.
    pub kind: &'a str,
    /// Sent as the `x-attempt` header (a long int).
    pub attempt: u32,
}

/// A confirm-mode channel of its own. Cheap to clone; clones share the channel, and
/// concurrent publishes from several jobs are safe: they take turns (see [`PublishTurn`]),
/// at one broker round trip each.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<PublisherInner>,
}

struct PublisherInner {
    channel: Channel,
    turn: PublishTurn,
    confirm_timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("channel", &self.inner.channel.id())
            .field("confirm_timeout", &self.inner.confirm_timeout)
            .finish()
    }
}

impl Publisher {
    /// Opens a channel in confirm mode. Each publish waits at most `confirm_timeout` for
    /// its confirm.
    pub async fn open(conn: &Connection, confirm_timeout: Duration) -> Result<Self, BrokerError> {
        let channel = confirm_channel(conn)
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "opening the publish channel in confirm mode",
                source,
            })?;
        Ok(Self {
            inner: Arc::new(PublisherInner {
                channel,
                turn: PublishTurn::default(),
                confirm_timeout,
            }),
        })
    }

    /// Publishes one event and waits for the broker's confirm. Ok only when confirmed (ack)
    /// AND not returned as unroutable.
    pub async fn publish(&self, msg: OutgoingMessage<'_>) -> Result<(), PublishError> {
        let properties = event_properties(&msg)?;
        let exchange = property("exchange", msg.exchange)?;
        let routing_key = property("routing key", msg.routing_key)?;
        publish_confirmed(
            &self.inner.channel,
            &self.inner.turn,
            exchange,
            routing_key,
            msg.body,
            properties,
            self.inner.confirm_timeout,
        )
        .await
    }

    /// Whether the channel is still open (a broker-closed channel stays closed).
    pub fn is_open(&self) -> bool {
        self.inner.channel.status().connected()
    }

    /// Closes the channel; publishes after this fail with [`PublishError::ChannelClosed`].
    pub async fn close(&self) -> Result<(), BrokerError> {
        self.inner
            .channel
            .close(200, "publisher closed".into())
            .await
            .map_err(|source| BrokerError::Channel {
                operation: "closing the publish channel",
                source,
            })
    }
}

/// Publishes a job to `jobs_queue` through the default exchange: persistent, mandatory and
/// confirmed, on a channel of its own. A job whose body has a string `jobId` carries it as
/// `message_id` and `correlation_id`.
pub async fn enqueue_job(
    conn: &Connection,
    jobs_queue: &str,
    body: &[u8],
    confirm_timeout: Duration,
) -> Result<(), PublishError> {
    let routing_key = property("queue name", jobs_queue)?;
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(CONTENT_TYPE.into())
        .with_timestamp(unix_now());
    if let Some(job_id) = job_id_of(body).and_then(|id| ShortString::try_new(id).ok()) {
        properties = properties
            .with_message_id(job_id.clone())
            .with_correlation_id(job_id);
    }
    publish_confirmed_once(
        conn,
        "",
        routing_key.as_str(),
        body,
        properties,
        confirm_timeout,
    )
    .await
}

/// One confirmed, mandatory publish on a channel of its own (a tool's single message).
pub(super) async fn publish_confirmed_once(
    conn: &Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    confirm_timeout: Duration,
) -> Result<(), PublishError> {
    let exchange = property("exchange", exchange)?;
    let routing_key = property("routing key", routing_key)?;
    let channel = confirm_channel(conn)
        .await
        .map_err(PublishError::ChannelClosed)?;
    let published = publish_confirmed(
        &channel,
        &PublishTurn::default(),
        exchange,
        routing_key,
        body,
        properties,
        confirm_timeout,
    )
    .await;
    if let Err(error) = channel.close(200, "published".into()).await {
        debug!(%error, "closing the one-message channel failed");
    }
    published
}

async fn confirm_channel(conn: &Connection) -> lapin::Result<Channel> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// One publish in flight per channel. lapin hands a returned message to whichever confirm
/// it resolves next, and resolves a multiple-ack's confirms in no set order, so a return is
/// only attributed right while a single publish is outstanding. The flag records a confirm
/// still owed (a timeout, or a publish whose caller gave up): the next publish first waits it
/// out, so it cannot share a multiple-ack with it.
#[derive(Default)]
struct PublishTurn(Mutex<bool>);

async fn publish_confirmed(
    channel: &Channel,
    turn: &PublishTurn,
    exchange: ShortString,
    routing_key: ShortString,
    body: &[u8],
    properties: BasicProperties,
    confirm_timeout: Duration,
) -> Result<(), PublishError> {
    let mut owed = turn.0.lock().await;
    if *owed {
        match tokio::time::timeout(confirm_timeout, channel.wait_for_confirms()).await {
            Ok(Ok(_returned)) => *owed = false,
            Ok(Err(error)) => return Err(PublishError::ChannelClosed(error)),
            Err(_elapsed) => return Err(PublishError::ConfirmTimeout),
        }
    }
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    // Set before sending and cleared on an answer, so a cancelled publish leaves it set.
    *owed = true;
    // The timeout covers the send too: a blocked connection (broker alarm) stalls it.
    let confirmed = async {
        channel
            .basic_publish(exchange, routing_key, options, body, properties)
            .await
            .map_err(PublishError::ChannelClosed)?
            .await
            .map_err(PublishError::ChannelClosed)
    };
    let confirmation = match tokio::time::timeout(confirm_timeout, confirmed).await {
        Err(_elapsed) => return Err(PublishError::ConfirmTimeout),
        Ok(confirmation) => confirmation?,
    };
    *owed = false;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        // The broker acks a returned message too: it was handled, just not routed.
        Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        Confirmation::NotRequested => Err(PublishError::NotConfirmed),
    }
}

fn event_properties(msg: &OutgoingMessage<'_>) -> Result<BasicProperties, PublishError> {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-attempt".into(),
        AMQPValue::LongInt(i32::try_from(msg.attempt).unwrap_or(i32::MAX)),
    );
    Ok(BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(property("message_id", msg.message_id)?)
        .with_correlation_id(property("correlation_id", msg.correlation_id)?)
        .with_type(property("type", msg.kind)?)
        .with_timestamp(unix_now())
        .with_headers(headers))
}

fn property(field: &'static str, value: &str) -> Result<ShortString, PublishError> {
    ShortString::try_new(value).map_err(|_| PublishError::InvalidMessage { field })
}

fn job_id_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("jobId")?.as_str().map(str::to_owned)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(message_id: &'a str) -> OutgoingMessage<'a> {
        OutgoingMessage {
            exchange: "harness.events",
            routing_key: "job.result",
            body: b"{}",
            message_id,
            correlation_id: "job-1",
            kind: "result",
            attempt: 3,
        }
    }

    #[test]
    fn every_event_is_persistent_json_with_its_ids_type_and_attempt() {
        let props = event_properties(&message("job-1:result")).unwrap();
        assert_eq!(*props.delivery_mode(), Some(2));
        assert_eq!(
            props.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            props.message_id().as_ref().map(|s| s.as_str()),
            Some("job-1:result")
        );
        assert_eq!(
            props.correlation_id().as_ref().map(|s| s.as_str()),
            Some("job-1")
        );
        assert_eq!(props.kind().as_ref().map(|s| s.as_str()), Some("result"));
        let headers = props.headers().as_ref().unwrap();
        assert_eq!(
            headers.inner().get("x-attempt"),
            Some(&AMQPValue::LongInt(3))
        );
    }

    #[test]
    fn an_overlong_message_id_is_an_error_not_a_panic() {
        let long = "x".repeat(300);
        let err = event_properties(&message(&long)).unwrap_err();
        assert!(matches!(
            err,
            PublishError::InvalidMessage {
                field: "message_id"
            }
        ));
        assert_eq!(err.reason(), "invalid_message");
        assert!(!err.is_transient());
    }

    #[test]
    fn the_job_id_is_read_from_a_job_body_when_there_is_one() {
        assert_eq!(
            job_id_of(br#"{"jobId":"j-42","mode":"coding"}"#).as_deref(),
            Some("j-42")
        );
        assert_eq!(job_id_of(b"not json"), None);
        assert_eq!(job_id_of(br#"{"jobId":42}"#), None);
    }
}
