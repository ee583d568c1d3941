//! The per-job reporter: numbers and publishes a job's progress (phases, todo snapshots, tool
//! span batches) and follow-ups in order from one background task, tracks the phase timings
//! and the breadcrumb, and carries the agent-activity clock the watchdog reads.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::events::{now_ms, publish_with_retry, EventSink};
use crate::job::outcome::{
    CallMetric, ColdStart, Event, FollowUpBody, FollowUpItem, PhaseTimings, ProgressBody,
    TodoProgress, ToolServer, ToolSpan, ValidationReport,
};
use crate::metrics::Metrics;
use crate::redact::Redactor;
use crate::worker::ledger::{Batch, Ledger};
use crate::worker::tasks::JobTasks;
use crate::worker::watchdog::{ActivityClock, JobState};

/// Tool spans and model calls go out in batches, at most one a second (contract 3.2).
const SPAN_BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Follow-ups queued and not yet published; past that `followup` waits, so an agent writing
/// them faster than the broker takes them slows its reader instead of growing the queue.
const FOLLOWUPS_IN_FLIGHT: usize = 64;

/// An event on its way to the publisher, with the follow-up slot it holds until published.
struct Queued {
    event: Event,
    _slot: Option<OwnedSemaphorePermit>,
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
    /// The cold-start diagnosis, once recorded (seed-later 5.2).
    cold_start: std::sync::OnceLock<String>,
    /// The last completed tool and when, for the failure breadcrumb.
    last_tool: Mutex<Option<(String, Instant)>>,
    /// Tool spans and model calls: batched for progress, kept for the result.
    ledger: Ledger,
    seq: Mutex<(u64, u64)>,
    followup_slots: Arc<Semaphore>,
    tx: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
    task: Mutex<Option<tokio::task::JoinHandle<u64>>>,
}

impl JobReporter {
    /// Starts the publisher and the span flusher among the job's `tasks`.
    pub fn start(
        job_id: &str,
        attempt: u32,
        redactor: Redactor,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        tasks: &JobTasks,
    ) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        let task = tasks.spawn(async move {
            let mut failures = 0u64;
            while let Some(Queued { event, _slot: slot }) = rx.recv().await {
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
                // Published or given up: a follow-up's slot frees only now.
                drop(slot);
            }
            failures
        });
        let reporter = Arc::new(Self {
            job_id: job_id.to_owned(),
            attempt,
            ledger: Ledger::new(redactor.clone()),
            redactor,
            phases: Mutex::new(Phases {
                current: "starting".into(),
                since: Instant::now(),
                timings: PhaseTimings::default(),
            }),
            todo: Mutex::new(None),
            cold_start: std::sync::OnceLock::new(),
            last_tool: Mutex::new(None),
            clock: Arc::new(ActivityClock::default()),
            seq: Mutex::new((0, 0)),
            followup_slots: Arc::new(Semaphore::new(FOLLOWUPS_IN_FLIGHT)),
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        });
        let weak = Arc::downgrade(&reporter);
        tasks.spawn_until_end(async move {
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

    /// Publishes the buffered tool spans and model calls as one progress message.
    fn flush_spans(&self) {
        let Some(batch) = self.ledger.take_batch() else {
            return;
        };
        let Batch {
            spans,
            calls,
            spans_dropped,
            calls_dropped,
        } = batch;
        self.send(Event::Progress(ProgressBody {
            spans: (!spans.is_empty()).then_some(spans),
            call_metrics: (!calls.is_empty()).then_some(calls),
            spans_dropped: (spans_dropped > 0).then_some(spans_dropped),
            call_metrics_dropped: (calls_dropped > 0).then_some(calls_dropped),
            ..self.progress_body()
        }));
    }

    /// The next progress message, numbered, in the current phase, carrying nothing yet.
    fn progress_body(&self) -> ProgressBody {
        ProgressBody {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            seq: self.next_progress_seq(),
            at: now_ms(),
            phase: self.phase(),
            progress: None,
            spans: None,
            call_metrics: None,
            spans_dropped: None,
            call_metrics_dropped: None,
            tool_servers: None,
            validation_report: None,
            cold_start: None,
        }
    }

    /// One progress message: the current phase, with a todo snapshot or nothing more.
    fn send_progress(&self, progress: Option<TodoProgress>) {
        self.send(Event::Progress(ProgressBody {
            progress,
            ..self.progress_body()
        }));
    }

    /// Publishes a finished validation attempt's report, whole (its tails already scrubbed).
    pub fn validation_report(&self, report: &ValidationReport) {
        self.send(Event::Progress(ProgressBody {
            validation_report: Some(report.clone()),
            ..self.progress_body()
        }));
    }

    fn send(&self, event: Event) {
        self.send_holding(event, None);
    }

    fn send_holding(&self, event: Event, slot: Option<OwnedSemaphorePermit>) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(Queued { event, _slot: slot });
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
        // The last tool spans belong to the phase they ran in.
        self.flush_spans();
        {
            let mut p = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            let elapsed = p.since.elapsed().as_millis() as u64;
            let prev = std::mem::replace(&mut p.current, next.to_owned());
            p.timings.add(&prev, elapsed);
            p.since = Instant::now();
        }
        self.progress_event(None);
    }

    /// Closes the phase list with a terminal `done`/`failed` (its own time is not counted).
    pub fn finish_phases(&self, terminal: &str) -> PhaseTimings {
        // The last tool spans belong to the phase they ran in.
        self.flush_spans();
        let timings = {
            let mut p = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            let elapsed = p.since.elapsed().as_millis() as u64;
            let prev = std::mem::replace(&mut p.current, terminal.to_owned());
            p.timings.add(&prev, elapsed);
            p.since = Instant::now();
            p.timings.clone()
        };
        // The terminal phase is a phase change too; it goes out before the result.
        self.progress_event(None);
        timings
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
                    i.label = self.redactor.redact_prose(&i.label);
                }
            }
            p
        });
        self.send_progress(progress);
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

    /// The cold-start note for a failure's `detail`, when one was recorded.
    pub fn cold_start_note(&self) -> Option<String> {
        self.cold_start.get().map(|m| format!(" Cold start: {m}."))
    }

    /// Records a completed tool call: the breadcrumb, the tool-silence window, and the next
    /// batch.
    pub fn span(&self, span: ToolSpan) {
        self.clock.tool_done();
        *self.last_tool.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((self.redactor.redact(&span.tool), Instant::now()));
        self.ledger.span(span);
    }

    /// Records a completed model call, in the current phase.
    pub fn call(&self, call: CallMetric) {
        self.ledger.call(call, self.phase());
    }

    /// The tool servers the agent reported: kept for the result, published at once.
    pub fn tool_servers(&self, servers: Vec<ToolServer>) {
        self.ledger.tool_servers(servers.clone());
        self.send(Event::Progress(ProgressBody {
            tool_servers: Some(servers),
            ..self.progress_body()
        }));
    }

    /// The job's spending and trajectory.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
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

    /// Queues a follow-up, first waiting while `FOLLOWUPS_IN_FLIGHT` are not published yet.
    pub async fn followup(&self, item: FollowUpItem) {
        // Never closed, so this always gets a slot.
        let slot = self.followup_slots.clone().acquire_owned().await.ok();
        let seq = {
            let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
            s.1 += 1;
            s.1
        };
        let item = FollowUpItem {
            title: self.redactor.redact_prose(&item.title),
            detail: self.redactor.redact_prose(&item.detail),
            suggested_action: item
                .suggested_action
                .map(|s| self.redactor.redact_prose(&s)),
            kind: item.kind,
        };
        self.send_holding(
            Event::Followup(FollowUpBody {
                job_id: self.job_id.clone(),
                attempt: self.attempt,
                seq,
                item,
            }),
            slot,
        );
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

    fn cold_start(&self, after: std::time::Duration) {
        let phase = self.phase();
        let message = format!(
            "agent produced no output {}s after start; possible onboarding/auth wedge (phase: {phase})",
            after.as_secs_f64().round() as u64
        );
        if self.cold_start.set(message.clone()).is_err() {
            return;
        }
        tracing::warn!(after_ms = after.as_millis() as u64, phase = %phase, "cold-start: no agent output");
        // One progress message, so the dispatcher sees the early warning while the job runs.
        self.send(Event::Progress(ProgressBody {
            cold_start: Some(ColdStart {
                at_ms: now_ms(),
                message,
            }),
            ..self.progress_body()
        }));
    }
}

#[cfg(test)]
#[path = "reporter_tests.rs"]
mod tests;
