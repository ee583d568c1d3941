//! Follow-ups from a hostile agent or repository: a FIFO or a symlink at the sentinel's path,
//! and a flood written just before the agent exits.

use std::time::Duration;

use executor_harness::followups::MAX_DETAIL_CHARS;
use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, drain_json, within_wall_clock, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

/// A coding job that streams follow-ups and is `done` without changes.
fn follow_up_job(job_id: &str, origin: &BareRepo) -> serde_json::Value {
    let mut job = coding_job(job_id, &origin.url(), Some(&format!("work/{job_id}")));
    job["streamFollowUps"] = json!(true);
    job["noChangesIsError"] = json!(false);
    job
}

#[test]
fn two_agents_that_make_the_follow_up_file_a_fifo_neither_freeze_the_worker_nor_its_drain() {
    // Opening a FIFO blocks until a writer comes; two at once would take both runtime threads.
    within_wall_clock(Duration::from_secs(90), || async {
        let origin = BareRepo::new();
        let scratch = tempfile::tempdir().unwrap();
        let agent = write_agent(
            scratch.path(),
            "agent",
            "mkfifo .cat-follow-ups.jsonl\nfinish 'made a fifo'",
        );
        let w = TestWorker::start(&agent, |c| c.worker.concurrency = 2).await;
        w.enqueue(&follow_up_job("job-fifo-1", &origin)).await;
        w.enqueue(&follow_up_job("job-fifo-2", &origin)).await;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let r = w.next_result(WAIT).await;
            assert_eq!(r["state"], "done", "{r}");
            ids.push(r["jobId"].as_str().unwrap().to_owned());
        }
        ids.sort();
        assert_eq!(ids, ["job-fifo-1", "job-fifo-2"]);
        assert!(drain_json(w.conn(), &w.broker.topo.followups_queue)
            .await
            .is_empty());
        w.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_symlink_to_a_host_file_publishes_none_of_its_lines() {
    let scratch = tempfile::tempdir().unwrap();
    let host = scratch.path().join("host.jsonl");
    std::fs::write(
        &host,
        "{\"title\":\"host secret one\"}\n{\"title\":\"host secret two\"}\n",
    )
    .unwrap();
    let origin = BareRepo::new();
    origin.commit_symlink("main", ".cat-follow-ups.jsonl", &host, "Point at the host");
    let agent = write_agent(scratch.path(), "agent", "finish 'ok'");
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&follow_up_job("job-link", &origin)).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    // Follow-ups go out before the result: whatever was read is in the queue by now.
    let published = drain_json(w.conn(), &w.broker.topo.followups_queue).await;
    assert!(published.is_empty(), "{published:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_megabyte_lines_written_just_before_exit_are_all_published_in_order_with_capped_details(
) {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    // 300 lines of about 1 MB each (each under the 1 MiB line limit), then the agent exits.
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"awk 'BEGIN {
  d = "d"; while (length(d) < 1000000) d = d d; d = substr(d, 1, 1000000)
  for (i = 1; i <= 300; i++) printf "{\"title\":\"item %d\",\"detail\":\"%s\"}\n", i, d
}' >> .cat-follow-ups.jsonl
finish 'wrote 300'"#,
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&follow_up_job("job-flood", &origin)).await;
    let r = w.next_result(Duration::from_secs(120)).await;
    assert_eq!(r["state"], "done", "{r}");
    let published = drain_json(w.conn(), &w.broker.topo.followups_queue).await;
    let titles: Vec<&str> = published
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 300, "follow-ups published");
    let expected: Vec<String> = (1..=300).map(|i| format!("item {i}")).collect();
    assert_eq!(titles, expected);
    for (i, f) in published.iter().enumerate() {
        assert_eq!(f["seq"], json!(i + 1));
        let detail = f["detail"].as_str().unwrap();
        assert_eq!(detail.chars().count(), MAX_DETAIL_CHARS, "item {}", i + 1);
    }
    w.stop().await;
}
