//! The Pi runner (seed 5.1): `pi -p --mode json --model proxy/<model> --approve` in the job's
//! work dir with the job's own HOME, the prompt on stdin, the event stream parsed as it
//! arrives, and the exit decision of seed 5.1.3 (widened to catch failed runs that exit 0).
//!
//! The session token reaches Pi only through `models.json` (see [`super::home`]): it is
//! never in the child's argv or environment, which every tool the agent runs would inherit.

use std::ffi::OsString;
use std::ops::ControlFlow;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::home::pi_agent_dir;
use super::stream::{PiOutcome, PiStream};
use crate::agent::guard::ProgressGuard;
use crate::agent::invocation::{compose_env, job_secrets, Invocation};
use crate::agent::process::{self, Ending, Finished, Limits, OutputSink, SuperviseError};
use crate::agent::upstream::llm_refusal_remedy;
use crate::agent::{now_ms, AgentError, AgentObserver, AgentRun};
use crate::job::outcome::{RunStats, Usage};
use crate::job::AgentJob;
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

/// The arguments appended to [`Invocation::command`]. The prompt is never among them: Pi has
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

/// Pi's environment (see `invocation::compose_env`) with `HOME` and `PI_CODING_AGENT_DIR` always pointing
/// at the job's HOME.
pub fn child_env<I>(inherited: I, inv: &Invocation, secrets: &[&str]) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let pinned = vec![
        ("HOME".to_owned(), inv.home_dir.clone().into_os_string()),
        (
            "PI_CODING_AGENT_DIR".to_owned(),
            pi_agent_dir(&inv.home_dir).into_os_string(),
        ),
    ];
    compose_env(inherited, inv, secrets, &[], pinned)
}

/// Feeds Pi's output to the stream parser, the observer and the progress guard.
struct PiSink<'a> {
    stream: PiStream,
    observer: &'a dyn AgentObserver,
    guard: ProgressGuard,
}

impl OutputSink for PiSink<'_> {
    fn on_chunk(&mut self) {
        self.observer.on_activity();
    }

    fn on_stdout_line(&mut self, line: &[u8], at_close: bool) -> ControlFlow<String> {
        let effects = self.stream.on_line(line, now_ms());
        if let Some(progress) = effects.progress {
            self.observer.on_progress(progress);
        }
        if let Some(span) = effects.span {
            self.observer.on_span(span);
        }
        if let Some(call) = effects.call {
            self.observer.on_call(call);
        }
        // The guard skips the unterminated last line, so a clean exit is never turned into a
        // guard failure (seed 5.1.2).
        match effects.tool_end {
            Some(t) if !at_close => match self.guard.observe(&t.tool_name, t.is_error) {
                Some(reason) => ControlFlow::Break(reason),
                None => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        }
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
    inv: &Invocation,
    observer: Arc<dyn AgentObserver>,
    cancel: CancellationToken,
) -> Result<AgentRun, AgentError> {
    if cancel.is_cancelled() {
        return Err(AgentError::Cancelled);
    }
    let program = inv.command.first().cloned().unwrap_or_default();
    let mut cmd = inv
        .command(&pi_args(&job.model), &[])
        .map_err(|source| AgentError::Spawn {
            command: "pi",
            program: program.clone(),
            source,
        })?;
    cmd.env_clear()
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
        guard: ProgressGuard::new(inv.guard, inv.expects_edits),
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
            command: "pi",
            program: program.clone(),
            source,
        },
        SuperviseError::Wait(source) => AgentError::Io {
            context: "waiting for pi failed",
            source,
        },
    })?;
    let finished = inv.unwrap_finished(finished);
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
            Some(message) => {
                let failed = AgentError::RunFailed {
                    message: head_chars(&redactor.redact(&message), TERMINAL_MESSAGE_CHARS)
                        .to_owned(),
                    stderr_tail: stderr_tail(RESULT_STDERR_CHARS),
                    stats: outcome.stats,
                    usage: outcome.usage,
                };
                Err(refused_upstream(
                    failed,
                    &message,
                    outcome.stats,
                    outcome.usage,
                ))
            }
            None if !outcome.saw_terminal && outcome.oversized_lines > 0 => {
                Err(AgentError::TerminalRecordDropped {
                    oversized: outcome.oversized_lines,
                    stderr_tail: stderr_tail(RESULT_STDERR_CHARS),
                })
            }
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
            let raw = tail_chars(source, EXIT_OUTPUT_CHARS);
            let exited = AgentError::Exited {
                command: "pi",
                code: status.code(),
                signal: status.signal(),
                output_tail: tail_chars(&redactor.redact(source), EXIT_OUTPUT_CHARS).to_owned(),
            };
            Err(refused_upstream(exited, raw, outcome.stats, outcome.usage))
        }
    }
}

/// `failed` as an `llm-upstream` failure with its fix when `raw` (the unredacted terminal
/// error or exit output) is a model-endpoint refusal; else `failed` as it is. Only Pi's: the
/// subscription CLIs say nothing contractual about their endpoint (seed-later 4.3).
fn refused_upstream(
    failed: AgentError,
    raw: &str,
    stats: RunStats,
    usage: Option<Usage>,
) -> AgentError {
    match llm_refusal_remedy(raw) {
        Some(remedy) => AgentError::LlmUpstream {
            detail: failed.to_string(),
            remedy,
            stats,
            usage,
        },
        None => failed,
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
