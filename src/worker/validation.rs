//! Pre-PR validation with a repair loop (seed-later 1): after the agent, the job's checks run
//! against the checkout, every one of them each attempt; a red attempt sends the agent back
//! with the failures until the checks pass or the attempt budget is spent. Each attempt's
//! report goes out on `job.progress` as it finishes; the last one rides on the result.

use std::path::Path;
use std::time::Duration;

use crate::agent::AgentRun;
use crate::job::outcome::{CheckOutcome, ValidationReport};
use crate::job::prompts::{repair_prompt, with_notes, FailedCheck};
use crate::job::ValidationChecksSpec;
use crate::worker::agent_run::{invocation, run_agent};
use crate::worker::commands::run_command;
use crate::worker::context::JobRun;
use crate::worker::error::Stop;
use crate::worker::events::now_ms;

/// The agent's work after validation, and the last attempt's report.
pub struct Validated {
    /// Every pass folded together; the summary stays the first pass's answer to the task.
    pub agent: AgentRun,
    pub report: ValidationReport,
}

/// Runs the checks in `work_dir`, and repair passes while they fail and attempts are left.
/// `notes` are the notes every pass's prompt carries (template, dependencies). A repair pass
/// that fails ends the job as that failure.
pub async fn validate(
    run: &JobRun<'_>,
    work_dir: &Path,
    spec: &ValidationChecksSpec,
    first: AgentRun,
    notes: &str,
) -> Result<Validated, Stop> {
    let mut agent = first;
    let mut attempt = 1;
    loop {
        let (report, tails) = run_checks(run, work_dir, spec, attempt).await?;
        run.reporter.validation_report(&report);
        if report.passed {
            tracing::info!(attempt, "validation: checkout is green");
            return Ok(Validated { agent, report });
        }
        if attempt >= spec.max_attempts {
            tracing::warn!(
                attempt,
                max_attempts = spec.max_attempts,
                "validation: attempt budget spent, no PR will be opened"
            );
            return Ok(Validated { agent, report });
        }
        attempt += 1;
        tracing::info!(next_attempt = attempt, "validation: repairing");
        run.reporter.mark_phase("validation-repair");
        let untracked = match run.checkout.untracked().await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "validation: could not list uncommitted new files");
                Vec::new()
            }
        };
        let failed: Vec<FailedCheck<'_>> = report
            .outcomes
            .iter()
            .zip(&tails)
            .filter(|(o, _)| !o.passed)
            .map(|(o, tail)| FailedCheck {
                label: &o.label,
                command: &o.command,
                reason: o.reason(),
                output: tail.as_deref().or(o.output_tail.as_deref()),
            })
            .collect();
        let prompt = with_notes(
            &repair_prompt(&report, &failed, &untracked, &run.job.user_prompt),
            &[Some(notes)],
        );
        let mut repair_job = run.job.clone();
        repair_job.user_prompt = prompt;
        // Context files were written for the first pass and are still there.
        repair_job.context_files.clear();
        run.reporter.agent_running(true);
        let pass = run_agent(run, &repair_job, work_dir, true).await;
        run.reporter.agent_running(false);
        let pass = pass?;
        fold(&mut agent, pass);
        // What the repair left uncommitted in tracked files goes on the branch now, so a
        // checkpoint carries it.
        run.checkout
            .commit_tracked(run.job.safety_net_message())
            .await?;
        run.reporter.mark_phase("agent");
    }
}

/// One attempt: every check in order, never short-circuited, so a repair sees every failure.
/// Returns the report and each check's longer output tail for the repair prompt.
async fn run_checks(
    run: &JobRun<'_>,
    work_dir: &Path,
    spec: &ValidationChecksSpec,
    attempt: u32,
) -> Result<(ValidationReport, Vec<Option<String>>), Stop> {
    let inv = invocation(run, work_dir).await?;
    let timeout = Duration::from_millis(run.ctx.config.job.validation_command_timeout_ms);
    // A command line can carry a secret of the job's as well as its output.
    let redactor = run.job.redactor();
    let mut outcomes = Vec::with_capacity(spec.checks.len());
    let mut tails = Vec::with_capacity(spec.checks.len());
    for check in &spec.checks {
        tracing::info!(label = %check.label, "validation: running check");
        let ran = run_command(run, &inv, &check.command, timeout).await;
        if ran.captured.stopped {
            return Err(Stop::Interrupted);
        }
        let c = &ran.captured;
        tracing::info!(label = %check.label, exit_code = c.exit_code, "validation: check finished");
        outcomes.push(CheckOutcome {
            label: redactor.redact(&check.label),
            command: redactor.redact(&check.command),
            exit_code: c.exit_code,
            passed: c.passed(),
            output_tail: ran.report_tail,
            duration_ms: c.duration.as_millis() as u64,
            timed_out: c.timed_out.then_some(true),
        });
        tails.push(ran.prompt_tail);
    }
    // The checks ran in the checkout: the worker's commits and pushes come next.
    run.checkout.reclaim().await?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.label.clone())
        .collect();
    let report = ValidationReport {
        passed: failed.is_empty(),
        attempts: attempt,
        max_attempts: spec.max_attempts,
        outcomes,
        at: now_ms(),
    };
    tracing::info!(
        attempt,
        max_attempts = spec.max_attempts,
        passed = report.passed,
        failed = %failed.join(", "),
        "validation: attempt finished"
    );
    Ok((report, tails))
}

/// Folds a repair pass into the run: counts summed, the latest stderr and diagnostics; the
/// summary stays the answer to the task (the seed took the repair's, "fixed the lint"). Its
/// tokens are the job ledger's to total.
fn fold(total: &mut AgentRun, pass: AgentRun) {
    total.stats.tool_calls += pass.stats.tool_calls;
    total.stats.assistant_chars += pass.stats.assistant_chars;
    total.stderr_tail = pass.stderr_tail.or(total.stderr_tail.take());
    total.diagnostics = pass.diagnostics;
}
