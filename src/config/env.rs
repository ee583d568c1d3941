//! Every environment variable the program reads, with what it sets: `--help` prints this
//! table, and a test keeps it in step with what `load` reads.

/// `(variable, what it sets)`, grouped as the README groups them.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("HARNESS_CONFIG", "the config file (as --config)"),
    (
        "AMQP_URL",
        "amqp.url, the broker (taken out of the environment at start-up)",
    ),
    ("HARNESS_CONCURRENCY", "worker.concurrency (worker -c wins)"),
    (
        "HARNESS_MAX_JOBS",
        "worker.max_jobs (worker --max-jobs wins)",
    ),
    ("HARNESS_WORK_DIR", "worker.work_dir"),
    (
        "HARNESS_STARTUP_CHECKS",
        "worker.startup_checks: fail or not-ready",
    ),
    (
        "HARNESS_METRICS_LISTEN",
        "metrics.listen (0.0.0.0:9464 in a pod)",
    ),
    ("HARNESS_LOG_FORMAT", "log.format: auto, json or pretty"),
    ("RUST_LOG", "the log filter (wins over log.level)"),
    ("NO_COLOR", "set and not empty: no colour in text logs"),
    ("HARNESS_SANDBOX", "sandbox.mode: auto, required or off"),
    (
        "HARNESS_PI_COMMAND",
        "agent.pi_command, split with shell rules",
    ),
    (
        "HARNESS_CLAUDE_COMMAND",
        "agent.claude_command, split with shell rules",
    ),
    (
        "HARNESS_CODEX_COMMAND",
        "agent.codex_command, split with shell rules",
    ),
    (
        "HARNESS_REQUIRED_AGENTS",
        "agent.required_commands (comma list)",
    ),
    ("HARNESS_CLEAN_KEEP", "git.clean_keep (comma list)"),
    ("HARNESS_GIT_MAX_FILE_BYTES", "git.max_file_bytes"),
    (
        "HARNESS_OBJECT_CACHE_MAX_BYTES",
        "git.object_cache_max_bytes (0 = no object cache)",
    ),
    (
        "HARNESS_OBJECT_CACHE_MAX_AGE_DAYS",
        "git.object_cache_max_age_days",
    ),
    ("JOB_MAX_DURATION_MS", "job.max_duration_ms"),
    ("JOB_INACTIVITY_MS", "job.inactivity_ms"),
    ("JOB_TOOL_SILENCE_MS", "job.tool_silence_ms (0 = off)"),
    ("JOB_COLD_START_MS", "job.cold_start_ms (0 = off)"),
    ("JOB_CHECKPOINT_INTERVAL_MS", "job.checkpoint_interval_ms"),
    (
        "JOB_FOLLOWUP_POLL_INTERVAL_MS",
        "job.followup_poll_interval_ms",
    ),
    ("JOB_GIT_TIMEOUT_MS", "job.git_timeout_ms"),
    (
        "VALIDATION_COMMAND_TIMEOUT_MS",
        "job.validation_command_timeout_ms",
    ),
    ("VALIDATION_HEARTBEAT_MS", "job.command_heartbeat_ms"),
    (
        "DEPENDENCY_INSTALL_TIMEOUT_MS",
        "job.dependency_install_timeout_ms",
    ),
    ("GITHUB_ENTERPRISE_HOST", "adds to job.allowed_hosts"),
    (
        "GITHUB_ALLOWED_HOSTS",
        "adds to job.allowed_hosts (comma list)",
    ),
    (
        "NPM_ALLOWED_REGISTRY_HOSTS",
        "adds to job.npm_registry_hosts (comma list)",
    ),
    (
        "JOB_MAX_TOOLCALLS_WITHOUT_EDIT",
        "guard.max_tool_calls_without_edit",
    ),
    (
        "JOB_MAX_CONSECUTIVE_TOOL_ERRORS",
        "guard.max_consecutive_errors",
    ),
    (
        "JOB_MAX_CONSECUTIVE_WEB_CALLS",
        "guard.max_consecutive_web_calls",
    ),
    (
        "JOB_MAX_CONSECUTIVE_MCP_CALLS",
        "guard.max_consecutive_mcp_calls",
    ),
    (
        "JOB_MAX_CONSECUTIVE_NON_ACTION_CALLS",
        "guard.max_consecutive_non_action_calls",
    ),
    (
        "HOME",
        "the default agent.pi_agent_dir and agent.codex_home_root",
    ),
    ("XDG_CACHE_HOME", "the default agent.codex_home_root"),
];

/// The table as `--help` shows it after the options.
pub fn help_text() -> String {
    let width = ENV_VARS.iter().map(|(v, _)| v.len()).max().unwrap_or(0);
    let mut out = String::from(
        "Environment (overrides the config file; config/default.toml documents every key):\n",
    );
    for (var, what) in ENV_VARS {
        out.push_str(&format!("  {var:<width$}  {what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every upper-case string literal in `load.rs` is a variable it reads.
    #[test]
    fn every_variable_the_loader_reads_is_in_the_table() {
        let source = include_str!("load.rs");
        let mut missing = Vec::new();
        for literal in source.split('"').skip(1).step_by(2) {
            let is_var = literal.len() > 2
                && literal
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && (literal.contains('_') || literal == "HOME");
            if is_var && !ENV_VARS.iter().any(|(v, _)| *v == literal) {
                missing.push(literal);
            }
        }
        assert!(missing.is_empty(), "not in ENV_VARS: {missing:?}");
    }

    #[test]
    fn the_help_text_lists_every_variable_once() {
        let text = help_text();
        for (var, _) in ENV_VARS {
            assert_eq!(text.matches(&format!("  {var} ")).count(), 1, "{var}");
        }
    }
}
