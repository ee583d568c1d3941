//! The Claude Code and Codex runners (seed 5.3 to 5.5): each CLI runs like Pi, under
//! [`process::supervise`] (own process group, both streams drained with bounded memory, the
//! group killed on cancel or drop), with the prompt on stdin, an isolated config home made for
//! the run and removed when it ends (however it ends), and the subscription token only where
//! that CLI reads it: Claude Code's environment for this run, Codex's `auth.json`. Their stdout
//! feeds the observer and the progress guard as Pi's does.

use std::ffi::OsString;
use std::ops::ControlFlow;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::claude::{claude_args, claude_run_env, claude_system_prompt, prepare_claude_home};
use super::claude_stream::ClaudeStream;
use super::codex::{codex_args, codex_prompt, prepare_codex_home, CodexStream};
use super::mcp::claude_mcp_config_path;
use super::setup::{codex_home_for, config_home, prepare_home, CLAUDE_HOME_DIR};
use super::stream::CliStream;
use crate::agent::guard::ProgressGuard;
use crate::agent::invocation::{compose_env, job_secrets, Invocation};
use crate::agent::process::{self, Ending, Finished, Limits, OutputSink, SuperviseError};
use crate::agent::{now_ms, trajectory, AgentError, AgentObserver, AgentRun, RunDiagnostics};
use crate::job::outcome::ToolSpan;
use crate::job::{AgentJob, HarnessAuth};
use crate::redact::{tail_chars, Redactor};

/// Rolling stderr kept while the CLI runs (seed 5.5).
const STDERR_TAIL_CHARS: usize = 8000;
/// stderr quoted in every outcome and error (seed 5.5).
const RESULT_STDERR_CHARS: usize = 700;

/// Inherited variables that would override the job's credentials (or leak beside them), send
/// them to another endpoint or provider, or point the CLI at another login or settings file,
/// as read by Claude Code 2.1.197 and Codex 0.142.4. Listed one by one rather than by prefix:
/// most `ANTHROPIC_*` / `CLAUDE_*` variables are harmless knobs an operator may set on purpose.
/// Stripped from the worker's environment and from `agent.env` alike; the run's own pairs are
/// pinned afterwards.
pub const STRIPPED_ENV: &[&str] = &[
    // Claude Code's credentials. Its precedence is an API key, then an auth token, then OAuth
    // (a token, an `ant auth login` profile, workload identity): any of them beats the job's.
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_IDENTITY_TOKEN",
    "ANTHROPIC_IDENTITY_TOKEN_FILE",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_REFRESH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR",
    "CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR",
    "CLAUDE_CODE_SESSION_ACCESS_TOKEN",
    // Where Claude Code sends the token, with what, and which provider replaces the
    // Messages API (Bedrock, Vertex, Foundry, ... would ignore the job's token).
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_API_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_UNIX_SOCKET",
    "CLAUDE_CODE_CUSTOM_OAUTH_URL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_USE_ANTHROPIC_AWS",
    "CLAUDE_CODE_USE_MANTLE",
    "CLAUDE_CODE_USE_GATEWAY",
    // Claude Code's config and credential stores, and settings files whose `env` or
    // `apiKeyHelper` could set any of the above.
    "CLAUDE_CONFIG_DIR",
    "ANTHROPIC_CONFIG_DIR",
    "CLAUDE_SECURESTORAGE_CONFIG_DIR",
    "CLAUDE_CODE_MANAGED_SETTINGS_PATH",
    "CLAUDE_CODE_REMOTE_SETTINGS_PATH",
    // Codex's credentials from the environment, which it may prefer to `auth.json`, and its
    // home.
    "OPENAI_API_KEY",
    "CODEX_API_KEY",
    "CODEX_ACCESS_TOKEN",
    "CODEX_HOME",
];

/// Runs Claude Code for `job` (seed 5.3): `claude -p --output-format stream-json ...` with the
/// system prompt as `--append-system-prompt` and the user prompt on stdin, its config home at
/// `<inv.home_dir>/.claude` (removed when the run ends), until it exits or `cancel` fires.
pub async fn run_claude(
    job: &AgentJob,
    inv: &Invocation,
    observer: Arc<dyn AgentObserver>,
    cancel: CancellationToken,
) -> Result<AgentRun, AgentError> {
    if cancel.is_cancelled() {
        return Err(AgentError::Cancelled);
    }
    let home = config_home(inv.home_dir.join(CLAUDE_HOME_DIR));
    let result = async {
        let mut env =
            prepare_home(job, inv, home.path().to_path_buf(), prepare_claude_home).await?;
        env.extend(claude_run_env(running_as_root(inv)));
        let mcp_config = claude_mcp_config_path(job, home.path());
        let run = CliRun {
            cli: "claude",
            args: claude_args(job, &claude_system_prompt(job), mcp_config.as_deref()),
            prompt: job.user_prompt.clone(),
            env,
            own: Vec::new(),
            stream: ClaudeStream::new(job.redactor()),
        };
        run_cli(job, inv, run, observer, cancel).await
    }
    .await;
    home.remove().await;
    result
}

/// Runs Codex for `job` (seed 5.4): `codex exec --json ... -` with the system and user prompts
/// on stdin, until it exits or `cancel` fires. Its `CODEX_HOME` (which holds the token) is
/// [`codex_home_for`], removed when the run ends.
pub async fn run_codex(
    job: &AgentJob,
    inv: &Invocation,
    observer: Arc<dyn AgentObserver>,
    cancel: CancellationToken,
) -> Result<AgentRun, AgentError> {
    if cancel.is_cancelled() {
        return Err(AgentError::Cancelled);
    }
    let home = config_home(codex_home_for(job, inv));
    if home.path().starts_with(std::env::temp_dir()) {
        tracing::warn!(
            codex_home = %home.path().display(),
            "CODEX_HOME is under the temp dir: Codex runs without its apply_patch helper \
             (set agent.codex_home_root elsewhere)"
        );
    }
    let result = async {
        let env = prepare_home(job, inv, home.path().to_path_buf(), prepare_codex_home).await?;
        let run = CliRun {
            cli: "codex",
            args: codex_args(job),
            prompt: codex_prompt(job),
            env,
            // Outside the job's HOME when `codex_home_root` is set.
            own: vec![home.path().to_path_buf()],
            stream: CodexStream::new(job.redactor()),
        };
        run_cli(job, inv, run, observer, cancel).await
    }
    .await;
    home.remove().await;
    result
}

/// Whether the CLI runs as root: the worker is root and the sandbox does not switch users
/// (Claude Code then needs to be told it is sandboxed).
fn running_as_root(inv: &Invocation) -> bool {
    crate::sys::effective_uid() == 0 && inv.sandbox.run_as().is_none()
}

/// One CLI run, ready to start.
struct CliRun<S> {
    /// The CLI as the seed names it in errors.
    cli: &'static str,
    args: Vec<String>,
    prompt: String,
    /// The pairs the home preparation returned (config dir, token); empty with ambient auth.
    env: Vec<(String, String)>,
    /// Directories of this run the CLI may write besides the job's own.
    own: Vec<std::path::PathBuf>,
    stream: S,
}

async fn run_cli<S: CliStream>(
    job: &AgentJob,
    inv: &Invocation,
    run: CliRun<S>,
    observer: Arc<dyn AgentObserver>,
    cancel: CancellationToken,
) -> Result<AgentRun, AgentError> {
    let cli = run.cli;
    let program = inv.command.first().cloned().unwrap_or_default();
    let mut cmd = inv
        .command(&run.args, &run.own)
        .map_err(|source| AgentError::Spawn {
            command: cli,
            program: program.clone(),
            source,
        })?;
    cmd.env_clear()
        .envs(cli_env(std::env::vars_os(), job, inv, run.env));
    let limits = Limits {
        kill_grace: inv.kill_grace,
        // Bytes, so that STDERR_TAIL_CHARS of multi-byte text still fit.
        stderr_tail_bytes: STDERR_TAIL_CHARS * 4,
        ..Limits::default()
    };
    let mut sink = CliSink {
        stream: run.stream,
        observer: observer.as_ref(),
        guard: ProgressGuard::new(inv.guard, inv.expects_edits),
        last_span_end_ms: now_ms(),
    };
    let finished = process::supervise(cmd, run.prompt.into_bytes(), limits, &cancel, &mut sink)
        .await
        .map_err(|e| match e {
            SuperviseError::Spawn(source) => AgentError::Spawn {
                command: cli,
                program: program.clone(),
                source,
            },
            SuperviseError::Wait(source) => AgentError::Io {
                context: "waiting for the agent failed",
                source,
            },
        })?;
    // A run killed mid-call still spent its tokens: its open calls are recorded as they are.
    for call in sink.stream.flush_calls() {
        observer.on_call(call);
    }
    let finished = inv.unwrap_finished(finished);
    decide(cli, &job.redactor(), finished, sink.stream)
}

/// The CLI's whole environment (see [`compose_env`]). With the job's own credentials, HOME is
/// the job's, the inherited variables of [`STRIPPED_ENV`] are dropped, and `pairs` (the config
/// home, Claude Code's token, the runner's own settings) are pinned. Ambient auth is the
/// operator's own login: their HOME, config dirs and keys stay, and only `pairs` are pinned.
pub(super) fn cli_env<I>(
    inherited: I,
    job: &AgentJob,
    inv: &Invocation,
    pairs: Vec<(String, String)>,
) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let ambient = matches!(
        job.auth,
        HarnessAuth::Subscription {
            ambient_auth: true,
            ..
        }
    );
    let secrets = job_secrets(job);
    let pairs = pairs.into_iter().map(|(k, v)| (k, OsString::from(v)));
    if ambient {
        return compose_env(inherited, inv, &secrets, &[], pairs.collect());
    }
    let mut pinned = vec![("HOME".to_owned(), inv.home_dir.clone().into_os_string())];
    pinned.extend(pairs);
    compose_env(inherited, inv, &secrets, STRIPPED_ENV, pinned)
}

/// Feeds the CLI's output to its stream parser, the observer and the progress guard.
struct CliSink<'a, S> {
    stream: S,
    observer: &'a dyn AgentObserver,
    guard: ProgressGuard,
    /// Epoch ms the previous span ended: the start of a call whose start was never announced.
    last_span_end_ms: u64,
}

impl<S: CliStream> OutputSink for CliSink<'_, S> {
    fn on_chunk(&mut self) {
        self.observer.on_activity();
    }

    fn on_stdout_line(&mut self, line: &[u8], at_close: bool) -> ControlFlow<String> {
        let effects = self
            .stream
            .feed_at(&String::from_utf8_lossy(line), Instant::now());
        if let Some(progress) = effects.progress {
            self.observer.on_progress(progress);
        }
        let now = now_ms();
        let mut stop = None;
        for tool in effects.tools {
            let started_at = match tool.duration {
                Some(d) => now.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                None => self.last_span_end_ms,
            };
            // The unterminated last line is not guarded (seed 5.1.2), and a tripped guard
            // reports only once.
            if !at_close {
                stop = stop.or(self.guard.observe(S::guard_name(&tool.name), tool.is_error));
            }
            let span = ToolSpan::new(tool.name, started_at, now, !tool.is_error);
            self.observer
                .on_span(trajectory::with_bodies(span, tool.args, tool.result));
            self.last_span_end_ms = now;
        }
        for call in effects.calls {
            self.observer.on_call(call);
        }
        if let Some(servers) = effects.tool_servers {
            self.observer.on_tool_servers(servers);
        }
        match stop {
            Some(reason) => ControlFlow::Break(reason),
            None => ControlFlow::Continue(()),
        }
    }

    /// Swallowed silently, as the seed's subscription runners swallow malformed lines.
    fn on_overlong_line(&mut self) {}
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The exit decision (seed 5.5, with Q18 fixed): a guard stop or a cancel wins over any exit
/// status; a non-zero exit quotes stderr; a clean exit is still a failure when the stream
/// reported one (Claude Code's error result, Codex's failed turn).
fn decide<S: CliStream>(
    cli: &'static str,
    redactor: &Redactor,
    finished: Finished,
    stream: S,
) -> Result<AgentRun, AgentError> {
    let stderr = tail_chars(&finished.stderr_tail, STDERR_TAIL_CHARS).trim();
    let redacted = redactor.redact(stderr);
    let stderr_tail = tail_chars(&redacted, RESULT_STDERR_CHARS);
    match finished.ending {
        Ending::Stopped(reason) => Err(AgentError::Stopped {
            reason: redactor.redact(&reason),
            stderr_tail: non_empty(stderr_tail),
        }),
        Ending::Cancelled => Err(AgentError::Cancelled),
        Ending::Exited(status) if !status.success() => Err(AgentError::Exited {
            command: cli,
            code: status.code(),
            signal: status.signal(),
            output_tail: stderr_tail.to_owned(),
        }),
        Ending::Exited(_) => {
            let (outcome, failure) = stream.into_outcome();
            match failure {
                Some(message) => Err(AgentError::RunFailed {
                    message,
                    stderr_tail: non_empty(stderr_tail),
                    stats: outcome.stats,
                    usage: outcome.usage,
                }),
                None => Ok(AgentRun {
                    summary: outcome.summary,
                    stats: outcome.stats,
                    usage: outcome.usage,
                    stderr_tail: non_empty(stderr_tail),
                    diagnostics: RunDiagnostics::default(),
                }),
            }
        }
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "runner_mcp_tests.rs"]
mod mcp_tests;
