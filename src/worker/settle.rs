//! Finishing a delivery (contract section 4), in one place: publishing a job's end (with the
//! last-attempt rule of 4.5) or an invalid job's refusal, the acknowledgement policy, the
//! settle itself (the delivery and the held duplicates of the same job) and the counts of what
//! happened, for the valid and the invalid path alike.

use std::time::Duration;

use super::error::JobEnd;
use super::events::{now_ms, publish_with_retry, EventSink, SinkError};
use crate::broker::{JobDelivery, Settlement};
use crate::job::outcome::{Event, FailureCause, PhaseTimings, ResultBody};
use crate::job::{InvalidJob, RefusalKind};
use crate::metrics::Metrics;

/// How a delivery ended, as far as acknowledgement is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEnd {
    /// The job's terminal result was published and confirmed.
    ResultConfirmed,
    /// The result could not be published after retries (contract 4.3).
    ResultUnpublished,
    /// Interrupted from outside (contract 4.4): committed work pushed, nothing published.
    Interrupted,
    /// This worker could not host the job (`reason` labels the requeue): nothing published.
    WorkerFault(&'static str),
    /// Invalid, and its `invalid-job` result was confirmed or it had no readable `jobId`.
    InvalidSettled,
    /// Invalid, and its `invalid-job` result could not be published.
    InvalidUnannounced,
    /// The result (a finished job's or an invalid job's) can never be published: it cannot be
    /// encoded as a message, so no retry or redelivery can help.
    Unpublishable,
}

/// The acknowledgement policy (contract section 4).
pub fn settlement(end: DeliveryEnd) -> Settlement {
    match end {
        DeliveryEnd::ResultConfirmed => Settlement::Ack,
        // Requeued: the redelivery resumes the branch and publishes the same outcome.
        DeliveryEnd::ResultUnpublished => Settlement::Requeue,
        DeliveryEnd::Interrupted => Settlement::Requeue,
        DeliveryEnd::WorkerFault(_) => Settlement::Requeue,
        DeliveryEnd::InvalidSettled => Settlement::DeadLetter,
        // Back to the queue so the refusal is announced later; the delivery limit still ends
        // a message that can never be announced in the dead-letter queue.
        DeliveryEnd::InvalidUnannounced => Settlement::Requeue,
        // Requeued, it would only fail the same way until the delivery limit; the dead-letter
        // queue keeps the message for a person, and the error log says why.
        DeliveryEnd::Unpublishable => Settlement::DeadLetter,
    }
}

/// With `x-delivery-limit = L` the broker delivers a message at most `L + 1` times; the last of
/// those must not be requeued again.
pub fn is_last_attempt(attempt: u32, delivery_limit: u32) -> bool {
    attempt > delivery_limit
}

/// A `failed` result the worker writes itself (a run that panicked, a last allowed delivery
/// that was interrupted, a job that died at the delivery limit): cause `agent`.
pub fn worker_failure(job_id: &str, attempt: u32, started_at: u64, error: String) -> ResultBody {
    ResultBody::failed(
        job_id,
        attempt,
        started_at,
        now_ms(),
        PhaseTimings::default(),
        FailureCause::Agent,
        error,
        None,
    )
}

/// One job's delivery on its way out.
pub struct Finish<'a> {
    pub metrics: &'a Metrics,
    pub sink: &'a dyn EventSink,
    pub publish_attempts: u32,
    pub delivery_limit: u32,
}

impl Finish<'_> {
    /// Publishes the end of a job's run and says how its delivery ended. An interruption or a
    /// worker fault on the last allowed delivery is finished as `failed` instead (4.5): one
    /// more requeue would dead-letter it unannounced. A replayed result is counted as a replay,
    /// never as a job finished here (contract 9).
    pub async fn publish_end(
        &self,
        mode: &str,
        attempt: u32,
        job_id: &str,
        started_at: u64,
        took: Duration,
        end: JobEnd,
    ) -> DeliveryEnd {
        let last = is_last_attempt(attempt, self.delivery_limit);
        let (body, replayed) = match end {
            JobEnd::WorkerFault(fault) if last => {
                let error = format!(
                    "no worker could run the job on its last allowed delivery (attempt {attempt}): {fault}"
                );
                (
                    Box::new(worker_failure(job_id, attempt, started_at, error)),
                    false,
                )
            }
            JobEnd::WorkerFault(fault) => return DeliveryEnd::WorkerFault(fault.reason),
            JobEnd::Interrupted if last => {
                tracing::warn!(
                    attempt,
                    "interrupted on its last allowed delivery: finishing it as failed"
                );
                let error = format!(
                    "the job was interrupted on its last allowed delivery (attempt {attempt}); \
                     its committed work was pushed to its branch"
                );
                (
                    Box::new(worker_failure(job_id, attempt, started_at, error)),
                    false,
                )
            }
            JobEnd::Interrupted => return DeliveryEnd::Interrupted,
            JobEnd::Finished(body) => (body, false),
            JobEnd::Replayed(body) => (body, true),
        };
        let event = Event::Result(*body);
        match publish_with_retry(self.sink, &event, self.publish_attempts).await {
            Ok(()) => {
                match &event {
                    Event::Result(_) if replayed => {
                        self.metrics.jobs_replayed.with_label_values(&[mode]).inc()
                    }
                    Event::Result(b) => record_finished(self.metrics, mode, b, took),
                    _ => {}
                }
                DeliveryEnd::ResultConfirmed
            }
            Err(e) => self.unpublished(&e, "the result"),
        }
    }

    /// Publishes the `invalid-job` result when the body's `jobId` could be read.
    pub async fn announce_invalid(&self, invalid: &InvalidJob, attempt: u32) -> DeliveryEnd {
        tracing::warn!(
            job_id = invalid.job_id.as_deref().unwrap_or(""),
            error = %invalid.message,
            "invalid job message"
        );
        let Some(job_id) = &invalid.job_id else {
            return DeliveryEnd::InvalidSettled;
        };
        let body = ResultBody::invalid(job_id, attempt, now_ms(), &invalid.message);
        match publish_with_retry(self.sink, &Event::Result(body), self.publish_attempts).await {
            Ok(()) => DeliveryEnd::InvalidSettled,
            Err(e) => match self.unpublished(&e, "the invalid-job result") {
                DeliveryEnd::ResultUnpublished => DeliveryEnd::InvalidUnannounced,
                other => other,
            },
        }
    }

    fn unpublished(&self, e: &SinkError, what: &str) -> DeliveryEnd {
        self.metrics
            .publish_failures
            .with_label_values(&[e.reason()])
            .inc();
        if e.is_transient() {
            tracing::error!(error = %e, "{what} could not be published: leaving the delivery unacked");
            DeliveryEnd::ResultUnpublished
        } else {
            tracing::error!(error = %e, "{what} can never be published: dead-lettering the delivery");
            DeliveryEnd::Unpublishable
        }
    }
}

/// Settles `delivery` and the held `duplicates` of its job as `end` says (contract 4.6: a
/// duplicate is settled with the run it waited for), and counts what happened: deliveries
/// requeued and dead-lettered by reason, and settles that did nothing. `refusal` is the rule an
/// invalid delivery broke.
pub async fn finish_delivery(
    metrics: &Metrics,
    end: DeliveryEnd,
    delivery: &JobDelivery,
    duplicates: Vec<JobDelivery>,
    refusal: Option<RefusalKind>,
) {
    let how = settlement(end);
    let reason = match (end, refusal) {
        (DeliveryEnd::Interrupted, _) => "interrupted",
        (DeliveryEnd::WorkerFault(reason), _) => reason,
        (DeliveryEnd::ResultUnpublished, _) => "publish-failed",
        (DeliveryEnd::InvalidUnannounced, _) => "invalid-unannounced",
        (DeliveryEnd::Unpublishable, _) => "unpublishable",
        (DeliveryEnd::InvalidSettled, Some(kind)) => kind.label(),
        (DeliveryEnd::InvalidSettled, None) => RefusalKind::Contract.label(),
        (DeliveryEnd::ResultConfirmed, _) => "",
    };
    if settle_one(metrics, delivery, how).await {
        count(metrics, how, reason);
    }
    for dup in duplicates {
        if settle_one(metrics, &dup, how).await {
            count(metrics, how, "duplicate-requeued");
        }
    }
}

fn count(metrics: &Metrics, how: Settlement, reason: &str) {
    match how {
        Settlement::Ack => {}
        Settlement::Requeue => metrics.jobs_requeued.with_label_values(&[reason]).inc(),
        Settlement::DeadLetter => metrics.jobs_rejected.with_label_values(&[reason]).inc(),
    }
}

/// Settles one delivery on its own channel. An ack that did nothing is not trusted: it is
/// logged and counted, and the broker will redeliver the message.
pub async fn settle_one(metrics: &Metrics, delivery: &JobDelivery, how: Settlement) -> bool {
    match delivery.settle(how).await {
        Ok(()) => true,
        Err(e) => {
            metrics
                .settle_failures
                .with_label_values(&[how.method()])
                .inc();
            tracing::error!(error = %e, settlement = how.method(), "cannot settle the delivery: the broker will redeliver it");
            false
        }
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
    fn a_confirmed_result_a_settled_refusal_or_an_unpublishable_one_removes_a_delivery() {
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
        assert_eq!(
            settlement(DeliveryEnd::Unpublishable),
            Settlement::DeadLetter
        );
    }

    /// Fails every publish with `fail`.
    struct FailingSink(fn() -> SinkError);

    impl EventSink for FailingSink {
        fn publish<'a>(
            &'a self,
            _event: &'a Event,
        ) -> super::super::events::BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move { Err((self.0)()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_that_cannot_be_encoded_is_dead_lettered_and_one_the_broker_refused_requeued()
    {
        use crate::broker::PublishError;
        let invalid = InvalidJob {
            job_id: Some("job-1".into()),
            message: "Invalid job: 'userPrompt' must be a non-empty string".into(),
            kind: RefusalKind::Contract,
        };
        let metrics = Metrics::new();
        let unencodable = FailingSink(|| {
            PublishError::InvalidMessage {
                field: "message_id",
            }
            .into()
        });
        let f = Finish {
            metrics: &metrics,
            sink: &unencodable,
            publish_attempts: 3,
            delivery_limit: 5,
        };
        let end = f.announce_invalid(&invalid, 1).await;
        assert_eq!(settlement(end), Settlement::DeadLetter);
        let unroutable = FailingSink(|| PublishError::Unroutable.into());
        let f = Finish {
            metrics: &metrics,
            sink: &unroutable,
            publish_attempts: 3,
            delivery_limit: 5,
        };
        let end = f.announce_invalid(&invalid, 1).await;
        assert_eq!(settlement(end), Settlement::Requeue);
    }
}
