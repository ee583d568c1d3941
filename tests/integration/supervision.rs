//! Watchdogs through the worker: a hung agent, an endless one, and slow git steps.

use std::time::Duration;

use crate::support::agents::write_agent;
use crate::support::git_http::GitHttpServer;
use crate::support::process::processes_with;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, TestWorker};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "ghs_TESTgittoken000000000000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_hung_agent_fails_with_inactivity_naming_its_phase_and_leaves_nothing_running() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo x > x.txt\ncommit_all 'Before the hang'\ntool bash\nsh -c 'sleep 1000; true' {s}/grandchild &\nwait",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.job.inactivity_ms = 1_000).await;
    w.enqueue(&coding_job("job-hung", &origin.url(), Some("work/hung")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "inactivity-timeout");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "Aborted: no agent activity for 1s (likely hung in agent phase; last completed tool bash "
        ) && error.ends_with("s ago)"),
        "{error}"
    );
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.starts_with("Phase timings: starting="), "{detail}");
    assert!(
        detail.contains("agent=") && detail.ends_with("s ago."),
        "{detail}"
    );
    // Nothing the agent started is left (its script, the sandbox, the grandchild).
    let scratch_path = s.display().to_string();
    eventually("the grandchild to be gone", Duration::from_secs(5), || {
        processes_with(&scratch_path).is_empty()
    })
    .await;
    // What the agent had committed was pushed before the job failed.
    assert_eq!(origin.subjects("work/hung")[0], "Before the hang");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_endless_agent_fails_with_max_duration_and_leaves_nothing_running() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "sh -c 'sleep 1000; true' {s}/grandchild &\nwhile true; do tool read; sleep 0.05; done",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| {
        c.job.max_duration_ms = 1_500;
        c.job.inactivity_ms = 60_000;
    })
    .await;
    w.enqueue(&coding_job("job-busy", &origin.url(), Some("work/busy")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["failureCause"], "max-duration", "{r}");
    assert_eq!(r["error"], "Aborted: exceeded max duration of 2s");
    assert!(r["detail"].as_str().unwrap().starts_with("Phase timings: "));
    // Nothing the agent started is left (its script, the sandbox, the grandchild).
    let scratch_path = s.display().to_string();
    eventually("the grandchild to be gone", Duration::from_secs(5), || {
        processes_with(&scratch_path).is_empty()
    })
    .await;
    assert_eq!(origin.tip("work/busy"), None);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_git_step_fails_as_git_not_as_agent_inactivity() {
    let root = tempfile::tempdir().unwrap();
    let _origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), TOKEN);
    server.before_upload_pack(|| std::thread::sleep(Duration::from_secs(3)));
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "finish 'never runs'");
    let w = TestWorker::start(&agent, |c| {
        c.job.allowed_hosts = vec!["127.0.0.1".into()];
        c.job.inactivity_ms = 1_000;
        c.job.git_timeout_ms = 500;
    })
    .await;
    w.enqueue(&coding_job(
        "job-slowgit",
        &server.url("repo"),
        Some("w/slow"),
    ))
    .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("clone") && error.contains("timed out after 500ms"),
        "{error}"
    );
    assert!(r["detail"]
        .as_str()
        .unwrap()
        .contains("Failed in clone phase"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_steps_longer_than_the_inactivity_window_do_not_kill_the_job() {
    let root = tempfile::tempdir().unwrap();
    let origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), TOKEN);
    // Clone slower than the whole inactivity window: the seed would call this a hung agent.
    server.before_upload_pack(|| std::thread::sleep(Duration::from_millis(1_500)));
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish 'done'",
    );
    let w = TestWorker::start(&agent, |c| {
        c.job.allowed_hosts = vec!["127.0.0.1".into()];
        c.job.inactivity_ms = 1_000;
    })
    .await;
    w.enqueue(&coding_job("job-slowok", &server.url("repo"), Some("w/ok")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["pushed"], true);
    assert!(origin.tip("w/ok").is_some());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_progress_and_tool_spans_reach_the_progress_queue_while_the_agent_runs() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let todo = r#"{"type":"tool_execution_end","toolName":"todo","isError":false,"result":{"details":{"tasks":[{"id":1,"subject":"Plan","status":"completed"},{"id":2,"subject":"Build","status":"in_progress"},{"id":3,"subject":"Test","status":"pending"}]}}}"#;
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo '{todo}'\ntool read\ntool bash\ntouch {s}/emitted\nwait_for {s}/go\nfinish 'done'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.job.inactivity_ms = 60_000).await;
    let mut job = coding_job("job-progress", &origin.url(), Some("work/p"));
    job["noChangesIsError"] = serde_json::json!(false);
    w.enqueue(&job).await;
    let q = w.broker.topo.progress_queue.clone();
    let (mut todo_seen, mut spans_seen) = (None, Vec::new());
    let deadline = std::time::Instant::now() + WAIT;
    while (todo_seen.is_none() || spans_seen.len() < 3) && std::time::Instant::now() < deadline {
        let Some(m) = crate::support::worker::next_json(w.conn(), &q, Duration::from_secs(5)).await
        else {
            continue;
        };
        if m["progress"].is_object() {
            todo_seen = Some(m["progress"].clone());
        }
        if let Some(spans) = m["spans"].as_array() {
            spans_seen.extend(spans.iter().map(|s| s["tool"].as_str().unwrap().to_owned()));
        }
    }
    // All of it arrived before the agent was let go.
    assert!(!s.join("go").exists());
    let todo_seen = todo_seen.expect("todo progress");
    assert_eq!(
        (
            &todo_seen["completed"],
            &todo_seen["inProgress"],
            &todo_seen["total"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(3)
        )
    );
    assert_eq!(todo_seen["items"][1]["label"], "Build");
    assert_eq!(spans_seen, ["todo", "read", "bash"]);
    std::fs::write(s.join("go"), b"").unwrap();
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_agent_that_never_completes_a_tool_fails_with_no_tool_progress() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    // Streams output for a long while (so the inactivity window never fires) and finishes
    // no tool call after its first.
    let agent = write_agent(
        scratch.path(),
        "agent",
        "tool read\ni=0\nwhile [ $i -lt 1200 ]; do echo '{\"type\":\"message_update\"}'; sleep 0.05; i=$((i+1)); done\nfinish 'talked'",
    );
    let w = TestWorker::start(&agent, |c| {
        c.job.inactivity_ms = 1_000;
        c.job.tool_silence_ms = 2_000;
    })
    .await;
    w.enqueue(&coding_job(
        "job-chatty",
        &origin.url(),
        Some("work/chatty"),
    ))
    .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "no-tool-progress", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "Aborted: the agent produced output but completed no tool call for 2s (last completed tool read "
        ),
        "{error}"
    );
    assert!(r["detail"].as_str().unwrap().starts_with("Phase timings: "));
    let agent_path = agent.display().to_string();
    eventually("no agent process left", WAIT, || {
        processes_with(&agent_path).is_empty()
    })
    .await;
    w.stop().await;
}
