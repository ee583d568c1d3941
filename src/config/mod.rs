//! Configuration: a TOML file (every key documented in `config/default.toml`) overridden by
//! environment variables, including the seed's knob names (`JOB_MAX_DURATION_MS`, ...).
//!
//! Defaults live in one place, the `Default` impls below; `config/default.toml` repeats them
//! for readers and a test keeps the two in step. `load`: reading the file, the environment
//! overrides, the checks and the derived values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::broker::Topology;

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
    pub sandbox: SandboxConfig,
    /// The file the configuration was read from: hidden from agents like the work dir.
    #[serde(skip)]
    pub loaded_from: Option<PathBuf>,
}

/// How agents are isolated from the worker, from each other and from the host
/// (see `docs/sandbox.md`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `auto` (the strongest mechanism available, announced at start-up), `required` (refuse
    /// to start without one) or `off` (warned). Env `HARNESS_SANDBOX`.
    pub mode: String,
    /// The bubblewrap program.
    pub bwrap: String,
    /// Paths agents must not read, on top of the work dir and the config file (a directory is
    /// replaced by an empty read-only one, a file by an empty file).
    pub hidden: Vec<String>,
    /// Paths agents may write, on top of their own checkout, HOME and TMPDIR: shared caches an
    /// operator chooses.
    pub writable: Vec<String>,
    /// When the worker runs as root, agents run as this user and group, and own their checkout
    /// and HOME.
    pub uid: u32,
    pub gid: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            mode: "auto".into(),
            bwrap: "bwrap".into(),
            hidden: [
                "/var/run/secrets",
                "/run/secrets",
                "/var/run/docker.sock",
                "/run/docker.sock",
            ]
            .map(String::from)
            .to_vec(),
            writable: Vec::new(),
            uid: 65534,
            gid: 65534,
        }
    }
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
    /// How long a cancelled `jobId` is remembered, so a delivery arriving after its cancel is
    /// finished without running (contract 9).
    pub cancel_memory_ms: u64,
    /// Jobs to take before draining and exiting 0; 0 is no limit. Env `HARNESS_MAX_JOBS`.
    pub max_jobs: u64,
    /// `fail` (exit with one line) or `not-ready` (stay up, `/readyz` 503 with the reason)
    /// when a start-up check fails. Env `HARNESS_STARTUP_CHECKS`.
    pub startup_checks: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            shutdown_grace_ms: 25_000,
            work_dir: String::new(),
            cancel_memory_ms: 3_600_000,
            max_jobs: 0,
            startup_checks: "fail".into(),
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
    /// Timeout of one pre-PR check. Env `VALIDATION_COMMAND_TIMEOUT_MS`.
    pub validation_command_timeout_ms: u64,
    /// How often a running check or install counts as activity for the inactivity watchdog
    /// (at least three times per window). Env `VALIDATION_HEARTBEAT_MS`.
    pub command_heartbeat_ms: u64,
    /// Timeout of the dependency install, capped at a third of `max_duration_ms` (at least
    /// 30 s). Env `DEPENDENCY_INSTALL_TIMEOUT_MS`.
    pub dependency_install_timeout_ms: u64,
    /// An agent that keeps producing output but completes no tool call for this long is
    /// stopped (`no-tool-progress`); 0 turns it off. Env `JOB_TOOL_SILENCE_MS`.
    pub tool_silence_ms: u64,
    /// No output at all this long after the job started is recorded as a cold start (a
    /// progress message, and a note in a failure's `detail`); 0 turns it off. Env
    /// `JOB_COLD_START_MS`.
    pub cold_start_ms: u64,
    /// npm registry hosts a job's `packageRegistries` may name besides `registry.npmjs.org`
    /// and `npm.pkg.github.com`. Env `NPM_ALLOWED_REGISTRY_HOSTS` (comma list) adds to it.
    pub npm_registry_hosts: Vec<String>,
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
            validation_command_timeout_ms: 900_000,
            command_heartbeat_ms: 30_000,
            dependency_install_timeout_ms: 1_200_000,
            tool_silence_ms: 1_800_000,
            cold_start_ms: 120_000,
            npm_registry_hosts: Vec::new(),
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
    /// Env `JOB_MAX_CONSECUTIVE_MCP_CALLS`.
    pub max_consecutive_mcp_calls: u64,
    /// Env `JOB_MAX_CONSECUTIVE_NON_ACTION_CALLS`.
    pub max_consecutive_non_action_calls: u64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_tool_calls_without_edit: 40,
            max_consecutive_errors: 12,
            max_consecutive_web_calls: 25,
            max_consecutive_mcp_calls: 40,
            max_consecutive_non_action_calls: 200,
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
    /// Untracked or ignored names a warm checkout keeps between jobs (the dependency caches);
    /// everything else untracked is swept. Env `HARNESS_CLEAN_KEEP`.
    pub clean_keep: Vec<String>,
    /// Disk the per-repository object cache under `<work_dir>/objects/` may use; 0 turns the
    /// cache off. Env `HARNESS_OBJECT_CACHE_MAX_BYTES`.
    pub object_cache_max_bytes: u64,
    /// A cached repository no job used for this many days is removed. Env
    /// `HARNESS_OBJECT_CACHE_MAX_AGE_DAYS`.
    pub object_cache_max_age_days: u64,
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
            object_cache_max_bytes: 0,
            object_cache_max_age_days: 14,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Program (argv prefix) for the Pi harness. Env `HARNESS_PI_COMMAND` (split with shell
    /// rules).
    pub pi_command: Vec<String>,
    /// Program for the Claude Code harness. Env `HARNESS_CLAUDE_COMMAND`.
    pub claude_command: Vec<String>,
    /// Program for the Codex harness. Env `HARNESS_CODEX_COMMAND`.
    pub codex_command: Vec<String>,
    /// Harnesses (`pi`, `claude`, `codex`) whose program must resolve at start-up; the others
    /// only warn. Env `HARNESS_REQUIRED_AGENTS`.
    pub required_commands: Vec<String>,
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
            required_commands: vec!["pi".into()],
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
    /// `auto` (JSON lines unless stderr is a terminal), `json` or `pretty`. Env
    /// `HARNESS_LOG_FORMAT`.
    pub format: String,
    /// A tracing filter such as `info` or `executor_harness=debug`. Env `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "auto".into(),
            level: "info".into(),
        }
    }
}

mod env;
mod load;
pub use env::{help_text as env_help, ENV_VARS};
pub use load::take_env;

#[cfg(test)]
mod tests;
