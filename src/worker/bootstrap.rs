//! Repository bootstrap (seed 4.4): the agent adapts a shallow clone of a reference repository
//! (`repo`, `branch`) or scaffolds into an empty directory, and what it leaves becomes a fresh
//! single-commit history force-pushed to the target's default branch.
//!
//! The driver's checkout remote for this flow is the target (see `JobOwned::prepare`), so the
//! completion probe, the force push and the completion record all go there; the reference is
//! only cloned from, through a remote of its own.

use crate::git::{GitAuth, GitRemote};
use crate::job::outcome::{bootstrap_no_op_reason, AgentResult, FailureCause};
use crate::job::BootstrapSpec;
use crate::worker::agent_run::run_agent;
use crate::worker::context::{FlowEnd, JobRun};
use crate::worker::error::{FlowError, Stop};

/// Runs a bootstrap job for `spec`.
pub async fn run(run: &JobRun<'_>, spec: &BootstrapSpec) -> Result<FlowEnd, Stop> {
    let (job, checkout, reporter) = (run.job, run.checkout, run.reporter);
    let target = &spec.target;
    let target_slug = format!("{}/{}", target.owner, target.name);
    if let Some(record) = run.record {
        if let Some(body) = record.find(checkout).await? {
            tracing::info!("job already finished: re-publishing its recorded result");
            return Ok(FlowEnd::Replayed(body));
        }
    }

    // The tip the agent starts from, with a reference.
    let start = if spec.from_scratch {
        tracing::info!(target = %target_slug, "agent(bootstrap): scaffolding from scratch (no reference)");
        tokio::fs::DirBuilder::new()
            .mode(0o700)
            .create(checkout.dir())
            .await
            .map_err(FlowError::io("cannot create the bootstrap directory"))?;
        None
    } else {
        reporter.mark_phase("clone");
        tracing::info!(target = %target_slug, reference = %job.repo_slug(), "agent(bootstrap): cloning reference architecture");
        // The token goes to the reference's origin on this clone, as the seed sends it there.
        let reference = GitRemote::new(&job.repo.clone_url, GitAuth::token(job.gh_token.clone()))
            .map_err(FlowError::Git)?;
        Some(checkout.clone_from(&reference, &job.branch).await?)
    };

    reporter.mark_phase("agent");
    // No service directory, no context files, no web search (seed 4.4 step 2, Q4).
    let mut phrased = job.clone();
    phrased.context_files.clear();
    phrased.web_search = false;
    phrased.repo.service_directory = None;
    reporter.agent_running(true);
    let agent = run_agent(run, &phrased, checkout.dir(), true).await;
    reporter.agent_running(false);
    let agent = agent?;

    let mut result = AgentResult {
        summary: Some(agent.summary.clone()),
        stats: Some(agent.stats),
        ..AgentResult::default()
    };
    if !checkout.has_new_content(start.as_deref()).await? {
        tracing::error!("agent(bootstrap): agent produced no content, refusing to push");
        result.error = Some(bootstrap_no_op_reason(
            spec.from_scratch,
            &agent.stats,
            agent.stderr_tail.as_deref(),
            &agent.summary,
        ));
        result.failure_cause = Some(FailureCause::Agent);
        // Nothing was written to the target: no completion to record there.
        return Ok(FlowEnd::Ran { result, head: None });
    }

    reporter.mark_phase("push");
    tracing::info!("agent(bootstrap): pushing bootstrapped contents");
    let message = match spec.from_scratch {
        true => "Bootstrap new repository".to_owned(),
        false => format!("Bootstrap from {}", job.repo_slug()),
    };
    let head = checkout
        .fresh_history(&target.default_branch, &message)
        .await?;
    // Forced on purpose: the new repository may hold boilerplate its host created, sharing no
    // history with this commit (seed 4.4 step 4.8).
    checkout.force_push(&target.default_branch).await?;
    tracing::info!(target = %target_slug, default_branch = %target.default_branch, "agent(bootstrap): complete");
    result.default_branch = Some(target.default_branch.clone());
    Ok(FlowEnd::Ran {
        result,
        head: Some(head),
    })
}
