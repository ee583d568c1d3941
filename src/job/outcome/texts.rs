//! The clean-exit failure texts of conflict resolution and bootstrap (seed 3.7), word for word.

use super::RunStats;
use crate::redact::tail_chars;

/// ` The agent never acted (no tool calls, no model output) — it most likely could not reach
/// the model.`
pub const NEVER_ACTED_CAUSE: &str = " The agent never acted (no tool calls, no model output) \
                                     \u{2014} it most likely could not reach the model.";

/// How many unresolved files the text names.
const UNRESOLVED_LISTED: usize = 10;

/// How much of the stderr tail or the summary the texts quote.
const QUOTED_CHARS: usize = 700;

/// `The agent did not resolve all merge conflicts (<n> file(s) still conflicted: <first 10>).`
/// + the never-acted cause + the stderr tail.
pub fn unresolved_conflicts_reason(
    paths: &[String],
    stats: &RunStats,
    stderr_tail: Option<&str>,
) -> String {
    let listed = paths[..paths.len().min(UNRESOLVED_LISTED)].join(", ");
    let mut out = format!(
        "The agent did not resolve all merge conflicts ({} file(s) still conflicted: {listed}).",
        paths.len()
    );
    if stats.never_acted() {
        out.push_str(NEVER_ACTED_CAUSE);
    }
    out.push_str(&tail(stderr_tail, None));
    out
}

/// `the bootstrapper agent <what> (tool calls: <n>, assistant output: <m> chars).` + the
/// never-acted cause + the stderr tail, or else the start of the summary. `<what>` depends on
/// whether there was a reference to adapt.
pub fn bootstrap_no_op_reason(
    from_scratch: bool,
    stats: &RunStats,
    stderr_tail: Option<&str>,
    summary: &str,
) -> String {
    let what = if from_scratch {
        "scaffolded no files"
    } else {
        "made no changes to the reference architecture"
    };
    let mut out = format!(
        "the bootstrapper agent {what} (tool calls: {}, assistant output: {} chars).",
        stats.tool_calls, stats.assistant_chars
    );
    if stats.never_acted() {
        out.push_str(NEVER_ACTED_CAUSE);
    }
    out.push_str(&tail(stderr_tail, Some(summary)));
    out
}

/// `TAIL(stderr)` and `TAIL(stderr, summary)` of seed 3.7.
pub(super) fn tail(stderr_tail: Option<&str>, summary: Option<&str>) -> String {
    match (
        stderr_tail.filter(|t| !t.is_empty()),
        summary.filter(|s| !s.is_empty()),
    ) {
        (Some(stderr), _) => format!(" Agent stderr: {}", tail_chars(stderr, QUOTED_CHARS)),
        (None, Some(summary)) => {
            let head: String = summary.chars().take(QUOTED_CHARS).collect();
            format!(" Agent output: {head}")
        }
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTED: RunStats = RunStats {
        tool_calls: 3,
        assistant_chars: 42,
    };

    #[test]
    fn the_unresolved_text_names_at_most_ten_files_and_the_stderr_tail() {
        let paths: Vec<String> = (1..=12).map(|i| format!("f{i}.txt")).collect();
        assert_eq!(
            unresolved_conflicts_reason(&paths[..2], &ACTED, None),
            "The agent did not resolve all merge conflicts (2 file(s) still conflicted: f1.txt, f2.txt)."
        );
        assert_eq!(
            unresolved_conflicts_reason(&paths, &RunStats::default(), Some("boom")),
            "The agent did not resolve all merge conflicts (12 file(s) still conflicted: f1.txt, \
             f2.txt, f3.txt, f4.txt, f5.txt, f6.txt, f7.txt, f8.txt, f9.txt, f10.txt). The agent \
             never acted (no tool calls, no model output) \u{2014} it most likely could not reach \
             the model. Agent stderr: boom"
        );
    }

    #[test]
    fn the_bootstrap_no_op_text_says_what_was_missing_and_quotes_stderr_or_the_summary() {
        assert_eq!(
            bootstrap_no_op_reason(false, &ACTED, None, "I looked around."),
            "the bootstrapper agent made no changes to the reference architecture (tool calls: 3, \
             assistant output: 42 chars). Agent output: I looked around."
        );
        assert_eq!(
            bootstrap_no_op_reason(true, &RunStats::default(), Some("err"), "ignored"),
            "the bootstrapper agent scaffolded no files (tool calls: 0, assistant output: 0 \
             chars). The agent never acted (no tool calls, no model output) \u{2014} it most \
             likely could not reach the model. Agent stderr: err"
        );
        let long = "x".repeat(800);
        let text = bootstrap_no_op_reason(true, &ACTED, None, &long);
        assert!(text.ends_with(&format!(" Agent output: {}", "x".repeat(700))));
    }
}
