//! The Claude Code subscription harness (seed 5.3, 4.11.3): its argv, its isolated config home,
//! its system prompt, and the parser of its `stream-json` output. Spawning and supervision are
//! the runner's job; everything here is synchronous and process-free.
//!
//! Also home of the stream types both subscription parsers share ([`LineEffects`],
//! [`ToolCall`], [`StreamOutcome`]).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::job::outcome::{RunStats, TodoItem, TodoProgress, TodoStatus, Usage};
use crate::job::{AgentJob, HarnessAuth};
use crate::redact::{head_chars, Redactor};

/// Failure texts quote at most this much of what the CLI said.
const MAX_DETAIL_CHARS: usize = 2000;

/// What one stdout line changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineEffects {
    /// The new todo snapshot, when this line carried one (it replaces the previous one).
    pub progress: Option<TodoProgress>,
    /// Tool calls this line completed, in stream order.
    pub tools: Vec<ToolCall>,
}

/// A completed tool call: its name as the CLI spells it, and whether it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    pub is_error: bool,
    /// Time between the line that started the call and the line that completed it; `None` when
    /// the stream never announced the start (the span then starts when it ends).
    pub duration: Option<Duration>,
}

/// What a clean stream amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOutcome {
    /// The agent's final answer (not redacted, as the seed's summary is not).
    pub summary: String,
    pub stats: RunStats,
    /// `None` when the stream reported no (or only zero) token counts.
    pub usage: Option<Usage>,
}

/// The argv after the program name (seed 5.3). The user prompt goes in on stdin; the system
/// prompt is an argv value, as the CLI offers no other way to append one.
pub fn claude_args(job: &AgentJob, system_prompt: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "bypassPermissions",
        "--model",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(job.model.clone());
    if !system_prompt.is_empty() {
        args.push("--append-system-prompt".into());
        args.push(system_prompt.to_owned());
    }
    args
}

/// The system prompt with the pointer to `.cat-context/` when the job has context files
/// (seed 4.11.3). Codex composes its stdin prompt from the same text (seed 4.11.4).
pub fn system_prompt_with_context(job: &AgentJob) -> String {
    if job.context_files.is_empty() {
        return job.system_prompt.clone();
    }
    let mut pointer = String::from(
        "Linked context (requirements / RFCs / PRDs / tracker issues) for this task is in the \
         .cat-context/ directory. Read the files there when they bear on the task; do not try to \
         reach Jira, Confluence or GitHub for them.",
    );
    for file in &job.context_files {
        pointer.push_str(&format!(
            "\n- .cat-context/{} \u{2014} {}",
            file.path, file.title
        ));
    }
    if job.system_prompt.is_empty() {
        pointer
    } else {
        format!("{}\n\n{pointer}", job.system_prompt)
    }
}

/// The `--append-system-prompt` value.
pub fn claude_system_prompt(job: &AgentJob) -> String {
    system_prompt_with_context(job)
}

/// Prepares the isolated config home (seed 5.3) and returns the env pairs for the run.
///
/// With ambient auth the CLI uses the operator's own login: nothing is written and no pair is
/// returned. Otherwise `home` (outside the checkout, private to the run) gets a `.claude.json`
/// (0600) that skips the onboarding and trust prompts, and the token travels only in the
/// returned env: `ANTHROPIC_AUTH_TOKEN` beside `ANTHROPIC_BASE_URL` for an Anthropic-compatible
/// vendor, `CLAUDE_CODE_OAUTH_TOKEN` otherwise.
pub fn prepare_claude_home(job: &AgentJob, home: &Path) -> io::Result<Vec<(String, String)>> {
    let Some((token, base_url)) = subscription_credentials(job, "claude-code")? else {
        return Ok(Vec::new());
    };
    create_private_dir(home)?;
    let onboarding = serde_json::json!({
        "hasCompletedOnboarding": true,
        "bypassPermissionsModeAccepted": true,
        "hasTrustDialogAccepted": true,
    });
    write_private(
        &home.join(".claude.json"),
        onboarding.to_string().as_bytes(),
    )?;

    let mut env = vec![("CLAUDE_CONFIG_DIR".to_owned(), path_string(home)?)];
    match base_url {
        Some(url) => {
            env.push(("ANTHROPIC_BASE_URL".into(), url.to_owned()));
            env.push(("ANTHROPIC_AUTH_TOKEN".into(), token.to_owned()));
        }
        None => env.push(("CLAUDE_CODE_OAUTH_TOKEN".into(), token.to_owned())),
    }
    Ok(env)
}

/// The subscription token and base URL, `None` for ambient auth, or the seed's runtime refusal
/// when the job carries no usable credential (the parser normally makes that unreachable).
pub(super) fn subscription_credentials<'a>(
    job: &'a AgentJob,
    harness: &str,
) -> io::Result<Option<(&'a str, Option<&'a str>)>> {
    let refusal = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{harness} harness requires a subscription token (or ambientAuth)"),
        )
    };
    match &job.auth {
        HarnessAuth::Subscription {
            ambient_auth: true, ..
        } => Ok(None),
        HarnessAuth::Subscription {
            subscription_token: Some(token),
            subscription_base_url,
            ..
        } if !token.expose().is_empty() => Ok(Some((
            token.expose(),
            subscription_base_url.as_deref().filter(|u| !u.is_empty()),
        ))),
        HarnessAuth::Subscription { .. } | HarnessAuth::Pi { .. } => Err(refusal()),
    }
}

/// Creates the run's home (0700) if it does not exist yet.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes a file only its owner can read, whatever mode an older file had.
pub(super) fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}

pub(super) fn path_string(path: &Path) -> io::Result<String> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the agent home path is not valid UTF-8",
        )
    })
}

/// Lines that are not JSON objects are skipped, as are malformed ones (seed 5.5).
pub(super) fn parse_line(line: &str) -> Option<Value> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

pub(super) fn progress_of(items: Vec<TodoItem>) -> TodoProgress {
    let count = |s: TodoStatus| items.iter().filter(|i| i.status == s).count() as u64;
    TodoProgress {
        completed: count(TodoStatus::Completed),
        in_progress: count(TodoStatus::InProgress),
        total: items.len() as u64,
        items: Some(items),
    }
}

pub(super) fn todo_status(status: Option<&str>) -> TodoStatus {
    match status {
        Some("completed") => TodoStatus::Completed,
        Some("in_progress") => TodoStatus::InProgress,
        _ => TodoStatus::Pending,
    }
}

pub(super) fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A JSON value as a label: strings as they are, anything else as JSON text.
fn label_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A tool call announced by a `tool_use` block and not yet answered.
struct PendingTool {
    name: String,
    input: Value,
    started: Instant,
}

/// One entry of the task list the `TaskCreate`/`TaskUpdate` tools keep.
struct Task {
    id: String,
    label: String,
    status: TodoStatus,
}

/// The `result` event's verdict.
enum Verdict {
    Success,
    Failure(String),
}

/// The parser of one run's `claude -p --output-format stream-json --verbose` stdout.
pub struct ClaudeStream {
    redactor: Redactor,
    summary: String,
    stats: RunStats,
    usage: Option<Usage>,
    verdict: Option<Verdict>,
    pending: HashMap<String, PendingTool>,
    /// Claude Code 2.1.16+ tracks todos with `TaskCreate`/`TaskUpdate` instead of `TodoWrite`;
    /// the snapshot is rebuilt from those calls.
    tasks: Vec<Task>,
}

impl ClaudeStream {
    /// `redactor` (the job's) cleans what the CLI said before it goes into a failure message.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            summary: String::new(),
            stats: RunStats::default(),
            usage: None,
            verdict: None,
            pending: HashMap::new(),
            tasks: Vec::new(),
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
        match event.get("type").and_then(Value::as_str) {
            Some("assistant") => self.on_assistant(&event, now, &mut effects),
            Some("user") => self.on_user(&event, now, &mut effects),
            Some("result") => self.on_result(&event),
            _ => {}
        }
        effects
    }

    /// The run's outcome once stdout closed cleanly, or the failure the CLI reported in its
    /// `result` event (Q18: `is_error`, or a `subtype` other than `success`).
    pub fn finish(self) -> Result<StreamOutcome, String> {
        if let Some(Verdict::Failure(message)) = self.verdict {
            return Err(message);
        }
        Ok(StreamOutcome {
            summary: self.summary,
            stats: self.stats,
            usage: self.usage,
        })
    }

    fn on_assistant(&mut self, event: &Value, now: Instant, effects: &mut LineEffects) {
        let Some(blocks) = content_blocks(event) else {
            return;
        };
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(text) = block.get("text").and_then(Value::as_str) {
                        self.stats.assistant_chars += text.chars().count() as u64;
                    }
                }
                Some("tool_use") => {
                    self.stats.tool_calls += 1;
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                    let input = block.get("input").cloned().unwrap_or(Value::Null);
                    if name == "TodoWrite" {
                        if let Some(progress) = todo_write_progress(&input) {
                            effects.progress = Some(progress);
                        }
                    }
                    if let Some(id) = block.get("id").and_then(Value::as_str) {
                        self.pending.insert(
                            id.to_owned(),
                            PendingTool {
                                name: name.to_owned(),
                                input,
                                started: now,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn on_user(&mut self, event: &Value, now: Instant, effects: &mut LineEffects) {
        let Some(blocks) = content_blocks(event) else {
            return;
        };
        let results: Vec<&Value> = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .collect();
        // `tool_use_result` belongs to the line, so it can be tied to a call only when the line
        // answers exactly one.
        let line_result = (results.len() == 1)
            .then(|| event.get("tool_use_result"))
            .flatten();
        let mut tasks_changed = false;
        for result in results {
            let is_error = result.get("is_error").and_then(Value::as_bool) == Some(true);
            let pending = result
                .get("tool_use_id")
                .and_then(Value::as_str)
                .and_then(|id| self.pending.remove(id));
            let Some(call) = pending else {
                effects.tools.push(ToolCall {
                    name: "unknown".into(),
                    is_error,
                    duration: None,
                });
                continue;
            };
            if !is_error {
                tasks_changed |= self.apply_task_tool(&call, result, line_result);
            }
            effects.tools.push(ToolCall {
                name: call.name,
                is_error,
                duration: Some(now.saturating_duration_since(call.started)),
            });
        }
        if tasks_changed {
            effects.progress = Some(progress_of(
                self.tasks
                    .iter()
                    .map(|t| TodoItem {
                        label: t.label.clone(),
                        status: t.status,
                    })
                    .collect(),
            ));
        }
    }

    /// Applies a successful `TaskCreate`/`TaskUpdate`; true when the task list changed.
    fn apply_task_tool(
        &mut self,
        call: &PendingTool,
        result: &Value,
        line_result: Option<&Value>,
    ) -> bool {
        match call.name.as_str() {
            "TaskCreate" => {
                let id = line_result
                    .and_then(|r| r.pointer("/task/id"))
                    .map(|v| label_of(Some(v)))
                    .or_else(|| created_task_id(result));
                let Some(id) = id else {
                    return false;
                };
                let label = match call.input.get("subject") {
                    Some(Value::String(s)) => s.clone(),
                    _ => label_of(line_result.and_then(|r| r.pointer("/task/subject"))),
                };
                self.tasks.retain(|t| t.id != id);
                self.tasks.push(Task {
                    id,
                    label,
                    status: TodoStatus::Pending,
                });
                true
            }
            "TaskUpdate" => {
                let Some(id) = call.input.get("taskId").map(|v| label_of(Some(v))) else {
                    return false;
                };
                let status = call.input.get("status").and_then(Value::as_str);
                if status == Some("deleted") {
                    let before = self.tasks.len();
                    self.tasks.retain(|t| t.id != id);
                    return self.tasks.len() != before;
                }
                let Some(task) = self.tasks.iter_mut().find(|t| t.id == id) else {
                    return false;
                };
                if let Some(subject) = call.input.get("subject").and_then(Value::as_str) {
                    task.label = subject.to_owned();
                }
                if status.is_some() {
                    task.status = todo_status(status);
                }
                true
            }
            _ => false,
        }
    }

    fn on_result(&mut self, event: &Value) {
        let text = event.get("result").and_then(Value::as_str);
        if let Some(text) = text {
            self.summary = text.to_owned();
        }
        if let Some(usage) = event.get("usage") {
            let input = count(usage, "input_tokens")
                + count(usage, "cache_read_input_tokens")
                + count(usage, "cache_creation_input_tokens");
            let output = count(usage, "output_tokens");
            if input > 0 || output > 0 {
                self.usage = Some(Usage {
                    input_tokens: input,
                    output_tokens: output,
                });
            }
        }
        let subtype = event.get("subtype").and_then(Value::as_str);
        let is_error = event.get("is_error").and_then(Value::as_bool) == Some(true);
        let failed = is_error || subtype.is_some_and(|s| s != "success");
        self.verdict = Some(if failed {
            Verdict::Failure(self.failure_message(event, subtype, text))
        } else {
            Verdict::Success
        });
    }

    fn failure_message(&self, event: &Value, subtype: Option<&str>, text: Option<&str>) -> String {
        let mut message = match subtype.filter(|s| *s != "success" && !s.is_empty()) {
            Some(subtype) => format!("claude-code run ended with {subtype}"),
            None => "claude-code reported an error".to_owned(),
        };
        if let Some(status) = event.get("api_error_status").filter(|s| !s.is_null()) {
            message.push_str(&format!(" (API status {})", label_of(Some(status))));
        }
        let errors: Vec<String> = event
            .get("errors")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(|e| label_of(Some(e))).collect())
            .unwrap_or_default();
        let detail = match text.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => text.to_owned(),
            None => errors.join("; "),
        };
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(head_chars(&detail, MAX_DETAIL_CHARS));
        }
        self.redactor.redact(&message)
    }
}

fn content_blocks(event: &Value) -> Option<&Vec<Value>> {
    event.pointer("/message/content").and_then(Value::as_array)
}

/// `TodoWrite`'s `input.todos[]` as a snapshot (seed 5.3).
fn todo_write_progress(input: &Value) -> Option<TodoProgress> {
    let todos = input.get("todos")?.as_array()?;
    Some(progress_of(
        todos
            .iter()
            .map(|t| TodoItem {
                label: label_of(t.get("content")),
                status: todo_status(t.get("status").and_then(Value::as_str)),
            })
            .collect(),
    ))
}

/// `Task #3 created successfully: ...` → `3`, for a line whose `tool_use_result` is ambiguous.
fn created_task_id(result: &Value) -> Option<String> {
    let text = match result.get("content")? {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => return None,
    };
    let rest = text.split_once("Task #")?.1;
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::job::{parse_job, ValidationPolicy};
    use crate::redact::Secret;

    const HAPPY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/agent-streams/claude-code-2.1.330-happy.events.jsonl"
    ));

    const TOKEN: &str = "sk-ant-oat01-unit-test-token-value";

    /// A valid job of `harness` with `extra` fields merged in.
    pub(in crate::agent) fn job(harness: &str, extra: Value) -> AgentJob {
        let mut body = serde_json::json!({
            "jobId": "job-1",
            "mode": "coding",
            "systemPrompt": "You are the implementer.",
            "userPrompt": "Add a CONTRIBUTING.md.",
            "model": "example-model",
            "ghToken": "ghs_EXAMPLEnotarealtoken000000000000000",
            "repo": {
                "owner": "acme",
                "name": "widgets",
                "baseBranch": "main",
                "cloneUrl": "https://github.com/acme/widgets.git"
            },
            "branch": "main",
            "harness": harness,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), 1 << 20);
        parse_job(body.to_string().as_bytes(), &policy).unwrap()
    }

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
                output_tokens: 27
            })
        );
    }

    #[test]
    fn cache_reads_and_writes_count_as_input() {
        let mut s = stream();
        s.feed(r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":1000,"output_tokens":7}}"#);
        let usage = s.finish().unwrap().usage;
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 1110,
                output_tokens: 7
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
    fn a_failing_tool_result_is_reported_with_its_name_and_duration() {
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
    fn args_follow_the_seed_invocation_and_carry_no_token() {
        let job = job(
            "claude-code",
            serde_json::json!({ "subscriptionToken": TOKEN }),
        );
        let args = claude_args(&job, "be brief");
        assert_eq!(
            args,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "bypassPermissions",
                "--model",
                "example-model",
                "--append-system-prompt",
                "be brief"
            ]
        );
        assert!(args.iter().all(|a| !a.contains(TOKEN)));
    }

    #[test]
    fn the_system_prompt_points_at_the_context_files() {
        let plain = job(
            "claude-code",
            serde_json::json!({ "subscriptionToken": TOKEN }),
        );
        assert_eq!(claude_system_prompt(&plain), "You are the implementer.");

        let with_files = job(
            "claude-code",
            serde_json::json!({
                "subscriptionToken": TOKEN,
                "contextFiles": [
                    {"path": "PROJ-1.md", "title": "The ticket", "url": "https://x/1", "content": "c"},
                    {"path": "rfc.md", "title": "The RFC", "content": "c"}
                ]
            }),
        );
        let prompt = claude_system_prompt(&with_files);
        assert!(prompt.starts_with("You are the implementer.\n\nLinked context (requirements / RFCs / PRDs / tracker issues) for this task is in the .cat-context/ directory."), "{prompt}");
        assert!(prompt.ends_with("\n- .cat-context/PROJ-1.md \u{2014} The ticket\n- .cat-context/rfc.md \u{2014} The RFC"), "{prompt}");
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_home_holds_a_private_onboarding_file_and_the_token_goes_only_in_env() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("claude-home");
        let job = job(
            "claude-code",
            serde_json::json!({ "subscriptionToken": TOKEN }),
        );
        let env = prepare_claude_home(&job, &home).unwrap();

        let file = home.join(".claude.json");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&home), 0o700);
        let written: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(written["hasCompletedOnboarding"], true);
        assert_eq!(written["hasTrustDialogAccepted"], true);
        assert_eq!(written["bypassPermissionsModeAccepted"], true);
        for entry in fs::read_dir(&home).unwrap() {
            let contents = fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!contents.contains(TOKEN));
        }
        assert_eq!(
            env,
            [
                (
                    "CLAUDE_CONFIG_DIR".to_owned(),
                    home.to_str().unwrap().to_owned()
                ),
                ("CLAUDE_CODE_OAUTH_TOKEN".to_owned(), TOKEN.to_owned()),
            ]
        );
    }

    #[test]
    fn a_vendor_base_url_sends_the_token_as_an_auth_token_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(
            "claude-code",
            serde_json::json!({
                "subscriptionToken": TOKEN,
                "subscriptionBaseUrl": "https://api.z.ai/api/anthropic"
            }),
        );
        let env = prepare_claude_home(&job, dir.path()).unwrap();
        assert_eq!(
            env[1..],
            [
                (
                    "ANTHROPIC_BASE_URL".to_owned(),
                    "https://api.z.ai/api/anthropic".to_owned()
                ),
                ("ANTHROPIC_AUTH_TOKEN".to_owned(), TOKEN.to_owned()),
            ]
        );
        assert!(env.iter().all(|(k, _)| k != "CLAUDE_CODE_OAUTH_TOKEN"));
    }

    #[test]
    fn ambient_auth_writes_no_home_and_adds_no_env() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("unused");
        let job = job("claude-code", serde_json::json!({ "ambientAuth": true }));
        assert_eq!(prepare_claude_home(&job, &home).unwrap(), []);
        assert!(!home.exists());
    }

    #[test]
    fn a_job_without_subscription_auth_is_refused_with_the_seed_text() {
        let dir = tempfile::tempdir().unwrap();
        let pi = job(
            "pi",
            serde_json::json!({ "proxyBaseUrl": "https://proxy", "sessionToken": "sess-123456" }),
        );
        let err = prepare_claude_home(&pi, dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "claude-code harness requires a subscription token (or ambientAuth)"
        );
    }
}
