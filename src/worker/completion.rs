//! The flow's side of completion refs (contract 4.8): reading the result an earlier run
//! recorded, recording this run's, making two runs of one job publish one outcome, and pruning
//! old records from the remote.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::GitConfig;
use crate::git::{Checkout, GitError};
use crate::job::outcome::ResultBody;

/// How often a rejected final push asks whether another run recorded the job.
const RACE_POLL: Duration = Duration::from_millis(250);

/// Where a job's completion is recorded on its remote.
#[derive(Clone)]
pub struct CompletionRecord {
    pub ref_name: String,
    /// A bare scratch repository inside the job's workspace, for reading the record.
    pub scratch: PathBuf,
}

impl CompletionRecord {
    /// The result recorded on the remote. `None` when the record does not parse as a result
    /// (then the job runs, and its own result is the one that counts).
    pub async fn read(&self, checkout: &Checkout) -> Result<Option<Box<ResultBody>>, GitError> {
        let recorded = checkout
            .read_completion(&self.ref_name, self.scratch.clone())
            .await?;
        match serde_json::from_str::<ResultBody>(&recorded) {
            Ok(body) => Ok(Some(Box::new(body))),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable completion record: this run's result counts");
                Ok(None)
            }
        }
    }

    /// The recorded result, when the remote has one (a probe, then a read).
    pub async fn find(&self, checkout: &Checkout) -> Result<Option<Box<ResultBody>>, GitError> {
        let probe = checkout.probe(None, Some(&self.ref_name)).await?;
        match probe.completion {
            Some(_) => self.read(checkout).await,
            None => Ok(None),
        }
    }

    /// After a rejected final push: waits up to `wait` for another run of the same job to
    /// record its result, and returns it. `None` when no record appears (someone else moved
    /// the branch: the rejection stands).
    pub async fn await_winner(
        &self,
        checkout: &Checkout,
        wait: Duration,
    ) -> Result<Option<Box<ResultBody>>, GitError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(found) = self.find(checkout).await? {
                return Ok(Some(found));
            }
            if Instant::now() + RACE_POLL > deadline {
                return Ok(None);
            }
            tokio::time::sleep(RACE_POLL).await;
        }
    }

    /// Pushes the completion ref over `head`. A failure only costs a re-run on a later
    /// redelivery. When another run of the same job recorded a different result first, that
    /// result is returned: it is the one outcome of the job, to publish instead.
    pub async fn record(
        &self,
        checkout: &Checkout,
        head: &str,
        result_json: String,
        pruning: &Pruning,
    ) -> Option<Box<ResultBody>> {
        match checkout
            .record_completion(head, &self.ref_name, result_json)
            .await
        {
            Ok(()) => {
                pruning.prune(checkout, self).await;
                None
            }
            Err(GitError::Rejected { .. }) => match self.read(checkout).await {
                Ok(theirs) => theirs,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the completion another run recorded");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not record the job's completion on the remote");
                None
            }
        }
    }
}

/// How old completion refs are pruned, and the gate that keeps one worker from doing it for
/// the same remote more often than `every`.
#[derive(Clone)]
pub struct Pruning {
    prefix: String,
    max_age: Duration,
    every: Duration,
    gate: Arc<PruneGate>,
}

impl Pruning {
    pub fn new(git: &GitConfig, gate: Arc<PruneGate>) -> Self {
        Self {
            prefix: git.completion_ref_prefix.clone(),
            max_age: Duration::from_millis(git.completion_ref_max_age_ms),
            every: Duration::from_millis(git.completion_ref_prune_interval_ms),
            gate,
        }
    }

    /// Deletes completion refs older than the configured age from the remote, best effort.
    async fn prune(&self, checkout: &Checkout, record: &CompletionRecord) {
        if self.max_age.is_zero() || !self.gate.due(checkout.remote().url(), self.every) {
            return;
        }
        let scratch = record.scratch.with_extension("prune");
        match checkout
            .prune_completions(&self.prefix, &record.ref_name, self.max_age, scratch)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "deleted old completion refs from the remote"),
            Err(e) => tracing::warn!(error = %e, "could not prune old completion refs"),
        }
    }
}

/// When this worker last pruned each remote (by URL).
#[derive(Default)]
pub struct PruneGate {
    last: Mutex<HashMap<String, Instant>>,
}

impl PruneGate {
    /// True (and the time noted) when `url` was not pruned within `every`.
    fn due(&self, url: &str, every: Duration) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match last.get(url) {
            Some(at) if now.duration_since(*at) < every => false,
            _ => {
                last.insert(url.to_owned(), now);
                true
            }
        }
    }
}
