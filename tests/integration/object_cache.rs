//! The object cache (`git.object_cache_max_bytes`): fresh checkouts of a repository an earlier
//! job cloned are copied from the worker's mirror after the job's own fetch into it, over the
//! token-authenticated smart-HTTP server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::git_http::GitHttpServer;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, TestWorker};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "cache-token-value-4242";

/// The mirrors under the worker's work directory.
fn mirrors(work: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(work.join("objects")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "git"))
        .collect()
}

fn job(id: &str, url: &str, token: &str) -> serde_json::Value {
    let mut job = coding_job(id, url, Some(&format!("work/{id}")));
    job["ghToken"] = json!(token);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_checkouts_come_through_the_mirror_each_after_its_own_authenticated_fetch() {
    let root = tempfile::tempdir().unwrap();
    let origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), TOKEN);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // Each run notes which files its checkout started with.
    let agent = write_agent(
        s,
        "agent",
        &format!(
            r#"ls > {s}/seen-$(git rev-parse --abbrev-ref HEAD | tr / -).txt
echo x > "$(date +%s%N).txt"
commit_all 'Work'
finish 'done'"#,
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| {
        c.job.allowed_hosts = vec!["127.0.0.1".into()];
        c.git.object_cache_max_bytes = 1 << 30;
    })
    .await;
    let url = server.url("repo");

    w.enqueue(&job("cache-1", &url, TOKEN)).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    let made = mirrors(w.dir.path());
    assert_eq!(made.len(), 1, "one mirror for the repository: {made:?}");
    let config = std::fs::read_to_string(made[0].join("config")).unwrap();
    assert!(!config.contains(TOKEN), "no token in the mirror: {config}");

    // A commit the first job never saw: the second gets it through the mirror.
    origin.commit_files("main", &[("later.txt", "later\n")], "Later");
    w.enqueue(&job("cache-2", &url, TOKEN)).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    let seen = std::fs::read_to_string(s.join("seen-work-cache-2.txt")).unwrap();
    assert!(seen.contains("later.txt"), "{seen}");
    assert_eq!(mirrors(w.dir.path()), made, "the same mirror, refreshed");
    let clones = |outcome: &str| {
        w.metrics
            .object_cache_clones
            .with_label_values(&[outcome])
            .get()
    };
    assert_eq!((clones("cached"), clones("direct")), (2, 0));
    assert!(w.metrics.object_cache_bytes.get() > 0, "swept and measured");
    let requests_before = server.bad_attempts();

    // A token the remote refuses fails as without the cache, with the mirror full (the probe
    // stops it here; the unit tests show the mirror's own fetch refusing it too).
    let wrong = "wrong-token-value-0000";
    w.enqueue(&job("cache-3", &url, wrong)).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git", "{r}");
    assert!(!r.to_string().contains(wrong), "{r}");
    assert!(
        !s.join("seen-work-cache-3.txt").exists(),
        "the agent never ran"
    );
    assert!(
        server.bad_attempts() > requests_before,
        "the remote was asked"
    );
    w.stop().await;
}
