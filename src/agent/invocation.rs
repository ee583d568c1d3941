//! How to start an agent for one job, whatever its harness, and the environment the agent
//! process gets: the worker's own minus what must not reach the agent (removed variables,
//! `GIT_ASKPASS*`, anything carrying one of the job's tokens), plus the configured extras,
//! plus the pairs the runner pins (HOME and the harness's own).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use super::guard::GuardLimits;
use super::process::{Ending, Finished};
use crate::job::{AgentJob, HarnessAuth};
use crate::sandbox::Sandbox;

/// How to start the agent CLI for one job.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// argv prefix of the harness's program (config `agent.pi_command`, `claude_command` or
    /// `codex_command`); tests and the demo point it elsewhere. The runner appends the
    /// harness's own arguments.
    pub command: Vec<String>,
    /// The agent's cwd (the checkout, or its serviceDirectory).
    pub work_dir: PathBuf,
    /// The per-job HOME, outside the checkout and removed with the job's workspace. Pi's must
    /// have been prepared with [`super::prepare_pi_home`]; the subscription runners make their
    /// config home inside it themselves, except Codex's when `codex_home_root` is set.
    pub home_dir: PathBuf,
    /// Where Codex's per-run `CODEX_HOME` is made instead of inside `home_dir` (config
    /// `agent.codex_home_root`): Codex refuses to set up its helper binaries (the `apply_patch`
    /// alias on PATH) in a home under the system temp dir, where the default work dir is.
    pub codex_home_root: Option<PathBuf>,
    /// Added to the environment. Entries carrying one of the job's tokens are dropped.
    pub extra_env: Vec<(String, String)>,
    /// Worker environment variables the agent must not inherit (e.g. `AMQP_URL`).
    pub env_remove: Vec<String>,
    /// SIGTERM to the group, this long, then SIGKILL.
    pub kill_grace: Duration,
    /// The progress guard's bounds: the worker's `[guard]` merged with the job's
    /// `guardLimits` ([`GuardLimits::merge`]).
    pub guard: GuardLimits,
    /// Whether the run is expected to edit files (coding, conflict, bootstrap: true; explore:
    /// false); the guard's no-edit bound applies only then.
    pub expects_edits: bool,
    /// The sandbox the agent runs in.
    pub sandbox: Arc<Sandbox>,
    /// The job's own directories: the only ones the agent may write (its checkout, HOME and
    /// TMPDIR), besides the shared caches the sandbox allows.
    pub own_dirs: Vec<PathBuf>,
    /// The job's secret environment (`generatorSecrets`, and `testSecrets` for explore):
    /// given to the agent and its commands as they are, never logged.
    pub secret_env: Vec<crate::job::SecretEnv>,
}

impl Invocation {
    /// The command that runs `args` of the harness's program for this job, in its sandbox and
    /// working directory. `more_own` are directories of this run only (a config home made
    /// outside the job's HOME). The program is looked up here, on the agent's `PATH`: inside
    /// the sandbox a missing one would only be a failed run.
    pub fn command(
        &self,
        args: &[String],
        more_own: &[PathBuf],
    ) -> Result<tokio::process::Command, std::io::Error> {
        let Some((program, prefix)) = self.command.split_first() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty agent command",
            ));
        };
        let program = self.resolve(program)?;
        let mut all = prefix.to_vec();
        all.extend_from_slice(args);
        let own: Vec<PathBuf> = self.own_dirs.iter().chain(more_own).cloned().collect();
        Ok(self.sandbox.command(&program, &all, &self.work_dir, &own))
    }

    /// The program's path: as given when it names a path, else the first executable of that
    /// name on the agent's `PATH` (its `agent.env` one, else the worker's).
    fn resolve(&self, program: &str) -> Result<String, std::io::Error> {
        let path = self
            .extra_env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| OsString::from(v));
        resolve_program(program, path)
    }
}

/// `program` as given when it names a path (it must exist), else the first executable of that
/// name on `path` (`None`: the worker's `PATH`).
pub fn resolve_program(program: &str, path: Option<OsString>) -> Result<String, std::io::Error> {
    let not_found = || {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{program}: no such program"),
        )
    };
    if program.contains('/') {
        return match Path::new(program).exists() {
            true => Ok(program.to_owned()),
            false => Err(not_found()),
        };
    }
    let path = path
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(not_found)
}

impl Invocation {
    /// `finished` as if the agent had run unconfined: see [`Sandbox::unwrap_status`].
    pub fn unwrap_finished(&self, mut finished: Finished) -> Finished {
        if let Ending::Exited(status) = finished.ending {
            finished.ending = Ending::Exited(self.sandbox.unwrap_status(status));
        }
        finished
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Invocation {
    /// `pi` in `work_dir` with `home_dir` (Codex's home inside it too), no extra environment, a
    /// 5 s kill grace, the default guard bounds, and edits expected.
    pub fn new(work_dir: impl Into<PathBuf>, home_dir: impl Into<PathBuf>) -> Self {
        Self {
            command: vec!["pi".to_owned()],
            work_dir: work_dir.into(),
            home_dir: home_dir.into(),
            codex_home_root: None,
            extra_env: Vec::new(),
            env_remove: Vec::new(),
            kill_grace: Duration::from_secs(5),
            guard: GuardLimits::default(),
            expects_edits: true,
            sandbox: Arc::new(Sandbox::none()),
            own_dirs: Vec::new(),
            secret_env: Vec::new(),
        }
    }
}

/// Every token the job carries, by value.
pub(super) fn job_secrets(job: &AgentJob) -> Vec<&str> {
    let mut out = vec![job.gh_token.expose()];
    match &job.auth {
        HarnessAuth::Pi { session_token, .. } => out.push(session_token.expose()),
        HarnessAuth::Subscription {
            subscription_token: Some(t),
            ..
        } => out.push(t.expose()),
        HarnessAuth::Subscription { .. } => {}
    }
    // Too short to search for without dropping unrelated values (the redactor's bound too).
    out.retain(|s| s.chars().count() >= 6);
    out
}

fn carries_secret(value: &OsStr, secrets: &[&str]) -> bool {
    let value = value.to_string_lossy();
    secrets.iter().any(|s| value.contains(s))
}

/// The child's whole environment: `inherited` minus [`Invocation::env_remove`], minus
/// `GIT_ASKPASS*` (the agent must not push by itself), minus `strip`, minus any value carrying
/// a job token, plus `extra_env` (minus the same), then `pinned` verbatim: the runner's own
/// pairs (HOME, a config dir, a token meant for this run only), which nothing else can set.
pub(super) fn compose_env<I>(
    inherited: I,
    inv: &Invocation,
    secrets: &[&str],
    strip: &[&str],
    pinned: Vec<(String, OsString)>,
) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let dropped = |key: &str| {
        key.starts_with("GIT_ASKPASS")
            || strip.contains(&key)
            || pinned.iter().any(|(k, _)| k == key)
            || inv.env_remove.iter().any(|r| r == key)
    };
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    for (key, value) in inherited {
        if dropped(&key.to_string_lossy()) {
            continue;
        }
        if carries_secret(&value, secrets) {
            tracing::warn!(var = %key.to_string_lossy(), "not passing a variable that carries a job token to the agent");
            continue;
        }
        env.push((key, value));
    }
    for (key, value) in &inv.extra_env {
        if dropped(key) {
            continue;
        }
        if carries_secret(OsStr::new(value), secrets) {
            tracing::warn!(var = %key, "not passing a variable that carries a job token to the agent");
            continue;
        }
        env.retain(|(k, _)| k != OsStr::new(key));
        env.push((key.into(), value.into()));
    }
    // The job's own secrets, as the job gave them (the parser dropped reserved names).
    for secret in &inv.secret_env {
        if dropped(&secret.key) {
            continue;
        }
        env.retain(|(k, _)| k != OsStr::new(&secret.key));
        env.push((secret.key.clone().into(), secret.value.expose().into()));
    }
    env.extend(pinned.into_iter().map(|(k, v)| (OsString::from(k), v)));
    env
}
