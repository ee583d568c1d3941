use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use super::*;
use std::time::Instant;

use crate::agent::cli::stream::{CliStream, LineEffects, ToolCall};
use crate::agent::test_support::subscription_job as job;
use crate::job::outcome::RunStats;
use crate::job::outcome::Usage;
use crate::redact::Redactor;
use crate::redact::Secret;

const HAPPY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/agent-streams/codex-0.169.0-happy.events.jsonl"
));

const AUTH_BLOB: &str = r#"{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"id_token":"unit-test-id-token-value","access_token":"unit-test-access-token-value","refresh_token":"unit-test-refresh-token","account_id":"acct-unit-test-0001"},"last_refresh":"2026-01-01T00:00:00Z"}"#;

fn stream() -> CodexStream {
    CodexStream::new(Redactor::patterns_only().with_secret(&Secret::new(AUTH_BLOB)))
}

fn codex_job(extra: Value) -> AgentJob {
    let mut fields = serde_json::json!({ "subscriptionToken": AUTH_BLOB });
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    job("codex", fields)
}

#[test]
fn the_real_happy_stream_yields_its_summary_stats_and_usage() {
    let mut s = stream();
    let effects: Vec<LineEffects> = HAPPY.lines().map(|l| s.feed(l)).collect();
    let tools: Vec<&ToolCall> = effects.iter().flat_map(|e| &e.tools).collect();
    assert_eq!(tools.len(), 1);
    assert_eq!(
        (tools[0].name.as_str(), tools[0].is_error),
        ("shell", false)
    );
    assert!(tools[0].duration.is_some(), "the start was announced");
    let outcome = s.finish().unwrap();
    assert_eq!(outcome.summary, "Created hello.txt and committed it.");
    assert_eq!(
        outcome.stats,
        RunStats {
            tool_calls: 1,
            assistant_chars: "Created hello.txt and committed it.".len() as u64,
        }
    );
    assert_eq!(
        outcome.usage,
        Some(Usage {
            input_tokens: 200,
            output_tokens: 18,
            ..Usage::default()
        })
    );
}

#[test]
fn a_started_and_completed_command_counts_as_one_call_with_its_bodies() {
    let mut s = stream();
    let t0 = Instant::now();
    let started = s.feed_at(
        r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"false","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
        t0,
    );
    assert!(started.tools.is_empty());
    let done = s.feed_at(
        r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"false","aggregated_output":"boom","exit_code":1,"status":"failed"}}"#,
        t0 + Duration::from_millis(40),
    );
    assert_eq!(
        done.tools,
        [ToolCall {
            name: "shell".into(),
            is_error: true,
            duration: Some(Duration::from_millis(40)),
            args: Some(("false".into(), 0)),
            result: Some(("boom".into(), 0)),
        }]
    );
    let patch = s.feed(r#"{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"a.txt","kind":"add"}],"status":"completed"}}"#);
    assert_eq!(patch.tools[0].name, "apply_patch");
    assert_eq!(patch.tools[0].duration, None);
    assert_eq!(s.finish().unwrap().stats.tool_calls, 2);
}

#[test]
fn cached_input_tokens_are_not_counted_twice_but_kept_apart_and_totals_overwrite() {
    let mut s = stream();
    s.feed(r#"{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":1000,"output_tokens":345}}"#);
    s.feed(r#"{"type":"turn.completed","usage":{"input_tokens":0,"cached_input_tokens":0,"output_tokens":0}}"#);
    assert_eq!(
        s.finish().unwrap().usage,
        Some(Usage {
            input_tokens: 1200,
            output_tokens: 345,
            cache_read_tokens: 1000,
            cache_write_tokens: 0,
        })
    );
}

#[test]
fn a_todo_list_item_emits_plan_progress() {
    let mut s = stream();
    let effects = s.feed(r#"{"type":"item.updated","item":{"id":"item_3","type":"todo_list","items":[{"text":"read","completed":true},{"text":"write","completed":false}]}}"#);
    let progress = effects.progress.unwrap();
    assert_eq!(
        (progress.completed, progress.in_progress, progress.total),
        (1, 0, 2)
    );
    assert_eq!(progress.items.unwrap()[1].label, "write");
    let empty =
        s.feed(r#"{"type":"item.started","item":{"id":"item_4","type":"todo_list","items":[]}}"#);
    assert_eq!(empty.progress, None);
    assert_eq!(
        s.finish().unwrap().stats.tool_calls,
        0,
        "a plan is not a tool call"
    );
}

#[test]
fn the_seed_plan_shape_with_statuses_emits_progress() {
    let mut s = stream();
    let effects = s.feed(r#"{"type":"plan_update","plan":{"steps":[{"step":"a","status":"completed"},{"step":"b","status":"in_progress"},{"content":"c","status":"pending"}]}}"#);
    let progress = effects.progress.unwrap();
    assert_eq!(
        (progress.completed, progress.in_progress, progress.total),
        (1, 1, 3)
    );
    assert_eq!(progress.items.unwrap()[2].label, "c");
}

#[test]
fn a_failed_turn_fails_the_run_with_its_message_redacted() {
    let mut s = stream();
    s.feed(r#"{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"partial"}}"#);
    s.feed(r#"{"type":"turn.failed","error":{"message":"401 Unauthorized for unit-test-access-token-value"}}"#);
    assert_eq!(
        s.finish().unwrap_err(),
        "codex turn failed: 401 Unauthorized for ***"
    );
}

#[test]
fn a_recovered_stream_error_does_not_fail_the_run_but_a_final_one_does() {
    let mut s = stream();
    s.feed(r#"{"type":"error","message":"Reconnecting... 1/5"}"#);
    s.feed(r#"{"type":"turn.completed","usage":{"input_tokens":1,"output_tokens":1}}"#);
    assert!(s.finish().is_ok());

    let mut s = stream();
    s.feed(r#"{"type":"turn.started"}"#);
    s.feed(r#"{"type":"error","message":"stream disconnected before completion"}"#);
    assert_eq!(
        s.finish().unwrap_err(),
        "codex reported an error: stream disconnected before completion"
    );
}

#[test]
fn a_non_fatal_error_item_is_neither_summary_nor_assistant_text() {
    let mut s = stream();
    s.feed(r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata not found."}}"#);
    let outcome = s.finish().unwrap();
    assert_eq!(outcome.summary, "");
    assert!(outcome.stats.never_acted());
}

#[test]
fn args_follow_the_seed_invocation_and_carry_no_token() {
    let args = codex_args(&codex_job(Value::Null));
    assert_eq!(
        args,
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--model",
            "example-model",
            "-"
        ]
    );
    assert!(args.iter().all(|a| !a.contains("unit-test")));
}

#[test]
fn the_prompt_joins_system_and_user_prompts_with_a_rule() {
    let job = codex_job(Value::Null);
    assert_eq!(
        codex_prompt(&job),
        "You are the implementer.\n\n---\n\nAdd a CONTRIBUTING.md."
    );
    let with_files = codex_job(serde_json::json!({
        "contextFiles": [{"path": "PROJ-1.md", "title": "The ticket", "content": "c"}]
    }));
    let prompt = codex_prompt(&with_files);
    assert!(
        prompt.contains(
            "\n- .cat-context/PROJ-1.md \u{2014} The ticket\n\n---\n\nAdd a CONTRIBUTING.md."
        ),
        "{prompt}"
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_home_holds_the_token_verbatim_in_a_private_auth_json_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("codex-home");
    let env = prepare_codex_home(&codex_job(Value::Null), &home).unwrap();
    assert_eq!(
        env,
        [("CODEX_HOME".to_owned(), home.to_str().unwrap().to_owned())]
    );
    assert_eq!(mode(&home.join("auth.json")), 0o600);
    assert_eq!(
        fs::read_to_string(home.join("auth.json")).unwrap(),
        AUTH_BLOB
    );
    assert_eq!(mode(&home), 0o700);
    let config = fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(!config.contains("unit-test"));
    let config: toml::Table = toml::from_str(&config).unwrap();
    assert_eq!(config["cli_auth_credentials_store"].as_str(), Some("file"));
    assert!(config.get("model_provider").is_none(), "{config}");
}

#[test]
fn the_config_turns_off_plugin_sync_and_analytics_which_would_call_home() {
    for base_url in [None, Some("http://127.0.0.1:9/v1")] {
        let config: toml::Table = toml::from_str(&config_toml(base_url, &[]).unwrap()).unwrap();
        assert_eq!(config["features"]["plugins"].as_bool(), Some(false));
        assert_eq!(config["analytics"]["enabled"].as_bool(), Some(false));
    }
}

#[test]
fn a_bare_api_key_is_stored_the_way_codex_login_stores_one() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        "codex",
        serde_json::json!({ "subscriptionToken": "sk-proj-unit-test-key" }),
    );
    prepare_codex_home(&job, dir.path()).unwrap();
    let auth: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("auth.json")).unwrap()).unwrap();
    assert_eq!(
        auth,
        serde_json::json!({ "OPENAI_API_KEY": "sk-proj-unit-test-key" })
    );
}

#[test]
fn a_base_url_becomes_a_responses_provider_that_reads_auth_json() {
    let dir = tempfile::tempdir().unwrap();
    let job = codex_job(serde_json::json!({
        "subscriptionBaseUrl": "https://gateway.example/v1"
    }));
    let env = prepare_codex_home(&job, dir.path()).unwrap();
    assert_eq!(env.len(), 1, "the token travels in no env var");
    let text = fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(!text.contains("unit-test"));
    let config: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(config["cli_auth_credentials_store"].as_str(), Some("file"));
    assert_eq!(config["model_provider"].as_str(), Some(PROVIDER_ID));
    let provider = &config["model_providers"][PROVIDER_ID];
    assert_eq!(
        provider["base_url"].as_str(),
        Some("https://gateway.example/v1")
    );
    assert_eq!(provider["wire_api"].as_str(), Some("responses"));
    assert_eq!(provider["requires_openai_auth"].as_bool(), Some(true));
    assert_eq!(provider["name"].as_str(), Some(PROVIDER_ID));
}

#[test]
fn ambient_auth_writes_no_home_and_adds_no_env() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("unused");
    let job = job("codex", serde_json::json!({ "ambientAuth": true }));
    assert_eq!(prepare_codex_home(&job, &home).unwrap(), []);
    assert!(!home.exists());
}

#[test]
fn a_job_without_a_token_is_refused_with_the_seed_text() {
    let dir = tempfile::tempdir().unwrap();
    let pi = job(
        "pi",
        serde_json::json!({ "proxyBaseUrl": "https://proxy", "sessionToken": "sess-123456" }),
    );
    assert_eq!(
        prepare_codex_home(&pi, dir.path()).unwrap_err().to_string(),
        "codex harness requires a subscription token (or ambientAuth)"
    );
}

#[test]
fn a_turn_without_per_call_usage_is_one_call_record_and_token_counts_are_per_call() {
    let mut s = stream();
    s.feed(r#"{"type":"item.completed","item":{"id":"m","type":"agent_message","text":"Done."}}"#);
    let turn = s.feed(r#"{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":1000,"output_tokens":45}}"#);
    let call = &turn.calls[0];
    assert_eq!(
        (
            call.input_tokens,
            call.cache_read_tokens,
            call.output_tokens
        ),
        (200, 1000, 45)
    );
    assert_eq!(call.response_text, "Done.");
    // A stream that reports each model call is read call by call, and its turn is not a call.
    let mut s = stream();
    let first = s.feed(r#"{"type":"token_count","info":{"last_token_usage":{"input_tokens":50,"cached_input_tokens":10,"output_tokens":5}}}"#);
    assert_eq!(first.calls[0].input_tokens, 40);
    let turn = s.feed(r#"{"type":"turn.completed","usage":{"input_tokens":50,"cached_input_tokens":10,"output_tokens":5}}"#);
    assert!(turn.calls.is_empty());
}

#[test]
fn the_jobs_stdio_servers_go_into_the_private_config_toml() {
    let dir = tempfile::tempdir().unwrap();
    let job = codex_job(serde_json::json!({"mcpServers": [
        {"id": "fs", "command": "mcp-fs", "env": {"FS_TOKEN": "fs-secret-000001"}}
    ]}));
    prepare_codex_home(&job, dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(config["cli_auth_credentials_store"].as_str(), Some("file"));
    assert_eq!(
        config["mcp_servers"]["fs"]["env"]["FS_TOKEN"].as_str(),
        Some("fs-secret-000001")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("config.toml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_mcp_tool_call_is_named_by_its_server_and_tool_so_the_guard_sees_an_mcp_call() {
    let mut s = stream();
    let done = s.feed(r#"{"type":"item.completed","item":{"id":"i","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"result":{"content":[]},"status":"completed"}}"#);
    assert_eq!(done.tools[0].name, "mcp__docs__search");
    assert_eq!(done.tools[0].args, Some((r#"{"q":"x"}"#.to_owned(), 0)));
}
