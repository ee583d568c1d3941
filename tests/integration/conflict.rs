//! Conflict resolution end to end (seed 4.3): real broker, real repositories, fake agents. The
//! pull request's branch is `feature`, its base `main`.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::repo::{git, BareRepo};
use crate::support::worker::{coding_job, drain_json, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

/// A conflict-resolution job merging `main` into `feature`, as the backend sends it.
fn conflict_job(id: &str, url: &str) -> serde_json::Value {
    let mut job = coding_job(id, url, None);
    job["branch"] = json!("feature");
    job["mergeBase"] = json!("main");
    job["full"] = json!(true);
    job["noChangesIsError"] = json!(false);
    job["userPrompt"] = json!("Make the greeting friendlier.");
    job
}

/// A remote where `feature` and `main` both changed `shared.txt` since they parted; returns it
/// with the two tips (the pull request's, the base's).
fn conflicting_origin() -> (BareRepo, String, String) {
    let origin = BareRepo::new();
    origin.commit_files("main", &[("shared.txt", "hello\n")], "Add shared");
    let pr = origin.commit_files("feature", &[("shared.txt", "hello, friend\n")], "Ours");
    let base = origin.commit_files("main", &[("shared.txt", "hello, world\n")], "Theirs");
    (origin, pr, base)
}

/// `[commit, parents...]` of `rev` in `repo`.
fn commit_and_parents(repo: &BareRepo, rev: &str) -> Vec<String> {
    git(repo.path(), &["rev-list", "--parents", "-n", "1", rev])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// An agent that records that it ran (and the prompt it got) in `s`, then does `body`.
fn agent(s: &Path, body: &str) -> std::path::PathBuf {
    write_agent(
        s,
        "agent",
        &format!(
            "echo run >> {s}/runs\nprintf '%s' \"$PROMPT\" > {s}/prompt\n{body}",
            s = s.display()
        ),
    )
}

fn runs(s: &Path) -> usize {
    std::fs::read_to_string(s.join("runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The phases the job went through, from its progress messages.
async fn phases(w: &TestWorker) -> Vec<String> {
    drain_json(w.conn(), &w.broker.topo.progress_queue)
        .await
        .iter()
        .filter(|p| p.get("progress").is_none() && p.get("spans").is_none())
        .filter_map(|p| p["phase"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_that_merges_clean_is_pushed_as_a_merge_commit_without_starting_the_agent() {
    let origin = BareRepo::new();
    let pr = origin.commit_files("feature", &[("feature.txt", "new\n")], "Feature");
    let base = origin.commit_files("main", &[("base.txt", "moved on\n")], "Base moved");
    let scratch = tempfile::tempdir().unwrap();
    let w = TestWorker::start(&agent(scratch.path(), "finish 'never'"), |_| {}).await;
    w.enqueue(&conflict_job("job-clean", &origin.url())).await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(
        r["result"],
        json!({
            "pushed": true,
            "resumed": false,
            "branch": "feature",
            "summary": "Merged the base in cleanly (no conflicts to resolve).",
            "stats": {"toolCalls": 0, "assistantChars": 0}
        })
    );
    assert_eq!(runs(scratch.path()), 0, "no agent ran");
    let tip = commit_and_parents(&origin, "feature");
    assert_eq!(
        tip[1..],
        [pr, base],
        "a merge of the PR tip and the base tip"
    );
    assert!(origin.file_at("feature", "base.txt").is_some());
    assert_eq!(phases(&w).await, ["starting", "clone", "push", "done"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_that_already_has_its_base_reports_so_with_no_error_and_no_agent() {
    let origin = BareRepo::new();
    let pr = origin.commit_files("feature", &[("feature.txt", "new\n")], "Feature");
    let scratch = tempfile::tempdir().unwrap();
    let w = TestWorker::start(&agent(scratch.path(), "finish 'never'"), |_| {}).await;
    let mut job = conflict_job("job-uptodate", &origin.url());
    // Ignored by this flow (Q12): an up-to-date branch is never an error.
    job["noChangesIsError"] = json!(true);
    w.enqueue(&job).await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(r.get("failureCause").is_none(), "{r}");
    assert_eq!(
        r["result"],
        json!({
            "pushed": false,
            "resumed": false,
            "branch": "feature",
            "summary": "No conflicts: the branch is already up to date with its base.",
            "stats": {"toolCalls": 0, "assistantChars": 0}
        })
    );
    assert_eq!(runs(scratch.path()), 0, "no agent ran");
    assert_eq!(origin.tip("feature"), Some(pr));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_the_agent_resolves_and_stages_are_pushed_as_a_merge_of_the_pr_tip_and_the_base_tip(
) {
    let (origin, pr, base) = conflicting_origin();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // It resolves and stages the file, and leaves an untracked scratch file behind (Q6).
    let agent = agent(
        s,
        &format!(
            "cp .cat-context/notes.md {s}/context-seen\nprintf 'hello, friendly world\\n' > shared.txt\ngit add shared.txt\necho notes > scratch.txt\ntool edit\nfinish 'Kept both greetings'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = conflict_job("job-resolve", &origin.url());
    job["contextFiles"] = json!([{"path": "notes.md", "content": "context for the agent"}]);
    job["webSearch"] = json!(true);
    w.enqueue(&job).await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(r.get("failureCause").is_none(), "{r}");
    let result = &r["result"];
    assert_eq!(result["pushed"], true, "{r}");
    assert_eq!(result["branch"], "feature");
    assert_eq!(result["summary"], "Kept both greetings");
    let tip = commit_and_parents(&origin, "feature");
    assert_eq!(
        tip[1..],
        [pr, base],
        "a merge of the PR tip and the base tip"
    );
    assert_eq!(origin.subjects("feature")[0], "Merge main into feature");
    assert_eq!(
        origin.file_at("feature", "shared.txt").as_deref(),
        Some("hello, friendly world\n")
    );
    // Untracked leftovers and the context files stay out of the merge commit.
    assert_eq!(origin.file_at("feature", "scratch.txt"), None);
    assert_eq!(origin.file_at("feature", ".cat-context/notes.md"), None);
    assert_eq!(
        std::fs::read_to_string(s.join("context-seen")).unwrap(),
        "context for the agent"
    );

    // The prompt of seed 4.3: the files, the hunks with their markers, the task.
    let prompt = std::fs::read_to_string(s.join("prompt")).unwrap();
    assert!(
        prompt.starts_with(
            "The base branch `main` was merged into this pull-request branch `feature` and left \
             Git merge conflicts in the following 1 file(s):\n\n- shared.txt\n\n"
        ),
        "{prompt}"
    );
    for part in [
        "```diff\ndiff --git a/shared.txt b/shared.txt",
        "+<<<<<<< ",
        "+=======\n",
        "+>>>>>>> ",
        "\n```\n\nFor reference, the task this pull request implements:\n\nMake the greeting friendlier.",
    ] {
        assert!(prompt.contains(part), "{part:?} missing from {prompt}");
    }
    assert_eq!(
        phases(&w).await,
        ["starting", "clone", "agent", "push", "done"]
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_the_agent_committed_itself_is_pushed_as_it_is() {
    let (origin, pr, base) = conflicting_origin();
    let scratch = tempfile::tempdir().unwrap();
    let agent = agent(
        scratch.path(),
        "printf 'hello, friendly world\\n' > shared.txt\ngit add shared.txt\ngit commit -q -m 'Agent merge'\nfinish 'committed'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&conflict_job("job-own-merge", &origin.url()))
        .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["result"]["pushed"], true, "{r}");
    // No second commit on top of the agent's own merge commit.
    assert_eq!(origin.subjects("feature")[0], "Agent merge");
    assert_eq!(commit_and_parents(&origin, "feature")[1..], [pr, base]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_left_unmerged_in_the_index_fails_as_agent_and_the_branch_is_unchanged() {
    let (origin, pr, _) = conflicting_origin();
    let scratch = tempfile::tempdir().unwrap();
    // Edited clean but never staged: still unmerged in the index (Q5).
    let agent = agent(
        scratch.path(),
        "printf 'hello, friendly world\\n' > shared.txt\ntool edit\nfinish 'fixed it'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&conflict_job("job-unmerged", &origin.url()))
        .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["failureCause"], "agent");
    let result = &r["result"];
    assert_eq!(result["pushed"], false);
    assert_eq!(result["branch"], "feature");
    assert_eq!(result["summary"], "fixed it");
    assert_eq!(result["failureCause"], "agent");
    assert_eq!(
        result["error"],
        "The agent did not resolve all merge conflicts (1 file(s) still conflicted: shared.txt)."
    );
    assert_eq!(origin.tip("feature"), Some(pr));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_file_that_still_holds_conflict_markers_is_never_pushed() {
    let (origin, pr, _) = conflicting_origin();
    let scratch = tempfile::tempdir().unwrap();
    // Staged as git merge left it, markers and all (the seed pushed this, Q5).
    let agent = agent(scratch.path(), "git add shared.txt\nfinish 'staged'");
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&conflict_job("job-markers", &origin.url())).await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["failureCause"], "agent");
    assert_eq!(r["result"]["pushed"], false);
    assert_eq!(
        r["result"]["error"],
        "The agent did not resolve all merge conflicts (1 file(s) still conflicted: shared.txt)."
    );
    assert_eq!(origin.tip("feature"), Some(pr));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_merge_is_unresolved_and_nothing_is_pushed() {
    let (origin, pr, _) = conflicting_origin();
    let scratch = tempfile::tempdir().unwrap();
    // Nothing unmerged and no marker left, but committing now would drop the base's side.
    let agent = agent(scratch.path(), "git merge --abort\nfinish 'gave up'");
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&conflict_job("job-abandoned", &origin.url()))
        .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["failureCause"], "agent", "{r}");
    assert_eq!(
        r["result"]["error"],
        "The agent did not resolve all merge conflicts (1 file(s) still conflicted: shared.txt)."
    );
    assert_eq!(origin.tip("feature"), Some(pr));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_conflict_job_delivered_again_re_publishes_its_result_without_running_the_agent()
{
    let (origin, _, _) = conflicting_origin();
    let scratch = tempfile::tempdir().unwrap();
    let agent = agent(
        scratch.path(),
        "printf 'hello, friendly world\\n' > shared.txt\ngit add shared.txt\nfinish 'resolved'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let job = conflict_job("job-resolve-once", &origin.url());
    w.enqueue(&job).await;
    let first = w.next_result(WAIT).await;
    assert_eq!(first["result"]["pushed"], true, "{first}");
    let tip = origin.tip("feature");

    // A crash between the result and the ack (or a duplicate enqueue) delivers it again.
    w.enqueue(&job).await;
    let again = w.next_result(WAIT).await;
    assert_eq!(again, first, "the recorded result, byte for byte");
    assert_eq!(runs(scratch.path()), 1, "the agent ran once");
    assert_eq!(origin.tip("feature"), tip);
    w.stop().await;
}
