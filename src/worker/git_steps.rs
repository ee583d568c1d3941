//! The git steps the coding flow runs: each blocking git2 call off the async runtime with its
//! own timeout, and the serialised checkpoint pushes that run beside the agent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::git::{self, FileLimit, GitError, GitRemote};
use crate::metrics::Metrics;
use crate::worker::run::FlowError;

/// Runs blocking git work off the async runtime, inside the job's span, timed by operation and
/// bounded by the git timeout, which is reported as a `git` failure of its own.
#[derive(Clone)]
pub(crate) struct Git {
    metrics: Arc<Metrics>,
    timeout: Duration,
    cancel: CancellationToken,
}

impl Git {
    pub(crate) fn new(metrics: Arc<Metrics>, timeout: Duration, cancel: CancellationToken) -> Self {
        Self {
            metrics,
            timeout,
            cancel,
        }
    }

    /// The same runner with another cancellation token (the last push of a stopped run).
    pub(crate) fn with_cancel(&self, cancel: CancellationToken) -> Self {
        Self {
            cancel,
            ..self.clone()
        }
    }

    pub(crate) async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, FlowError>
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
            joined = handle => joined.map_err(|e| FlowError::Task(e.to_string()))?,
            _ = tokio::time::sleep(self.timeout) => {
                // The blocking call stops at its next transfer callback.
                op_token.cancel();
                self.metrics.observe_git(op, started.elapsed().as_secs_f64());
                return Err(FlowError::Git(GitError::Git {
                    op,
                    message: format!("timed out after {}", human_duration(self.timeout)),
                }));
            }
        };
        self.metrics
            .observe_git(op, started.elapsed().as_secs_f64());
        out.map_err(|e| {
            if e.is_cancelled() && self.cancel.is_cancelled() {
                FlowError::Interrupted
            } else {
                FlowError::Git(e)
            }
        })
    }
}

fn human_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Longest wait for the last checkpoint push of an interrupted job: it must fit in the
/// shutdown grace the platform gives after SIGTERM.
const INTERRUPT_PUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// Serialised checkpoint pushes: never two `push`es at once, and only once the branch has
/// moved past the pre-run tip, so a run that never commits leaves no remote branch behind.
pub(crate) struct Checkpointer {
    pub(crate) dir: PathBuf,
    pub(crate) local_branch: String,
    pub(crate) remote_branch: String,
    pub(crate) remote: GitRemote,
    pub(crate) base_sha: String,
    /// No push carries a file bigger than this.
    pub(crate) limit: FileLimit,
    /// The tip the remote is known to hold; also the push lock.
    pub(crate) last_pushed: Mutex<Option<String>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) git: Git,
}

impl Checkpointer {
    /// Pushes the branch if it advanced past the pre-run tip and past what was pushed already.
    /// Returns whether a push happened.
    pub(crate) async fn push_once(&self, git: &Git) -> Result<bool, FlowError> {
        let mut last = self.last_pushed.lock().await;
        self.push_locked(&mut last, git).await
    }

    /// Pushes what a stopped or refused run committed, best effort: the next attempt resumes
    /// from it. Runs on a fresh token (the job's own may be what stopped the agent), bounded
    /// so it fits in the shutdown grace.
    pub(crate) async fn push_committed_work(&self) {
        let git = self.git.with_cancel(CancellationToken::new());
        let last = tokio::time::timeout(INTERRUPT_PUSH_TIMEOUT, self.push_once(&git)).await;
        if !matches!(last, Ok(Ok(_))) {
            tracing::warn!("coding-agent: could not push the committed work of a stopped run");
        }
    }

    /// A tick skips when a push is already in flight (coalescing).
    async fn tick(&self) -> Option<Result<bool, FlowError>> {
        let mut last = self.last_pushed.try_lock().ok()?;
        Some(self.push_locked(&mut last, &self.git).await)
    }

    async fn push_locked(&self, last: &mut Option<String>, git: &Git) -> Result<bool, FlowError> {
        let d = self.dir.clone();
        let head = git.run("commit", move |_| git::head_oid(&d)).await?;
        if head == self.base_sha || last.as_deref() == Some(head.as_str()) {
            return Ok(false);
        }
        let (d, lb, rb, remote, limit) = (
            self.dir.clone(),
            self.local_branch.clone(),
            self.remote_branch.clone(),
            self.remote.clone(),
            self.limit,
        );
        // What the remote already holds needs no size check.
        let known: Vec<String> = std::iter::once(self.base_sha.clone())
            .chain(last.clone())
            .collect();
        let tip = head.clone();
        git.run("push", move |c| {
            git::check_new_blobs(&d, &tip, &known, limit)?;
            git::push_branch(&d, &remote, &lb, &rb, c)
        })
        .await?;
        *last = Some(head);
        Ok(true)
    }
}

pub(crate) async fn checkpoint_loop(
    cp: Arc<Checkpointer>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match cp.tick().await {
            Some(Ok(true)) => {
                cp.metrics
                    .checkpoint_pushes
                    .with_label_values(&["pushed"])
                    .inc();
                tracing::debug!("coding-agent: checkpoint pushed");
            }
            Some(Ok(false)) | None => {}
            Some(Err(e)) => {
                failures += 1;
                cp.metrics
                    .checkpoint_pushes
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(reason = %e, checkpoint_failures = failures, "coding-agent: checkpoint push failed");
            }
        }
    }
}
