//! A job's own shell commands beside the agent (the dependency install, the pre-PR checks):
//! `sh -c` in the agent's sandbox, directory and environment, in its own process group, with
//! stdout and stderr interleaved as a terminal shows them and only their end kept, bounded in
//! time, and fed into the job's activity clock while it runs.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::invocation::{compose_env, job_secrets, Invocation};
use super::process::{supervise, Ending, Limits, OutputSink};
use crate::job::AgentJob;

/// Bytes of the end of a command's output kept: 16,000 for the repair prompt and a margin, so
/// a secret straddling the cut is still whole when the tail is scrubbed.
pub const CAPTURE_BYTES: usize = 16_000 + 512;

/// The exit codes the outcome reports for endings that are not the command's own.
pub const TIMED_OUT: i32 = 124;
pub const NOT_STARTED: i32 = 127;
pub const STOPPED: i32 = 130;

/// One command to run.
#[derive(Debug, Clone)]
pub struct CapturedCommand<'a> {
    /// The shell command line, as the job gave it.
    pub script: &'a str,
    /// Killed (group TERM, grace, KILL) after this long.
    pub timeout: Duration,
    /// How often the activity callback runs while the command does.
    pub heartbeat: Duration,
}

/// How a command ended and the end of what it printed, not yet scrubbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Its own code; 128 + N after a death by signal N; [`TIMED_OUT`], [`NOT_STARTED`] or
    /// [`STOPPED`] otherwise.
    pub exit_code: i32,
    pub timed_out: bool,
    /// The job's token fired while it ran.
    pub stopped: bool,
    pub duration: Duration,
    /// The last [`CAPTURE_BYTES`] of its output, lossily decoded.
    pub tail: String,
    /// The size of its whole output.
    pub output_bytes: u64,
}

impl Captured {
    pub fn passed(&self) -> bool {
        self.exit_code == 0
    }
}

/// Runs `cmd` for `job` as `inv` would run its agent (sandbox, directory, environment without
/// the job's tokens), calling `on_activity` every heartbeat. Returns when the command and its
/// process group are gone. Never fails: a command that cannot start is exit code 127.
pub async fn run_captured(
    job: &AgentJob,
    inv: &Invocation,
    cmd: &CapturedCommand<'_>,
    on_activity: &(dyn Fn() + Sync),
    cancel: &CancellationToken,
) -> Captured {
    let started = Instant::now();
    // `exec 2>&1` on a line of its own: stderr joins stdout in order, and the job's command
    // line is parsed after it, unchanged.
    let script = format!("exec 2>&1\n{}", cmd.script);
    let mut command = inv.sandbox.command(
        "/bin/sh",
        &["-c".to_owned(), script],
        &inv.work_dir,
        &inv.own_dirs,
    );
    let pinned = vec![("HOME".to_owned(), inv.home_dir.clone().into_os_string())];
    let env = compose_env(std::env::vars_os(), inv, &job_secrets(job), &[], pinned);
    command.env_clear().envs(env);
    let limits = Limits {
        kill_grace: inv.kill_grace,
        max_line_bytes: 64 * 1024,
        stdout_tail_bytes: CAPTURE_BYTES,
        stderr_tail_bytes: 1024,
    };
    let token = cancel.child_token();
    let mut sink = Discard;
    let run = supervise(command, Vec::new(), limits, &token, &mut sink);
    tokio::pin!(run);
    let deadline = tokio::time::sleep(cmd.timeout);
    tokio::pin!(deadline);
    let mut beat = tokio::time::interval(cmd.heartbeat.max(Duration::from_millis(10)));
    let mut timed_out = false;
    let finished = loop {
        tokio::select! {
            finished = &mut run => break finished,
            _ = beat.tick() => on_activity(),
            _ = &mut deadline, if !timed_out => {
                tracing::warn!(timeout_ms = cmd.timeout.as_millis() as u64, "command timed out");
                timed_out = true;
                token.cancel();
            }
        }
    };
    on_activity();
    let duration = started.elapsed();
    let finished = match finished {
        Ok(finished) => finished,
        Err(e) => {
            tracing::warn!(error = %e, "command failed to start");
            return Captured {
                exit_code: NOT_STARTED,
                timed_out: false,
                stopped: false,
                duration,
                tail: String::new(),
                output_bytes: 0,
            };
        }
    };
    let stopped = !timed_out && cancel.is_cancelled();
    let exit_code = match &finished.ending {
        Ending::Exited(status) => exit_code(status),
        _ if timed_out => TIMED_OUT,
        _ => STOPPED,
    };
    Captured {
        exit_code,
        timed_out,
        stopped,
        duration,
        tail: finished.stdout_tail,
        output_bytes: finished.stdout_bytes,
    }
}

fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// Lines mean nothing here; only the tail is kept.
struct Discard;

impl OutputSink for Discard {
    fn on_chunk(&mut self) {}

    fn on_stdout_line(&mut self, _: &[u8], _: bool) -> ControlFlow<String> {
        ControlFlow::Continue(())
    }

    fn on_overlong_line(&mut self) {}
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn run(script: &str, timeout_ms: u64) -> (Captured, u32) {
        let dir = tempfile::tempdir().unwrap();
        let inv = Invocation::new(dir.path(), dir.path());
        let beats = AtomicU32::new(0);
        let on_activity = || {
            beats.fetch_add(1, Ordering::Relaxed);
        };
        let cmd = CapturedCommand {
            script,
            timeout: Duration::from_millis(timeout_ms),
            heartbeat: Duration::from_millis(20),
        };
        let job = crate::agent::test_support::job();
        let out = run_captured(&job, &inv, &cmd, &on_activity, &CancellationToken::new()).await;
        (out, beats.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn stdout_and_stderr_arrive_interleaved_with_the_commands_own_code() {
        let (out, _) = run("echo one; echo two >&2; echo three; exit 3", 10_000).await;
        assert_eq!(out.tail, "one\ntwo\nthree\n");
        assert_eq!(out.exit_code, 3);
        assert!(!out.passed() && !out.timed_out && !out.stopped);
    }

    #[tokio::test]
    async fn only_the_end_of_a_long_output_is_kept_and_its_size_is_known() {
        let (out, _) = run("head -c 100000 /dev/zero | tr '\\0' x; echo END", 10_000).await;
        assert_eq!(out.output_bytes, 100_004);
        assert_eq!(out.tail.len(), CAPTURE_BYTES);
        assert!(out.tail.ends_with("xEND\n"));
        assert!(out.passed());
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_children_and_reports_124() {
        let (out, beats) = run("sleep 30 & sleep 30; echo never", 300).await;
        assert_eq!(out.exit_code, TIMED_OUT);
        assert!(out.timed_out);
        assert!(out.duration < Duration::from_secs(10), "{:?}", out.duration);
        assert!(beats >= 3, "the heartbeat ran while it did: {beats}");
    }

    #[tokio::test]
    async fn a_death_by_signal_is_128_plus_the_signal_and_an_unknown_program_127() {
        let (out, _) = run("kill -9 $$", 10_000).await;
        assert_eq!(out.exit_code, 128 + 9);
        let (out, _) = run("no-such-program-anywhere", 10_000).await;
        assert_eq!(out.exit_code, NOT_STARTED);
        assert!(out.tail.contains("not found"), "{}", out.tail);
    }
}
