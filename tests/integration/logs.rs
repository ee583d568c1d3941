//! What the worker logs, read from the real binary's JSON lines: every line a job causes, its
//! helper tasks' lines included, carries the job's id and attempt at the top level.

use std::time::Duration;

use crate::support::agents::write_agent;
use crate::support::broker::TestBroker;
use crate::support::git_http::GitHttpServer;
use crate::support::process::WorkerProcess;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, next_json, test_config};

const WAIT: Duration = Duration::from_secs(30);
/// The git token of [`coding_job`].
const GIT_TOKEN: &str = "ghs_TESTgittoken000000000000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_push_warning_carries_the_jobs_id_and_attempt() {
    let root = tempfile::tempdir().unwrap();
    let origin = BareRepo::new_in(root.path(), "repo");
    // Every push is refused, so every checkpoint tick logs a warning.
    origin.reject_pushes_with_hook("frozen for the test");
    let server = GitHttpServer::start(root.path(), GIT_TOKEN);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo x > x.txt\ncommit_all 'Work'\nwait_for {s}/go\nfinish 'done'",
            s = s.display()
        ),
    );
    let broker = TestBroker::new(|_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let mut config = test_config(&broker, &agent, work.path());
    config.job.allowed_hosts = vec!["127.0.0.1".into()];
    config.job.checkpoint_interval_ms = 50;
    let mut worker = WorkerProcess::spawn(&config, s, "w1");
    worker.wait_ready(WAIT).await;
    executor_harness::broker::enqueue_job(
        &broker.conn,
        &broker.topo.jobs_queue,
        coding_job("job-logged", &server.url("repo"), Some("work/logged"))
            .to_string()
            .as_bytes(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    let warned = |log: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "coding-agent: checkpoint push failed")
    };
    eventually("a checkpoint warning", WAIT, || {
        warned(&worker.log()).is_some()
    })
    .await;
    std::fs::write(s.join("go"), b"").unwrap();
    let result = next_json(&broker.conn, &broker.topo.results_queue, WAIT)
        .await
        .expect("a result");
    assert_eq!(result["failureCause"], "git", "{result}");
    worker.stop(WAIT).await;

    let line = warned(&worker.log()).unwrap();
    assert_eq!(line["jobId"], "job-logged", "{line}");
    assert_eq!(line["attempt"], 1, "{line}");
    assert_eq!(line["repo"], "acme/widgets", "{line}");
    assert_eq!(line["level"], "WARN");
    // The job's own lines carry the same fields, and no line has a nested span object.
    let log = worker.log();
    let finished = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "job finished")
        .expect("the job's end is logged");
    assert_eq!(finished["jobId"], "job-logged");
    assert_eq!(finished["state"], "failed");
    assert_eq!(finished["failure_cause"], "git");
    assert!(!log.contains("\"span\":"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_says_its_version_and_capabilities_on_healthz_and_in_every_result() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish 'done'",
    );
    let broker = TestBroker::new(|_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let config = test_config(&broker, &agent, work.path());
    let mut worker = WorkerProcess::spawn(&config, scratch.path(), "w1");
    worker.wait_ready(WAIT).await;
    let (status, body) = worker.get("/healthz").await.expect("/healthz answers");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let capabilities = health["capabilities"].as_array().unwrap();
    for honoured in [
        "validationChecks",
        "dependencyInstall",
        "job.cancel",
        "mcpServers",
        "skills",
    ] {
        assert!(capabilities.iter().any(|c| c == honoured), "{health}");
    }
    // Only what it honours: preview jobs and explore's `infra` are refused.
    assert!(
        !capabilities.iter().any(|c| c == "preview" || c == "infra"),
        "only what it honours"
    );
    executor_harness::broker::enqueue_job(
        &broker.conn,
        &broker.topo.jobs_queue,
        coding_job("job-versioned", &origin.url(), Some("work/versioned"))
            .to_string()
            .as_bytes(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let result = next_json(&broker.conn, &broker.topo.results_queue, WAIT)
        .await
        .expect("a result");
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["worker"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(result["worker"]["capabilities"], health["capabilities"]);
    worker.stop(WAIT).await;
}
