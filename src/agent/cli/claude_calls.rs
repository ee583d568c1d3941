//! Claude Code's model calls (seed-later 8.3). The stream carries one `assistant` envelope per
//! content block, each repeating its call's usage; counting envelopes inflated a measured run
//! from 1.47M tokens to 5.53M. Envelopes are grouped into calls by `message.id`, keeping the
//! largest count per token class, within their lane (the main conversation, or one subagent
//! dispatch: `parent_tool_use_id`), so interleaved subagent turns neither split nor merge the
//! main conversation's calls.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use super::stream::count;
use crate::agent::trajectory;
use crate::job::outcome::CallMetric;

/// Recently completed call ids remembered, so a late repeat of a call is not counted again.
const COMPLETED_IDS_KEPT: usize = 64;
/// Lanes open at once; a stream opening more completes the oldest first.
const MAX_OPEN_LANES: usize = 32;

/// One call being assembled.
struct OpenCall {
    id: String,
    /// Arrival order among open calls, so a flush completes them in order.
    opened: u64,
    model: Option<String>,
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
    stop_reason: Option<String>,
    text: String,
    text_chars: usize,
    text_cut: u64,
}

impl OpenCall {
    fn absorb(&mut self, message: &Value) {
        if let Some(usage) = message.get("usage") {
            self.input = self.input.max(count(usage, "input_tokens"));
            self.cache_read = self.cache_read.max(count(usage, "cache_read_input_tokens"));
            self.cache_write = self
                .cache_write
                .max(count(usage, "cache_creation_input_tokens"));
            self.output = self.output.max(count(usage, "output_tokens"));
        }
        if self.model.is_none() {
            self.model = message
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        if self.stop_reason.is_none() {
            self.stop_reason = message
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let blocks = message.get("content").and_then(Value::as_array);
        for text in blocks.into_iter().flatten().filter_map(|b| {
            (b.get("type").and_then(Value::as_str) == Some("text"))
                .then(|| b.get("text").and_then(Value::as_str))
                .flatten()
        }) {
            let room = trajectory::BODY_HEAD_CHARS.saturating_sub(self.text_chars);
            let kept = crate::redact::head_chars(text, room);
            let kept_chars = kept.chars().count();
            self.text_chars += kept_chars;
            self.text_cut += (text.chars().count() - kept_chars) as u64;
            self.text.push_str(kept);
        }
    }

    fn complete(self) -> CallMetric {
        CallMetric {
            model: self.model,
            input_tokens: self.input,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
            output_tokens: self.output,
            finish_reason: self.stop_reason,
            response_text: self.text,
            response_dropped: self.text_cut,
            ..CallMetric::default()
        }
    }
}

/// The lane of an event: `""` for the main conversation, else the subagent's dispatch id.
fn lane_of(event: &Value) -> &str {
    event
        .get("parent_tool_use_id")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Groups one run's `assistant` envelopes into model calls.
#[derive(Default)]
pub struct ClaudeCalls {
    /// The open call of each lane (`""` is the main conversation).
    open: HashMap<String, OpenCall>,
    completed: VecDeque<String>,
    anonymous: u64,
    opened: u64,
}

impl ClaudeCalls {
    /// An `assistant` envelope; returns the calls it completed.
    pub fn on_assistant(&mut self, event: &Value) -> Vec<CallMetric> {
        match event.get("message") {
            Some(message) => self.on_message(lane_of(event), message),
            None => Vec::new(),
        }
    }

    /// A `stream_event` (`--include-partial-messages`): the API's own `message_start`, and
    /// the `message_delta` whose usage is the call's final output count, which the envelopes,
    /// written before it, do not carry.
    pub fn on_stream_event(&mut self, event: &Value) -> Vec<CallMetric> {
        let Some(inner) = event.get("event") else {
            return Vec::new();
        };
        match inner.get("type").and_then(Value::as_str) {
            Some("message_start") => match inner.get("message") {
                Some(message) => self.on_message(lane_of(event), message),
                None => Vec::new(),
            },
            Some("message_delta") => {
                if let Some(call) = self.open.get_mut(lane_of(event)) {
                    let stop = inner.pointer("/delta/stop_reason").cloned();
                    let delta = serde_json::json!({
                        "usage": inner.get("usage").cloned().unwrap_or(Value::Null),
                        "stop_reason": stop.unwrap_or(Value::Null),
                    });
                    call.absorb(&delta);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_message(&mut self, lane: &str, message: &Value) -> Vec<CallMetric> {
        let lane = lane.to_owned();
        let id = match message.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                self.anonymous += 1;
                format!("#anon-{}", self.anonymous)
            }
        };
        if self.completed.contains(&id) {
            return Vec::new();
        }
        let mut done = Vec::new();
        if self.open.get(&lane).is_some_and(|c| c.id != id) {
            done.extend(self.close(&lane));
        }
        if !self.open.contains_key(&lane) && self.open.len() >= MAX_OPEN_LANES {
            if let Some(oldest) = self.oldest_lane() {
                done.extend(self.close(&oldest));
            }
        }
        self.opened += 1;
        let opened = self.opened;
        self.open
            .entry(lane)
            .or_insert_with(|| OpenCall {
                id,
                opened,
                model: None,
                input: 0,
                cache_read: 0,
                cache_write: 0,
                output: 0,
                stop_reason: None,
                text: String::new(),
                text_chars: 0,
                text_cut: 0,
            })
            .absorb(message);
        done
    }

    /// Completes every open call, oldest first: the run ended.
    pub fn flush(&mut self) -> Vec<CallMetric> {
        let mut done = Vec::new();
        while let Some(lane) = self.oldest_lane() {
            done.extend(self.close(&lane));
        }
        done
    }

    fn oldest_lane(&self) -> Option<String> {
        self.open
            .iter()
            .min_by_key(|(_, c)| c.opened)
            .map(|(lane, _)| lane.clone())
    }

    fn close(&mut self, lane: &str) -> Option<CallMetric> {
        let call = self.open.remove(lane)?;
        if self.completed.len() >= COMPLETED_IDS_KEPT {
            self.completed.pop_front();
        }
        self.completed.push_back(call.id.clone());
        Some(call.complete())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(id: &str, lane: Option<&str>, block: Value, usage: Value) -> Value {
        json!({"type": "assistant", "parent_tool_use_id": lane, "message": {
            "id": id, "model": "claude-x", "content": [block], "stop_reason": null, "usage": usage
        }})
    }

    fn usage(input: u64, read: u64, write: u64, output: u64) -> Value {
        json!({"input_tokens": input, "cache_read_input_tokens": read,
               "cache_creation_input_tokens": write, "output_tokens": output})
    }

    #[test]
    fn envelopes_of_one_message_are_one_call_with_the_largest_count_per_class() {
        let mut calls = ClaudeCalls::default();
        let text = json!({"type": "text", "text": "Reading. "});
        let tool = json!({"type": "tool_use", "id": "t1", "name": "Read", "input": {}});
        assert!(calls
            .on_assistant(&envelope("m1", None, text, usage(10, 500, 40, 3)))
            .is_empty());
        // The same call's next block repeats its usage (output grown): not a second call.
        assert!(calls
            .on_assistant(&envelope("m1", None, tool, usage(10, 500, 40, 9)))
            .is_empty());
        let next = json!({"type": "text", "text": "Done."});
        let done = calls.on_assistant(&envelope("m2", None, next, usage(12, 540, 0, 2)));
        assert_eq!(done.len(), 1);
        let first = &done[0];
        assert_eq!(
            (
                first.input_tokens,
                first.cache_read_tokens,
                first.cache_write_tokens,
                first.output_tokens
            ),
            (10, 500, 40, 9)
        );
        assert_eq!(first.response_text, "Reading. ");
        assert_eq!(first.model.as_deref(), Some("claude-x"));
        let last = calls.flush();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].response_text, "Done.");
        assert!(calls.flush().is_empty());
    }

    #[test]
    fn the_final_output_count_and_stop_reason_come_from_the_message_delta() {
        let mut calls = ClaudeCalls::default();
        let start = json!({"type": "stream_event", "parent_tool_use_id": null, "event": {
            "type": "message_start", "message": {"id": "m1", "model": "claude-x", "content": [],
            "usage": usage(6, 100, 10, 1)}}});
        assert!(calls.on_stream_event(&start).is_empty());
        let text = json!({"type": "text", "text": "Hello."});
        assert!(calls
            .on_assistant(&envelope("m1", None, text, usage(6, 100, 10, 1)))
            .is_empty());
        let delta = json!({"type": "stream_event", "event": {"type": "message_delta",
            "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}}});
        assert!(calls.on_stream_event(&delta).is_empty());
        let done = calls.flush();
        assert_eq!((done[0].output_tokens, done[0].input_tokens), (42, 6));
        assert_eq!(done[0].finish_reason.as_deref(), Some("end_turn"));
        assert_eq!(done[0].response_text, "Hello.", "the start adds no text");
    }

    #[test]
    fn an_interleaved_subagent_turn_neither_splits_nor_merges_the_main_call() {
        let mut calls = ClaudeCalls::default();
        let text = |t: &str| json!({"type": "text", "text": t});
        assert!(calls
            .on_assistant(&envelope("m1", None, text("a"), usage(5, 0, 0, 1)))
            .is_empty());
        let sub = envelope("s1", Some("toolu_9"), text("sub"), usage(7, 0, 0, 2));
        assert!(calls.on_assistant(&sub).is_empty());
        // The main call continues after the subagent's envelope: still one call.
        assert!(calls
            .on_assistant(&envelope("m1", None, text("b"), usage(5, 0, 0, 4)))
            .is_empty());
        let all = calls.flush();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].response_text.as_str(), all[0].output_tokens),
            ("ab", 4)
        );
        assert_eq!(
            (all[1].response_text.as_str(), all[1].input_tokens),
            ("sub", 7)
        );
    }

    #[test]
    fn a_completed_call_repeated_later_is_not_counted_again_and_anonymous_envelopes_are_calls() {
        let mut calls = ClaudeCalls::default();
        let text = json!({"type": "text", "text": "x"});
        calls.on_assistant(&envelope("m1", None, text.clone(), usage(1, 0, 0, 1)));
        assert_eq!(
            calls
                .on_assistant(&envelope("m2", None, text.clone(), usage(1, 0, 0, 1)))
                .len(),
            1
        );
        assert_eq!(
            calls
                .on_assistant(&envelope("m1", None, text.clone(), usage(1, 0, 0, 1)))
                .len(),
            0
        );
        let anon =
            json!({"type": "assistant", "message": {"content": [], "usage": usage(3, 0, 0, 1)}});
        assert_eq!(calls.on_assistant(&anon).len(), 1, "m2 completes");
        assert_eq!(
            calls.on_assistant(&anon).len(),
            1,
            "each anonymous envelope is its own call"
        );
        assert_eq!(calls.flush().len(), 1);
    }
}
