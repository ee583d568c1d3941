//! The real `pi` CLI, driven offline against the loopback [`ModelMock`], invoked the way the
//! worker invokes it.
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
//! - A failing model API costs 2 + 4 + 8 s of pi's retry back-off before pi gives up (and exits
//!   0); `~/.pi/agent/settings.json` `{"retry": {"baseDelayMs": 10}}` makes that about 1 s for
//!   tests of failures.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::model_mock::{ModelMock, Step};

/// A dummy token: the mock must see it in `Authorization`, and it must not be read from env.
const TOKEN: &str = "sess-mock-token-4f2a9c";

/// A generous bound: the run takes a few seconds, but a pi that hangs must fail the test, not
/// the whole suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn pi_bin() -> Option<PathBuf> {
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
    let mock = ModelMock::start(steps).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&repo).unwrap();
    scratch_repo(&repo);
    pi_home(&home, &mock.base_url(), api_key);

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
