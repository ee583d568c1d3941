//! Checkpoint pushes while the agent runs: serialised (never two pushes at once), only once
//! the branch moved past the pre-run tip, so a run that never commits leaves no remote branch.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Checkout, GitError};
use crate::metrics::Metrics;

/// Longest wait for the last push of a stopped run: it must fit in the shutdown grace the
/// platform gives after SIGTERM.
const LAST_PUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// The pushes of one work branch.
pub struct Checkpoints {
    checkout: Checkout,
    local_branch: String,
    remote_branch: String,
    /// The tip before the run: nothing to push while HEAD is still there.
    base_sha: String,
    /// The tip the remote is known to hold; also the push lock.
    last_pushed: Mutex<Option<String>>,
}

impl Checkpoints {
    pub fn new(
        checkout: Checkout,
        local_branch: &str,
        remote_branch: &str,
        base_sha: &str,
    ) -> Self {
        Self {
            checkout,
            local_branch: local_branch.to_owned(),
            remote_branch: remote_branch.to_owned(),
            base_sha: base_sha.to_owned(),
            last_pushed: Mutex::new(None),
        }
    }

    /// Pushes the branch if it advanced past the pre-run tip and past what was pushed already;
    /// whether a push happened.
    pub async fn push_once(&self) -> Result<bool, GitError> {
        let mut last = self.last_pushed.lock().await;
        push_locked(self, &mut last, &self.checkout).await
    }

    /// Pushes what a stopped or refused run committed, best effort, on a fresh token (the
    /// job's own may be what stopped the run), bounded to fit in the shutdown grace. The next
    /// attempt resumes from it.
    pub async fn push_committed_work(&self) {
        let checkout = self.checkout.with_cancel(CancellationToken::new());
        let last = tokio::time::timeout(LAST_PUSH_TIMEOUT, async {
            let mut last = self.last_pushed.lock().await;
            push_locked(self, &mut last, &checkout).await
        })
        .await;
        if !matches!(last, Ok(Ok(_))) {
            tracing::warn!("coding-agent: could not push the committed work of a stopped run");
        }
    }

    /// A tick skips when a push is already in flight (coalescing).
    async fn tick(&self) -> Option<Result<bool, GitError>> {
        let mut last = self.last_pushed.try_lock().ok()?;
        Some(push_locked(self, &mut last, &self.checkout).await)
    }
}

async fn push_locked(
    cp: &Checkpoints,
    last: &mut Option<String>,
    checkout: &Checkout,
) -> Result<bool, GitError> {
    let head = checkout.head().await?;
    if head == cp.base_sha || last.as_deref() == Some(head.as_str()) {
        return Ok(false);
    }
    // What the remote already holds needs no size check.
    let known = std::iter::once(cp.base_sha.clone())
        .chain(last.clone())
        .collect();
    checkout
        .push(&head, &cp.local_branch, &cp.remote_branch, known)
        .await?;
    *last = Some(head);
    Ok(true)
}

/// Pushes committed work every `every` until `stop`; a failed push is counted and logged, and
/// the next tick tries again.
pub async fn checkpoint_loop(
    cp: Arc<Checkpoints>,
    every: Duration,
    metrics: Arc<Metrics>,
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
                metrics
                    .checkpoint_pushes
                    .with_label_values(&["pushed"])
                    .inc();
                tracing::debug!("coding-agent: checkpoint pushed");
            }
            Some(Ok(false)) | None => {}
            Some(Err(e)) => {
                failures += 1;
                metrics
                    .checkpoint_pushes
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(reason = %e, checkpoint_failures = failures, "coding-agent: checkpoint push failed");
            }
        }
    }
}
