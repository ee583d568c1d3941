//! Pi's stream as a trajectory (seed-later 8): each assistant `message_end` is one model call
//! with its usage, and each tool call's arguments and result.

use serde_json::Value;

use super::stream::{count, str_field};
use crate::agent::trajectory;
use crate::job::outcome::{CallMetric, Usage};

/// Pi's `usage` of one assistant message: `input` is the fresh input, beside `cacheRead`
/// and `cacheWrite`.
pub(super) fn message_usage(message: &Value) -> Usage {
    let Some(usage) = message.get("usage") else {
        return Usage::default();
    };
    let (cache_read, cache_write) = (count(usage, "cacheRead"), count(usage, "cacheWrite"));
    Usage {
        input_tokens: count(usage, "input") + cache_read + cache_write,
        output_tokens: count(usage, "output"),
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
    }
}

pub(super) fn call_metric(message: &Value, text: &str) -> CallMetric {
    let usage = message_usage(message);
    let (response_text, response_dropped) = trajectory::head(text);
    CallMetric {
        model: str_field(message, "model").map(str::to_owned),
        input_tokens: usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens,
        cache_read_tokens: usage.cache_read_tokens,
        cache_write_tokens: usage.cache_write_tokens,
        output_tokens: usage.output_tokens,
        finish_reason: str_field(message, "stopReason").map(str::to_owned),
        response_text,
        response_dropped,
        ..CallMetric::default()
    }
}

pub(super) fn call_id(event: &Value) -> Option<&str> {
    ["toolCallId", "tool_call_id", "callId", "id"]
        .iter()
        .find_map(|k| str_field(event, k))
}

/// What a tool answered: the text of its content parts, else its details, output or the
/// whole result.
pub(super) fn tool_result(event: &Value) -> Option<(String, u64)> {
    let result = event.get("result").filter(|r| !r.is_null())?;
    if let Some(Value::Array(parts)) = result.get("content") {
        let text: Vec<&str> = parts.iter().filter_map(|p| str_field(p, "text")).collect();
        if !text.is_empty() {
            return Some(trajectory::head(&text.join("\n")));
        }
    }
    trajectory::body_of(result, &["details", "content", "output"])
        .or_else(|| Some(trajectory::body(result)))
}

#[cfg(test)]
#[path = "calls_tests.rs"]
mod tests;
