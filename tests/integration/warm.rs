//! Warm checkouts (`persistentCheckout`): one checkout per repository, reused by its jobs one
//! after the other, in one worker and across worker processes sharing the disk, swept back to a
//! clone's state but for the dependency caches.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::broker::TestBroker;
use crate::support::process::WorkerProcess;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, next_json, test_config, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

/// Each run records where it ran and what the last one left, leaves a cache and some junk
/// behind, and commits one file of its own.
fn recording_agent(s: &Path) -> String {
    format!(
        r#"N=$(date +%s%N)
echo "start $N $(pwd)" >> {s}/log
if [ -f node_modules/kept.txt ]; then echo "cache seen" >> {s}/log; fi
if [ -e scratch.txt ] || [ -e build.log ]; then echo "junk seen" >> {s}/log; fi
mkdir -p node_modules && echo cache > node_modules/kept.txt
echo junk > scratch.txt
echo "work $N" > "work-$N.txt"
commit_all "Work $N"
# Left for the next job: a hook and a hooks path, which the sweep must not let run.
mkdir -p .git/hooks
printf '#!/bin/sh\ntouch {s}/hook-ran\n' > .git/hooks/pre-commit
chmod +x .git/hooks/pre-commit
git config core.hooksPath {s}/hooks
sleep 1
echo "end $(date +%s%N)" >> {s}/log
finish 'done'"#,
        s = s.display()
    )
}

/// The hooks directory a first agent points `core.hooksPath` at.
fn hooks(s: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(s.join("hooks")).unwrap();
    let hook = s.join("hooks/pre-commit");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ntouch {}/hook-ran\n", s.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn log(s: &Path) -> Vec<String> {
    std::fs::read_to_string(s.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A repository that ignores its dependency cache, as real ones do.
fn repo() -> BareRepo {
    let origin = BareRepo::new();
    origin.commit_files(
        "main",
        &[(".gitignore", "node_modules/\n")],
        "Ignore the cache",
    );
    origin
}

fn persistent_job(id: &str, origin: &BareRepo) -> serde_json::Value {
    let mut job = coding_job(id, &origin.url(), Some(&format!("work/{id}")));
    job["persistentCheckout"] = json!(true);
    job
}

/// The runs' `(start, end)` in order of their start, and the directories they ran in.
fn runs(lines: &[String]) -> (Vec<(u128, u128)>, Vec<String>) {
    let mut spans = Vec::new();
    let mut dirs = Vec::new();
    let mut open = None;
    for line in lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["start", t, dir] => {
                open = Some(t.parse::<u128>().unwrap());
                dirs.push(dir.to_string());
            }
            ["end", t] => spans.push((open.take().unwrap(), t.parse::<u128>().unwrap())),
            _ => {}
        }
    }
    (spans, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_persistent_jobs_reuse_one_checkout_in_turn_keeping_only_the_dependency_cache() {
    let origin = repo();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(s, "agent", &recording_agent(s));
    hooks(s);
    // Two at once would be allowed: the checkout's lock is what keeps them apart.
    let w = TestWorker::start(&agent, |c| c.worker.concurrency = 2).await;
    w.enqueue(&persistent_job("warm-1", &origin)).await;
    w.enqueue(&persistent_job("warm-2", &origin)).await;
    for _ in 0..2 {
        let r = w.next_result(WAIT).await;
        assert_eq!(r["state"], "done", "{r}");
        assert_eq!(r["result"]["pushed"], true, "{r}");
    }
    let lines = log(s);
    let (spans, dirs) = runs(&lines);
    assert_eq!(spans.len(), 2, "{lines:?}");
    assert!(spans[0].1 <= spans[1].0, "the runs overlapped: {lines:?}");
    assert_eq!(dirs[0], dirs[1], "one checkout for both");
    assert!(lines.contains(&"cache seen".to_owned()), "{lines:?}");
    assert!(!lines.contains(&"junk seen".to_owned()), "{lines:?}");
    assert!(
        !s.join("hook-ran").exists(),
        "a hook the first agent left ran"
    );
    // The second job's work starts from the base, not from the first job's branch.
    let files =
        crate::support::repo::git(origin.path(), &["ls-tree", "--name-only", "work/warm-2"]);
    assert_eq!(files.lines().filter(|f| f.starts_with("work-")).count(), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_sharing_a_disk_take_the_warm_checkout_in_turn() {
    let origin = repo();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(s, "agent", &recording_agent(s));
    hooks(s);
    let broker = TestBroker::new(|_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let mut config = test_config(&broker, &agent, work.path());
    config.worker.concurrency = 1;
    let mut w1 = WorkerProcess::spawn(&config, s, "w1");
    let mut w2 = WorkerProcess::spawn(&config, s, "w2");
    w1.wait_ready(WAIT).await;
    w2.wait_ready(WAIT).await;
    for id in ["proc-1", "proc-2"] {
        executor_harness::broker::enqueue_job(
            &broker.conn,
            &broker.topo.jobs_queue,
            persistent_job(id, &origin).to_string().as_bytes(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
    for _ in 0..2 {
        let r = next_json(&broker.conn, &broker.topo.results_queue, WAIT)
            .await
            .expect("a result");
        assert_eq!(r["state"], "done", "{r}");
    }
    eventually("both runs logged", WAIT, || runs(&log(s)).0.len() == 2).await;
    let lines = log(s);
    let (spans, dirs) = runs(&lines);
    assert!(spans[0].1 <= spans[1].0, "the runs overlapped: {lines:?}");
    assert_eq!(dirs[0], dirs[1]);
    assert!(lines.contains(&"cache seen".to_owned()), "{lines:?}");
    assert!(!lines.contains(&"junk seen".to_owned()), "{lines:?}");
    assert!(
        !s.join("hook-ran").exists(),
        "a hook the first agent left ran"
    );
    w1.stop(WAIT).await;
    w2.stop(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explore_job_with_a_persistent_checkout_reads_in_the_warm_checkout_and_writes_nothing() {
    let origin = repo();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "pwd > {s}/explore-pwd\ntest -f README.md\nfinish 'The repository greets.'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let refs_before = origin.refs("refs/");
    let mut job = coding_job("warm-explore", &origin.url(), None);
    job["mode"] = json!("explore");
    job["persistentCheckout"] = json!(true);
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["summary"], "The repository greets.");
    let pwd = std::fs::read_to_string(s.join("explore-pwd")).unwrap();
    assert!(pwd.contains("/warm/acme-widgets-"), "{pwd}");
    assert_eq!(
        origin.refs("refs/"),
        refs_before,
        "explore wrote to the remote"
    );
    w.stop().await;
}
