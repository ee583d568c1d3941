//! The dependency install before the agent (seed-later 2): the job's `dependencyInstall`
//! command run in the agent's sandbox, best-effort. What it creates is kept out of git where
//! it was made, the tracked files it rewrites (a lockfile) are put back, and how it went
//! becomes a note in every pass's prompt. It never fails the job.

use std::path::Path;

use crate::job::outcome::command_failure;
use crate::job::prompts::{dependency_note, InstallNote};
use crate::worker::agent_run::invocation;
use crate::worker::commands::run_command;
use crate::worker::context::JobRun;
use crate::worker::error::Stop;

/// Runs the job's install in `dir`, if it has one, under the `dependencies` phase, and
/// returns the note for the prompt of an agent that runs in `agent_dir`. Only an
/// interruption of the job stops it.
pub async fn install(
    run: &JobRun<'_>,
    dir: &Path,
    agent_dir: &Path,
) -> Result<Option<String>, Stop> {
    let Some(command) = run.job.dependency_install.as_deref() else {
        return Ok(None);
    };
    run.reporter.mark_phase("dependencies");
    // A merge in progress (conflict resolution) has changed files of its own to keep.
    let before = run.checkout.tree_state().await.unwrap_or_default();
    let inv = invocation(run, dir).await?;
    tracing::info!(command = %command, "dependencies: installing");
    let ran = run_command(
        run,
        &inv,
        command,
        run.ctx.config.dependency_install_timeout(),
    )
    .await;
    if ran.captured.stopped {
        return Err(Stop::Interrupted);
    }
    let c = &ran.captured;
    tracing::info!(
        exit_code = c.exit_code,
        duration_ms = c.duration.as_millis() as u64,
        "dependencies: install finished"
    );
    // The install ran in the checkout: the worker's status walks come next.
    run.checkout.reclaim().await?;
    let (added, restored) = match run.checkout.set_aside(before).await {
        Ok(set_aside) => set_aside,
        Err(e) => {
            tracing::warn!(error = %e, "dependencies: cannot keep the install's artifacts out of git");
            (Vec::new(), Vec::new())
        }
    };
    if !added.is_empty() {
        tracing::info!(paths = %added.join(", "), "dependencies: excluded installed artifacts from git");
    }
    if !restored.is_empty() {
        tracing::info!(paths = %restored.join(", "), "dependencies: put back tracked files the install rewrote");
    }
    let failure = (!c.passed())
        .then(|| command_failure(c.exit_code, c.timed_out, c.duration.as_millis() as u64));
    let elsewhere = dir
        .strip_prefix(agent_dir)
        .ok()
        .filter(|rel| !rel.as_os_str().is_empty())
        .map(|rel| rel.to_string_lossy().into_owned());
    Ok(Some(dependency_note(&InstallNote {
        command,
        elsewhere: elsewhere.as_deref(),
        failure,
        output_tail: ran.report_tail.as_deref(),
        restored: &restored,
    })))
}
