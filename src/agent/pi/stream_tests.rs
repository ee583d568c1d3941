use serde_json::{json, Value};

use super::*;
use crate::agent::guard::{GuardLimits, ProgressGuard};
use crate::agent::process::{Frame, LineFramer};
use crate::job::outcome::{TodoItem, TodoStatus};

/// Feeds `stdout` through the same framing as a live run, one line every 10 ms from t=1000.
fn parse(stdout: &[u8]) -> (PiOutcome, Vec<LineEffects>) {
    let mut stream = PiStream::new(1000);
    let mut effects = Vec::new();
    let mut now = 1000;
    let mut framer = LineFramer::new(8 * 1024 * 1024);
    let mut emit = |frame: Frame<'_>| match frame {
        Frame::Line(line) => {
            now += 10;
            effects.push(stream.on_line(line, now));
        }
        Frame::Overlong => stream.on_overlong_line(),
    };
    framer.push(stdout, &mut emit);
    framer.finish(&mut emit);
    let text = String::from_utf8_lossy(stdout);
    (stream.outcome(&text), effects)
}

fn lines(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(e.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/agent-streams/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn spans(effects: &[LineEffects]) -> Vec<(String, bool)> {
    effects
        .iter()
        .filter_map(|e| e.span.as_ref())
        .map(|s| (s.tool.clone(), s.ok))
        .collect()
}

fn progress(effects: &[LineEffects]) -> Vec<TodoProgress> {
    effects.iter().filter_map(|e| e.progress.clone()).collect()
}

fn assistant(content: Value) -> Value {
    json!({"role": "assistant", "content": content})
}

fn stats(tool_calls: u64, assistant_chars: u64) -> RunStats {
    RunStats {
        tool_calls,
        assistant_chars,
    }
}

// ---- seed 9.5 rows 6-9: summary ----

#[test]
fn the_summary_is_the_last_assistant_text_of_the_agent_end_transcript() {
    let mut input = lines(&[
        json!({"type": "turn_start"}),
        json!({"type": "message_end", "message": assistant(json!([{"type": "toolCall", "name": "write"}]))}),
    ]);
    input.extend_from_slice(b"not json\n");
    input.extend(lines(&[json!({"type": "agent_end", "messages": [
        {"role": "user", "content": "do it"},
        assistant(json!([{"type": "toolCall", "name": "write"}])),
        {"role": "toolResult", "content": "ok"},
        assistant(json!([{"type": "text", "text": "Created IMPLEMENTED.md."}])),
    ]})]));
    let (out, _) = parse(&input);
    assert_eq!(out.summary, "Created IMPLEMENTED.md.");
    assert_eq!(
        out.malformed_lines, 0,
        "non-JSON text lines are not malformed"
    );
}

#[test]
fn without_agent_end_the_summary_falls_back_to_streamed_assistant_text() {
    let (out, _) = parse(&lines(&[
        json!({"type": "message_end", "message": {"role": "user", "content": "hi"}}),
        json!({"type": "message_end", "message": assistant(json!([{"type": "text", "text": "done"}]))}),
    ]));
    assert_eq!(out.summary, "done");
}

#[test]
fn string_message_content_is_read() {
    let (out, _) = parse(&lines(&[
        json!({"type": "message_end", "message": assistant(json!("plain answer"))}),
    ]));
    assert_eq!(out.summary, "plain answer");
}

#[test]
fn with_nothing_structured_the_summary_is_the_raw_tail() {
    let (out, _) = parse(b"plain text only");
    assert_eq!(out.summary, "plain text only");
    let long = "x".repeat(5000);
    let (out, _) = parse(long.as_bytes());
    assert_eq!(out.summary.len(), SUMMARY_RAW_TAIL_CHARS);
}

#[test]
fn a_final_agent_end_without_text_falls_back_to_an_earlier_one() {
    let (out, _) = parse(&lines(&[
        json!({"type": "agent_end", "messages": [assistant(json!([{"type": "text", "text": "first"}]))]}),
        json!({"type": "agent_end", "messages": [assistant(json!([]))]}),
    ]));
    assert_eq!(out.summary, "first");
}

// ---- rows 10-12: stats ----

#[test]
fn stats_count_tool_calls_and_assistant_text_from_the_transcript() {
    let (out, _) = parse(&lines(&[json!({"type": "agent_end", "messages": [
        assistant(json!([{"type": "toolCall", "name": "a"}, {"type": "toolCall", "name": "b"}])),
        assistant(json!([{"type": "text", "text": "Done."}])),
    ]})]));
    assert_eq!(out.summary, "Done.");
    assert_eq!(out.stats, stats(2, 5));
}

#[test]
fn without_a_transcript_stats_come_from_streamed_events() {
    let (out, _) = parse(&lines(&[
        json!({"type": "tool_execution_end", "toolName": "bash", "isError": false}),
        json!({"type": "message_end", "message": assistant(json!("working"))}),
    ]));
    assert_eq!(out.stats, stats(1, 7));
    let (out, _) = parse(&lines(&[
        json!({"type": "message_end", "message": {"role": "toolResult", "toolName": "bash"}}),
    ]));
    assert_eq!(
        out.stats,
        stats(1, 0),
        "toolResult messages are the last resort"
    );
}

#[test]
fn a_true_no_op_reports_zero_stats() {
    let (out, _) = parse(&lines(&[json!({"type": "agent_end", "messages": []})]));
    assert!(out.stats.never_acted());
    let (out, _) = parse(b"");
    assert!(out.stats.never_acted());
    assert_eq!(out.usage, None);
}

#[test]
fn stats_and_usage_are_summed_over_every_agent_end() {
    let turn = |text: &str| {
        json!({"role": "assistant", "content": [{"type": "toolCall"}, {"type": "text", "text": text}],
               "usage": {"input": 10, "output": 3, "cacheRead": 5, "cacheWrite": 1}})
    };
    let (out, _) = parse(&lines(&[
        json!({"type": "agent_end", "messages": [turn("ab")], "willRetry": true}),
        json!({"type": "agent_end", "messages": [turn("cde")]}),
    ]));
    assert_eq!(out.stats, stats(2, 5));
    assert_eq!(
        out.usage,
        Some(Usage {
            input_tokens: 32,
            output_tokens: 6,
            cache_read_tokens: 10,
            cache_write_tokens: 2,
        })
    );
}

// ---- rows 13-17: diagnostics (cap 32768) ----

fn with_output(content: Value, output: u64) -> Value {
    json!({"role": "assistant", "content": content, "usage": {"output": output}})
}

fn diagnostics_of(messages: Value) -> RunDiagnostics {
    parse(&lines(&[
        json!({"type": "agent_end", "messages": messages}),
    ]))
    .0
    .diagnostics
}

#[test]
fn a_clean_final_answer_is_neither_truncated_nor_empty() {
    let d = diagnostics_of(json!([with_output(
        json!([{"type": "text", "text": "ok"}]),
        42
    )]));
    assert_eq!(d, RunDiagnostics::default());
}

#[test]
fn an_empty_final_turn_is_flagged() {
    let d = diagnostics_of(json!([with_output(json!([]), 42)]));
    assert!(d.final_answer_empty && !d.final_truncated);
}

#[test]
fn a_final_answer_at_the_ceiling_is_truncated() {
    let d = diagnostics_of(json!([with_output(
        json!([{"type": "text", "text": "cut"}]),
        PI_MAX_OUTPUT_TOKENS
    )]));
    assert!(d.truncated && d.final_truncated);
}

#[test]
fn an_intermediate_truncation_does_not_mark_the_final_answer() {
    let d = diagnostics_of(json!([
        with_output(json!([{"type": "toolCall"}]), PI_MAX_OUTPUT_TOKENS),
        {"role": "toolResult", "content": "x"},
        with_output(json!([{"type": "text", "text": "fine"}]), 20),
    ]));
    assert_eq!(
        d,
        RunDiagnostics {
            truncated: true,
            final_truncated: false,
            final_answer_empty: false
        }
    );
}

#[test]
fn diagnostics_are_all_false_without_a_transcript() {
    assert_eq!(parse(b"").0.diagnostics, RunDiagnostics::default());
}

// ---- rows 18-21: terminal errors ----

fn terminal(events: &[Value]) -> Option<String> {
    parse(&lines(events)).0.terminal_error
}

#[test]
fn exhausted_retries_report_the_final_error() {
    assert_eq!(
        terminal(&[
            json!({"type": "agent_end", "messages": []}),
            json!({"type": "auto_retry_end", "success": false, "finalError": "502 model unreachable"}),
        ]),
        Some("502 model unreachable".into())
    );
    assert_eq!(
        terminal(&[json!({"type": "auto_retry_end", "success": false})]),
        Some(RETRIES_EXHAUSTED.into())
    );
}

#[test]
fn a_terminal_agent_end_with_stop_reason_error_reports_its_message() {
    assert_eq!(
        terminal(&[json!({"type": "agent_end", "stopReason": "error", "errorMessage": "boom"})]),
        Some("boom".into())
    );
}

#[test]
fn a_clean_run_has_no_terminal_error() {
    assert_eq!(
        terminal(&[json!({"type": "agent_end", "stopReason": "stop"})]),
        None
    );
}

#[test]
fn an_error_recovered_by_a_later_retry_is_not_reported() {
    assert_eq!(
        terminal(&[
            json!({"type": "agent_end", "stopReason": "error", "errorMessage": "boom"}),
            json!({"type": "auto_retry_end", "success": true}),
        ]),
        None
    );
}

#[test]
fn a_last_assistant_message_that_stopped_with_an_error_is_a_failure() {
    let failed = json!({"role": "assistant", "content": [], "stopReason": "error", "errorMessage": "401: nope"});
    assert_eq!(
        terminal(&[json!({"type": "agent_end", "messages": [failed]})]),
        Some("401: nope".into())
    );
    let (out, _) = parse(&lines(&[
        json!({"type": "message_end", "message": {"role": "assistant", "content": [], "stopReason": "error"}}),
    ]));
    assert_eq!(out.terminal_error, Some(LAST_CALL_FAILED.into()));
}

// ---- rows 33-40: todo progress ----

fn todo_result(details: Value) -> Value {
    json!({"type": "message_end", "message": {
        "role": "toolResult", "toolName": "todo", "isError": false, "details": details
    }})
}

fn task(subject: &str, status: &str) -> Value {
    json!({"subject": subject, "status": status})
}

fn item(label: &str, status: TodoStatus) -> TodoItem {
    TodoItem {
        label: label.into(),
        status,
    }
}

#[test]
fn todo_progress_counts_live_tasks_and_lists_them() {
    let p = parse_todo_progress(&todo_result(
        json!({"action": "update", "nextId": 6, "tasks": [
            task("Scaffold project", "completed"),
            task("Write app.js", "in_progress"),
            task("Add README", "pending"),
            task("Lint", "completed"),
            task("Test", "completed"),
        ]}),
    ))
    .unwrap();
    assert_eq!((p.completed, p.in_progress, p.total), (3, 1, 5));
    let items = p.items.unwrap();
    assert_eq!(
        items[..3],
        [
            item("Scaffold project", TodoStatus::Completed),
            item("Write app.js", TodoStatus::InProgress),
            item("Add README", TodoStatus::Pending),
        ]
    );
}

#[test]
fn a_subject_less_task_is_untitled_and_other_label_fields_are_tried() {
    let p = parse_todo_progress(&todo_result(json!({"tasks": [
        {"status": "pending", "subject": "  "},
        {"status": "odd", "title": " Titled "},
    ]})))
    .unwrap();
    assert_eq!(
        p.items.unwrap(),
        [
            item("Untitled task", TodoStatus::Pending),
            item("Titled", TodoStatus::Pending)
        ]
    );
}

#[test]
fn deleted_tasks_are_excluded() {
    let p = parse_todo_progress(&todo_result(json!({"tasks": [
        task("a", "completed"), task("gone", "deleted"), task("b", "pending"),
    ]})))
    .unwrap();
    assert_eq!(
        p,
        TodoProgress {
            completed: 1,
            in_progress: 0,
            total: 2,
            items: Some(vec![
                item("a", TodoStatus::Completed),
                item("b", TodoStatus::Pending)
            ]),
        }
    );
}

#[test]
fn the_example_extension_todos_shape_gives_counts_without_items() {
    let p = parse_todo_progress(&todo_result(
        json!({"todos": [{"done": true}, {"done": false}, {"done": true}]}),
    ))
    .unwrap();
    assert_eq!(
        p,
        TodoProgress {
            completed: 2,
            in_progress: 0,
            total: 3,
            items: None
        }
    );
}

#[test]
fn the_tool_execution_end_shape_is_read_from_result_details() {
    let p = parse_todo_progress(&json!({"type": "tool_execution_end", "toolName": "todo",
        "isError": false, "result": {"details": {"tasks": [task("a", "completed"), task("b", "in_progress")]}}}))
    .unwrap();
    assert_eq!((p.completed, p.in_progress, p.total), (1, 1, 2));
}

#[test]
fn the_defensive_tool_result_shape_is_read() {
    let p = parse_todo_progress(&json!({"type": "tool_result", "toolName": "todo",
        "details": {"tasks": [task("a", "completed"), task("b", "pending")]}}))
    .unwrap();
    assert_eq!((p.completed, p.in_progress, p.total), (1, 0, 2));
}

#[test]
fn non_todo_errored_or_unrecognised_events_give_no_progress() {
    let tasks = json!({"tasks": [task("a", "completed")]});
    for event in [
        json!({"type": "message_end"}),
        json!({"type": "message_end", "message": {"role": "assistant", "toolName": "todo", "details": tasks}}),
        json!({"type": "message_end", "message": {"role": "toolResult", "toolName": "bash", "details": tasks}}),
        json!({"type": "message_end", "message": {"role": "toolResult", "toolName": "todo", "isError": true, "details": tasks}}),
        todo_result(json!({})),
    ] {
        assert_eq!(parse_todo_progress(&event), None, "{event}");
    }
}

// ---- spans ----

#[test]
fn spans_start_at_the_previous_span_end_or_the_run_start() {
    let (_, effects) = parse(&lines(&[
        json!({"type": "tool_execution_end", "toolName": "read", "isError": false}),
        json!({"type": "turn_start"}),
        json!({"type": "tool_execution_end", "toolName": "bash", "isError": true}),
        json!({"type": "tool_execution_end", "toolName": ""}),
    ]));
    let spans: Vec<ToolSpan> = effects.iter().filter_map(|e| e.span.clone()).collect();
    assert_eq!(
        spans,
        [
            ToolSpan {
                tool: "read".into(),
                started_at: 1000,
                ended_at: 1010,
                ok: true,
                ..ToolSpan::default()
            },
            ToolSpan {
                tool: "bash".into(),
                started_at: 1010,
                ended_at: 1030,
                ok: false,
                ..ToolSpan::default()
            },
        ]
    );
    let ends = effects.iter().filter(|e| e.tool_end.is_some()).count();
    assert_eq!(ends, 3, "the guard sees every tool end, named or not");
}

#[test]
fn a_broken_json_line_is_counted_as_malformed() {
    let (out, _) = parse(b"{\"type\": \"agent_end\"\n{not json}\n");
    assert_eq!(out.malformed_lines, 2);
}

// ---- real streams ----

const HAPPY_SUMMARY: &str = "Created hello.txt, updated README.md and committed.";

#[test]
fn the_happy_streams_of_both_pi_versions_give_summary_stats_usage_and_spans() {
    for name in [
        "pi-0.80.3-happy.events.jsonl",
        "pi-0.87.1-happy.events.jsonl",
    ] {
        let (out, effects) = parse(&fixture(name));
        assert_eq!(out.summary, HAPPY_SUMMARY, "{name}");
        assert_eq!(out.stats, stats(3, 51), "{name}");
        assert_eq!(
            out.usage,
            Some(Usage {
                input_tokens: 480,
                output_tokens: 28,
                ..Usage::default()
            }),
            "{name}"
        );
        assert_eq!(out.terminal_error, None, "{name}");
        assert_eq!(out.malformed_lines, 0, "{name}");
        assert_eq!(out.diagnostics, RunDiagnostics::default(), "{name}");
        assert_eq!(
            spans(&effects),
            [
                ("write".into(), true),
                ("edit".into(), true),
                ("bash".into(), true)
            ],
            "{name}"
        );
        assert!(progress(&effects).is_empty(), "{name}");
    }
}

#[test]
fn a_retried_run_that_recovers_sums_both_attempts_and_succeeds() {
    let (out, effects) = parse(&fixture("pi-0.80.3-retry-then-ok.events.jsonl"));
    assert_eq!(out.terminal_error, None);
    assert_eq!(out.summary, "done after retry");
    // The last agent_end alone would say 1 tool call.
    assert_eq!(out.stats, stats(2, 16));
    assert_eq!(
        out.usage,
        Some(Usage {
            input_tokens: 360,
            output_tokens: 21,
            ..Usage::default()
        })
    );
    assert_eq!(spans(&effects).len(), 2);
}

#[test]
fn upstream_errors_on_a_clean_exit_are_failures_with_the_upstream_message() {
    for (name, message) in [
        (
            "pi-0.80.3-err401-exit0.events.jsonl",
            r#"401: {"message":"invalid session token","type":"invalid_request_error"}"#,
        ),
        (
            "pi-0.80.3-err400-retries-exhausted.events.jsonl",
            r#"400: {"message":"model not allowed","type":"server_error"}"#,
        ),
        (
            "pi-0.80.3-err500.events.jsonl",
            r#"500: {"message":"upstream exploded","type":"server_error"}"#,
        ),
        ("pi-0.80.3-unreachable.events.jsonl", "Connection error."),
    ] {
        let (out, _) = parse(&fixture(name));
        assert_eq!(out.terminal_error.as_deref(), Some(message), "{name}");
        assert!(out.stats.never_acted(), "{name}");
        assert_eq!(out.usage, None, "{name}");
    }
}

#[test]
fn a_killed_run_leaves_a_truncated_stream_that_still_parses() {
    let stream = fixture("pi-0.80.3-killed.events.jsonl");
    let (out, effects) = parse(&stream);
    assert_eq!(out.terminal_error, None, "the exit status decides");
    assert_eq!(out.malformed_lines, 0);
    assert!(spans(&effects).is_empty());
    assert_eq!(
        out.usage,
        Some(Usage {
            input_tokens: 120,
            output_tokens: 7,
            ..Usage::default()
        }),
        "usage of the messages that finished still counts"
    );
    // Cut mid-line, as a kill can leave it: the fragment is malformed, the rest still counts.
    let cut = &stream[..stream.len() - 40];
    let (out, _) = parse(cut);
    assert_eq!(out.malformed_lines, 1);
    assert_eq!(out.usage.map(|u| u.output_tokens), Some(7));
}

#[test]
fn todo_calls_produce_each_distinct_snapshot_once() {
    let (out, effects) = parse(&fixture("pi-0.80.3-todo.events.jsonl"));
    let snapshots: Vec<(u64, u64, u64)> = progress(&effects)
        .iter()
        .map(|p| (p.completed, p.in_progress, p.total))
        .collect();
    assert_eq!(
        snapshots,
        [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 2), (2, 0, 2)]
    );
    let last = progress(&effects).pop().unwrap();
    assert_eq!(
        last.items.unwrap(),
        [
            item("Write hello.txt", TodoStatus::Completed),
            item("Commit it", TodoStatus::Completed)
        ]
    );
    assert_eq!(out.summary, "All done.");
    assert_eq!(out.stats, stats(7, 9));
}

#[test]
fn failing_tool_calls_give_failed_spans_but_not_a_failed_run() {
    let (out, effects) = parse(&fixture("pi-0.80.3-tool-error.events.jsonl"));
    assert_eq!(
        spans(&effects),
        [("bash".into(), false), ("read".into(), false)]
    );
    assert_eq!(out.terminal_error, None);
    assert_eq!(out.summary, "I could not finish.");
    assert_eq!(out.stats, stats(2, 19));
}

#[test]
fn parallel_tool_calls_give_one_span_each() {
    let (out, effects) = parse(&fixture("pi-0.87.1-parallel-tools.events.jsonl"));
    assert_eq!(
        spans(&effects),
        [
            ("write".into(), true),
            ("write".into(), true),
            ("bash".into(), true)
        ]
    );
    assert_eq!(out.stats, stats(3, 4));
    assert_eq!(out.summary, "done");
}

#[test]
fn a_run_without_a_key_has_only_the_session_line() {
    let stream = fixture("pi-0.80.3-no-token.events.jsonl");
    let (out, effects) = parse(&stream);
    assert!(out.stats.never_acted());
    assert_eq!(out.terminal_error, None, "the non-zero exit decides");
    assert!(effects.iter().all(|e| *e == LineEffects::default()));
    // Seed Q9: with no assistant text the raw stdout becomes the summary.
    assert!(out.summary.starts_with("{\"type\":\"session\""));
}

// ---- the progress guard (seed 9.5, cases 41 to 55) ----

#[test]
fn ignores_events_that_are_not_completed_tool_calls() {
    let limits = GuardLimits {
        max_tool_calls_without_edit: 1,
        max_consecutive_errors: 1,
        ..GuardLimits::default()
    };
    let mut g = ProgressGuard::new(limits, true);
    let mut stream = PiStream::new(0);
    for line in [
        r#"{"type":"message_end","message":{"role":"assistant","content":"hi"}}"#,
        r#"{"type":"agent_end","messages":[]}"#,
        r#"{"type":"tool_execution_start","toolName":"bash"}"#,
    ] {
        let effects = stream.on_line(line.as_bytes(), 1);
        let reason = effects
            .tool_end
            .and_then(|t| g.observe(&t.tool_name, t.is_error));
        assert_eq!(reason, None, "{line}");
    }
}
