//! The gates before a pull request (seed-later 1 and 2): validation checks with the agent's
//! repair loop, and the dependency install before the agent, on real repositories, the real
//! broker and a loopback code host.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::agents::write_agent;
use crate::support::code_host::CodeHost;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, drain_json, TestWorker};

const WAIT: Duration = Duration::from_secs(60);

/// A fake agent that keeps each prompt it gets in `prompt-<n>` beside itself. Asked to repair
/// (the prompt names the validation checks), it writes `fixed.txt` and commits; otherwise it
/// does the task: `work.txt`, committed.
const REPAIRING_AGENT: &str = r#"
here=$(dirname "$0")
n=$(ls "$here" | grep -c '^prompt-' || true)
printf '%s' "$PROMPT" > "$here/prompt-$((n+1))"
case "$PROMPT" in
  *"required validation checks"*)
    echo fixed > fixed.txt; git add fixed.txt; git commit -q -m 'Fix the check'; tool bash
    finish 'Fixed the check' ;;
  *)
    echo work > work.txt; commit_all 'Do the work'; tool write
    finish 'Did the task' ;;
esac
"#;

fn pr_job(id: &str, origin: &BareRepo, host: &CodeHost, checks: Value) -> Value {
    let mut job = coding_job(id, &origin.url(), Some(&format!("work/{id}")));
    job["pr"] = json!({"title": "The task", "body": "From the dispatcher."});
    job["githubApiBase"] = json!(host.url());
    job["validationChecks"] = checks;
    job
}

/// The validation reports published on the progress queue, in order.
fn reports(progress: &[Value]) -> Vec<Value> {
    progress
        .iter()
        .filter_map(|p| p.get("validationReport").cloned())
        .collect()
}

fn phases(progress: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in progress {
        let phase = p["phase"].as_str().unwrap_or("").to_owned();
        if out.last() != Some(&phase) {
            out.push(phase);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_fails_once_is_repaired_by_a_second_turn_and_the_pr_opens() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", REPAIRING_AGENT);
    let host = CodeHost::github_accepting();
    let w = TestWorker::start(&agent, |c| {
        c.job.allowed_hosts = vec!["127.0.0.1".into()];
        // The slow check outlives this window three times over; its heartbeat keeps the job.
        c.job.inactivity_ms = 1_000;
    })
    .await;
    let checks = json!({"checks": [
        {"label": "fixed", "command": "test -f fixed.txt || { echo 'fixed.txt is missing' >&2; exit 1; }"},
        {"label": "slow", "command": "sleep 3; echo slow ok"}
    ], "maxAttempts": 3});
    w.enqueue(&pr_job("repaired", &origin, &host, checks)).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(r.get("failureCause").is_none(), "{r}");
    let result = &r["result"];
    assert_eq!(
        result["prUrl"], "https://github.example/acme/widgets/pull/7",
        "{r}"
    );
    assert_eq!(
        result["summary"], "Did the task",
        "the answer to the task, not the repair's"
    );
    let report = &result["validationReport"];
    assert_eq!(report["passed"], true, "{r}");
    assert_eq!(report["attempts"], 2);
    assert_eq!(report["maxAttempts"], 3);
    assert_eq!(report["outcomes"][1]["outputTail"], "slow ok");
    assert!(report["outcomes"][1]["durationMs"].as_u64().unwrap() >= 3_000);
    // Both passes' work is on the branch the PR opens from.
    assert_eq!(
        origin.file_at("work/repaired", "work.txt").as_deref(),
        Some("work\n")
    );
    assert_eq!(
        origin.file_at("work/repaired", "fixed.txt").as_deref(),
        Some("fixed\n")
    );
    let created: Vec<_> = host
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST")
        .collect();
    assert_eq!(created.len(), 1);
    // The repair pass saw the failure, the rule, its budget and the task.
    let repair = std::fs::read_to_string(scratch.path().join("prompt-2")).unwrap();
    assert!(repair.contains("### fixed — exited 1"), "{repair}");
    assert!(repair.contains("fixed.txt is missing"), "{repair}");
    assert!(repair.contains("Do NOT edit, disable, skip, or relax the checks"));
    assert!(repair.contains("You have 2 attempt(s) left"), "{repair}");
    assert!(repair.contains("Do the task."), "{repair}");
    assert!(!scratch.path().join("prompt-3").exists(), "no third pass");

    let progress = drain_json(w.conn(), &w.broker.topo.progress_queue).await;
    let live = reports(&progress);
    assert_eq!(live.len(), 2, "one report per attempt, as it finished");
    assert_eq!(live[0]["passed"], false);
    assert_eq!(live[0]["outcomes"][0]["exitCode"], 1);
    assert_eq!(live[0]["outcomes"][0]["outputTail"], "fixed.txt is missing");
    assert_eq!(live[1]["passed"], true);
    assert_eq!(
        phases(&progress),
        [
            "starting",
            "clone",
            "agent",
            "validation-repair",
            "agent",
            "push",
            "done"
        ]
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_red_on_every_attempt_open_no_pr_and_keep_the_work_pushed() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", REPAIRING_AGENT);
    let host = CodeHost::github_accepting();
    let w = TestWorker::start(&agent, |c| c.job.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let checks = json!({"checks": [
        {"label": "lint", "command": "echo 'lint: fine'"},
        // The job's token, put together only in the output, which must not carry it on.
        {"label": "always-red", "command": "printf 'still broken ghs_TESTgit'; printf 'token000000000000000000001\\n'; exit 2"}
    ], "maxAttempts": 2});
    w.enqueue(&pr_job("red", &origin, &host, checks)).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["failureCause"], "agent", "{r}");
    let result = &r["result"];
    let error = result["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "pre-PR validation failed after 2 of 2 attempt(s): always-red (exit 2). No pull request was opened"
        ),
        "{error}"
    );
    assert!(error.ends_with("exit 2\nstill broken ***"), "{error}");
    assert!(
        !r.to_string()
            .contains("ghs_TESTgittoken000000000000000000001"),
        "the token a check printed is scrubbed: {r}"
    );
    assert!(result.get("prUrl").is_none());
    assert_eq!(result["pushed"], true);
    assert!(host.requests().is_empty(), "no PR call at all");
    assert_eq!(
        origin.file_at("work/red", "work.txt").as_deref(),
        Some("work\n")
    );
    assert_eq!(result["validationReport"]["attempts"], 2);
    assert_eq!(result["validationReport"]["passed"], false);
    let live = reports(&drain_json(w.conn(), &w.broker.topo.progress_queue).await);
    let attempts: Vec<&Value> = live.iter().map(|r| &r["attempts"]).collect();
    assert_eq!(attempts, [1, 2]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_runs_before_the_agent_and_nothing_it_made_or_rewrote_lands_in_the_branch() {
    let origin = BareRepo::new();
    origin.commit_files("main", &[("package-lock.json", "v1\n")], "Lockfile");
    let scratch = tempfile::tempdir().unwrap();
    // The agent sees the installed package, and adds everything it finds, as agents do.
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"printf '%s' "$PROMPT" > "$(dirname "$0")/prompt"
ls node_modules/dep > seen.txt
commit_all 'Work with the dependency'
finish 'done'"#,
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = coding_job("installed", &origin.url(), Some("work/installed"));
    job["dependencyInstall"] = json!({"command":
        "mkdir -p node_modules/dep && echo x > node_modules/dep/index.js && echo v2 > package-lock.json && echo installed"});
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(r.get("failureCause").is_none(), "{r}");
    assert_eq!(
        origin.file_at("work/installed", "seen.txt").as_deref(),
        Some("index.js\n")
    );
    assert_eq!(
        origin.file_at("work/installed", "node_modules/dep/index.js"),
        None
    );
    assert_eq!(
        origin
            .file_at("work/installed", "package-lock.json")
            .as_deref(),
        Some("v1\n"),
        "the lockfile the install rewrote was put back"
    );
    let prompt = std::fs::read_to_string(scratch.path().join("prompt")).unwrap();
    assert!(
        prompt.starts_with(
            "Do the task.\n\nThis checkout's dependencies have already been installed for you"
        ),
        "{prompt}"
    );
    assert!(prompt.contains("(package-lock.json)"), "{prompt}");
    let progress = drain_json(w.conn(), &w.broker.topo.progress_queue).await;
    assert_eq!(
        phases(&progress),
        ["starting", "clone", "dependencies", "agent", "push", "done"]
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_install_is_a_note_in_the_prompt_not_a_failed_job() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"printf '%s' "$PROMPT" > "$(dirname "$0")/prompt"
echo x > x.txt; commit_all 'Work'; finish 'done'"#,
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = coding_job("no-install", &origin.url(), Some("work/no-install"));
    job["dependencyInstall"] = json!({"command": "echo 'E404 left-pad not found' >&2; exit 7"});
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["pushed"], true);
    let prompt = std::fs::read_to_string(scratch.path().join("prompt")).unwrap();
    assert!(prompt.contains("could NOT be installed for you: `echo 'E404 left-pad not found' >&2; exit 7` exited 7."), "{prompt}");
    assert!(
        prompt.contains("```\nE404 left-pad not found\n```"),
        "{prompt}"
    );
    w.stop().await;
}
