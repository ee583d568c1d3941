//! Loading a configuration: the file, the environment overrides (the seed's knob names
//! included), the checks, and the values derived from it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};
use crate::job::ValidationPolicy;

/// Takes the variable `name` out of the process environment and returns its value (see
/// [`Config::load_with`]): neither `/proc/<pid>/environ` nor a child still shows it. Call it
/// first thing in `main`, before any other thread starts.
pub fn take_env(name: &str) -> Option<String> {
    crate::sys::take_env_var(name)
}

impl Config {
    /// Loads `path` (or `HARNESS_CONFIG`, or the defaults) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(path, |_| None)
    }

    /// Like [`Config::load`], with `taken` consulted before the environment: the variables the
    /// worker took out of its environment at start-up (`AMQP_URL`).
    pub fn load_with(
        path: Option<&Path>,
        taken: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os("HARNESS_CONFIG").map(PathBuf::from);
        let path = path.map(Path::to_path_buf).or(from_env);
        let mut config = match &path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        config.loaded_from = path.and_then(|p| p.canonicalize().ok());
        config.apply_env(|k| taken(k).or_else(|| std::env::var(k).ok()))?;
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
        let knobs: [(&'static str, &mut u64); 16] = [
            (
                "VALIDATION_COMMAND_TIMEOUT_MS",
                &mut self.job.validation_command_timeout_ms,
            ),
            (
                "VALIDATION_HEARTBEAT_MS",
                &mut self.job.command_heartbeat_ms,
            ),
            (
                "DEPENDENCY_INSTALL_TIMEOUT_MS",
                &mut self.job.dependency_install_timeout_ms,
            ),
            ("HARNESS_GIT_MAX_FILE_BYTES", &mut self.git.max_file_bytes),
            (
                "HARNESS_OBJECT_CACHE_MAX_BYTES",
                &mut self.git.object_cache_max_bytes,
            ),
            (
                "HARNESS_OBJECT_CACHE_MAX_AGE_DAYS",
                &mut self.git.object_cache_max_age_days,
            ),
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
            (
                "JOB_MAX_CONSECUTIVE_MCP_CALLS",
                &mut self.guard.max_consecutive_mcp_calls,
            ),
            (
                "JOB_MAX_CONSECUTIVE_NON_ACTION_CALLS",
                &mut self.guard.max_consecutive_non_action_calls,
            ),
        ];
        for (var, slot) in knobs {
            if let Some(v) = get(var) {
                *slot = positive(var, &v)?;
            }
        }
        // 0 turns these off; an empty value is unset (the seed read it as 0, quirk).
        for (var, slot) in [
            ("JOB_TOOL_SILENCE_MS", &mut self.job.tool_silence_ms),
            ("JOB_COLD_START_MS", &mut self.job.cold_start_ms),
        ] {
            if let Some(v) = get(var).filter(|v| !v.trim().is_empty()) {
                *slot = if v.trim() == "0" {
                    0
                } else {
                    positive(var, &v)?
                };
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
        if let Some(v) = get("HARNESS_SANDBOX") {
            self.sandbox.mode = v.trim().to_ascii_lowercase();
        }
        if let Some(v) = get("NPM_ALLOWED_REGISTRY_HOSTS") {
            self.job.npm_registry_hosts.extend(
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
                // Shell rules, so a path with a space can be quoted.
                *slot = shlex::split(&v).ok_or_else(|| ConfigError::Env {
                    var,
                    message: "unbalanced quotes or a trailing backslash".into(),
                })?;
            }
        }
        if let Some(v) = get("HARNESS_REQUIRED_AGENTS") {
            self.agent.required_commands = comma_list(&v);
        }
        if let Some(v) = get("HARNESS_MAX_JOBS") {
            self.worker.max_jobs = positive("HARNESS_MAX_JOBS", &v)?;
        }
        if let Some(v) = get("HARNESS_STARTUP_CHECKS") {
            self.worker.startup_checks = v.trim().to_ascii_lowercase();
        }
        if let Some(v) = get("HARNESS_METRICS_LISTEN") {
            self.metrics.listen = v;
        }
        if let Some(v) = get("HARNESS_LOG_FORMAT") {
            self.log.format = v.trim().to_ascii_lowercase();
        }
        Ok(())
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency must be at least 1");
        }
        if self.agent.pi_command.is_empty() {
            return bad("agent.pi_command must name a program");
        }
        if !matches!(self.log.format.as_str(), "auto" | "json" | "pretty") {
            return bad("log.format must be 'auto', 'json' or 'pretty'");
        }
        if !matches!(self.worker.startup_checks.as_str(), "fail" | "not-ready") {
            return bad("worker.startup_checks must be 'fail' or 'not-ready'");
        }
        if let Some(h) = self
            .agent
            .required_commands
            .iter()
            .find(|h| !matches!(h.as_str(), "pi" | "claude" | "codex"))
        {
            return Err(ConfigError::Invalid(format!(
                "agent.required_commands: '{h}' is not a harness (pi, claude, codex)"
            )));
        }
        if !matches!(self.sandbox.mode.as_str(), "auto" | "required" | "off") {
            return bad("sandbox.mode must be 'auto', 'required' or 'off'");
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
            (
                "git.object_cache_max_age_days",
                self.git.object_cache_max_age_days,
            ),
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
            (
                "guard.max_consecutive_mcp_calls",
                self.guard.max_consecutive_mcp_calls,
            ),
            (
                "guard.max_consecutive_non_action_calls",
                self.guard.max_consecutive_non_action_calls,
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

    pub(super) fn pi_agent_dir_with(
        &self,
        get: impl Fn(&str) -> Option<OsString>,
    ) -> Option<PathBuf> {
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

    pub(super) fn codex_home_root_with(
        &self,
        get: impl Fn(&str) -> Option<OsString>,
    ) -> Option<PathBuf> {
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

    /// How often a running check or install feeds the activity clock: the configured
    /// heartbeat, but at least three beats per inactivity window.
    pub fn command_heartbeat(&self) -> std::time::Duration {
        let ms = self
            .job
            .command_heartbeat_ms
            .min(self.job.inactivity_ms / 3)
            .max(10);
        std::time::Duration::from_millis(ms)
    }

    /// The dependency install's timeout (seed-later 2.2): the configured one, at most a third
    /// of the job's wall-clock cap (but never under 30 s).
    pub fn dependency_install_timeout(&self) -> std::time::Duration {
        let ceiling = (self.job.max_duration_ms / 3).max(30_000);
        std::time::Duration::from_millis(self.job.dependency_install_timeout_ms.min(ceiling))
    }

    pub fn validation_policy(&self) -> ValidationPolicy {
        ValidationPolicy::with_hosts(&self.job.allowed_hosts, self.amqp.max_message_bytes)
            .with_npm_hosts(&self.job.npm_registry_hosts)
    }
}

fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
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
