//! The Codex subscription harness (seed 5.4, 4.11.4): its argv, its per-run `CODEX_HOME`, its
//! stdin prompt, and the parser of its `exec --json` output (thread, turn and item events).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::claude::{
    count, create_private_dir, parse_line, path_string, progress_of, subscription_credentials,
    system_prompt_with_context, todo_status, write_private, LineEffects, StreamOutcome, ToolCall,
};
use crate::job::outcome::{RunStats, TodoItem, TodoProgress, TodoStatus, Usage};
use crate::job::AgentJob;
use crate::redact::{head_chars, Redactor};

/// Failure texts quote at most this much of what the CLI said.
const MAX_DETAIL_CHARS: usize = 2000;

/// The provider id a `subscriptionBaseUrl` is configured under (the built-in ids such as
/// `openai` cannot be overridden from config.toml).
const PROVIDER_ID: &str = "subscription";

/// The argv after the program name (seed 5.4); `-` makes Codex read the prompt from stdin.
pub fn codex_args(job: &AgentJob) -> Vec<String> {
    [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "--model",
        &job.model,
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The stdin prompt (seed 4.11.4): the system prompt (with the context pointer), a rule, then
/// the user prompt; just the user prompt when there is no system prompt.
pub fn codex_prompt(job: &AgentJob) -> String {
    let system = system_prompt_with_context(job);
    if system.is_empty() {
        job.user_prompt.clone()
    } else {
        format!("{system}\n\n---\n\n{}", job.user_prompt)
    }
}

/// Prepares the per-run `CODEX_HOME` (seed 5.4) and returns the env pairs for the run.
///
/// With ambient auth the CLI uses the operator's own `~/.codex`: nothing is written and no pair
/// is returned. Otherwise `home` (outside the checkout, private to the run) gets `auth.json`
/// (0600) holding the token, which is the only place the token goes, and `config.toml` keeping
/// credentials in that file. A `subscriptionBaseUrl` becomes a custom Responses-API provider
/// that takes its credentials from the same `auth.json` (`requires_openai_auth`), so the token
/// never has to travel in the environment.
pub fn prepare_codex_home(job: &AgentJob, home: &Path) -> io::Result<Vec<(String, String)>> {
    let Some((token, base_url)) = subscription_credentials(job, "codex")? else {
        return Ok(Vec::new());
    };
    create_private_dir(home)?;
    write_private(&home.join("auth.json"), auth_json(token).as_bytes())?;
    write_private(&home.join("config.toml"), config_toml(base_url)?.as_bytes())?;
    Ok(vec![("CODEX_HOME".to_owned(), path_string(home)?)])
}

/// The seed writes the token verbatim: a leased subscription is a whole `auth.json` blob. A bare
/// API key would leave Codex an unreadable file, so it is wrapped the way `codex login
/// --with-api-key` stores one.
fn auth_json(token: &str) -> String {
    match serde_json::from_str::<Value>(token) {
        Ok(Value::Object(_)) => token.to_owned(),
        _ => serde_json::json!({ "OPENAI_API_KEY": token }).to_string(),
    }
}

fn config_toml(base_url: Option<&str>) -> io::Result<String> {
    let mut config = toml::Table::new();
    config.insert("cli_auth_credentials_store".into(), "file".into());
    if let Some(url) = base_url {
        config.insert("model_provider".into(), PROVIDER_ID.into());
        let mut provider = toml::Table::new();
        provider.insert("name".into(), PROVIDER_ID.into());
        provider.insert("base_url".into(), url.into());
        provider.insert("wire_api".into(), "responses".into());
        provider.insert("requires_openai_auth".into(), true.into());
        let mut providers = toml::Table::new();
        providers.insert(PROVIDER_ID.into(), provider.into());
        config.insert("model_providers".into(), providers.into());
    }
    toml::to_string(&config).map_err(io::Error::other)
}

/// How the last turn ended.
enum TurnEnd {
    Completed,
    Failed(String),
}

/// The parser of one run's `codex exec --json` stdout.
pub struct CodexStream {
    redactor: Redactor,
    summary: String,
    stats: RunStats,
    usage: Option<Usage>,
    /// Tool items seen starting, by item id, so the completion can tell how long they took.
    started: HashMap<String, Instant>,
    turn_end: Option<TurnEnd>,
    /// The last top-level `error` event: Codex may still recover from it (a retried stream),
    /// so it only decides the outcome when no turn ended after it.
    last_error: Option<String>,
}

impl CodexStream {
    /// `redactor` (the job's) cleans what the CLI said before it goes into a failure message.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            summary: String::new(),
            stats: RunStats::default(),
            usage: None,
            started: HashMap::new(),
            turn_end: None,
            last_error: None,
        }
    }

    /// One stdout line (without its newline), as it arrives.
    pub fn feed(&mut self, line: &str) -> LineEffects {
        self.feed_at(line, Instant::now())
    }

    /// [`feed`](Self::feed) with the arrival time given, so tests control tool durations.
    pub fn feed_at(&mut self, line: &str, now: Instant) -> LineEffects {
        let mut effects = LineEffects::default();
        let Some(event) = parse_line(line) else {
            return effects;
        };
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let item = event.get("item");
        match kind {
            "item.started" | "item.updated" => {
                if let Some(id) = item.filter(|i| tool_name(i).is_some()).and_then(item_id) {
                    self.started.entry(id.to_owned()).or_insert(now);
                }
            }
            // Only completions count, so a started/completed pair is one call (Q19).
            "item.completed" => {
                if let Some(item) = item {
                    self.on_completed(item, now, &mut effects);
                }
            }
            "turn.completed" => {
                self.turn_end = Some(TurnEnd::Completed);
                self.last_error = None;
            }
            "turn.failed" => {
                let message = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("turn failed");
                self.turn_end = Some(TurnEnd::Failed(message.to_owned()));
            }
            "error" => {
                if let Some(message) = event.get("message").and_then(Value::as_str) {
                    self.last_error = Some(message.to_owned());
                }
            }
            _ => {}
        }
        if let Some(progress) = plan_progress(&event) {
            effects.progress = Some(progress);
        }
        if let Some(usage) = usage_of(&event) {
            self.usage = Some(usage);
        }
        effects
    }

    /// The run's outcome once stdout closed cleanly, or the failure Codex reported: a failed
    /// last turn, or a fatal `error` that no turn outlived.
    pub fn finish(self) -> Result<StreamOutcome, String> {
        let failure = match (self.turn_end, self.last_error) {
            (Some(TurnEnd::Failed(message)), _) => Some(format!("codex turn failed: {message}")),
            (None, Some(message)) => Some(format!("codex reported an error: {message}")),
            _ => None,
        };
        if let Some(failure) = failure {
            return Err(self.redactor.redact(head_chars(&failure, MAX_DETAIL_CHARS)));
        }
        Ok(StreamOutcome {
            summary: self.summary,
            stats: self.stats,
            usage: self.usage,
        })
    }

    fn on_completed(&mut self, item: &Value, now: Instant, effects: &mut LineEffects) {
        if item.get("type").and_then(Value::as_str) == Some("agent_message") {
            if let Some(text) = item.get("text").and_then(Value::as_str) {
                self.stats.assistant_chars += text.chars().count() as u64;
                self.summary = text.to_owned();
            }
            return;
        }
        let Some(name) = tool_name(item) else {
            return;
        };
        self.stats.tool_calls += 1;
        let started = item_id(item).and_then(|id| self.started.remove(id));
        effects.tools.push(ToolCall {
            name,
            is_error: item_failed(item),
            duration: started.map(|t| now.saturating_duration_since(t)),
        });
    }
}

fn item_id(item: &Value) -> Option<&str> {
    item.get("id").and_then(Value::as_str)
}

/// The tool name of an item that is a tool call, named so the progress guard's classes apply
/// (`apply_patch` is an edit, `web_search` a web call); `None` for messages, reasoning, plans
/// and the like.
fn tool_name(item: &Value) -> Option<String> {
    let name = match item.get("type").and_then(Value::as_str)? {
        "command_execution" => "shell",
        "file_change" => "apply_patch",
        "web_search" => "web_search",
        "mcp_tool_call" | "collab_tool_call" => {
            return Some(
                item.get("tool")
                    .and_then(Value::as_str)
                    .unwrap_or("mcp_tool")
                    .to_owned(),
            )
        }
        _ => return None,
    };
    Some(name.to_owned())
}

fn item_failed(item: &Value) -> bool {
    let status = item.get("status").and_then(Value::as_str);
    let exit_code = item.get("exit_code").and_then(Value::as_i64);
    matches!(status, Some("failed" | "declined"))
        || exit_code.is_some_and(|c| c != 0)
        || item.get("error").is_some_and(|e| !e.is_null())
}

/// The plan snapshot an event carries: a `todo_list` item (`items[]` of `{text, completed}`,
/// Codex 0.4x+), or the seed's shapes (`plan.steps`, `item.plan`, `steps`, of `{step|content,
/// status}`). Nothing for an empty list.
fn plan_progress(event: &Value) -> Option<TodoProgress> {
    let item = event.get("item");
    let items: Vec<TodoItem> =
        if item.and_then(|i| i.get("type")).and_then(Value::as_str) == Some("todo_list") {
            item?
                .get("items")?
                .as_array()?
                .iter()
                .map(|t| TodoItem {
                    label: t
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    status: if t.get("completed").and_then(Value::as_bool) == Some(true) {
                        TodoStatus::Completed
                    } else {
                        TodoStatus::Pending
                    },
                })
                .collect()
        } else {
            let steps = event
                .pointer("/plan/steps")
                .or_else(|| item.and_then(|i| i.get("plan")))
                .or_else(|| event.get("steps"))?
                .as_array()?;
            steps
                .iter()
                .map(|s| TodoItem {
                    label: s
                        .get("step")
                        .or_else(|| s.get("content"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    status: todo_status(s.get("status").and_then(Value::as_str)),
                })
                .collect()
        };
    (!items.is_empty()).then(|| progress_of(items))
}

/// Token totals (seed 5.4). Codex reports them cumulatively, so the last non-zero report wins.
/// `cached_input_tokens` is a subset of `input_tokens` and is not added again (Q17).
fn usage_of(event: &Value) -> Option<Usage> {
    let usage = [
        "/info/total_token_usage",
        "/total_token_usage",
        "/usage",
        "/info/usage",
    ]
    .iter()
    .find_map(|p| event.pointer(p).filter(|v| v.is_object()))?;
    let found = Usage {
        input_tokens: count(usage, "input_tokens"),
        output_tokens: count(usage, "output_tokens"),
    };
    (found.input_tokens > 0 || found.output_tokens > 0).then_some(found)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use crate::agent::claude::tests::job;
    use crate::redact::Secret;

    const HAPPY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/agent-streams/codex-0.169.0-happy.events.jsonl"
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
                output_tokens: 18
            })
        );
    }

    #[test]
    fn a_started_and_completed_command_counts_as_one_call() {
        let mut s = stream();
        let t0 = Instant::now();
        let started = s.feed_at(
            r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"false","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
            t0,
        );
        assert!(started.tools.is_empty());
        let done = s.feed_at(
            r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"false","aggregated_output":"","exit_code":1,"status":"failed"}}"#,
            t0 + Duration::from_millis(40),
        );
        assert_eq!(
            done.tools,
            [ToolCall {
                name: "shell".into(),
                is_error: true,
                duration: Some(Duration::from_millis(40)),
            }]
        );
        let patch = s.feed(r#"{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"a.txt","kind":"add"}],"status":"completed"}}"#);
        assert_eq!(patch.tools[0].name, "apply_patch");
        assert_eq!(patch.tools[0].duration, None);
        assert_eq!(s.finish().unwrap().stats.tool_calls, 2);
    }

    #[test]
    fn cached_input_tokens_are_not_counted_twice_and_totals_overwrite() {
        let mut s = stream();
        s.feed(r#"{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":1000,"output_tokens":345}}"#);
        s.feed(r#"{"type":"turn.completed","usage":{"input_tokens":0,"cached_input_tokens":0,"output_tokens":0}}"#);
        assert_eq!(
            s.finish().unwrap().usage,
            Some(Usage {
                input_tokens: 1200,
                output_tokens: 345
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
        let empty = s.feed(
            r#"{"type":"item.started","item":{"id":"item_4","type":"todo_list","items":[]}}"#,
        );
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
        let config = fs::read_to_string(home.join("config.toml")).unwrap();
        assert_eq!(config, "cli_auth_credentials_store = \"file\"\n");
        assert!(!config.contains("unit-test"));
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
            serde_json::from_str(&fs::read_to_string(dir.path().join("auth.json")).unwrap())
                .unwrap();
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
}
