//! The flow's side of completion refs (contract 4.8): reading the result an earlier run
//! recorded, recording this run's, making two runs of one job publish one outcome, and pruning
//! old records from the remote.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::git::{self, GitError, GitRemote, Identity};
use crate::job::outcome::ResultBody;
use crate::worker::git_steps::Git;
use crate::worker::run::FlowError;
use crate::worker::workspace::Workspace;

/// How often a rejected final push asks whether another run recorded the job.
const RACE_POLL: Duration = Duration::from_millis(250);

/// Where a job's completion is recorded on its remote.
#[derive(Clone)]
pub(crate) struct CompletionRecord {
    pub(crate) remote: GitRemote,
    pub(crate) ref_name: String,
    /// A bare scratch repository inside the job's workspace, for reading the record.
    pub(crate) scratch: PathBuf,
    pub(crate) git: Git,
}

impl CompletionRecord {
    /// The result recorded on the remote. `None` when the record does not parse as a result
    /// (then the job runs, and its own result is the one that counts).
    pub(crate) async fn read(&self) -> Result<Option<Box<ResultBody>>, FlowError> {
        let (remote, r, scratch) = (
            self.remote.clone(),
            self.ref_name.clone(),
            self.scratch.clone(),
        );
        let recorded = self
            .git
            .run("probe", move |c| {
                git::read_completion(&remote, &r, &scratch, c)
            })
            .await?;
        match serde_json::from_str::<ResultBody>(&recorded) {
            Ok(body) => Ok(Some(Box::new(body))),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable completion record: this run's result counts");
                Ok(None)
            }
        }
    }

    /// After a rejected final push: waits up to `wait` for another run of the same job to
    /// record its result, and returns it. `None` when no record appears (someone else moved
    /// the branch: the rejection stands).
    pub(crate) async fn await_winner(
        &self,
        wait: Duration,
    ) -> Result<Option<Box<ResultBody>>, FlowError> {
        let deadline = Instant::now() + wait;
        loop {
            let (remote, r) = (self.remote.clone(), self.ref_name.clone());
            let probe = self
                .git
                .run("probe", move |c| git::probe_remote(&remote, None, &r, c))
                .await?;
            if probe.completion.is_some() {
                return self.read().await;
            }
            if Instant::now() + RACE_POLL > deadline {
                return Ok(None);
            }
            tokio::time::sleep(RACE_POLL).await;
        }
    }
}

/// How old completion refs are pruned, and the gate that keeps one worker from doing it for
/// the same remote more often than `every`.
#[derive(Clone)]
pub(crate) struct Pruning {
    pub(crate) prefix: String,
    pub(crate) max_age: Duration,
    pub(crate) every: Duration,
    pub(crate) gate: Arc<PruneGate>,
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

/// What is needed to push the completion ref once the result body exists.
pub(crate) struct PendingCompletion {
    pub(crate) dir: PathBuf,
    pub(crate) head: String,
    pub(crate) identity: Identity,
    pub(crate) record: CompletionRecord,
    pub(crate) pruning: Option<Pruning>,
}

/// Records a finished job on its remote: `refs/harness/done/<jobId>` pointing at a commit
/// whose message is the published result. Holds the job's workspace until then.
pub struct Completion {
    pub(crate) pending: PendingCompletion,
    pub(crate) ws: Workspace,
}

impl Completion {
    /// Pushes the completion ref, then removes the workspace. A failure only costs a re-run
    /// on a later redelivery. When another run of the same job recorded a different result
    /// first, that result is returned: it is the one outcome of the job, to publish instead.
    pub async fn record(self, result_json: String) -> Option<Box<ResultBody>> {
        let p = self.pending;
        let record = p.record.clone();
        let (dir, head, id) = (p.dir, p.head, p.identity);
        let (remote, r) = (record.remote.clone(), record.ref_name.clone());
        let pushed = record
            .git
            .run("push", move |c| {
                git::push_completion(&dir, &remote, &head, &r, &result_json, &id, c)
            })
            .await;
        let winner = match pushed {
            Ok(()) => {
                if let Some(pruning) = p.pruning {
                    prune(&record, &pruning).await;
                }
                None
            }
            Err(FlowError::Git(GitError::Rejected { .. })) => match record.read().await {
                Ok(Some(theirs)) => Some(theirs),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the completion another run recorded");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not record the job's completion on the remote");
                None
            }
        };
        self.ws.remove().await;
        winner
    }
}

/// Deletes completion refs older than the configured age from the remote, best effort.
async fn prune(record: &CompletionRecord, pruning: &Pruning) {
    if pruning.max_age.is_zero() || !pruning.gate.due(record.remote.url(), pruning.every) {
        return;
    }
    let (remote, keep, prefix, max_age) = (
        record.remote.clone(),
        record.ref_name.clone(),
        pruning.prefix.clone(),
        pruning.max_age,
    );
    let scratch = record.scratch.with_extension("prune");
    let pruned = record
        .git
        .run("prune", move |c| {
            git::prune_completion_refs(&remote, &prefix, &keep, max_age, &scratch, c)
        })
        .await;
    match pruned {
        Ok(0) => {}
        Ok(n) => tracing::info!(pruned = n, "deleted old completion refs from the remote"),
        Err(e) => tracing::warn!(error = %e, "could not prune old completion refs"),
    }
}
