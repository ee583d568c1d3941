//! The Pi runner (seed 5.1): `pi -p --mode json --model proxy/<model> --approve` in the job's
//! work dir with the job's own HOME, the prompt on stdin, the event stream parsed as it
//! arrives, and the exit decision of seed 5.1.3 (widened to catch failed runs that exit 0).
//!
//! The session token reaches Pi only through `models.json` (see [`super::pi_home`]): it is
//! never in the child's argv or environment, which every tool the agent runs would inherit.

use std::ffi::{OsStr, OsString};
use std::ops::ControlFlow;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::pi_home::pi_agent_dir;
use super::pi_stream::{PiOutcome, PiStream};
use super::process::{self, Ending, Finished, Limits, OutputSink, SuperviseError};
use super::{AgentError, AgentObserver, AgentRun};
use crate::job::{AgentJob, HarnessAuth};
use crate::redact::{head_chars, tail_chars, Redactor};

/// Rolling stderr kept while Pi runs.
const STDERR_TAIL_CHARS: usize = 8000;
/// stderr appended to a clean-exit result or a terminal run error.
const RESULT_STDERR_CHARS: usize = 1500;
/// stderr appended to a stop from inside (the progress guard's size).
const STOP_STDERR_CHARS: usize = 700;
/// Output quoted in `pi exited with code ...`.
const EXIT_OUTPUT_CHARS: usize = 500;
/// A terminal run error's own message.
const TERMINAL_MESSAGE_CHARS: usize = 1000;

/// How to start Pi for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiInvocation {
    /// argv prefix of the Pi program, default ["pi"]; tests and the demo point it elsewhere.
    /// The runner appends `-p --mode json --model proxy/<model> --approve`.
    pub command: Vec<String>,
    /// The agent's cwd (the checkout, or its serviceDirectory).
    pub work_dir: PathBuf,
    /// The per-job HOME, prepared by [`super::prepare_pi_home`].
    pub home_dir: PathBuf,
    /// Added to the environment. Entries carrying one of the job's tokens are dropped.
    pub extra_env: Vec<(String, String)>,
    /// Worker environment variables the agent must not inherit (e.g. `AMQP_URL`).
    pub env_remove: Vec<String>,
    /// SIGTERM to the group, this long, then SIGKILL.
    pub kill_grace: Duration,
}

impl PiInvocation {
    /// `pi` in `work_dir` with `home_dir`, no extra environment, a 5 s kill grace.
    pub fn new(work_dir: impl Into<PathBuf>, home_dir: impl Into<PathBuf>) -> Self {
        Self {
            command: vec!["pi".to_owned()],
            work_dir: work_dir.into(),
            home_dir: home_dir.into(),
            extra_env: Vec::new(),
            env_remove: Vec::new(),
            kill_grace: Duration::from_secs(5),
        }
    }
}

/// The arguments appended to [`PiInvocation::command`]. The prompt is never among them: Pi has
/// no `--` terminator, so a prompt starting with `-` would read as a flag.
pub fn pi_args(model: &str) -> Vec<String> {
    vec![
        "-p".into(),
        "--mode".into(),
        "json".into(),
        "--model".into(),
        format!("proxy/{model}"),
        "--approve".into(),
    ]
}

/// Every token the job carries, by value.
fn job_secrets(job: &AgentJob) -> Vec<&str> {
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

/// The child's whole environment: `inherited` minus [`PiInvocation::env_remove`], minus
/// `GIT_ASKPASS*` (the agent must not push by itself), minus any value carrying a job token,
/// plus `extra_env`, with `HOME` and `PI_CODING_AGENT_DIR` always pointing at the job's HOME.
pub fn child_env<I>(inherited: I, inv: &PiInvocation, secrets: &[&str]) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    const PINNED: [&str; 2] = ["HOME", "PI_CODING_AGENT_DIR"];
    let dropped = |key: &OsStr| {
        let key = key.to_string_lossy();
        key.starts_with("GIT_ASKPASS")
            || PINNED.contains(&key.as_ref())
            || inv.env_remove.iter().any(|r| *r == key)
    };
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    for (key, value) in inherited {
        if dropped(&key) {
            continue;
        }
        if carries_secret(&value, secrets) {
            tracing::warn!(var = %key.to_string_lossy(), "not passing a variable that carries a job token to the agent");
            continue;
        }
        env.push((key, value));
    }
    for (key, value) in &inv.extra_env {
        if PINNED.contains(&key.as_str()) {
            continue;
        }
        if carries_secret(OsStr::new(value), secrets) {
            tracing::warn!(var = %key, "not passing a variable that carries a job token to the agent");
            continue;
        }
        env.retain(|(k, _)| k != OsStr::new(key));
        env.push((key.into(), value.into()));
    }
    env.push(("HOME".into(), inv.home_dir.clone().into_os_string()));
    env.push((
        "PI_CODING_AGENT_DIR".into(),
        pi_agent_dir(&inv.home_dir).into_os_string(),
    ));
    env
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Feeds Pi's output to the stream parser and the observer.
struct PiSink<'a> {
    stream: PiStream,
    observer: &'a dyn AgentObserver,
}

impl OutputSink for PiSink<'_> {
    fn on_chunk(&mut self) {
        self.observer.on_activity();
    }

    fn on_stdout_line(&mut self, line: &[u8], _at_close: bool) -> ControlFlow<String> {
        let effects = self.stream.on_line(line, now_ms());
        if let Some(progress) = effects.progress {
            self.observer.on_progress(progress);
        }
        if let Some(span) = effects.span {
            self.observer.on_span(span);
        }
        // The progress guard (seed 5.2) plugs in here: it observes `effects.tool_end` (not at
        // close, and not once tripped) and returns `Break(reason)` to stop Pi, which then ends
        // as `AgentError::Stopped`.
        ControlFlow::Continue(())
    }

    fn on_overlong_line(&mut self) {
        self.stream.on_overlong_line();
    }
}

/// Runs Pi for `job` as `inv` says, reporting activity, todo progress and tool spans to
/// `observer`, until it exits or `cancel` fires (then the whole process group is killed).
/// `inv.home_dir` must have been prepared with [`super::prepare_pi_home`].
pub async fn run_pi(
    job: &AgentJob,
    inv: &PiInvocation,
    observer: Arc<dyn AgentObserver>,
    cancel: CancellationToken,
) -> Result<AgentRun, AgentError> {
    if cancel.is_cancelled() {
        return Err(AgentError::Cancelled);
    }
    let Some((program, prefix)) = inv.command.split_first() else {
        return Err(AgentError::Spawn {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty Pi command"),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(prefix)
        .args(pi_args(&job.model))
        .current_dir(&inv.work_dir)
        .env_clear()
        .envs(child_env(std::env::vars_os(), inv, &job_secrets(job)));
    let limits = Limits {
        kill_grace: inv.kill_grace,
        // Bytes, so that STDERR_TAIL_CHARS of multi-byte text still fit.
        stderr_tail_bytes: STDERR_TAIL_CHARS * 4,
        ..Limits::default()
    };
    let mut sink = PiSink {
        stream: PiStream::new(now_ms()),
        observer: observer.as_ref(),
    };
    let finished = process::supervise(
        cmd,
        job.user_prompt.clone().into_bytes(),
        limits,
        &cancel,
        &mut sink,
    )
    .await
    .map_err(|e| match e {
        SuperviseError::Spawn(source) => AgentError::Spawn {
            program: program.clone(),
            source,
        },
        SuperviseError::Wait(source) => AgentError::Io {
            context: "waiting for pi failed",
            source,
        },
    })?;
    let outcome = sink.stream.outcome(&finished.stdout_tail);
    if outcome.malformed_lines > 0 {
        tracing::warn!(
            malformed_lines = outcome.malformed_lines,
            "pi: skipped malformed JSONL lines"
        );
    }
    decide(&job.redactor(), finished, outcome)
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The exit decision (seed 5.1.3): a stop or a cancel wins over any exit status; a clean exit
/// is still a failure when the stream ended on an upstream error.
fn decide(
    redactor: &Redactor,
    finished: Finished,
    outcome: PiOutcome,
) -> Result<AgentRun, AgentError> {
    let stderr = tail_chars(&finished.stderr_tail, STDERR_TAIL_CHARS).trim();
    let stderr_tail =
        |chars: usize| non_empty(tail_chars(&redactor.redact(stderr), chars).to_owned());
    match finished.ending {
        Ending::Stopped(reason) => Err(AgentError::Stopped {
            reason: redactor.redact(&reason),
            stderr_tail: stderr_tail(STOP_STDERR_CHARS),
        }),
        Ending::Cancelled => Err(AgentError::Cancelled),
        Ending::Exited(status) if status.success() => match outcome.terminal_error {
            Some(message) => Err(AgentError::RunFailed {
                message: head_chars(&redactor.redact(&message), TERMINAL_MESSAGE_CHARS).to_owned(),
                stderr_tail: stderr_tail(RESULT_STDERR_CHARS),
                stats: outcome.stats,
                usage: outcome.usage,
            }),
            None => Ok(AgentRun {
                summary: outcome.summary,
                stats: outcome.stats,
                usage: outcome.usage,
                stderr_tail: stderr_tail(RESULT_STDERR_CHARS),
                diagnostics: outcome.diagnostics,
            }),
        },
        Ending::Exited(status) => {
            let source = if stderr.is_empty() {
                finished.stdout_tail.trim()
            } else {
                stderr
            };
            Err(AgentError::Exited {
                code: status.code(),
                signal: status.signal(),
                output_tail: tail_chars(&redactor.redact(source), EXIT_OUTPUT_CHARS).to_owned(),
            })
        }
    }
}

#[cfg(test)]
#[path = "pi_tests.rs"]
mod tests;
