//! The worker's git work after the job's processes ran goes only where the checkout is: an
//! agent that points `.git` elsewhere (a symlink inside it, `core.worktree`) gets the job
//! failed, or its pointer dropped, before the worker, root in production, follows it.

use std::time::Duration;

use crate::support::agents::write_agent;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, TestWorker};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_the_agent_plants_in_git_fails_the_job_before_the_worker_writes_through_it() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // Another repository's refs, standing for another job's checkout.
    let victim = s.join("victim-refs");
    std::fs::create_dir(&victim).unwrap();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo x > x.txt\ncommit_all 'Work'\n\
             echo y >> x.txt\n\
             rm -rf .git/refs/heads/work && ln -s {victim} .git/refs/heads/work\n\
             finish 'done'",
            victim = victim.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&coding_job(
        "reclaim-link",
        &origin.url(),
        Some("work/link"),
    ))
    .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains(".git/refs/heads/work"), "{error}");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "the safety-net commit wrote through the link"
    );
    assert_eq!(origin.tip("work/link"), None, "nothing pushed");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_tree_the_agent_points_elsewhere_is_not_what_the_worker_commits() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // Files of another checkout, with the names the job's tracks.
    let victim = s.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("README.md"), "another job's secret\n").unwrap();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "echo mine >> README.md\ngit config core.worktree {victim}\nfinish 'done'",
            victim = victim.display()
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&coding_job("reclaim-wt", &origin.url(), Some("work/wt")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    let readme = origin.file_at("work/wt", "README.md").unwrap();
    assert!(!readme.contains("secret"), "{readme}");
    assert!(readme.contains("mine"), "the agent's own edit: {readme}");
    w.stop().await;
}
