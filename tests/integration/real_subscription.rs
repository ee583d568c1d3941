//! The real subscription CLIs, Claude Code and Codex, driven offline against the loopback
//! [`ModelMock`] with the worker's own pieces: the job parser, `prepare_claude_home` /
//! `prepare_codex_home` (the isolated config homes and their env), `claude_args` / `codex_args`
//! / `codex_prompt`, and the stream parsers `ClaudeStream` / `CodexStream`. The CLIs are run
//! directly, not through the worker: their runners are not part of it yet.
//!
//! Each test runs only when its CLI is named: `CLAUDE_BIN` / `CODEX_BIN`
//! (`eval "$(scripts/install-agent-clis.sh)"`); otherwise it says it is skipped and passes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use executor_harness::agent::claude::{self, ClaudeStream};
use executor_harness::agent::subscription_stream::{CliStream, LineEffects, StreamOutcome};
use executor_harness::agent::codex::{self, CodexStream};
use executor_harness::job::{parse_job, AgentJob, ValidationPolicy};
use executor_harness::redact::Redactor;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::model_mock::{Api, ModelMock, Step};
use crate::support::worker::coding_job;

/// A dummy subscription token: the mock must see it, and it must come from the job.
const TOKEN: &str = "sub-mock-token-7d31e0";

const FINAL_TEXT: &str = "Created hello.txt and committed it.";

/// A generous bound: a run takes seconds, but a CLI that hangs must fail the test, not the
/// suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn bin(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A repository with one commit on `main` and a local committer identity (the run's HOME has
/// no `~/.gitconfig`).
fn scratch_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Executor Test"]);
    git(dir, &["config", "user.email", "executor@example.invalid"]);
    std::fs::write(dir.join("README.md"), "# scratch\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "Initial commit"]);
}

/// A validated subscription job for `harness` whose `subscriptionBaseUrl` is `base_url`.
fn subscription_job(harness: &str, base_url: &str) -> AgentJob {
    let mut body = coding_job("job-sub", "file:///unused", None);
    let o = body.as_object_mut().unwrap();
    o.remove("proxyBaseUrl");
    o.remove("sessionToken");
    o.insert("harness".into(), json!(harness));
    o.insert("subscriptionToken".into(), json!(TOKEN));
    o.insert("subscriptionBaseUrl".into(), json!(base_url));
    o.insert("model".into(), json!("mock-model"));
    o.insert(
        "userPrompt".into(),
        json!("Create hello.txt and commit it."),
    );
    let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), 1 << 20);
    parse_job(body.to_string().as_bytes(), &policy).unwrap()
}

/// One finished CLI run.
struct CliRun {
    tmp: tempfile::TempDir,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    /// Every line's effects, in order.
    effects: Vec<LineEffects>,
}

impl CliRun {
    fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }
}

/// Runs `program args` in `<tmp>/repo` with an empty `<tmp>/home` as HOME and `env` on top of
/// a cleaned environment, `stdin` written and closed, then feeds stdout to `feed` line by line.
async fn run_cli(
    program: &Path,
    tmp: tempfile::TempDir,
    args: &[String],
    env: &[(String, String)],
    stdin: &str,
    mut feed: impl FnMut(&str) -> LineEffects,
) -> CliRun {
    let repo = tmp.path().join("repo");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(&repo);
    // A developer's own credentials or settings must not reach the run.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if ["ANTHROPIC_", "CLAUDE_", "CODEX_", "OPENAI_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env("HOME", &home).envs(env.iter().map(|(k, v)| (k, v)));
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).await.unwrap();
    drop(pipe);
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("the CLI finished within the timeout")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "real_subscription: {} exited {:?} after {:?}; {} stdout bytes; stderr: {:?}",
        program.display(),
        out.status.code(),
        started.elapsed(),
        stdout.len(),
        stderr
    );
    let types: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .map(|e| {
            let t = e["type"].as_str().unwrap_or("?");
            match e["item"]["type"].as_str() {
                Some(item) => format!("{t}:{item}"),
                None => t.to_owned(),
            }
        })
        .collect();
    eprintln!("real_subscription: stdout events: {types:?}");
    let effects = stdout.lines().map(&mut feed).collect();
    CliRun {
        tmp,
        status: out.status,
        stdout,
        stderr,
        effects,
    }
}

/// What every run must show: a clean exit, the scripted commit, one request per step with the
/// token, and the parser's outcome with the final text as summary.
fn assert_committed(run: &CliRun, outcome: &Result<StreamOutcome, String>) {
    assert!(
        run.status.success(),
        "the CLI failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    let outcome = outcome.as_ref().expect("a successful stream");
    assert_eq!(outcome.summary, FINAL_TEXT);
    assert!(outcome.stats.tool_calls >= 2, "{outcome:?}");
    let usage = outcome.usage.expect("usage");
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
    let repo = run.repo();
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s"]).trim(),
        "Add hello"
    );
    assert_eq!(
        git(&repo, &["show", "HEAD:hello.txt"]),
        "hello from the mock model\n"
    );
    let tools: Vec<String> = run
        .effects
        .iter()
        .flat_map(|e| e.tools.iter().map(|t| t.name.clone()))
        .collect();
    eprintln!("real_subscription: tools seen by the parser: {tools:?}");
}

fn print_requests(mock: &ModelMock) {
    for r in mock.requests() {
        eprintln!(
            "real_subscription: {} {} api={:?} step={:?}",
            r.method, r.path, r.api, r.step
        );
    }
}

/// Neither CLI may touch HOME (its config home is elsewhere) or leave files in the checkout.
fn assert_isolated(run: &CliRun) {
    let home = tree(&run.tmp.path().join("home"));
    assert!(home.is_empty(), "written to HOME: {home:?}");
    assert_eq!(git(&run.repo(), &["status", "--porcelain"]), "");
}

/// Every file under `dir`, relative, sorted (what a CLI left in its homes).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The snapshots the parser emitted, as (completed, in progress, total).
fn progress_counts(run: &CliRun) -> Vec<(u64, u64, u64)> {
    run.effects
        .iter()
        .filter_map(|e| e.progress.as_ref())
        .map(|p| (p.completed, p.in_progress, p.total))
        .collect()
}

/// Claude Code 2.1.197 offline, as found by running it (under strace):
/// - The npm package's postinstall copies the platform's native binary (a Bun build) over
///   `bin/claude.exe`; nothing is downloaded and no node is needed at run time.
/// - `CLAUDE_CONFIG_DIR` = a private dir holding `.claude.json` with `hasCompletedOnboarding`,
///   `bypassPermissionsModeAccepted`, `hasTrustDialogAccepted` (`prepare_claude_home`): no
///   prompt. The CLI writes `.claude.json` (and `backups/`), `settings.json`,
///   `projects/<cwd slug>/<session>.jsonl` and `tasks/<session>/` there, nothing under `HOME`.
/// - `ANTHROPIC_BASE_URL` is the origin without `/v1` (the CLI calls
///   `POST /v1/messages?beta=true`, always streaming, `max_tokens` 32000);
///   `ANTHROPIC_AUTH_TOKEN` goes out as `Authorization: Bearer <token>`. Any `--model` name is
///   sent as is. A `HEAD /` probe of the base URL comes first (any answer does).
/// - `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`: without it every run makes a title-generation
///   call to the same API (no tools, before the main call, a transcript the mock serves step 0
///   to) and looks up api.anthropic.com.
/// - As root, `--permission-mode bypassPermissions` exits 1 ("--dangerously-skip-permissions
///   cannot be used with root/sudo privileges for security reasons") unless `IS_SANDBOX=1`.
/// - Tools used here: `Write {file_path (absolute), content}`, `Bash {command, description}`,
///   `TaskCreate {subject, description}`, `TaskUpdate {taskId: "1", status}`. stdout is
///   `system`, then `assistant` / `user` pairs, then `result`.
#[tokio::test]
async fn real_claude_code_writes_and_commits_through_the_mock_messages_api() {
    let Some(claude_bin) = bin("CLAUDE_BIN") else {
        eprintln!("real_subscription: skipped (set CLAUDE_BIN, see scripts/install-agent-clis.sh)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    scratch_repo(&repo);
    let mock = ModelMock::start(vec![
        Step::tool_call(
            "TaskCreate",
            json!({"subject": "Write hello.txt", "description": "and commit it"}),
        ),
        Step::tool_call(
            "Write",
            json!({"file_path": repo.join("hello.txt"), "content": "hello from the mock model\n"}),
        ),
        Step::tool_call(
            "Bash",
            json!({
                "command": "git add -A && git commit -q -m 'Add hello'",
                "description": "Commit hello.txt"
            }),
        ),
        Step::tool_call("TaskUpdate", json!({"taskId": "1", "status": "completed"})),
        Step::text(FINAL_TEXT),
    ])
    .await;
    let job = subscription_job("claude-code", &mock.origin());
    let config_dir = tmp.path().join("claude-config");
    let mut env = claude::prepare_claude_home(&job, &config_dir).unwrap();
    // No title-generation call and no lookups of api.anthropic.com (telemetry, flags).
    env.push((
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
        "1".into(),
    ));
    // bypassPermissions is refused to root unless the CLI is told it is sandboxed; the
    // production image runs as an unprivileged user, CI runs as root.
    env.push(("IS_SANDBOX".into(), "1".into()));
    let args = claude::claude_args(&job, &claude::claude_system_prompt(&job));

    let mut stream = ClaudeStream::new(Redactor::patterns_only());
    let run = run_cli(&claude_bin, tmp, &args, &env, &job.user_prompt, |line| {
        stream.feed(line)
    })
    .await;
    let outcome = stream.finish();

    print_requests(&mock);
    assert_committed(&run, &outcome);
    assert_eq!(progress_counts(&run), [(0, 0, 1), (1, 0, 1)]);
    let calls = mock.api_requests(Api::Messages);
    assert_eq!(
        calls.iter().map(|r| r.step).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2), Some(3), Some(4)],
        "one Messages call per step, no side call"
    );
    for request in &calls {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.model(), Some("mock-model"));
        assert!(request.is_stream());
    }
    // The job's system prompt is appended to Claude Code's own.
    let system = calls[0].body["system"].to_string();
    assert!(system.contains("You are the implementer."), "{system}");
    // Nothing else but a `HEAD /` reachability probe.
    let others: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.api.is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(others.iter().all(|r| r == "HEAD /"), "{others:?}");
    assert_isolated(&run);
}

/// Codex 0.142.4 offline, as found by running it (under strace):
/// - `@openai/codex` is a node launcher (`bin/codex.js`, node >= 16) for the musl binary of
///   the platform package (`@openai/codex-linux-x64`, an alias of `@openai/codex@<v>-linux-x64`).
/// - `CODEX_HOME` must exist. `prepare_codex_home` writes `auth.json`
///   (`{"OPENAI_API_KEY": <token>}`) and `config.toml` (`cli_auth_credentials_store = "file"`,
///   `model_provider = "subscription"`, `[model_providers.subscription]` with the `base_url`
///   ending in `/v1`, `wire_api = "responses"`, `requires_openai_auth = true`): the CLI calls
///   `POST /v1/responses` (streaming) with `Authorization: Bearer <token>`.
/// - `[features] plugins = false` and `[analytics] enabled = false` in `config.toml`: without
///   them every run looks up chatgpt.com and api.github.com (curated plugin sync) and
///   ab.chatgpt.com (metrics). `exec` makes no update check.
/// - A `CODEX_HOME` under the temp dir gets a stderr warning ("proceeding, even though we could
///   not create PATH aliases: Refusing to create helper binaries under temporary dir") and no
///   `apply_patch` alias; the run goes on.
/// - The CLI writes `sessions/YYYY/MM/DD/rollout-*.jsonl`, `*.sqlite` (state, logs, goals,
///   memories), `installation_id` and `skills/.system/` into `CODEX_HOME`, nothing under `HOME`.
/// - A model without catalog metadata (any custom name) starts the stream with an
///   `item.completed` of type `error` ("Model metadata for `mock-model` not found. Defaulting
///   to fallback metadata"): a warning, the run goes on.
/// - Tools offered for such a model: `exec_command {cmd}`, `write_stdin`, `update_plan {plan:
///   [{step, status}]}`, `view_image`, `request_user_input` and the agent/goal tools; no `shell`
///   and no `apply_patch` function (a call to an unknown tool only logs "unsupported call").
///   stdout is `thread.started`, `turn.started`, `item.*` (`command_execution`, `todo_list`,
///   `agent_message`), `turn.completed` with the usage.
#[tokio::test]
async fn real_codex_writes_and_commits_through_the_mock_responses_api() {
    let Some(codex_bin) = bin("CODEX_BIN") else {
        eprintln!("real_subscription: skipped (set CODEX_BIN, see scripts/install-agent-clis.sh)");
        return;
    };
    // Codex refuses to set up its helper binaries (the `apply_patch` alias on PATH) in a
    // CODEX_HOME under the temp dir, so this run lives under target/.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = tmp.path().join("repo");
    scratch_repo(&repo);
    let plan = |first: &str, second: &str| {
        json!({"plan": [
            {"step": "Write hello.txt", "status": first},
            {"step": "Commit it", "status": second},
        ]})
    };
    let mock = ModelMock::start(vec![
        Step::tool_call("update_plan", plan("in_progress", "pending")),
        Step::tool_call(
            "exec_command",
            json!({"cmd": "printf 'hello from the mock model\\n' > hello.txt"}),
        ),
        Step::tool_call(
            "exec_command",
            json!({"cmd": "git add -A && git commit -q -m 'Add hello'"}),
        ),
        Step::tool_call("update_plan", plan("completed", "completed")),
        Step::text(FINAL_TEXT),
    ])
    .await;
    let job = subscription_job("codex", &mock.base_url());
    let codex_home = tmp.path().join("codex-home");
    let env = codex::prepare_codex_home(&job, &codex_home).unwrap();
    // Without these, every run looks up chatgpt.com and api.github.com (the curated plugin
    // sync) and ab.chatgpt.com (metrics).
    let config = codex_home.join("config.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[features]\nplugins = false\n\n[analytics]\nenabled = false\n");
    std::fs::write(&config, toml).unwrap();
    let args = codex::codex_args(&job);

    let mut stream = CodexStream::new(Redactor::patterns_only());
    let run = run_cli(
        &codex_bin,
        tmp,
        &args,
        &env,
        &codex::codex_prompt(&job),
        |line| stream.feed(line),
    )
    .await;
    let outcome = stream.finish();

    print_requests(&mock);
    assert_committed(&run, &outcome);
    let counts = progress_counts(&run);
    assert_eq!(counts.last(), Some(&(2, 0, 2)), "{counts:?}");
    let calls = mock.api_requests(Api::Responses);
    assert_eq!(
        calls.iter().map(|r| r.step).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2), Some(3), Some(4)],
        "one Responses call per step"
    );
    for request in &calls {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.model(), Some("mock-model"));
        assert!(request.is_stream());
    }
    // The job's system prompt travels in the stdin prompt.
    let input = calls[0].body["input"].to_string();
    assert!(input.contains("You are the implementer."), "{input}");
    assert_eq!(mock.requests().len(), calls.len(), "no other request");
    assert!(!run.stderr.contains("PATH aliases"), "{}", run.stderr);
    assert_isolated(&run);
}
