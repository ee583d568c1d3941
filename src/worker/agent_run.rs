//! The agent step every flow shares: the agent's HOME and invocation, its stream fed into the
//! job's progress, and the follow-up watcher beside it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentObserver, AgentRun, GuardLimits, Invocation};
use crate::followups;
use crate::job::outcome::{CallMetric, TodoProgress, ToolSpan};
use crate::job::{AgentJob, Harness};
use crate::worker::context::{JobContext, JobRun};
use crate::worker::error::{FlowError, Stop};
use crate::worker::reporter::JobReporter;
use crate::worker::tasks::JobTasks;

/// Runs `job`'s agent (the job as the flow phrases it for the agent: its prompt, its context
/// files) in `work_dir` with the job's HOME, fed into its reporter. `expects_edits` is false
/// for read-only runs (explore): the guard's no-edit bound applies only to runs that edit.
pub async fn run_agent(
    run: &JobRun<'_>,
    job: &AgentJob,
    work_dir: &Path,
    expects_edits: bool,
) -> Result<AgentRun, Stop> {
    let ctx = run.ctx;
    if !job.context_files.is_empty() {
        write_context_files(job, work_dir).await?;
        run.checkout.exclude(CONTEXT_DIR_PATTERN).await?;
    }
    if agent::skills::resources_in_checkout(job)
        && job.skills.iter().any(|s| !s.resources.is_empty())
    {
        // Best-effort, as in the seed: a resource that cannot be written safely is skipped.
        let (skills, dir) = (job.skills.clone(), work_dir.to_path_buf());
        let written = tokio::task::spawn_blocking(move || {
            agent::skills::write_checkout_skill_resources(&dir, &skills)
        })
        .await
        .map_err(|e| FlowError::Task(e.to_string()))?;
        if written > 0 {
            run.checkout.exclude(CONTEXT_DIR_PATTERN).await?;
        }
    }
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
    let mut inv = invocation(run, work_dir).await?;
    inv.command = command;
    // An explore job's test secrets are its agent's alone (not the install's).
    if job.mode == crate::job::Mode::Explore {
        inv.secret_env.extend(job.test_secrets.iter().cloned());
    }
    inv.guard = GuardLimits::merge((&ctx.config.guard).into(), job.guard_limits);
    inv.expects_edits = expects_edits;
    let observer: Arc<dyn AgentObserver> = Arc::new(FlowObserver {
        reporter: run.reporter.clone(),
    });
    // Completed tool calls are expected while the agent's stream is open (tool silence).
    let clock = run.reporter.clock();
    clock.tool_window(true);
    run.reporter.ledger().run_started();
    let ran = agent::run_agent(job, &inv, observer, run.cancel.clone()).await;
    clock.tool_window(false);
    // A failed or killed run spent tokens too: its stream's total, or else its calls' sum.
    let reported = match &ran {
        Ok(agent) => agent.usage,
        Err(e) => e.usage(),
    };
    count_tokens(ctx, run.reporter.ledger().run_ended(reported));
    // A run that edits is followed by the worker's own git work in the checkout, which must
    // not go where the agent pointed `.git`; even a failed run's commits are pushed.
    if expects_edits {
        run.checkout.reclaim().await?;
    }
    Ok(ran?)
}

/// How the job's processes run in `work_dir` (its agent, its install and checks): the job's
/// sandbox, HOME and TMPDIR, the configured environment, its directories handed to the
/// agents' user. The program and the guard are the caller's to set.
pub async fn invocation(run: &JobRun<'_>, work_dir: &Path) -> Result<Invocation, Stop> {
    let (ctx, cfg) = (run.ctx, &run.ctx.config.agent);
    let tmp = run.ws.root().join("tmp");
    let own_dirs = own_dirs(run, &tmp);
    let npmrc = (!run.job.package_registries.is_empty())
        .then(|| crate::job::validate::render_npmrc(&run.job.package_registries));
    hand_over(
        ctx,
        run.checkout.dir(),
        &own_dirs,
        &tmp,
        npmrc.map(|text| (run.ws.home(), text)),
    )
    .await?;
    let mut extra_env: Vec<(String, String)> = cfg
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    extra_env.push(("TMPDIR".to_owned(), tmp.display().to_string()));
    Ok(Invocation {
        command: Vec::new(),
        work_dir: work_dir.to_path_buf(),
        home_dir: run.ws.home(),
        codex_home_root: ctx.config.codex_home_root(),
        extra_env,
        env_remove: cfg.env_remove.clone(),
        kill_grace: Duration::from_millis(cfg.kill_grace_ms),
        guard: GuardLimits::default(),
        expects_edits: true,
        sandbox: ctx.sandbox.clone(),
        own_dirs,
        secret_env: run.job.generator_secrets.clone(),
    })
}

/// The directories the job's agent may write: its checkout (the job's own or its warm one),
/// HOME and TMPDIR; not the rest of the workspace, where the worker keeps its completion
/// scratch repositories.
fn own_dirs(run: &JobRun<'_>, tmp: &Path) -> Vec<PathBuf> {
    vec![
        run.checkout.dir().to_path_buf(),
        run.ws.home(),
        tmp.to_path_buf(),
    ]
}

/// Makes the job's TMPDIR, writes its `.npmrc` (0600) when it names registries, and gives
/// the job's directories to the agents' user (when the worker is root): whatever the worker
/// wrote there since the last agent run included.
async fn hand_over(
    ctx: &JobContext,
    checkout: &Path,
    own: &[PathBuf],
    tmp: &Path,
    npmrc: Option<(PathBuf, String)>,
) -> Result<(), Stop> {
    let (sandbox, own, tmp) = (ctx.sandbox.clone(), own.to_vec(), tmp.to_path_buf());
    let checkout = checkout.to_path_buf();
    let mut roots = vec![ctx.config.work_dir()];
    roots.extend(ctx.config.codex_home_root());
    tokio::task::spawn_blocking(move || {
        crate::owned_dir::create_private(&tmp)?;
        if let Some((home, text)) = npmrc {
            crate::owned_dir::replace_file(&home.join(".npmrc"), text.as_bytes(), 0o600)?;
        }
        sandbox.hand_over(&own, &roots)?;
        // The chown left every index entry stale; without this the agent's first git command
        // re-reads the whole work tree. Only a cost if it fails, never a wrong answer.
        if let Some((uid, gid)) = sandbox.run_as() {
            if let Err(e) = crate::git::restamp_index(&checkout, uid, gid) {
                tracing::warn!(error = %e, "cannot refresh the index after the hand-over");
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| FlowError::Task(e.to_string()))?
    .map_err(FlowError::io(
        "cannot hand the job's directories to the agent's user",
    ))?;
    Ok(())
}

/// Counts the tokens an agent run spent into the worker's metrics.
fn count_tokens(ctx: &JobContext, u: crate::job::outcome::Usage) {
    let tokens = &ctx.metrics.agent_tokens;
    tokens.with_label_values(&["input"]).inc_by(u.input_tokens);
    tokens
        .with_label_values(&["output"])
        .inc_by(u.output_tokens);
}

/// Where the agent finds the job's context files, relative to its working directory.
pub const CONTEXT_DIR: &str = ".cat-context";
/// The exclude pattern that keeps them out of git at any depth (a monorepo service directory).
const CONTEXT_DIR_PATTERN: &str = ".cat-context/";

/// Writes the job's context files into `<work_dir>/.cat-context/` (seed 4.11.1), each under
/// its sanitised basename, replacing what is there. The directory must be a real directory of
/// the checkout: a repository that holds `.cat-context` as a symlink (which could point
/// anywhere on the host) or as a file is refused, and no write follows a symlink.
async fn write_context_files(job: &AgentJob, work_dir: &Path) -> Result<(), Stop> {
    let (files, dir) = (job.context_files.clone(), work_dir.join(CONTEXT_DIR));
    tokio::task::spawn_blocking(move || -> Result<(), FlowError> {
        let refuse = |why: &str| FlowError::ContextFiles(format!("{}: {why}", CONTEXT_DIR));
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => return Err(refuse("the repository holds it as a symlink or a file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&dir)
                .map_err(FlowError::io("cannot create the context directory"))?,
            Err(e) => return Err(FlowError::io("cannot read the context directory")(e)),
        }
        for file in &files {
            let path = dir.join(&file.path);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_dir() => {
                    return Err(refuse(&format!("{} is a directory", file.path)))
                }
                Ok(_) => std::fs::remove_file(&path)
                    .map_err(FlowError::io("cannot replace a context file"))?,
                Err(_) => {}
            }
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(FlowError::io("cannot write a context file"))?;
            out.write_all(file.content.as_bytes())
                .map_err(FlowError::io("cannot write a context file"))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| FlowError::Task(e.to_string()))??;
    Ok(())
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

    fn on_call(&self, call: CallMetric) {
        self.reporter.call(call);
    }

    fn on_tool_servers(&self, servers: Vec<crate::job::outcome::ToolServer>) {
        self.reporter.tool_servers(servers);
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
