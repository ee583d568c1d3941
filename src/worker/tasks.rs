//! The tasks a job starts beside its flow (the reporter's publisher and span flusher, the
//! watchdog, the checkpoint loop, the follow-up watcher): all in one tracker, each in the
//! job's span (so every line it logs carries the job's id and attempt), and all ended with the
//! job.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// One job's helper tasks.
#[derive(Clone, Default)]
pub struct JobTasks {
    tracker: TaskTracker,
    end: CancellationToken,
}

impl JobTasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a helper that ends by itself (its owner stops it), in the current span.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker
            .spawn(task.instrument(tracing::Span::current()))
    }

    /// Spawns a helper that runs until the job ends, in the current span.
    pub fn spawn_until_end<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let end = self.end.clone();
        self.spawn(async move {
            tokio::select! {
                _ = end.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Ends the job's helpers: those that run until the end are stopped, and every one is
    /// waited for.
    pub async fn end(&self) {
        self.end.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// How many helpers are still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ending_stops_the_helpers_that_run_until_the_end_and_waits_for_the_others() {
        let tasks = JobTasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn_until_end(std::future::pending());
        let finite = tasks.spawn(async move {
            let _ = rx.await;
            7
        });
        assert_eq!(tasks.len(), 2);
        let _ = tx.send(());
        tokio::time::timeout(std::time::Duration::from_secs(5), tasks.end())
            .await
            .expect("end returns once every helper ended");
        assert_eq!(finite.await.unwrap(), 7);
        assert!(tasks.is_empty());
    }
}
