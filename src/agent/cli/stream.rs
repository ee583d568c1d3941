//! What the Claude Code and Codex stream parsers share: the per-line effects they report, the
//! outcome of a whole stream, the [`CliStream`] interface the subscription runner drives them
//! through, and the small JSON helpers both use.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::job::outcome::{
    CallMetric, RunStats, TodoItem, TodoProgress, TodoStatus, ToolServer, Usage,
};

/// What one stdout line changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineEffects {
    /// The new todo snapshot, when this line carried one (it replaces the previous one).
    pub progress: Option<TodoProgress>,
    /// Tool calls this line completed, in stream order.
    pub tools: Vec<ToolCall>,
    /// Model calls this line completed, in stream order.
    pub calls: Vec<CallMetric>,
    /// The tool (MCP) servers the CLI reported connecting, from its `init` event.
    pub tool_servers: Option<Vec<ToolServer>>,
}

/// A completed tool call: its name as the CLI spells it, and whether it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    pub is_error: bool,
    /// Time between the line that started the call and the line that completed it; `None` when
    /// the stream never announced the start (the span then starts when it ends).
    pub duration: Option<Duration>,
    /// What the call was asked and answered, as kept heads with the characters cut.
    pub args: Option<(String, u64)>,
    pub result: Option<(String, u64)>,
}

impl ToolCall {
    /// A call without bodies.
    pub fn bare(name: impl Into<String>, is_error: bool, duration: Option<Duration>) -> Self {
        Self {
            name: name.into(),
            is_error,
            duration,
            args: None,
            result: None,
        }
    }
}

/// What a clean stream amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOutcome {
    /// The agent's final answer (not redacted, as the seed's summary is not).
    pub summary: String,
    pub stats: RunStats,
    /// `None` when the stream reported no (or only zero) token counts.
    pub usage: Option<Usage>,
}

/// A subscription CLI's stdout parser, as the runner drives it.
pub trait CliStream: Send {
    /// One stdout line (without its newline) that arrived at `now`.
    fn feed_at(&mut self, line: &str, now: Instant) -> LineEffects;

    /// What the stream amounted to, and the failure the CLI reported in it (a failed result
    /// or turn), if any. Stats and usage count even then.
    fn into_outcome(self) -> (StreamOutcome, Option<String>);

    /// Model calls still open when the stream ended (a run that was killed or crashed).
    fn flush_calls(&mut self) -> Vec<CallMetric> {
        Vec::new()
    }

    /// The name the progress guard classifies a tool call by (the CLI's own by default).
    fn guard_name(tool: &str) -> &str {
        tool
    }

    /// One stdout line, arriving now.
    fn feed(&mut self, line: &str) -> LineEffects {
        self.feed_at(line, Instant::now())
    }

    /// The outcome of a clean stream, or the failure it reported.
    fn finish(self) -> Result<StreamOutcome, String>
    where
        Self: Sized,
    {
        match self.into_outcome() {
            (_, Some(failure)) => Err(failure),
            (outcome, None) => Ok(outcome),
        }
    }
}

/// Lines that are not JSON objects are skipped, as are malformed ones (seed 5.5).
pub(super) fn parse_line(line: &str) -> Option<Value> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

pub(super) fn progress_of(items: Vec<TodoItem>) -> TodoProgress {
    let count = |s: TodoStatus| items.iter().filter(|i| i.status == s).count() as u64;
    TodoProgress {
        completed: count(TodoStatus::Completed),
        in_progress: count(TodoStatus::InProgress),
        total: items.len() as u64,
        items: Some(items),
    }
}

pub(super) fn todo_status(status: Option<&str>) -> TodoStatus {
    match status {
        Some("completed") => TodoStatus::Completed,
        Some("in_progress") => TodoStatus::InProgress,
        _ => TodoStatus::Pending,
    }
}

pub(super) fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}
