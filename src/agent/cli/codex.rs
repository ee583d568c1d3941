//! The Codex subscription harness (seed 5.4, 4.11.4): its argv, its per-run `CODEX_HOME`, its
//! stdin prompt, and the parser of its `exec --json` output (thread, turn and item events).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::mcp::codex_mcp_servers;
use super::setup::{
    path_string, subscription_credentials, system_prompt_with_context, write_private,
};
use super::stream::{
    count, parse_line, progress_of, todo_status, CliStream, LineEffects, StreamOutcome, ToolCall,
};
use crate::job::outcome::{RunStats, TodoItem, TodoProgress, TodoStatus, Usage};
use crate::job::{AgentJob, McpServer};
use crate::owned_dir::create_private;
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
    create_private(home)?;
    write_private(&home.join("auth.json"), auth_json(token).as_bytes())?;
    let config = config_toml(base_url, &job.mcp_servers)?;
    write_private(&home.join("config.toml"), config.as_bytes())?;
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

/// Codex's `config.toml`: credentials kept in `auth.json`; no plugin sync and no analytics
/// (without them every run contacts chatgpt.com, api.github.com and ab.chatgpt.com). A
/// `subscriptionBaseUrl` (the Responses API base, with its `/v1`) becomes a custom provider
/// that takes its credentials from the same `auth.json` (`requires_openai_auth`), so the token
/// never has to travel in the environment. The job's stdio MCP servers become `mcp_servers`
/// ([`codex_mcp_servers`]); their env values are secrets too, so this file is 0600 as well.
pub fn config_toml(base_url: Option<&str>, servers: &[McpServer]) -> io::Result<String> {
    let mut config = toml::Table::new();
    config.insert("cli_auth_credentials_store".into(), "file".into());
    let mut features = toml::Table::new();
    features.insert("plugins".into(), false.into());
    config.insert("features".into(), features.into());
    let mut analytics = toml::Table::new();
    analytics.insert("enabled".into(), false.into());
    config.insert("analytics".into(), analytics.into());
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
    if let Some(servers) = codex_mcp_servers(servers) {
        config.insert("mcp_servers".into(), servers.into());
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

impl CliStream for CodexStream {
    fn feed_at(&mut self, line: &str, now: Instant) -> LineEffects {
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

    /// The failure is the one Codex reported: a failed last turn, or a fatal `error` that no
    /// turn outlived.
    fn into_outcome(self) -> (StreamOutcome, Option<String>) {
        let failure = match (self.turn_end, self.last_error) {
            (Some(TurnEnd::Failed(message)), _) => Some(format!("codex turn failed: {message}")),
            (None, Some(message)) => Some(format!("codex reported an error: {message}")),
            _ => None,
        };
        let failure = failure.map(|f| self.redactor.redact(head_chars(&f, MAX_DETAIL_CHARS)));
        let outcome = StreamOutcome {
            summary: self.summary,
            stats: self.stats,
            usage: self.usage,
        };
        (outcome, failure)
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
#[path = "codex_tests.rs"]
mod tests;
