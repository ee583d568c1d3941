//! Start-up checks: a worker that cannot run jobs says so before it takes one. The work dir
//! must be writable (created when missing); each harness's program must resolve, as the agent
//! runs would resolve it. The harnesses named in `agent.required_commands` (by default Pi, the
//! default harness) are required; another missing program is one warning, and its jobs fail as
//! `agent` when they come, which a fleet running only Pi never sees.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::invocation::resolve_program;
use crate::config::Config;
use crate::metrics::Metrics;

/// How often a not-ready worker checks again.
const RECHECK: Duration = Duration::from_secs(5);

/// Why the worker cannot work: one line, naming the path or the command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("worker.work_dir {} is not writable: {cause}", path.display())]
    WorkDir { path: PathBuf, cause: String },
    #[error("agent.{key} = {program:?} cannot be run: {cause}")]
    Command {
        key: &'static str,
        program: String,
        cause: String,
    },
}

/// The harnesses, with the config key of each one's program.
const HARNESSES: [(&str, &str); 3] = [
    ("pi", "pi_command"),
    ("claude", "claude_command"),
    ("codex", "codex_command"),
];

/// Runs the checks: the first failure of a required one, else the warnings (one line each)
/// for the optional programs that are missing.
pub fn check(config: &Config) -> Result<Vec<String>, StartupError> {
    check_work_dir(&config.work_dir())?;
    let path = config.agent.env.get("PATH").map(OsString::from);
    let mut warnings = Vec::new();
    for (harness, key) in HARNESSES {
        let command = match harness {
            "pi" => &config.agent.pi_command,
            "claude" => &config.agent.claude_command,
            _ => &config.agent.codex_command,
        };
        let Err(e) = check_command(key, command, path.clone()) else {
            continue;
        };
        let required = config.agent.required_commands.iter().any(|h| h == harness);
        match required {
            true => return Err(e),
            false => warnings.push(format!(
                "{e}: {harness} jobs will fail until it is installed"
            )),
        }
    }
    Ok(warnings)
}

/// Runs the checks before the worker takes jobs. `Ok(true)`: go on (the warnings logged);
/// `Err`: a check failed and `worker.startup_checks` is `fail`; with `not-ready`, `/readyz`
/// says why while the checks are repeated, and `Ok(false)` means the shutdown came first.
pub async fn wait_until_able(
    config: &Config,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<bool, StartupError> {
    let mut reported = None;
    loop {
        let checked = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || check(&config))
                .await
                .unwrap_or_else(|e| {
                    Err(StartupError::WorkDir {
                        path: PathBuf::new(),
                        cause: format!("the check did not run: {e}"),
                    })
                })
        };
        match checked {
            Ok(warnings) => {
                for warning in warnings {
                    tracing::warn!("{warning}");
                }
                if reported.is_some() {
                    tracing::info!("start-up checks pass now: taking jobs");
                }
                metrics.set_not_ready(None);
                return Ok(true);
            }
            Err(e) if config.worker.startup_checks != "not-ready" => return Err(e),
            Err(e) => {
                if reported.as_ref() != Some(&e) {
                    tracing::error!(error = %e, recheck_s = RECHECK.as_secs(), "the worker cannot work: not ready, checking again");
                    metrics.set_not_ready(Some(e.to_string()));
                    reported = Some(e);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(RECHECK) => {}
                }
            }
        }
    }
}

/// Creates the directory when missing, then creates and removes a file in it.
pub fn check_work_dir(dir: &Path) -> Result<(), StartupError> {
    let fail = |e: std::io::Error| StartupError::WorkDir {
        path: dir.to_path_buf(),
        cause: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = tempfile::Builder::new()
        .prefix(".startup-check-")
        .tempfile_in(dir)
        .map_err(fail)?;
    probe.close().map_err(fail)
}

fn check_command(
    key: &'static str,
    command: &[String],
    path: Option<OsString>,
) -> Result<(), StartupError> {
    let fail = |program: &str, cause: String| StartupError::Command {
        key,
        program: program.to_owned(),
        cause,
    };
    let Some(program) = command.first() else {
        return Err(fail("", "the command is empty".into()));
    };
    resolve_program(program, path).map_err(|_| {
        let cause = match program.contains('/') {
            true => "no such file".to_owned(),
            false => "not found on PATH".to_owned(),
        };
        fail(program, cause)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path) -> Config {
        let mut c = Config::default();
        c.worker.work_dir = dir.join("work").display().to_string();
        c.agent.pi_command = vec!["sh".into()];
        c.agent.claude_command = vec!["sh".into()];
        c.agent.codex_command = vec!["sh".into()];
        c
    }

    #[test]
    fn a_missing_work_dir_is_created_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config_in(tmp.path());
        assert_eq!(check(&c), Ok(Vec::new()));
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("work"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_work_dir_that_cannot_be_a_directory_names_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        let mut c = config_in(tmp.path());
        c.worker.work_dir = tmp.path().join("file/work").display().to_string();
        let e = check(&c).unwrap_err();
        assert!(matches!(e, StartupError::WorkDir { .. }), "{e}");
        assert!(e.to_string().contains("file/work"), "{e}");
    }

    #[test]
    fn pi_must_resolve_and_the_others_only_when_required() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config_in(tmp.path());
        c.agent.codex_command = vec!["no-such-codex-xyz".into(), "exec".into()];
        let warnings = check(&c).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("no-such-codex-xyz"), "{warnings:?}");
        c.agent.required_commands = vec!["pi".into(), "codex".into()];
        let e = check(&c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent.codex_command = \"no-such-codex-xyz\" cannot be run: not found on PATH"
        );
        c.agent.pi_command = vec!["/no/such/pi".into()];
        let e = check(&c).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("agent.pi_command = \"/no/such/pi\""),
            "{e}"
        );
    }
}
