//! The real subscription CLIs, Claude Code and Codex, driven offline against the loopback
//! [`ModelMock`], twice each:
//! - run directly with the worker's own pieces (the job parser, `prepare_claude_home` /
//!   `prepare_codex_home`, `claude_run_env`, `claude_args` / `codex_args` / `codex_prompt`, the
//!   stream parsers `ClaudeStream` / `CodexStream`), so what the CLI does is seen up close;
//! - run by the worker itself (`agent.claude_command = [CLAUDE_BIN]`, `agent.codex_command =
//!   [CODEX_BIN]`): broker, clone, runner, config home, push and result.
//!
//! Each test runs only when its CLI is named: `CLAUDE_BIN` / `CODEX_BIN`
//! (`eval "$(scripts/install-agent-clis.sh)"`); otherwise it says it is skipped and passes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use executor_harness::agent::cli::claude;
use executor_harness::agent::cli::claude_stream::ClaudeStream;
use executor_harness::agent::cli::codex::{self, CodexStream};
use executor_harness::agent::cli::stream::{CliStream, LineEffects, StreamOutcome};
use executor_harness::job::{parse_job, AgentJob, ValidationPolicy};
use executor_harness::redact::Redactor;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::model_mock::{Api, ModelMock, Step};
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, TestWorker};

/// A dummy subscription token: the mock must see it, and it must come from the job.
pub(crate) const TOKEN: &str = "sub-mock-token-7d31e0";

pub(crate) const FINAL_TEXT: &str = "Created hello.txt and committed it.";

/// A generous bound: a run takes seconds, but a CLI that hangs must fail the test, not the
/// suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub(crate) fn bin(var: &str) -> Option<PathBuf> {
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
///   The runner sets both (`claude_run_env`).
/// - Tools used here: `Write {file_path (absolute), content}`, `Bash {command, description}`,
///   `TaskCreate {subject, description}`, `TaskUpdate {taskId: "1", status}`. stdout is
///   `system`, then `assistant` / `user` pairs, then `result`.
#[cfg_attr(
    not(has_claude),
    ignore = "needs CLAUDE_BIN: scripts/install-agent-clis.sh"
)]
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
    // No title-generation call and no lookups of api.anthropic.com (telemetry, flags); and
    // bypassPermissions is refused to root unless the CLI is told it is sandboxed (the
    // production image runs as an unprivileged user, CI as root).
    env.extend(claude::claude_run_env(running_as_root()));
    let args = claude::claude_args(&job, &claude::claude_system_prompt(&job), None);

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
/// - `[features] plugins = false` and `[analytics] enabled = false` in `config.toml` (written by
///   `prepare_codex_home`): without them every run looks up chatgpt.com and api.github.com
///   (curated plugin sync) and ab.chatgpt.com (metrics). `exec` makes no update check.
/// - A `CODEX_HOME` under the temp dir gets a stderr warning ("proceeding, even though we could
///   not create PATH aliases: Refusing to create helper binaries under temporary dir") and no
///   `apply_patch` alias; the run goes on. Elsewhere Codex links its helpers (`apply_patch`,
///   `applypatch`, `codex-linux-sandbox`, `codex-execve-wrapper`) in `<home>/tmp/arg0/<dir>/`.
///   Hence the worker's `agent.codex_home_root`, off the temp dir the default work dir is in.
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
#[cfg_attr(
    not(has_codex),
    ignore = "needs CODEX_BIN: scripts/install-agent-clis.sh"
)]
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
    // Its config.toml turns off the plugin sync and analytics, which would otherwise look up
    // chatgpt.com, api.github.com and ab.chatgpt.com on every run.
    let env = codex::prepare_codex_home(&job, &codex_home).unwrap();
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

// ---------------------------------------------------------------------------------------------
// The real CLIs through the worker: broker, clone, the runner's config home and environment,
// stream parsing, push and result, with `agent.claude_command = [CLAUDE_BIN]` /
// `agent.codex_command = [CODEX_BIN]`.

/// Enough for the CLI's start, a few model turns, clone and push.
const WORKER_WAIT: Duration = Duration::from_secs(120);

/// A shell command that writes the command line of every process from its own shell up to
/// pid 1, one per line, to `out`: while the job runs, the CLI the worker started is among them.
pub(crate) fn ancestry_command(out: &Path) -> String {
    format!(
        "p=$$; while [ \"$p\" -gt 1 ]; do tr '\\0' ' ' < /proc/$p/cmdline; echo; \
         p=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$p/status); done > '{}'",
        out.display()
    )
}

/// Where a tool call of the agent writes what it saw: open to the sandboxed agent's user.
pub(crate) fn probe_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// The ancestry lines `ancestry_command` wrote, failing the test when the token is in any.
pub(crate) fn agent_argv(ancestry: &Path, marker: &str) -> String {
    let lines = std::fs::read_to_string(ancestry).expect("the agent ran the ancestry command");
    assert!(!lines.contains(TOKEN), "the token is in an argv: {lines}");
    lines
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no process with {marker:?} above the tool's shell: {lines}"))
        .to_owned()
}

/// A coding job for `origin` on the work branch `branch`, run by `harness` against
/// `base_url` with [`TOKEN`] as its subscription token.
pub(crate) fn worker_job(
    job_id: &str,
    origin: &BareRepo,
    harness: &str,
    base_url: &str,
    branch: &str,
) -> Value {
    let mut job = coding_job(job_id, &origin.url(), Some(branch));
    let o = job.as_object_mut().unwrap();
    o.remove("proxyBaseUrl");
    o.remove("sessionToken");
    job["harness"] = json!(harness);
    job["subscriptionToken"] = json!(TOKEN);
    job["subscriptionBaseUrl"] = json!(base_url);
    job["model"] = json!("mock-model");
    job["userPrompt"] = json!("Create hello.txt and commit it.");
    job
}

/// What every worker run must show: `done`, pushed, the final text as summary, stats and usage
/// reported, the scripted commit on the remote branch.
pub(crate) fn assert_pushed(result: &Value, origin: &BareRepo, branch: &str) {
    assert_eq!(result["state"], "done", "{result}");
    assert!(result.get("failureCause").is_none(), "{result}");
    let r = &result["result"];
    assert_eq!(r["pushed"], true, "{result}");
    assert_eq!(r["branch"], branch);
    assert_eq!(r["summary"], FINAL_TEXT);
    assert!(r["stats"]["toolCalls"].as_u64().unwrap() >= 2, "{result}");
    assert!(r["usage"]["inputTokens"].as_u64().unwrap() > 0, "{result}");
    assert!(r["usage"]["outputTokens"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(origin.subjects(branch)[0], "Add hello");
    assert_eq!(
        origin.file_at(branch, "hello.txt").as_deref(),
        Some("hello from the mock model\n")
    );
}

/// Every request to `api` is one scripted step, with the token as a bearer token.
fn assert_steps_with_token(mock: &ModelMock, api: Api, steps: usize) {
    let calls = mock.api_requests(api);
    assert_eq!(
        calls.iter().map(|r| r.step).collect::<Vec<_>>(),
        (0..steps).map(Some).collect::<Vec<_>>(),
        "one call per scripted step"
    );
    for request in &calls {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.model(), Some("mock-model"));
    }
}

pub(crate) const WRITE_AND_COMMIT: &str =
    "printf 'hello from the mock model\\n' > hello.txt && git add -A && git commit -q -m 'Add hello'";

/// The worker as root (CI): the runner's `IS_SANDBOX=1` is what lets bypassPermissions start,
/// and its `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` what keeps the run to the scripted
/// calls.
#[cfg_attr(
    not(has_claude),
    ignore = "needs CLAUDE_BIN: scripts/install-agent-clis.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_the_real_claude_code_and_pushes_its_commit() {
    let Some(claude_bin) = bin("CLAUDE_BIN") else {
        eprintln!("real_subscription: skipped (set CLAUDE_BIN, see scripts/install-agent-clis.sh)");
        return;
    };
    let origin = BareRepo::new();
    let probe = probe_dir();
    let ancestry = probe.path().join("ancestry");
    let steps = vec![
        Step::tool_call(
            "Bash",
            json!({"command": ancestry_command(&ancestry), "description": "List the processes"}),
        ),
        Step::tool_call(
            "Bash",
            json!({"command": WRITE_AND_COMMIT, "description": "Write hello.txt and commit it"}),
        ),
        Step::text(FINAL_TEXT),
    ];
    let turns = steps.len();
    let mock = ModelMock::start(steps).await;
    let w = TestWorker::start(Path::new("pi-unused"), |c| {
        c.agent.claude_command = vec![claude_bin.display().to_string()];
        // This worker runs Claude Code jobs only: Pi need not be installed.
        c.agent.required_commands = vec!["claude".into()];
        // The probe writes what the sandboxed agent saw.
        c.sandbox.writable.push(probe.path().display().to_string());
    })
    .await;

    let started = Instant::now();
    w.enqueue(&worker_job(
        "job-real-claude",
        &origin,
        "claude-code",
        &mock.origin(),
        "work/real-claude",
    ))
    .await;
    let result = w.next_result(WORKER_WAIT).await;
    eprintln!(
        "real_subscription: worker claude job took {:?}",
        started.elapsed()
    );

    print_requests(&mock);
    assert_pushed(&result, &origin, "work/real-claude");
    assert_steps_with_token(&mock, Api::Messages, turns);
    let others: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.api.is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(others.iter().all(|r| r == "HEAD /"), "{others:?}");
    let agent = agent_argv(&ancestry, "--output-format stream-json");
    assert!(agent.contains("--append-system-prompt"), "{agent}");
    assert!(agent.contains("--model mock-model"), "{agent}");
    // Claude Code's envelopes are one per content block; grouped, they are the model's calls.
    let served = mock.served(Api::Messages);
    crate::spending::assert_totals(&result["result"]["usage"], &served);
    let calls = result["result"]["callMetrics"].as_array().unwrap();
    crate::spending::assert_calls(calls, &served);
    w.stop().await;
}

/// Codex's home goes under `agent.codex_home_root` (here under target/, off the temp dir), so
/// Codex sets up its helper binaries (`apply_patch`, linked in `<home>/tmp/arg0/`); the home is
/// private while the run lasts and gone after it.
#[cfg_attr(
    not(has_codex),
    ignore = "needs CODEX_BIN: scripts/install-agent-clis.sh"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_the_real_codex_and_pushes_its_commit() {
    let Some(codex_bin) = bin("CODEX_BIN") else {
        eprintln!("real_subscription: skipped (set CODEX_BIN, see scripts/install-agent-clis.sh)");
        return;
    };
    let origin = BareRepo::new();
    let probe = probe_dir();
    let ancestry = probe.path().join("ancestry");
    let seen = probe.path().join("codex-home");
    let homes = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = homes.path().join("codex-homes");
    let inspect = format!(
        "{} && {{ echo \"$CODEX_HOME\"; stat -c %a \"$CODEX_HOME\" \"$CODEX_HOME/auth.json\"; \
         ls -d \"$CODEX_HOME\"/tmp/arg0/*/apply_patch; }} > '{}'",
        ancestry_command(&ancestry),
        seen.display()
    );
    let steps = vec![
        Step::tool_call("exec_command", json!({"cmd": inspect})),
        Step::tool_call("exec_command", json!({"cmd": WRITE_AND_COMMIT})),
        Step::text(FINAL_TEXT),
    ];
    let turns = steps.len();
    let mock = ModelMock::start(steps).await;
    let w = TestWorker::start(Path::new("pi-unused"), |c| {
        c.agent.codex_command = vec![codex_bin.display().to_string()];
        c.agent.required_commands = vec!["codex".into()];
        c.agent.codex_home_root = root.display().to_string();
        c.sandbox.writable.push(probe.path().display().to_string());
    })
    .await;

    let started = Instant::now();
    w.enqueue(&worker_job(
        "job-real-codex",
        &origin,
        "codex",
        &mock.base_url(),
        "work/real-codex",
    ))
    .await;
    let result = w.next_result(WORKER_WAIT).await;
    eprintln!(
        "real_subscription: worker codex job took {:?}",
        started.elapsed()
    );

    print_requests(&mock);
    assert_pushed(&result, &origin, "work/real-codex");
    assert_steps_with_token(&mock, Api::Responses, turns);
    assert_eq!(mock.requests().len(), turns, "no other request");
    let agent = agent_argv(&ancestry, "--dangerously-bypass-approvals-and-sandbox");
    assert!(agent.contains("exec --json"), "{agent}");
    // `exec --json` reports usage per turn: one record for the turn, with every call's tokens.
    let served = mock.served(Api::Responses);
    crate::spending::assert_totals(&result["result"]["usage"], &served);
    let calls = result["result"]["callMetrics"].as_array().unwrap();
    let sum = crate::support::model_mock::Served::sum(&served);
    let fresh: u64 = calls
        .iter()
        .map(|c| c["inputTokens"].as_u64().unwrap())
        .sum();
    assert_eq!(fresh, sum.fresh, "{calls:?}");

    let seen = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    let [home, home_mode, auth_mode, apply_patch] = lines[..] else {
        panic!("unexpected inspection output: {seen}");
    };
    let home = PathBuf::from(home);
    assert_eq!(home.parent(), Some(root.as_path()), "{seen}");
    // Private to the agent's user (the sandbox keeps its setgid bit on the job's directories).
    let mode = |m: &str| u32::from_str_radix(m, 8).unwrap();
    assert_eq!(mode(home_mode) & 0o777, 0o700, "{seen}");
    assert_eq!(mode(auth_mode), 0o600, "{seen}");
    assert!(
        apply_patch.starts_with(home.to_str().unwrap()),
        "Codex made its apply_patch helper: {seen}"
    );
    assert!(!home.exists(), "the token's home outlived the run");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    w.stop().await;
}
