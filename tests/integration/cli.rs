//! The command line as a newcomer meets it: `demo`, `run`, `--help`.

use std::process::Command;

use crate::support::agents::{agent_dir_config, write_agent};
use crate::support::repo::BareRepo;
use crate::support::worker::coding_job;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_executor-harness"))
}

#[test]
fn demo_runs_a_full_job_and_prints_the_outcome_and_the_pushed_log() {
    let out = bin().args(["demo", "--json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with("{\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let result = events.iter().find(|e| e["type"] == "result").unwrap();
    assert_eq!(result["state"], "done");
    assert_eq!(result["result"]["pushed"], true);
    assert!(events.iter().any(|e| e["type"] == "followup"));
    assert!(events
        .iter()
        .any(|e| e["progress"]["completed"] == 3 && e["progress"]["total"] == 3));
    // The agent's commit and the worker's safety-net commit, on the pushed branch.
    assert!(stdout.contains("Add hello.txt"), "{stdout}");
    assert!(stdout.contains("Polish the README"), "{stdout}");
}

#[test]
fn run_prints_json_lines_and_exits_by_outcome() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish 'done'",
    );
    let job_path = scratch.path().join("job.json");
    let job = coding_job("job-run", &origin.url(), Some("work/run"));
    std::fs::write(&job_path, job.to_string()).unwrap();
    let out = bin()
        .args(["run", "--json"])
        .arg(&job_path)
        .env("HARNESS_PI_COMMAND", &agent)
        .env("HARNESS_CONFIG", agent_dir_config(scratch.path()))
        .env("HARNESS_WORK_DIR", scratch.path().join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["result"]["branch"], "work/run");
    assert!(origin.tip("work/run").is_some());

    // An invalid job: exit 2 with the invalid-job result line.
    let mut bad = job.clone();
    bad["mode"] = serde_json::json!("deploy");
    std::fs::write(&job_path, bad.to_string()).unwrap();
    let out = bin()
        .args(["run", "--json"])
        .arg(&job_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["failureCause"], "invalid-job");
    assert_eq!(
        line["error"],
        "Invalid job: 'mode' must be 'explore', 'coding' or 'preview'"
    );
}

#[test]
fn every_command_explains_itself_in_help() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["worker", "run", "demo", "enqueue"] {
        assert!(text.contains(cmd), "{text}");
    }
    assert!(!text.contains("demo-agent"), "the internal agent is hidden");
    let out = bin().args(["enqueue", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--wait"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_follows_the_job_to_its_result_and_exits_by_outcome() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nprintf '%s\\n' '{\"title\":\"Later\"}' >> .cat-follow-ups.jsonl\nfinish 'done'",
    );
    let w = crate::support::worker::TestWorker::start(&agent, |_| {}).await;
    let config_path = scratch.path().join("config.toml");
    std::fs::write(&config_path, toml::to_string(&*w.config).unwrap()).unwrap();
    let mut job = coding_job("job-enqueue", &origin.url(), Some("work/enqueue"));
    job["streamFollowUps"] = serde_json::json!(true);
    let job_path = scratch.path().join("job.json");
    std::fs::write(&job_path, job.to_string()).unwrap();

    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["enqueue", "--wait", "--json", "--config"])
            .arg(&config_path)
            .arg(&job_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"progress"));
    assert_eq!(kinds.last(), Some(&"result"));
    assert!(kinds.contains(&"followup"), "{kinds:?}");
    assert_eq!(events.last().unwrap()["result"]["pushed"], true);
    // The backend's queues got the result too: the follower bound a queue of its own.
    assert_eq!(
        w.next_result(std::time::Duration::from_secs(5)).await["jobId"],
        "job-enqueue"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_topology_stops_the_worker_at_start_up_with_one_line_naming_the_queue() {
    let broker = crate::support::broker::TestBroker::new(|_| {}).await;
    // A classic queue where the worker wants a quorum one.
    crate::support::broker::declare_queue(
        &broker.conn,
        &broker.topo.jobs_queue,
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let config =
        crate::support::worker::test_config(&broker, std::path::Path::new("sh"), scratch.path());
    let config_path = scratch.path().join("config.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["worker", "--config"])
            .arg(&config_path)
            .env("HARNESS_LOG_FORMAT", "json")
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(&broker.topo.jobs_queue), "{stderr}");
    assert!(lines[0].contains("inequivalent arg"), "{stderr}");
}
