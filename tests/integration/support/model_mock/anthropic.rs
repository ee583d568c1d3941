//! A step in the Anthropic Messages API's form (`POST /v1/messages`), as Claude Code reads it.
//!
//! Streamed: `message_start` (the message shell with the input usage), then for every content
//! block `content_block_start`, its deltas split in two (`text_delta`, or `input_json_delta`
//! whose `partial_json` pieces concatenate to the tool input), `content_block_stop`; then
//! `message_delta` with the `stop_reason` (`tool_use` or `end_turn`) and the output usage, and
//! `message_stop`. A `ping` follows `message_start`, as the real API sends one.

use serde_json::{json, Value};

use super::{named_event, output_tokens, split_in_two, Step, Turn};

/// The number of assistant messages in the request's `messages`.
pub(super) fn turn(body: &Value) -> Option<usize> {
    let messages = body.get("messages")?.as_array()?;
    Some(super::count_role(messages, "assistant"))
}

/// The API's error envelope; the `type` follows the status as the real API's does.
pub(super) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn tool_use_id(turn: &Turn, index: usize) -> String {
    format!("toolu_mock_{}_{}", turn.turn, index)
}

fn stop_reason(step: &Step) -> &'static str {
    match step {
        Step::ToolCalls(_) => "tool_use",
        Step::Text(_) | Step::Fail { .. } => "end_turn",
    }
}

/// Anthropic's usage: `input_tokens` is the fresh input only, beside the two cache classes.
fn usage(turn: &Turn, output: u64) -> Value {
    let s = turn.served;
    json!({
        "input_tokens": s.fresh,
        "output_tokens": output,
        "cache_creation_input_tokens": s.cache_write,
        "cache_read_input_tokens": s.cache_read
    })
}

/// The whole content blocks of a step.
fn content(turn: &Turn, step: &Step) -> Vec<Value> {
    match step {
        Step::ToolCalls(calls) => calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                json!({
                    "type": "tool_use",
                    "id": tool_use_id(turn, index),
                    "name": call.name,
                    "input": call.arguments,
                })
            })
            .collect(),
        Step::Text(text) => vec![json!({"type": "text", "text": text})],
        Step::Fail { .. } => Vec::new(),
    }
}

fn message(turn: &Turn, content: Vec<Value>, stop: Option<&str>, output: usize) -> Value {
    json!({
        "id": turn.id("msg"),
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage(turn, output as u64),
    })
}

/// The non-streamed form.
pub(super) fn whole(turn: &Turn, step: &Step) -> Value {
    message(
        turn,
        content(turn, step),
        Some(stop_reason(step)),
        output_tokens(step),
    )
}

/// The streamed form.
pub(super) fn events(turn: &Turn, step: &Step) -> Vec<String> {
    let mut events = vec![
        named_event(
            "message_start",
            &json!({"type": "message_start", "message": message(turn, Vec::new(), None, 1)}),
        ),
        named_event("ping", &json!({"type": "ping"})),
    ];
    for (index, block) in content(turn, step).into_iter().enumerate() {
        let (start, pieces): (Value, Vec<Value>) = match block["type"].as_str() {
            Some("tool_use") => {
                let input = block["input"].to_string();
                let (first, rest) = split_in_two(&input);
                let mut start = block.clone();
                start["input"] = json!({});
                let piece = |p: &str| json!({"type": "input_json_delta", "partial_json": p});
                (start, vec![piece(first), piece(rest)])
            }
            _ => {
                let text = block["text"].as_str().unwrap_or_default();
                let (first, rest) = split_in_two(text);
                let piece = |p: &str| json!({"type": "text_delta", "text": p});
                (
                    json!({"type": "text", "text": ""}),
                    vec![piece(first), piece(rest)],
                )
            }
        };
        events.push(named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in pieces {
            events.push(named_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(named_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(named_event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(step), "stop_sequence": null},
            "usage": {"output_tokens": output_tokens(step)},
        }),
    ));
    events.push(named_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    events
}
