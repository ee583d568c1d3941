//! What operators see: metrics that count a replay as a replay, a worker that says in one line
//! (or on /readyz) why it cannot work, a workspace fault that requeues, `--max-jobs`,
//! `enqueue --timeout`, `--help`'s environment table, and log lines fit for a file.

use std::process::Command;
use std::time::Duration;

use crate::support::agents::write_agent;
use crate::support::broker::{get_message, TestBroker};
use crate::support::process::WorkerProcess;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, next_json, test_config, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_executor-harness"))
}

/// The sum of every sample of `name` in a Prometheus exposition.
fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .map(|(_, v)| v.parse::<f64>().unwrap_or(0.0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_result_counts_as_a_replay_not_as_a_finished_job_or_in_the_timings() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish 'done once'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let job = coding_job("job-replayed", &origin.url(), Some("work/replayed"));
    w.enqueue(&job).await;
    assert_eq!(w.next_result(WAIT).await["state"], "done");
    let m = w.metrics.clone();
    let finished = || sum_of(&m.render(), "harness_jobs_finished_total");
    eventually("the first run counted", WAIT, || finished() == 1.0).await;
    let before = m.render();

    // Delivered again: its completion ref holds the result, which goes out again.
    w.enqueue(&job).await;
    assert_eq!(w.next_result(WAIT).await["state"], "done");
    let replayed = || m.jobs_replayed.with_label_values(&["coding"]).get();
    eventually("the replay counted", WAIT, || replayed() == 1).await;
    let after = m.render();
    for unchanged in [
        "harness_jobs_finished_total",
        "harness_job_duration_seconds_count",
        "harness_phase_duration_seconds_count",
        "harness_phase_duration_seconds_sum",
    ] {
        assert_eq!(
            sum_of(&before, unchanged),
            sum_of(&after, unchanged),
            "{unchanged} moved on a replay"
        );
    }
    assert_eq!(sum_of(&after, "harness_jobs_received_total"), 2.0);
    w.stop().await;
}

/// A worker process on its own broker objects that is expected to exit at once.
async fn start_refused(tweak: impl FnOnce(&mut executor_harness::config::Config)) -> String {
    let broker = TestBroker::new(|_| {}).await;
    let scratch = tempfile::tempdir().unwrap();
    let mut config = test_config(&broker, std::path::Path::new("sh"), scratch.path());
    tweak(&mut config);
    let mut w = WorkerProcess::spawn(&config, scratch.path(), "refused");
    let status = w.wait_exit(WAIT).await.expect("the worker exits");
    assert!(!status.success(), "{}", w.log());
    w.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_dir_that_cannot_be_written_stops_the_worker_with_one_line_naming_it() {
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let work_dir = blocker.path().join("work");
    let wd = work_dir.display().to_string();
    let log = start_refused(|c| c.worker.work_dir = wd.clone()).await;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("worker.work_dir"), "{log}");
    assert!(lines[0].contains(&work_dir.display().to_string()), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_agent_command_stops_the_worker_with_one_line_naming_it() {
    let log = start_refused(|c| c.agent.pi_command = vec!["no-such-pi-xyz".into()]).await;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(
        lines[0],
        "executor-harness: agent.pi_command = \"no-such-pi-xyz\" cannot be run: not found on PATH"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_not_ready_checks_the_worker_stays_up_and_readyz_says_why() {
    let broker = TestBroker::new(|_| {}).await;
    let scratch = tempfile::tempdir().unwrap();
    let mut config = test_config(
        &broker,
        std::path::Path::new("no-such-pi-xyz"),
        scratch.path(),
    );
    config.worker.startup_checks = "not-ready".into();
    let mut w = WorkerProcess::spawn(&config, scratch.path(), "not-ready");
    let mut answer = None;
    for _ in 0..1500 {
        answer = w.get("/readyz").await;
        // Until the first check ran, it is only "not ready".
        if answer.as_ref().is_some_and(|(_, b)| b.contains(':')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = answer.expect("/readyz answers");
    assert_eq!(status, 503);
    assert!(
        body.contains("not ready: agent.pi_command = \"no-such-pi-xyz\""),
        "{body}"
    );
    assert_eq!(w.get("/healthz").await.map(|(s, _)| s), Some(200));
    w.stop(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_that_cannot_be_created_requeues_the_job_as_a_worker_fault() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish 'done'",
    );
    let w = TestWorker::start(&agent, |c| c.amqp.topology.delivery_limit = 1000).await;
    // The jobs directory becomes a file: no workspace can be made under it.
    let jobs = w.dir.path().join("jobs");
    let _ = std::fs::remove_dir_all(&jobs);
    std::fs::write(&jobs, b"").unwrap();
    w.enqueue(&coding_job(
        "job-no-room",
        &origin.url(),
        Some("work/no-room"),
    ))
    .await;
    let m = w.metrics.clone();
    let requeued = || m.jobs_requeued.with_label_values(&["workspace"]).get();
    eventually("a workspace requeue", WAIT, || requeued() >= 1).await;
    std::fs::remove_file(&jobs).unwrap();
    let r = w.next_result(WAIT).await;
    assert_eq!(
        r["state"], "done",
        "the fault was the worker's, not the job's: {r}"
    );
    assert!(r["attempt"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(
        m.jobs_finished
            .with_label_values(&["coding", "failed", "agent"])
            .get(),
        0
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_jobs_takes_that_many_finishes_them_and_exits_0_leaving_the_rest_queued() {
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
    // The jobs wait in the queue before the worker starts, as for a scaled-up pod.
    executor_harness::broker::declare_topology(
        &broker.conn,
        &executor_harness::worker::topology(&config),
    )
    .await
    .unwrap();
    for n in 1..=3 {
        let job = coding_job(
            &format!("job-max-{n}"),
            &origin.url(),
            Some(&format!("work/max-{n}")),
        );
        executor_harness::broker::enqueue_job(
            &broker.conn,
            &broker.topo.jobs_queue,
            job.to_string().as_bytes(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
    let mut w = WorkerProcess::spawn_with(
        &config,
        scratch.path(),
        "max-jobs",
        &[],
        &["-c", "4", "--max-jobs", "2"],
    );
    let status = w
        .wait_exit(WAIT * 2)
        .await
        .expect("the worker exits by itself");
    assert!(status.success(), "{}", w.log_tail(30));
    let first = next_json(&broker.conn, &broker.topo.results_queue, WAIT).await;
    let second = next_json(&broker.conn, &broker.topo.results_queue, WAIT).await;
    assert_eq!(first.unwrap()["state"], "done");
    assert_eq!(second.unwrap()["state"], "done");
    let log = w.log();
    assert_eq!(log.matches("\"job started\"").count(), 2, "{log}");
    let left = get_message(&broker.conn, &broker.topo.jobs_queue)
        .await
        .expect("one job left in the queue");
    let left: serde_json::Value = serde_json::from_slice(&left.delivery.data).unwrap();
    assert_eq!(
        left["jobId"], "job-max-3",
        "taken in order, the last one untouched"
    );
    assert!(
        get_message(&broker.conn, &broker.topo.jobs_queue)
            .await
            .is_none(),
        "only one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_with_a_timeout_warns_of_no_worker_and_exits_124() {
    let broker = TestBroker::new(|_| {}).await;
    let scratch = tempfile::tempdir().unwrap();
    let origin = BareRepo::new();
    let config = test_config(&broker, std::path::Path::new("sh"), scratch.path());
    let config_path = scratch.path().join("config.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let job_path = scratch.path().join("job.json");
    let job = coding_job("job-unattended", &origin.url(), Some("work/unattended"));
    std::fs::write(&job_path, job.to_string()).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["enqueue", "--wait", "--timeout", "1", "--json", "--config"])
            .arg(&config_path)
            .arg(&job_path)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("no worker consumes"), "{stderr}");
    assert!(stderr.contains("no result for job-unattended"), "{stderr}");
    assert!(out.stdout.is_empty(), "quiet: no event came");
}

#[test]
fn plain_enqueue_prints_only_the_job_id() {
    let scratch = tempfile::tempdir().unwrap();
    let origin = BareRepo::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let broker = runtime.block_on(TestBroker::new(|_| {}));
    let config = test_config(&broker, std::path::Path::new("sh"), scratch.path());
    let config_path = scratch.path().join("config.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let job_path = scratch.path().join("job.json");
    let job = coding_job("job-quiet", &origin.url(), Some("work/quiet"));
    std::fs::write(&job_path, job.to_string()).unwrap();
    let out = bin()
        .args(["enqueue", "--config"])
        .arg(&config_path)
        .arg(&job_path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "job-quiet\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no warning meant for a worker"
    );
    drop(broker);
    drop(runtime);
}

#[test]
fn help_lists_every_environment_variable_the_config_reads() {
    for command in [
        &["--help"][..],
        &["worker", "--help"],
        &["enqueue", "--help"],
    ] {
        let out = bin().args(command).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for (var, _) in executor_harness::config::ENV_VARS {
            assert!(
                text.contains(var),
                "{command:?} --help lacks {var}:\n{text}"
            );
        }
    }
    let out = bin().args(["worker", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--max-jobs") && text.contains("--concurrency"),
        "{text}"
    );
}

#[test]
fn log_lines_in_a_file_have_no_colour_and_an_error_chain_holds_each_cause_once() {
    let scratch = tempfile::tempdir().unwrap();
    let job_path = scratch.path().join("job.json");
    let job = coding_job("job-nowhere", "https://github.com/acme/widgets.git", None);
    std::fs::write(&job_path, job.to_string()).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let stderr_path = scratch.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    // Text logs asked for, and every line let through: a file still gets no escape codes.
    let status = bin()
        .args(["enqueue"])
        .arg(&job_path)
        .env(
            "AMQP_URL",
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        )
        .env("HARNESS_LOG_FORMAT", "pretty")
        .env("RUST_LOG", "debug")
        .env_remove("HARNESS_CONFIG")
        .env_remove("NO_COLOR")
        .stderr(stderr)
        .status()
        .unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "an escape code in a file:\n{text}"
    );
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("executor-harness: cannot connect"),
        "{text}"
    );
    assert_eq!(last.matches("Connection refused").count(), 1, "{last}");
}
