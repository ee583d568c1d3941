//! Blocking git work, run off the async runtime: each step on the blocking pool, inside the
//! caller's span, timed by operation and bounded by the git timeout.

use std::time::{Duration, Instant};

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::GitError;
use crate::metrics::Metrics;

/// Runs one blocking git step at a time for a job. Cloning it is cheap.
#[derive(Clone)]
pub struct Runner {
    metrics: Arc<Metrics>,
    timeout: Duration,
    cancel: CancellationToken,
}

impl Runner {
    pub fn new(metrics: Arc<Metrics>, timeout: Duration, cancel: CancellationToken) -> Self {
        Self {
            metrics,
            timeout,
            cancel,
        }
    }

    /// The metrics the runner records into.
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The same runner with another cancellation token (the last push of a stopped run, which
    /// the job's own token must not stop).
    pub fn with_cancel(&self, cancel: CancellationToken) -> Self {
        Self {
            cancel,
            ..self.clone()
        }
    }

    /// Runs `f` on the blocking pool. A step past the timeout is stopped at its next transfer
    /// callback and reported as a `git` failure of its own; [`GitError::Cancelled`] comes back
    /// only when the job's token was cancelled.
    pub async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, GitError>
    where
        T: Send + 'static,
        F: FnOnce(&CancellationToken) -> Result<T, GitError> + Send + 'static,
    {
        let span = tracing::Span::current();
        let op_token = self.cancel.child_token();
        let token = op_token.clone();
        let started = Instant::now();
        let handle = tokio::task::spawn_blocking(move || span.in_scope(|| f(&token)));
        let out = tokio::select! {
            joined = handle => joined.map_err(|e| GitError::Git {
                op,
                message: format!("the blocking task failed: {e}"),
            })?,
            _ = tokio::time::sleep(self.timeout) => {
                op_token.cancel();
                self.metrics.observe_git(op, started.elapsed().as_secs_f64());
                return Err(GitError::Stalled {
                    op,
                    after: human_duration(self.timeout),
                });
            }
        };
        self.metrics
            .observe_git(op, started.elapsed().as_secs_f64());
        match out {
            Err(e) if e.is_cancelled() && !self.cancel.is_cancelled() => Err(GitError::Git {
                op,
                message: "stopped".to_owned(),
            }),
            other => other,
        }
    }
}

fn human_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
