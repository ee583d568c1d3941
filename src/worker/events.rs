//! Where a run's events go: the broker (the worker), JSON lines or a human status on stdout
//! (`run`, `demo`), or memory (tests). And the per-job reporter that numbers progress and
//! follow-up messages and publishes them in order.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::broker::{OutgoingMessage, PublishError, Publisher};
use crate::job::outcome::Event;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot write the event: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("not connected to the broker")]
    Disconnected,
}

impl SinkError {
    /// Label for `harness_publish_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::Publish(e) => e.reason(),
            SinkError::Disconnected => "channel-closed",
            SinkError::Io(_) | SinkError::Encode(_) => "other",
        }
    }

    /// Whether publishing the same event again could succeed: one that cannot be encoded (as
    /// JSON, or as an AMQP message) never will, so retrying it only delays the outcome.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Publish(e) => e.is_transient(),
            SinkError::Io(_) | SinkError::Disconnected => true,
            SinkError::Encode(_) => false,
        }
    }
}

/// Publishes events. `Ok` means delivered: for the broker, confirmed and routed.
pub trait EventSink: Send + Sync {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// Publishes to the events exchange with publisher confirms.
pub struct BrokerSink {
    pub publisher: Publisher,
    pub exchange: String,
}

impl EventSink for BrokerSink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let body = event.body_json()?;
            let ids = event.ids();
            self.publisher
                .publish(OutgoingMessage {
                    exchange: &self.exchange,
                    routing_key: event.routing_key(),
                    body: &body,
                    message_id: &ids.message_id,
                    correlation_id: &ids.correlation_id,
                    kind: event.type_name(),
                    attempt: event.attempt(),
                })
                .await?;
            Ok(())
        })
    }
}

/// The broker sink of the current connection, swapped on every reconnect, so a job that
/// outlives its connection still publishes (its delivery is another matter: only its own
/// channel can settle it).
#[derive(Default)]
pub struct CurrentSink {
    current: std::sync::RwLock<Option<Arc<dyn EventSink>>>,
}

impl CurrentSink {
    pub fn set(&self, sink: Option<Arc<dyn EventSink>>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    fn get(&self) -> Option<Arc<dyn EventSink>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl EventSink for CurrentSink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            match self.get() {
                Some(sink) => sink.publish(event).await,
                // The caller's retries span a reconnect.
                None => Err(SinkError::Disconnected),
            }
        })
    }
}

/// `run` and `demo` output: JSON lines (`{"type": ..., ...body}`), or a human-readable status
/// when stdout is a terminal.
pub struct StdoutSink {
    human: bool,
    lock: Mutex<()>,
}

impl StdoutSink {
    /// JSON lines unless stdout is a terminal and `json` was not asked for.
    pub fn new(force_json: bool) -> Self {
        Self {
            human: !force_json && std::io::stdout().is_terminal(),
            lock: Mutex::new(()),
        }
    }

    pub fn human(human: bool) -> Self {
        Self {
            human,
            lock: Mutex::new(()),
        }
    }

    fn line(&self, event: &Event) -> Result<String, serde_json::Error> {
        if !self.human {
            return serde_json::to_string(event);
        }
        Ok(match event {
            Event::Progress(p) => match (&p.progress, &p.spans) {
                (Some(t), _) => format!(
                    "  todo {}/{} ({} in progress)",
                    t.completed, t.total, t.in_progress
                ),
                (None, Some(spans)) => format!("  tools: {} completed", spans.len()),
                (None, None) => format!("phase: {}", p.phase),
            },
            Event::Followup(f) => format!("  follow-up #{}: {}", f.seq, f.item.title),
            Event::Result(r) => {
                let mut s = format!("result: {}", r.state.as_str());
                if let Some(res) = &r.result {
                    if let Some(b) = &res.branch {
                        s.push_str(&format!(", branch {b}"));
                    }
                    if let Some(p) = res.pushed {
                        s.push_str(&format!(", pushed {p}"));
                    }
                    if let Some(url) = &res.pr_url {
                        s.push_str(&format!(", PR {url}"));
                    }
                    if let Some(e) = &res.error {
                        s.push_str(&format!("\n  error: {e}"));
                    }
                }
                if let Some(e) = &r.error {
                    s.push_str(&format!("\n  error: {e}"));
                }
                s
            }
        })
    }
}

impl EventSink for StdoutSink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let line = self.line(event)?;
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
            Ok(())
        })
    }
}

/// Keeps every event in memory (tests, the demo's summary).
#[derive(Default, Clone)]
pub struct MemorySink {
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl MemorySink {
    pub fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl EventSink for MemorySink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(event.clone());
            Ok(())
        })
    }
}

/// Sends to two sinks (the demo shows a live status and keeps the events).
pub struct TeeSink<A, B>(pub A, pub B);

impl<A: EventSink, B: EventSink> EventSink for TeeSink<A, B> {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.0.publish(event).await?;
            self.1.publish(event).await
        })
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Publishes with a short exponential backoff; a permanent failure is returned at once.
pub async fn publish_with_retry(
    sink: &dyn EventSink,
    event: &Event,
    attempts: u32,
) -> Result<(), SinkError> {
    use backon::{ExponentialBuilder, Retryable};
    let attempts = attempts.max(1);
    (|| async { sink.publish(event).await })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_millis(200))
                .with_max_delay(std::time::Duration::from_secs(5))
                .with_max_times((attempts - 1) as usize)
                .with_jitter(),
        )
        .when(SinkError::is_transient)
        .notify(|e: &SinkError, wait| {
            tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "publish failed, retrying")
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use serde::ser::Error as _;

    use super::*;
    use crate::job::outcome::{JobState, PhaseTimings, ResultBody};

    /// Fails every publish with the error `fail` makes, counting the tries.
    struct FailingSink {
        tries: AtomicU32,
        fail: fn() -> SinkError,
    }

    impl EventSink for FailingSink {
        fn publish<'a>(&'a self, _event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                self.tries.fetch_add(1, Ordering::SeqCst);
                Err((self.fail)())
            })
        }
    }

    async fn tries_until_given_up(fail: fn() -> SinkError, attempts: u32) -> u32 {
        let sink = FailingSink {
            tries: AtomicU32::new(0),
            fail,
        };
        let event = Event::Result(ResultBody {
            job_id: "j".into(),
            attempt: 1,
            state: JobState::Failed,
            started_at: 0,
            finished_at: 0,
            phase_timings_ms: PhaseTimings::default(),
            result: None,
            error: None,
            failure_cause: None,
            detail: None,
            worker: None,
            spent: None,
        });
        assert!(publish_with_retry(&sink, &event, attempts).await.is_err());
        sink.tries.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_that_cannot_be_encoded_is_tried_once_and_never_retried() {
        let permanent: [fn() -> SinkError; 2] = [
            || {
                PublishError::InvalidMessage {
                    field: "message_id",
                }
                .into()
            },
            || serde_json::Error::custom("not encodable").into(),
        ];
        for fail in permanent {
            assert!(!fail().is_transient(), "{}", fail());
            assert_eq!(tries_until_given_up(fail, 5).await, 1, "{}", fail());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_the_broker_may_get_over_is_retried_up_to_the_attempts() {
        let transient: [fn() -> SinkError; 5] = [
            || PublishError::Nacked.into(),
            || PublishError::Unroutable.into(),
            || PublishError::ConfirmTimeout.into(),
            || PublishError::NotConfirmed.into(),
            || SinkError::Disconnected,
        ];
        for fail in transient {
            assert!(fail().is_transient(), "{}", fail());
            assert_eq!(tries_until_given_up(fail, 4).await, 4, "{}", fail());
        }
    }
}
