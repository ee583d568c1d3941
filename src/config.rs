//! Configuration: a TOML file (every key documented in `config/default.toml`) overridden by
//! environment variables, including the seed's knob names (`JOB_MAX_DURATION_MS`, ...).
//!
//! Defaults live in one place, the `Default` impls below; `config/default.toml` repeats them
//! for readers and a test keeps the two in step.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::broker::Topology;
use crate::job::ValidationPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub worker: WorkerConfig,
    pub amqp: AmqpConfig,
    pub job: JobConfig,
    pub guard: GuardConfig,
    pub git: GitConfig,
    pub agent: AgentConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs run at once by one worker; also the consumer prefetch. Env `HARNESS_CONCURRENCY`.
    pub concurrency: u16,
    /// On SIGTERM/SIGINT, how long in-flight jobs get to finish before they are interrupted.
    pub shutdown_grace_ms: u64,
    /// Where per-job workspaces and HOMEs live; empty means `<temp dir>/executor-harness`.
    /// Env `HARNESS_WORK_DIR`.
    pub work_dir: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            shutdown_grace_ms: 25_000,
            work_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Broker URL. Env `AMQP_URL`.
    pub url: String,
    /// Declare the topology at start-up (idempotently). Off when an operator owns it.
    pub declare: bool,
    /// Job bodies larger than this are invalid.
    pub max_message_bytes: usize,
    /// Name the connection shows in the broker's management tools; empty means
    /// `executor-harness pid=<pid> host=<host>`.
    pub connection_name: String,
    /// Heartbeat negotiated with the broker, in seconds (10-20 keeps dead peers short-lived).
    pub heartbeat_secs: u16,
    /// How long to wait for a publisher confirm before the publish counts as failed.
    pub confirm_timeout_ms: u64,
    /// Attempts to publish a result before the job is left unacked (requeued).
    pub publish_attempts: u32,
    /// Every broker object the worker uses, by name, and the queue limits (`[amqp.topology]`).
    pub topology: Topology,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            declare: true,
            max_message_bytes: 4 * 1024 * 1024,
            connection_name: String::new(),
            heartbeat_secs: 15,
            confirm_timeout_ms: 15_000,
            publish_attempts: 5,
            topology: Topology::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JobConfig {
    /// Wall-clock cap per job. Env `JOB_MAX_DURATION_MS`.
    pub max_duration_ms: u64,
    /// No agent activity for this long kills the job. Env `JOB_INACTIVITY_MS`.
    pub inactivity_ms: u64,
    /// Checkpoint push interval while the agent runs. Env `JOB_CHECKPOINT_INTERVAL_MS`.
    pub checkpoint_interval_ms: u64,
    /// Fallback poll of the follow-up file (file-change notifications come first).
    /// Env `JOB_FOLLOWUP_POLL_INTERVAL_MS`.
    pub followup_poll_interval_ms: u64,
    /// Timeout of one git operation; 0 derives it below the inactivity window, as the seed
    /// does: `max(60 s, inactivity - 180 s)`. Env `JOB_GIT_TIMEOUT_MS`.
    pub git_timeout_ms: u64,
    /// Extra hosts a token may be sent to, besides github.com and api.github.com. Env
    /// `GITHUB_ENTERPRISE_HOST` and `GITHUB_ALLOWED_HOSTS` (comma list) add to it.
    pub allowed_hosts: Vec<String>,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            max_duration_ms: 3_600_000,
            inactivity_ms: 600_000,
            checkpoint_interval_ms: 60_000,
            followup_poll_interval_ms: 3_000,
            git_timeout_ms: 0,
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Env `JOB_MAX_TOOLCALLS_WITHOUT_EDIT`.
    pub max_tool_calls_without_edit: u64,
    /// Env `JOB_MAX_CONSECUTIVE_TOOL_ERRORS`.
    pub max_consecutive_errors: u64,
    /// Env `JOB_MAX_CONSECUTIVE_WEB_CALLS`.
    pub max_consecutive_web_calls: u64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_tool_calls_without_edit: 40,
            max_consecutive_errors: 12,
            max_consecutive_web_calls: 25,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GitConfig {
    /// Identity of the worker's commits (and, through the repo config, the agent's).
    pub author_name: String,
    pub author_email: String,
    /// Push `refs/harness/done/<jobId>` with the final push, so a finished job is never run twice.
    pub completion_refs: bool,
    pub completion_ref_prefix: String,
    /// Completion refs older than this are deleted from a remote when the worker next records
    /// a completion there (at most once per remote every `completion_ref_prune_interval_ms`).
    /// 0 keeps them forever.
    pub completion_ref_max_age_ms: u64,
    /// Least time between two prunes of the same remote by one worker process.
    pub completion_ref_prune_interval_ms: u64,
    /// When a final push is rejected, how long to wait for another run of the same job to
    /// record its completion, so that both publish the one outcome. 0 does not wait.
    pub race_wait_ms: u64,
    /// Largest file the worker commits or pushes; a job whose work holds a bigger one fails as
    /// `git` before its bytes are read (GitHub refuses files over 100 MiB anyway). Env
    /// `HARNESS_GIT_MAX_FILE_BYTES`.
    pub max_file_bytes: u64,
    /// Dependency caches a persistent checkout keeps across runs. Env `HARNESS_CLEAN_KEEP`.
    pub clean_keep: Vec<String>,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            author_name: "cat-factory[bot]".into(),
            author_email: "cat-factory[bot]@users.noreply.github.com".into(),
            completion_refs: true,
            completion_ref_prefix: "refs/harness/done/".into(),
            completion_ref_max_age_ms: 7 * 24 * 60 * 60 * 1000,
            completion_ref_prune_interval_ms: 10 * 60 * 1000,
            race_wait_ms: 15_000,
            max_file_bytes: 100 * 1024 * 1024,
            clean_keep: ["node_modules", ".venv", "target", ".gradle", ".pnpm-store"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Program (argv prefix) for the Pi harness. Env `HARNESS_PI_COMMAND` (split on spaces).
    pub pi_command: Vec<String>,
    /// Program for the Claude Code harness. Env `HARNESS_CLAUDE_COMMAND`.
    pub claude_command: Vec<String>,
    /// Program for the Codex harness. Env `HARNESS_CODEX_COMMAND`.
    pub codex_command: Vec<String>,
    /// SIGTERM to the agent's process group, then SIGKILL after this grace.
    pub kill_grace_ms: u64,
    /// Worker environment variables the agent must not inherit.
    pub env_remove: Vec<String>,
    /// Extra environment for every agent run (never put a secret here).
    pub env: BTreeMap<String, String>,
    /// The worker user's Pi agent dir (what `pi install` fills); its entries, bar the job's own
    /// files, are linked into each job's HOME. Empty means `$HOME/.pi/agent`.
    pub pi_agent_dir: String,
    /// Where each Codex run's private `CODEX_HOME` (holding the job's token) is made, and removed
    /// after the run. Not under the system temp dir, where Codex runs without its `apply_patch`
    /// helper. Empty means `$XDG_CACHE_HOME/executor-harness/codex-homes`, else
    /// `$HOME/.cache/executor-harness/codex-homes`.
    pub codex_home_root: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            pi_command: vec!["pi".into()],
            claude_command: vec!["claude".into()],
            codex_command: vec!["codex".into()],
            kill_grace_ms: 5_000,
            env_remove: ["AMQP_URL", "HARNESS_CONFIG"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            env: BTreeMap::new(),
            pi_agent_dir: String::new(),
            codex_home_root: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `GET /metrics`, `/healthz`, `/readyz`; empty disables. Env `HARNESS_METRICS_LISTEN`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (one object per line) or `pretty`. Env `HARNESS_LOG_FORMAT`.
    pub format: String,
    /// A tracing filter such as `info` or `executor_harness=debug`. Env `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

impl Config {
    /// Loads `path` (or `HARNESS_CONFIG`, or the defaults) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os("HARNESS_CONFIG").map(PathBuf::from);
        let path = path.map(Path::to_path_buf).or(from_env);
        let mut config = match path {
            Some(p) => Self::from_file(&p)?,
            None => Self::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.check()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies environment overrides read through `get` (injectable for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("AMQP_URL") {
            self.amqp.url = v;
        }
        if let Some(v) = get("HARNESS_WORK_DIR") {
            self.worker.work_dir = v;
        }
        if let Some(v) = get("HARNESS_CONCURRENCY") {
            self.worker.concurrency =
                positive("HARNESS_CONCURRENCY", &v)?
                    .try_into()
                    .map_err(|_| ConfigError::Env {
                        var: "HARNESS_CONCURRENCY",
                        message: "too large".into(),
                    })?;
        }
        let knobs: [(&'static str, &mut u64); 9] = [
            ("HARNESS_GIT_MAX_FILE_BYTES", &mut self.git.max_file_bytes),
            ("JOB_GIT_TIMEOUT_MS", &mut self.job.git_timeout_ms),
            ("JOB_MAX_DURATION_MS", &mut self.job.max_duration_ms),
            ("JOB_INACTIVITY_MS", &mut self.job.inactivity_ms),
            (
                "JOB_CHECKPOINT_INTERVAL_MS",
                &mut self.job.checkpoint_interval_ms,
            ),
            (
                "JOB_FOLLOWUP_POLL_INTERVAL_MS",
                &mut self.job.followup_poll_interval_ms,
            ),
            (
                "JOB_MAX_TOOLCALLS_WITHOUT_EDIT",
                &mut self.guard.max_tool_calls_without_edit,
            ),
            (
                "JOB_MAX_CONSECUTIVE_TOOL_ERRORS",
                &mut self.guard.max_consecutive_errors,
            ),
            (
                "JOB_MAX_CONSECUTIVE_WEB_CALLS",
                &mut self.guard.max_consecutive_web_calls,
            ),
        ];
        for (var, slot) in knobs {
            if let Some(v) = get(var) {
                *slot = positive(var, &v)?;
            }
        }
        if let Some(v) = get("GITHUB_ENTERPRISE_HOST") {
            self.job.allowed_hosts.push(v.trim().to_ascii_lowercase());
        }
        if let Some(v) = get("GITHUB_ALLOWED_HOSTS") {
            self.job.allowed_hosts.extend(
                v.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty()),
            );
        }
        if let Some(v) = get("HARNESS_CLEAN_KEEP") {
            self.git.clean_keep = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        for (var, slot) in [
            ("HARNESS_PI_COMMAND", &mut self.agent.pi_command),
            ("HARNESS_CLAUDE_COMMAND", &mut self.agent.claude_command),
            ("HARNESS_CODEX_COMMAND", &mut self.agent.codex_command),
        ] {
            if let Some(v) = get(var) {
                *slot = v.split_whitespace().map(str::to_owned).collect();
            }
        }
        if let Some(v) = get("HARNESS_METRICS_LISTEN") {
            self.metrics.listen = v;
        }
        if let Some(v) = get("HARNESS_LOG_FORMAT") {
            self.log.format = v;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency must be at least 1");
        }
        if self.agent.pi_command.is_empty() {
            return bad("agent.pi_command must name a program");
        }
        if !matches!(self.log.format.as_str(), "json" | "pretty") {
            return bad("log.format must be 'json' or 'pretty'");
        }
        for (name, v) in [
            ("job.max_duration_ms", self.job.max_duration_ms),
            ("job.inactivity_ms", self.job.inactivity_ms),
            (
                "job.checkpoint_interval_ms",
                self.job.checkpoint_interval_ms,
            ),
            (
                "job.followup_poll_interval_ms",
                self.job.followup_poll_interval_ms,
            ),
            ("amqp.confirm_timeout_ms", self.amqp.confirm_timeout_ms),
            // A zero bound would stop every agent at its first tool call.
            (
                "guard.max_tool_calls_without_edit",
                self.guard.max_tool_calls_without_edit,
            ),
            (
                "guard.max_consecutive_errors",
                self.guard.max_consecutive_errors,
            ),
            (
                "guard.max_consecutive_web_calls",
                self.guard.max_consecutive_web_calls,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be positive")));
            }
        }
        Ok(())
    }

    /// The directory per-job workspaces and HOMEs are made in.
    pub fn work_dir(&self) -> PathBuf {
        if self.worker.work_dir.trim().is_empty() {
            std::env::temp_dir().join("executor-harness")
        } else {
            PathBuf::from(self.worker.work_dir.trim())
        }
    }

    /// The worker user's Pi agent dir (`agent.pi_agent_dir`, else `$HOME/.pi/agent`); `None`
    /// without either.
    pub fn pi_agent_dir(&self) -> Option<PathBuf> {
        self.pi_agent_dir_with(|k| std::env::var_os(k))
    }

    fn pi_agent_dir_with(&self, get: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
        match self.agent.pi_agent_dir.trim() {
            "" => non_empty_path(get("HOME")).map(|h| h.join(".pi").join("agent")),
            dir => Some(PathBuf::from(dir)),
        }
    }

    /// The directory Codex runs get their `CODEX_HOME` in (`agent.codex_home_root`, else the
    /// worker user's cache dir); `None` without any, and the runs then keep it in the job's
    /// HOME.
    pub fn codex_home_root(&self) -> Option<PathBuf> {
        self.codex_home_root_with(|k| std::env::var_os(k))
    }

    fn codex_home_root_with(&self, get: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
        if !self.agent.codex_home_root.trim().is_empty() {
            return Some(PathBuf::from(self.agent.codex_home_root.trim()));
        }
        // The XDG spec ignores a relative XDG_CACHE_HOME.
        let cache = non_empty_path(get("XDG_CACHE_HOME"))
            .filter(|p| p.is_absolute())
            .or_else(|| non_empty_path(get("HOME")).map(|h| h.join(".cache")))?;
        Some(cache.join("executor-harness").join("codex-homes"))
    }

    /// The timeout of one git operation (seed 4.0.3's rule unless set).
    pub fn git_timeout(&self) -> std::time::Duration {
        let ms = if self.job.git_timeout_ms > 0 {
            self.job.git_timeout_ms
        } else {
            self.job.inactivity_ms.saturating_sub(180_000).max(60_000)
        };
        std::time::Duration::from_millis(ms)
    }

    pub fn validation_policy(&self) -> ValidationPolicy {
        ValidationPolicy::with_hosts(&self.job.allowed_hosts, self.amqp.max_message_bytes)
    }
}

fn non_empty_path(v: Option<OsString>) -> Option<PathBuf> {
    v.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The seed's knob parsing: a finite number above zero, floored. Unlike the seed, junk is an
/// error that names the variable rather than a silent default.
fn positive(var: &'static str, raw: &str) -> Result<u64, ConfigError> {
    let n: f64 = raw.trim().parse().map_err(|_| ConfigError::Env {
        var,
        message: format!("'{raw}' is not a number"),
    })?;
    if !n.is_finite() || n < 1.0 {
        return Err(ConfigError::Env {
            var,
            message: format!("'{raw}' must be a positive number"),
        });
    }
    Ok(n.floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_shipped_default_toml_matches_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        assert_eq!(Config::from_file(&path).unwrap(), Config::default());
    }

    #[test]
    fn the_shipped_default_toml_lists_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let file: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        // A key missing from the file would still load (as its default): compare the raw trees.
        assert_eq!(file, defaults);
    }

    #[test]
    fn seed_env_knobs_override_the_file_and_are_floored() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("JOB_CHECKPOINT_INTERVAL_MS", "250.9"),
            ("JOB_INACTIVITY_MS", "1000"),
            ("AMQP_URL", "amqp://u:p@h:5672/v"),
            ("GITHUB_ENTERPRISE_HOST", " GHE.Example.com "),
            ("GITHUB_ALLOWED_HOSTS", "gitlab.com, ,Git.Acme.io"),
        ]))
        .unwrap();
        assert_eq!(c.job.checkpoint_interval_ms, 250);
        assert_eq!(c.job.inactivity_ms, 1000);
        assert_eq!(c.amqp.url, "amqp://u:p@h:5672/v");
        assert_eq!(
            c.job.allowed_hosts,
            vec!["ghe.example.com", "gitlab.com", "git.acme.io"]
        );
        let policy = c.validation_policy();
        assert!(policy.allowed_hosts.contains("github.com"));
        assert!(policy.allowed_hosts.contains("git.acme.io"));
    }

    #[test]
    fn the_git_timeout_is_derived_below_the_inactivity_window_unless_set() {
        let mut c = Config::default();
        assert_eq!(c.git_timeout().as_millis(), 420_000);
        c.job.inactivity_ms = 200_000;
        assert_eq!(c.git_timeout().as_millis(), 60_000);
        c.job.git_timeout_ms = 1_500;
        assert_eq!(c.git_timeout().as_millis(), 1_500);
    }

    #[test]
    fn a_junk_env_value_is_an_error_naming_the_variable() {
        let mut c = Config::default();
        let err = c
            .apply_env(env(&[("JOB_MAX_DURATION_MS", "nope")]))
            .unwrap_err();
        assert!(err.to_string().contains("JOB_MAX_DURATION_MS"), "{err}");
        let err = c
            .apply_env(env(&[("JOB_INACTIVITY_MS", "-3")]))
            .unwrap_err();
        assert!(err.to_string().contains("JOB_INACTIVITY_MS"), "{err}");
    }

    #[test]
    fn a_zero_guard_bound_is_refused_as_it_would_stop_every_agent_at_once() {
        let mut c = Config::default();
        assert!(c.check().is_ok());
        c.guard.max_consecutive_errors = 0;
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("guard.max_consecutive_errors"), "{err}");
    }

    fn os_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let get = env(pairs);
        move |k| get(k).map(OsString::from)
    }

    #[test]
    fn the_pi_agent_dir_is_the_configured_one_else_the_worker_user_s() {
        let mut c = Config::default();
        let home = os_env(&[("HOME", "/home/worker")]);
        assert_eq!(
            c.pi_agent_dir_with(&home),
            Some(PathBuf::from("/home/worker/.pi/agent"))
        );
        assert_eq!(c.pi_agent_dir_with(os_env(&[("HOME", "")])), None);
        c.agent.pi_agent_dir = "/opt/pi/agent".into();
        assert_eq!(
            c.pi_agent_dir_with(&home),
            Some(PathBuf::from("/opt/pi/agent"))
        );
    }

    #[test]
    fn codex_homes_default_to_the_worker_user_s_cache_dir_not_the_temp_dir() {
        let mut c = Config::default();
        let root = |pairs: &[(&str, &str)], c: &Config| c.codex_home_root_with(os_env(pairs));
        assert_eq!(
            root(&[("HOME", "/home/worker")], &c),
            Some(PathBuf::from(
                "/home/worker/.cache/executor-harness/codex-homes"
            ))
        );
        assert_eq!(
            root(
                &[("HOME", "/home/worker"), ("XDG_CACHE_HOME", "/var/cache/w")],
                &c
            ),
            Some(PathBuf::from("/var/cache/w/executor-harness/codex-homes"))
        );
        assert_eq!(
            root(&[("HOME", "/home/worker"), ("XDG_CACHE_HOME", "rel")], &c),
            Some(PathBuf::from(
                "/home/worker/.cache/executor-harness/codex-homes"
            ))
        );
        assert_eq!(root(&[], &c), None);
        c.agent.codex_home_root = "/srv/codex".into();
        assert_eq!(
            root(&[("HOME", "/home/worker")], &c),
            Some(PathBuf::from("/srv/codex"))
        );
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[worker]\nconcurency = 3\n").unwrap();
        let err = Config::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("concurency"), "{err}");
    }
}
