//! The ordinary coding flow (seed 4.1 with `newBranch`, 4.2 in place): resume or clone, run the
//! agent with checkpoint pushes and live follow-ups, commit what it left in tracked files, push,
//! open the PR, and map it all to the seed's result.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentError, AgentObserver, AgentRun, GuardLimits, Invocation};
use crate::followups::{self, FOLLOW_UPS_FILENAME};
use crate::forge::{self, PrRequest};
use crate::git::{self, FileLimit, GitAuth, GitError, GitRemote, Identity, Refresh};
use crate::job::outcome::{
    no_changes_reason, AgentResult, FailureCause, ResultBody, TodoProgress, ToolSpan,
};
use crate::job::{AgentJob, Harness};
use crate::worker::completion::{Completion, CompletionRecord, PendingCompletion, Pruning};
use crate::worker::git_steps::{checkpoint_loop, Checkpointer, Git};
use crate::worker::reporter::JobReporter;
use crate::worker::run::{FlowError, JobContext};
use crate::worker::workspace::{resolve_service_directory, Workspace};

/// How many untracked leftovers the warning lists.
const UNTRACKED_LISTED: usize = 20;

/// How the coding flow ended (failures are a [`FlowError`]).
// One value per job, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum CodingEnd {
    /// The flow ran; once the result body is known, `completion` records it on the remote.
    Ran {
        result: AgentResult,
        completion: Option<Completion>,
    },
    /// An earlier delivery of this job already finished: its recorded result, to re-publish
    /// without running anything (contract 4.8).
    AlreadyFinished(Box<ResultBody>),
}

#[allow(clippy::large_enum_variant)]
enum InnerEnd {
    Ran {
        result: AgentResult,
        pending: Option<PendingCompletion>,
    },
    AlreadyFinished(Box<ResultBody>),
}

pub async fn run(
    ctx: &JobContext,
    job: &AgentJob,
    attempt: u32,
    reporter: &Arc<JobReporter>,
    cancel: &CancellationToken,
) -> Result<CodingEnd, FlowError> {
    let ws = Workspace::create(&ctx.config.work_dir(), &job.job_id, attempt)
        .map_err(FlowError::io("cannot create the job workspace"))?;
    match run_in(ctx, job, reporter, cancel, &ws).await {
        Ok(InnerEnd::Ran {
            result,
            pending: Some(pending),
        }) => Ok(CodingEnd::Ran {
            result,
            completion: Some(Completion { pending, ws }),
        }),
        other => {
            ws.remove().await;
            other.map(|end| match end {
                InnerEnd::Ran { result, .. } => CodingEnd::Ran {
                    result,
                    completion: None,
                },
                InnerEnd::AlreadyFinished(body) => CodingEnd::AlreadyFinished(body),
            })
        }
    }
}

async fn run_in(
    ctx: &JobContext,
    job: &AgentJob,
    reporter: &Arc<JobReporter>,
    cancel: &CancellationToken,
    ws: &Workspace,
) -> Result<InnerEnd, FlowError> {
    let m = ctx.metrics.as_ref();
    let g = Git::new(
        ctx.metrics.clone(),
        ctx.config.git_timeout(),
        cancel.clone(),
    );
    let dir = ws.checkout();
    // Every fetch and push goes to the validated clone URL, whatever the checkout's config
    // says by then: the agent can rewrite `origin`.
    let remote = GitRemote::new(&job.repo.clone_url, GitAuth::token(job.gh_token.clone()))?;
    let identity = Identity {
        name: ctx.config.git.author_name.clone(),
        email: ctx.config.git.author_email.clone(),
    };
    let local_branch = job.new_branch.clone().unwrap_or_else(|| job.branch.clone());
    let push_branch = job.push_branch().to_owned();

    // One probe answers both: did an earlier delivery finish this job, and did one start its
    // work branch (only a fresh work branch can have been started by an earlier attempt).
    let done_ref = ctx
        .config
        .git
        .completion_refs
        .then(|| git::completion_ref(&ctx.config.git.completion_ref_prefix, &job.job_id));
    let record = done_ref.clone().map(|ref_name| CompletionRecord {
        remote: remote.clone(),
        ref_name,
        scratch: ws.root().join("completion"),
        git: g.clone(),
    });
    let probe = match (&job.new_branch, &done_ref) {
        (nb, Some(r)) => {
            let (remote, nb, r) = (remote.clone(), nb.clone(), r.clone());
            g.run("probe", move |c| {
                git::probe_remote(&remote, nb.as_deref(), &r, c)
            })
            .await?
        }
        (Some(nb), None) => {
            let (remote, nb) = (remote.clone(), nb.clone());
            let exists = g
                .run("probe", move |c| git::remote_branch_exists(&remote, &nb, c))
                .await?;
            git::RemoteProbe {
                branch_exists: exists,
                completion: None,
            }
        }
        (None, None) => git::RemoteProbe {
            branch_exists: false,
            completion: None,
        },
    };
    if let (Some(_), Some(record)) = (&probe.completion, &record) {
        if let Some(body) = record.read().await? {
            tracing::info!("job already finished: re-publishing its recorded result");
            return Ok(InnerEnd::AlreadyFinished(body));
        }
    }
    let resumed = job.new_branch.is_some() && probe.branch_exists;
    let pending = |head: String| {
        record.clone().map(|record| PendingCompletion {
            dir: dir.clone(),
            head,
            identity: identity.clone(),
            record,
            pruning: Some(Pruning {
                prefix: ctx.config.git.completion_ref_prefix.clone(),
                max_age: Duration::from_millis(ctx.config.git.completion_ref_max_age_ms),
                every: Duration::from_millis(ctx.config.git.completion_ref_prune_interval_ms),
                gate: ctx.prune_gate.clone(),
            }),
        })
    };

    reporter.mark_phase("clone");
    {
        let (remote, d) = (remote.clone(), dir.clone());
        if resumed {
            tracing::info!(branch = %local_branch, "coding-agent: resuming existing branch");
            let b = local_branch.clone();
            g.run("clone", move |c| {
                git::clone_branch(&remote, &b, &d, false, c)
            })
            .await?;
        } else {
            tracing::info!(clone_branch = %job.branch, "coding-agent: cloning");
            let base = job.branch.clone();
            let nb = job.new_branch.clone();
            g.run("clone", move |c| {
                git::clone_branch(&remote, &base, &d, true, c)?;
                match nb {
                    Some(nb) => git::create_branch(&d, &nb),
                    None => Ok(()),
                }
            })
            .await?;
        }
    }
    let base_sha = {
        let (d, id) = (dir.clone(), identity.clone());
        g.run("commit", move |_| {
            git::set_identity(&d, &id)?;
            git::head_oid(&d)
        })
        .await?
    };
    if resumed {
        let (d, base, remote, id) = (
            dir.clone(),
            job.branch.clone(),
            remote.clone(),
            identity.clone(),
        );
        let refreshed = g
            .run("refresh", move |c| {
                git::refresh_from_base_if_clean(&d, &remote, &base, &id, c)
            })
            .await;
        match refreshed {
            Ok(Refresh::Conflicted) => {
                tracing::info!(base = %job.branch, "coding-agent: resume base refresh skipped (conflict or error)")
            }
            Ok(_) => {}
            Err(FlowError::Interrupted) => return Err(FlowError::Interrupted),
            Err(e) => {
                tracing::info!(base = %job.branch, error = %e, "coding-agent: resume base refresh skipped (conflict or error)")
            }
        }
    }

    let limit = FileLimit(ctx.config.git.max_file_bytes);
    let checkpoints = Arc::new(Checkpointer {
        dir: dir.clone(),
        local_branch: local_branch.clone(),
        remote_branch: push_branch.clone(),
        remote: remote.clone(),
        base_sha: base_sha.clone(),
        limit,
        last_pushed: Mutex::new(None),
        metrics: ctx.metrics.clone(),
        git: g.clone(),
    });
    let stop_checkpoints = CancellationToken::new();
    // Whatever way this function returns, the checkpoint ticks stop with it.
    let _stop_on_return = stop_checkpoints.clone().drop_guard();
    let checkpoint_task = tokio::spawn(checkpoint_loop(
        checkpoints.clone(),
        Duration::from_millis(ctx.config.job.checkpoint_interval_ms),
        stop_checkpoints.clone(),
    ));

    let work_dir = match &job.repo.service_directory {
        Some(sd) => {
            let (d, sd) = (dir.clone(), sd.clone());
            tokio::task::spawn_blocking(move || resolve_service_directory(&d, &sd))
                .await
                .map_err(|e| FlowError::Task(e.to_string()))??
        }
        None => dir.clone(),
    };

    let follow = if job.stream_follow_ups {
        let d = dir.clone();
        g.run("commit", move |_| {
            git::exclude_path(&d, FOLLOW_UPS_FILENAME)
        })
        .await?;
        Some(FollowUpStream::start(
            &work_dir,
            Duration::from_millis(ctx.config.job.followup_poll_interval_ms),
            reporter.clone(),
        ))
    } else {
        None
    };

    reporter.mark_phase("agent");
    tracing::info!(service_directory = ?job.repo.service_directory, "coding-agent: running agent");
    reporter.agent_running(true);
    let run = run_agent(ctx, job, ws, &work_dir, reporter, cancel).await;
    reporter.agent_running(false);

    // Whatever the agent did, what it wrote is surfaced before the result.
    if let Some(f) = follow {
        f.finish().await;
    }

    let run = match run {
        Ok(run) => run,
        Err(e) => {
            // Committed work is kept for the next attempt (the seed dropped it, Q8).
            stop_checkpoints.cancel();
            let _ = checkpoint_task.await;
            checkpoints.push_committed_work().await;
            if cancel.is_cancelled() {
                return Err(FlowError::Interrupted);
            }
            return Err(e);
        }
    };
    if let Some(u) = run.usage {
        m.agent_tokens
            .with_label_values(&["input"])
            .inc_by(u.input_tokens);
        m.agent_tokens
            .with_label_values(&["output"])
            .inc_by(u.output_tokens);
    }

    // Safety net: edits to tracked files the agent did not commit.
    let safety_net = {
        let (d, msg, id) = (
            dir.clone(),
            job.safety_net_message().to_owned(),
            identity.clone(),
        );
        g.run("commit", move |_| {
            git::commit_tracked_edits(&d, &msg, &id, limit)
        })
        .await
    };
    stop_checkpoints.cancel();
    let _ = checkpoint_task.await;
    if let Err(e) = safety_net {
        // The refused edit stays out of git; what the agent committed is kept.
        checkpoints.push_committed_work().await;
        return Err(e);
    }

    let leftovers = {
        let d = dir.clone();
        g.run("commit", move |_| git::untracked_files(&d)).await?
    };
    if !leftovers.is_empty() {
        let files: Vec<&String> = leftovers.iter().take(UNTRACKED_LISTED).collect();
        tracing::warn!(count = leftovers.len(), files = ?files, "coding-agent: uncommitted new files left behind (not pushed)");
    }

    let head = {
        let d = dir.clone();
        g.run("commit", move |_| git::head_oid(&d)).await?
    };
    let has_work = resumed || head != base_sha;
    let stats = run.stats;
    let mut result = AgentResult {
        pushed: Some(false),
        resumed: Some(resumed),
        branch: Some(push_branch.clone()),
        summary: Some(run.summary.clone()),
        stats: Some(stats),
        usage: run.usage,
        ..AgentResult::default()
    };
    if !has_work {
        tracing::info!(
            tool_calls = stats.tool_calls,
            assistant_chars = stats.assistant_chars,
            "coding-agent: no changes produced"
        );
        if job.no_changes_is_error {
            result.error = Some(no_changes_reason(&stats, run.stderr_tail.as_deref()));
            result.failure_cause = Some(FailureCause::NoChanges);
        }
        return Ok(InnerEnd::Ran {
            pending: pending(head),
            result,
        });
    }

    reporter.mark_phase("push");
    tracing::info!(
        resumed,
        tool_calls = stats.tool_calls,
        assistant_chars = stats.assistant_chars,
        "coding-agent: pushing"
    );
    if let Err(e) = checkpoints.push_once(&g).await {
        // Rejected: maybe another run of this same job (a duplicate enqueue taken by another
        // worker) pushed first. Its recorded outcome is then the one to publish.
        if let (FlowError::Git(GitError::Rejected { .. }), Some(record)) = (&e, &record) {
            let wait = Duration::from_millis(ctx.config.git.race_wait_ms);
            if let Some(winner) = record.await_winner(wait).await? {
                tracing::warn!("another run of this job finished first: publishing its result");
                return Ok(InnerEnd::AlreadyFinished(winner));
            }
        }
        return Err(e);
    }
    result.pushed = Some(true);

    if let Some(pr_spec) = &job.pr {
        let req = PrRequest {
            api_base: job.github_api_base.as_deref(),
            provider: job.repo.provider,
            clone_url: &job.repo.clone_url,
            owner: &job.repo.owner,
            name: &job.repo.name,
            head: &push_branch,
            base: &job.repo.base_branch,
            title: &pr_spec.title,
            body: &pr_spec.body,
            token: &job.gh_token,
        };
        match forge::open_pull_request(ctx.http(), &req, cancel).await {
            Ok(url) => result.pr_url = Some(url),
            Err(e) if cancel.is_cancelled() => {
                tracing::warn!(error = %e, "PR open interrupted");
                return Err(FlowError::Interrupted);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(InnerEnd::Ran {
        pending: pending(head),
        result,
    })
}

async fn run_agent(
    ctx: &JobContext,
    job: &AgentJob,
    ws: &Workspace,
    work_dir: &Path,
    reporter: &Arc<JobReporter>,
    cancel: &CancellationToken,
) -> Result<AgentRun, FlowError> {
    let home = ws.home();
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
        reporter: reporter.clone(),
    });
    match agent::run_agent(job, &inv, observer, cancel.clone()).await {
        Ok(run) => Ok(run),
        Err(AgentError::Cancelled) => Err(FlowError::Interrupted),
        Err(e) => Err(e.into()),
    }
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
struct FollowUpStream {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl FollowUpStream {
    fn start(work_dir: &Path, poll: Duration, reporter: Arc<JobReporter>) -> Self {
        let stop = CancellationToken::new();
        // Bounded, like the reporter's queue of follow-ups: a flood slows the watcher down.
        let (tx, mut rx) = mpsc::channel(followups::ITEM_BUFFER);
        let dir = work_dir.to_path_buf();
        let watch_stop = stop.clone();
        let task = tokio::spawn(async move {
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
    async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
