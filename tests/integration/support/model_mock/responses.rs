//! A step in the OpenAI Responses API's form (`POST /v1/responses`), as Codex reads it.
//!
//! Streamed: `response.created` and `response.in_progress` (the response shell), then for every
//! output item `response.output_item.added`, its deltas split in two
//! (`response.function_call_arguments.delta` / `.done` for a `function_call`;
//! `response.content_part.added`, `response.output_text.delta`, `response.output_text.done`,
//! `response.content_part.done` for a `message`), `response.output_item.done` with the whole
//! item; then `response.completed` with every output item and the usage. Every event carries a
//! `sequence_number`.

use serde_json::{json, Value};

use super::{split_in_two, Step, Turn};

/// Input items the model produced (a message without `type` is a message).
fn is_model_output(item: &Value) -> bool {
    match item.get("type").and_then(Value::as_str) {
        Some("function_call" | "reasoning" | "custom_tool_call" | "local_shell_call") => true,
        Some("message") | None => item.get("role").and_then(Value::as_str) == Some("assistant"),
        Some(_) => false,
    }
}

/// The number of model turns in the request's `input`: runs of consecutive model-output items,
/// so parallel function calls of one turn count once.
pub(super) fn turn(body: &Value) -> Option<usize> {
    let input = body.get("input")?;
    let Some(items) = input.as_array() else {
        // A bare string input is a first user message.
        return input.is_string().then_some(0);
    };
    let mut turns = 0;
    let mut in_output = false;
    for item in items {
        let output = is_model_output(item);
        if output && !in_output {
            turns += 1;
        }
        in_output = output;
    }
    Some(turns)
}

fn item_id(turn: &Turn, kind: &str, index: usize) -> String {
    format!("{kind}_mock_{}_{}", turn.turn, index)
}

/// The finished output items of a step.
fn output_items(turn: &Turn, step: &Step) -> Vec<Value> {
    match step {
        Step::ToolCalls(calls) => calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                json!({
                    "type": "function_call",
                    "id": item_id(turn, "fc", index),
                    "call_id": turn.tool_call_id(index),
                    "name": call.name,
                    "arguments": call.arguments.to_string(),
                    "status": "completed",
                })
            })
            .collect(),
        Step::Text(text) => vec![json!({
            "type": "message",
            "id": item_id(turn, "msg", 0),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })],
        Step::Fail { .. } => Vec::new(),
    }
}

/// The Responses API's usage: `input_tokens` is the whole prompt, `cached_tokens` of it
/// were read (this API reports no cache writes: they count as fresh input here).
fn usage(turn: &Turn) -> Value {
    let s = turn.served;
    json!({
        "input_tokens": s.prompt(),
        "input_tokens_details": {"cached_tokens": s.cache_read},
        "output_tokens": s.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": s.prompt() + s.output,
    })
}

fn response(turn: &Turn, status: &str, output: Vec<Value>, usage: Value) -> Value {
    json!({
        "id": turn.id("resp"),
        "object": "response",
        "created_at": 0,
        "status": status,
        "model": turn.model,
        "output": output,
        "usage": usage,
        "error": null,
        "incomplete_details": null,
    })
}

/// The non-streamed form.
pub(super) fn whole(turn: &Turn, step: &Step) -> Value {
    response(turn, "completed", output_items(turn, step), usage(turn))
}

/// Numbers the events as they are added.
struct Events(Vec<String>);

impl Events {
    fn push(&mut self, mut data: Value) {
        data["sequence_number"] = json!(self.0.len());
        let name = data["type"].as_str().unwrap_or_default().to_owned();
        self.0.push(super::named_event(&name, &data));
    }
}

/// The streamed form.
pub(super) fn events(turn: &Turn, step: &Step) -> Vec<String> {
    let mut ev = Events(Vec::new());
    let shell = response(turn, "in_progress", Vec::new(), Value::Null);
    ev.push(json!({"type": "response.created", "response": shell}));
    ev.push(json!({"type": "response.in_progress", "response": shell}));
    let items = output_items(turn, step);
    for (output_index, item) in items.iter().enumerate() {
        let id = item["id"].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if item["type"] == "function_call" {
            added["arguments"] = json!("");
        } else {
            added["content"] = json!([]);
        }
        ev.push(json!({
            "type": "response.output_item.added", "output_index": output_index, "item": added,
        }));
        if item["type"] == "function_call" {
            let arguments = item["arguments"].as_str().unwrap_or_default();
            let (first, rest) = split_in_two(arguments);
            for delta in [first, rest] {
                ev.push(json!({
                    "type": "response.function_call_arguments.delta",
                    "item_id": id, "output_index": output_index, "delta": delta,
                }));
            }
            ev.push(json!({
                "type": "response.function_call_arguments.done",
                "item_id": id, "output_index": output_index, "arguments": arguments,
            }));
        } else {
            let part = &item["content"][0];
            let text = part["text"].as_str().unwrap_or_default();
            let at = json!({"item_id": id, "output_index": output_index, "content_index": 0});
            let with = |mut fields: Value| {
                for (k, v) in at.as_object().into_iter().flatten() {
                    fields[k] = v.clone();
                }
                fields
            };
            ev.push(with(json!({
                "type": "response.content_part.added",
                "part": {"type": "output_text", "text": "", "annotations": []},
            })));
            let (first, rest) = split_in_two(text);
            for delta in [first, rest] {
                ev.push(with(
                    json!({"type": "response.output_text.delta", "delta": delta}),
                ));
            }
            ev.push(with(
                json!({"type": "response.output_text.done", "text": text}),
            ));
            ev.push(with(
                json!({"type": "response.content_part.done", "part": part}),
            ));
        }
        ev.push(json!({
            "type": "response.output_item.done", "output_index": output_index, "item": item,
        }));
    }
    ev.push(json!({
        "type": "response.completed",
        "response": response(turn, "completed", items, usage(turn)),
    }));
    ev.0
}
