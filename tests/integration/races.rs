//! One jobId, one outcome: the same job enqueued twice and taken by two workers at once runs
//! twice, and whichever run loses (its final push or its completion record rejected) publishes
//! the winner's recorded result instead of an outcome of its own.

use std::path::Path;
use std::time::Duration;

use crate::support::agents::write_agent;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, TestWorker};
use crate::worker::queue_counts;

const WAIT: Duration = Duration::from_secs(30);

/// The agent runs started so far: each run appends a random id of its own to `runs` (not its
/// pid, which the sandbox's PID namespace repeats) and waits for `go-<id>`.
fn runs(s: &Path) -> Vec<String> {
    std::fs::read_to_string(s.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Two workers of one job each, the first run let go first; returns both results, in order.
async fn race(agent_body: &str) -> (serde_json::Value, serde_json::Value, BareRepo) {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            // N: this run's line in `runs` (both may append before either counts).
            "ID=$(cat /proc/sys/kernel/random/uuid)\necho $ID >> {s}/runs\nN=$(grep -nx $ID {s}/runs | cut -d: -f1)\nwait_for {s}/go-$ID\n{agent_body}",
            s = s.display()
        ),
    );
    // One job each: both deliveries of the job cannot go to the same worker.
    let w1 = TestWorker::start(&agent, |c| c.worker.concurrency = 1).await;
    let w2 = w1.start_another().await;
    let job = coding_job("job-twice", &origin.url(), Some("work/twice"));
    w1.enqueue(&job).await;
    w1.enqueue(&job).await;
    eventually("both runs", WAIT, || runs(s).len() == 2).await;
    let ids = runs(s);

    std::fs::write(s.join(format!("go-{}", ids[0])), b"").unwrap();
    let first = w1.next_result(WAIT).await;
    std::fs::write(s.join(format!("go-{}", ids[1])), b"").unwrap();
    let second = w1.next_result(WAIT).await;
    // Both deliveries were acked: nothing ready, nothing held.
    let jobs = w1.broker.topo.jobs_queue.clone();
    eventually("both acks", WAIT, || queue_counts(&jobs) == (0, 0)).await;
    w2.stop().await;
    w1.stop().await;
    (first, second, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_whose_final_push_loses_publishes_the_winners_result() {
    let (first, second, origin) =
        race("echo $$ > mine.txt\ncommit_all \"Work of run $N\"\nfinish \"run $N\"").await;
    assert_eq!(first["state"], "done", "{first}");
    assert_eq!(first["result"]["summary"], "run 1");
    assert_eq!(second, first, "one jobId, one outcome");
    assert_eq!(origin.subjects("work/twice")[0], "Work of run 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_whose_completion_record_loses_publishes_the_winners_result() {
    // The second run changes nothing: its own outcome would be a no-changes result, and only
    // the completion ref it fails to write tells it the job already ended otherwise.
    let (first, second, _origin) =
        race("if [ \"$N\" -eq 1 ]; then echo x > x.txt; commit_all 'Work'; fi\nfinish \"run $N\"")
            .await;
    assert_eq!(first["result"]["pushed"], true, "{first}");
    assert_eq!(second, first, "one jobId, one outcome");
}
