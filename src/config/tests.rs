//! The configuration file, its defaults and environment overrides.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

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

#[test]
fn the_tool_silence_and_cold_start_windows_turn_off_at_zero_and_an_empty_value_is_unset() {
    let mut c = Config::default();
    c.apply_env(env(&[
        ("JOB_TOOL_SILENCE_MS", "0"),
        ("JOB_COLD_START_MS", ""),
    ]))
    .unwrap();
    assert_eq!(c.job.tool_silence_ms, 0);
    assert_eq!(
        c.job.cold_start_ms, 120_000,
        "the seed read an empty value as 0"
    );
    c.apply_env(env(&[("JOB_COLD_START_MS", "5000.7")]))
        .unwrap();
    assert_eq!(c.job.cold_start_ms, 5000);
    assert!(c.apply_env(env(&[("JOB_TOOL_SILENCE_MS", "-1")])).is_err());
}

#[test]
fn an_agent_command_from_the_environment_is_split_with_shell_rules() {
    let mut c = Config::default();
    c.apply_env(env(&[
        (
            "HARNESS_PI_COMMAND",
            r#"'/opt/my agents/pi' --mode "json lines" x\ y"#,
        ),
        ("HARNESS_CODEX_COMMAND", "codex   exec"),
    ]))
    .unwrap();
    assert_eq!(
        c.agent.pi_command,
        ["/opt/my agents/pi", "--mode", "json lines", "x y"]
    );
    assert_eq!(c.agent.codex_command, ["codex", "exec"]);
    let err = Config::default()
        .apply_env(env(&[("HARNESS_CLAUDE_COMMAND", "'claude")]))
        .unwrap_err();
    assert!(err.to_string().contains("HARNESS_CLAUDE_COMMAND"), "{err}");
}

#[test]
fn max_jobs_start_up_checks_and_required_agents_come_from_the_environment_and_are_checked() {
    let mut c = Config::default();
    c.apply_env(env(&[
        ("HARNESS_MAX_JOBS", "3"),
        ("HARNESS_STARTUP_CHECKS", "Not-Ready"),
        ("HARNESS_REQUIRED_AGENTS", "pi, Codex"),
        ("HARNESS_LOG_FORMAT", "JSON"),
    ]))
    .unwrap();
    assert_eq!(c.worker.max_jobs, 3);
    assert_eq!(c.worker.startup_checks, "not-ready");
    assert_eq!(c.agent.required_commands, ["pi", "codex"]);
    assert_eq!(c.log.format, "json");
    c.check().unwrap();
    c.worker.startup_checks = "maybe".into();
    assert!(c.check().is_err());
    c.worker.startup_checks = "fail".into();
    c.agent.required_commands = vec!["gemini".into()];
    assert!(c.check().unwrap_err().to_string().contains("gemini"));
}
