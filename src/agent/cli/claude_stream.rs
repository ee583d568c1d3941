//! The parser of Claude Code's `claude -p --output-format stream-json --verbose` stdout (seed
//! 5.3): summary, stats, usage, the todo snapshot (`TodoWrite`, or the `TaskCreate` /
//! `TaskUpdate` task list), completed tool calls, and the failure its `result` event reports.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use super::claude_calls::ClaudeCalls;
use super::stream::{
    count, parse_line, progress_of, todo_status, CliStream, LineEffects, StreamOutcome, ToolCall,
};
use crate::agent::trajectory;
use crate::job::outcome::{CallMetric, RunStats, TodoItem, TodoProgress, TodoStatus, Usage};
use crate::redact::{head_chars, Redactor};

/// Failure texts quote at most this much of what the CLI said.
const MAX_DETAIL_CHARS: usize = 2000;

/// A JSON value as a label: strings as they are, anything else as JSON text.
fn label_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A tool call announced by a `tool_use` block and not yet answered.
struct PendingTool {
    name: String,
    input: Value,
    started: Instant,
}

/// One entry of the task list the `TaskCreate`/`TaskUpdate` tools keep.
struct Task {
    id: String,
    label: String,
    status: TodoStatus,
}

/// The `result` event's verdict.
enum Verdict {
    Success,
    Failure(String),
}

/// The parser of one run's `claude -p --output-format stream-json --verbose` stdout.
pub struct ClaudeStream {
    redactor: Redactor,
    summary: String,
    stats: RunStats,
    usage: Option<Usage>,
    verdict: Option<Verdict>,
    pending: HashMap<String, PendingTool>,
    /// Claude Code 2.1.16+ tracks todos with `TaskCreate`/`TaskUpdate` instead of `TodoWrite`;
    /// the snapshot is rebuilt from those calls.
    tasks: Vec<Task>,
    calls: ClaudeCalls,
}

impl ClaudeStream {
    /// `redactor` (the job's) cleans what the CLI said before it goes into a failure message.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            summary: String::new(),
            stats: RunStats::default(),
            usage: None,
            verdict: None,
            pending: HashMap::new(),
            tasks: Vec::new(),
            calls: ClaudeCalls::default(),
        }
    }

    fn on_assistant(&mut self, event: &Value, now: Instant, effects: &mut LineEffects) {
        let Some(blocks) = content_blocks(event) else {
            return;
        };
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(text) = block.get("text").and_then(Value::as_str) {
                        self.stats.assistant_chars += text.chars().count() as u64;
                    }
                }
                Some("tool_use") => {
                    self.stats.tool_calls += 1;
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                    let input = block.get("input").cloned().unwrap_or(Value::Null);
                    if name == "TodoWrite" {
                        if let Some(progress) = todo_write_progress(&input) {
                            effects.progress = Some(progress);
                        }
                    }
                    if let Some(id) = block.get("id").and_then(Value::as_str) {
                        self.pending.insert(
                            id.to_owned(),
                            PendingTool {
                                name: name.to_owned(),
                                input,
                                started: now,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn on_user(&mut self, event: &Value, now: Instant, effects: &mut LineEffects) {
        let Some(blocks) = content_blocks(event) else {
            return;
        };
        let results: Vec<&Value> = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .collect();
        // `tool_use_result` belongs to the line, so it can be tied to a call only when the line
        // answers exactly one.
        let line_result = (results.len() == 1)
            .then(|| event.get("tool_use_result"))
            .flatten();
        let mut tasks_changed = false;
        for result in results {
            let is_error = result.get("is_error").and_then(Value::as_bool) == Some(true);
            let pending = result
                .get("tool_use_id")
                .and_then(Value::as_str)
                .and_then(|id| self.pending.remove(id));
            let answer = trajectory::body_of(result, &["content"]);
            let Some(call) = pending else {
                effects.tools.push(ToolCall {
                    result: answer,
                    ..ToolCall::bare("unknown", is_error, None)
                });
                continue;
            };
            if !is_error {
                tasks_changed |= self.apply_task_tool(&call, result, line_result);
            }
            let duration = Some(now.saturating_duration_since(call.started));
            effects.tools.push(ToolCall {
                args: Some(trajectory::body(&call.input)),
                result: answer,
                ..ToolCall::bare(call.name, is_error, duration)
            });
        }
        if tasks_changed {
            effects.progress = Some(progress_of(
                self.tasks
                    .iter()
                    .map(|t| TodoItem {
                        label: t.label.clone(),
                        status: t.status,
                    })
                    .collect(),
            ));
        }
    }

    /// Applies a successful `TaskCreate`/`TaskUpdate`; true when the task list changed.
    fn apply_task_tool(
        &mut self,
        call: &PendingTool,
        result: &Value,
        line_result: Option<&Value>,
    ) -> bool {
        match call.name.as_str() {
            "TaskCreate" => {
                let id = line_result
                    .and_then(|r| r.pointer("/task/id"))
                    .map(|v| label_of(Some(v)))
                    .or_else(|| created_task_id(result));
                let Some(id) = id else {
                    return false;
                };
                let label = match call.input.get("subject") {
                    Some(Value::String(s)) => s.clone(),
                    _ => label_of(line_result.and_then(|r| r.pointer("/task/subject"))),
                };
                self.tasks.retain(|t| t.id != id);
                self.tasks.push(Task {
                    id,
                    label,
                    status: TodoStatus::Pending,
                });
                true
            }
            "TaskUpdate" => {
                let Some(id) = call.input.get("taskId").map(|v| label_of(Some(v))) else {
                    return false;
                };
                let status = call.input.get("status").and_then(Value::as_str);
                if status == Some("deleted") {
                    let before = self.tasks.len();
                    self.tasks.retain(|t| t.id != id);
                    return self.tasks.len() != before;
                }
                let Some(task) = self.tasks.iter_mut().find(|t| t.id == id) else {
                    return false;
                };
                if let Some(subject) = call.input.get("subject").and_then(Value::as_str) {
                    task.label = subject.to_owned();
                }
                if status.is_some() {
                    task.status = todo_status(status);
                }
                true
            }
            _ => false,
        }
    }

    fn on_result(&mut self, event: &Value) {
        let text = event.get("result").and_then(Value::as_str);
        if let Some(text) = text {
            self.summary = text.to_owned();
        }
        if let Some(usage) = event.get("usage") {
            let (read, write) = (
                count(usage, "cache_read_input_tokens"),
                count(usage, "cache_creation_input_tokens"),
            );
            self.usage = Usage {
                input_tokens: count(usage, "input_tokens") + read + write,
                output_tokens: count(usage, "output_tokens"),
                cache_read_tokens: read,
                cache_write_tokens: write,
            }
            .nonzero();
        }
        let subtype = event.get("subtype").and_then(Value::as_str);
        let is_error = event.get("is_error").and_then(Value::as_bool) == Some(true);
        let failed = is_error || subtype.is_some_and(|s| s != "success");
        self.verdict = Some(if failed {
            Verdict::Failure(self.failure_message(event, subtype, text))
        } else {
            Verdict::Success
        });
    }

    fn failure_message(&self, event: &Value, subtype: Option<&str>, text: Option<&str>) -> String {
        let mut message = match subtype.filter(|s| *s != "success" && !s.is_empty()) {
            Some(subtype) => format!("claude-code run ended with {subtype}"),
            None => "claude-code reported an error".to_owned(),
        };
        if let Some(status) = event.get("api_error_status").filter(|s| !s.is_null()) {
            message.push_str(&format!(" (API status {})", label_of(Some(status))));
        }
        let errors: Vec<String> = event
            .get("errors")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(|e| label_of(Some(e))).collect())
            .unwrap_or_default();
        let detail = match text.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => text.to_owned(),
            None => errors.join("; "),
        };
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(head_chars(&detail, MAX_DETAIL_CHARS));
        }
        self.redactor.redact(&message)
    }
}

impl CliStream for ClaudeStream {
    fn feed_at(&mut self, line: &str, now: Instant) -> LineEffects {
        let mut effects = LineEffects::default();
        let Some(event) = parse_line(line) else {
            return effects;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("assistant") => {
                effects.calls = self.calls.on_assistant(&event);
                self.on_assistant(&event, now, &mut effects);
            }
            Some("stream_event") => effects.calls = self.calls.on_stream_event(&event),
            Some("system") => effects.tool_servers = super::tool_servers(&event),
            Some("user") => self.on_user(&event, now, &mut effects),
            Some("result") => {
                effects.calls = self.calls.flush();
                self.on_result(&event);
            }
            _ => {}
        }
        effects
    }

    /// The failure is the one the CLI reported in its `result` event (Q18: `is_error`, or a
    /// `subtype` other than `success`).
    fn into_outcome(self) -> (StreamOutcome, Option<String>) {
        let failure = match self.verdict {
            Some(Verdict::Failure(message)) => Some(message),
            Some(Verdict::Success) | None => None,
        };
        let outcome = StreamOutcome {
            summary: self.summary,
            stats: self.stats,
            usage: self.usage,
        };
        (outcome, failure)
    }

    fn flush_calls(&mut self) -> Vec<CallMetric> {
        self.calls.flush()
    }

    fn guard_name(tool: &str) -> &str {
        claude_guard_name(tool)
    }
}

/// Claude Code's tool names in the progress guard's vocabulary (seed 5.2 classes): its web
/// and task-list tools would otherwise count as plain tool calls.
pub fn claude_guard_name(tool: &str) -> &str {
    match tool {
        "WebSearch" => "web_search",
        "WebFetch" => "web_fetch",
        "TodoWrite" | "TaskCreate" | "TaskUpdate" | "TaskList" | "TaskGet" => "todo",
        "NotebookEdit" => "edit",
        other => other,
    }
}

fn content_blocks(event: &Value) -> Option<&Vec<Value>> {
    event.pointer("/message/content").and_then(Value::as_array)
}

/// `TodoWrite`'s `input.todos[]` as a snapshot (seed 5.3).
fn todo_write_progress(input: &Value) -> Option<TodoProgress> {
    let todos = input.get("todos")?.as_array()?;
    Some(progress_of(
        todos
            .iter()
            .map(|t| TodoItem {
                label: label_of(t.get("content")),
                status: todo_status(t.get("status").and_then(Value::as_str)),
            })
            .collect(),
    ))
}

/// `Task #3 created successfully: ...` → `3`, for a line whose `tool_use_result` is ambiguous.
fn created_task_id(result: &Value) -> Option<String> {
    let text = match result.get("content")? {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => return None,
    };
    let rest = text.split_once("Task #")?.1;
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
#[path = "claude_stream_tests.rs"]
mod tests;
