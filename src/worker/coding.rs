//! The ordinary coding flow (seed 4.1 with `newBranch`, 4.2 in place), in three phases:
//! [`prepare`] (the completion probe, resume or fresh clone, the base refresh), [`work`] (the
//! agent with checkpoint pushes and live follow-ups, then the safety-net commit) and
//! [`deliver`] (the final push and the PR), mapped to the seed's result.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::AgentRun;
use crate::followups::FOLLOW_UPS_FILENAME;
use crate::forge::PrDescription;
use crate::git::{checkpoint_loop, Checkpoints, GitError, Refresh};
use crate::job::outcome::{no_changes_reason, AgentResult, FailureCause, ValidationReport};
use crate::job::prompts::with_notes;
use crate::worker::agent_run::{run_agent, FollowUpStream};
use crate::worker::context::{FlowEnd, JobRun};
use crate::worker::dependencies;
use crate::worker::error::Stop;
use crate::worker::pull_request::{self, Opened};
use crate::worker::validation;
use crate::worker::workspace::resolve_service_directory;

/// How many untracked leftovers the warning lists.
const UNTRACKED_LISTED: usize = 20;

pub async fn run(run: &JobRun<'_>) -> Result<FlowEnd, Stop> {
    let start = match prepare(run).await? {
        Prepared::Replay(body) => return Ok(FlowEnd::Replayed(body)),
        Prepared::Ready(start) => start,
    };
    let worked = work(run, &start).await?;
    deliver(run, &start, worked).await
}

/// Where the work starts.
struct Start {
    /// An earlier attempt's work branch was found and cloned.
    resumed: bool,
    /// The tip before the agent ran.
    base_sha: String,
    /// Where the agent runs: the checkout, or its service directory.
    work_dir: PathBuf,
    checkpoints: Arc<Checkpoints>,
}

enum Prepared {
    /// An earlier delivery already finished the job (contract 4.8).
    Replay(Box<crate::job::outcome::ResultBody>),
    Ready(Start),
}

/// The completion probe, then a resume of the work branch (its base merged in when that merges
/// clean) or a fresh clone, and the directory the agent runs in.
async fn prepare(run: &JobRun<'_>) -> Result<Prepared, Stop> {
    let (job, checkout) = (run.job, run.checkout);
    // One probe answers both: did an earlier delivery finish this job, and did one start its
    // work branch (only a fresh work branch can have been started by an earlier attempt).
    // The branch an earlier attempt left on the remote is the one it pushed to, which is not
    // the local work branch when `pushBranch` names another.
    let pushed_branch = job.new_branch.as_ref().map(|_| job.push_branch());
    let probe = checkout
        .probe(pushed_branch, run.record.map(|r| r.ref_name.as_str()))
        .await?;
    if let (Some(_), Some(record)) = (&probe.completion, run.record) {
        if let Some(body) = record.read(checkout).await? {
            tracing::info!("job already finished: re-publishing its recorded result");
            return Ok(Prepared::Replay(body));
        }
    }
    let resumed = job.new_branch.is_some() && probe.branch_exists;

    run.reporter.mark_phase("clone");
    let base_sha = if let Some(warm) = run.warm {
        // seed 4.5: the branch the work continues on exists on the remote when resumed or
        // in place; a fresh work branch starts from the base.
        let (branch, start_from) = match (resumed, &job.new_branch) {
            (true, _) => (job.push_branch().to_owned(), job.push_branch()),
            (false, Some(nb)) => (nb.clone(), job.branch.as_str()),
            (false, None) => (job.branch.clone(), job.branch.as_str()),
        };
        tracing::info!(branch = %branch, resumed, "coding-agent: preparing reused checkout");
        let fresh = warm.interrupted();
        warm.preparing();
        let keep = run.ctx.config.git.clean_keep.clone();
        let tip = checkout
            .prepare_warm(&branch, start_from, &job.branch, keep, fresh)
            .await?;
        warm.ready();
        if resumed {
            refresh(run).await?;
        }
        tip
    } else if resumed {
        let branch = job.push_branch();
        tracing::info!(branch = %branch, "coding-agent: resuming existing branch");
        let tip = checkout.clone_resume(branch).await?;
        refresh(run).await?;
        tip
    } else {
        tracing::info!(clone_branch = %job.branch, "coding-agent: cloning");
        checkout
            .clone_fresh(&job.branch, job.new_branch.as_deref(), true)
            .await?
    };

    let work_dir = match &job.repo.service_directory {
        Some(sd) => {
            let (dir, sd) = (checkout.dir().to_path_buf(), sd.clone());
            tokio::task::spawn_blocking(move || resolve_service_directory(&dir, &sd))
                .await
                .map_err(|e| crate::worker::error::FlowError::Task(e.to_string()))??
        }
        None => checkout.dir().to_path_buf(),
    };
    // A resume works on a local copy of the pushed branch, under its name.
    let local = if resumed {
        job.push_branch().to_owned()
    } else {
        local_branch(run)
    };
    let checkpoints = Arc::new(Checkpoints::new(
        checkout.clone(),
        &local,
        job.push_branch(),
        &base_sha,
    ));
    Ok(Prepared::Ready(Start {
        resumed,
        base_sha,
        work_dir,
        checkpoints,
    }))
}

/// The resume's base refresh (seed 4.1 step 6): the base merged in when it merges clean; a
/// conflict or an error leaves the branch as it was.
async fn refresh(run: &JobRun<'_>) -> Result<(), Stop> {
    let base = &run.job.branch;
    match run.checkout.refresh_from(base).await {
        Ok(Refresh::Conflicted) => {
            tracing::info!(base = %base, "coding-agent: resume base refresh skipped (conflict or error)")
        }
        Ok(_) => {}
        Err(e) if e.is_cancelled() => return Err(Stop::Interrupted),
        Err(e) => {
            tracing::info!(base = %base, error = %e, "coding-agent: resume base refresh skipped (conflict or error)")
        }
    }
    Ok(())
}

/// The local branch the work is on: the work branch, or the base branch for in-place work.
fn local_branch(run: &JobRun<'_>) -> String {
    run.job
        .new_branch
        .clone()
        .unwrap_or_else(|| run.job.branch.clone())
}

/// Runs the agent with checkpoint pushes and live follow-ups beside it, then commits the
/// tracked edits it left. Whatever stops it, its committed work is pushed for the next attempt
/// (the seed dropped it, Q8).
async fn work(run: &JobRun<'_>, start: &Start) -> Result<Worked, Stop> {
    let (ctx, reporter) = (run.ctx, run.reporter);
    // Before the agent, and before any checkpoint: nothing of it may reach the branch.
    let install = dependencies::install(run, &start.work_dir, &start.work_dir).await?;
    let plan = pull_request::plan(run).await?;
    // The template note before the dependency note, as the seed orders them.
    let notes = with_notes("", &[plan.note.as_deref(), install.as_deref()]);
    let mut job = run.job.clone();
    job.user_prompt = with_notes(&job.user_prompt, &[Some(&notes)]);
    let job = &job;
    let stop_checkpoints = CancellationToken::new();
    // Whatever way this function returns, the checkpoint ticks stop with it.
    let _stop_on_return = stop_checkpoints.clone().drop_guard();
    let checkpoint_task = run.tasks.spawn(checkpoint_loop(
        start.checkpoints.clone(),
        Duration::from_millis(ctx.config.job.checkpoint_interval_ms),
        ctx.metrics.clone(),
        stop_checkpoints.clone(),
    ));

    let follow = if job.stream_follow_ups {
        run.checkout.exclude(FOLLOW_UPS_FILENAME).await?;
        Some(FollowUpStream::start(
            &start.work_dir,
            Duration::from_millis(ctx.config.job.followup_poll_interval_ms),
            reporter.clone(),
            run.tasks,
        ))
    } else {
        None
    };

    reporter.mark_phase("agent");
    tracing::info!(
        service_directory = job.repo.service_directory.as_deref().unwrap_or(""),
        "coding-agent: running agent"
    );
    reporter.agent_running(true);
    let agent = run_agent(run, job, &start.work_dir, true).await;
    reporter.agent_running(false);
    let worked = match agent {
        Ok(agent) => after_agent(run, start, agent, &notes, plan.title_from_heading).await,
        Err(stop) => Err(stop),
    };
    // Whatever the agent did, what it wrote is surfaced before the result.
    if let Some(f) = follow {
        f.finish().await;
    }
    stop_checkpoints.cancel();
    let _ = checkpoint_task.await;
    let worked = match worked {
        Ok(worked) => worked,
        Err(stop) => {
            // A refused edit stays out of git; what the agent committed is kept.
            start.checkpoints.push_committed_work().await;
            if run.cancel.is_cancelled() {
                return Err(Stop::Interrupted);
            }
            return Err(stop);
        }
    };
    let leftovers = run.checkout.untracked().await?;
    if !leftovers.is_empty() {
        let files = leftovers[..leftovers.len().min(UNTRACKED_LISTED)].join(", ");
        tracing::warn!(count = leftovers.len(), files = %files, "coding-agent: uncommitted new files left behind (not pushed)");
    }
    Ok(worked)
}

/// What the agent passes left: their folded run, and the last validation report when the
/// job carried checks and the run produced work.
struct Worked {
    agent: AgentRun,
    report: Option<ValidationReport>,
    /// The agent's PR title and body, when it wrote a description.
    description: Option<PrDescription>,
}

/// The safety-net commit of the tracked edits the agent left, then, when the job carries
/// checks and the run produced work, validation with its repair passes (whose edits are
/// committed the same way).
async fn after_agent(
    run: &JobRun<'_>,
    start: &Start,
    agent: AgentRun,
    notes: &str,
    title_from_heading: bool,
) -> Result<Worked, Stop> {
    run.checkout
        .commit_tracked(run.job.safety_net_message())
        .await?;
    let (agent, report) = match &run.job.validation_checks {
        // A no-op's failure is "no changes", not the base's red checks.
        Some(spec) if start.resumed || run.checkout.head().await? != start.base_sha => {
            let v = validation::validate(run, &start.work_dir, spec, agent, notes).await?;
            (v.agent, Some(v.report))
        }
        _ => (agent, None),
    };
    // Read after the repairs, which may have rewritten it.
    let description =
        pull_request::take_description(run, &start.work_dir, title_from_heading).await?;
    Ok(Worked {
        agent,
        report,
        description,
    })
}

/// Makes `result` the no-op outcome: nothing pushed, and the no-changes error unless the job
/// says a no-op is fine.
fn no_op(result: &mut AgentResult, job: &crate::job::AgentJob, agent: &AgentRun) {
    result.pushed = Some(false);
    if job.no_changes_is_error {
        result.error = Some(no_changes_reason(
            &agent.stats,
            agent.stderr_tail.as_deref(),
        ));
        result.failure_cause = Some(FailureCause::NoChanges);
    }
}

/// The final push and the PR, or the no-changes result when the run left nothing to push.
async fn deliver(run: &JobRun<'_>, start: &Start, worked: Worked) -> Result<FlowEnd, Stop> {
    let (job, agent) = (run.job, worked.agent);
    let head = run.checkout.head().await?;
    // A resumed branch carries work unless it adds nothing to its base any more (its earlier
    // work was merged: the refresh made it the base's tree).
    let has_work = if start.resumed {
        run.checkout.matches_base(&job.branch).await? != Some(true)
    } else {
        head != start.base_sha
    };
    let stats = agent.stats;
    let mut result = AgentResult {
        pushed: Some(false),
        resumed: Some(start.resumed),
        branch: Some(job.push_branch().to_owned()),
        summary: Some(agent.summary.clone()),
        stats: Some(stats),
        validation_report: worked.report.clone(),
        ..AgentResult::default()
    };
    if !has_work {
        tracing::info!(
            tool_calls = stats.tool_calls,
            assistant_chars = stats.assistant_chars,
            "coding-agent: no changes produced"
        );
        no_op(&mut result, job, &agent);
        return Ok(FlowEnd::Ran {
            result,
            head: Some(head),
        });
    }

    run.reporter.mark_phase("push");
    tracing::info!(
        resumed = start.resumed,
        tool_calls = stats.tool_calls,
        assistant_chars = stats.assistant_chars,
        "coding-agent: pushing"
    );
    if let Err(e) = start.checkpoints.push_once().await {
        // Rejected: maybe another run of this same job (a duplicate enqueue taken by another
        // worker) pushed first. Its recorded outcome is then the one to publish.
        if let (GitError::Rejected { .. }, Some(record)) = (&e, run.record) {
            let wait = Duration::from_millis(run.ctx.config.git.race_wait_ms);
            if let Some(winner) = record.await_winner(run.checkout, wait).await? {
                tracing::warn!("another run of this job finished first: publishing its result");
                return Ok(FlowEnd::Replayed(winner));
            }
        }
        return Err(e.into());
    }
    result.pushed = Some(true);

    if let Some(report) = worked.report.as_ref().filter(|r| !r.passed) {
        // Red after the budget: the work stays pushed for a retry to resume; no PR.
        result.error = Some(report.failure_message());
        result.failure_cause = Some(FailureCause::Agent);
        return Ok(FlowEnd::Ran {
            result,
            head: Some(head),
        });
    }
    match pull_request::open(run, worked.description.as_ref()).await? {
        Some(Opened::Url(url)) => result.pr_url = Some(url),
        Some(Opened::NothingToCompare) => no_op(&mut result, job, &agent),
        None => {}
    }
    Ok(FlowEnd::Ran {
        result,
        head: Some(head),
    })
}
