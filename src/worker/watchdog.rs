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
    changed: Notify,
}

impl Default for ActivityClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            watching: AtomicBool::new(false),
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
    }

    /// The agent started (`true`) or ended (`false`); silence counts only in between.
    pub fn watch(&self, on: bool) {
        self.touch();
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
        }
    }

    pub fn failure_cause(&self) -> FailureCause {
        match self {
            KillReason::Inactivity { .. } => FailureCause::InactivityTimeout,
            KillReason::MaxDuration { .. } => FailureCause::MaxDuration,
            KillReason::Cancelled => FailureCause::Cancelled,
        }
    }

    /// The `reason` field of the `job failed` log line.
    pub fn label(&self) -> &'static str {
        match self {
            KillReason::Inactivity { .. } => "inactivity",
            KillReason::MaxDuration { .. } => "max-duration",
            KillReason::Cancelled => "cancelled",
        }
    }

    /// `Phase timings: <p=Ns, ...>. <breadcrumb>.` (seed 3.7). The inactivity breadcrumb is the
    /// one captured when the watchdog fired; `current` serves the cap.
    pub fn detail(&self, timings: &PhaseTimings, current: &str) -> String {
        let list = timings.describe();
        let list = if list.is_empty() { "(none)" } else { &list };
        let crumb = match self {
            KillReason::Inactivity { breadcrumb, .. } => breadcrumb.as_str(),
            KillReason::MaxDuration { .. } | KillReason::Cancelled => current,
        };
        format!("Phase timings: {list}. {crumb}.")
    }
}

/// Reads the job's phase and breadcrumb at the moment a watchdog fires.
pub trait JobState: Send + Sync {
    fn phase(&self) -> String;
    fn breadcrumb(&self) -> String;
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
        inactivity: Duration,
        max_duration: Duration,
        state: Arc<dyn JobState>,
        job: CancellationToken,
        tasks: &JobTasks,
    ) -> Self {
        let reason = Arc::new(OnceLock::new());
        let stop = CancellationToken::new();
        let task = tasks.spawn(watch(
            clock,
            inactivity,
            max_duration,
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
    inactivity: Duration,
    max_duration: Duration,
    state: Arc<dyn JobState>,
    job: CancellationToken,
    reason: Arc<OnceLock<KillReason>>,
    stop: CancellationToken,
) {
    let cap_at = Instant::now() + max_duration;
    loop {
        let watching = clock.watching.load(Ordering::Relaxed);
        let silent_at = clock.last_activity() + inactivity;
        let deadline = if watching {
            silent_at.min(cap_at)
        } else {
            cap_at
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.changed.notified() => continue,
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let now = Instant::now();
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
mod tests {
    use super::*;

    struct Fixed;
    impl JobState for Fixed {
        fn phase(&self) -> String {
            "agent".into()
        }
        fn breadcrumb(&self) -> String {
            "last completed tool bash 3s ago".into()
        }
    }

    #[test]
    fn the_messages_are_the_seed_texts_word_for_word() {
        let r = KillReason::Inactivity {
            window: Duration::from_millis(600_000),
            phase: "agent".into(),
            breadcrumb: "no tool had completed yet".into(),
        };
        assert_eq!(
            r.message(),
            "Aborted: no agent activity for 600s (likely hung in agent phase; no tool had completed yet)"
        );
        assert_eq!(r.failure_cause(), FailureCause::InactivityTimeout);
        let r = KillReason::MaxDuration {
            cap: Duration::from_millis(1_500),
        };
        assert_eq!(r.message(), "Aborted: exceeded max duration of 2s");
        assert_eq!(
            r.detail(&PhaseTimings::default(), "no tool had completed yet"),
            "Phase timings: (none). no tool had completed yet."
        );
        assert_eq!(r.failure_cause(), FailureCause::MaxDuration);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_of_a_running_agent_fires_inactivity_with_its_phase_and_breadcrumb() {
        let clock = Arc::new(ActivityClock::default());
        let job = CancellationToken::new();
        let w = Watchdog::start(
            clock.clone(),
            Duration::from_secs(10),
            Duration::from_secs(3600),
            Arc::new(Fixed),
            job.clone(),
            &JobTasks::new(),
        );
        clock.watch(true);
        tokio::time::sleep(Duration::from_secs(6)).await;
        clock.touch();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!job.is_cancelled(), "activity pushed the deadline");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(job.is_cancelled());
        assert_eq!(
            w.stop().await.unwrap().message(),
            "Aborted: no agent activity for 10s (likely hung in agent phase; last completed tool bash 3s ago)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_outside_the_agent_does_not_count_but_the_cap_does() {
        let clock = Arc::new(ActivityClock::default());
        let job = CancellationToken::new();
        let w = Watchdog::start(
            clock.clone(),
            Duration::from_secs(10),
            Duration::from_secs(60),
            Arc::new(Fixed),
            job.clone(),
            &JobTasks::new(),
        );
        // A long git step: no agent running, no activity.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!job.is_cancelled());
        clock.watch(true);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            clock.touch();
        }
        assert!(job.is_cancelled(), "busy past the cap");
        assert_eq!(
            w.stop().await,
            Some(KillReason::MaxDuration {
                cap: Duration::from_secs(60)
            })
        );
    }
}
