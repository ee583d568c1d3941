//! An in-process worker on a test's own topology, fed through the real broker, and readers for
//! what it publishes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use executor_harness::config::Config;
use executor_harness::metrics::Metrics;
use executor_harness::telemetry::SecretRegistry;
use executor_harness::worker::{run_worker, WorkerError};
use lapin::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::broker::{get_message, TestBroker};

pub struct TestWorker {
    pub broker: TestBroker,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Holds the workspaces; inspected by tests that check what a job left behind.
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), WorkerError>>>,
}

/// A configuration on the broker objects of `broker`, running `agent` as the Pi program.
pub fn test_config(broker: &TestBroker, agent: &Path, work_dir: &Path) -> Config {
    let mut c = Config::default();
    let t = &broker.topo;
    c.amqp.url = super::broker::amqp_url();
    c.amqp.topology = t.clone();
    c.amqp.confirm_timeout_ms = 5_000;
    // Unique, so a test can close exactly its own worker's connection.
    c.amqp.connection_name = format!("test-worker {}", t.jobs_queue);
    c.amqp.publish_attempts = 2;
    c.worker.work_dir = work_dir.display().to_string();
    c.worker.shutdown_grace_ms = 5_000;
    c.agent.pi_command = vec![agent.display().to_string()];
    c.agent.kill_grace_ms = 1_000;
    c.metrics.listen = String::new();
    // The fake agents leave marker files beside their script.
    if let Some(dir) = agent.parent() {
        c.sandbox.writable.push(dir.display().to_string());
    }
    c
}

impl TestWorker {
    /// Starts a worker whose Pi program is `agent`; `tweak` adjusts the configuration.
    pub async fn start(agent: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        let broker = TestBroker::new(|_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&broker, agent, dir.path());
        tweak(&mut config);
        let config = Arc::new(config);
        let (metrics, shutdown, handle) = spawn_ready(config.clone()).await;
        Self {
            broker,
            config,
            metrics,
            dir,
            shutdown,
            handle: Some(handle),
        }
    }

    pub fn conn(&self) -> &Connection {
        &self.broker.conn
    }

    pub async fn enqueue(&self, body: &serde_json::Value) {
        self.enqueue_raw(body.to_string().as_bytes()).await;
    }

    pub async fn enqueue_raw(&self, body: &[u8]) {
        executor_harness::broker::enqueue_job(
            &self.broker.conn,
            &self.broker.topo.jobs_queue,
            body,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }

    /// The next result message (JSON body).
    pub async fn next_result(&self, within: Duration) -> serde_json::Value {
        next_json(&self.broker.conn, &self.broker.topo.results_queue, within)
            .await
            .unwrap_or_else(|| panic!("no result within {within:?}"))
    }

    /// A second worker process-alike on the same queues, with its own work directory and
    /// connection: two workers that can each take a delivery of the same job.
    pub async fn start_another(&self) -> AnotherWorker {
        let dir = tempfile::tempdir().unwrap();
        let mut config = (*self.config).clone();
        config.worker.work_dir = dir.path().display().to_string();
        config.amqp.connection_name = format!("{} (another)", config.amqp.connection_name);
        let (_metrics, shutdown, handle) = spawn_ready(Arc::new(config)).await;
        AnotherWorker {
            _dir: dir,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Stops the worker (as SIGTERM would) and waits for the drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

type WorkerHandle = JoinHandle<Result<(), WorkerError>>;

/// Starts `run_worker` on `config` and waits until it is ready: the topology exists and the
/// consumer is attached.
async fn spawn_ready(config: Arc<Config>) -> (Arc<Metrics>, CancellationToken, WorkerHandle) {
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_worker(
        config,
        metrics.clone(),
        SecretRegistry::default(),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !metrics.ready.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the worker did not start");
        if handle.is_finished() {
            panic!("the worker stopped at start-up: {:?}", handle.await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (metrics, shutdown, handle)
}

/// A worker started by [`TestWorker::start_another`].
pub struct AnotherWorker {
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), WorkerError>>>,
}

impl AnotherWorker {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

impl Drop for AnotherWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Takes the next message body off `queue`, polling with basic.get.
pub async fn next_raw(conn: &Connection, queue: &str, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(msg) = get_message(conn, queue).await {
            return Some(msg.delivery.data);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Takes the next message off `queue` as JSON, polling with basic.get (which never pulls more
/// than one message, unlike a consumer that is dropped).
pub async fn next_json(
    conn: &Connection,
    queue: &str,
    within: Duration,
) -> Option<serde_json::Value> {
    next_raw(conn, queue, within)
        .await
        .map(|body| serde_json::from_slice(&body).expect("JSON message"))
}

/// Every message currently in `queue`, in order, taken off it.
pub async fn drain_json(conn: &Connection, queue: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while let Some(msg) = get_message(conn, queue).await {
        out.push(serde_json::from_slice(&msg.delivery.data).expect("JSON message"));
    }
    out
}

/// Polls `check` until it is true (files the agent writes, remote refs that appear).
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `test` on a runtime of its own (two worker threads, like the other tests) and fails when
/// it has not ended within `limit` of wall-clock time. Code that blocks the runtime's threads
/// freezes every timer on them, the test's own included: only a clock outside can notice.
pub fn within_wall_clock<F>(limit: Duration, test: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(test());
        // Work left blocking on the runtime's pool counts too: dropping it waits for that.
        drop(runtime);
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) => thread.join().unwrap(),
        // The test panicked: its thread is over, and join hands on the panic.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        // The stuck thread is left behind; the test binary ends it when it exits.
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not end within {limit:?}: its runtime is blocked")
        }
    }
}

/// A coding job body on `clone_url`, with a fresh work branch `newBranch`.
pub fn coding_job(job_id: &str, clone_url: &str, new_branch: Option<&str>) -> serde_json::Value {
    let mut job = serde_json::json!({
        "kind": "agent",
        "jobId": job_id,
        "mode": "coding",
        "systemPrompt": "You are the implementer.",
        "userPrompt": "Do the task.",
        "model": "test-model",
        "proxyBaseUrl": "http://127.0.0.1:9/v1",
        "sessionToken": "sess-TEST-session-token-0001",
        "ghToken": "ghs_TESTgittoken000000000000000000001",
        "repo": {"owner": "acme", "name": "widgets", "baseBranch": "main", "cloneUrl": clone_url},
        "branch": "main"
    });
    if let Some(b) = new_branch {
        job["newBranch"] = serde_json::Value::String(b.to_owned());
    }
    job
}
