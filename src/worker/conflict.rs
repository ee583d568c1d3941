//! Conflict resolution (seed 4.3): the pull request's branch (`job.branch`) with its base
//! (`mergeBase`) merged in. A clean merge is pushed, or reported up to date, without an agent;
//! conflicts go to the agent with their diff, and the merge is completed (two parents) and
//! pushed only once nothing is left unmerged and no conflict marker it left is staged.
//!
//! No checkpoints and no resume probe: an interrupted run starts over, since only the finished
//! merge is ever pushed. The completion ref is honoured like coding's.

use std::time::Duration;

use crate::git::{BaseMerge, ConflictedMerge, GitError, MergeOutcome};
use crate::job::outcome::{
    unresolved_conflicts_reason, AgentResult, FailureCause, ResultBody, RunStats,
};
use crate::job::prompts::with_notes;
use crate::worker::agent_run::run_agent;
use crate::worker::context::{FlowEnd, JobRun};
use crate::worker::dependencies;
use crate::worker::error::FlowError;
use crate::worker::error::Stop;
use crate::worker::workspace::resolve_service_directory;

/// The summary when the branch already had its base (seed 3.7).
pub const UP_TO_DATE: &str = "No conflicts: the branch is already up to date with its base.";
/// The summary when the base merged in without conflicts (seed 3.7).
pub const MERGED_CLEAN: &str = "Merged the base in cleanly (no conflicts to resolve).";

/// What the agent is asked to do with the conflicts (seed 4.3 step 6.4). Unlike the seed's, it
/// says that a resolved file is staged: that is how resolution is judged (Q5).
const INSTRUCTIONS: &str = "Resolve every conflict in these files. For each `<<<<<<<` / \
    `=======` / `>>>>>>>` region, understand both sides and keep the intent of both; never just \
    discard one side. Remove every conflict marker, stage each resolved file with `git add`, \
    and leave the project building. Do not create a new branch or pull request: the harness \
    completes the merge commit and pushes once no conflict markers remain.";

/// Runs a conflict-resolution job merging `base` into the job's branch.
pub async fn run(run: &JobRun<'_>, base: &str) -> Result<FlowEnd, Stop> {
    let (job, checkout, reporter) = (run.job, run.checkout, run.reporter);
    if let Some(record) = run.record {
        if let Some(body) = record.find(checkout).await? {
            tracing::info!("job already finished: re-publishing its recorded result");
            return Ok(FlowEnd::Replayed(body));
        }
    }

    reporter.mark_phase("clone");
    tracing::info!("agent(conflict): cloning PR branch (full history)");
    let pr_tip = checkout.clone_fresh(&job.branch, None, false).await?;
    tracing::info!(base, "agent(conflict): merging base into PR branch");
    let merge = match checkout.merge_base(base).await? {
        BaseMerge::Clean { head } if head == pr_tip => {
            tracing::info!("agent(conflict): base merged clean and branch already up to date");
            // No error whatever noChangesIsError says (Q12).
            let result = clean_result(run, false, UP_TO_DATE);
            return Ok(FlowEnd::Ran {
                result,
                head: Some(head),
            });
        }
        BaseMerge::Clean { head } => {
            reporter.mark_phase("push");
            tracing::info!("agent(conflict): base merged clean \u{2014} pushing the merge commit");
            if let Some(winner) = push(run, &head, vec![pr_tip]).await? {
                return Ok(FlowEnd::Replayed(winner));
            }
            let result = clean_result(run, true, MERGED_CLEAN);
            return Ok(FlowEnd::Ran {
                result,
                head: Some(head),
            });
        }
        BaseMerge::Conflicted(merge) => merge,
    };
    resolve(run, base, merge).await
}

/// The agent-less result of a clean merge.
fn clean_result(run: &JobRun<'_>, pushed: bool, summary: &str) -> AgentResult {
    AgentResult {
        pushed: Some(pushed),
        resumed: Some(false),
        branch: Some(run.job.branch.clone()),
        summary: Some(summary.to_owned()),
        stats: Some(RunStats::default()),
        ..AgentResult::default()
    }
}

/// Runs the agent on the conflicts, then completes and pushes the merge, or reports what it
/// left unresolved (and pushes nothing).
async fn resolve(run: &JobRun<'_>, base: &str, merge: ConflictedMerge) -> Result<FlowEnd, Stop> {
    let (job, checkout, reporter) = (run.job, run.checkout, run.reporter);
    // Installed where the service lives, while the merge is in progress (seed-later 2.1); the
    // agent works at the root.
    let note = match &job.repo.service_directory {
        Some(sd) if job.dependency_install.is_some() => {
            let (dir, sd) = (checkout.dir().to_path_buf(), sd.clone());
            let work_dir =
                tokio::task::spawn_blocking(move || resolve_service_directory(&dir, &sd))
                    .await
                    .map_err(|e| FlowError::Task(e.to_string()))??;
            dependencies::install(run, &work_dir, checkout.dir()).await?
        }
        _ => dependencies::install(run, checkout.dir(), checkout.dir()).await?,
    };
    reporter.mark_phase("agent");
    tracing::info!(
        conflicted = %merge.paths.join(", "),
        "agent(conflict): resolving conflicts with agent"
    );
    let diff = checkout.conflict_diff(&merge.paths).await?;
    // The repository root, the job's context files, no web search (Q12).
    let mut phrased = job.clone();
    phrased.user_prompt = with_notes(
        &conflict_prompt(base, &job.branch, &merge.paths, &diff, &job.user_prompt),
        &[note.as_deref()],
    );
    phrased.web_search = false;
    phrased.repo.service_directory = None;
    reporter.agent_running(true);
    let agent = run_agent(run, &phrased, checkout.dir(), true).await;
    reporter.agent_running(false);
    let agent = agent?;

    let mut result = AgentResult {
        pushed: Some(false),
        resumed: Some(false),
        branch: Some(job.branch.clone()),
        summary: Some(agent.summary.clone()),
        stats: Some(agent.stats),
        ..AgentResult::default()
    };
    let message = format!("Merge {base} into {}", job.branch);
    match checkout.complete_merge(&merge, &message).await? {
        MergeOutcome::Unresolved { paths } => {
            tracing::error!(
                unresolved = paths.len(),
                "agent(conflict): unresolved conflicts remain, refusing to push"
            );
            result.error = Some(unresolved_conflicts_reason(
                &paths,
                &agent.stats,
                agent.stderr_tail.as_deref(),
            ));
            result.failure_cause = Some(FailureCause::Agent);
            // Recorded over the branch's tip, which the remote has: the refused merge stays
            // local.
            Ok(FlowEnd::Ran {
                result,
                head: Some(merge.pr_tip),
            })
        }
        MergeOutcome::Committed { head } => {
            reporter.mark_phase("push");
            tracing::info!("agent(conflict): pushing resolved branch");
            let known = vec![merge.pr_tip.clone(), merge.base_tip.clone()];
            if let Some(winner) = push(run, &head, known).await? {
                return Ok(FlowEnd::Replayed(winner));
            }
            result.pushed = Some(true);
            Ok(FlowEnd::Ran {
                result,
                head: Some(head),
            })
        }
    }
}

/// Pushes `head` to the pull request's branch, never forced, with the size check of the
/// commits the remote lacks (not reachable from `known`). A rejection may mean another run of
/// this same job pushed first: its recorded result is then returned, to publish instead.
async fn push(
    run: &JobRun<'_>,
    head: &str,
    known: Vec<String>,
) -> Result<Option<Box<ResultBody>>, Stop> {
    let branch = &run.job.branch;
    let Err(e) = run.checkout.push(head, branch, branch, known).await else {
        return Ok(None);
    };
    if let (GitError::Rejected { .. }, Some(record)) = (&e, run.record) {
        let wait = Duration::from_millis(run.ctx.config.git.race_wait_ms);
        if let Some(winner) = record.await_winner(run.checkout, wait).await? {
            tracing::warn!("another run of this job finished first: publishing its result");
            return Ok(Some(winner));
        }
    }
    Err(e.into())
}

/// The agent's prompt for the conflicts (seed 4.3 step 6.4): the files, what to do, the
/// conflict hunks, and the task the pull request implements when there is one.
fn conflict_prompt(base: &str, branch: &str, paths: &[String], diff: &str, task: &str) -> String {
    let mut lines = vec![
        format!(
            "The base branch `{base}` was merged into this pull-request branch `{branch}` and \
             left Git merge conflicts in the following {} file(s):",
            paths.len()
        ),
        String::new(),
    ];
    lines.extend(paths.iter().map(|p| format!("- {p}")));
    lines.extend(
        [
            "",
            INSTRUCTIONS,
            "",
            "Conflict hunks (`git diff` of the conflicted files):",
            "",
            "```diff",
            diff.trim_end_matches('\n'),
            "```",
        ]
        .map(str::to_owned),
    );
    let task = task.trim();
    if !task.is_empty() {
        lines.extend(
            [
                "",
                "For reference, the task this pull request implements:",
                "",
                task,
            ]
            .map(str::to_owned),
        );
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflict_prompt_lists_the_files_the_hunks_and_the_task_in_the_seeds_order() {
        let paths = vec!["a.txt".to_owned(), "src/b.rs".to_owned()];
        let prompt = conflict_prompt("main", "feature/x", &paths, "DIFF\n", "  Do the task.\n");
        let expected = format!(
            "The base branch `main` was merged into this pull-request branch `feature/x` and left \
             Git merge conflicts in the following 2 file(s):\n\n- a.txt\n- src/b.rs\n\n\
             {INSTRUCTIONS}\n\nConflict hunks (`git diff` of the conflicted files):\n\n```diff\n\
             DIFF\n```\n\nFor reference, the task this pull request implements:\n\nDo the task."
        );
        assert_eq!(prompt, expected);
        // A blank task adds nothing after the hunks.
        let bare = conflict_prompt("main", "b", &paths[..1], "", " \n");
        assert!(bare.ends_with("```diff\n\n```"), "{bare}");
    }
}
