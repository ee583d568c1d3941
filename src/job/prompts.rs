//! What the worker adds to an agent's prompt: the dependency note (seed-later 2.3) and the
//! validation repair prompt (seed-later 1.6). Texts only; the flows decide when.

use super::outcome::ValidationReport;

/// `text` in a backtick fence no run of backticks inside it can close: one longer than the
/// longest run, and at least three.
pub fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}\n{}\n{fence}", text.trim_end_matches('\n'))
}

/// `prompt` with the notes that are there appended, each after a blank line.
pub fn with_notes(prompt: &str, notes: &[Option<&str>]) -> String {
    let mut out = prompt.to_owned();
    for note in notes.iter().flatten().filter(|n| !n.is_empty()) {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(note);
    }
    out
}

/// How a dependency install went, for the note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallNote<'a> {
    pub command: &'a str,
    /// Where it ran, relative to the agent's directory, when that is elsewhere.
    pub elsewhere: Option<&'a str>,
    /// `None` when it passed; else the reason (`exited 1`, `timed out after 30s`).
    pub failure: Option<String>,
    /// Its scrubbed output tail, shown when it failed.
    pub output_tail: Option<&'a str>,
    /// Tracked files it rewrote, which were put back.
    pub restored: &'a [String],
}

/// The note appended to every pass's prompt after a dependency install (seed-later 2.3).
pub fn dependency_note(note: &InstallNote<'_>) -> String {
    let command = note.command;
    let subject = match note.elsewhere {
        Some(dir) => format!("The `{}/` checkout's", dir.trim_end_matches('/')),
        None => "This checkout's".to_owned(),
    };
    let mut text = match &note.failure {
        None => format!(
            "{subject} dependencies have already been installed for you (`{command}`), so the\n\
             installed packages are present on disk. Read them directly to confirm what a dependency\n\
             actually exposes rather than inferring its API from the manifest, and do NOT re-run the\n\
             install unless you change the dependency manifest."
        ),
        Some(reason) => {
            let mut t = format!(
                "{subject} dependencies could NOT be installed for you: `{command}` {reason}.\n\
                 The installed packages are therefore missing or incomplete. You have network access, so you\n\
                 may install what you need yourself if it helps — but treat the failure below as a fact about\n\
                 the environment, not as a defect to fix as part of this task, and do not change the project’s\n\
                 dependency manifests to work around it."
            );
            if let Some(tail) = note.output_tail.filter(|t| !t.trim().is_empty()) {
                t.push_str("\n\n");
                t.push_str(&fenced(tail));
            }
            t
        }
    };
    if !note.restored.is_empty() {
        text.push_str(&format!(
            "\n\nThe install rewrote tracked files ({}); they were put back as the branch has them, \
             so the work does not carry the install's changes.",
            note.restored.join(", ")
        ));
    }
    text
}

/// The note that asks the agent to fill in the repository's PR template (seed-later 3.5):
/// `path` relative to the repository root, `text` when it is short enough to inline.
pub fn template_note(path: &str, chars: usize, text: Option<&str>) -> String {
    let mut note = format!(
        "PULL REQUEST TEMPLATE — This repository ships a pull request template at `{path}` \
         (relative to the repository root). Neither GitHub nor GitLab applies a template to a \
         pull request opened through the API, so following it is on you. Write \
         `.cat-pr-description.md` as that template, FILLED IN: keep its headings, their order \
         and its structure; answer every section from the work you did; delete instructional \
         HTML comments and placeholders; tick only the checklist items that are true; keep a \
         section that does not apply, with \"n/a\" and why. Where the template and the general \
         guidance disagree, the TEMPLATE wins. Put no secrets, issue or PR numbers, @-mentions \
         or closing wording in it, and no title line above the template. Keep the finished \
         file under 15,000 characters."
    );
    match text {
        Some(text) => {
            note.push_str("\n\nThe template follows, in a fenced block that is NOT part of it:\n");
            note.push_str(&fenced(text));
        }
        None => note.push_str(&format!(
            " The template ({chars} characters) is not reproduced here — read it from the checkout."
        )),
    }
    note
}

/// What a repair pass is told about one failed check: its report entry and the longer tail the
/// worker kept for the prompt.
#[derive(Debug, Clone)]
pub struct FailedCheck<'a> {
    pub label: &'a str,
    pub command: &'a str,
    pub reason: String,
    /// The scrubbed end of its output (up to 16,000 bytes), if it printed anything.
    pub output: Option<&'a str>,
}

/// The prompt of a validation repair pass (seed-later 1.6): the failures, the files left
/// untracked, how the work is judged, the rules (the checks are not to be weakened), and, as
/// the seed did not, the task itself, so the repair keeps its purpose in view.
pub fn repair_prompt(
    report: &ValidationReport,
    failed: &[FailedCheck<'_>],
    untracked: &[String],
    task: &str,
) -> String {
    let mut lines: Vec<String> = vec![
        "The work does NOT pass this service's required validation checks, so no pull request \
         has been opened. Fix the failures below, then stop."
            .to_owned(),
    ];
    for check in failed {
        let output = check
            .output
            .filter(|o| !o.trim().is_empty())
            .unwrap_or("(no output captured)");
        lines.push(String::new());
        lines.push(format!("### {} — {}", check.label, check.reason));
        lines.push(String::new());
        lines.push(fenced(&format!("$ {}\n{}", check.command, output)));
    }
    if !untracked.is_empty() {
        lines.push(String::new());
        lines.push("## Uncommitted new files".to_owned());
        lines.push(
            "These files exist in the checkout but are not on the branch, although the checks \
             ran against them. `git add` each one the work needs, or delete it:"
                .to_owned(),
        );
        lines.extend(untracked.iter().map(|p| format!("- {p}")));
    }
    let left = report.max_attempts.saturating_sub(report.attempts);
    lines.push(String::new());
    lines.push("## How this is judged".to_owned());
    lines.push(format!(
        "The checks run again automatically when you stop; they are the exit condition. A pull \
         request opens only once every one of them exits 0. You have {left} attempt(s) left \
         before this task fails."
    ));
    lines.push(String::new());
    lines.push("## Rules".to_owned());
    lines.push(
        "- Fix the underlying problem in the code. Do NOT edit, disable, skip, or relax the checks\n\
         themselves (their scripts, configs, thresholds, ignore files, or test assertions) to make\n\
         them pass — a green check obtained that way is a failed task."
            .to_owned(),
    );
    lines.push("- Do not revert the earlier work; build on it.".to_owned());
    lines.push(
        "- Commit your fixes, and `git add` any new file: only edits to tracked files are staged \
         automatically."
            .to_owned(),
    );
    lines.push(String::new());
    lines.push("## The task the work is for".to_owned());
    lines.push(fenced(task));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_inside() {
        assert_eq!(fenced("plain\n"), "```\nplain\n```");
        assert_eq!(fenced("a ```` b"), "`````\na ```` b\n`````");
    }

    #[test]
    fn the_repair_prompt_shows_each_failure_the_rule_the_budget_and_the_task() {
        let report = ValidationReport {
            passed: false,
            attempts: 1,
            max_attempts: 3,
            outcomes: Vec::new(),
            at: 0,
        };
        let failed = [FailedCheck {
            label: "test",
            command: "npm test",
            reason: "exited 1".into(),
            output: Some("1 failing\n```"),
        }];
        let text = repair_prompt(&report, &failed, &["new.rs".into()], "Add a greeting.");
        assert!(text.contains("### test — exited 1\n\n````\n$ npm test\n1 failing\n```\n````"));
        assert!(text.contains("- new.rs"));
        assert!(text.contains("You have 2 attempt(s) left"));
        assert!(text.contains("Do NOT edit, disable, skip, or relax the checks"));
        assert!(text.ends_with("```\nAdd a greeting.\n```"));
        let quiet = [FailedCheck {
            output: None,
            ..failed[0].clone()
        }];
        assert!(repair_prompt(&report, &quiet, &[], "t").contains("(no output captured)"));
    }

    #[test]
    fn the_template_note_inlines_a_short_template_and_names_a_long_one() {
        let short = template_note(".github/pull_request_template.md", 9, Some("## Summary"));
        assert!(short.starts_with("PULL REQUEST TEMPLATE — This repository ships a pull request template at `.github/pull_request_template.md`"));
        assert!(
            short.ends_with("NOT part of it:\n```\n## Summary\n```"),
            "{short}"
        );
        let long = template_note("docs/pull_request_template.md", 9001, None);
        assert!(long.ends_with(
            "The template (9001 characters) is not reproduced here — read it from the checkout."
        ));
    }

    #[test]
    fn the_dependency_note_says_what_happened_and_what_was_put_back() {
        let ok = dependency_note(&InstallNote {
            command: "npm ci",
            elsewhere: None,
            failure: None,
            output_tail: Some("ignored when it passed"),
            restored: &[],
        });
        assert!(ok.starts_with(
            "This checkout's dependencies have already been installed for you (`npm ci`)"
        ));
        assert!(!ok.contains("ignored"));
        let restored = ["package-lock.json".to_owned()];
        let failed = dependency_note(&InstallNote {
            command: "npm ci",
            elsewhere: Some("services/api"),
            failure: Some("exited 1".into()),
            output_tail: Some("ERR! 404"),
            restored: &restored,
        });
        assert!(failed.starts_with(
            "The `services/api/` checkout's dependencies could NOT be installed for you: `npm ci` exited 1.\n"
        ));
        assert!(failed.contains("```\nERR! 404\n```"));
        assert!(failed.ends_with("so the work does not carry the install's changes."));
        assert!(failed.contains("(package-lock.json)"));
    }
}
