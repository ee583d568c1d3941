//! Seed 9.5, cases 41 to 55.

use super::*;
use crate::config::Config;

fn limits(no_edit: u64, errors: u64) -> GuardLimits {
    GuardLimits {
        max_tool_calls_without_edit: no_edit,
        max_consecutive_errors: errors,
        ..GuardLimits::default()
    }
}

/// Feeds successful calls; returns the first abort reason.
fn run(guard: &mut ProgressGuard, tools: &[&str]) -> Option<String> {
    tools.iter().find_map(|t| guard.observe(t, false))
}

fn repeat(tool: &'static str, n: usize) -> Vec<&'static str> {
    vec![tool; n]
}

#[test]
fn aborts_a_run_that_makes_many_tool_calls_without_ever_editing_a_file() {
    let mut g = ProgressGuard::new(limits(5, 99), true);
    assert_eq!(run(&mut g, &repeat("bash", 4)), None);
    let reason = g.observe("bash", false).unwrap();
    assert_eq!(
        reason,
        "no progress: 5 tool calls and not one file edit \u{2014} the agent is exploring or \
         probing the environment without implementing anything. Aborting before it burns the \
         whole run."
    );
}

#[test]
fn does_not_abort_when_the_agent_edits_files() {
    let mut g = ProgressGuard::new(limits(5, 99), true);
    let tools = [
        "bash", "read", "edit", "bash", "read", "bash", "write", "bash",
    ];
    assert_eq!(run(&mut g, &tools), None);
    // Once an edit happened the bound never fires again.
    assert_eq!(run(&mut g, &repeat("bash", 50)), None);
}

#[test]
fn recognises_alternate_edit_tool_names_case_insensitively() {
    let mut g = ProgressGuard::new(limits(4, 99), true);
    let tools = ["bash", "read", "Apply_Patch", "bash", "read", "bash"];
    assert_eq!(run(&mut g, &tools), None);
    let mut g = ProgressGuard::new(limits(4, 99), true);
    assert_eq!(run(&mut g, &["BASH", "Bash", "bash"]), None);
    assert!(
        g.observe("bAsH", false).is_some(),
        "bash in any case counts"
    );
}

#[test]
fn does_not_count_planning_calls_toward_the_no_edit_bound() {
    let mut g = ProgressGuard::new(limits(3, 99), true);
    assert_eq!(run(&mut g, &repeat("todo", 10)), None);
    let reason = run(&mut g, &repeat("bash", 3)).unwrap();
    assert!(reason.starts_with("no progress: 3 tool calls"), "{reason}");
}

#[test]
fn does_not_count_read_only_exploration_toward_the_no_edit_bound() {
    let mut g = ProgressGuard::new(limits(3, 99), true);
    for tool in ["read", "grep", "glob", "ls", "search", "find", "view"] {
        assert_eq!(run(&mut g, &repeat(tool, 3)), None, "{tool}");
    }
    assert!(run(&mut g, &repeat("bash", 3)).is_some());
}

#[test]
fn does_not_count_web_search_or_fetch_toward_the_no_edit_bound() {
    let mut g = ProgressGuard::new(limits(3, 99), true);
    // Ten web calls in a row stay under the default web cap of 25.
    assert_eq!(run(&mut g, &repeat("web_search", 5)), None);
    assert_eq!(run(&mut g, &repeat("web_fetch", 5)), None);
    assert!(run(&mut g, &repeat("bash", 3)).is_some());
}

#[test]
fn trips_on_an_uninterrupted_run_of_web_calls() {
    let mut g = ProgressGuard::new(
        GuardLimits {
            max_consecutive_web_calls: 4,
            ..GuardLimits::default()
        },
        true,
    );
    assert_eq!(run(&mut g, &repeat("web_search", 3)), None);
    assert_eq!(
        g.observe("read", false),
        None,
        "another tool resets the streak"
    );
    assert_eq!(run(&mut g, &repeat("web_fetch", 3)), None);
    assert_eq!(
        g.observe("Web_Search", false).unwrap(),
        "no progress: 4 consecutive web search/fetch calls without any other action \u{2014} \
         the agent is stuck researching instead of doing the work. Aborting."
    );
}

#[test]
fn skips_the_no_edit_bound_for_runs_that_do_not_expect_edits() {
    let mut g = ProgressGuard::new(limits(3, 99), false);
    assert_eq!(run(&mut g, &repeat("bash", 10)), None);
}

#[test]
fn aborts_after_too_many_consecutive_failing_tool_calls() {
    let mut g = ProgressGuard::new(limits(99, 3), true);
    assert_eq!(g.observe("bash", true), None);
    assert_eq!(g.observe("bash", false), None, "a success resets the count");
    assert_eq!(
        g.observe("read", true),
        None,
        "exploration failures count too"
    );
    assert_eq!(g.observe("todo", true), None, "so do planning failures");
    assert_eq!(
        g.observe("bash", true).unwrap(),
        "no progress: 3 consecutive failing tool calls \u{2014} the agent is stuck retrying a \
         failing operation rather than making progress. Aborting."
    );
}

#[test]
fn the_error_rule_is_checked_before_the_no_edit_rule() {
    let mut g = ProgressGuard::new(limits(2, 2), true);
    assert_eq!(g.observe("bash", true), None);
    let reason = g.observe("bash", true).unwrap();
    assert!(
        reason.contains("consecutive failing tool calls"),
        "{reason}"
    );
}

#[test]
fn a_tripped_guard_reports_its_reason_once() {
    let mut g = ProgressGuard::new(limits(1, 99), true);
    assert!(g.observe("bash", false).is_some());
    assert_eq!(g.observe("bash", false), None);
}

fn config_limits(pairs: &[(&str, &str)]) -> Result<GuardLimits, crate::config::ConfigError> {
    let mut c = Config::default();
    c.apply_env(|k| {
        pairs
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })?;
    Ok(GuardLimits::from(&c.guard))
}

fn triple(l: GuardLimits) -> (u64, u64, u64) {
    (
        l.max_tool_calls_without_edit,
        l.max_consecutive_errors,
        l.max_consecutive_web_calls,
    )
}

#[test]
fn reads_limits_from_the_environment_falling_back_to_defaults() {
    assert_eq!(triple(config_limits(&[]).unwrap()), (40, 12, 25));
    assert_eq!(triple(GuardLimits::default()), (40, 12, 25));
    let l = config_limits(&[
        ("JOB_MAX_TOOLCALLS_WITHOUT_EDIT", "7"),
        ("JOB_MAX_CONSECUTIVE_TOOL_ERRORS", "4"),
    ])
    .unwrap();
    assert_eq!(triple(l), (7, 4, 25));
    let l = config_limits(&[("JOB_MAX_CONSECUTIVE_WEB_CALLS", "6.9")]).unwrap();
    assert_eq!(triple(l), (40, 12, 6));
    // The seed silently kept the default; here junk is an error naming the variable.
    let err = config_limits(&[("JOB_MAX_TOOLCALLS_WITHOUT_EDIT", "-3")]).unwrap_err();
    assert!(
        err.to_string().contains("JOB_MAX_TOOLCALLS_WITHOUT_EDIT"),
        "{err}"
    );
}

fn spec(no_edit: Option<u64>, errors: Option<u64>, web: Option<u64>) -> GuardLimitsSpec {
    GuardLimitsSpec {
        max_tool_calls_without_edit: no_edit,
        max_consecutive_errors: errors,
        max_consecutive_web_calls: web,
        ..Default::default()
    }
}

#[test]
fn merge_returns_the_base_unchanged_without_overrides() {
    let base = GuardLimits::default();
    assert_eq!(GuardLimits::merge(base, None), base);
    assert_eq!(GuardLimits::merge(base, Some(spec(None, None, None))), base);
}

#[test]
fn merge_applies_only_the_knobs_present_keeping_the_base_for_the_rest() {
    let merged = GuardLimits::merge(GuardLimits::default(), Some(spec(None, Some(20), None)));
    assert_eq!(triple(merged), (40, 20, 25));
}

#[test]
fn merge_clamps_an_override_tighter_than_the_base_up_to_the_base() {
    let merged = GuardLimits::merge(
        GuardLimits::default(),
        Some(spec(Some(1), Some(1), Some(1))),
    );
    assert_eq!(merged, GuardLimits::default());
}

#[test]
fn merge_loosens_only_the_knobs_above_the_base_in_a_mixed_override() {
    let merged = GuardLimits::merge(GuardLimits::default(), Some(spec(None, Some(999), Some(1))));
    assert_eq!(triple(merged), (40, 999, 25));
}

fn mcp_limits(mcp: u64, non_action: u64) -> GuardLimits {
    GuardLimits {
        max_tool_calls_without_edit: 3,
        max_consecutive_mcp_calls: mcp,
        max_consecutive_non_action_calls: non_action,
        ..GuardLimits::default()
    }
}

#[test]
fn mcp_calls_do_not_count_toward_the_no_edit_bound() {
    let mut g = ProgressGuard::new(mcp_limits(99, 999), true);
    assert_eq!(run(&mut g, &repeat("mcp__docs__search", 20)), None);
    assert_eq!(run(&mut g, &repeat("MCP__Docs__Fetch", 20)), None);
    assert!(run(&mut g, &repeat("bash", 3)).is_some());
}

#[test]
fn trips_on_an_uninterrupted_run_of_mcp_calls_with_the_spec_text() {
    let mut g = ProgressGuard::new(mcp_limits(4, 999), true);
    assert_eq!(run(&mut g, &repeat("mcp__a__x", 3)), None);
    assert_eq!(
        g.observe("read", false),
        None,
        "another tool resets the streak"
    );
    assert_eq!(run(&mut g, &repeat("mcp__b__y", 3)), None);
    assert_eq!(
        g.observe("Mcp__B__Y", false).unwrap(),
        "no progress: 4 consecutive tool-server (MCP) calls without any other action. The \
         agent is stuck querying its tools instead of doing the work. Aborting."
    );
}

#[test]
fn the_mcp_streak_defaults_to_40_and_the_non_action_streak_to_200() {
    let mut g = ProgressGuard::new(GuardLimits::default(), true);
    assert_eq!(run(&mut g, &repeat("mcp__a__x", 39)), None);
    let reason = g.observe("mcp__a__x", false).unwrap();
    assert!(
        reason.starts_with("no progress: 40 consecutive tool-server"),
        "{reason}"
    );
    let mut g = ProgressGuard::new(GuardLimits::default(), true);
    let mixed: Vec<&str> = ["read", "todo", "web_search", "mcp__a__x", "task"]
        .into_iter()
        .cycle()
        .take(199)
        .collect();
    assert_eq!(run(&mut g, &mixed), None);
    let reason = g.observe("grep", false).unwrap();
    assert!(
        reason.starts_with("no progress: 200 consecutive read-only"),
        "{reason}"
    );
}

#[test]
fn every_exempt_family_shares_the_non_action_streak_until_an_action_resets_it() {
    let mut g = ProgressGuard::new(mcp_limits(99, 5), false);
    assert_eq!(run(&mut g, &["read", "todo", "mcp__a__x", "Task"]), None);
    assert_eq!(
        g.observe("bash", false),
        None,
        "an action call resets the streak"
    );
    assert_eq!(
        run(&mut g, &["web_fetch", "agent", "grep", "mcp__a__x"]),
        None
    );
    assert_eq!(
        g.observe("view", false).unwrap(),
        "no progress: 5 consecutive read-only calls (searching, reading, tool-server lookups, \
         subagent dispatches) with no action call between them. The agent is cycling through \
         research instead of doing the work. Aborting."
    );
}

#[test]
fn the_mcp_knobs_come_from_the_environment_and_merge_loosen_only() {
    let l = config_limits(&[
        ("JOB_MAX_CONSECUTIVE_MCP_CALLS", "7.9"),
        ("JOB_MAX_CONSECUTIVE_NON_ACTION_CALLS", "300"),
    ])
    .unwrap();
    assert_eq!(
        (
            l.max_consecutive_mcp_calls,
            l.max_consecutive_non_action_calls
        ),
        (7, 300)
    );
    let over = GuardLimitsSpec {
        max_consecutive_mcp_calls: Some(1),
        max_consecutive_non_action_calls: Some(500),
        ..Default::default()
    };
    let merged = GuardLimits::merge(GuardLimits::default(), Some(over));
    assert_eq!(
        (
            merged.max_consecutive_mcp_calls,
            merged.max_consecutive_non_action_calls
        ),
        (40, 500)
    );
}
