//! One of the job's own shell commands (the dependency install, a pre-PR check), run as its
//! agent is and watched as its agent is: the inactivity window fed by a heartbeat while it
//! runs, its output scrubbed of the job's secrets and cut to the budgets the report and the
//! prompts allow.

use std::time::Duration;

use crate::agent::{run_captured, Captured, CapturedCommand, Invocation};
use crate::worker::context::JobRun;

/// Bytes of a command's output a report carries.
pub const REPORT_TAIL_BYTES: usize = 4_000;
/// Bytes of a failed check's output a repair prompt shows.
pub const PROMPT_TAIL_BYTES: usize = 16_000;

/// A finished command with its scrubbed output.
#[derive(Debug)]
pub struct Ran {
    pub captured: Captured,
    /// At most [`REPORT_TAIL_BYTES`] plus a marker; `None` when it printed nothing.
    pub report_tail: Option<String>,
    /// At most [`PROMPT_TAIL_BYTES`]; `None` when it printed nothing.
    pub prompt_tail: Option<String>,
}

/// Runs `script` with `inv` (see [`crate::worker::agent_run::invocation`]), killed after
/// `timeout`.
pub async fn run_command(
    run: &JobRun<'_>,
    inv: &Invocation,
    script: &str,
    timeout: Duration,
) -> Ran {
    let cmd = CapturedCommand {
        script,
        timeout,
        heartbeat: run.ctx.config.command_heartbeat(),
    };
    let reporter = run.reporter.clone();
    let on_activity = move || reporter.activity();
    // Watched like the agent: a heartbeat, not output, keeps a long quiet command alive, and
    // its own timeout bounds it.
    run.reporter.agent_running(true);
    let captured = run_captured(run.job, inv, &cmd, &on_activity, run.cancel).await;
    run.reporter.agent_running(false);
    let scrubbed = run.job.redactor().redact(captured.tail.trim());
    let (report_tail, prompt_tail) = if scrubbed.is_empty() {
        (None, None)
    } else {
        let kept = tail_bytes(&scrubbed, REPORT_TAIL_BYTES);
        // What the capture never kept, plus what the report budget cuts now.
        let earlier = captured
            .output_bytes
            .saturating_sub(captured.tail.len() as u64)
            + (scrubbed.len() - kept.len()) as u64;
        let report = match earlier {
            0 => kept.to_owned(),
            n => format!("…({n} earlier chars trimmed)\n{kept}"),
        };
        (
            Some(report),
            Some(tail_bytes(&scrubbed, PROMPT_TAIL_BYTES).to_owned()),
        )
    };
    Ran {
        captured,
        report_tail,
        prompt_tail,
    }
}

/// The last `max` bytes of `s`, moved forward to a character boundary.
pub fn tail_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_tail_never_splits_a_character() {
        assert_eq!(tail_bytes("abc", 10), "abc");
        assert_eq!(tail_bytes("héllo", 5), "éllo");
        assert_eq!(tail_bytes("héllo", 4), "llo", "the é would be split");
        assert_eq!(tail_bytes("héllo", 6), "héllo");
    }
}
