//! The worker end to end: real broker, real repositories, fake agents that speak Pi's stream.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::broker::rabbitmqctl;
use crate::support::git_http::GitHttpServer;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, drain_json, eventually, next_json, next_raw, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

/// `(ready, unacked)` of a queue, as the broker counts them.
pub(crate) fn queue_counts(queue: &str) -> (u64, u64) {
    let out = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ]);
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() == 3 && cols[0] == queue {
            return (cols[1].parse().unwrap(), cols[2].parse().unwrap());
        }
    }
    panic!("queue {queue} not listed");
}

fn touch(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coding_job_pushes_the_agent_commit_and_is_acked_only_after_its_result() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let (started, go) = (scratch.path().join("started"), scratch.path().join("go"));
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!(
            "echo hello > hello.txt\ntool write\ncommit_all 'Add hello'\ntool bash\ntouch {}\nwait_for {}\nfinish 'Added hello.txt'",
            started.display(),
            go.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&coding_job("job-happy", &origin.url(), Some("work/happy")))
        .await;
    let jobs = &w.broker.topo.jobs_queue;

    eventually("the agent to start", WAIT, || started.exists()).await;
    // While the agent runs the job is held unacked: a crash now would give it back. (The
    // broker refreshes these counts every few seconds, hence the wait.)
    eventually("the job held unacked", WAIT, || {
        queue_counts(jobs) == (0, 1)
    })
    .await;
    assert!(
        next_json(w.conn(), &w.broker.topo.results_queue, Duration::ZERO)
            .await
            .is_none()
    );
    touch(&go);

    let result = w.next_result(WAIT).await;
    assert_eq!(result["jobId"], "job-happy");
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["attempt"], 1);
    let r = &result["result"];
    assert_eq!(r["pushed"], true);
    assert_eq!(r["resumed"], false);
    assert_eq!(r["branch"], "work/happy");
    assert_eq!(r["summary"], "Added hello.txt");
    assert!(result.get("error").is_none());
    for key in ["startedAt", "finishedAt", "phaseTimingsMs"] {
        assert!(result.get(key).is_some(), "{key} missing");
    }
    assert_eq!(
        origin.file_at("work/happy", "hello.txt").as_deref(),
        Some("hello\n")
    );
    assert_eq!(origin.subjects("work/happy")[0], "Add hello");
    // Acked once the result was confirmed: nothing ready, nothing held.
    eventually("the ack", WAIT, || queue_counts(jobs) == (0, 0)).await;

    // Phase changes are the progress messages that carry neither todo progress nor spans.
    let phases: Vec<String> = drain_json(w.conn(), &w.broker.topo.progress_queue)
        .await
        .iter()
        .filter(|p| p.get("progress").is_none() && p.get("spans").is_none())
        .map(|p| p["phase"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(phases, ["starting", "clone", "agent", "push", "done"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_remote_work_branch_is_resumed_with_the_base_merged_in() {
    let origin = BareRepo::new();
    origin.commit_files(
        "work/resume",
        &[("earlier.txt", "from attempt 1\n")],
        "Earlier work",
    );
    origin.commit_files("main", &[("base.txt", "moved on\n")], "Base moved");
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "test -f earlier.txt\necho more > more.txt\ncommit_all 'More work'\nfinish 'resumed'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&coding_job(
        "job-resume",
        &origin.url(),
        Some("work/resume"),
    ))
    .await;
    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["result"]["resumed"], true);
    assert_eq!(result["result"]["pushed"], true);
    let subjects = origin.subjects("work/resume");
    assert_eq!(subjects[0], "More work");
    assert!(
        subjects.contains(&"Earlier work".to_owned()),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.starts_with("Merge")),
        "{subjects:?}"
    );
    assert!(origin.file_at("work/resume", "base.txt").is_some());
    assert!(origin.file_at("work/resume", "earlier.txt").is_some());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_run_leaves_no_branch_and_reports_no_changes() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "tool read\nfinish 'nothing to do'");
    let w = TestWorker::start(&agent, |_| {}).await;

    w.enqueue(&coding_job("job-noop", &origin.url(), Some("work/noop")))
        .await;
    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["failureCause"], "no-changes");
    assert_eq!(
        result["result"]["error"],
        "the agent produced no file changes."
    );
    assert_eq!(result["result"]["pushed"], false);
    assert_eq!(result["result"]["branch"], "work/noop");
    assert_eq!(origin.tip("work/noop"), None);

    let mut clean = coding_job("job-noop-ok", &origin.url(), Some("work/noop-ok"));
    clean["noChangesIsError"] = json!(false);
    w.enqueue(&clean).await;
    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    assert!(result.get("failureCause").is_none(), "{result}");
    assert!(result["result"].get("error").is_none(), "{result}");
    assert_eq!(result["result"]["pushed"], false);
    assert_eq!(origin.tip("work/noop-ok"), None);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_only_probes_is_stopped_by_the_progress_guard() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    // Six shell calls and no edit, then a wait that only the guard can cut short.
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!(
            "for i in 1 2 3 4 5 6; do tool bash; done\nwait_for {}\nfinish 'never'",
            scratch.path().join("never").display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.guard.max_tool_calls_without_edit = 5).await;
    w.enqueue(&coding_job("job-guard", &origin.url(), Some("work/guard")))
        .await;
    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "failed", "{result}");
    assert_eq!(result["failureCause"], "agent", "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(
        error.starts_with("no progress: 5 tool calls and not one file edit"),
        "{error}"
    );
    assert_eq!(origin.tip("work/guard"), None);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_push_commits_while_the_agent_runs_and_nothing_before_the_first() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "touch {s}/started\nwait_for {s}/go1\necho one > one.txt\ncommit_all 'First'\nwait_for {s}/go2\nfinish 'done'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.job.checkpoint_interval_ms = 50).await;
    w.enqueue(&coding_job("job-cp", &origin.url(), Some("work/cp")))
        .await;

    eventually("the agent to start", WAIT, || s.join("started").exists()).await;
    // Many checkpoint ticks pass before the first commit: none may create the branch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(origin.tip("work/cp"), None);
    touch(&s.join("go1"));

    eventually("the checkpoint push", WAIT, || {
        origin.tip("work/cp").is_some()
    })
    .await;
    assert_eq!(origin.subjects("work/cp")[0], "First");
    // The agent is still waiting: the push was a checkpoint, not the final push.
    assert!(!s.join("go2").exists());
    assert!(
        next_json(w.conn(), &w.broker.topo.results_queue, Duration::ZERO)
            .await
            .is_none()
    );
    touch(&s.join("go2"));
    let result = w.next_result(WAIT).await;
    assert_eq!(result["result"]["pushed"], true, "{result}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_edit_the_agent_left_uncommitted_lands_in_the_safety_net_commit() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo 'edited by the agent' >> README.md\necho scratch > scratch.txt\ntool edit\nfinish 'edited'",
    );
    let w = TestWorker::start(&agent, |c| c.job.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let mut job = coding_job("job-safety", &origin.url(), Some("work/safety"));
    job["pr"] = json!({"title": "PR title"});
    job["commitMessage"] = json!("Polish the README");
    job["githubApiBase"] = json!("http://127.0.0.1:9");
    // The PR open fails (nothing listens there); the push before it is what this test reads.
    w.enqueue(&job).await;
    let result = w.next_result(WAIT).await;
    assert_eq!(result["failureCause"], "api", "{result}");
    let readme = origin.file_at("work/safety", "README.md").unwrap();
    assert!(readme.contains("edited by the agent"), "{readme}");
    assert_eq!(origin.subjects("work/safety")[0], "Polish the README");
    // Untracked files are never staged by the worker.
    assert_eq!(origin.file_at("work/safety", "scratch.txt"), None);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_reach_their_queue_in_order_while_the_agent_runs_and_before_the_result() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            r#"F=.cat-follow-ups.jsonl
printf '%s\n' '{{"title":"First item","detail":"d1"}}' 'not json' '{{"kind":"question","title":"Second item"}}' >> $F
printf '%s' '{{"title":"Third' >> $F
touch {s}/wrote
wait_for {s}/go
printf '%s\n' ' item"}}' >> $F
echo x > x.txt
commit_all 'Work'
finish 'done'"#,
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.job.followup_poll_interval_ms = 60_000).await;
    let mut job = coding_job("job-fu", &origin.url(), Some("work/fu"));
    job["streamFollowUps"] = json!(true);
    w.enqueue(&job).await;
    let q = &w.broker.topo.followups_queue;

    eventually("the agent's lines", WAIT, || s.join("wrote").exists()).await;
    // Delivered by file notifications while the agent waits (the poll is a minute away).
    let first = next_json(w.conn(), q, Duration::from_secs(10))
        .await
        .unwrap();
    let second = next_json(w.conn(), q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (&first["title"], &first["seq"], &first["kind"]),
        (&json!("First item"), &json!(1), &json!("follow_up"))
    );
    assert_eq!(
        (&second["title"], &second["seq"], &second["kind"]),
        (&json!("Second item"), &json!(2), &json!("question"))
    );
    assert_eq!(first["jobId"], "job-fu");
    // The partial third line waits for its newline.
    assert!(next_json(w.conn(), q, Duration::from_millis(300))
        .await
        .is_none());
    touch(&s.join("go"));

    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    // Published (and confirmed) before the result was.
    let third = next_json(w.conn(), q, Duration::ZERO).await.unwrap();
    assert_eq!(
        (&third["title"], &third["seq"]),
        (&json!("Third item"), &json!(3))
    );
    assert_eq!(origin.file_at("work/fu", ".cat-follow-ups.jsonl"), None);
    assert!(origin.file_at("work/fu", "x.txt").is_some());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_are_dead_lettered_with_an_invalid_job_result_and_the_next_job_runs() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "finish 'ok'");
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue_raw(b"{\"jobId\": \"job-x\", this is not json")
        .await;
    let mut schema = coding_job("job-bad", &origin.url(), Some("work/bad"));
    schema.as_object_mut().unwrap().remove("userPrompt");
    w.enqueue(&schema).await;
    let mut good = coding_job("job-good", &origin.url(), Some("work/good"));
    good["noChangesIsError"] = json!(false);
    w.enqueue(&good).await;

    let invalid = w.next_result(WAIT).await;
    assert_eq!(invalid["jobId"], "job-bad");
    assert_eq!(invalid["state"], "failed");
    assert_eq!(invalid["failureCause"], "invalid-job");
    assert_eq!(
        invalid["error"],
        "Invalid job: 'userPrompt' must be a non-empty string"
    );
    for key in ["attempt", "startedAt", "finishedAt", "phaseTimingsMs"] {
        assert!(invalid.get(key).is_some(), "{key} missing");
    }
    let next = w.next_result(WAIT).await;
    assert_eq!(next["jobId"], "job-good");
    assert_eq!(next["state"], "done");

    let dead = &w.broker.topo.dead_queue;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let body = next_raw(w.conn(), dead, WAIT)
            .await
            .expect("a dead-lettered message");
        bodies.push(String::from_utf8(body).unwrap());
    }
    assert!(bodies.contains(&"{\"jobId\": \"job-x\", this is not json".to_owned()));
    assert!(bodies.iter().any(|b| b.contains("job-bad")));
    // The not-JSON body had no readable jobId: no result for it.
    assert!(next_json(
        w.conn(),
        &w.broker.topo.results_queue,
        Duration::from_millis(300)
    )
    .await
    .is_none());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_host_or_an_escaping_service_directory_is_refused_before_any_network_call() {
    let root = tempfile::tempdir().unwrap();
    let _origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), "ghs_TESTgittoken000000000000000000001");
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "finish 'ok'");
    let w = TestWorker::start(&agent, |_| {}).await;

    w.enqueue(&coding_job("job-host", &server.url("repo"), Some("w/1")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["failureCause"], "invalid-job");
    assert_eq!(
        r["error"],
        "Invalid job: 'repo.cloneUrl' host '127.0.0.1' is not an allowed GitHub host"
    );

    let mut escape = coding_job(
        "job-dir",
        "https://github.com/acme/widgets.git",
        Some("w/2"),
    );
    escape["repo"]["serviceDirectory"] = json!("../outside");
    w.enqueue(&escape).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(
        r["error"],
        "Invalid job: 'repo.serviceDirectory' must be a path inside the repo"
    );
    assert!(server.attempts().is_empty());
    assert_eq!(server.anonymous_requests(), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_of_a_running_job_starts_no_second_run() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo run >> {s}/runs\nwait_for {s}/go\necho x > x.txt\ncommit_all 'Work'\nfinish 'done'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let job = coding_job("job-dup", &origin.url(), Some("work/dup"));
    w.enqueue(&job).await;
    w.enqueue(&job).await;
    let jobs = w.broker.topo.jobs_queue.clone();
    eventually("the first run", WAIT, || s.join("runs").exists()).await;
    // Both deliveries are with this worker (prefetch 2), only one runs.
    eventually("both deliveries held", WAIT, || {
        queue_counts(&jobs) == (0, 2)
    })
    .await;
    assert_eq!(std::fs::read_to_string(s.join("runs")).unwrap(), "run\n");
    touch(&s.join("go"));
    let result = w.next_result(WAIT).await;
    assert_eq!(result["state"], "done", "{result}");
    eventually("both acked", WAIT, || queue_counts(&jobs) == (0, 0)).await;
    assert_eq!(std::fs::read_to_string(s.join("runs")).unwrap(), "run\n");
    assert!(next_json(
        w.conn(),
        &w.broker.topo.results_queue,
        Duration::from_millis(300)
    )
    .await
    .is_none());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_routed_leaves_the_job_unacked_until_it_can_be_published() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!("echo run >> {s}/runs\nfinish 'ok'", s = s.display()),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let topo = w.broker.topo.clone();
    let channel = w.conn().create_channel().await.unwrap();
    channel
        .queue_unbind(
            topo.results_queue.as_str().into(),
            topo.events_exchange.as_str().into(),
            "job.result".into(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut job = coding_job("job-unroutable", &origin.url(), Some("work/u"));
    job["noChangesIsError"] = json!(false);
    w.enqueue(&job).await;

    // The first attempt cannot publish its result, so the job is requeued; every redelivery
    // finds the job's completion record and tries to re-publish that same result.
    eventually("a second failed publish", WAIT, || {
        w.metrics
            .publish_failures
            .with_label_values(&["unroutable"])
            .get()
            >= 2
    })
    .await;
    channel
        .queue_bind(
            topo.results_queue.as_str().into(),
            topo.events_exchange.as_str().into(),
            "job.result".into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let result = w.next_result(WAIT).await;
    assert_eq!(result["jobId"], "job-unroutable");
    assert_eq!(result["state"], "done", "{result}");
    // Nothing was lost and nothing ran twice.
    assert_eq!(std::fs::read_to_string(s.join("runs")).unwrap(), "run\n");
    let jobs = topo.jobs_queue.clone();
    eventually("the ack", WAIT, || queue_counts(&jobs) == (0, 0)).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_run_at_once_each_with_its_own_home_and_workspace() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // Each run waits until both have started: only concurrent runs can finish.
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo \"$HOME|$PWD\" > {s}/seen-$PROMPT\ntouch {s}/started-$PROMPT\nwait_for {s}/started-one\nwait_for {s}/started-two\nfinish 'ok'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.worker.concurrency = 2).await;
    for (id, prompt) in [("job-c1", "one"), ("job-c2", "two")] {
        let mut job = coding_job(id, &origin.url(), Some(&format!("work/{id}")));
        job["userPrompt"] = json!(prompt);
        job["noChangesIsError"] = json!(false);
        w.enqueue(&job).await;
    }
    let a = w.next_result(WAIT).await;
    let b = w.next_result(WAIT).await;
    assert_eq!(
        (a["state"].as_str(), b["state"].as_str()),
        (Some("done"), Some("done"))
    );
    let one = std::fs::read_to_string(s.join("seen-one")).unwrap();
    let two = std::fs::read_to_string(s.join("seen-two")).unwrap();
    let (home1, cwd1) = one.trim().split_once('|').unwrap();
    let (home2, cwd2) = two.trim().split_once('|').unwrap();
    assert_ne!(home1, home2);
    assert_ne!(cwd1, cwd2);
    for home in [home1, home2] {
        assert!(home.starts_with(w.dir.path().to_str().unwrap()), "{home}");
    }
    // Workspaces are removed when their job ends.
    assert!(!Path::new(home1).exists() && !Path::new(cwd1).exists());
    w.stop().await;
}

/// Closes the broker connection named `name` (as an operator or a broker failover would).
fn close_connection(name: &str) {
    let out = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ]);
    let pid = out
        .lines()
        .find(|l| l.contains(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {name}: {out}"))
        .to_owned();
    rabbitmqctl(&["close_connection", &pid, "closed by a test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_interrupts_the_running_job_and_the_worker_reconnects_and_resumes_it() {
    use std::sync::atomic::Ordering;
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // First attempt: commit, then wait (to be interrupted). Second attempt: resume and finish.
    let agent = write_agent(
        s,
        "agent",
        &format!(
            r#"echo run >> {s}/runs
if [ "$(wc -l < {s}/runs)" -eq 1 ]; then
  echo one > one.txt; commit_all 'Before the outage'; touch {s}/committed
  sleep 1000
fi
test -f one.txt
echo two > two.txt; commit_all 'After the outage'
finish 'done'"#,
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&coding_job(
        "job-outage",
        &origin.url(),
        Some("work/outage"),
    ))
    .await;
    eventually("the first commit", WAIT, || s.join("committed").exists()).await;
    close_connection(&w.config.amqp.connection_name);

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["attempt"], 2);
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(
        origin.subjects("work/outage")[..2],
        ["After the outage", "Before the outage"]
    );
    assert_eq!(w.metrics.amqp_reconnects.get(), 1);
    assert!(w.metrics.ready.load(Ordering::Relaxed));
    // One result only: the interrupted attempt published none.
    assert!(next_json(
        w.conn(),
        &w.broker.topo.results_queue,
        Duration::from_millis(300)
    )
    .await
    .is_none());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_that_arrives_while_the_interrupted_run_winds_down_runs_as_the_next_attempt() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // The first run ignores SIGTERM, so its wind-down lasts the kill grace (2 s): long enough
    // for the worker to reconnect and receive the redelivery meanwhile.
    let agent = write_agent(
        s,
        "agent",
        &format!(
            r#"echo run >> {s}/runs
if [ "$(wc -l < {s}/runs)" -eq 1 ]; then
  trap '' TERM
  echo one > one.txt; commit_all 'Before the outage'; touch {s}/committed
  sleep 1000
fi
echo two > two.txt; commit_all 'After the outage'
finish 'done'"#,
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| c.agent.kill_grace_ms = 2_000).await;
    w.enqueue(&coding_job(
        "job-handover",
        &origin.url(),
        Some("work/handover"),
    ))
    .await;
    eventually("the first commit", WAIT, || s.join("committed").exists()).await;
    close_connection(&w.config.amqp.connection_name);

    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    // The held redelivery ran once its predecessor ended; it was not requeued again.
    assert_eq!(r["attempt"], 2, "{r}");
    assert_eq!(
        std::fs::read_to_string(s.join("runs")).unwrap(),
        "run\nrun\n"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_delivered_again_re_publishes_its_result_without_running_the_agent() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo run >> {s}/runs\necho x > x.txt\ncommit_all 'Work'\nfinish 'done once'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let job = coding_job("job-once", &origin.url(), Some("work/once"));
    w.enqueue(&job).await;
    let first = w.next_result(WAIT).await;
    assert_eq!(first["state"], "done", "{first}");
    assert!(crate::support::repo::git(origin.path(), &["show-ref"])
        .contains("refs/harness/done/job-once"));

    // A duplicate enqueue (or a crash between the result and the ack) delivers it again.
    w.enqueue(&job).await;
    let again = w.next_result(WAIT).await;
    assert_eq!(again, first, "the recorded result, byte for byte");
    assert_eq!(std::fs::read_to_string(s.join("runs")).unwrap(), "run\n");
    assert_eq!(origin.subjects("work/once")[0], "Work");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_moved_by_someone_else_fails_the_job_as_git_without_clobbering_their_work() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo one > one.txt\ncommit_all 'Ours'\ntouch {s}/committed\nwait_for {s}/go\necho two > two.txt\ncommit_all 'Ours again'\nfinish 'done'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| {
        c.job.checkpoint_interval_ms = 50;
        // No other run of this job will record a result: the rejection stands.
        c.git.race_wait_ms = 300;
    })
    .await;
    w.enqueue(&coding_job("job-nff", &origin.url(), Some("work/nff")))
        .await;
    eventually("our checkpoint", WAIT, || origin.tip("work/nff").is_some()).await;
    // Another writer moves the branch: every later push of ours is a non-fast-forward.
    let theirs = origin.commit_files("work/nff", &[("theirs.txt", "x\n")], "Theirs");
    eventually("the agent's commit", WAIT, || s.join("committed").exists()).await;
    std::fs::write(s.join("go"), b"").unwrap();
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git");
    assert!(r["error"].as_str().unwrap().contains("work/nff"), "{r}");
    assert_eq!(origin.tip("work/nff").as_deref(), Some(theirs.as_str()));
    w.stop().await;
}
