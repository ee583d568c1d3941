//! The clean-exit failure texts of explore (seed 3.7), word for word.

use super::texts::{tail, NEVER_ACTED_CAUSE};
use super::{RunStats, NEVER_ACTED};

/// Why a structured explore's final answer cannot be used (the `failOnUnusableFinal` gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusableFinal {
    /// The final answer hit the output-token ceiling (checked first).
    CutOff,
    /// The final turn had no text.
    Empty,
}

impl UnusableFinal {
    fn cause(self) -> &'static str {
        match self {
            UnusableFinal::CutOff => {
                "its final answer hit the output-token ceiling and was cut off (raise the limit \
                 or narrow the task)"
            }
            UnusableFinal::Empty => {
                "its final turn produced no text (an empty completion), so there is no document \
                 to read"
            }
        }
    }
}

/// `the agent produced no report` + never-acted note + `.` + the stderr tail.
pub fn no_report_reason(stats: &RunStats, stderr_tail: Option<&str>) -> String {
    let mut out = String::from("the agent produced no report");
    if stats.never_acted() {
        out.push_str(NEVER_ACTED);
    }
    out.push('.');
    out.push_str(&tail(stderr_tail, None));
    out
}

/// `the agent did not return a usable result: <cause>.` + the stderr tail, or else the start
/// of the summary.
pub fn unusable_final_reason(
    why: UnusableFinal,
    stderr_tail: Option<&str>,
    summary: &str,
) -> String {
    format!(
        "the agent did not return a usable result: {}.{}",
        why.cause(),
        tail(stderr_tail, Some(summary))
    )
}

/// `the agent produced no structured result.` + the never-acted cause or the not-parseable
/// sentence + the structured diagnostics (`""` when no resolution ran) + the stderr tail.
pub fn no_structured_reason(
    stats: &RunStats,
    diagnostics_suffix: &str,
    stderr_tail: Option<&str>,
) -> String {
    let mut out = String::from("the agent produced no structured result.");
    if stats.never_acted() {
        out.push_str(NEVER_ACTED_CAUSE);
    } else {
        out.push_str(" The agent did not return a parseable JSON object.");
    }
    out.push_str(diagnostics_suffix);
    out.push_str(&tail(stderr_tail, None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTED: RunStats = RunStats {
        tool_calls: 3,
        assistant_chars: 42,
    };
    const NEVER: RunStats = RunStats {
        tool_calls: 0,
        assistant_chars: 0,
    };

    #[test]
    fn the_no_report_text_adds_the_never_acted_note_and_the_stderr_tail() {
        assert_eq!(
            no_report_reason(&NEVER, None),
            "the agent produced no report (the agent never acted \u{2014} it most likely could \
             not reach the model)."
        );
        assert_eq!(
            no_report_reason(&ACTED, Some("boom")),
            "the agent produced no report. Agent stderr: boom"
        );
        let long = format!("{}{}", "a".repeat(100), "b".repeat(700));
        assert_eq!(
            no_report_reason(&ACTED, Some(&long)),
            format!(
                "the agent produced no report. Agent stderr: {}",
                "b".repeat(700)
            )
        );
    }

    #[test]
    fn the_unusable_text_names_its_cause_and_quotes_stderr_or_else_the_summary() {
        assert_eq!(
            unusable_final_reason(UnusableFinal::CutOff, Some("warn"), "ignored"),
            "the agent did not return a usable result: its final answer hit the output-token \
             ceiling and was cut off (raise the limit or narrow the task). Agent stderr: warn"
        );
        assert_eq!(
            unusable_final_reason(UnusableFinal::Empty, None, "Looking around"),
            "the agent did not return a usable result: its final turn produced no text (an \
             empty completion), so there is no document to read. Agent output: Looking around"
        );
        assert_eq!(
            unusable_final_reason(UnusableFinal::Empty, Some(""), ""),
            "the agent did not return a usable result: its final turn produced no text (an \
             empty completion), so there is no document to read."
        );
        let long = "x".repeat(800);
        assert!(unusable_final_reason(UnusableFinal::Empty, None, &long)
            .ends_with(&format!(" Agent output: {}", "x".repeat(700))));
    }

    #[test]
    fn the_no_structured_text_explains_why_then_the_diagnostics_then_stderr() {
        assert_eq!(
            no_structured_reason(&ACTED, "", None),
            "the agent produced no structured result. The agent did not return a parseable JSON \
             object."
        );
        assert_eq!(
            no_structured_reason(&NEVER, " [structured repair did not help]", Some("e")),
            "the agent produced no structured result. The agent never acted (no tool calls, no \
             model output) \u{2014} it most likely could not reach the model. [structured repair \
             did not help] Agent stderr: e"
        );
    }
}
