//! Repository bootstrap end to end (seed 4.4): real broker, real repositories, fake agents. The
//! reference is `acme/widgets` (`main`); the target already holds an unrelated history on its
//! default branch `main`, which the bootstrap replaces.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::git_http::GitHttpServer;
use crate::support::repo::{git, BareRepo};
use crate::support::worker::{coding_job, TestWorker};

const WAIT: Duration = Duration::from_secs(30);
/// The `ghToken` of [`coding_job`].
const TOKEN: &str = "ghs_TESTgittoken000000000000000000001";

/// A bootstrap job from the reference at `reference_url` to the target at `target_url`.
fn bootstrap_job(
    id: &str,
    reference_url: &str,
    target_url: &str,
    from_scratch: bool,
) -> serde_json::Value {
    let mut job = coding_job(id, reference_url, None);
    job["bootstrap"] = json!({
        "target": {"owner": "acme", "name": "new-service", "cloneUrl": target_url, "defaultBranch": "main"},
        "fromScratch": from_scratch
    });
    job["contextFiles"] = json!([{"path": "notes.md", "content": "not for bootstrap"}]);
    job
}

/// The number of commits reachable from `rev` and the parents of its tip.
fn history(repo: &BareRepo, rev: &str) -> (usize, Vec<String>) {
    let count = git(repo.path(), &["rev-list", "--count", rev])
        .parse()
        .unwrap();
    let parents = git(repo.path(), &["rev-list", "--parents", "-n", "1", rev])
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    (count, parents)
}

/// The paths in the tree of `rev`, with their modes.
fn tree(repo: &BareRepo, rev: &str) -> Vec<String> {
    git(
        repo.path(),
        &["ls-tree", "-r", "--format=%(objectmode) %(path)", rev],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn runs(s: &Path) -> usize {
    std::fs::read_to_string(s.join("runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapted_reference_replaces_the_targets_history_with_one_parentless_commit() {
    let reference = BareRepo::new();
    reference.commit_files(
        "main",
        &[("src/lib.txt", "lib\n"), (".gitignore", "build/\n")],
        "Reference layout",
    );
    let reference_tip = reference.tip("main");
    let target = BareRepo::new();
    target.commit_files("main", &[("LICENSE", "boilerplate\n")], "Host boilerplate");
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // Edits, a new file, an ignored build output, and a symlink pointing out of the directory.
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo run >> {s}/runs\ntest ! -e .cat-context && touch {s}/no-context\necho 'new service' > README.md\necho svc > service.txt\nmkdir build && echo out > build/out.bin\nln -s /etc/hostname host-link\ntool write\nfinish 'Adapted the reference'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&bootstrap_job(
        "job-boot-ref",
        &reference.url(),
        &target.url(),
        false,
    ))
    .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    let result = &r["result"];
    assert_eq!(result["defaultBranch"], "main");
    assert_eq!(result["summary"], "Adapted the reference");
    assert!(result.get("stats").is_some(), "{r}");
    for absent in ["pushed", "branch", "error"] {
        assert!(result.get(absent).is_none(), "{absent} in {r}");
    }
    assert_eq!(
        history(&target, "main"),
        (1, vec![]),
        "one commit, no parent"
    );
    assert_eq!(target.subjects("main"), ["Bootstrap from acme/widgets"]);
    assert_eq!(
        tree(&target, "main"),
        [
            "100644 .gitignore",
            "100644 README.md",
            "120000 host-link",
            "100644 service.txt",
            "100644 src/lib.txt",
        ]
    );
    // The link is stored as a link, never followed out of the directory.
    assert_eq!(
        target.file_at("main", "host-link").as_deref(),
        Some("/etc/hostname")
    );
    assert!(
        s.join("no-context").exists(),
        "no context files for bootstrap"
    );
    // The reference is only read; the completion is recorded on the target.
    assert_eq!(reference.tip("main"), reference_tip);
    assert!(reference.refs("refs/harness/").is_empty());
    assert_eq!(
        target.refs("refs/harness/done/"),
        ["refs/harness/done/job-boot-ref"]
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_scratch_the_agents_files_are_force_pushed_over_smart_http_with_the_jobs_token() {
    let root = tempfile::tempdir().unwrap();
    let target = BareRepo::new_in(root.path(), "target");
    target.commit_files("main", &[("LICENSE", "boilerplate\n")], "Host boilerplate");
    let server = GitHttpServer::start(root.path(), TOKEN);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // The directory starts empty and is not a repository.
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "ls -A > {s}/listing\ngit rev-parse --git-dir 2>/dev/null || touch {s}/not-a-repo\nmkdir -p src\necho 'fn main() {{}}' > src/main.rs\nprintf '#!/bin/sh\\n' > run.sh\nchmod +x run.sh\nfinish 'Scaffolded'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.job.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let job = bootstrap_job(
        "job-boot-scratch",
        "https://github.com/acme/widgets.git",
        &server.url("target"),
        true,
    );
    w.enqueue(&job).await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["defaultBranch"], "main");
    assert_eq!(std::fs::read_to_string(s.join("listing")).unwrap(), "");
    assert!(s.join("not-a-repo").exists());
    assert_eq!(
        history(&target, "main"),
        (1, vec![]),
        "one commit, no parent"
    );
    assert_eq!(target.subjects("main"), ["Bootstrap new repository"]);
    assert_eq!(
        tree(&target, "main"),
        ["100755 run.sh", "100644 src/main.rs"]
    );
    // The token reached the target (probe, force push, completion record), never refused.
    assert!(server.accepted_attempts() > 0);
    assert_eq!(server.bad_attempts(), 0);
    assert_eq!(
        target.refs("refs/harness/done/"),
        ["refs/harness/done/job-boot-scratch"]
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_tree_with_nothing_to_commit_fails_as_git_without_pushing() {
    let target = BareRepo::new();
    let before = target.tip("main");
    let scratch = tempfile::tempdir().unwrap();
    // A file, so not a no-op as the seed counts it, but only inside `.git`.
    let agent = write_agent(
        scratch.path(),
        "agent",
        "mkdir .git && echo junk > .git/junk\nfinish 'Only git internals'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&bootstrap_job(
        "job-boot-empty",
        &BareRepo::new().url(),
        &target.url(),
        true,
    ))
    .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("refusing to push an empty tree"), "{error}");
    assert_eq!(target.tip("main"), before);
    assert!(target.refs("refs/harness/").is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_size_limit_fails_the_bootstrap_as_git_before_anything_is_pushed() {
    let target = BareRepo::new();
    let before = target.tip("main");
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo small > small.txt\nhead -c 4096 /dev/zero > big.bin\nfinish 'Scaffolded'",
    );
    let w = TestWorker::start(&agent, |c| c.git.max_file_bytes = 1024).await;
    w.enqueue(&bootstrap_job(
        "job-boot-big",
        &BareRepo::new().url(),
        &target.url(),
        true,
    ))
    .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.starts_with("git commit: 'big.bin' is 4096 bytes, over the 1024-byte limit"),
        "{error}"
    );
    assert_eq!(target.tip("main"), before);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_commits_its_own_work_on_the_reference_is_not_a_no_op() {
    let reference = BareRepo::new();
    let target = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    // A clean work tree afterwards: the seed called this a no-op (Q7).
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo mine > mine.txt\ncommit_all 'Agent work'\nfinish 'Committed it myself'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&bootstrap_job(
        "job-boot-commit",
        &reference.url(),
        &target.url(),
        false,
    ))
    .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(r.get("failureCause").is_none(), "{r}");
    assert_eq!(history(&target, "main"), (1, vec![]));
    assert_eq!(
        tree(&target, "main"),
        ["100644 README.md", "100644 mine.txt"]
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_changes_nothing_gets_the_no_op_text_and_nothing_is_pushed() {
    let reference = BareRepo::new();
    let target = BareRepo::new();
    let before = target.tip("main");
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "tool read\nfinish 'Looked around'");
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&bootstrap_job(
        "job-boot-noop",
        &reference.url(),
        &target.url(),
        false,
    ))
    .await;

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["failureCause"], "agent");
    let result = &r["result"];
    let stats = &result["stats"];
    assert_eq!(
        result["error"],
        format!(
            "the bootstrapper agent made no changes to the reference architecture (tool calls: {}, \
             assistant output: {} chars). Agent output: Looked around",
            stats["toolCalls"], stats["assistantChars"]
        )
    );
    assert!(result.get("defaultBranch").is_none(), "{r}");
    assert_eq!(target.tip("main"), before);
    assert!(target.refs("refs/harness/").is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_bootstrap_delivered_again_re_publishes_its_result_from_the_target() {
    let target = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo run >> {s}/runs\necho app > app.txt\nfinish 'Scaffolded'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let job = bootstrap_job("job-boot-once", &BareRepo::new().url(), &target.url(), true);
    w.enqueue(&job).await;
    let first = w.next_result(WAIT).await;
    assert_eq!(first["state"], "done", "{first}");
    let tip = target.tip("main");

    w.enqueue(&job).await;
    let again = w.next_result(WAIT).await;
    assert_eq!(again, first, "the recorded result, byte for byte");
    assert_eq!(runs(s), 1, "the agent ran once");
    assert_eq!(target.tip("main"), tip, "no second force push");
    w.stop().await;
}
