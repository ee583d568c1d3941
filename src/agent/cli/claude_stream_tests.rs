use std::time::Duration;

use super::*;
use crate::redact::Secret;

const HAPPY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/agent-streams/claude-code-2.1.330-happy.events.jsonl"
));

const TOKEN: &str = "sk-ant-oat01-unit-test-token-value";

fn feed_all(stream: &mut ClaudeStream, text: &str) -> Vec<LineEffects> {
    text.lines().map(|l| stream.feed(l)).collect()
}

fn stream() -> ClaudeStream {
    ClaudeStream::new(Redactor::patterns_only().with_secret(&Secret::new(TOKEN)))
}

#[test]
fn the_real_happy_stream_yields_its_summary_stats_and_usage() {
    let mut s = stream();
    let effects = feed_all(&mut s, HAPPY);
    let tools: Vec<(String, bool)> = effects
        .iter()
        .flat_map(|e| e.tools.iter().map(|t| (t.name.clone(), t.is_error)))
        .collect();
    assert_eq!(
        tools,
        [("Write".to_owned(), false), ("Bash".to_owned(), false)]
    );
    assert!(effects.iter().all(|e| e.progress.is_none()));
    let outcome = s.finish().unwrap();
    assert_eq!(outcome.summary, "Created hello.txt and committed it.");
    assert_eq!(
        outcome.stats,
        RunStats {
            tool_calls: 2,
            assistant_chars: "Created hello.txt and committed it.".len() as u64,
        }
    );
    assert_eq!(
        outcome.usage,
        Some(Usage {
            input_tokens: 300,
            output_tokens: 27,
            ..Usage::default()
        })
    );
}

#[test]
fn cache_reads_and_writes_count_as_input_and_are_kept_apart() {
    let mut s = stream();
    s.feed(r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":1000,"output_tokens":7}}"#);
    let usage = s.finish().unwrap().usage;
    assert_eq!(
        usage,
        Some(Usage {
            input_tokens: 1110,
            output_tokens: 7,
            cache_read_tokens: 100,
            cache_write_tokens: 1000,
        })
    );
}

#[test]
fn a_result_flagged_is_error_fails_the_run_with_its_text_redacted() {
    let mut s = stream();
    s.feed(&format!(
        r#"{{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Invalid API key {TOKEN} · Please run /login"}}"#
    ));
    let err = s.finish().unwrap_err();
    assert!(
        err.starts_with("claude-code reported an error (API status 401): Invalid API key"),
        "{err}"
    );
    assert!(err.contains("Please run /login"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
}

#[test]
fn a_result_subtype_other_than_success_fails_the_run_and_names_the_subtype() {
    let mut s = stream();
    s.feed(r#"{"type":"result","subtype":"error_max_turns","is_error":false,"num_turns":50}"#);
    assert_eq!(
        s.finish().unwrap_err(),
        "claude-code run ended with error_max_turns"
    );

    let mut s = stream();
    s.feed(r#"{"type":"result","subtype":"error_during_execution","errors":["tool crashed","then gave up"]}"#);
    assert_eq!(
        s.finish().unwrap_err(),
        "claude-code run ended with error_during_execution: tool crashed; then gave up"
    );
}

#[test]
fn todo_write_emits_the_snapshot_it_carries() {
    let mut s = stream();
    let effects = s.feed(r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"TodoWrite","input":{"todos":[{"content":"read code","status":"completed","activeForm":"Reading"},{"content":"write code","status":"in_progress"},{"content":"test","status":"pending"}]}}]}}"#);
    let progress = effects.progress.unwrap();
    assert_eq!(
        (progress.completed, progress.in_progress, progress.total),
        (1, 1, 3)
    );
    let items = progress.items.unwrap();
    assert_eq!(items[1].label, "write code");
    assert_eq!(items[1].status, TodoStatus::InProgress);
    assert!(
        effects.tools.is_empty(),
        "the call completes with its result"
    );
}

#[test]
fn task_create_and_update_results_rebuild_the_snapshot() {
    let mut s = stream();
    let lines = [
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"c1","name":"TaskCreate","input":{"subject":"Audit","description":"d"}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"c1","content":"Task #1 created successfully: Audit"}]},"tool_use_result":{"task":{"id":"1","subject":"Audit"}}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"c2","name":"TaskCreate","input":{"subject":"Test","description":"d"}},{"type":"tool_use","id":"c3","name":"TaskCreate","input":{"subject":"Drop me","description":"d"}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"c2","content":"Task #2 created successfully: Test"},{"type":"tool_result","tool_use_id":"c3","content":"Task #3 created successfully: Drop me"}]}}"#,
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"u1","name":"TaskUpdate","input":{"taskId":"1","status":"completed"}},{"type":"tool_use","id":"u2","name":"TaskUpdate","input":{"taskId":"2","status":"in_progress"}},{"type":"tool_use","id":"u3","name":"TaskUpdate","input":{"taskId":"3","status":"deleted"}}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"u1","content":"Updated task #1 status"},{"type":"tool_result","tool_use_id":"u2","content":"Updated task #2 status"},{"type":"tool_result","tool_use_id":"u3","content":"Updated task #3 deleted"}]}}"#,
    ];
    let effects: Vec<LineEffects> = lines.iter().map(|l| s.feed(l)).collect();
    let first = effects[1].progress.clone().unwrap();
    assert_eq!((first.completed, first.in_progress, first.total), (0, 0, 1));
    let last = effects[5].progress.clone().unwrap();
    assert_eq!((last.completed, last.in_progress, last.total), (1, 1, 2));
    let labels: Vec<&str> = last
        .items
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| i.label.as_str())
        .collect();
    assert_eq!(labels, ["Audit", "Test"]);
    assert_eq!(effects[5].tools.len(), 3);
}

#[test]
fn a_failing_tool_result_is_reported_with_its_name_duration_and_bodies() {
    let mut s = stream();
    let t0 = Instant::now();
    s.feed_at(
        r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"b1","name":"Bash","input":{"command":"false"}}]}}"#,
        t0,
    );
    let effects = s.feed_at(
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"b1","content":"exit 1","is_error":true}]}}"#,
        t0 + Duration::from_millis(250),
    );
    assert_eq!(
        effects.tools,
        [ToolCall {
            name: "Bash".into(),
            is_error: true,
            duration: Some(Duration::from_millis(250)),
            args: Some((r#"{"command":"false"}"#.into(), 0)),
            result: Some(("exit 1".into(), 0)),
        }]
    );
}

#[test]
fn noise_and_malformed_lines_change_nothing() {
    let mut s = stream();
    for line in ["", "not json", "{broken", "[1,2]", r#"{"type":"system"}"#] {
        assert_eq!(s.feed(line), LineEffects::default());
    }
    let outcome = s.finish().unwrap();
    assert_eq!(outcome.summary, "");
    assert!(outcome.stats.never_acted());
    assert_eq!(outcome.usage, None);
}

#[test]
fn the_real_stream_gives_one_call_per_message_id_completed_by_the_next_or_the_result() {
    let mut s = stream();
    let calls: Vec<_> = feed_all(&mut s, HAPPY)
        .into_iter()
        .flat_map(|e| e.calls)
        .collect();
    // msg_0, msg_1, msg_2: the last one completed by the result event.
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls
        .iter()
        .all(|c| c.model.as_deref() == Some("claude-sonnet-4-5")));
    assert_eq!(
        calls[2].response_text,
        "Created hello.txt and committed it."
    );
    assert_eq!(calls[0].response_text, "", "a tool-only turn has no text");
    assert!(s.flush_calls().is_empty());
}

#[test]
fn a_run_killed_mid_call_still_reports_the_open_call() {
    let mut s = stream();
    s.feed(r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":4,"cache_read_input_tokens":9,"output_tokens":2}}}"#);
    let open = s.flush_calls();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].input_tokens, open[0].cache_read_tokens), (4, 9));
}

#[test]
fn the_init_event_reports_the_tool_servers_and_nothing_else_does() {
    let mut s = stream();
    let init = s.feed(r#"{"type":"system","subtype":"init","mcp_servers":[{"name":"docs","status":"connected"},{"name":"fs","status":"failed"}],"tools":["Bash","mcp__docs__search"]}"#);
    let servers = init.tool_servers.unwrap();
    assert_eq!(
        serde_json::to_value(&servers).unwrap(),
        serde_json::json!([
            {"id": "docs", "status": "ready", "toolCount": 1},
            {"id": "fs", "status": "failed", "toolCount": 0}
        ])
    );
    let other = s.feed(r#"{"type":"system","subtype":"status"}"#);
    assert_eq!(other.tool_servers, None);
}
