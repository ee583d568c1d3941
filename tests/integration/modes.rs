//! Job kinds and job options beyond plain coding, end to end: what this worker refuses at the
//! door, and what it hands the agent (context files).

use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::broker::message_count;
use crate::support::repo::{git, BareRepo};
use crate::support::worker::{coding_job, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_job_is_dead_lettered_with_an_invalid_job_result_saying_it_is_not_supported() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let ran = scratch.path().join("ran");
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!("touch {}\nfinish 'ran'", ran.display()),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = coding_job("job-preview", &origin.url(), None);
    job["mode"] = json!("preview");
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "invalid-job");
    assert_eq!(
        r["error"],
        executor_harness::job::PREVIEW_UNSUPPORTED,
        "{r}"
    );
    let dead = &w.broker.topo.dead_queue;
    let deadline = std::time::Instant::now() + WAIT;
    while message_count(w.conn(), dead).await != 1 {
        assert!(std::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!ran.exists(), "no agent runs for a refused job");
    assert!(
        git(origin.path(), &["for-each-ref", "--format=%(refname)"])
            .lines()
            .all(|r| r == "refs/heads/main"),
        "nothing was written to the remote"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_files_are_readable_by_the_agent_and_absent_from_the_pushed_tree() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    // The agent copies a context file into its work and commits everything it sees.
    let agent = write_agent(
        scratch.path(),
        "agent",
        "cat .cat-context/requirements.md > notes.txt\ncommit_all 'Notes from the context'\nfinish 'done'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = coding_job("job-context", &origin.url(), Some("work/context"));
    job["contextFiles"] = json!([
        {"path": "docs/requirements.md", "title": "Requirements", "content": "Must greet.\n"}
    ]);
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["pushed"], true, "{r}");
    assert_eq!(
        origin.file_at("work/context", "notes.txt").as_deref(),
        Some("Must greet.\n")
    );
    let tree = git(
        origin.path(),
        &["ls-tree", "-r", "--name-only", "work/context"],
    );
    assert!(!tree.contains(".cat-context"), "{tree}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_keeps_its_counts_and_words_while_the_jobs_token_is_masked() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish \"Tokens: 42, max_tokens: 32768, monkey: banana; token ghs_TESTgittoken000000000000000000001\"",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&coding_job("job-prose", &origin.url(), Some("work/prose")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(
        r["result"]["summary"], "Tokens: 42, max_tokens: 32768, monkey: banana; token ***",
        "{r}"
    );
    w.stop().await;
}
