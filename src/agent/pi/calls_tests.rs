//! Pi's stream as a trajectory: model calls from real streams, tool bodies paired by call id.

use serde_json::json;

use crate::agent::pi::stream::PiStream;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/agent-streams/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn each_assistant_message_of_a_real_stream_is_one_call_with_its_usage_and_stop_reason() {
    let mut stream = PiStream::new(0);
    let effects: Vec<_> = fixture("pi-0.80.3-happy.events.jsonl")
        .lines()
        .map(|l| stream.on_line(l.as_bytes(), 1))
        .collect();
    let calls: Vec<_> = effects.iter().filter_map(|e| e.call.clone()).collect();
    let outcome = stream.outcome("");
    // Three model turns: write, edit+bash, the final answer.
    assert!(calls.len() >= 3, "{calls:?}");
    assert_eq!(calls[0].finish_reason.as_deref(), Some("toolUse"));
    assert_eq!(calls[0].model.as_deref(), Some("mock-model"));
    assert_eq!((calls[0].input_tokens, calls[0].output_tokens), (120, 7));
    let last = calls.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("stop"));
    assert_eq!(outcome.summary, last.response_text);
    // The run's total is its calls' sum.
    let mut sum = crate::job::outcome::Usage::default();
    calls.iter().for_each(|c| sum.add(&c.usage()));
    assert_eq!(outcome.usage, Some(sum));
}

#[test]
fn cache_classes_are_kept_apart_and_the_fresh_input_is_pi_input() {
    let mut stream = PiStream::new(0);
    let end = json!({"type": "message_end", "message": {
        "role": "assistant", "model": "m", "stopReason": "stop",
        "content": [{"type": "text", "text": "ok"}],
        "usage": {"input": 7, "cacheRead": 100, "cacheWrite": 20, "output": 3}
    }});
    let call = stream.on_event(&end, 1).call.unwrap();
    assert_eq!(
        (
            call.input_tokens,
            call.cache_read_tokens,
            call.cache_write_tokens,
            call.output_tokens
        ),
        (7, 100, 20, 3)
    );
    let usage = stream.outcome("").usage.unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens
        ),
        (127, 100, 20)
    );
}

#[test]
fn a_tool_span_carries_the_arguments_of_its_start_and_the_text_of_its_result() {
    let mut stream = PiStream::new(0);
    // Two calls in flight at once: each end finds its own start's arguments.
    for (id, cmd) in [("c1", "ls"), ("c2", "pwd")] {
        let start = json!({"type": "tool_execution_start", "toolCallId": id, "toolName": "bash",
                           "args": {"command": cmd}});
        assert!(stream.on_event(&start, 1).span.is_none());
    }
    let end = |id: &str, text: &str| {
        json!({"type": "tool_execution_end", "toolCallId": id, "toolName": "bash", "isError": false,
               "result": {"content": [{"type": "text", "text": text}], "details": {"exit": 0}}})
    };
    let second = stream.on_event(&end("c2", "/repo"), 5).span.unwrap();
    let first = stream.on_event(&end("c1", "a.txt"), 6).span.unwrap();
    assert_eq!(second.args.as_deref(), Some(r#"{"command":"pwd"}"#));
    assert_eq!(second.result.as_deref(), Some("/repo"));
    assert_eq!(first.args.as_deref(), Some(r#"{"command":"ls"}"#));
    // A result without text parts falls back to its details.
    let bare = json!({"type": "tool_execution_end", "toolCallId": "c3", "toolName": "edit",
                      "isError": true, "result": {"details": {"diff": "-a\n+b"}}});
    let span = stream.on_event(&bare, 7).span.unwrap();
    assert_eq!(span.args, None);
    assert_eq!(span.result.as_deref(), Some(r#"{"diff":"-a\n+b"}"#));
    assert!(!span.ok);
}
