//! Failures that name the fix (seed-later 4): the stable first line, then what to do, for a
//! refused git credential, a repository that is not there, a PR the code host rejects, and an
//! agent killed by a signal. (The model endpoint's refusals are in `real_pi`.)

use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::code_host::CodeHost;
use crate::support::git_http::GitHttpServer;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, TestWorker};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "ghs_TESTgittoken000000000000000000001";

async fn worker_with(body: &str) -> (TestWorker, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", body);
    let w = TestWorker::start(&agent, |c| c.job.allowed_hosts = vec!["127.0.0.1".into()]).await;
    (w, scratch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_remote_that_refuses_the_token_fails_as_git_with_the_credential_fix() {
    let root = tempfile::tempdir().unwrap();
    let _repo = BareRepo::new_in(root.path(), "r");
    // The server wants another token than the job's.
    let server = GitHttpServer::start(root.path(), "ghs_someOtherToken0000000000000000009");
    let (w, _scratch) = worker_with("finish 'never runs'").await;
    w.enqueue(&coding_job(
        "refused",
        &server.url("r"),
        Some("work/refused"),
    ))
    .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git", "{r}");
    let error = r["error"].as_str().unwrap();
    let (first, fix) = error.split_once('\n').expect("a fix line");
    assert!(first.starts_with("git "), "{error}");
    assert!(
        fix.starts_with("Git authentication was rejected"),
        "{error}"
    );
    assert!(!r.to_string().contains(TOKEN));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_is_not_there_fails_as_git_with_the_not_found_fix() {
    let root = tempfile::tempdir().unwrap();
    let server = GitHttpServer::start(root.path(), TOKEN);
    let (w, _scratch) = worker_with("finish 'never runs'").await;
    w.enqueue(&coding_job("gone", &server.url("gone"), Some("work/gone")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("404"), "git's own message stays: {error}");
    assert!(
        error.contains("\nThe repository could not be found or is not visible to the credential"),
        "{error}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_the_code_host_rejects_as_invalid_keeps_the_stable_line_and_adds_the_fix() {
    let origin = BareRepo::new();
    let (w, _scratch) = worker_with("echo x > x.txt\ncommit_all 'Work'\nfinish 'done'").await;
    let host = CodeHost::start(|_| {
        (
            422,
            r#"{"message":"Validation Failed","errors":[{"field":"base","code":"invalid"}]}"#
                .into(),
        )
    });
    let mut job = coding_job("invalid-pr", &origin.url(), Some("work/invalid-pr"));
    job["pr"] = json!({"title": "T"});
    job["githubApiBase"] = json!(host.url());
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "api", "{r}");
    let error = r["error"].as_str().unwrap();
    let (first, fix) = error.split_once('\n').expect("a fix line");
    assert!(
        first.starts_with("Failed to open PR (HTTP 422): {\"message\":\"Validation Failed\""),
        "{error}"
    );
    assert!(
        fix.starts_with("GitHub/GitLab rejected the pull request as invalid."),
        "{error}"
    );
    assert_eq!(
        origin.file_at("work/invalid-pr", "x.txt").as_deref(),
        Some("x\n"),
        "the work is pushed before the PR call"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_by_a_signal_says_which_signal() {
    let origin = BareRepo::new();
    let (w, _scratch) = worker_with("echo 'about to go' >&2\nkill -KILL $$").await;
    w.enqueue(&coding_job("killed", &origin.url(), Some("work/killed")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "agent", "{r}");
    assert_eq!(r["error"], "pi killed by SIGKILL: about to go", "{r}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_a_failed_run_spent_are_counted_too() {
    let origin = BareRepo::new();
    let (w, _scratch) = worker_with(
        r#"printf '{"type":"agent_end","messages":[{"role":"assistant","content":[],"stopReason":"error","errorMessage":"500: upstream broke","usage":{"input":40,"output":7,"cacheRead":0,"cacheWrite":0}}],"stopReason":"error"}\n'"#,
    )
    .await;
    w.enqueue(&coding_job("spent", &origin.url(), Some("work/spent")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "agent", "{r}");
    let tokens = |kind: &str| w.metrics.agent_tokens.with_label_values(&[kind]).get();
    assert_eq!((tokens("input"), tokens("output")), (40, 7));
    w.stop().await;
}
