//! The worker: the consume loop, the flow of one job, and the one function that decides how a
//! delivery is settled (contract section 4).
//!
//! - `consume`: the consume loop, reconnection and the drain ([`run_worker`]).
//! - `git_steps`: git steps with their timeouts, and the checkpoint pushes.
//! - [`reporter`]: the per-job progress and follow-up publisher.
//! - [`run`]: the job driver (phases, result body, failure mapping).
//! - [`coding`]: the ordinary coding flow.
//! - `completion`: reading and recording a job's completion ref, one outcome per job when two
//!   runs race, and pruning old refs.
//! - `dead_letters`: the result of a job that died at the delivery limit.
//! - [`events`]: where events go (broker, stdout, memory).
//! - [`watchdog`]: the max-duration cap and the agent-inactivity window.
//! - [`workspace`]: the job's private checkout and HOME.

pub mod coding;
mod completion;
mod consume;
mod dead_letters;
pub mod events;
mod git_steps;
pub mod reporter;
pub mod run;
pub mod watchdog;
pub mod workspace;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::broker::{BrokerError, JobDelivery, Settlement, Topology};
use crate::config::Config;
use crate::job::outcome::{Event, JobState, ResultBody};
use crate::job::{AgentJob, InvalidJob};
use crate::metrics::Metrics;
use events::{publish_with_retry, EventSink};
use run::{invalid_job_result, run_job, JobContext, JobEnd};

pub use consume::run_worker;

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
    /// The result (a finished job's or an invalid job's) can never be published: it cannot be
    /// encoded as a message, so no retry or redelivery can help.
    Unpublishable,
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
        // Requeued, it would only fail the same way until the delivery limit; the dead-letter
        // queue keeps the message for a person, and the error log says why.
        DeliveryEnd::Unpublishable => Settlement::DeadLetter,
    }
}

/// The broker objects named by the configuration.
pub fn topology(config: &Config) -> Topology {
    let a = &config.amqp;
    Topology {
        jobs_queue: a.jobs_queue.clone(),
        dead_exchange: a.dead_exchange.clone(),
        dead_queue: a.dead_queue.clone(),
        dead_watch_queue: a.dead_watch_queue.clone(),
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
        // A bug that panics inside one job must not leave its delivery unsettled until the
        // worker restarts: it becomes a failed result like any other failure.
        let end = AssertUnwindSafe(run_job(
            &self.ctx,
            &job,
            attempt,
            self.sink.clone(),
            self.cancel,
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "the job's task panicked");
            JobEnd::Finished(Box::new(worker_failure(
                &job.job_id,
                attempt,
                started_at,
                "the worker failed internally while running this job".into(),
            )))
        });
        let last_chance = is_last_attempt(attempt, self.ctx.config.amqp.delivery_limit);
        let end = match end {
            // One more requeue would dead-letter it unannounced: finish it instead (4.5).
            JobEnd::Interrupted if last_chance => {
                tracing::warn!(
                    attempt,
                    "interrupted on its last allowed delivery: finishing it as failed"
                );
                JobEnd::Finished(Box::new(worker_failure(
                    &job.job_id,
                    attempt,
                    started_at,
                    format!(
                        "the job was interrupted on its last allowed delivery (attempt {attempt}); \
                         its committed work was pushed to its branch"
                    ),
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
                    Err(e) if !e.is_transient() => {
                        m.publish_failures.with_label_values(&[e.reason()]).inc();
                        tracing::error!(error = %e, "the result can never be published: dead-lettering the job");
                        DeliveryEnd::Unpublishable
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

/// A `failed` result the worker writes itself: a run that panicked (a bug of the worker), or a
/// last allowed delivery that was interrupted.
fn worker_failure(job_id: &str, attempt: u32, started_at: u64, error: String) -> ResultBody {
    ResultBody {
        job_id: job_id.to_owned(),
        attempt,
        state: JobState::Failed,
        started_at,
        finished_at: events::now_ms(),
        phase_timings_ms: Default::default(),
        result: None,
        error: Some(error),
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
        Err(e) if !e.is_transient() => {
            tracing::error!(error = %e, "the invalid-job result can never be published: dead-lettering the message unannounced");
            DeliveryEnd::Unpublishable
        }
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
    crate::sys::hostname().unwrap_or_else(|_| "unknown".into())
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
    struct FailingSink(fn() -> events::SinkError);

    impl EventSink for FailingSink {
        fn publish<'a>(
            &'a self,
            _event: &'a Event,
        ) -> events::BoxFuture<'a, Result<(), events::SinkError>> {
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
        };
        let unencodable = FailingSink(|| {
            PublishError::InvalidMessage {
                field: "message_id",
            }
            .into()
        });
        let end = announce_invalid(&invalid, 1, &unencodable, 3).await;
        assert_eq!(settlement(end), Settlement::DeadLetter);
        let unroutable = FailingSink(|| PublishError::Unroutable.into());
        let end = announce_invalid(&invalid, 1, &unroutable, 3).await;
        assert_eq!(settlement(end), Settlement::Requeue);
    }
}
