//! Control messages (contract 9): `job.cancel` on the control exchange. Every worker listens on
//! an exclusive, auto-delete queue of its own, so each one hears every cancel; a dispatcher (or
//! `executor-harness cancel`) publishes one with a confirm.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{BasicProperties, Channel, Connection, Consumer};

use super::follow::private_queue;
use super::publish::{publish_confirmed_once, CONTENT_TYPE};
use super::{BrokerError, PublishError};

/// Routing key of a cancel.
pub const CANCEL_KEY: &str = "job.cancel";
/// The longest `jobId` a cancel may name (the jobs' own bound).
const MAX_JOB_ID_BYTES: usize = 200;

/// A worker's private queue on the control exchange.
pub struct ControlListener {
    consumer: Consumer,
    /// Dropping the channel deletes the queue (exclusive).
    channel: Channel,
}

impl ControlListener {
    /// Declares the private queue, binds it to `job.cancel` and starts consuming it.
    pub async fn open(conn: &Connection, control_exchange: &str) -> Result<Self, BrokerError> {
        let (_, consumer, channel) = private_queue(conn, control_exchange, CANCEL_KEY).await?;
        Ok(Self { consumer, channel })
    }

    /// The `jobId` of the next cancel; a message that is not one is logged and skipped.
    /// `None` when the consumer or its channel ends.
    pub async fn next(&mut self) -> Option<Result<String, BrokerError>> {
        loop {
            let delivery = match self.consumer.next().await? {
                Ok(delivery) => delivery,
                Err(error) => return Some(Err(BrokerError::Consume(error))),
            };
            match cancelled_job_id(&delivery.data) {
                Some(job_id) => return Some(Ok(job_id)),
                None => tracing::warn!(
                    bytes = delivery.data.len(),
                    "ignored a control message that is not a cancel with a jobId"
                ),
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

/// The `jobId` of a cancel body `{"jobId": "..."}`.
pub fn cancelled_job_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = value.get("jobId")?.as_str()?;
    is_job_id(id).then(|| id.to_owned())
}

/// A `jobId` a cancel can name: 1 to 200 bytes, as the jobs' own.
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_JOB_ID_BYTES
}

/// Publishes a cancel of `job_id` with a confirm. [`PublishError::Unroutable`] means no worker
/// is listening.
pub async fn publish_cancel(
    conn: &Connection,
    control_exchange: &str,
    job_id: &str,
    confirm_timeout: Duration,
) -> Result<(), PublishError> {
    let body = serde_json::json!({ "jobId": job_id }).to_string();
    let properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_type("cancel".into());
    publish_confirmed_once(
        conn,
        control_exchange,
        CANCEL_KEY,
        body.as_bytes(),
        properties,
        confirm_timeout,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_names_one_readable_job_id() {
        assert_eq!(
            cancelled_job_id(br#"{"jobId":"j-1"}"#).as_deref(),
            Some("j-1")
        );
        assert_eq!(cancelled_job_id(br#"{"jobId":""}"#), None);
        assert_eq!(cancelled_job_id(br#"{"jobId":7}"#), None);
        assert_eq!(cancelled_job_id(b"not json"), None);
        let long = format!(r#"{{"jobId":"{}"}}"#, "x".repeat(201));
        assert_eq!(cancelled_job_id(long.as_bytes()), None);
    }
}
