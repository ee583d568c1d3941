//! The explore flow (seed 4.6 prose, 4.7 structured): a clone of `branch`, the agent in it,
//! and its report, or the JSON document read out of its report (repaired once when it does not
//! parse, [`crate::structured`]).
//!
//! Read-only: explore writes nothing to the remote (no checkpoint, no safety-net commit, no
//! push, no completion ref), so a read-only token suffices and a redelivery simply runs again.
//! The tester stand-up (`infra`, seed 4.8) is not part of this flow.

use std::path::PathBuf;

use crate::agent::{AgentRun, RunDiagnostics};
use crate::job::outcome::{
    no_report_reason, no_structured_reason, unusable_final_reason, AgentResult, FailureCause,
    UnusableFinal,
};
use crate::job::prompts::with_notes;
use crate::job::{OutputKind, OutputSpec};
use crate::structured::{
    parse_document, repair_client, resolve_structured_output, Channel, Repair, RepairLimits,
    DEFAULT_SHAPE_HINT,
};
use crate::worker::agent_run::run_agent;
use crate::worker::context::{FlowEnd, JobRun};
use crate::worker::dependencies;
use crate::worker::error::{FlowError, Stop};
use crate::worker::workspace::resolve_service_directory;

pub async fn run(run: &JobRun<'_>) -> Result<FlowEnd, Stop> {
    let work_dir = prepare(run).await?;
    let agent = explore(run, &work_dir).await?;
    let mut result = AgentResult {
        summary: Some(agent.summary.clone()),
        stats: Some(agent.stats),
        ..AgentResult::default()
    };
    if agent.summary.trim().is_empty() {
        result.error = Some(no_report_reason(&agent.stats, agent.stderr_tail.as_deref()));
        result.failure_cause = Some(FailureCause::NoUsableOutput);
        return Ok(ran(result));
    }
    match &run.job.output {
        Some(
            spec @ OutputSpec {
                kind: OutputKind::Structured,
                ..
            },
        ) => structured_result(run, spec, &agent, result).await,
        _ => {
            tracing::info!("agent(explore): done (prose)");
            Ok(ran(result))
        }
    }
}

/// A finished explore: nothing was written, so there is no tip to record a completion on.
fn ran(result: AgentResult) -> FlowEnd {
    FlowEnd::Ran { result, head: None }
}

/// A fresh clone of `branch` (shallow unless `full`), or the repository's warm checkout
/// brought to it (`persistentCheckout`, always full), and the directory the agent runs in.
async fn prepare(run: &JobRun<'_>) -> Result<PathBuf, Stop> {
    let (job, checkout) = (run.job, run.checkout);
    run.reporter.mark_phase("clone");
    match run.warm {
        Some(warm) => {
            tracing::info!(branch = %job.branch, "agent(explore): preparing reused checkout");
            let fresh = warm.interrupted();
            warm.preparing();
            let keep = run.ctx.config.git.clean_keep.clone();
            checkout
                .prepare_warm(&job.branch, &job.branch, &job.branch, keep, fresh)
                .await?;
            warm.ready();
        }
        None => {
            tracing::info!(clone_branch = %job.branch, full = job.full, "agent(explore): cloning");
            checkout.clone_fresh(&job.branch, None, !job.full).await?;
        }
    }
    Ok(match &job.repo.service_directory {
        Some(sd) => {
            let (dir, sd) = (checkout.dir().to_path_buf(), sd.clone());
            tokio::task::spawn_blocking(move || resolve_service_directory(&dir, &sd))
                .await
                .map_err(|e| FlowError::Task(e.to_string()))??
        }
        None => checkout.dir().to_path_buf(),
    })
}

/// The agent, with the no-edit bound of the guard off: reading is the whole job.
async fn explore(run: &JobRun<'_>, work_dir: &std::path::Path) -> Result<AgentRun, Stop> {
    let reporter = run.reporter;
    let note = dependencies::install(run, work_dir, work_dir).await?;
    let mut job = run.job.clone();
    job.user_prompt = with_notes(&job.user_prompt, &[note.as_deref()]);
    let job = &job;
    reporter.mark_phase("agent");
    tracing::info!(
        service_directory = job.repo.service_directory.as_deref().unwrap_or(""),
        "agent(explore): running agent"
    );
    reporter.agent_running(true);
    let agent = run_agent(run, job, work_dir, false).await;
    reporter.agent_running(false);
    let agent = agent?;
    Ok(agent)
}

/// Seed 4.7 from step 7: the fail-loud gate, then the document (repaired unless `repair` is
/// false), else the no-structured result.
async fn structured_result(
    run: &JobRun<'_>,
    spec: &OutputSpec,
    agent: &AgentRun,
    mut result: AgentResult,
) -> Result<FlowEnd, Stop> {
    let job = run.job;
    let stderr = agent.stderr_tail.as_deref();
    if spec.fail_on_unusable_final {
        // Before any repair: a cut-off reply must not be "repaired" into half a document.
        if let Some(why) = unusable_final(&agent.diagnostics) {
            result.error = Some(unusable_final_reason(why, stderr, &agent.summary));
            result.failure_cause = Some(FailureCause::NoUsableOutput);
            return Ok(ran(result));
        }
    }
    let (value, suffix) = if spec.repair == Some(false) {
        (parse_document(&agent.summary), String::new())
    } else {
        let client = repair_client();
        let redactor = job.redactor();
        let repair = Repair {
            label: "agent",
            shape_hint: spec.shape_hint.as_deref().unwrap_or(DEFAULT_SHAPE_HINT),
            model: &job.model,
            harness: job.auth.harness(),
            channel: Channel::for_auth(&job.auth),
            client: &client,
            limits: RepairLimits::SEED,
            redactor: &redactor,
        };
        let resolved = resolve_structured_output(&agent.summary, &repair, run.cancel).await;
        if run.cancel.is_cancelled() {
            return Err(Stop::Interrupted);
        }
        (resolved.value, resolved.diagnostics.suffix())
    };
    match value {
        Some(value) => {
            // Every string that leaves the worker is redacted; the document is agent text.
            result.custom = Some(job.redactor().redact_json(value));
            tracing::info!("agent(explore): done (structured)");
        }
        None => {
            result.error = Some(no_structured_reason(&agent.stats, &suffix, stderr));
            result.failure_cause = Some(FailureCause::NoUsableOutput);
        }
    }
    Ok(ran(result))
}

/// Why the final answer cannot be used, from Pi's diagnostics (the cut-off checked first). The
/// subscription runners report none, so the gate never fires for them.
fn unusable_final(d: &RunDiagnostics) -> Option<UnusableFinal> {
    if d.final_truncated {
        Some(UnusableFinal::CutOff)
    } else if d.final_answer_empty {
        Some(UnusableFinal::Empty)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_names_the_cut_off_before_the_empty_answer_and_passes_a_usable_one() {
        let both = RunDiagnostics {
            truncated: true,
            final_truncated: true,
            final_answer_empty: true,
        };
        assert_eq!(unusable_final(&both), Some(UnusableFinal::CutOff));
        let empty = RunDiagnostics {
            final_answer_empty: true,
            ..RunDiagnostics::default()
        };
        assert_eq!(unusable_final(&empty), Some(UnusableFinal::Empty));
        // An earlier message cut off does not make the final answer unusable.
        let earlier = RunDiagnostics {
            truncated: true,
            ..RunDiagnostics::default()
        };
        assert_eq!(unusable_final(&earlier), None);
    }
}
