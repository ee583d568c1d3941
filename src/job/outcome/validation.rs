//! The pre-PR validation report (seed-later 1.4) as it crosses the wire, on `job.progress`
//! after every attempt and on `job.result`, and the failure text of a budget spent (1.7).

use serde::{Deserialize, Serialize};

/// One check's outcome in one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    pub label: String,
    pub command: String,
    /// The command's exit code; 128 + N for a death by signal N (as a shell reports it),
    /// 124 for a timeout, 127 when it could not start, 130 when the job was stopped.
    pub exit_code: i32,
    pub passed: bool,
    /// The scrubbed end of its interleaved stdout and stderr, at most 4,000 bytes plus a
    /// marker; absent when it printed nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<bool>,
}

/// One attempt: every check, in order, never short-circuited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationReport {
    /// Every check passed.
    pub passed: bool,
    /// This attempt's 1-based ordinal.
    pub attempts: u32,
    pub max_attempts: u32,
    pub outcomes: Vec<CheckOutcome>,
    /// Epoch milliseconds.
    pub at: u64,
}

impl CheckOutcome {
    /// Why it failed, as the repair prompt and the failure text say it.
    pub fn reason(&self) -> String {
        command_failure(
            self.exit_code,
            self.timed_out == Some(true),
            self.duration_ms,
        )
    }
}

/// Why a job's command (a check, the install) failed: `timed out after <N>s` or `exited <code>`.
pub fn command_failure(exit_code: i32, timed_out: bool, duration_ms: u64) -> String {
    if timed_out {
        format!("timed out after {}s", (duration_ms + 500) / 1000)
    } else {
        format!("exited {exit_code}")
    }
}

impl ValidationReport {
    /// The result's `error` when the budget is spent with checks still red (seed-later 1.7):
    /// the failed checks, that no PR was opened, and the last failed check's output.
    pub fn failure_message(&self) -> String {
        let failed: Vec<&CheckOutcome> = self.outcomes.iter().filter(|o| !o.passed).collect();
        let mut text = format!(
            "pre-PR validation failed after {} of {} attempt(s)",
            self.attempts, self.max_attempts
        );
        if !failed.is_empty() {
            let names: Vec<String> = failed
                .iter()
                .map(|o| format!("{} (exit {})", o.label, o.exit_code))
                .collect();
            text.push_str(": ");
            text.push_str(&names.join(", "));
        }
        text.push_str(
            ". No pull request was opened; the work is pushed to the branch, where a retry resumes it.",
        );
        if let Some(last) = failed.last() {
            if let Some(tail) = last.output_tail.as_deref().map(str::trim) {
                if !tail.is_empty() {
                    text.push_str(&format!("\n\n$ {}\n{tail}", last.command));
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(label: &str, exit_code: i32, tail: Option<&str>) -> CheckOutcome {
        CheckOutcome {
            label: label.into(),
            command: format!("run {label}"),
            exit_code,
            passed: exit_code == 0,
            output_tail: tail.map(str::to_owned),
            duration_ms: 1200,
            timed_out: None,
        }
    }

    #[test]
    fn a_spent_budget_names_every_failed_check_and_shows_the_last_ones_output() {
        let report = ValidationReport {
            passed: false,
            attempts: 3,
            max_attempts: 3,
            outcomes: vec![
                outcome("lint", 1, Some("lint says no")),
                outcome("build", 0, Some("ok")),
                outcome("test", 2, Some("  1 failed\n")),
            ],
            at: 1,
        };
        assert_eq!(
            report.failure_message(),
            "pre-PR validation failed after 3 of 3 attempt(s): lint (exit 1), test (exit 2). \
             No pull request was opened; the work is pushed to the branch, where a retry resumes it.\
             \n\n$ run test\n1 failed"
        );
    }

    #[test]
    fn the_report_crosses_the_wire_in_camel_case_without_empty_fields() {
        let mut timed_out = outcome("slow", 124, None);
        timed_out.timed_out = Some(true);
        assert_eq!(timed_out.reason(), "timed out after 1s");
        let v = serde_json::to_value(&timed_out).unwrap();
        assert_eq!(v["exitCode"], 124);
        assert_eq!(v["durationMs"], 1200);
        assert_eq!(v["timedOut"], true);
        assert!(v.get("outputTail").is_none());
        assert_eq!(outcome("x", 3, None).reason(), "exited 3");
    }
}
