//! The progress guard (seed 5.2, seed-later 10.3): stops an agent that keeps calling tools
//! without getting anywhere: too many calls and not one file edit, a run of failing calls, a
//! run of web searches, a run of MCP tool-server calls, or a long run of calls that are none
//! of them an action. Every harness feeds it its completed tool calls, in stream order.

use crate::config::GuardConfig;
use crate::job::GuardLimitsSpec;

/// Tools that change files.
const EDIT_TOOLS: [&str; 7] = [
    "edit",
    "write",
    "apply_patch",
    "patch",
    "str_replace",
    "multiedit",
    "create",
];
/// Tools that only plan.
const PLANNING_TOOLS: [&str; 1] = ["todo"];
/// Read-only tools: they neither count toward nor reset the no-edit bound.
const EXPLORATION_TOOLS: [&str; 15] = [
    "read",
    "grep",
    "search",
    "glob",
    "ls",
    "list",
    "find",
    "tree",
    "cat",
    "view",
    "head",
    "tail",
    "stat",
    "web_search",
    "web_fetch",
];
const WEB_TOOLS: [&str; 2] = ["web_search", "web_fetch"];
/// Subagent dispatch (Claude Code's `Task`, later `Agent`): the subagent's own calls are what
/// act, so dispatching one is not an action of the parent.
const SUBAGENT_TOOLS: [&str; 2] = ["task", "agent"];
/// MCP tool-server calls, as the CLIs name them: `mcp__<server>__<tool>`.
const MCP_PREFIX: &str = "mcp__";

/// The guard's bounds. Each is at least 1 in practice (the config refuses 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Tool calls (planning and exploration excluded) allowed before the first edit.
    pub max_tool_calls_without_edit: u64,
    /// Failing tool calls in a row.
    pub max_consecutive_errors: u64,
    /// Web search/fetch calls in a row.
    pub max_consecutive_web_calls: u64,
    /// MCP tool-server calls in a row.
    pub max_consecutive_mcp_calls: u64,
    /// Calls in a row that are none of them an action: planning, read-only (web included),
    /// subagent dispatch, MCP.
    pub max_consecutive_non_action_calls: u64,
}

impl Default for GuardLimits {
    /// The seed's defaults: 40, 12, 25, 40, 200.
    fn default() -> Self {
        Self {
            max_tool_calls_without_edit: 40,
            max_consecutive_errors: 12,
            max_consecutive_web_calls: 25,
            max_consecutive_mcp_calls: 40,
            max_consecutive_non_action_calls: 200,
        }
    }
}

impl From<&GuardConfig> for GuardLimits {
    fn from(c: &GuardConfig) -> Self {
        Self {
            max_tool_calls_without_edit: c.max_tool_calls_without_edit,
            max_consecutive_errors: c.max_consecutive_errors,
            max_consecutive_web_calls: c.max_consecutive_web_calls,
            max_consecutive_mcp_calls: c.max_consecutive_mcp_calls,
            max_consecutive_non_action_calls: c.max_consecutive_non_action_calls,
        }
    }
}

impl GuardLimits {
    /// The job's `guardLimits` over the worker's `base`, loosen-only: each knob the job sets
    /// becomes `max(base, override)`, so a job can raise a bound but never lower it.
    pub fn merge(base: GuardLimits, overrides: Option<GuardLimitsSpec>) -> GuardLimits {
        let Some(o) = overrides else {
            return base;
        };
        let loosen = |base: u64, over: Option<u64>| over.map_or(base, |o| base.max(o));
        GuardLimits {
            max_tool_calls_without_edit: loosen(
                base.max_tool_calls_without_edit,
                o.max_tool_calls_without_edit,
            ),
            max_consecutive_errors: loosen(base.max_consecutive_errors, o.max_consecutive_errors),
            max_consecutive_web_calls: loosen(
                base.max_consecutive_web_calls,
                o.max_consecutive_web_calls,
            ),
            max_consecutive_mcp_calls: loosen(
                base.max_consecutive_mcp_calls,
                o.max_consecutive_mcp_calls,
            ),
            max_consecutive_non_action_calls: loosen(
                base.max_consecutive_non_action_calls,
                o.max_consecutive_non_action_calls,
            ),
        }
    }
}

/// The running counts of one agent run.
#[derive(Debug, Clone)]
pub struct ProgressGuard {
    limits: GuardLimits,
    /// Off for runs that only assess (explore): they are not expected to edit anything.
    expects_edits: bool,
    tool_calls: u64,
    edits: u64,
    consecutive_errors: u64,
    consecutive_web_calls: u64,
    consecutive_mcp_calls: u64,
    consecutive_non_action_calls: u64,
    tripped: bool,
}

impl ProgressGuard {
    pub fn new(limits: GuardLimits, expects_edits: bool) -> Self {
        Self {
            limits,
            expects_edits,
            tool_calls: 0,
            edits: 0,
            consecutive_errors: 0,
            consecutive_web_calls: 0,
            consecutive_mcp_calls: 0,
            consecutive_non_action_calls: 0,
            tripped: false,
        }
    }

    /// One completed tool call. Returns the abort reason the first time a bound is reached,
    /// and `None` otherwise (also for every call after that: the run is being stopped).
    pub fn observe(&mut self, tool_name: &str, is_error: bool) -> Option<String> {
        if self.tripped {
            return None;
        }
        let reason = self.check(&tool_name.to_lowercase(), is_error);
        self.tripped = reason.is_some();
        reason
    }

    fn check(&mut self, tool: &str, is_error: bool) -> Option<String> {
        self.consecutive_errors = if is_error {
            self.consecutive_errors + 1
        } else {
            0
        };
        if self.consecutive_errors >= self.limits.max_consecutive_errors {
            return Some(format!(
                "no progress: {} consecutive failing tool calls \u{2014} the agent is stuck \
                 retrying a failing operation rather than making progress. Aborting.",
                self.consecutive_errors
            ));
        }
        if WEB_TOOLS.contains(&tool) {
            self.consecutive_web_calls += 1;
            if self.consecutive_web_calls >= self.limits.max_consecutive_web_calls {
                return Some(format!(
                    "no progress: {} consecutive web search/fetch calls without any other \
                     action \u{2014} the agent is stuck researching instead of doing the work. \
                     Aborting.",
                    self.consecutive_web_calls
                ));
            }
        } else {
            self.consecutive_web_calls = 0;
        }
        let is_mcp = tool.starts_with(MCP_PREFIX);
        if is_mcp {
            self.consecutive_mcp_calls += 1;
            if self.consecutive_mcp_calls >= self.limits.max_consecutive_mcp_calls {
                return Some(format!(
                    "no progress: {} consecutive tool-server (MCP) calls without any other \
                     action. The agent is stuck querying its tools instead of doing the work. \
                     Aborting.",
                    self.consecutive_mcp_calls
                ));
            }
        } else {
            self.consecutive_mcp_calls = 0;
        }
        // Exempt from the no-edit bound, but not endless: they share one streak.
        if is_mcp
            || PLANNING_TOOLS.contains(&tool)
            || EXPLORATION_TOOLS.contains(&tool)
            || SUBAGENT_TOOLS.contains(&tool)
        {
            self.consecutive_non_action_calls += 1;
            if self.consecutive_non_action_calls >= self.limits.max_consecutive_non_action_calls {
                return Some(format!(
                    "no progress: {} consecutive read-only calls (searching, reading, \
                     tool-server lookups, subagent dispatches) with no action call between \
                     them. The agent is cycling through research instead of doing the work. \
                     Aborting.",
                    self.consecutive_non_action_calls
                ));
            }
            return None;
        }
        self.consecutive_non_action_calls = 0;
        self.tool_calls += 1;
        if EDIT_TOOLS.contains(&tool) {
            self.edits += 1;
        }
        // A file written through a shell tool is not seen as an edit (as in the seed).
        if self.expects_edits
            && self.edits == 0
            && self.tool_calls >= self.limits.max_tool_calls_without_edit
        {
            return Some(format!(
                "no progress: {} tool calls and not one file edit \u{2014} the agent is \
                 exploring or probing the environment without implementing anything. Aborting \
                 before it burns the whole run.",
                self.tool_calls
            ));
        }
        None
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
