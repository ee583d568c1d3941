//! The job's two watchdogs (seed 6): the wall-clock cap and the inactivity window. The first to
//! fire decides the reason and cancels the job's token.
//!
//! Unlike the seed, the inactivity window counts only the agent's silence: it runs while the
//! agent runs and is reset by its output. Git steps have their own timeouts (reported as `git`)
//! and the worker's own waits are bounded where they happen, so a chain of slow git commands is
//! never mistaken for a hung agent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

// tokio's clock, so tests can run the watchdogs on paused time.
use tokio::time::Instant;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::job::outcome::{FailureCause, PhaseTimings};
use crate::worker::tasks::JobTasks;

/// What the agent's output touches: the time of the last activity, and whether the agent is
/// running (the only time silence counts).
#[derive(Debug)]
pub struct ActivityClock {
    origin: Instant,
    last_ms: AtomicU64,
    watching: AtomicBool,
    /// Any output or heartbeat at all, ever (the cold-start diagnosis).
    heard: AtomicBool,
    /// An agent's stream is open: completed tool calls are expected (seed-later 5.1).
    tool_window: AtomicBool,
    /// When the tool window was opened or a tool call last completed.
    last_tool_ms: AtomicU64,
    changed: Notify,
}

impl Default for ActivityClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            heard: AtomicBool::new(false),
            tool_window: AtomicBool::new(false),
            last_tool_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }
}

impl ActivityClock {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Agent output: pushes the inactivity deadline forward.
    pub fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.heard.store(true, Ordering::Relaxed);
    }

    /// An agent's stream opened (`true`) or closed: completed tool calls count only between.
    pub fn tool_window(&self, open: bool) {
        self.last_tool_ms.store(self.now_ms(), Ordering::Relaxed);
        self.tool_window.store(open, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// A tool call completed: re-arms the tool-silence window.
    pub fn tool_done(&self) {
        self.last_tool_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn last_tool(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_tool_ms.load(Ordering::Relaxed))
    }

    /// The agent started (`true`) or ended (`false`); silence counts only in between.
    pub fn watch(&self, on: bool) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.watching.store(on, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn last_activity(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Why a watchdog killed the job, with what the message needs, captured when it fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    Inactivity {
        window: Duration,
        phase: String,
        breadcrumb: String,
    },
    MaxDuration {
        cap: Duration,
    },
    /// A `job.cancel` control message named the job (contract 9).
    Cancelled,
    /// The agent kept producing output but completed no tool call (seed-later 5.1).
    ToolSilence {
        window: Duration,
        breadcrumb: String,
    },
}

fn secs(d: Duration) -> u64 {
    (d.as_millis() as f64 / 1000.0).round() as u64
}

impl KillReason {
    /// The stable texts downstream regexes read (seed 3.7), word for word.
    pub fn message(&self) -> String {
        match self {
            KillReason::Inactivity {
                window,
                phase,
                breadcrumb,
            } => format!(
                "Aborted: no agent activity for {}s (likely hung in {phase} phase; {breadcrumb})",
                secs(*window)
            ),
            KillReason::MaxDuration { cap } => {
                format!("Aborted: exceeded max duration of {}s", secs(*cap))
            }
            KillReason::Cancelled => {
                "Cancelled: a job.cancel message asked to stop this job".to_owned()
            }
            KillReason::ToolSilence { window, breadcrumb } => format!(
                "Aborted: the agent produced output but completed no tool call for {}s ({breadcrumb})",
                secs(*window)
            ),
        }
    }

    pub fn failure_cause(&self) -> FailureCause {
        match self {
            KillReason::Inactivity { .. } => FailureCause::InactivityTimeout,
            KillReason::MaxDuration { .. } => FailureCause::MaxDuration,
            KillReason::Cancelled => FailureCause::Cancelled,
            KillReason::ToolSilence { .. } => FailureCause::NoToolProgress,
        }
    }

    /// The `reason` field of the `job failed` log line.
    pub fn label(&self) -> &'static str {
        match self {
            KillReason::Inactivity { .. } => "inactivity",
            KillReason::MaxDuration { .. } => "max-duration",
            KillReason::Cancelled => "cancelled",
            KillReason::ToolSilence { .. } => "no-tool-progress",
        }
    }

    /// `Phase timings: <p=Ns, ...>. <breadcrumb>.` (seed 3.7). The inactivity breadcrumb is the
    /// one captured when the watchdog fired; `current` serves the cap.
    pub fn detail(&self, timings: &PhaseTimings, current: &str) -> String {
        let list = timings.describe();
        let list = if list.is_empty() { "(none)" } else { &list };
        let crumb = match self {
            KillReason::Inactivity { breadcrumb, .. }
            | KillReason::ToolSilence { breadcrumb, .. } => breadcrumb.as_str(),
            KillReason::MaxDuration { .. } | KillReason::Cancelled => current,
        };
        format!("Phase timings: {list}. {crumb}.")
    }
}

/// Reads the job's phase and breadcrumb at the moment a watchdog fires.
pub trait JobState: Send + Sync {
    fn phase(&self) -> String;
    fn breadcrumb(&self) -> String;
    /// The agent has said nothing this long after the job started (seed-later 5.2): recorded,
    /// never a kill.
    fn cold_start(&self, _after: Duration) {}
}

/// The watchdogs' windows: 0 turns the tool-silence and cold-start ones off.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub inactivity: Duration,
    pub max_duration: Duration,
    pub tool_silence: Duration,
    pub cold_start: Duration,
}

pub struct Watchdog {
    reason: Arc<OnceLock<KillReason>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    /// Starts both watchdogs among the job's `tasks`; when one fires it records its reason
    /// and cancels `job`.
    pub fn start(
        clock: Arc<ActivityClock>,
        windows: Windows,
        state: Arc<dyn JobState>,
        job: CancellationToken,
        tasks: &JobTasks,
    ) -> Self {
        let reason = Arc::new(OnceLock::new());
        let stop = CancellationToken::new();
        let task = tasks.spawn(watch(
            clock,
            windows,
            state,
            job,
            reason.clone(),
            stop.clone(),
        ));
        Self { reason, stop, task }
    }

    /// A handle that stops the job as a watchdog would, for a reason of its own.
    pub fn killer(&self, job: &CancellationToken) -> Killer {
        Killer {
            reason: self.reason.clone(),
            job: job.clone(),
        }
    }

    pub fn kill_reason(&self) -> Option<KillReason> {
        self.reason.get().cloned()
    }

    pub async fn stop(self) -> Option<KillReason> {
        self.stop.cancel();
        let _ = self.task.await;
        self.reason.get().cloned()
    }
}

/// Stops one job from outside (a cancel): records the reason unless a watchdog fired first,
/// then cancels the job's token.
#[derive(Clone)]
pub struct Killer {
    reason: Arc<OnceLock<KillReason>>,
    job: CancellationToken,
}

impl Killer {
    pub fn kill(&self, why: KillReason) {
        let _ = self.reason.set(why);
        self.job.cancel();
    }
}

async fn watch(
    clock: Arc<ActivityClock>,
    windows: Windows,
    state: Arc<dyn JobState>,
    job: CancellationToken,
    reason: Arc<OnceLock<KillReason>>,
    stop: CancellationToken,
) {
    let Windows {
        inactivity,
        max_duration,
        tool_silence,
        cold_start,
    } = windows;
    let started = Instant::now();
    let cap_at = started + max_duration;
    let mut cold_at = (!cold_start.is_zero()).then_some(started + cold_start);
    loop {
        let watching = clock.watching.load(Ordering::Relaxed);
        let mut deadline = cap_at;
        if watching {
            deadline = deadline.min(clock.last_activity() + inactivity);
        }
        let tool_window = !tool_silence.is_zero() && clock.tool_window.load(Ordering::Relaxed);
        if tool_window {
            deadline = deadline.min(clock.last_tool() + tool_silence);
        }
        if let Some(at) = cold_at {
            deadline = deadline.min(at);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.changed.notified() => continue,
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let now = Instant::now();
        if cold_at.is_some_and(|at| now >= at) {
            cold_at = None;
            if !clock.heard.load(Ordering::Relaxed) {
                state.cold_start(now - started);
            }
        }
        let fired = if now >= cap_at {
            Some(KillReason::MaxDuration { cap: max_duration })
        } else if clock.watching.load(Ordering::Relaxed)
            && now >= clock.last_activity() + inactivity
        {
            Some(KillReason::Inactivity {
                window: inactivity,
                phase: state.phase(),
                breadcrumb: state.breadcrumb(),
            })
        } else if tool_window
            && clock.tool_window.load(Ordering::Relaxed)
            && now >= clock.last_tool() + tool_silence
        {
            if clock.last_activity() > clock.last_tool() {
                Some(KillReason::ToolSilence {
                    window: tool_silence,
                    breadcrumb: state.breadcrumb(),
                })
            } else {
                // Silent since the window was armed: the inactivity window's case. Re-arm.
                clock.tool_done();
                None
            }
        } else {
            // Activity moved the deadline: sleep again.
            None
        };
        if let Some(r) = fired {
            tracing::warn!(reason = %r.message(), "watchdog fired: stopping the job");
            let _ = reason.set(r);
            job.cancel();
            return;
        }
    }
}

#[cfg(test)]
#[path = "watchdog_tests.rs"]
mod tests;
