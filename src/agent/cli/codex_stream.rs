//! The parser of Codex's `codex exec --json` stdout (seed 5.4): summary, stats, usage and model
//! calls, the plan snapshot, completed tool calls with their bodies, and the failure a turn or
//! an `error` event reports.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use super::stream::{
    count, parse_line, progress_of, todo_status, CliStream, LineEffects, StreamOutcome, ToolCall,
};
use crate::agent::trajectory;
use crate::job::outcome::{CallMetric, RunStats, TodoItem, TodoProgress, TodoStatus, Usage};
use crate::redact::{head_chars, Redactor};

/// Failure texts quote at most this much of what the CLI said.
const MAX_DETAIL_CHARS: usize = 2000;

/// How the last turn ended.
enum TurnEnd {
    Completed,
    Failed(String),
}

/// The parser of one run's `codex exec --json` stdout.
pub struct CodexStream {
    redactor: Redactor,
    summary: String,
    stats: RunStats,
    usage: Option<Usage>,
    /// Tool items seen starting, by item id, so the completion can tell how long they took.
    started: HashMap<String, Instant>,
    turn_end: Option<TurnEnd>,
    /// The last top-level `error` event: Codex may still recover from it (a retried stream),
    /// so it only decides the outcome when no turn ended after it.
    last_error: Option<String>,
    /// The stream reports usage per model call (`token_count` events), not only per turn.
    per_call_usage: bool,
    /// Assistant text since the last model call was recorded.
    answer_since_call: String,
}

impl CodexStream {
    /// `redactor` (the job's) cleans what the CLI said before it goes into a failure message.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            summary: String::new(),
            stats: RunStats::default(),
            usage: None,
            started: HashMap::new(),
            turn_end: None,
            last_error: None,
            per_call_usage: false,
            answer_since_call: String::new(),
        }
    }

    fn on_completed(&mut self, item: &Value, now: Instant, effects: &mut LineEffects) {
        if item.get("type").and_then(Value::as_str) == Some("agent_message") {
            if let Some(text) = item.get("text").and_then(Value::as_str) {
                self.stats.assistant_chars += text.chars().count() as u64;
                self.summary = text.to_owned();
                if self.answer_since_call.len() < trajectory::BODY_HEAD_CHARS {
                    self.answer_since_call.push_str(text);
                }
            }
            return;
        }
        let Some(name) = tool_name(item) else {
            return;
        };
        self.stats.tool_calls += 1;
        let started = item_id(item).and_then(|id| self.started.remove(id));
        let duration = started.map(|t| now.saturating_duration_since(t));
        effects.tools.push(ToolCall {
            args: trajectory::body_of(item, &["command", "arguments", "changes", "query"]),
            result: trajectory::body_of(item, &["aggregated_output", "result", "error"]),
            ..ToolCall::bare(name, item_failed(item), duration)
        });
    }
}

impl CliStream for CodexStream {
    fn feed_at(&mut self, line: &str, now: Instant) -> LineEffects {
        let mut effects = LineEffects::default();
        let Some(event) = parse_line(line) else {
            return effects;
        };
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let item = event.get("item");
        match kind {
            "item.started" | "item.updated" => {
                if let Some(id) = item.filter(|i| tool_name(i).is_some()).and_then(item_id) {
                    self.started.entry(id.to_owned()).or_insert(now);
                }
            }
            // Only completions count, so a started/completed pair is one call (Q19).
            "item.completed" => {
                if let Some(item) = item {
                    self.on_completed(item, now, &mut effects);
                }
            }
            "turn.completed" => {
                self.turn_end = Some(TurnEnd::Completed);
                self.last_error = None;
            }
            "turn.failed" => {
                let message = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("turn failed");
                self.turn_end = Some(TurnEnd::Failed(message.to_owned()));
            }
            "error" => {
                if let Some(message) = event.get("message").and_then(Value::as_str) {
                    self.last_error = Some(message.to_owned());
                }
            }
            _ => {}
        }
        if let Some(progress) = plan_progress(&event) {
            effects.progress = Some(progress);
        }
        if let Some(usage) = usage_of(&event) {
            self.usage = Some(usage);
        }
        if let Some(call) = self.call_of(&event) {
            effects.calls.push(call);
        }
        effects
    }

    /// The failure is the one Codex reported: a failed last turn, or a fatal `error` that no
    /// turn outlived.
    fn into_outcome(self) -> (StreamOutcome, Option<String>) {
        let failure = match (self.turn_end, self.last_error) {
            (Some(TurnEnd::Failed(message)), _) => Some(format!("codex turn failed: {message}")),
            (None, Some(message)) => Some(format!("codex reported an error: {message}")),
            _ => None,
        };
        let failure = failure.map(|f| self.redactor.redact(head_chars(&f, MAX_DETAIL_CHARS)));
        let outcome = StreamOutcome {
            summary: self.summary,
            stats: self.stats,
            usage: self.usage,
        };
        (outcome, failure)
    }
}

fn item_id(item: &Value) -> Option<&str> {
    item.get("id").and_then(Value::as_str)
}

/// The tool name of an item that is a tool call, named so the progress guard's classes apply
/// (`apply_patch` is an edit, `web_search` a web call); `None` for messages, reasoning, plans
/// and the like.
fn tool_name(item: &Value) -> Option<String> {
    let name = match item.get("type").and_then(Value::as_str)? {
        "command_execution" => "shell",
        "file_change" => "apply_patch",
        "web_search" => "web_search",
        // Named as Claude Code names them, so the guard's MCP streak applies to Codex too.
        "mcp_tool_call" => {
            let field = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("unknown");
            return Some(format!("mcp__{}__{}", field("server"), field("tool")));
        }
        "collab_tool_call" => {
            return Some(
                item.get("tool")
                    .and_then(Value::as_str)
                    .unwrap_or("collab_tool")
                    .to_owned(),
            )
        }
        _ => return None,
    };
    Some(name.to_owned())
}

fn item_failed(item: &Value) -> bool {
    let status = item.get("status").and_then(Value::as_str);
    let exit_code = item.get("exit_code").and_then(Value::as_i64);
    matches!(status, Some("failed" | "declined"))
        || exit_code.is_some_and(|c| c != 0)
        || item.get("error").is_some_and(|e| !e.is_null())
}

/// The plan snapshot an event carries: a `todo_list` item (`items[]` of `{text, completed}`,
/// Codex 0.4x+), or the seed's shapes (`plan.steps`, `item.plan`, `steps`, of `{step|content,
/// status}`). Nothing for an empty list.
fn plan_progress(event: &Value) -> Option<TodoProgress> {
    let item = event.get("item");
    let items: Vec<TodoItem> =
        if item.and_then(|i| i.get("type")).and_then(Value::as_str) == Some("todo_list") {
            item?
                .get("items")?
                .as_array()?
                .iter()
                .map(|t| TodoItem {
                    label: t
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    status: if t.get("completed").and_then(Value::as_bool) == Some(true) {
                        TodoStatus::Completed
                    } else {
                        TodoStatus::Pending
                    },
                })
                .collect()
        } else {
            let steps = event
                .pointer("/plan/steps")
                .or_else(|| item.and_then(|i| i.get("plan")))
                .or_else(|| event.get("steps"))?
                .as_array()?;
            steps
                .iter()
                .map(|s| TodoItem {
                    label: s
                        .get("step")
                        .or_else(|| s.get("content"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    status: todo_status(s.get("status").and_then(Value::as_str)),
                })
                .collect()
        };
    (!items.is_empty()).then(|| progress_of(items))
}

/// Token totals (seed 5.4). Codex reports them cumulatively, so the last non-zero report wins.
/// `cached_input_tokens` is a subset of `input_tokens` and is not added again (Q17).
fn usage_of(event: &Value) -> Option<Usage> {
    let usage = [
        "/info/total_token_usage",
        "/total_token_usage",
        "/usage",
        "/info/usage",
    ]
    .iter()
    .find_map(|p| event.pointer(p).filter(|v| v.is_object()))?;
    codex_usage(usage).nonzero()
}

/// Codex's `input_tokens` includes its `cached_input_tokens` (and the cache writes, where a
/// version reports them).
fn codex_usage(usage: &Value) -> Usage {
    let input = count(usage, "input_tokens");
    let read = count(usage, "cached_input_tokens").min(input);
    let write = count(usage, "cache_write_input_tokens").min(input - read);
    Usage {
        input_tokens: input,
        output_tokens: count(usage, "output_tokens"),
        cache_read_tokens: read,
        cache_write_tokens: write,
    }
}

impl CodexStream {
    /// A model call, where the stream says one ended: a `token_count` event's
    /// `last_token_usage` is one call; without those, `exec --json` reports usage only per
    /// turn, so each `turn.completed` is one record with the turn's tokens and the text the
    /// turn answered.
    fn call_of(&mut self, event: &Value) -> Option<CallMetric> {
        let kind = event.get("type").and_then(Value::as_str);
        let usage = match event
            .pointer("/info/last_token_usage")
            .filter(|v| v.is_object())
        {
            Some(last) => {
                self.per_call_usage = true;
                last
            }
            None if kind == Some("turn.completed") && !self.per_call_usage => {
                event.get("usage").filter(|v| v.is_object())?
            }
            None => return None,
        };
        let usage = codex_usage(usage);
        let (response_text, response_dropped) =
            trajectory::head(&std::mem::take(&mut self.answer_since_call));
        Some(CallMetric {
            input_tokens: usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            output_tokens: usage.output_tokens,
            finish_reason: (kind == Some("turn.completed")).then(|| "completed".to_owned()),
            response_text,
            response_dropped,
            ..CallMetric::default()
        })
    }
}
