//! The real `pi` CLI, driven offline against the loopback [`ModelMock`]: invoked the way the
//! worker invokes it, and run by the worker itself (`agent.pi_command = [PI_BIN]`).
//!
//! Runs only when `PI_BIN` names a pi executable (`PI_BIN=$(scripts/install-pi.sh | tail -n1)`);
//! otherwise it says it is skipped and passes.
//!
//! What pi needs to run fully offline, found by running 0.80.3 and 0.87.1 (under strace, and in a
//! network namespace holding only loopback):
//! - `HOME` = a per-run directory: pi reads `~/.pi/agent/models.json` and
//!   `~/.pi/agent/AGENTS.md` from it and writes `auth.json` and its session file
//!   (`sessions/<cwd slug>/<time>_<id>.jsonl`) there. `PI_CODING_AGENT_DIR` would override that
//!   directory, so it is removed from the env.
//! - `PI_OFFLINE=1` (no startup version, package or tool-download lookups) and `PI_TELEMETRY=0`.
//!   In print mode neither version connected anywhere but the model API even without them; they
//!   are set so that stays true whatever pi's startup does.
//! - `-p --mode json --model proxy/<id> --approve` with the prompt on stdin and stdin closed: no
//!   first-run prompt, no TTY; `--approve` trusts project-local files without asking.
//! - The provider's `apiKey` is read from models.json and sent as `Authorization: Bearer`, but as
//!   a template, not a literal: a leading `!` runs the rest as a shell command (and a failing
//!   command's text, i.e. the token, lands in the run's error message), `$NAME` and `${NAME}`
//!   expand env vars (an unset one means "No API key found", exit 1). A literal token must have
//!   `$` written as `$$` and `!` as `$!` ([`pi_config_literal`]).
//! - The repository needs a committer identity: the per-run HOME has no `~/.gitconfig`, so the
//!   agent's own `git commit` fails without one. Here it is repository-local config.
//! - A model API error ends the run with an assistant message whose `stopReason` is `"error"`
//!   and whose `errorMessage` is `<status>: <response body>`; pi still exits 0. A 401 is final
//!   (one request); a 5xx is retried 3 times, 2 + 4 + 8 s apart. `{"retry": {"baseDelayMs": 10}}`
//!   in the global `~/.pi/agent/settings.json` or in the project's `.pi/settings.json` (merged
//!   over it, trusted through `--approve`) shortens that to about 70 ms.
//! - Extensions: `pi install npm:<pkg>` (scripts/install-pi.sh does it for rpiv-todo) writes
//!   `packages` into `~/.pi/agent/settings.json` and the package under `~/.pi/agent/npm/`; with
//!   `PI_OFFLINE=1` pi loads what is installed and fetches nothing. A local path in `packages`
//!   loads a package in place.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use executor_harness::agent::prepare_pi_home_with;
use executor_harness::job::{parse_job, ValidationPolicy};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::model_mock::{ModelMock, Step};
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, drain_json, TestWorker};

/// A dummy token: the mock must see it in `Authorization`, and it must not be read from env.
const TOKEN: &str = "sess-mock-token-4f2a9c";

/// A generous bound: the run takes a few seconds, but a pi that hangs must fail the test, not
/// the whole suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn pi_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("PI_BIN").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(bin))
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

/// A repository with one commit on `main` and a local committer identity.
fn scratch_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Executor Test"]);
    git(dir, &["config", "user.email", "executor@example.invalid"]);
    std::fs::write(dir.join("README.md"), "# scratch\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "Initial commit"]);
}

/// The per-run HOME as the worker writes it: models.json (0600, `api_key` as the provider's
/// apiKey) and AGENTS.md.
fn pi_home(home: &Path, base_url: &str, api_key: &str) {
    let agent_dir = home.join(".pi/agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let models = json!({"providers": {"proxy": {
        "baseUrl": base_url,
        "api": "openai-completions",
        "apiKey": api_key,
        "compat": {"supportsDeveloperRole": false, "supportsReasoningEffort": false},
        "models": [{"id": "mock-model", "name": "mock-model", "maxTokens": 32768}]
    }}});
    let models_path = agent_dir.join("models.json");
    std::fs::write(&models_path, serde_json::to_vec_pretty(&models).unwrap()).unwrap();
    std::fs::set_permissions(&models_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        agent_dir.join("AGENTS.md"),
        "# Harness guidance\n\nCommit your work with git when you are done.\n",
    )
    .unwrap();
}

/// pi reads apiKey as a template: `!cmd` runs a shell command, `$NAME`/`${NAME}` expand env
/// vars, `$$` and `$!` are a literal `$` and `!`. A literal token must be escaped so that none of
/// it is interpreted.
fn pi_config_literal(token: &str) -> String {
    token.replace('$', "$$").replace('!', "$!")
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One finished pi run and everything needed to assert on it.
struct PiRun {
    mock: ModelMock,
    /// Holds the scratch repo and HOME until the assertions are done.
    tmp: tempfile::TempDir,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
}

impl PiRun {
    fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }
}

/// Runs pi exactly as the worker does, against a mock serving `steps`, with `api_key` written
/// as the provider's apiKey.
async fn run_pi(pi: &Path, steps: Vec<Step>, api_key: &str) -> PiRun {
    run_pi_with_home(pi, steps, |home, base_url| pi_home(home, base_url, api_key)).await
}

/// Like [`run_pi`], with the per-run HOME made by `prepare(home, mock base URL)`.
async fn run_pi_with_home(pi: &Path, steps: Vec<Step>, prepare: impl FnOnce(&Path, &str)) -> PiRun {
    let mock = ModelMock::start(steps).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&repo).unwrap();
    scratch_repo(&repo);
    prepare(&home, &mock.base_url());

    let started = Instant::now();
    let mut child = Command::new(pi)
        .args([
            "-p",
            "--mode",
            "json",
            "--model",
            "proxy/mock-model",
            "--approve",
        ])
        .current_dir(&repo)
        .env("HOME", &home)
        .env("PI_OFFLINE", "1")
        .env("PI_TELEMETRY", "0")
        .env_remove("PI_CODING_AGENT_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"Create hello.txt and commit it.\n")
        .await
        .unwrap();
    // Closing stdin is what starts pi in print mode.
    drop(stdin);
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("pi finished within the timeout")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "real_pi: {} exited {:?} after {:?}; {} stdout bytes; stderr: {:?}",
        pi.display(),
        out.status.code(),
        started.elapsed(),
        stdout.len(),
        stderr
    );
    let events = events(&stdout);
    PiRun {
        mock,
        tmp,
        status: out.status,
        stdout,
        stderr,
        events,
    }
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test]
async fn real_pi_writes_and_commits_through_the_mock_model_with_the_literal_token() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let steps = vec![
        Step::tool_call(
            "write",
            json!({"path": "hello.txt", "content": "hello from the mock model\n"}),
        ),
        Step::tool_call(
            "bash",
            json!({"command": "git add -A && git commit -q -m 'Add hello'"}),
        ),
        Step::text("Created hello.txt and committed it."),
    ];

    let run = run_pi(&pi, steps, TOKEN).await;

    assert!(
        run.status.success(),
        "pi failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    let types: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    eprintln!("real_pi: event types: {types:?}");
    let agent_end = run
        .events
        .iter()
        .rfind(|e| e["type"] == "agent_end")
        .expect("an agent_end event");
    let last = agent_end["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["stopReason"], "stop", "{last}");
    assert_eq!(
        last["content"][0]["text"],
        "Created hello.txt and committed it."
    );
    let tool_ends: Vec<(&str, bool)> = run
        .events
        .iter()
        .filter(|e| e["type"] == "tool_execution_end")
        .map(|e| (e["toolName"].as_str().unwrap(), e["isError"] == true))
        .collect();
    assert_eq!(tool_ends, [("write", false), ("bash", false)]);

    let repo = run.repo();
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s"]).trim(),
        "Add hello"
    );
    assert_eq!(
        git(&repo, &["show", "HEAD:hello.txt"]),
        "hello from the mock model\n"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");

    let chats = run.mock.chat_requests();
    assert_eq!(
        chats.iter().map(|r| r.step).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)],
        "one request per scripted step, none past the script"
    );
    for request in &chats {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.model(), Some("mock-model"));
        assert!(request.is_stream());
    }
    // The global AGENTS.md reaches the model through the system prompt.
    let system = chats[0].body["messages"][0].to_string();
    assert!(system.contains("Harness guidance"), "{system}");
    assert_eq!(
        run.mock.requests().len(),
        chats.len(),
        "pi made no other request to the model API"
    );
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test]
async fn real_pi_sends_a_token_with_dollar_and_bang_verbatim_once_escaped() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    // Unescaped, the leading `!` would run a shell command and `$HOME` would expand.
    let token = "!tok$HOME${PATH}$$x!";

    let run = run_pi(&pi, vec![Step::text("ok")], &pi_config_literal(token)).await;

    assert!(run.status.success(), "pi failed: {}", run.stderr);
    let chats = run.mock.chat_requests();
    assert_eq!(chats.len(), 1);
    assert_eq!(
        chats[0].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

/// `<prefix>/agent` of a scripts/install-pi.sh install: what `pi install` leaves in a user's
/// `~/.pi/agent` (settings.json listing the packages, npm/ holding them).
fn installed_agent_dir(pi: &Path) -> Option<PathBuf> {
    let prefix = std::fs::canonicalize(pi)
        .ok()?
        .parent()?
        .parent()?
        .to_path_buf();
    let dir = prefix.join("agent");
    dir.join("settings.json").is_file().then_some(dir)
}

/// The rpiv-todo extension (the `todo` tool) installed there.
fn todo_extension(pi: &Path) -> Option<PathBuf> {
    let dir = installed_agent_dir(pi)?.join("npm/node_modules/@juicesharp/rpiv-todo");
    dir.join("package.json").is_file().then_some(dir)
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test]
async fn real_pi_loads_the_todo_extension_linked_from_the_worker_users_agent_dir() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let (Some(user_agent_dir), Some(_)) = (installed_agent_dir(&pi), todo_extension(&pi)) else {
        eprintln!("real_pi: skipped (no rpiv-todo next to PI_BIN, see scripts/install-pi.sh)");
        return;
    };
    let steps = vec![
        Step::tool_call("todo", json!({"action": "create", "subject": "Say hi"})),
        Step::text("ok"),
    ];

    // The HOME as the worker makes it: its own models.json and AGENTS.md, everything else of
    // the user's agent dir linked.
    let run = run_pi_with_home(&pi, steps, |home, base_url| {
        let mut body = coding_job("job-link", "file:///r", None);
        body["proxyBaseUrl"] = json!(base_url);
        body["sessionToken"] = json!(TOKEN);
        body["model"] = json!("mock-model");
        let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), 1 << 20);
        let job = parse_job(body.to_string().as_bytes(), &policy).unwrap();
        prepare_pi_home_with(&job, home, Some(&user_agent_dir), None).unwrap();
    })
    .await;

    assert!(run.status.success(), "pi failed: {}", run.stderr);
    let agent_dir = run.tmp.path().join("home/.pi/agent");
    assert!(std::fs::symlink_metadata(agent_dir.join("npm"))
        .unwrap()
        .file_type()
        .is_symlink());
    let todo_end = run
        .events
        .iter()
        .find(|e| e["type"] == "tool_execution_end" && e["toolName"] == "todo")
        .expect("a todo tool execution");
    assert_eq!(todo_end["isError"], false, "{todo_end}");
    assert_eq!(
        todo_end["result"]["details"]["tasks"][0]["subject"], "Say hi",
        "{todo_end}"
    );
}

// ---------------------------------------------------------------------------------------------
// The real pi through the worker: broker, clone, per-job HOME, models.json, stream parsing,
// push and result, with `agent.pi_command = [PI_BIN]`.
//
// Extensions load the production way: `agent.pi_agent_dir` names the install's agent dir
// (settings.json listing the packages, npm/ holding them), whose entries the worker links into
// each job's HOME. A test that needs another pi setting commits `.pi/settings.json` to the
// fixture repository instead: pi merges it over the global one (`--approve` trusts it).

const FINAL_TEXT: &str = "Created hello.txt and committed it.";

/// Enough for pi's start, a few model turns, clone and push.
pub(crate) const WORKER_WAIT: Duration = Duration::from_secs(120);

/// A worker whose Pi program is the real `pi`, offline, with no user agent dir.
pub(crate) async fn pi_worker(pi: &Path) -> TestWorker {
    pi_worker_with_agent_dir(pi, None).await
}

/// A worker whose Pi program is the real `pi`, offline; `agent_dir` is its `agent.pi_agent_dir`
/// (`None`: a directory that does not exist, so nothing of the developer's own `~/.pi/agent`
/// reaches the run).
async fn pi_worker_with_agent_dir(pi: &Path, agent_dir: Option<&Path>) -> TestWorker {
    let agent_dir = agent_dir.map_or_else(
        || "/nonexistent/pi-agent".to_owned(),
        |d| d.display().to_string(),
    );
    TestWorker::start(pi, |c| {
        c.agent.env.insert("PI_OFFLINE".into(), "1".into());
        c.agent.env.insert("PI_TELEMETRY".into(), "0".into());
        c.agent.pi_agent_dir = agent_dir;
    })
    .await
}

/// A coding job for `origin` against the mock, with [`TOKEN`] as its session token.
pub(crate) fn mock_job(job_id: &str, origin: &BareRepo, mock: &ModelMock, branch: &str) -> Value {
    let mut job = coding_job(job_id, &origin.url(), Some(branch));
    job["proxyBaseUrl"] = json!(mock.base_url());
    job["sessionToken"] = json!(TOKEN);
    job["model"] = json!("mock-model");
    job
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_the_real_pi_and_pushes_its_commit_with_todo_progress() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let origin = BareRepo::new();
    let todo = todo_extension(&pi);
    let todo_call = |args: Value| Step::tool_call("todo", args);
    let mut steps = Vec::new();
    match &todo {
        Some(_) => {
            steps.push(todo_call(
                json!({"action": "create", "subject": "Write hello.txt"}),
            ));
            steps.push(todo_call(
                json!({"action": "create", "subject": "Commit it"}),
            ));
            steps.push(todo_call(
                json!({"action": "update", "id": 1, "status": "in_progress"}),
            ));
        }
        None => eprintln!(
            "real_pi: the todo part is skipped: no rpiv-todo next to {} (scripts/install-pi.sh \
             installs it)",
            pi.display()
        ),
    }
    steps.push(Step::tool_call(
        "write",
        json!({"path": "hello.txt", "content": "hello from the mock model\n"}),
    ));
    steps.push(Step::tool_call(
        "bash",
        json!({"command": "git add -A && git commit -q -m 'Add hello'"}),
    ));
    if todo.is_some() {
        steps.push(todo_call(
            json!({"action": "update", "id": 1, "status": "completed"}),
        ));
    }
    steps.push(Step::text(FINAL_TEXT));
    let turns = steps.len();
    let mock = ModelMock::start(steps).await;
    // The todo extension is found only through the links to the install's agent dir.
    let agent_dir = todo.as_ref().and_then(|_| installed_agent_dir(&pi));
    let w = pi_worker_with_agent_dir(&pi, agent_dir.as_deref()).await;

    let started = Instant::now();
    w.enqueue(&mock_job("job-real-pi", &origin, &mock, "work/real-pi"))
        .await;
    let result = w.next_result(WORKER_WAIT).await;
    eprintln!("real_pi: worker job took {:?}", started.elapsed());

    assert_eq!(result["state"], "done", "{result}");
    assert!(result.get("failureCause").is_none(), "{result}");
    let r = &result["result"];
    assert_eq!(r["pushed"], true, "{result}");
    assert_eq!(r["branch"], "work/real-pi");
    assert_eq!(r["summary"], FINAL_TEXT);
    assert!(r["stats"]["toolCalls"].as_u64().unwrap() > 0, "{result}");
    assert!(
        r["stats"]["assistantChars"].as_u64().unwrap() > 0,
        "{result}"
    );
    assert!(r["usage"]["inputTokens"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(origin.subjects("work/real-pi")[0], "Add hello");
    assert_eq!(
        origin.file_at("work/real-pi", "hello.txt").as_deref(),
        Some("hello from the mock model\n")
    );

    let chats = mock.chat_requests();
    assert_eq!(
        chats.iter().map(|r| r.step).collect::<Vec<_>>(),
        (0..turns).map(Some).collect::<Vec<_>>(),
        "one request per scripted step"
    );
    for request in &chats {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    // The job's system prompt reached the model through the per-job AGENTS.md.
    let system = chats[0].body["messages"][0].to_string();
    assert!(system.contains("You are the implementer."), "{system}");

    let progress = drain_json(w.conn(), &w.broker.topo.progress_queue).await;
    let todos: Vec<&Value> = progress.iter().filter_map(|p| p.get("progress")).collect();
    if todo.is_some() {
        let counts: Vec<(u64, u64, u64)> = todos
            .iter()
            .map(|t| {
                let n = |k: &str| t[k].as_u64().unwrap();
                (n("completed"), n("inProgress"), n("total"))
            })
            .collect();
        assert_eq!(
            counts,
            [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 2)],
            "{progress:?}"
        );
        let last = todos.last().unwrap();
        assert_eq!(last["items"][0]["label"], "Write hello.txt", "{last}");
    } else {
        assert!(todos.is_empty(), "{progress:?}");
    }
    w.stop().await;
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_api_that_refuses_the_token_fails_the_job_with_the_upstream_message() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let origin = BareRepo::new();
    let mock = ModelMock::start(vec![Step::fail(401, "mock: invalid session token")]).await;
    let w = pi_worker(&pi).await;

    w.enqueue(&mock_job("job-real-401", &origin, &mock, "work/real-401"))
        .await;
    let result = w.next_result(WORKER_WAIT).await;

    // Pi exits 0 after an assistant message with `stopReason: "error"`: the model endpoint
    // refused the credential, its own cause with the fix under pi's text.
    assert_eq!(result["state"], "failed", "{result}");
    assert_eq!(result["failureCause"], "llm-upstream", "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(error.contains("mock: invalid session token"), "{error}");
    assert!(error.starts_with("401"), "{error}");
    assert!(
        error.ends_with("\nThe model provider rejected the run: the API credential was refused (HTTP 401/403). The provider key is most likely invalid, revoked, or expired — replace it, then retry."),
        "{error}"
    );
    assert!(!error.contains(TOKEN), "{error}");
    // An authentication error is final for pi: no retry.
    assert_eq!(mock.chat_requests().len(), 1);
    assert_eq!(origin.tip("work/real-401"), None);
    w.stop().await;
}

/// A repository whose project settings shorten pi's retries: a 5xx or 429 is retried 3 times,
/// 2 s apart and doubling (14 s); with these, about 70 ms.
fn origin_with_fast_retries() -> BareRepo {
    let origin = BareRepo::new();
    origin.commit_files(
        "main",
        &[(".pi/settings.json", r#"{"retry": {"baseDelayMs": 10}}"#)],
        "Fast retries",
    );
    origin
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_api_that_rate_limits_past_pis_retries_is_an_upstream_failure_with_its_fix() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let origin = origin_with_fast_retries();
    let mock = ModelMock::start(vec![Step::fail(429, "mock: slow down")]).await;
    let w = pi_worker(&pi).await;
    w.enqueue(&mock_job("job-real-429", &origin, &mock, "work/real-429"))
        .await;
    let result = w.next_result(WORKER_WAIT).await;
    assert_eq!(result["state"], "failed", "{result}");
    assert_eq!(result["failureCause"], "llm-upstream", "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(error.contains("mock: slow down"), "{error}");
    assert!(
        error.ends_with("\nThe model provider rate-limited the run (HTTP 429) and the agent exhausted its automatic retries. This is usually transient — wait a moment and retry. If it persists, reduce concurrent runs or use a provider key / plan with a higher rate limit."),
        "{error}"
    );
    assert!(!mock.chat_requests().is_empty());
    w.stop().await;
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_model_api_is_retried_by_pi_then_fails_the_job() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let origin = origin_with_fast_retries();
    let mock = ModelMock::start(vec![Step::fail(503, "mock: upstream overloaded")]).await;
    let w = pi_worker(&pi).await;

    let started = Instant::now();
    w.enqueue(&mock_job("job-real-503", &origin, &mock, "work/real-503"))
        .await;
    let result = w.next_result(WORKER_WAIT).await;
    let took = started.elapsed();

    assert_eq!(result["state"], "failed", "{result}");
    assert_eq!(result["failureCause"], "agent", "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(error.contains("mock: upstream overloaded"), "{error}");
    assert_eq!(mock.chat_requests().len(), 4, "the first try and 3 retries");
    assert!(
        took < Duration::from_secs(10),
        "retries were not shortened: {took:?}"
    );
    w.stop().await;
}

/// The rpiv-web-tools extension (`web_search`, `web_fetch`) installed next to pi.
fn web_tools_extension(pi: &Path) -> Option<PathBuf> {
    let dir = installed_agent_dir(pi)?.join("npm/node_modules/@juicesharp/rpiv-web-tools");
    dir.join("package.json").is_file().then_some(dir)
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_search_job_searches_through_the_model_proxy_with_the_session_token() {
    let Some(pi) = pi_bin() else {
        eprintln!("real_pi: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let (Some(agent_dir), Some(_)) = (installed_agent_dir(&pi), web_tools_extension(&pi)) else {
        eprintln!("real_pi: skipped (no rpiv-web-tools next to PI_BIN, see scripts/install-pi.sh)");
        return;
    };
    let origin = BareRepo::new();
    let mock = ModelMock::start(vec![
        Step::tool_call("web_search", json!({"query": "rust lapin confirms"})),
        Step::text("Searched."),
    ])
    .await;
    let w = pi_worker_with_agent_dir(&pi, Some(&agent_dir)).await;
    let mut job = mock_job("job-web", &origin, &mock, "work/web");
    job["webSearch"] = json!(true);
    job["noChangesIsError"] = json!(false);
    w.enqueue(&job).await;
    let r = w.next_result(WORKER_WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    // The search went to the proxy's SearXNG endpoint, authorised with the session token,
    // which the agent's environment never held.
    let searches: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|req| req.path.starts_with("/v1/web-search/search"))
        .collect();
    assert_eq!(searches.len(), 1, "{:?}", mock.requests());
    assert_eq!(
        searches[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    w.stop().await;
}
