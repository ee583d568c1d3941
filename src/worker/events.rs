//! Where a run's events go: the broker (the worker), JSON lines or a human status on stdout
//! (`run`, `demo`), or memory (tests). And the per-job reporter that numbers progress and
//! follow-up messages and publishes them in order.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::broker::{OutgoingMessage, PublishError, Publisher};
use crate::job::outcome::{
    Event, FollowUpBody, FollowUpItem, PhaseTimings, ProgressBody, TodoProgress, ToolSpan,
};
use crate::metrics::Metrics;
use crate::redact::Redactor;
use crate::worker::watchdog::{ActivityClock, JobState};

/// Tool spans go out in batches, at most one a second (contract 3.2).
const SPAN_BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

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
            let message_id = event.message_id();
            self.publisher
                .publish(OutgoingMessage {
                    exchange: &self.exchange,
                    routing_key: event.routing_key(),
                    body: &body,
                    message_id: &message_id,
                    correlation_id: event.job_id(),
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

/// Phase tracking: the current phase and the time spent in each one, in entry order.
#[derive(Debug)]
struct Phases {
    current: String,
    since: Instant,
    timings: PhaseTimings,
}

/// Numbers and publishes one job's progress and follow-up messages, in order, from one
/// background task, so the flow never waits on the broker for them; `finish` drains it, which
/// puts every follow-up before the result.
pub struct JobReporter {
    job_id: String,
    attempt: u32,
    redactor: Redactor,
    phases: Mutex<Phases>,
    todo: Mutex<Option<TodoProgress>>,
    /// Agent activity, read by the inactivity watchdog.
    clock: Arc<ActivityClock>,
    /// The last completed tool and when, for the failure breadcrumb.
    last_tool: Mutex<Option<(String, Instant)>>,
    /// Completed tool calls not yet published; sent in batches, at most one a second.
    spans: Mutex<Vec<ToolSpan>>,
    seq: Mutex<(u64, u64)>,
    tx: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    task: Mutex<Option<tokio::task::JoinHandle<u64>>>,
}

impl JobReporter {
    pub fn start(
        job_id: &str,
        attempt: u32,
        redactor: Redactor,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let task = tokio::spawn(async move {
            let mut failures = 0u64;
            while let Some(event) = rx.recv().await {
                if let Err(e) = publish_with_retry(sink.as_ref(), &event, 3).await {
                    failures += 1;
                    metrics
                        .publish_failures
                        .with_label_values(&[e.reason()])
                        .inc();
                    tracing::warn!(error = %e, kind = event.type_name(), "event publish failed");
                } else if matches!(event, Event::Followup(_)) {
                    metrics.followups_published.inc();
                }
            }
            failures
        });
        let reporter = Arc::new(Self {
            job_id: job_id.to_owned(),
            attempt,
            redactor,
            phases: Mutex::new(Phases {
                current: "starting".into(),
                since: Instant::now(),
                timings: PhaseTimings::default(),
            }),
            todo: Mutex::new(None),
            last_tool: Mutex::new(None),
            spans: Mutex::new(Vec::new()),
            clock: Arc::new(ActivityClock::default()),
            seq: Mutex::new((0, 0)),
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        });
        let weak = Arc::downgrade(&reporter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SPAN_BATCH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(r) if r.is_open() => r.flush_spans(),
                    _ => return,
                }
            }
        });
        reporter
    }

    fn is_open(&self) -> bool {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Publishes the buffered tool spans as one progress message.
    fn flush_spans(&self) {
        let spans = std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()));
        if spans.is_empty() {
            return;
        }
        let event = Event::Progress(ProgressBody {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            seq: self.next_progress_seq(),
            at: now_ms(),
            phase: self.phase(),
            progress: None,
            spans: Some(spans),
        });
        self.send(event);
    }

    fn send(&self, event: Event) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(event);
        }
    }

    fn next_progress_seq(&self) -> u64 {
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.0
    }

    pub fn phase(&self) -> String {
        self.phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .clone()
    }

    /// Announces the job (phase `starting`).
    pub fn announce(&self) {
        self.progress_event(None);
    }

    /// Moves to `next`, adding the time of the previous phase to its total, and publishes it.
    pub fn mark_phase(&self, next: &str) {
        {
            let mut p = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            let elapsed = p.since.elapsed().as_millis() as u64;
            let prev = std::mem::replace(&mut p.current, next.to_owned());
            p.timings.add(&prev, elapsed);
            p.since = Instant::now();
        }
        self.progress_event(None);
    }

    /// Closes the phase list with a terminal `done`/`failed` (not published: the result says it).
    pub fn finish_phases(&self, terminal: &str) -> PhaseTimings {
        let mut p = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = p.since.elapsed().as_millis() as u64;
        let prev = std::mem::replace(&mut p.current, terminal.to_owned());
        p.timings.add(&prev, elapsed);
        p.since = Instant::now();
        p.timings.clone()
    }

    pub fn todo(&self, progress: TodoProgress) {
        {
            let mut t = self.todo.lock().unwrap_or_else(|p| p.into_inner());
            if t.as_ref() == Some(&progress) {
                return;
            }
            *t = Some(progress.clone());
        }
        self.progress_event(Some(progress));
    }

    fn progress_event(&self, progress: Option<TodoProgress>) {
        let progress = progress.map(|mut p| {
            if let Some(items) = p.items.as_mut() {
                for i in items {
                    i.label = self.redactor.redact(&i.label);
                }
            }
            p
        });
        let event = Event::Progress(ProgressBody {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            seq: self.next_progress_seq(),
            at: now_ms(),
            phase: self.phase(),
            progress,
            spans: None,
        });
        self.send(event);
    }

    pub fn clock(&self) -> Arc<ActivityClock> {
        self.clock.clone()
    }

    /// Agent output (stdout or stderr): the agent is alive.
    pub fn activity(&self) {
        self.clock.touch();
    }

    /// Silence counts against the inactivity window only while the agent runs.
    pub fn agent_running(&self, on: bool) {
        self.clock.watch(on);
    }

    /// Records a completed tool call: the breadcrumb, and the next span batch.
    pub fn span(&self, mut span: ToolSpan) {
        span.tool = self.redactor.redact(&span.tool);
        *self.last_tool.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((span.tool.clone(), Instant::now()));
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(span);
    }

    /// `last completed tool <name> <N>s ago`, or `no tool had completed yet` (seed 3.7).
    pub fn breadcrumb(&self) -> String {
        match &*self.last_tool.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((tool, at)) => format!(
                "last completed tool {tool} {}s ago",
                at.elapsed().as_secs_f64().round() as u64
            ),
            None => "no tool had completed yet".to_owned(),
        }
    }

    pub fn followup(&self, item: FollowUpItem) {
        let seq = {
            let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
            s.1 += 1;
            s.1
        };
        let item = FollowUpItem {
            title: self.redactor.redact(&item.title),
            detail: self.redactor.redact(&item.detail),
            suggested_action: item.suggested_action.map(|s| self.redactor.redact(&s)),
            kind: item.kind,
        };
        self.send(Event::Followup(FollowUpBody {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            seq,
            item,
        }));
    }

    /// Publishes everything queued and stops the background task. Returns the number of events
    /// that could not be published.
    pub async fn finish(&self) -> u64 {
        self.flush_spans();
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        match task {
            Some(t) => t.await.unwrap_or_default(),
            None => 0,
        }
    }
}

impl JobState for JobReporter {
    fn phase(&self) -> String {
        JobReporter::phase(self)
    }

    fn breadcrumb(&self) -> String {
        JobReporter::breadcrumb(self)
    }
}

/// Publishes with a short exponential backoff.
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
        .notify(|e: &SinkError, wait| {
            tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "publish failed, retrying")
        })
        .await
}
