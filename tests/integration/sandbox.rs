//! The sandbox around every agent (`docs/sandbox.md`): a hostile agent running beside another
//! job reads, writes and signals nothing of that job or of the worker; what an agent starts
//! ends with its job, and with a killed worker; `sandbox.mode` is honoured at start-up.
//!
//! The worker runs as a child process (`executor-harness worker`), so that its pid, its
//! environment block (holding `AMQP_URL` with the broker password, as a deployment passes it)
//! and its memory are those of a real worker.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::agents::write_agent;
use crate::support::broker::{amqp_url, TestBroker};
use crate::support::model_mock::{ModelMock, Step};
use crate::support::process::{processes_in, processes_with, WorkerProcess};
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, next_json, test_config};

const WAIT: Duration = Duration::from_secs(60);
/// For a result: the whole suite runs beside these two-job scenes, real CLIs included, on two
/// cores.
const RESULT_WAIT: Duration = Duration::from_secs(150);
const FIRST_GIT_TOKEN: &str = "ghs_FIRSTjobGitToken00000000000000001";
const FIRST_SESSION_TOKEN: &str = "sess-FIRST-job-session-token-0001";
const SECOND_GIT_TOKEN: &str = "ghs_SECONDjobGitToken0000000000000002";
const SECOND_SESSION_TOKEN: &str = "sess-SECOND-job-session-token-0002";
const PRIVATE: &str = "PRIVATE-content-of-the-first-job";

/// Every attempt of the issue, one line each: `<name>: GOT <what>` or `<name>: denied`. The
/// targets come from `targets` (sourced): the first job's workspace, the first agent's and the
/// worker's pids (as the host numbers them), the worker's config file and work dir.
const PROBE: &str = r#"#!/bin/sh
. "$(dirname "$0")/targets"
try() { name=$1; shift; out=$("$@" 2>/dev/null) && [ -n "$out" ] && echo "$name: GOT $(printf %s "$out" | tr '\n\0' '  ' | head -c 300)" || echo "$name: denied"; }
# Its own workspace is a mount point there: any other name is another job's.
try list-jobs sh -c 'ls -A "$WORK_DIR/jobs" | grep -vx "$(basename "$(dirname "$HOME")")"' 
try first-checkout cat "$FIRST_WS/repo/private.txt"
try first-models cat "$FIRST_WS/home/.pi/agent/models.json"
try worker-environ cat "/proc/$WORKER_PID/environ"
try worker-cmdline cat "/proc/$WORKER_PID/cmdline"
mem() { addr=$(grep -m1 ' r' "/proc/$WORKER_PID/maps" | cut -d- -f1) && [ -n "$addr" ] && dd if="/proc/$WORKER_PID/mem" bs=4096 skip=$((0x$addr / 4096)) count=1 2>/dev/null | od -An -tx1 | head -c 200; }
try worker-mem mem
try config cat "$CONFIG"
try signal-first-agent sh -c "kill -0 $FIRST_AGENT_PID && echo alive"
try signal-worker sh -c "kill -0 $WORKER_PID && echo alive"
[ -n "${SKIP_WRITE:-}" ] || try write-first sh -c "echo planted > '$FIRST_WS/repo/planted' && echo written"
"#;

/// What `PROBE` printed, checked: every attempt denied, and none of the secrets in it.
fn assert_all_denied(report: &str) {
    let lines: Vec<&str> = report.lines().filter(|l| l.contains(": ")).collect();
    assert_eq!(lines.len(), 10, "every probe reported: {report}");
    for line in &lines {
        assert!(
            line.ends_with(": denied"),
            "an attempt succeeded: {line}\n{report}"
        );
    }
    for secret in [
        FIRST_GIT_TOKEN,
        FIRST_SESSION_TOKEN,
        SECOND_GIT_TOKEN,
        SECOND_SESSION_TOKEN,
        PRIVATE,
        "guest:guest",
    ] {
        assert!(!report.contains(secret), "{secret} leaked: {report}");
    }
}

/// Two jobs' worth of scene: the scratch directory (agents' scripts and markers, writable in
/// the sandbox), the first job's private origin, the second's, and the worker.
struct Scene {
    broker: TestBroker,
    scratch: tempfile::TempDir,
    work: tempfile::TempDir,
    first_origin: BareRepo,
    second_origin: BareRepo,
}

impl Scene {
    async fn new() -> Self {
        let first_origin = BareRepo::new();
        first_origin.commit_files("main", &[("private.txt", PRIVATE)], "Private content");
        let scratch = tempfile::tempdir().unwrap();
        // The agents' markers go here, written as the sandbox's unprivileged user under root.
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        Self {
            broker: TestBroker::new(|_| {}).await,
            scratch,
            work: tempfile::tempdir().unwrap(),
            first_origin,
            second_origin: BareRepo::new(),
        }
    }

    fn s(&self) -> &Path {
        self.scratch.path()
    }

    /// The worker with two jobs at a time, `AMQP_URL` (with the password) in its environment.
    async fn worker(
        &self,
        agent: &Path,
        tweak: impl FnOnce(&mut executor_harness::config::Config),
    ) -> WorkerProcess {
        let mut config = test_config(&self.broker, agent, self.work.path());
        config.worker.concurrency = 2;
        config.sandbox.writable.push(self.s().display().to_string());
        tweak(&mut config);
        let url = amqp_url();
        assert!(
            url.contains("guest:guest"),
            "the probes look for the password: {url}"
        );
        let mut w =
            WorkerProcess::spawn_with_env(&config, self.s(), "worker", &[("AMQP_URL", &url)]);
        w.wait_ready(WAIT).await;
        let (_, readyz) = w.get("/readyz").await.expect("/readyz answers");
        if readyz.trim() != "ready (sandbox: bubblewrap)" {
            let log = std::fs::read_to_string(&w.log_path).unwrap_or_default();
            let why: Vec<&str> = log.lines().filter(|l| l.contains("sandbox")).collect();
            panic!("this test needs bubblewrap; /readyz says {readyz:?}, the worker says {why:#?}");
        }
        w
    }

    fn job(
        &self,
        id: &str,
        origin: &BareRepo,
        branch: &str,
        tokens: (&str, &str),
        prompt: &str,
    ) -> Value {
        let mut job = coding_job(id, &origin.url(), Some(branch));
        job["ghToken"] = json!(tokens.0);
        job["sessionToken"] = json!(tokens.1);
        job["userPrompt"] = json!(prompt);
        job
    }

    async fn enqueue(&self, job: &Value) {
        executor_harness::broker::enqueue_job(
            &self.broker.conn,
            &self.broker.topo.jobs_queue,
            job.to_string().as_bytes(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }

    /// The next result; on a timeout, fails with the worker's log.
    async fn next_result(&self, w: &WorkerProcess) -> Value {
        match next_json(
            &self.broker.conn,
            &self.broker.topo.results_queue,
            RESULT_WAIT,
        )
        .await
        {
            Some(result) => result,
            None => panic!(
                "no result within {RESULT_WAIT:?}; the worker's log:\n{}",
                w.log_tail(60)
            ),
        }
    }

    /// Once the first job's agent runs (`first_agent` names one of its processes): writes the
    /// probe's targets, and returns the probe's path.
    fn aim_probe(&self, w: &WorkerProcess, first_agent: &str) -> PathBuf {
        let jobs: Vec<PathBuf> = std::fs::read_dir(self.work.path().join("jobs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(jobs.len(), 1, "one job running: {jobs:?}");
        let agents = processes_with(first_agent);
        let agent_pid = agents.first().expect("the first agent runs").0;
        let targets = format!(
            "WORK_DIR='{}'\nFIRST_WS='{}'\nWORKER_PID={}\nFIRST_AGENT_PID={agent_pid}\nCONFIG='{}'\n",
            self.work.path().display(),
            jobs[0].display(),
            w.pid(),
            w.config_path.display()
        );
        std::fs::write(self.s().join("targets"), targets).unwrap();
        let probe = self.s().join("probe.sh");
        std::fs::write(&probe, PROBE).unwrap();
        // The probe finds something when it runs unconfined (as the test does, as root or as the
        // worker's user): what the sandbox denies is really there.
        let unconfined = std::process::Command::new("sh")
            .arg(&probe)
            .env("SKIP_WRITE", "1")
            .output()
            .unwrap();
        let unconfined = String::from_utf8_lossy(&unconfined.stdout).into_owned();
        for reachable in [
            "first-checkout: GOT",
            "config: GOT",
            "signal-worker: GOT",
            "worker-cmdline: GOT",
        ] {
            assert!(
                unconfined.contains(reachable),
                "{reachable} unconfined: {unconfined}"
            );
        }
        probe
    }

    /// Waits for an agent to create `name` in the scratch directory; on a timeout, fails with
    /// the worker's log.
    async fn wait_for_file(&self, w: &WorkerProcess, name: &str) {
        let path = self.s().join(name);
        for _ in 0..600 {
            if path.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no {name} within 60 s; the worker's log:\n{}",
            w.log_tail(30)
        );
    }

    /// Both jobs finished `done` with their branches pushed, and nothing was planted.
    async fn both_done(&self, w: &WorkerProcess) {
        let (a, b) = (self.next_result(w).await, self.next_result(w).await);
        for r in [&a, &b] {
            assert_eq!(r["state"], "done", "{r}");
            assert_eq!(r["result"]["pushed"], true, "{r}");
        }
        assert!(self.first_origin.tip("work/first").is_some());
        assert!(self.second_origin.tip("work/second").is_some());
        assert_eq!(self.first_origin.file_at("work/first", "planted"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_beside_another_job_reads_writes_and_signals_nothing_of_it_or_the_worker() {
    let sc = Scene::new().await;
    let s = sc.s().display().to_string();
    let agent = write_agent(
        sc.s(),
        "agent",
        &format!(
            r#"case "$PROMPT" in
*HOSTILE*) sh {s}/probe.sh > {s}/report 2>&1; echo mine > mine.txt; commit_all 'Second'; finish second ;;
*) echo first > first.txt; commit_all 'First'; touch {s}/first-started; wait_for {s}/first-go; finish first ;;
esac"#
        ),
    );
    let mut w = sc.worker(&agent, |_| {}).await;
    let first = sc.job(
        "job-first",
        &sc.first_origin,
        "work/first",
        (FIRST_GIT_TOKEN, FIRST_SESSION_TOKEN),
        "Work.",
    );
    sc.enqueue(&first).await;
    sc.wait_for_file(&w, "first-started").await;
    sc.aim_probe(&w, &format!("{s}/agent"));

    let second = sc.job(
        "job-second",
        &sc.second_origin,
        "work/second",
        (SECOND_GIT_TOKEN, SECOND_SESSION_TOKEN),
        "HOSTILE",
    );
    sc.enqueue(&second).await;
    let report = sc.s().join("report");
    eventually("the probe's report", RESULT_WAIT, || {
        std::fs::read_to_string(&report).is_ok_and(|r| r.contains("write-first"))
    })
    .await;
    std::fs::write(sc.s().join("first-go"), b"").unwrap();
    let report = std::fs::read_to_string(&report).unwrap();
    eprintln!("sandbox: the hostile agent's report:\n{report}");
    assert_all_denied(&report);
    sc.both_done(&w).await;
    w.stop(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_pi_works_inside_the_sandbox_and_its_hostile_commands_get_nothing() {
    let Some(pi) = std::env::var_os("PI_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    else {
        eprintln!("sandbox: real pi part skipped (set PI_BIN, see scripts/install-pi.sh)");
        return;
    };
    let sc = Scene::new().await;
    let s = sc.s().display().to_string();
    let bash = |command: String| Step::tool_call("bash", json!({ "command": command }));
    let commit = |file: &str| {
        vec![
            Step::tool_call("write", json!({"path": file, "content": "from pi\n"})),
            bash(format!(
                "node --version && git add -A && git commit -q -m 'Add {file}'"
            )),
        ]
    };
    let mut first_steps = commit("first.txt");
    first_steps.push(bash(format!(
        "touch {s}/first-started; i=0; while [ ! -e {s}/first-go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
    )));
    first_steps.push(Step::text("first done"));
    let mut second_steps = vec![bash(format!(
        "sh {s}/probe.sh > {s}/report 2>&1; cat {s}/report"
    ))];
    second_steps.extend(commit("second.txt"));
    second_steps.push(Step::text("second done"));
    let (first_mock, second_mock) = (
        ModelMock::start(first_steps).await,
        ModelMock::start(second_steps).await,
    );

    let mut w = sc
        .worker(&pi, |c| {
            c.agent.env.insert("PI_OFFLINE".into(), "1".into());
            c.agent.env.insert("PI_TELEMETRY".into(), "0".into());
            c.agent.pi_agent_dir = "/nonexistent/pi-agent".into();
        })
        .await;
    let with_mock = |mut job: Value, mock: &ModelMock| {
        job["proxyBaseUrl"] = json!(mock.base_url());
        job["model"] = json!("mock-model");
        job
    };
    let first = sc.job(
        "job-pi-first",
        &sc.first_origin,
        "work/first",
        (FIRST_GIT_TOKEN, FIRST_SESSION_TOKEN),
        "Work.",
    );
    sc.enqueue(&with_mock(first, &first_mock)).await;
    sc.wait_for_file(&w, "first-started").await;
    // The first pi's bash tool, waiting for `first-go`.
    sc.aim_probe(&w, &format!("{s}/first-go"));

    let second = sc.job(
        "job-pi-second",
        &sc.second_origin,
        "work/second",
        (SECOND_GIT_TOKEN, SECOND_SESSION_TOKEN),
        "Probe.",
    );
    sc.enqueue(&with_mock(second, &second_mock)).await;
    second_mock.wait_for_requests(2).await;
    std::fs::write(sc.s().join("first-go"), b"").unwrap();
    sc.both_done(&w).await;
    let report = std::fs::read_to_string(sc.s().join("report")).unwrap();
    eprintln!("sandbox: the probe pi ran:\n{report}");
    assert_all_denied(&report);
    // What the model saw of the probe is the report, as the tool's result.
    let seen = second_mock.chat_requests()[1].body.to_string();
    assert!(seen.contains("write-first: denied"), "{seen}");
    for (origin, branch, file) in [
        (&sc.first_origin, "work/first", "first.txt"),
        (&sc.second_origin, "work/second", "second.txt"),
    ] {
        assert_eq!(origin.subjects(branch)[0], format!("Add {file}"));
    }
    w.stop(WAIT).await;
}

/// An agent that leaves a `setsid` daemon writing into its checkout and a detached
/// `git maintenance` behind, and records the checkout's gc settings.
fn escaping_agent(s: &Path) -> String {
    format!(
        "git config gc.auto > {s}/gc-auto; git config maintenance.auto > {s}/maintenance-auto\n\
         echo x > x.txt\ncommit_all 'Work'\n\
         setsid sh -c 'while true; do date > busy.txt; sleep 0.01; done' {s}/daemon < /dev/null > /dev/null 2>&1 &\n\
         git maintenance run --detach --task=gc --task=loose-objects\n\
         touch {s}/escaped\nfinish done",
        s = s.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_agent_starts_ends_with_its_job_and_its_workspace_goes() {
    let sc = Scene::new().await;
    let agent = write_agent(sc.s(), "agent", &escaping_agent(sc.s()));
    let mut w = sc.worker(&agent, |_| {}).await;
    sc.enqueue(&coding_job(
        "job-escape",
        &sc.second_origin.url(),
        Some("work/escape"),
    ))
    .await;
    let r = sc.next_result(&w).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(sc.s().join("escaped").exists());
    let s = sc.s().display().to_string();
    let work = sc.work.path().to_path_buf();
    let worker = w.pid() as i32;
    let left = || {
        let mut pids: Vec<i32> = processes_with(&s).into_iter().map(|(p, _)| p).collect();
        pids.extend(processes_in(&work));
        pids.into_iter()
            .filter(|p| *p != worker)
            .map(|p| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect::<Vec<_>>()
    };
    for _ in 0..50 {
        if left().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        left(),
        Vec::<String>::new(),
        "what the agent started is left"
    );
    eventually(
        "the workspace to be removed",
        Duration::from_secs(5),
        || std::fs::read_dir(work.join("jobs")).is_ok_and(|mut d| d.next().is_none()),
    )
    .await;
    let read = |name: &str| std::fs::read_to_string(sc.s().join(name)).unwrap();
    assert_eq!(read("gc-auto").trim(), "0");
    assert_eq!(read("maintenance-auto").trim(), "false");
    w.stop(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_of_a_killed_worker_are_gone_within_seconds() {
    let sc = Scene::new().await;
    let s = sc.s().display().to_string();
    let agent = write_agent(
        sc.s(),
        "agent",
        &format!(
            "setsid sh -c 'sleep 1000; true' {s}/daemon < /dev/null > /dev/null 2>&1 &\n\
             sh -c 'sleep 1000; true' {s}/child &\ntouch {s}/running\nsleep 1000"
        ),
    );
    let mut w = sc.worker(&agent, |_| {}).await;
    sc.enqueue(&coding_job(
        "job-orphans",
        &sc.second_origin.url(),
        Some("work/orphans"),
    ))
    .await;
    let running = sc.s().join("running");
    eventually("the agent", WAIT, || running.exists()).await;
    assert!(
        processes_with(&format!("{s}/daemon")).len() == 1,
        "the daemon runs"
    );
    w.kill();
    eventually(
        "the killed worker's agents to be gone",
        Duration::from_secs(5),
        || processes_with(&s).is_empty(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_without_a_sandbox_refuses_to_start_in_one_line_and_off_warns_and_runs() {
    let sc = Scene::new().await;
    let agent = write_agent(
        sc.s(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish done",
    );
    let mut config = test_config(&sc.broker, &agent, sc.work.path());
    config.sandbox.mode = "required".into();
    config.sandbox.bwrap = "/nonexistent/bwrap".into();
    let config_path = sc.s().join("required.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_executor-harness"))
        .args(["worker", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "off")
        .env_remove("AMQP_URL")
        .env_remove("HARNESS_SANDBOX")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("sandbox.mode is \"required\"")
            && lines[0].contains("/nonexistent/bwrap"),
        "{stderr}"
    );

    let mut w = sc.worker_off(&agent).await;
    sc.enqueue(&coding_job(
        "job-off",
        &sc.second_origin.url(),
        Some("work/off"),
    ))
    .await;
    let r = sc.next_result(&w).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(w.log().contains("sandbox: off"), "{}", w.log_tail(20));
    // The broker password is gone from the worker's environment block, even as root sees it.
    let environ = std::fs::read(format!("/proc/{}/environ", w.pid())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("AMQP_URL="), "the variable was passed");
    assert!(!environ.contains("guest:guest"), "{environ}");
    let (_, metrics) = w.get("/metrics").await.expect("/metrics answers");
    assert!(
        metrics.contains("harness_sandbox_active{mechanism=\"none\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("harness_sandbox_active{mechanism=\"bubblewrap\"} 0"),
        "{metrics}"
    );
    w.stop(WAIT).await;
}

impl Scene {
    async fn worker_off(&self, agent: &Path) -> WorkerProcess {
        let mut config = test_config(&self.broker, agent, self.work.path());
        config.sandbox.mode = "off".into();
        let url = amqp_url();
        let mut w =
            WorkerProcess::spawn_with_env(&config, self.s(), "worker-off", &[("AMQP_URL", &url)]);
        w.wait_ready(WAIT).await;
        let (_, readyz) = w.get("/readyz").await.expect("/readyz answers");
        assert_eq!(readyz.trim(), "ready (sandbox: none)");
        w
    }
}
