//! What a job spent and did, checked against the model's own count (seed-later 8): the real
//! `pi`, run by the worker against the loopback model mock, which reports every class of
//! token (fresh input, cache reads, cache writes, output) for each call it answers.
//!
//! Runs only when `PI_BIN` names a pi executable (see `real_pi`).

use serde_json::{json, Value};

use crate::real_pi::{mock_job, pi_bin, pi_worker, WORKER_WAIT};
use crate::support::model_mock::{Api, ModelMock, Served, Step};
use crate::support::repo::BareRepo;
use crate::support::worker::drain_json;

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The usage record `usage` equals the sum of what the model served.
pub(crate) fn assert_totals(usage: &Value, served: &[Served]) {
    let sum = Served::sum(served);
    assert_eq!(n(usage, "inputTokens"), sum.prompt(), "{usage} vs {sum:?}");
    assert_eq!(n(usage, "cacheReadTokens"), sum.cache_read, "{usage}");
    assert_eq!(n(usage, "cacheWriteTokens"), sum.cache_write, "{usage}");
    assert_eq!(n(usage, "outputTokens"), sum.output, "{usage}");
    // Every API the mock serves reports cache reads; the Responses API has no cache writes.
    assert!(sum.cache_read > 0, "the mock served cache reads");
}

/// The calls that spent tokens, one per answered request, class by class and in order.
pub(crate) fn assert_calls(calls: &[Value], served: &[Served]) {
    let spent: Vec<(u64, u64, u64, u64)> = calls
        .iter()
        .filter(|c| c["finishReason"] != "error")
        .map(|c| {
            (
                n(c, "inputTokens"),
                n(c, "cacheReadTokens"),
                n(c, "cacheWriteTokens"),
                n(c, "outputTokens"),
            )
        })
        .collect();
    let expected: Vec<(u64, u64, u64, u64)> = served
        .iter()
        .map(|s| (s.fresh, s.cache_read, s.cache_write, s.output))
        .collect();
    assert_eq!(spent, expected, "{calls:?}");
    let seqs: Vec<u64> = calls.iter().map(|c| n(c, "seq")).collect();
    assert_eq!(seqs, (0..calls.len() as u64).collect::<Vec<_>>());
    assert!(calls.iter().all(|c| c["phase"] == "agent"), "{calls:?}");
}

/// Every call of the job went out on `job.progress` exactly once, as the result lists it.
fn assert_published_once(progress: &[Value], job_id: &str, calls: &[Value]) {
    let mut published: Vec<Value> = progress
        .iter()
        .filter(|p| p["jobId"] == job_id)
        .filter_map(|p| p["callMetrics"].as_array())
        .flatten()
        .cloned()
        .collect();
    published.sort_by_key(|c| n(c, "seq"));
    assert_eq!(published, calls, "progress and result disagree");
}

#[cfg_attr(not(has_pi), ignore = "needs PI_BIN: scripts/install-pi.sh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_usage_and_calls_match_the_models_own_count_whether_it_succeeds_or_fails() {
    let Some(pi) = pi_bin() else {
        eprintln!("spending: skipped (set PI_BIN to a pi executable, see scripts/install-pi.sh)");
        return;
    };
    let write = Step::tool_call(
        "write",
        json!({"path": "hello.txt", "content": "hello from the mock model\n"}),
    );
    let commit = Step::tool_call(
        "bash",
        json!({"command": "git add -A && git commit -q -m 'Add hello'"}),
    );
    let done_mock = ModelMock::start(vec![write.clone(), commit, Step::text("Committed.")]).await;
    // Two calls answered, then the endpoint refuses: the run fails after spending tokens.
    let failing_mock = ModelMock::start(vec![
        write,
        Step::tool_call("bash", json!({"command": "ls"})),
        Step::fail(401, "mock: token revoked"),
    ])
    .await;
    let w = pi_worker(&pi).await;
    let (done_origin, failed_origin) = (BareRepo::new(), BareRepo::new());
    w.enqueue(&mock_job(
        "job-spend-ok",
        &done_origin,
        &done_mock,
        "work/spend-ok",
    ))
    .await;
    let done = w.next_result(WORKER_WAIT).await;
    w.enqueue(&mock_job(
        "job-spend-fail",
        &failed_origin,
        &failing_mock,
        "work/spend-fail",
    ))
    .await;
    let failed = w.next_result(WORKER_WAIT).await;
    let progress = drain_json(w.conn(), &w.broker.topo.progress_queue).await;

    // The run that succeeded: totals and calls in its result.
    assert_eq!(done["state"], "done", "{done}");
    let served = done_mock.served(Api::ChatCompletions);
    assert_eq!(served.len(), 3);
    assert!(Served::sum(&served).cache_write > 0);
    assert_totals(&done["result"]["usage"], &served);
    let calls = done["result"]["callMetrics"].as_array().unwrap();
    assert_calls(calls, &served);
    assert_published_once(&progress, "job-spend-ok", calls);
    assert_eq!(calls[2]["responseText"], "Committed.");

    // The run that failed: no `result`, but its spending at the top level.
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["failureCause"], "llm-upstream", "{failed}");
    let served = failing_mock.served(Api::ChatCompletions);
    assert_eq!(served.len(), 2, "the refused call served nothing");
    assert_totals(&failed["usage"], &served);
    let calls = failed["callMetrics"].as_array().unwrap();
    assert_calls(calls, &served);
    assert_published_once(&progress, "job-spend-fail", calls);

    // The tool spans carry what each call was asked and answered, numbered job-wide.
    let spans: Vec<&Value> = progress
        .iter()
        .filter(|p| p["jobId"] == "job-spend-ok")
        .filter_map(|p| p["spans"].as_array())
        .flatten()
        .collect();
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(spans[0]["tool"], "write");
    assert!(
        spans[0]["args"].as_str().unwrap().contains("hello.txt"),
        "{spans:?}"
    );
    assert!(
        spans[0]["result"].as_str().unwrap().contains("hello.txt"),
        "{spans:?}"
    );
    assert!(
        spans[1]["args"].as_str().unwrap().contains("git commit"),
        "{spans:?}"
    );
    assert_eq!((n(spans[0], "seq"), n(spans[1], "seq")), (0, 1));

    // The metric counts the failed run's tokens too.
    let input = Served::sum(&done_mock.served(Api::ChatCompletions)).prompt()
        + Served::sum(&failing_mock.served(Api::ChatCompletions)).prompt();
    assert_eq!(
        w.metrics.agent_tokens.with_label_values(&["input"]).get(),
        input
    );
    w.stop().await;
}
