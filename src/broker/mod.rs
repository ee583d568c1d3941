//! RabbitMQ: connection, topology, consuming, publishing with confirms.
//!
//! - [`connection`]: a named connection with a negotiated heartbeat, and the broker's version.
//! - [`topology`]: the idempotent declaration of contract section 2.
//! - [`publish`]: a confirm-mode channel whose publishes count only when confirmed and routed.
//! - [`consume`]: the job consumer (qos, manual acknowledgement) and the one settle call.
//! - [`follow`]: a private queue that follows one job's events (`enqueue --wait`).
//!
//! Consuming and publishing use separate channels, so a publish that closes its channel (an
//! unknown exchange, say) never takes the unacknowledged deliveries with it.

pub mod connection;
pub mod consume;
pub mod control;
pub mod follow;
pub mod publish;
pub mod topology;

pub use connection::{connect, redact_url, server_version, BrokerConnection};
pub use consume::{ConsumerCanceller, JobConsumer, JobDelivery, Settlement};
pub use control::{publish_cancel, ControlListener, CANCEL_KEY};
pub use follow::EventFollower;
pub use publish::{enqueue_job, OutgoingMessage, PublishError, Publisher};
pub use topology::{
    declare_topology, queue_consumers, Topology, FOLLOWUP_KEY, PROGRESS_KEY, RESULT_KEY,
};

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// What went wrong talking to the broker (publishing has its own [`PublishError`]).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The AMQP URL does not parse. `url` has its password masked.
    #[error("invalid AMQP URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The connection could not be established. `url` has its password masked.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    /// An existing object differs from what the topology declares (PRECONDITION_FAILED);
    /// `detail` is the broker's reply text, which names the differing argument.
    #[error("{object} already exists with different settings: {detail}")]
    DeclareConflict { object: String, detail: String },
    /// Declaring or binding `object` failed for another reason.
    #[error("cannot declare {object}: {source}")]
    Declare {
        object: String,
        #[source]
        source: lapin::Error,
    },
    /// A channel operation (open, qos, consume, cancel, close) failed.
    #[error("{operation} failed: {source}")]
    Channel {
        operation: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// The consumer's stream reported an error (channel or connection lost); it ends after it.
    #[error("consumer failed: {0}")]
    Consume(#[source] lapin::Error),
    /// The broker refused or lost an ack, nack or reject.
    #[error("{how} failed: {source}")]
    Settle {
        how: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// An ack, nack or reject did nothing: its channel is closed or the delivery was already
    /// settled. The delivery is not settled by this worker (contract section 4.7).
    #[error("{how} did nothing: the channel is closed or the delivery was already settled")]
    NotSettled { how: &'static str },
    /// A queue, exchange, routing key or consumer tag longer than AMQP's 255 bytes.
    #[error("{what} is longer than 255 bytes: {name:.60}...")]
    NameTooLong { what: &'static str, name: String },
    /// A followed event's body is not JSON.
    #[error("event {message_id} is not JSON: {reason}")]
    MalformedEvent { message_id: String, reason: String },
}

impl BrokerError {
    /// Whether reconnecting and trying again can help. Configuration mistakes (a bad URL,
    /// refused credentials, a conflicting topology) cannot.
    pub fn can_be_recovered(&self) -> bool {
        match self {
            BrokerError::InvalidUrl { .. } => false,
            BrokerError::Connect { source, .. } => is_transient(source),
            BrokerError::DeclareConflict { .. } => false,
            BrokerError::Declare { source, .. } => is_transient(source),
            BrokerError::Channel { source, .. } => is_transient(source),
            BrokerError::Consume(source) => is_transient(source),
            BrokerError::Settle { source, .. } => is_transient(source),
            // The channel is gone; the broker requeues the delivery and a new channel goes on.
            BrokerError::NotSettled { .. } => true,
            BrokerError::NameTooLong { .. } => false,
            BrokerError::MalformedEvent { .. } => false,
        }
    }
}

/// `value` as an AMQP short string, or [`BrokerError::NameTooLong`].
pub(crate) fn short_name(
    what: &'static str,
    value: &str,
) -> Result<lapin::types::ShortString, BrokerError> {
    lapin::types::ShortString::try_new(value).map_err(|_| BrokerError::NameTooLong {
        what,
        name: value.to_owned(),
    })
}

/// Whether a lapin error is about the transport (worth a reconnect) rather than a broker
/// verdict on what was asked (which a retry would only repeat).
pub(crate) fn is_transient(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Hard(hard) => matches!(
                hard,
                AMQPHardError::CONNECTIONFORCED
                    | AMQPHardError::RESOURCEERROR
                    | AMQPHardError::INTERNALERROR
            ),
            AMQPErrorKind::Soft(soft) => matches!(soft, AMQPSoftError::RESOURCELOCKED),
        },
        _ => error.can_be_recovered(),
    }
}

/// The broker's reply text when `error` is a channel-level PRECONDITION_FAILED.
pub(crate) fn precondition_failed(error: &lapin::Error) -> Option<String> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
            ) =>
        {
            Some(amqp.get_message().to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;

    fn protocol_error(kind: AMQPErrorKind, text: &str) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::new(kind, text.into())).into()
    }

    #[test]
    fn a_declare_conflict_cannot_be_recovered_but_a_lost_connection_can() {
        let conflict = BrokerError::DeclareConflict {
            object: "queue 'harness.jobs'".into(),
            detail: "inequivalent arg 'x-queue-type'".into(),
        };
        assert!(!conflict.can_be_recovered());

        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let lost = BrokerError::Consume(reset.into());
        assert!(lost.can_be_recovered());
    }

    #[test]
    fn refused_credentials_are_not_worth_a_reconnect_but_a_forced_close_is() {
        let refused = BrokerError::Connect {
            url: "amqp://guest:***@localhost".into(),
            source: protocol_error(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED), "denied"),
        };
        assert!(!refused.can_be_recovered());

        let forced = BrokerError::Consume(protocol_error(
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED),
            "broker forced connection closure",
        ));
        assert!(forced.can_be_recovered());
    }

    #[test]
    fn only_precondition_failed_is_read_as_a_conflict() {
        let conflict = protocol_error(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length'",
        );
        assert_eq!(
            precondition_failed(&conflict).as_deref(),
            Some("PRECONDITION_FAILED - inequivalent arg 'x-max-length'")
        );
        let not_found = protocol_error(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND), "no queue");
        assert_eq!(precondition_failed(&not_found), None);
    }
}
