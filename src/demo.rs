//! `executor-harness demo`: a full coding job against a throwaway local bare repository, with a
//! built-in scripted agent that speaks Pi's JSON event stream (no broker, no network). It shows
//! the whole flow: clone, a todo list, a follow-up, an agent commit, a safety-net commit of an
//! uncommitted edit, the push, and the outcome.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use git2::{Repository, Signature};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::job::outcome::Event;
use crate::job::parse_job;
use crate::metrics::Metrics;
use crate::telemetry::SecretRegistry;
use crate::worker::context::JobContext;
use crate::worker::error::JobEnd;
use crate::worker::events::{EventSink, MemorySink, StdoutSink, TeeSink};
use crate::worker::run::run_job;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo set-up failed: {0}")]
    Setup(String),
    #[error(transparent)]
    Git(#[from] git2::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const BRANCH: &str = "demo/add-greeting";

/// Runs the demo; returns the process exit code (0 when the job is `done` without an error).
pub async fn run_demo(json: bool) -> Result<i32, DemoError> {
    let scratch = tempfile::Builder::new()
        .prefix("executor-harness-demo-")
        .tempdir()?;
    let origin = scratch.path().join("origin.git");
    make_origin(&origin)?;
    let url = url::Url::from_file_path(&origin)
        .map_err(|()| DemoError::Setup("the scratch path is not absolute".into()))?;

    let exe = std::env::current_exe()?;
    let mut config = Config::default();
    config.worker.work_dir = scratch.path().join("work").display().to_string();
    config.agent.pi_command = vec![exe.display().to_string(), "demo-agent".into()];
    config.job.checkpoint_interval_ms = 500;
    config.job.followup_poll_interval_ms = 500;
    // The one setting the demo takes from outside: whether its agent must be sandboxed.
    config
        .apply_env(|var| {
            (var == "HARNESS_SANDBOX")
                .then(|| std::env::var(var).ok())
                .flatten()
        })
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    if !matches!(config.sandbox.mode.as_str(), "auto" | "required" | "off") {
        return Err(DemoError::Setup(
            "HARNESS_SANDBOX must be 'auto', 'required' or 'off'".into(),
        ));
    }
    let secrets = SecretRegistry::default();
    // The live status holds stdout; only warnings, in the style stderr calls for.
    crate::telemetry::init(
        "auto",
        "warn",
        crate::telemetry::LogTarget::Stderr,
        secrets.clone(),
    );

    let body = json!({
        "kind": "agent",
        "jobId": "demo-1",
        "mode": "coding",
        "systemPrompt": "You are the implementer. Follow the repository's conventions.",
        "userPrompt": "Add a greeting file and mark the README done.",
        "model": "demo-model",
        "proxyBaseUrl": "http://127.0.0.1:9/v1",
        "sessionToken": "demo-session-token",
        "ghToken": "demo-git-token",
        "repo": {"owner": "demo", "name": "greeter", "baseBranch": "main", "cloneUrl": url.as_str()},
        "branch": "main",
        "newBranch": BRANCH,
        "commitMessage": "Polish the README",
        "streamFollowUps": true
    });
    let job = parse_job(body.to_string().as_bytes(), &config.validation_policy())
        .map_err(|e| DemoError::Setup(e.message))?;

    println!("demo: bare repository {}", origin.display());
    println!("demo: running job {} on branch {BRANCH}\n", job.job_id);
    let memory = MemorySink::default();
    let sink: Arc<dyn EventSink> = Arc::new(TeeSink(StdoutSink::new(json), memory.clone()));
    // The agent runs in the sandbox, as an unprivileged user when the demo runs as root: it
    // must be able to pass through the scratch directory to its own.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o711))?;
    let ctx = JobContext::start(Arc::new(config), Arc::new(Metrics::new()), secrets)
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    println!(
        "demo: agents run in the sandbox: {}",
        ctx.sandbox.mechanism().as_str()
    );
    let end = run_job(&ctx, &job, 1, sink.clone(), CancellationToken::new()).await;
    let (JobEnd::Finished(result) | JobEnd::Replayed(result)) = end else {
        return Err(DemoError::Setup("the demo job was interrupted".into()));
    };
    let ok = result.succeeded() && result.result.is_some();
    let _ = sink.publish(&Event::Result((*result).clone())).await;

    println!("\ndemo: outcome");
    println!(
        "{}",
        serde_json::to_string_pretty(&*result).unwrap_or_default()
    );
    println!("\ndemo: git log {BRANCH} (in the bare repository)");
    let repo = Repository::open_bare(&origin)?;
    match repo.find_reference(&format!("refs/heads/{BRANCH}")) {
        Ok(r) => {
            let mut walk = repo.revwalk()?;
            walk.push(r.peel_to_commit()?.id())?;
            for oid in walk {
                let c = repo.find_commit(oid?)?;
                println!(
                    "  {} {}",
                    &c.id().to_string()[..7],
                    c.summary().ok().flatten().unwrap_or("")
                );
            }
        }
        Err(_) => println!("  (no branch was pushed)"),
    }
    Ok(if ok { 0 } else { 1 })
}

/// A bare repository with one commit on `main`.
fn make_origin(path: &Path) -> Result<(), DemoError> {
    let repo = Repository::init_bare(path)?;
    let readme = repo.blob(b"# greeter\n\nstatus: TODO\n")?;
    let mut tree = repo.treebuilder(None)?;
    tree.insert("README.md", readme, 0o100644)?;
    let tree = repo.find_tree(tree.write()?)?;
    let sig = Signature::now("demo", "demo@example.invalid")?;
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "Initial commit",
        &tree,
        &[],
    )?;
    repo.set_head("refs/heads/main")?;
    Ok(())
}

/// The scripted agent: reads the prompt, keeps a todo list, writes `hello.txt` and commits it,
/// files a follow-up, edits README.md without committing (the worker's safety net commits it),
/// and prints the events Pi would print.
pub fn agent_main() -> ExitCode {
    match scripted_agent() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn todo_event(states: [&str; 3]) -> serde_json::Value {
    let subjects = [
        "Write hello.txt",
        "Mark the README done",
        "File a follow-up",
    ];
    let tasks: Vec<_> = subjects
        .iter()
        .zip(states)
        .enumerate()
        .map(|(i, (s, st))| json!({"id": i + 1, "subject": s, "status": st}))
        .collect();
    json!({"type": "tool_execution_end", "toolName": "todo", "isError": false,
           "result": {"details": {"action": "update", "tasks": tasks}}})
}

fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(300));
}

fn scripted_agent() -> Result<(), DemoError> {
    let mut prompt = String::new();
    std::io::stdin().read_to_string(&mut prompt)?;
    emit(json!({"type": "agent_start"}));
    emit(todo_event(["in_progress", "pending", "pending"]));
    pause();

    std::fs::write("hello.txt", "hello from the demo agent\n")?;
    emit(json!({"type": "tool_execution_end", "toolName": "write", "isError": false}));
    let repo = Repository::discover(".")?;
    let mut index = repo.index()?;
    index.add_path(Path::new("hello.txt"))?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = repo.signature()?;
    let parent = repo.head()?.peel_to_commit()?;
    repo.commit(Some("HEAD"), &sig, &sig, "Add hello.txt", &tree, &[&parent])?;
    emit(json!({"type": "tool_execution_end", "toolName": "bash", "isError": false}));
    emit(todo_event(["completed", "in_progress", "pending"]));
    pause();

    let readme = std::fs::read_to_string("README.md")?;
    std::fs::write("README.md", readme.replace("status: TODO", "status: DONE"))?;
    emit(json!({"type": "tool_execution_end", "toolName": "edit", "isError": false}));
    emit(todo_event(["completed", "completed", "in_progress"]));

    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(crate::followups::FOLLOW_UPS_FILENAME)?;
    writeln!(
        f,
        "{}",
        json!({"kind": "follow_up", "title": "Translate the greeting", "detail": "Only English is covered."})
    )?;
    emit(json!({"type": "tool_execution_end", "toolName": "bash", "isError": false}));
    emit(todo_event(["completed", "completed", "completed"]));
    pause();

    let text = "Added hello.txt and marked the README done.";
    emit(json!({"type": "agent_end", "messages": [
        {"role": "user", "content": [{"type": "text", "text": prompt.trim()}]},
        {"role": "assistant", "content": [
            {"type": "toolCall", "name": "write"}, {"type": "toolCall", "name": "bash"},
            {"type": "toolCall", "name": "edit"}, {"type": "toolCall", "name": "bash"}],
         "usage": {"input": 900, "output": 120, "cacheRead": 0, "cacheWrite": 0}},
        {"role": "assistant", "content": [{"type": "text", "text": text}], "stopReason": "stop",
         "usage": {"input": 300, "output": 12, "cacheRead": 0, "cacheWrite": 0}}
    ], "stopReason": "stop"}));
    Ok(())
}
