//! Cancelling a job by message (contract 9): `executor-harness cancel JOB_ID` publishes
//! `job.cancel` on the control exchange; the worker running the job stops it, pushes its
//! committed work, publishes one `failed` result with cause `cancelled` and acks it; a cancel
//! that comes before the delivery keeps the job from running at all.

use std::time::{Duration, Instant};

use crate::support::agents::write_agent;
use crate::support::process::processes_with;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, next_json, TestWorker};
use crate::worker::queue_counts;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_running_job_ends_at_once_with_its_work_pushed_and_nothing_left_running() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let started = scratch.path().join("started");
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!(
            "echo kept > kept.txt\ncommit_all 'Committed before the cancel'\ntool bash\ntouch {}\nwait_for {}\nfinish 'never'",
            started.display(),
            scratch.path().join("never").display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let config = scratch.path().join("cancel.toml");
    std::fs::write(&config, toml::to_string(&*w.config).unwrap()).unwrap();
    w.enqueue(&coding_job(
        "job-to-cancel",
        &origin.url(),
        Some("work/cancel"),
    ))
    .await;
    eventually("the agent to start", WAIT, || started.exists()).await;

    let sent = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_executor-harness"))
        .args(["cancel", "job-to-cancel", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = w.next_result(WAIT).await;
    eprintln!("FIGURE cancel_to_result_ms={}", sent.elapsed().as_millis());
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "cancelled", "{r}");
    assert_eq!(
        r["error"],
        "Cancelled: a job.cancel message asked to stop this job"
    );
    assert!(r["detail"].as_str().unwrap().starts_with("Phase timings: "));
    // What the agent committed before the cancel is on the branch, for a retry to resume.
    assert_eq!(
        origin.file_at("work/cancel", "kept.txt").as_deref(),
        Some("kept\n")
    );
    let jobs = &w.broker.topo.jobs_queue;
    eventually("the ack", WAIT, || queue_counts(jobs) == (0, 0)).await;
    let agent_path = agent.display().to_string();
    eventually("no agent process left", WAIT, || {
        processes_with(&agent_path).is_empty()
    })
    .await;
    assert!(
        next_json(
            w.conn(),
            &w.broker.topo.results_queue,
            Duration::from_millis(500)
        )
        .await
        .is_none(),
        "one result"
    );
    assert_eq!(
        w.metrics
            .cancels_received
            .with_label_values(&["running"])
            .get(),
        1
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_before_its_delivery_is_finished_without_running() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let ran = scratch.path().join("ran");
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!("touch {}\nfinish 'ran'", ran.display()),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    executor_harness::broker::publish_cancel(
        w.conn(),
        &w.broker.topo.control_exchange,
        "job-cancelled-early",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let remembered = || {
        w.metrics
            .cancels_received
            .with_label_values(&["remembered"])
            .get()
    };
    eventually("the worker to hear the cancel", WAIT, || remembered() == 1).await;
    w.enqueue(&coding_job(
        "job-cancelled-early",
        &origin.url(),
        Some("work/early"),
    ))
    .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "cancelled", "{r}");
    assert!(!ran.exists(), "the agent never ran");
    assert_eq!(
        origin.tip("work/early"),
        None,
        "nothing was cloned or pushed"
    );
    let jobs = &w.broker.topo.jobs_queue;
    eventually("the ack", WAIT, || queue_counts(jobs) == (0, 0)).await;
    // Another job runs as usual.
    w.enqueue(&coding_job(
        "job-not-cancelled",
        &origin.url(),
        Some("work/other"),
    ))
    .await;
    let other = w.next_result(WAIT).await;
    assert_eq!(other["jobId"], "job-not-cancelled");
    assert!(ran.exists());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_command_says_so_when_no_worker_listens() {
    let broker = crate::support::broker::TestBroker::declared(|_| {}).await;
    let scratch = tempfile::tempdir().unwrap();
    let mut config = executor_harness::config::Config::default();
    config.amqp.url = crate::support::broker::amqp_url();
    config.amqp.topology = broker.topo.clone();
    let path = scratch.path().join("cancel.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_executor-harness"))
        .args(["cancel", "job-nobody-runs", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no worker is listening"), "{stderr}");
}
