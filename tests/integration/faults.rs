//! Nothing lost under faults: the worker binary runs as its own process on a test's own queues,
//! and is SIGKILLed at each phase boundary of a job, cut off from the broker (connections
//! closed, the port black-holed or refusing), timed out by the broker, and killed at random
//! among several workers. After each fault a worker (the same process, or a fresh one on the
//! same queues) finishes the job, and the test checks: exactly one outcome per `jobId` after
//! de-duplication by `message_id` (`<jobId>:result`), the job acked, every checkpointed commit on
//! the branch, and a redelivery that resumes where a checkpoint existed.
//!
//! Each scenario prints one line, `FAULTS scenario=... runs=... kills=... runs_killed=... jobs=...
//! lost=... duplicates=... lost_commits=... recovery_ms=...`, for the reliability figures (also
//! appended to the file named by `FAULTS_FIGURES` when it is set). Read them with `--nocapture`.
//!
//! Broker-wide scenarios (`broker_wide_*`: `rabbitmqctl stop_app`/`start_app`, a shortened
//! `consumer_timeout`) change the broker every other test shares, so they are ignored by default,
//! refuse to run without `FAULTS_BROKER_RESTART=1`, run one at a time (a lock), and must be run
//! alone:
//!
//! ```sh
//! FAULTS_BROKER_RESTART=1 cargo test --test integration faults::broker_wide -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! or, leaving the shared broker alone, against a private node (the tests' `rabbitmqctl` follows
//! `RABBITMQ_NODENAME`): `AMQP_URL=amqp://guest:guest@127.0.0.1:5673/%2f
//! RABBITMQ_NODENAME=faults@localhost FAULTS_BROKER_RESTART=1 cargo test ...`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use executor_harness::config::Config;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::agents::write_agent;
use crate::support::broker::{connect, get_message, message_count, rabbitmqctl, TestBroker};
use crate::support::fault_proxy::FaultProxy;
use crate::support::git_http::GitHttpServer;
use crate::support::process::{descends_from, processes_with, WorkerProcess};
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, test_config};

const WAIT: Duration = Duration::from_secs(30);
/// The git token of [`coding_job`]: what the smart-HTTP remote demands.
const GIT_TOKEN: &str = "ghs_TESTgittoken000000000000000000001";

/// What a scenario did and what it cost, printed as one line.
#[derive(Default)]
struct Figures {
    scenario: String,
    jobs: usize,
    /// Agent runs started (every attempt of every job).
    runs: usize,
    kills: usize,
    /// Agent runs a kill cut short.
    runs_killed: usize,
    /// Jobs that ended with no result.
    lost: usize,
    /// Result messages beyond one per `message_id`.
    duplicates: usize,
    /// Commits an agent made that are not on the final branch.
    lost_commits: usize,
    /// Fault to consuming again, per recovery.
    recovery_ms: Vec<u128>,
}

impl Figures {
    fn report(&self) {
        let recovery = if self.recovery_ms.is_empty() {
            "-".to_owned()
        } else {
            self.recovery_ms
                .iter()
                .map(|ms| ms.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let line = format!(
            "FAULTS scenario={} runs={} kills={} runs_killed={} jobs={} lost={} duplicates={} lost_commits={} recovery_ms={}",
            self.scenario,
            self.runs,
            self.kills,
            self.runs_killed,
            self.jobs,
            self.lost,
            self.duplicates,
            self.lost_commits,
            recovery
        );
        eprintln!("{line}");
        if let Ok(path) = std::env::var("FAULTS_FIGURES") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// One scenario: its queues, its fake agent, the worker configuration, what was taken off the
/// results and progress queues, and its figures.
struct Scene {
    broker: TestBroker,
    scratch: TempDir,
    _work: TempDir,
    agent: PathBuf,
    config: Config,
    /// `(message_id, body)` of every result taken off the results queue, in order.
    results: Vec<(String, Value)>,
    progress: Vec<Value>,
    figures: Figures,
    /// Logs of every worker started, for failure messages.
    logs: std::sync::Mutex<Vec<PathBuf>>,
}

impl Scene {
    /// `agent` is the fake agent's shell body given the scratch directory. Before it, every run
    /// records its number `$N` (1 for the first run of the scenario).
    async fn new(
        scenario: &str,
        agent: impl FnOnce(&Path) -> String,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let broker = TestBroker::new(|_| {}).await;
        let scratch = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let s = scratch.path();
        let body = format!(
            "echo run >> {s}/runs\nN=$(wc -l < {s}/runs)\n{}",
            agent(s),
            s = s.display()
        );
        let agent = write_agent(s, "agent", &body);
        let mut config = test_config(&broker, &agent, work.path());
        tweak(&mut config);
        Self {
            broker,
            scratch,
            _work: work,
            agent,
            config,
            results: Vec::new(),
            progress: Vec::new(),
            logs: Default::default(),
            figures: Figures {
                scenario: scenario.to_owned(),
                ..Figures::default()
            },
        }
    }

    fn s(&self) -> &Path {
        self.scratch.path()
    }

    fn spawn(&self, name: &str) -> WorkerProcess {
        let mut config = self.config.clone();
        // Unique per process, so a test can close exactly one worker's connection.
        config.amqp.connection_name = format!("{} {name}", self.config.amqp.connection_name);
        let w = WorkerProcess::spawn(&config, self.s(), name);
        self.logs.lock().unwrap().push(w.log_path.clone());
        w
    }

    /// The last lines of every worker's log.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for path in self.logs.lock().unwrap().iter() {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {}\n", path.display()));
            out.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// Spawns a worker and waits until it consumes.
    async fn start(&self, name: &str) -> WorkerProcess {
        let mut w = self.spawn(name);
        w.wait_ready(WAIT).await;
        w
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

    /// Agent runs started so far.
    fn runs(&self) -> usize {
        std::fs::read_to_string(self.s().join("runs"))
            .map(|r| r.lines().count())
            .unwrap_or(0)
    }

    /// SIGKILLs `w`, then the agent it was running: an orphaned agent would otherwise keep
    /// running with nobody to push its work.
    fn kill(&mut self, w: &mut WorkerProcess) {
        let agents = self.agents_of(w.pid());
        w.kill();
        self.figures.runs_killed += agents.len();
        for pid in agents {
            // SAFETY: killpg(2) on the group of an agent checked to be ours just before; each
            // agent leads its own group.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        self.figures.kills += 1;
    }

    /// Pids of the processes of agent runs `worker` started (the sandbox and the agent's shell;
    /// each agent run leads its process group).
    fn agents_of(&self, worker: u32) -> Vec<i32> {
        let script = self.agent.display().to_string();
        processes_with(&script)
            .into_iter()
            .filter(|(pid, _)| descends_from(*pid, worker))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Takes every result now in the results queue.
    async fn take_results(&mut self) -> usize {
        let mut n = 0;
        while let Some(msg) = get_message(&self.broker.conn, &self.broker.topo.results_queue).await
        {
            let id = msg
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&msg.delivery.data).expect("JSON result");
            self.results.push((id, body));
            n += 1;
        }
        n
    }

    /// Waits for the next result message and returns its body.
    async fn next_result(&mut self, within: Duration) -> Value {
        let before = self.results.len();
        let deadline = Instant::now() + within;
        while self.results.len() == before {
            self.take_results().await;
            assert!(
                Instant::now() < deadline,
                "{}: no result within {within:?}\n{}",
                self.figures.scenario,
                self.log_tails()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.results[before].1.clone()
    }

    /// Waits until the results cover every job of `job_ids`.
    async fn wait_outcomes(&mut self, job_ids: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            self.take_results().await;
            let have: std::collections::BTreeSet<&str> = self
                .results
                .iter()
                .filter_map(|(_, b)| b["jobId"].as_str())
                .collect();
            if job_ids.iter().all(|j| have.contains(j.as_str())) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: results for {} of {} jobs within {within:?}\n{}",
                self.figures.scenario,
                have.len(),
                job_ids.len(),
                self.log_tails()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the progress messages now queued.
    async fn take_progress(&mut self) {
        while let Some(msg) = get_message(&self.broker.conn, &self.broker.topo.progress_queue).await
        {
            self.progress
                .push(serde_json::from_slice(&msg.delivery.data).expect("JSON progress"));
        }
    }

    /// The phase changes of `attempt`, in order (progress messages without todo or spans).
    async fn phases(&mut self, attempt: u64) -> Vec<String> {
        self.take_progress().await;
        self.progress
            .iter()
            .filter(|p| p["attempt"] == attempt)
            .filter(|p| p.get("progress").is_none() && p.get("spans").is_none())
            .filter_map(|p| p["phase"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until `attempt` announced `phase`.
    async fn wait_phase(&mut self, attempt: u64, phase: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.phases(attempt).await.iter().any(|p| p == phase) {
            assert!(
                Instant::now() < deadline,
                "attempt {attempt} never reached {phase}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Results grouped by `message_id`, after checking each names its job's result. Counts
    /// duplicates and lost jobs into the figures and asserts one outcome per job of `job_ids`.
    fn outcomes(&mut self, job_ids: &[String]) -> BTreeMap<String, Vec<Value>> {
        let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (id, body) in &self.results {
            let job = body["jobId"].as_str().expect("jobId");
            assert_eq!(id, &format!("{job}:result"), "message_id of {body}");
            by_id.entry(id.clone()).or_default().push(body.clone());
        }
        self.figures.jobs = job_ids.len();
        self.figures.runs = self.runs();
        self.figures.duplicates = self.results.len() - by_id.len();
        self.figures.lost = job_ids
            .iter()
            .filter(|j| !by_id.contains_key(&format!("{j}:result")))
            .count();
        let expected: Vec<String> = job_ids.iter().map(|j| format!("{j}:result")).collect();
        let got: Vec<&String> = by_id.keys().collect();
        assert_eq!(
            got,
            expected.iter().collect::<Vec<_>>(),
            "{}: one outcome per job",
            self.figures.scenario
        );
        by_id
    }

    /// Stops `w` cleanly and checks the jobs queue is empty: with no consumer left, a job
    /// that was not acked would be back in it.
    async fn stop_and_check_acked(&mut self, w: &mut WorkerProcess) {
        w.stop(WAIT).await;
        assert_eq!(
            message_count(&self.broker.conn, &self.broker.topo.jobs_queue).await,
            0,
            "{}: a job was left in the queue",
            self.figures.scenario
        );
        self.take_results().await;
    }
}

/// The `host:port` of an `http://` URL.
fn socket_of(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
        .parse()
        .unwrap()
}

fn touch(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

/// Closes the broker connection whose client-provided name is `name`, as an operator (or a
/// node going into maintenance) would.
fn close_named_connection(name: &str) {
    let out = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ]);
    let quoted = format!("\"{name}\"");
    let pid = out
        .lines()
        .find(|l| l.contains(&quoted))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {name}: {out}"))
        .to_owned();
    rabbitmqctl(&["close_connection", &pid, "closed by a fault test"]);
}

// --- SIGKILL at each phase boundary, then a fresh worker on the same queues ----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_the_job_waits_for_its_remote_leaves_it_whole_to_the_next_worker() {
    let root = tempfile::tempdir().unwrap();
    let origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), GIT_TOKEN);
    // The remote answers nothing: the job stays where it was received, before any git work.
    let remote = FaultProxy::start(socket_of(&server.url("repo"))).await;
    remote.blackhole(true);
    let mut sc = Scene::new(
        "kill-received",
        |_| "echo work > work.txt\ncommit_all 'Work'\nfinish 'done'".into(),
        |c| c.job.allowed_hosts = vec!["127.0.0.1".into()],
    )
    .await;
    let mut w1 = sc.start("w1").await;
    let url = format!("http://{}/repo.git", remote.addr());
    sc.enqueue(&coding_job("job-received", &url, Some("work/received")))
        .await;
    sc.wait_phase(1, "starting").await;
    eventually("the worker to reach for the remote", WAIT, || {
        remote.connections() >= 1
    })
    .await;
    sc.kill(&mut w1);
    assert_eq!(sc.phases(1).await, ["starting"]);
    assert_eq!(sc.runs(), 0);
    remote.blackhole(false);

    let mut w2 = sc.start("w2").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], false);
    assert_eq!(r["result"]["pushed"], true);
    assert_eq!(origin.subjects("work/received")[0], "Work");
    sc.stop_and_check_acked(&mut w2).await;
    sc.outcomes(&["job-received".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_clone_leaves_the_job_to_the_next_worker_which_clones_afresh() {
    let root = tempfile::tempdir().unwrap();
    let origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), GIT_TOKEN);
    let hold = Arc::new(AtomicBool::new(true));
    let entered = Arc::new(AtomicBool::new(false));
    server.before_upload_pack({
        let (hold, entered) = (hold.clone(), entered.clone());
        move || {
            entered.store(true, Ordering::SeqCst);
            let since = Instant::now();
            while hold.load(Ordering::SeqCst) && since.elapsed() < WAIT {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let mut sc = Scene::new(
        "kill-cloning",
        |_| "echo work > work.txt\ncommit_all 'Work'\nfinish 'done'".into(),
        |c| c.job.allowed_hosts = vec!["127.0.0.1".into()],
    )
    .await;
    let mut w1 = sc.start("w1").await;
    sc.enqueue(&coding_job(
        "job-cloning",
        &server.url("repo"),
        Some("work/cloning"),
    ))
    .await;
    eventually("the clone to be held", WAIT, || {
        entered.load(Ordering::SeqCst)
    })
    .await;
    sc.wait_phase(1, "clone").await;
    sc.kill(&mut w1);
    assert_eq!(sc.phases(1).await, ["starting", "clone"]);
    assert_eq!(sc.runs(), 0);
    hold.store(false, Ordering::SeqCst);

    let mut w2 = sc.start("w2").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], false);
    assert_eq!(origin.subjects("work/cloning")[0], "Work");
    sc.stop_and_check_acked(&mut w2).await;
    sc.outcomes(&["job-cloning".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_the_agent_committed_leaves_no_branch_and_the_job_runs_again() {
    let origin = BareRepo::new();
    let mut sc = Scene::new(
        "kill-agent-uncommitted",
        |s| {
            format!(
                r#"if [ "$N" -eq 1 ]; then
  echo draft > draft.txt; touch {s}/started; wait_for {s}/never; exit 3
fi
echo work > work.txt; commit_all 'Work'; finish 'done'"#,
                s = s.display()
            )
        },
        |c| c.job.checkpoint_interval_ms = 100,
    )
    .await;
    let mut w1 = sc.start("w1").await;
    sc.enqueue(&coding_job(
        "job-uncommitted",
        &origin.url(),
        Some("work/uncommitted"),
    ))
    .await;
    let started = sc.s().join("started");
    eventually("the agent to start", WAIT, || started.exists()).await;
    // Checkpoint ticks pass; none has anything to push.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sc.kill(&mut w1);
    assert_eq!(origin.tip("work/uncommitted"), None);

    let mut w2 = sc.start("w2").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], false);
    assert_eq!(origin.subjects("work/uncommitted")[0], "Work");
    // The first run's uncommitted draft is the work a crash may lose.
    assert_eq!(origin.file_at("work/uncommitted", "draft.txt"), None);
    assert_eq!(sc.runs(), 2);
    sc.stop_and_check_acked(&mut w2).await;
    sc.outcomes(&["job-uncommitted".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_a_checkpoint_is_resumed_from_it_by_the_next_worker() {
    let origin = BareRepo::new();
    let mut sc = Scene::new(
        "kill-agent-after-checkpoint",
        |s| {
            format!(
                r#"if [ "$N" -eq 1 ]; then
  echo one > one.txt; commit_all 'First'; wait_for {s}/never; exit 3
fi
test -f one.txt
echo two > two.txt; commit_all 'Second'; finish 'done'"#,
                s = s.display()
            )
        },
        |c| c.job.checkpoint_interval_ms = 100,
    )
    .await;
    let mut w1 = sc.start("w1").await;
    sc.enqueue(&coding_job(
        "job-checkpointed",
        &origin.url(),
        Some("work/checkpointed"),
    ))
    .await;
    eventually("the checkpoint push", WAIT, || {
        origin.tip("work/checkpointed").is_some()
    })
    .await;
    let checkpoint = origin.tip("work/checkpointed").unwrap();
    sc.kill(&mut w1);

    let mut w2 = sc.start("w2").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(
        origin.subjects("work/checkpointed")[..3],
        ["Second", "First", "initial commit"]
    );
    let on_branch = crate::support::repo::git(
        origin.path(),
        &[
            "merge-base",
            "--is-ancestor",
            &checkpoint,
            "work/checkpointed",
        ],
    );
    assert_eq!(on_branch, "");
    sc.stop_and_check_acked(&mut w2).await;
    sc.outcomes(&["job-checkpointed".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_long_agent_run_exits_0_within_the_grace_and_gives_the_job_back_with_its_work_pushed(
) {
    let origin = BareRepo::new();
    let mut sc = Scene::new(
        "sigterm-drain",
        |s| {
            format!(
                r#"if [ "$N" -eq 1 ]; then
  echo one > one.txt; commit_all 'First'; touch {s}/committed; sleep 1000
fi
test -f one.txt
echo two > two.txt; commit_all 'Second'; finish 'done'"#,
                s = s.display()
            )
        },
        |c| {
            c.worker.shutdown_grace_ms = 2_000;
            // No checkpoint would push the commit in time: only the interruption can.
            c.job.checkpoint_interval_ms = 3_600_000;
        },
    )
    .await;
    let mut w1 = sc.start("w1").await;
    sc.enqueue(&coding_job("job-drain", &origin.url(), Some("work/drain")))
        .await;
    let committed = sc.s().join("committed");
    eventually("the agent's commit", WAIT, || committed.exists()).await;
    assert_eq!(origin.tip("work/drain"), None);

    let signalled = Instant::now();
    w1.terminate();
    let status = w1
        .wait_exit(Duration::from_secs(2 + 5))
        .await
        .expect("the worker exits within the grace plus 5 s");
    assert!(status.success(), "exit: {status:?}");
    sc.figures.recovery_ms.push(signalled.elapsed().as_millis());
    // The job is back in the queue, its committed work on the remote, and no result published.
    assert_eq!(
        message_count(&sc.broker.conn, &sc.broker.topo.jobs_queue).await,
        1
    );
    assert_eq!(origin.subjects("work/drain")[0], "First");
    assert_eq!(sc.take_results().await, 0);

    let mut w2 = sc.start("w2").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(origin.subjects("work/drain")[..2], ["Second", "First"]);
    sc.stop_and_check_acked(&mut w2).await;
    sc.outcomes(&["job-drain".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_finishes_during_the_drain_publishes_its_result_and_is_acked() {
    let origin = BareRepo::new();
    let mut sc = Scene::new(
        "sigterm-finish-in-grace",
        |s| {
            format!(
                "echo one > one.txt; commit_all 'First'; touch {s}/started; sleep 3; finish 'done'",
                s = s.display()
            )
        },
        |c| c.worker.shutdown_grace_ms = 15_000,
    )
    .await;
    let mut w1 = sc.start("w1").await;
    sc.enqueue(&coding_job("job-grace", &origin.url(), Some("work/grace")))
        .await;
    let started = sc.s().join("started");
    eventually("the agent to start", WAIT, || started.exists()).await;
    let signalled = Instant::now();
    w1.terminate();
    let status = w1
        .wait_exit(Duration::from_secs(15 + 5))
        .await
        .expect("the worker exits within the grace");
    assert!(
        status.success(),
        "exit: {status:?}
{}",
        sc.log_tails()
    );
    sc.figures.recovery_ms.push(signalled.elapsed().as_millis());
    // The result went out during the drain and the delivery was acked: nothing is back in
    // the queue, and no other worker is needed.
    assert_eq!(sc.take_results().await, 1, "{}", sc.log_tails());
    let r = sc.results[0].1.clone();
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(
        message_count(&sc.broker.conn, &sc.broker.topo.jobs_queue).await,
        0,
        "the job was given back"
    );
    assert_eq!(origin.subjects("work/grace")[0], "First");
    sc.outcomes(&["job-grace".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_is_killed_on_every_delivery_still_gets_one_failed_result() {
    let origin = BareRepo::new();
    let mut sc = Scene::new(
        "kill-every-delivery",
        |s| {
            format!(
                "echo x$N > x.txt; commit_all \"Work $N\"; touch {s}/started-$N; wait_for {s}/never",
                s = s.display()
            )
        },
        // Two deliveries: the second return dead-letters the job.
        |c| {
            c.amqp.topology.delivery_limit = 1;
            c.job.checkpoint_interval_ms = 100;
        },
    )
    .await;
    for n in 1..=2 {
        let mut w = sc.start(&format!("w{n}")).await;
        if n == 1 {
            let job = coding_job("job-doomed", &origin.url(), Some("work/doomed"));
            sc.enqueue(&job).await;
        }
        let started = sc.s().join(format!("started-{n}"));
        eventually("the agent to start", WAIT, || started.exists()).await;
        sc.kill(&mut w);
    }
    // A worker that never saw the job publishes the result it is owed.
    let mut w3 = sc.start("w3").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "agent");
    assert_eq!(r["attempt"], 2);
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("delivery limit (2 deliveries)") && error.contains("work/doomed"),
        "{error}"
    );
    assert!(!error.contains("evicted or crashed"), "{error}");
    assert_eq!(sc.runs(), 2, "the agent ran once per delivery, never after");
    sc.stop_and_check_acked(&mut w3).await;
    // The operators' copy stays in the dead-letter queue; the workers' copy was consumed.
    let topo = &sc.broker.topo;
    assert_eq!(message_count(&sc.broker.conn, &topo.dead_queue).await, 1);
    assert_eq!(
        message_count(&sc.broker.conn, &topo.dead_watch_queue).await,
        0
    );
    sc.outcomes(&["job-doomed".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_forces_the_exit_without_waiting_for_the_drain() {
    let origin = BareRepo::new();
    let sc = Scene::new(
        "second-signal",
        |s| format!("touch {s}/started; sleep 1000", s = s.display()),
        |c| c.worker.shutdown_grace_ms = 60_000,
    )
    .await;
    let mut w = sc.start("w1").await;
    sc.enqueue(&coding_job(
        "job-forced",
        &origin.url(),
        Some("work/forced"),
    ))
    .await;
    let started = sc.s().join("started");
    eventually("the agent", WAIT, || started.exists()).await;
    w.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        w.try_exit().is_none(),
        "the first signal only starts the drain"
    );
    w.terminate();
    let status = w
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("the second signal ends the worker at once");
    assert_eq!(status.code(), Some(130));
    // Its agent did not outlive it.
    let script = sc.agent.display().to_string();
    eventually("the agent to be gone", Duration::from_secs(5), || {
        processes_with(&script).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_its_final_push_is_resumed_from_the_last_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), GIT_TOKEN);
    let mut sc = Scene::new(
        "kill-pushing",
        |s| {
            format!(
                r#"if [ "$N" -eq 1 ]; then
  echo one > one.txt; commit_all 'First'; wait_for {s}/go
  # Left uncommitted: the worker's safety-net commit carries it into the final push.
  echo edited >> README.md; finish 'done'; exit 0
fi
test -f one.txt
echo three > three.txt; commit_all 'Third'; finish 'done'"#,
                s = s.display()
            )
        },
        |c| {
            c.job.allowed_hosts = vec!["127.0.0.1".into()];
            // Long enough that no checkpoint tick falls between the safety-net commit and the
            // final push, short enough for the first checkpoint to come quickly.
            c.job.checkpoint_interval_ms = 1_000;
        },
    )
    .await;
    // Holds a push while `hold-push` exists, then refuses it: the push of a worker that died
    // meanwhile never lands.
    let s = sc.s().to_path_buf();
    let hook = origin.path().join("hooks").join("pre-receive");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
cat > /dev/null
if [ -e {s}/hold-push ]; then
  touch {s}/push-entered
  i=0; while [ ! -e {s}/release-push ] && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done
  rm -f {s}/hold-push
  echo 'held push refused' >&2
  exit 1
fi
exit 0
"#,
            s = s.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut w1 = sc.start("w1").await;
    sc.enqueue(&coding_job(
        "job-pushing",
        &server.url("repo"),
        Some("work/pushing"),
    ))
    .await;
    eventually("the checkpoint push", WAIT, || {
        origin.tip("work/pushing").is_some()
    })
    .await;
    touch(&s.join("hold-push"));
    touch(&s.join("go"));
    eventually("the final push to be held", WAIT, || {
        s.join("push-entered").exists()
    })
    .await;
    sc.wait_phase(1, "push").await;
    sc.kill(&mut w1);
    touch(&s.join("release-push"));
    eventually("the held push to be refused", WAIT, || {
        !s.join("hold-push").exists()
    })
    .await;

    let mut w2 = sc.start("w2").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(
        origin.subjects("work/pushing")[..3],
        ["Third", "First", "initial commit"]
    );
    // The safety-net commit of the killed attempt never reached the remote.
    let readme = origin.file_at("work/pushing", "README.md").unwrap();
    assert!(!readme.contains("edited"), "{readme}");
    sc.figures.lost_commits = 1;
    sc.stop_and_check_acked(&mut w2).await;
    sc.outcomes(&["job-pushing".into()]);
    sc.figures.report();
}

/// The worker publishes its result, the broker confirms it, and the worker is SIGKILLed
/// before its ack reaches the broker (the fault proxy holds it back). Returns the scene after
/// a fresh worker handled the redelivery, and the first result.
async fn kill_between_result_and_ack(scenario: &str) -> (Scene, Value, BareRepo) {
    let origin = BareRepo::new();
    let proxy = FaultProxy::broker().await;
    let mut sc = Scene::new(
        scenario,
        |_| "echo \"run $N\" >> work.txt\ncommit_all \"Run $N\"\nfinish \"done in run $N\"".into(),
        |_| {},
    )
    .await;
    sc.config.amqp.url = proxy.amqp_url();
    proxy.hold_settlements(true);
    let mut w1 = sc.start("w1").await;
    sc.enqueue(&coding_job("job-acked", &origin.url(), Some("work/acked")))
        .await;
    assert!(
        proxy.wait_held(WAIT).await,
        "the worker never acked:\n{}",
        w1.log_tail(30)
    );
    sc.kill(&mut w1);
    // Acks follow confirms: the result is already in its queue.
    assert_eq!(sc.take_results().await, 1);
    let first = sc.results[0].1.clone();
    assert_eq!(first["state"], "done", "{first}");
    proxy.hold_settlements(false);

    let mut w2 = sc.start("w2").await;
    // However the redelivery is handled, it ends with a result message.
    sc.next_result(WAIT).await;
    sc.stop_and_check_acked(&mut w2).await;
    sc.outcomes(&["job-acked".into()]);
    (sc, first, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_its_confirmed_result_and_the_ack_leaves_one_outcome() {
    let (sc, first, origin) = kill_between_result_and_ack("kill-result-before-ack").await;
    assert_eq!(first["attempt"], 1);
    // The finished attempt's work stays on the branch whatever the redelivery does.
    assert!(origin.subjects("work/acked").contains(&"Run 1".to_owned()));
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_its_confirmed_result_and_the_ack_never_runs_the_job_again() {
    let (sc, first, origin) = kill_between_result_and_ack("kill-result-before-ack-done-ref").await;
    assert_eq!(sc.runs(), 1, "the finished job ran again");
    // The redelivery re-published the stored result, word for word.
    assert_eq!(sc.results.len(), 2);
    assert_eq!(sc.results[1].1, first);
    assert_eq!(origin.subjects("work/acked")[0], "Run 1");
    sc.figures.report();
}

// --- Several workers, random kills, then a final worker drains ---------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_random_kills_among_several_workers_with_exactly_one_outcome_each() {
    const SEED: u64 = 0x5EED_F4A1;
    const WORKERS: usize = 3;
    const JOBS: usize = 8;
    // At most the delivery limit (5): no job can be killed past its last allowed attempt.
    const KILLS: usize = 5;
    let origin = BareRepo::new();
    let mut sc = Scene::new(
        "random-kills",
        |s| {
            format!(
                "echo \"$PROMPT run $N\" >> work.txt\ncommit_all \"Work $N\"\necho $N >> {s}/committed\nsleep 1\nfinish 'done'",
                s = s.display()
            )
        },
        |c| {
            c.worker.concurrency = 1;
            c.job.checkpoint_interval_ms = 100;
        },
    )
    .await;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut spawned = 0;
    let mut workers: Vec<WorkerProcess> = Vec::new();
    for _ in 0..WORKERS {
        spawned += 1;
        workers.push(sc.start(&format!("w{spawned}")).await);
    }
    let job_ids: Vec<String> = (0..JOBS).map(|i| format!("job-random-{i}")).collect();
    for (i, id) in job_ids.iter().enumerate() {
        let mut job = coding_job(id, &origin.url(), Some(&format!("work/random-{i}")));
        job["userPrompt"] = json!(format!("job{i}"));
        sc.enqueue(&job).await;
    }
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1_200))).await;
        let victim = rng.usize(..workers.len());
        sc.kill(&mut workers[victim]);
        spawned += 1;
        workers[victim] = sc.spawn(&format!("w{spawned}"));
    }
    let mut last = sc.start("final").await;
    sc.wait_outcomes(&job_ids, Duration::from_secs(90)).await;
    for w in &mut workers {
        w.stop(WAIT).await;
    }
    sc.stop_and_check_acked(&mut last).await;
    assert_eq!(
        message_count(&sc.broker.conn, &sc.broker.topo.dead_queue).await,
        0
    );
    let outcomes = sc.outcomes(&job_ids);
    for (id, bodies) in &outcomes {
        for b in bodies {
            assert_eq!(b["state"], "done", "{id}: {b}");
        }
    }
    // What a kill lost: commits a run made that no final branch holds.
    let mut kept = std::collections::BTreeSet::new();
    for i in 0..JOBS {
        let branch = format!("work/random-{i}");
        let work = origin.file_at(&branch, "work.txt").unwrap_or_default();
        // No job's branch holds another job's work.
        assert!(
            work.lines().all(|l| l.starts_with(&format!("job{i} "))),
            "{work}"
        );
        kept.extend(
            origin
                .subjects(&branch)
                .iter()
                .filter_map(|s| s.strip_prefix("Work ").map(str::to_owned)),
        );
    }
    let committed = std::fs::read_to_string(sc.s().join("committed")).unwrap_or_default();
    sc.figures.lost_commits = committed
        .lines()
        .filter(|n| !kept.contains(n.trim()))
        .count();
    sc.figures.report();
}

// --- The broker connection lost: the same process consumes again ---------------------------

/// Waits until `w` reconnected (its reconnect counter passed `before`) and is ready again.
async fn wait_reconnected(w: &mut WorkerProcess, before: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let reconnects = w.metric("harness_amqp_reconnects_total").await;
        if reconnects.is_some_and(|r| r > before) && w.ready().await {
            return;
        }
        assert!(
            w.try_exit().is_none(),
            "worker {} exited instead of reconnecting:\n{}",
            w.name,
            w.log_tail(40)
        );
        assert!(
            Instant::now() < deadline,
            "worker {} did not reconnect within {within:?}:\n{}",
            w.name,
            w.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A quick job, run after a recovery to prove the worker consumes again.
async fn run_a_quick_job(sc: &mut Scene, origin: &BareRepo, id: &str) -> Value {
    let mut job = coding_job(id, &origin.url(), Some(&format!("work/{id}")));
    job["noChangesIsError"] = json!(false);
    sc.enqueue(&job).await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["jobId"], id);
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 1);
    r
}

/// An agent that, on its first run, commits and then waits to be interrupted; on any later run
/// checks it resumed from that commit and finishes. Other jobs' runs finish at once.
fn interrupted_once_agent(s: &Path) -> String {
    format!(
        r#"if [ "$PROMPT" != "long" ]; then finish 'quick'; exit 0; fi
if [ ! -e {s}/long-started ]; then
  touch {s}/long-started
  echo one > one.txt; commit_all 'Before the fault'; wait_for {s}/never; exit 3
fi
test -f one.txt
echo two > two.txt; commit_all 'After the fault'; finish 'done'"#,
        s = s.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_broker_while_idle_is_reopened_without_a_restart() {
    let origin = BareRepo::new();
    let mut sc = Scene::new("close-connection-idle", interrupted_once_agent, |_| {}).await;
    let mut w = sc.start("w").await;
    let before = w.metric("harness_amqp_reconnects_total").await.unwrap();
    let t0 = Instant::now();
    close_named_connection(&w.config.amqp.connection_name);
    wait_reconnected(&mut w, before, WAIT).await;
    sc.figures.recovery_ms.push(t0.elapsed().as_millis());
    run_a_quick_job(&mut sc, &origin, "job-after-close").await;
    sc.stop_and_check_acked(&mut w).await;
    sc.outcomes(&["job-after-close".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_while_a_job_runs_gives_the_job_back_and_it_resumes_in_the_same_process(
) {
    let origin = BareRepo::new();
    let proxy = FaultProxy::broker().await;
    let mut sc = Scene::new("close-all-while-running", interrupted_once_agent, |c| {
        c.job.checkpoint_interval_ms = 100;
    })
    .await;
    sc.config.amqp.url = proxy.amqp_url();
    let mut w = sc.start("w").await;
    let mut job = coding_job("job-dropped", &origin.url(), Some("work/dropped"));
    job["userPrompt"] = json!("long");
    sc.enqueue(&job).await;
    eventually("the checkpoint push", WAIT, || {
        origin.tip("work/dropped").is_some()
    })
    .await;
    let before = w.metric("harness_amqp_reconnects_total").await.unwrap();
    let t0 = Instant::now();
    proxy.close_all();
    wait_reconnected(&mut w, before, WAIT).await;
    sc.figures.recovery_ms.push(t0.elapsed().as_millis());

    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(
        origin.subjects("work/dropped")[..2],
        ["After the fault", "Before the fault"]
    );
    assert_eq!(sc.runs(), 2);
    sc.stop_and_check_acked(&mut w).await;
    sc.outcomes(&["job-dropped".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_broker_port_makes_the_worker_unready_and_it_recovers_once_restored() {
    let origin = BareRepo::new();
    let proxy = FaultProxy::broker().await;
    let mut sc = Scene::new("blackhole", interrupted_once_agent, |c| {
        // Missed heartbeats are how a silent network is noticed.
        c.amqp.heartbeat_secs = 2;
    })
    .await;
    sc.config.amqp.url = proxy.amqp_url();
    let mut w = sc.start("w").await;
    let before = w.metric("harness_amqp_reconnects_total").await.unwrap();
    proxy.blackhole(true);
    let noticed = w.wait_unready(WAIT).await;
    // Reconnection attempts meet the same silence for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!w.ready().await);
    let t0 = Instant::now();
    proxy.blackhole(false);
    wait_reconnected(&mut w, before, WAIT).await;
    sc.figures.recovery_ms.push(t0.elapsed().as_millis());
    eprintln!("FAULTS blackhole noticed after {} ms", noticed.as_millis());
    run_a_quick_job(&mut sc, &origin, "job-after-blackhole").await;
    sc.stop_and_check_acked(&mut w).await;
    sc.outcomes(&["job-after-blackhole".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_broker_port_is_retried_with_backoff_until_it_accepts_again() {
    let origin = BareRepo::new();
    let proxy = FaultProxy::broker().await;
    let mut sc = Scene::new("refused", interrupted_once_agent, |_| {}).await;
    sc.config.amqp.url = proxy.amqp_url();
    let mut w = sc.start("w").await;
    let before = w.metric("harness_amqp_reconnects_total").await.unwrap();
    proxy.refuse(true);
    proxy.close_all();
    w.wait_unready(WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let retries = proxy.refused();
    // Retried, but with backoff rather than in a tight loop.
    assert!(
        (1..=20).contains(&retries),
        "{retries} refused attempts in 3 s"
    );
    assert!(!w.ready().await);
    let t0 = Instant::now();
    proxy.refuse(false);
    wait_reconnected(&mut w, before, WAIT).await;
    sc.figures.recovery_ms.push(t0.elapsed().as_millis());
    eprintln!("FAULTS refused attempts in 3 s: {retries}");
    run_a_quick_job(&mut sc, &origin, "job-after-refusal").await;
    sc.stop_and_check_acked(&mut w).await;
    sc.outcomes(&["job-after-refusal".into()]);
    sc.figures.report();
}

// --- Broker-wide faults (run alone; see the module doc) -----------------------------------

/// One broker-wide scenario at a time, even without `--test-threads=1`.
static BROKER_WIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn require_broker_wide_flag() {
    assert_eq!(
        std::env::var("FAULTS_BROKER_RESTART").as_deref(),
        Ok("1"),
        "this scenario changes the broker all tests share: run it alone with \
         FAULTS_BROKER_RESTART=1 cargo test --test integration faults::broker_wide -- --ignored --test-threads=1"
    );
}

/// Sets `rabbit` application settings for the length of a test and restores the previous
/// values when dropped, the test passed or not.
struct BrokerSettings {
    saved: Vec<(String, String)>,
}

impl BrokerSettings {
    fn set(values: &[(&str, &str)]) -> Self {
        let mut saved = Vec::new();
        for (key, value) in values {
            let before = rabbitmqctl(&["eval", &format!("application:get_env(rabbit, {key}).")]);
            saved.push((key.to_string(), before.trim().to_owned()));
            rabbitmqctl(&[
                "eval",
                &format!("application:set_env(rabbit, {key}, {value})."),
            ]);
        }
        Self { saved }
    }
}

impl Drop for BrokerSettings {
    fn drop(&mut self) {
        for (key, before) in &self.saved {
            let restore = match before
                .strip_prefix("{ok,")
                .and_then(|v| v.strip_suffix('}'))
            {
                Some(value) => format!("application:set_env(rabbit, {key}, {value})."),
                None => format!("application:unset_env(rabbit, {key})."),
            };
            let _ = std::process::Command::new("rabbitmqctl")
                .args(["eval", &restore])
                .output();
        }
    }
}

/// Starts the broker app again when dropped, whatever happened in between.
struct AppRestart;

impl Drop for AppRestart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "broker-wide: FAULTS_BROKER_RESTART=1, run alone (module doc)"]
async fn broker_wide_a_broker_restart_while_a_job_runs_is_survived_by_the_same_process() {
    require_broker_wide_flag();
    let _one = BROKER_WIDE.lock().await;
    let origin = BareRepo::new();
    let mut sc = Scene::new("broker-restart", interrupted_once_agent, |c| {
        c.job.checkpoint_interval_ms = 100;
    })
    .await;
    let mut w = sc.start("w").await;
    let mut job = coding_job("job-restart", &origin.url(), Some("work/restart"));
    job["userPrompt"] = json!("long");
    sc.enqueue(&job).await;
    eventually("the checkpoint push", WAIT, || {
        origin.tip("work/restart").is_some()
    })
    .await;
    let before = w.metric("harness_amqp_reconnects_total").await.unwrap();
    let t0 = Instant::now();
    {
        let _restart = AppRestart;
        rabbitmqctl(&["stop_app"]);
        w.wait_unready(WAIT).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        rabbitmqctl(&["start_app"]);
    }
    wait_reconnected(&mut w, before, Duration::from_secs(60)).await;
    sc.figures.recovery_ms.push(t0.elapsed().as_millis());
    // The test's own connection died with the broker.
    sc.broker.conn = connect("integration-test").await;
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(r["attempt"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(origin.subjects("work/restart")[1], "Before the fault");
    sc.stop_and_check_acked(&mut w).await;
    sc.outcomes(&["job-restart".into()]);
    sc.figures.report();
}

/// The broker takes a delivery back once it has been unacked for 2 s (the channel tick that
/// checks it runs every 500 ms). Read at channel start: set before the worker starts.
fn short_consumer_timeout() -> BrokerSettings {
    BrokerSettings::set(&[
        ("consumer_timeout", "2000"),
        ("channel_tick_interval", "500"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "broker-wide: FAULTS_BROKER_RESTART=1, run alone (module doc)"]
async fn broker_wide_a_job_longer_than_the_consumer_timeout_resumes_on_its_redelivery() {
    require_broker_wide_flag();
    let _one = BROKER_WIDE.lock().await;
    let _timeout = short_consumer_timeout();
    let origin = BareRepo::new();
    let mut sc = Scene::new("consumer-timeout-resume", interrupted_once_agent, |c| {
        c.job.checkpoint_interval_ms = 100;
    })
    .await;
    let mut w = sc.start("w").await;
    let before = w.metric("harness_amqp_reconnects_total").await.unwrap();
    let t0 = Instant::now();
    let mut job = coding_job("job-timeout", &origin.url(), Some("work/timeout"));
    job["userPrompt"] = json!("long");
    sc.enqueue(&job).await;
    wait_reconnected(&mut w, before, WAIT).await;
    sc.figures.recovery_ms.push(t0.elapsed().as_millis());
    let r = sc.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(r["attempt"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(origin.subjects("work/timeout")[1], "Before the fault");
    sc.stop_and_check_acked(&mut w).await;
    sc.outcomes(&["job-timeout".into()]);
    sc.figures.report();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "broker-wide: FAULTS_BROKER_RESTART=1, run alone (module doc)"]
async fn broker_wide_a_job_always_longer_than_the_consumer_timeout_ends_with_one_failed_result() {
    require_broker_wide_flag();
    let _one = BROKER_WIDE.lock().await;
    let _timeout = short_consumer_timeout();
    const LIMIT: u32 = 2;
    let origin = BareRepo::new();
    let mut sc = Scene::new(
        "consumer-timeout-limit",
        |s| {
            format!(
                "echo \"run $N\" >> work.txt; commit_all \"Run $N\"; wait_for {s}/never; exit 3",
                s = s.display()
            )
        },
        |c| {
            c.job.checkpoint_interval_ms = 100;
            c.amqp.topology.delivery_limit = LIMIT;
        },
    )
    .await;
    let mut w = sc.start("w").await;
    sc.enqueue(&coding_job(
        "job-endless",
        &origin.url(),
        Some("work/endless"),
    ))
    .await;
    let r = sc.next_result(Duration::from_secs(60)).await;
    assert_eq!(r["state"], "failed", "{r}");
    let attempt = r["attempt"].as_u64().unwrap();
    assert!((2..=u64::from(LIMIT) + 1).contains(&attempt), "{r}");
    // Never an endless loop: no run starts after the one that was finished.
    let runs = sc.runs();
    assert!(runs <= LIMIT as usize + 1, "{runs} runs");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sc.runs(), runs);
    sc.stop_and_check_acked(&mut w).await;
    sc.outcomes(&["job-endless".into()]);
    sc.figures.report();
}
