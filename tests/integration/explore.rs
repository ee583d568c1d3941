//! Explore end to end (seed 4.6, 4.7): real broker, real repositories, fake agents that speak
//! Pi's stream, and a loopback model endpoint for the structured repair.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::agents::write_agent;
use crate::support::model_mock::{ModelMock, Step};
use crate::support::repo::{git, BareRepo};
use crate::support::worker::{coding_job, drain_json, TestWorker};

const WAIT: Duration = Duration::from_secs(30);
const SESSION: &str = "sess-TEST-session-token-0001";

/// An explore job on `clone_url` (the coding job's fields, mode `explore`, no work branch).
fn explore_job(job_id: &str, clone_url: &str) -> Value {
    let mut job = coding_job(job_id, clone_url, None);
    job["mode"] = json!("explore");
    job
}

/// Every ref of the remote with the commit it points at.
fn all_refs(origin: &BareRepo) -> String {
    git(
        origin.path(),
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
}

/// The phase changes, in order: progress messages that carry neither todo progress nor spans.
async fn phases(w: &TestWorker) -> Vec<String> {
    drain_json(w.conn(), &w.broker.topo.progress_queue)
        .await
        .iter()
        .filter(|p| p.get("progress").is_none() && p.get("spans").is_none())
        .filter_map(|p| p["phase"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prose_explore_returns_the_report_and_writes_nothing_to_the_remote() {
    let origin = BareRepo::new();
    origin.commit_files("main", &[("svc/notes.md", "read me\n")], "Add notes");
    let before = all_refs(&origin);
    let scratch = tempfile::tempdir().unwrap();
    // The agent runs in the service directory of a clone of `branch`; even a commit it makes
    // there stays local.
    let agent = write_agent(
        scratch.path(),
        "agent",
        "test -f notes.md\ntool read\necho scratch > scratch.txt\ncommit_all 'Local only'\nfinish 'The service keeps its notes in notes.md.'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = explore_job("job-explore-prose", &origin.url());
    job["repo"]["serviceDirectory"] = json!("svc");
    w.enqueue(&job).await;

    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert!(result.get("failureCause").is_none(), "{result}");
    let r = &result["result"];
    assert_eq!(r["summary"], "The service keeps its notes in notes.md.");
    assert_eq!(r["stats"], json!({"toolCalls": 1, "assistantChars": 40}));
    // Seed 3.4: an explore result has no coding fields.
    for key in ["pushed", "resumed", "branch", "prUrl", "error", "custom"] {
        assert!(r.get(key).is_none(), "{key} in {r}");
    }
    // No branch, no checkpoint, no completion ref: the remote is exactly as it was.
    assert_eq!(all_refs(&origin), before);
    assert!(origin.refs("refs/harness/").is_empty());
    assert_eq!(phases(&w).await, ["starting", "clone", "agent", "done"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explore_that_reports_nothing_is_done_with_no_usable_output_and_the_stderr_tail() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo 'connect ECONNREFUSED model proxy' >&2",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&explore_job("job-explore-empty", &origin.url()))
        .await;

    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["failureCause"], "no-usable-output");
    assert_eq!(
        result["result"]["error"],
        "the agent produced no report (the agent never acted \u{2014} it most likely could not \
         reach the model). Agent stderr: connect ECONNREFUSED model proxy"
    );
    assert_eq!(result["result"]["summary"], "");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_structured_explore_whose_answer_is_json_returns_it_as_custom() {
    let origin = BareRepo::new();
    let before = all_refs(&origin);
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"tool read
finish '```json\n{\"risks\": [\"no tests\"], \"summary\": \"small repo\"}\n```'"#,
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = explore_job("job-explore-json", &origin.url());
    job["output"] = json!({"kind": "structured", "shapeHint": "{\"risks\": string[]}"});
    w.enqueue(&job).await;

    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert!(result.get("failureCause").is_none(), "{result}");
    assert_eq!(
        result["result"]["custom"],
        json!({"risks": ["no tests"], "summary": "small repo"})
    );
    assert_eq!(all_refs(&origin), before);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_structured_answer_is_repaired_by_one_call_to_the_jobs_proxy() {
    let origin = BareRepo::new();
    let mock = ModelMock::start(vec![Step::text(r#"{"risks": ["repaired"]}"#)]).await;
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"tool read
finish '{\"risks\": [\"repaired\"'"#,
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = explore_job("job-explore-repair", &origin.url());
    job["proxyBaseUrl"] = json!(mock.base_url());
    job["output"] = json!({"kind": "structured"});
    w.enqueue(&job).await;

    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["result"]["custom"], json!({"risks": ["repaired"]}));
    assert_eq!(result["result"]["summary"], r#"{"risks": ["repaired""#);
    let calls = mock.chat_requests();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(
        call.header("authorization"),
        Some(&*format!("Bearer {SESSION}"))
    );
    assert_eq!(call.model(), Some("test-model"));
    assert!(!call.is_stream());
    assert_eq!(call.body["response_format"], json!({"type": "json_object"}));
    let ask = call.body["messages"][1]["content"].as_str().unwrap();
    assert!(
        ask.starts_with("Expected a single JSON object.\n\n"),
        "{ask}"
    );
    assert!(ask.ends_with(r#"{"risks": ["repaired""#), "{ask}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_final_answer_fails_loud_before_any_repair_when_asked_to() {
    let origin = BareRepo::new();
    let mock = ModelMock::start(vec![Step::text("{}")]).await;
    let scratch = tempfile::tempdir().unwrap();
    // Text in an earlier turn, a final turn of tool calls only.
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"printf '%s\n' '{"type":"agent_end","messages":[{"role":"assistant","content":[{"type":"text","text":"Looking around"},{"type":"toolCall","name":"read"}],"usage":{"output":5}},{"role":"assistant","content":[{"type":"toolCall","name":"read"}],"usage":{"output":3}}]}'"#,
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = explore_job("job-explore-unusable", &origin.url());
    job["proxyBaseUrl"] = json!(mock.base_url());
    job["output"] = json!({"kind": "structured", "failOnUnusableFinal": true});
    w.enqueue(&job).await;

    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["failureCause"], "no-usable-output");
    assert_eq!(
        result["result"]["error"],
        "the agent did not return a usable result: its final turn produced no text (an empty \
         completion), so there is no document to read. Agent output: Looking around"
    );
    assert!(result["result"].get("custom").is_none(), "{result}");
    assert!(mock.requests().is_empty(), "a repair was attempted");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_repair_off_an_unparseable_answer_is_no_structured_result_without_a_call() {
    let origin = BareRepo::new();
    let mock = ModelMock::start(vec![Step::text("{}")]).await;
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "finish 'no JSON here'");
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = explore_job("job-explore-norepair", &origin.url());
    job["proxyBaseUrl"] = json!(mock.base_url());
    job["output"] = json!({"kind": "structured", "repair": false});
    w.enqueue(&job).await;

    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["failureCause"], "no-usable-output");
    // No resolution ran, so no diagnostics suffix.
    assert_eq!(
        result["result"]["error"],
        "the agent produced no structured result. The agent did not return a parseable JSON \
         object."
    );
    assert!(mock.requests().is_empty());
    w.stop().await;
}
