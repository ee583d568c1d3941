//! Cancels (contract 9): which jobs run here and how to stop each, and which `jobId`s were
//! cancelled, remembered for `worker.cancel_memory_ms`, so that a delivery arriving after its
//! cancel (a cancel sent before the job was taken, or a duplicate enqueue) is finished
//! without running.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::worker::watchdog::{KillReason, Killer};

/// The most cancelled ids remembered at once; past it the oldest are forgotten first, so a
/// flood of cancels cannot grow the worker's memory without bound.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Default)]
struct Inner {
    /// Running jobs by id: one entry per running delivery (a held duplicate never runs).
    running: HashMap<String, Vec<(u64, Killer)>>,
    next_key: u64,
    /// Cancelled ids and when, oldest first; the map gives each id's latest time.
    remembered: VecDeque<(Instant, String)>,
    latest: HashMap<String, Instant>,
}

/// The worker's cancels, shared by its consume loop and its jobs.
pub struct Cancels {
    memory: Duration,
    inner: Mutex<Inner>,
}

/// Keeps a running job registered; dropping it unregisters the job.
pub struct Registered<'a> {
    cancels: &'a Cancels,
    job_id: String,
    key: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut inner = self.cancels.lock();
        if let Some(list) = inner.running.get_mut(&self.job_id) {
            list.retain(|(k, _)| *k != self.key);
            if list.is_empty() {
                inner.running.remove(&self.job_id);
            }
        }
    }
}

impl Cancels {
    pub fn new(memory: Duration) -> Self {
        Self {
            memory,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a running job; `None` when it was cancelled already (then it must not run).
    pub fn register(&self, job_id: &str, killer: Killer) -> Option<Registered<'_>> {
        let mut inner = self.lock();
        let now = Instant::now();
        forget_old(&mut inner, now, self.memory);
        if inner.latest.contains_key(job_id) {
            return None;
        }
        let key = inner.next_key;
        inner.next_key += 1;
        inner
            .running
            .entry(job_id.to_owned())
            .or_default()
            .push((key, killer));
        Some(Registered {
            cancels: self,
            job_id: job_id.to_owned(),
            key,
        })
    }

    /// Cancels `job_id`: stops it if it runs here, and remembers it either way. Returns
    /// whether it was running here.
    pub fn cancel(&self, job_id: &str) -> bool {
        let mut inner = self.lock();
        let now = Instant::now();
        forget_old(&mut inner, now, self.memory);
        inner.latest.insert(job_id.to_owned(), now);
        inner.remembered.push_back((now, job_id.to_owned()));
        while inner.remembered.len() > MAX_REMEMBERED {
            if let Some((at, id)) = inner.remembered.pop_front() {
                if inner.latest.get(&id) == Some(&at) {
                    inner.latest.remove(&id);
                }
            }
        }
        match inner.running.get(job_id) {
            Some(list) => {
                for (_, killer) in list {
                    killer.kill(KillReason::Cancelled);
                }
                true
            }
            None => false,
        }
    }

    /// How many cancelled ids are remembered now.
    pub fn remembered(&self) -> usize {
        self.lock().latest.len()
    }
}

fn forget_old(inner: &mut Inner, now: Instant, memory: Duration) {
    while let Some((at, _)) = inner.remembered.front() {
        if now.duration_since(*at) < memory {
            break;
        }
        if let Some((at, id)) = inner.remembered.pop_front() {
            if inner.latest.get(&id) == Some(&at) {
                inner.latest.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::worker::tasks::JobTasks;
    use crate::worker::watchdog::{ActivityClock, JobState, Watchdog, Windows};

    struct Quiet;
    impl JobState for Quiet {
        fn phase(&self) -> String {
            "agent".into()
        }
        fn breadcrumb(&self) -> String {
            String::new()
        }
    }

    fn watchdog(token: &CancellationToken, tasks: &JobTasks) -> Watchdog {
        Watchdog::start(
            std::sync::Arc::new(ActivityClock::default()),
            Windows {
                inactivity: Duration::from_secs(3600),
                max_duration: Duration::from_secs(3600),
                tool_silence: Duration::ZERO,
                cold_start: Duration::ZERO,
            },
            std::sync::Arc::new(Quiet),
            token.clone(),
            tasks,
        )
    }

    #[tokio::test]
    async fn a_cancel_stops_the_running_job_with_its_reason_and_is_remembered() {
        let cancels = Cancels::new(Duration::from_secs(60));
        let (tasks, token) = (JobTasks::new(), CancellationToken::new());
        let dog = watchdog(&token, &tasks);
        let registered = cancels.register("j1", dog.killer(&token)).unwrap();
        assert!(!cancels.cancel("other"));
        assert!(!token.is_cancelled());
        assert!(cancels.cancel("j1"));
        assert!(token.is_cancelled());
        assert_eq!(dog.stop().await, Some(KillReason::Cancelled));
        drop(registered);
        let (tasks2, token2) = (JobTasks::new(), CancellationToken::new());
        let dog2 = watchdog(&token2, &tasks2);
        assert!(
            cancels.register("j1", dog2.killer(&token2)).is_none(),
            "a later delivery of a cancelled job does not run"
        );
        dog2.stop().await;
        tasks.end().await;
        tasks2.end().await;
    }

    #[tokio::test]
    async fn cancels_are_forgotten_after_the_memory_and_past_the_bound() {
        let cancels = Cancels::new(Duration::from_millis(30));
        cancels.cancel("old");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (tasks, token) = (JobTasks::new(), CancellationToken::new());
        let dog = watchdog(&token, &tasks);
        assert!(cancels.register("old", dog.killer(&token)).is_some());
        let many = Cancels::new(Duration::from_secs(60));
        for i in 0..MAX_REMEMBERED + 10 {
            many.cancel(&format!("j{i}"));
        }
        assert_eq!(many.remembered(), MAX_REMEMBERED);
        dog.stop().await;
        tasks.end().await;
    }
}
