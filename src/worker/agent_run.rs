//! The agent step every flow shares: the agent's HOME and invocation, its stream fed into the
//! job's progress, and the follow-up watcher beside it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentObserver, AgentRun, GuardLimits, Invocation};
use crate::followups;
use crate::job::outcome::{TodoProgress, ToolSpan};
use crate::job::Harness;
use crate::worker::context::JobRun;
use crate::worker::error::{FlowError, Stop};
use crate::worker::reporter::JobReporter;
use crate::worker::tasks::JobTasks;

/// Runs the job's agent in `work_dir` with the job's HOME, fed into its reporter.
pub async fn run_agent(run: &JobRun<'_>, work_dir: &Path) -> Result<AgentRun, Stop> {
    let (ctx, job) = (run.ctx, run.job);
    let home = run.ws.home();
    let cfg = &ctx.config.agent;
    // The subscription runners make their own config home, inside `home` or (Codex) under
    // `codex_home_root`.
    let command = match job.auth.harness() {
        Harness::Pi => {
            let user_agent_dir = ctx.config.pi_agent_dir();
            let (job, home) = (job.clone(), home.clone());
            tokio::task::spawn_blocking(move || {
                agent::prepare_pi_home(&job, &home, user_agent_dir.as_deref())
            })
            .await
            .map_err(|e| FlowError::Task(e.to_string()))?
            .map_err(FlowError::io("cannot prepare the agent's HOME"))?;
            cfg.pi_command.clone()
        }
        Harness::ClaudeCode => cfg.claude_command.clone(),
        Harness::Codex => cfg.codex_command.clone(),
    };
    let inv = Invocation {
        command,
        work_dir: work_dir.to_path_buf(),
        home_dir: home,
        codex_home_root: ctx.config.codex_home_root(),
        extra_env: cfg
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        env_remove: cfg.env_remove.clone(),
        kill_grace: Duration::from_millis(cfg.kill_grace_ms),
        guard: GuardLimits::merge((&ctx.config.guard).into(), job.guard_limits),
        expects_edits: true,
    };
    let observer: Arc<dyn AgentObserver> = Arc::new(FlowObserver {
        reporter: run.reporter.clone(),
    });
    Ok(agent::run_agent(job, &inv, observer, run.cancel.clone()).await?)
}

/// Feeds the agent's stream into the job's progress.
struct FlowObserver {
    reporter: Arc<JobReporter>,
}

impl AgentObserver for FlowObserver {
    fn on_activity(&self) {
        self.reporter.activity();
    }

    fn on_progress(&self, progress: TodoProgress) {
        self.reporter.todo(progress);
    }

    fn on_span(&self, span: ToolSpan) {
        self.reporter.span(span);
    }
}

/// The follow-up watcher and the forwarder that hands items to the reporter in file order.
pub struct FollowUpStream {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl FollowUpStream {
    /// Starts watching `work_dir`'s follow-up file among the job's `tasks`.
    pub fn start(
        work_dir: &Path,
        poll: Duration,
        reporter: Arc<JobReporter>,
        tasks: &JobTasks,
    ) -> Self {
        let stop = CancellationToken::new();
        // Bounded, like the reporter's queue of follow-ups: a flood slows the watcher down.
        let (tx, mut rx) = mpsc::channel(followups::ITEM_BUFFER);
        let dir = work_dir.to_path_buf();
        let watch_stop = stop.clone();
        let task = tasks.spawn(async move {
            let forward = async {
                while let Some(item) = rx.recv().await {
                    reporter.followup(item).await;
                }
            };
            let watch = followups::watch(&dir, poll, watch_stop, tx);
            let _ = tokio::join!(watch, forward);
        });
        Self { stop, task }
    }

    /// Stops watching after one last read, and waits until every item was handed on.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
