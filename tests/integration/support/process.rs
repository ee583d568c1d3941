//! The worker binary as a child process (`executor-harness worker --config <toml>`), so a test
//! can SIGKILL it like a crash or an OOM kill would, SIGTERM it, read its JSON log, and poll
//! its `/readyz` on a loopback port of its own.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use executor_harness::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Environment variables the worker reads over its config file: removed from the child so the
/// file a test wrote is what runs.
const OVERRIDES: &[&str] = &[
    "AMQP_URL",
    "HARNESS_CONFIG",
    "HARNESS_WORK_DIR",
    "HARNESS_CONCURRENCY",
    "HARNESS_METRICS_LISTEN",
    "HARNESS_PI_COMMAND",
    "HARNESS_CLAUDE_COMMAND",
    "HARNESS_CODEX_COMMAND",
    "HARNESS_REQUIRED_AGENTS",
    "HARNESS_MAX_JOBS",
    "HARNESS_STARTUP_CHECKS",
    "HARNESS_LOG_FORMAT",
    "HARNESS_CLEAN_KEEP",
    "JOB_GIT_TIMEOUT_MS",
    "JOB_MAX_DURATION_MS",
    "JOB_INACTIVITY_MS",
    "JOB_CHECKPOINT_INTERVAL_MS",
    "JOB_FOLLOWUP_POLL_INTERVAL_MS",
    "JOB_MAX_TOOLCALLS_WITHOUT_EDIT",
    "JOB_MAX_CONSECUTIVE_TOOL_ERRORS",
    "JOB_MAX_CONSECUTIVE_WEB_CALLS",
    "JOB_MAX_CONSECUTIVE_MCP_CALLS",
    "JOB_MAX_CONSECUTIVE_NON_ACTION_CALLS",
    "GITHUB_ENTERPRISE_HOST",
    "GITHUB_ALLOWED_HOSTS",
    "RUST_LOG",
];

/// A free port on loopback (bound, read, released: another process could take it in between,
/// which a test would see as a failed start).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

pub struct WorkerProcess {
    child: Child,
    exit: Option<ExitStatus>,
    pub name: String,
    pub config: Config,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub metrics_addr: SocketAddr,
}

impl WorkerProcess {
    /// Starts the worker with `config`, its metrics on a free loopback port, the config file
    /// and the log (stdout and stderr, JSON lines) at `<dir>/<name>.toml` and `<dir>/<name>.log`.
    pub fn spawn(config: &Config, dir: &Path, name: &str) -> Self {
        Self::spawn_with_env(config, dir, name, &[])
    }

    /// Like [`WorkerProcess::spawn`], with `env` added to the worker's environment.
    pub fn spawn_with_env(config: &Config, dir: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_with(config, dir, name, env, &[])
    }

    /// Like [`WorkerProcess::spawn_with_env`], with `args` after `worker --config <file>`.
    pub fn spawn_with(
        config: &Config,
        dir: &Path,
        name: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let mut config = config.clone();
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        config.metrics.listen = metrics_addr.to_string();
        config.log.format = "json".into();
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config_path,
            toml::to_string(&config).expect("config to TOML"),
        )
        .expect("write the config");
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_executor-harness"));
        command
            .args(["worker", "--config"])
            .arg(&config_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        for var in OVERRIDES {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        let child = command.spawn().expect("spawn the worker");
        Self {
            child,
            exit: None,
            name: name.to_owned(),
            config,
            config_path,
            log_path,
            metrics_addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or the OOM killer would, and reaps the process.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        self.signal(libc::SIGKILL);
        let status = self.child.wait().expect("reap the worker");
        self.exit = Some(status);
        status
    }

    /// SIGTERM: the worker stops consuming, drains, and exits 0.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    fn signal(&mut self, signal: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our own child, not reaped yet, so the pid is still ours.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// The exit status, once the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("wait on the worker");
        }
        self.exit
    }

    /// Waits up to `within` for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for a clean exit (0) within `within`; panics with the log's tail
    /// otherwise.
    pub async fn stop(&mut self, within: Duration) {
        self.terminate();
        match self.wait_exit(within).await {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "worker {} exited with {status}:\n{}",
                self.name,
                self.log_tail(40)
            ),
            None => panic!(
                "worker {} did not exit within {within:?} of SIGTERM:\n{}",
                self.name,
                self.log_tail(40)
            ),
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `GET path` on the metrics listener: (status code, body), or `None` when nothing answers.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let exchange = async {
            let mut sock = tokio::net::TcpStream::connect(self.metrics_addr)
                .await
                .ok()?;
            sock.write_all(
                format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .ok()?;
            let mut raw = Vec::new();
            sock.read_to_end(&mut raw).await.ok()?;
            let text = String::from_utf8_lossy(&raw).into_owned();
            let code = text.split_whitespace().nth(1)?.parse().ok()?;
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
            Some((code, body))
        };
        tokio::time::timeout(Duration::from_secs(2), exchange)
            .await
            .ok()
            .flatten()
    }

    /// Whether `/readyz` answers 200 now.
    pub async fn ready(&self) -> bool {
        matches!(self.get("/readyz").await, Some((200, _)))
    }

    /// The sum of every sample of the metric `name` (all label sets), or `None` when the
    /// metrics listener does not answer or has no such metric.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await?;
        let mut found = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or(series);
            if metric == name {
                *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        found
    }

    /// Waits until `/readyz` is 200 and returns how long that took; panics with the log's
    /// tail when the process exits or `within` passes first.
    pub async fn wait_ready(&mut self, within: Duration) -> Duration {
        self.wait_readiness(true, within).await
    }

    /// Waits until `/readyz` is not 200 (or does not answer) and returns how long that took.
    pub async fn wait_unready(&mut self, within: Duration) -> Duration {
        self.wait_readiness(false, within).await
    }

    async fn wait_readiness(&mut self, ready: bool, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                panic!(
                    "worker {} exited ({status}) while waiting for ready={ready}:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if self.ready().await == ready {
                return started.elapsed();
            }
            if started.elapsed() > within {
                panic!(
                    "worker {}: /readyz not {} within {within:?}:\n{}",
                    self.name,
                    if ready { "200" } else { "failing" },
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // A failed test must not leave a worker consuming from a queue that is being deleted.
        if self.exit.is_none() {
            self.kill();
        }
    }
}

/// Live processes (zombies left out) whose command line contains `needle`, as `(pid, ppid)`.
/// Scanned on the host: a sandboxed agent's own `$$` is a pid of its PID namespace.
pub fn processes_with(needle: &str) -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            if !String::from_utf8_lossy(&cmdline).contains(needle) {
                return None;
            }
            let (state, ppid) = stat(pid)?;
            (state != 'Z').then_some((pid, ppid))
        })
        .collect()
}

/// Whether `ancestor` is `pid`'s parent, grandparent, and so on.
pub fn descends_from(pid: i32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        match stat(current) {
            Some((_, ppid)) if ppid as u32 == ancestor => return true,
            Some((_, ppid)) if ppid > 1 => current = ppid,
            _ => return false,
        }
    }
    false
}

/// A process's state letter and parent pid from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces, so split after its `)`.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Live processes whose working directory is `dir` or under it (as root sees them).
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
                && stat(*pid).is_some_and(|(state, _)| state != 'Z')
        })
        .collect()
}
