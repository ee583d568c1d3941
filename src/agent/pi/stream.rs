//! Pi's JSON event stream (`pi --mode json`, seed 5.1.2 to 5.1.6), parsed line by line as it
//! arrives, keeping only what the outcome needs (memory stays bounded however long the run).
//!
//! Two departures from the seed, both seen on real streams: stats and usage are summed over
//! every `agent_end` (an auto-retry splits a run into several `agent_start`/`agent_end`
//! pairs, each carrying only its own messages), and a run whose last assistant message
//! stopped with `stopReason: "error"` is a failure even without a top-level `errorMessage` on
//! `agent_end` (Pi 0.80 never puts one there).

use std::collections::HashMap;

use serde_json::Value;

use super::calls::{call_id, call_metric, message_usage, tool_result};
pub use super::todo::parse_todo_progress;
use crate::agent::{trajectory, RunDiagnostics};
use crate::job::outcome::{CallMetric, RunStats, TodoProgress, ToolSpan, Usage};
use crate::redact::tail_chars;

/// Pi's output-token ceiling (`maxTokens` in models.json and the truncation threshold).
pub const PI_MAX_OUTPUT_TOKENS: u64 = 32_768;
/// The raw-stdout summary fallback keeps this many chars (seed 5.1.6, Q9).
pub const SUMMARY_RAW_TAIL_CHARS: usize = 2000;
/// Streamed assistant text kept for the summary fallback.
const STREAMED_TEXT_CAP_BYTES: usize = 256 * 1024;

/// Tool calls started and not yet ended whose arguments are kept; a stream announcing more
/// (never ending them) cannot grow the map further.
const MAX_PENDING_ARGS: usize = 256;

const RETRIES_EXHAUSTED: &str = "the agent failed after exhausting its retries";
const LAST_CALL_FAILED: &str = "the agent's last model call failed";

/// A completed tool call, as the progress guard (seed 5.2) will observe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolEnd {
    pub tool_name: String,
    pub is_error: bool,
}

/// What one line produced for the observer (and, later, the progress guard).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineEffects {
    /// A todo snapshot that differs from the previous one.
    pub progress: Option<TodoProgress>,
    pub span: Option<ToolSpan>,
    pub tool_end: Option<ToolEnd>,
    /// A model call that completed (an assistant `message_end`).
    pub call: Option<CallMetric>,
}

/// Everything the exit decision needs once the stream closed.
#[derive(Debug, Clone, PartialEq)]
pub struct PiOutcome {
    pub summary: String,
    pub stats: RunStats,
    pub usage: Option<Usage>,
    pub diagnostics: RunDiagnostics,
    /// Set when the last terminal signal of the stream was a failure (seed 5.1.5, widened).
    pub terminal_error: Option<String>,
    /// `{` lines that were not JSON, plus lines too long to buffer.
    pub malformed_lines: u64,
    /// Lines dropped whole for exceeding the line cap.
    pub oversized_lines: u64,
    /// An `agent_end` record was read: the run's outcome is known.
    pub saw_terminal: bool,
}

/// The running state of one Pi stream.
#[derive(Debug)]
pub struct PiStream {
    tool_boundary_ms: u64,
    malformed: u64,
    /// Records dropped whole for exceeding the line cap.
    oversized: u64,
    last_progress: Option<TodoProgress>,
    /// The latest `agent_end` text, which wins (seed: scan agent_ends from the last).
    agent_end_summary: Option<String>,
    streamed_text: String,
    saw_agent_end: bool,
    agent_end_stats: RunStats,
    agent_end_usage: Usage,
    diagnostics: RunDiagnostics,
    tool_execution_ends: u64,
    tool_result_messages: u64,
    streamed_chars: u64,
    saw_assistant_message_end: bool,
    message_end_usage: Usage,
    terminal_error: Option<String>,
    /// Arguments of started tool calls, by call id, until they end.
    pending_args: HashMap<String, (String, u64)>,
}

impl PiStream {
    /// `run_started_ms` (epoch ms) is the first span's start.
    pub fn new(run_started_ms: u64) -> Self {
        Self {
            tool_boundary_ms: run_started_ms,
            malformed: 0,
            last_progress: None,
            agent_end_summary: None,
            oversized: 0,
            streamed_text: String::new(),
            saw_agent_end: false,
            agent_end_stats: RunStats::default(),
            agent_end_usage: Usage::default(),
            diagnostics: RunDiagnostics::default(),
            tool_execution_ends: 0,
            tool_result_messages: 0,
            streamed_chars: 0,
            saw_assistant_message_end: false,
            message_end_usage: Usage::default(),
            terminal_error: None,
            pending_args: HashMap::new(),
        }
    }

    /// One stdout line (without its newline); `now_ms` is epoch ms. Lines that do not start
    /// with `{` (Pi's own text) are ignored.
    pub fn on_line(&mut self, line: &[u8], now_ms: u64) -> LineEffects {
        let line = line.trim_ascii();
        if !line.starts_with(b"{") {
            return LineEffects::default();
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(event) => self.on_event(&event, now_ms),
            Err(_) => {
                self.malformed += 1;
                LineEffects::default()
            }
        }
    }

    /// A line too long to buffer was skipped.
    pub fn on_overlong_line(&mut self) {
        self.malformed += 1;
        self.oversized += 1;
    }

    pub fn on_event(&mut self, event: &Value, now_ms: u64) -> LineEffects {
        let mut effects = LineEffects::default();
        if let Some(progress) = parse_todo_progress(event) {
            // Pi reports each todo result twice (tool_execution_end and message_end).
            if self.last_progress.as_ref() != Some(&progress) {
                self.last_progress = Some(progress.clone());
                effects.progress = Some(progress);
            }
        }
        match str_field(event, "type") {
            Some("tool_execution_start") => self.on_tool_start(event),
            Some("tool_execution_end") => {
                self.tool_execution_ends += 1;
                let tool_name = str_field(event, "toolName").unwrap_or_default().to_owned();
                let is_error = is_true(event, "isError");
                let args = call_id(event).and_then(|id| self.pending_args.remove(id));
                if !tool_name.is_empty() {
                    let span = ToolSpan::new(&tool_name, self.tool_boundary_ms, now_ms, !is_error);
                    effects.span = Some(trajectory::with_bodies(span, args, tool_result(event)));
                    self.tool_boundary_ms = now_ms;
                }
                effects.tool_end = Some(ToolEnd {
                    tool_name,
                    is_error,
                });
            }
            Some("message_end") => {
                if let Some(message) = event.get("message") {
                    effects.call = self.on_message_end(message);
                }
            }
            Some("agent_end") => self.on_agent_end(event),
            Some("auto_retry_end") => {
                self.terminal_error = if event.get("success") == Some(&Value::Bool(false)) {
                    Some(
                        str_field(event, "finalError")
                            .unwrap_or(RETRIES_EXHAUSTED)
                            .to_owned(),
                    )
                } else {
                    None
                };
            }
            _ => {}
        }
        effects
    }

    /// Keeps a started call's arguments until it ends (seed-later 8.5).
    fn on_tool_start(&mut self, event: &Value) {
        let Some(id) = call_id(event) else {
            return;
        };
        if self.pending_args.len() >= MAX_PENDING_ARGS && !self.pending_args.contains_key(id) {
            return;
        }
        if let Some(args) =
            trajectory::body_of(event, &["args", "arguments", "input", "parameters"])
        {
            self.pending_args.insert(id.to_owned(), args);
        }
    }

    /// An assistant `message_end` is one model call: its usage, model and answer.
    fn on_message_end(&mut self, message: &Value) -> Option<CallMetric> {
        match str_field(message, "role") {
            Some("assistant") => {
                self.saw_assistant_message_end = true;
                add_usage(&mut self.message_end_usage, message);
                let text = message_text(message);
                self.streamed_chars += text.chars().count() as u64;
                let call = call_metric(message, &text);
                if !text.is_empty() {
                    self.push_streamed_text(&text);
                }
                self.terminal_error = assistant_error(message);
                Some(call)
            }
            Some("toolResult") => {
                self.tool_result_messages += 1;
                None
            }
            _ => None,
        }
    }

    fn on_agent_end(&mut self, event: &Value) {
        let top_level = (str_field(event, "stopReason") == Some("error"))
            .then(|| str_field(event, "errorMessage").map(str::to_owned))
            .flatten();
        let Some(messages) = event.get("messages").and_then(Value::as_array) else {
            self.terminal_error = top_level;
            return;
        };
        self.saw_agent_end = true;
        let assistants: Vec<&Value> = messages
            .iter()
            .filter(|m| str_field(m, "role") == Some("assistant"))
            .collect();
        for message in &assistants {
            add_transcript_stats(&mut self.agent_end_stats, message);
            add_usage(&mut self.agent_end_usage, message);
        }
        if let Some(text) = assistants
            .iter()
            .rev()
            .map(|m| message_text(m))
            .find(|t| !t.is_empty())
        {
            self.agent_end_summary = Some(text);
        }
        self.diagnostics = diagnostics(&assistants);
        self.terminal_error =
            top_level.or_else(|| assistants.last().and_then(|m| assistant_error(m)));
    }

    fn push_streamed_text(&mut self, text: &str) {
        if !self.streamed_text.is_empty() {
            self.streamed_text.push('\n');
        }
        self.streamed_text.push_str(text);
        if self.streamed_text.len() > STREAMED_TEXT_CAP_BYTES {
            let mut cut = self.streamed_text.len() - STREAMED_TEXT_CAP_BYTES;
            while !self.streamed_text.is_char_boundary(cut) {
                cut += 1;
            }
            self.streamed_text.drain(..cut);
        }
    }

    /// The outcome so far; `stdout_tail` is the end of the raw stdout, the last summary
    /// fallback.
    pub fn outcome(&self, stdout_tail: &str) -> PiOutcome {
        let summary = if let Some(s) = &self.agent_end_summary {
            s.clone()
        } else if !self.streamed_text.trim().is_empty() {
            self.streamed_text.trim().to_owned()
        } else {
            tail_chars(stdout_tail.trim(), SUMMARY_RAW_TAIL_CHARS).to_owned()
        };
        let stats = if self.saw_agent_end {
            self.agent_end_stats
        } else {
            RunStats {
                tool_calls: if self.tool_execution_ends > 0 {
                    self.tool_execution_ends
                } else {
                    self.tool_result_messages
                },
                assistant_chars: self.streamed_chars,
            }
        };
        let usage = if self.saw_assistant_message_end {
            self.message_end_usage
        } else {
            self.agent_end_usage
        };
        PiOutcome {
            summary,
            stats,
            usage: (usage != Usage::default()).then_some(usage),
            diagnostics: self.diagnostics,
            terminal_error: self.terminal_error.clone(),
            malformed_lines: self.malformed,
            oversized_lines: self.oversized,
            saw_terminal: self.saw_agent_end,
        }
    }
}

pub(super) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub(super) fn is_true(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

pub(super) fn count(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f > 0.0).map(|f| f as u64))
            .unwrap_or(0),
        None => 0,
    }
}

/// The trimmed text of a message: string content, or the concatenated `text` of its parts.
pub fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| str_field(p, "text"))
            .collect::<String>()
            .trim()
            .to_owned(),
        _ => String::new(),
    }
}

fn assistant_error(message: &Value) -> Option<String> {
    (str_field(message, "stopReason") == Some("error")).then(|| {
        str_field(message, "errorMessage")
            .unwrap_or(LAST_CALL_FAILED)
            .to_owned()
    })
}

fn add_transcript_stats(stats: &mut RunStats, message: &Value) {
    match message.get("content") {
        Some(Value::Array(parts)) => {
            for part in parts {
                if str_field(part, "type") == Some("toolCall") {
                    stats.tool_calls += 1;
                } else if let Some(text) = str_field(part, "text") {
                    stats.assistant_chars += text.chars().count() as u64;
                }
            }
        }
        Some(Value::String(s)) => stats.assistant_chars += s.trim().chars().count() as u64,
        _ => {}
    }
}

fn add_usage(total: &mut Usage, message: &Value) {
    total.add(&message_usage(message));
}

fn output_tokens(message: &Value) -> u64 {
    message.get("usage").map_or(0, |u| count(u, "output"))
}

fn diagnostics(assistants: &[&Value]) -> RunDiagnostics {
    let Some(last) = assistants.last() else {
        return RunDiagnostics::default();
    };
    RunDiagnostics {
        truncated: assistants
            .iter()
            .any(|m| output_tokens(m) >= PI_MAX_OUTPUT_TOKENS),
        final_truncated: output_tokens(last) >= PI_MAX_OUTPUT_TOKENS,
        final_answer_empty: message_text(last).is_empty(),
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
