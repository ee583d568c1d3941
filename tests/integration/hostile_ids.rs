//! Hostile job bodies through the broker: each gets its one `invalid-job` result at once and is
//! dead-lettered, and no agent runs for it.

use std::time::{Duration, Instant};

use lapin::types::AMQPValue;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::agents::write_agent;
use crate::support::broker::{get_message, next_message};
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, next_json, TestWorker};

/// Well within one delivery: a refusal that was requeued would take several.
const PROMPTLY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_250_byte_job_id_gets_one_invalid_job_result_on_its_first_delivery() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let ran = scratch.path().join("ran");
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!("touch {}\nfinish 'ok'", ran.display()),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let job_id = format!("job-{}", "x".repeat(246));
    assert_eq!(job_id.len(), 250);
    w.enqueue(&coding_job(&job_id, &origin.url(), Some("work/long-id")))
        .await;

    let topo = &w.broker.topo;
    let deadline = Instant::now() + PROMPTLY;
    let message = loop {
        if let Some(m) = get_message(w.conn(), &topo.results_queue).await {
            break m;
        }
        assert!(Instant::now() < deadline, "no result within {PROMPTLY:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let result: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
    // The body keeps the whole id; the AMQP ids carry its hash, which fits a short string.
    assert_eq!(result["jobId"], job_id.as_str());
    assert_eq!(result["state"], "failed");
    assert_eq!(result["failureCause"], "invalid-job");
    assert_eq!(
        result["error"],
        "Invalid job: 'jobId' must be at most 200 bytes"
    );
    assert_eq!(result["attempt"], 1, "refused on its first delivery");
    let hash: String = Sha256::digest(job_id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let props = &message.delivery.properties;
    let text = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| s.to_string());
    assert_eq!(text(props.correlation_id()), Some(format!("sha256:{hash}")));
    assert_eq!(
        text(props.message_id()),
        Some(format!("sha256:{hash}:result"))
    );
    assert_eq!(
        props.headers().as_ref().unwrap().inner().get("x-attempt"),
        Some(&AMQPValue::LongInt(1))
    );

    // Dead-lettered once, and nothing more: no second result, nothing requeued, no agent run.
    let dead = next_message(w.conn(), &topo.dead_queue, PROMPTLY).await;
    assert!(String::from_utf8_lossy(&dead.data).contains(&job_id));
    assert!(
        next_json(w.conn(), &topo.results_queue, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert!(get_message(w.conn(), &topo.jobs_queue).await.is_none());
    assert!(!ran.exists());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_name_git_would_refuse_is_refused_before_the_agent_runs() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let ran = scratch.path().join("ran");
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!(
            "touch {}\necho x > x.txt\ncommit_all 'Work'\nfinish 'ok'",
            ran.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    for (field, name) in [
        ("newBranch", "a//x"),
        ("pushBranch", ".."),
        ("newBranch", "@"),
    ] {
        let mut job = coding_job("job-bad-branch", &origin.url(), Some("work/ok"));
        job[field] = json!(name);
        w.enqueue(&job).await;
        let result = w.next_result(PROMPTLY).await;
        assert_eq!(result["failureCause"], "invalid-job", "{name}");
        assert_eq!(
            result["error"],
            format!("Invalid job: '{field}' must be a valid git branch name")
        );
    }
    assert!(
        !ran.exists(),
        "the agent ran for a job that could never be pushed"
    );
    assert!(origin.tip("work/ok").is_none());
    w.stop().await;
}
