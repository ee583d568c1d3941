//! Resumes that are right: a redelivery resumes the branch the earlier attempt pushed (also
//! when `pushBranch` names another than the local work branch), and a resumed branch whose
//! work its base already holds ends as a no-op, as does a PR the code host says has nothing in
//! it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::repo::{git, BareRepo};
use crate::support::worker::{coding_job, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_with_a_push_branch_other_than_its_work_branch_resumes_the_pushed_one() {
    let origin = BareRepo::new();
    // What an earlier attempt checkpointed: the local work branch is never on the remote.
    origin.commit_files(
        "work/pushed",
        &[("earlier.txt", "attempt 1\n")],
        "Earlier work",
    );
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "test -f earlier.txt\necho more > more.txt\ncommit_all 'More work'\nfinish 'resumed'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = coding_job("job-pushbranch", &origin.url(), Some("work/local"));
    job["pushBranch"] = json!("work/pushed");
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["resumed"], true, "{r}");
    assert_eq!(r["result"]["pushed"], true);
    assert_eq!(r["result"]["branch"], "work/pushed");
    assert_eq!(
        origin.subjects("work/pushed")[..2],
        ["More work", "Earlier work"]
    );
    assert_eq!(origin.tip("work/local"), None);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_branch_whose_work_was_merged_into_its_base_is_a_no_op() {
    let origin = BareRepo::new();
    origin.commit_files("work/merged", &[("feature.txt", "done\n")], "The feature");
    // The base took the same change (a squash merge): the branch adds nothing any more.
    origin.commit_files(
        "main",
        &[("feature.txt", "done\n")],
        "Squash-merged feature",
    );
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "finish 'nothing left to do'");
    let w = TestWorker::start(&agent, |_| {}).await;
    let before = origin.tip("work/merged");
    w.enqueue(&coding_job(
        "job-merged",
        &origin.url(),
        Some("work/merged"),
    ))
    .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(r["result"]["pushed"], false, "{r}");
    assert_eq!(r["failureCause"], "no-changes", "{r}");
    assert_eq!(origin.tip("work/merged"), before, "nothing was pushed");
    w.stop().await;
}

/// A code host that answers every request with GitHub's 422 for a PR with no commits.
fn no_commits_host() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            let mut buf = [0u8; 65536];
            let _ = sock.read(&mut buf);
            let body = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"No commits between main and work/empty"}]}"#;
            let _ = write!(
                sock,
                "HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_the_code_host_finds_empty_is_a_no_op_not_an_api_failure() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish 'done'",
    );
    let (api, host) = no_commits_host();
    let w = TestWorker::start(&agent, |c| c.job.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let mut job = coding_job("job-empty-pr", &origin.url(), Some("work/empty"));
    job["pr"] = json!({"title": "PR title"});
    job["githubApiBase"] = json!(api);
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["pushed"], false, "{r}");
    assert_eq!(r["failureCause"], "no-changes", "{r}");
    assert!(r["result"].get("prUrl").is_none());
    let _ = host.join();
    assert!(git(origin.path(), &["show-ref"]).contains("refs/heads/work/empty"));
    w.stop().await;
}
