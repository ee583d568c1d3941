//! How stale completion refs slow every job on a shared remote, and what pruning them buys.
//!
//! Two bare repositories start with the same number of completion refs, each on a commit of
//! its own dated 30 days ago (what weeks of jobs leave behind). The same coding job (a scripted
//! agent that commits one file) runs on each, interleaved: one worker context with pruning off
//! (`git.completion_ref_max_age_ms = 0`), one with the default 7 days. Prints per-job time
//! (minimum, median, maximum) and the refs left on each remote.
//!
//! ```sh
//! cargo run --release --example completion_refs -- --refs 2000 --jobs 20
//! ```
//!
//! Needs the `git` CLI (to build the fixture) and `/bin/sh`; no broker, loopback only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use executor_harness::config::Config;
use executor_harness::job::parse_job;
use executor_harness::metrics::Metrics;
use executor_harness::telemetry::SecretRegistry;
use executor_harness::worker::context::JobContext;
use executor_harness::worker::error::JobEnd;
use executor_harness::worker::events::MemorySink;
use executor_harness::worker::run::run_job;
use tokio_util::sync::CancellationToken;

const AGENT: &str = r#"#!/bin/sh
cat > /dev/null
echo "$$" > "work-$$.txt"
git add -A && git commit -q -m "Work"
printf '{"type":"agent_end","messages":[{"role":"assistant","content":[{"type":"text","text":"done"}],"stopReason":"stop"}],"stopReason":"stop"}\n'
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository with one commit on `main` and `refs` completion refs 30 days old.
fn remote(root: &Path, name: &str, refs: usize) -> PathBuf {
    let path = root.join(format!("{name}.git"));
    std::fs::create_dir_all(&path).expect("mkdir");
    git(&path, &["init", "-q", "--bare", "--initial-branch=main"]);
    let when = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 30 * 86_400;
    // One fast-import stream: the base commit, then a completion commit per ref.
    let mut stream = String::new();
    stream.push_str(&format!(
        "commit refs/heads/main\nmark :1\ncommitter bench <b@example.com> {when} +0000\ndata 4\nbase\nM 644 inline README.md\ndata 6\nhello\n\n"
    ));
    for i in 0..refs {
        let message = format!("{{\"jobId\":\"old-{i}\",\"finishedAt\":{}}}", when * 1000);
        stream.push_str(&format!(
            "commit refs/harness/done/old-{i}\ncommitter bench <b@example.com> {when} +0000\ndata {}\n{message}\nfrom :1\ndeleteall\n\n",
            message.len()
        ));
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&path)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stream.as_bytes())
        .expect("feed fast-import");
    assert!(child.wait().expect("fast-import").success());
    path
}

fn job(id: &str, repo: &Path) -> Vec<u8> {
    serde_json::json!({
        "jobId": id, "mode": "coding", "systemPrompt": "s", "userPrompt": "u", "model": "m",
        "proxyBaseUrl": "http://127.0.0.1:9/v1", "sessionToken": "sess-bench-000001",
        "ghToken": "ghs_bench000000000000000000000001",
        "repo": {"owner": "o", "name": "r", "baseBranch": "main",
                 "cloneUrl": format!("file://{}", repo.display())},
        "branch": "main", "newBranch": format!("work/{id}")
    })
    .to_string()
    .into_bytes()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn summary(label: &str, times: &mut [Duration], refs_left: usize) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<14} jobs={} per_job_ms min={:.0} median={:.0} max={:.0} total_s={:.1} refs_left={refs_left}",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.iter().map(|d| d.as_secs_f64()).sum::<f64>(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let refs = arg("--refs", 2000);
    let jobs = arg("--jobs", 20).max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let agent = tmp.path().join("agent");
    std::fs::write(&agent, AGENT).expect("agent");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let started = Instant::now();
    let kept = remote(tmp.path(), "kept", refs);
    let pruned = remote(tmp.path(), "pruned", refs);
    println!(
        "fixture: 2 remotes with {refs} completion refs each in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let context = |max_age_ms: u64| {
        let mut c = Config::default();
        c.agent.pi_command = vec![agent.display().to_string()];
        c.worker.work_dir = tmp.path().join("work").display().to_string();
        c.git.completion_ref_max_age_ms = max_age_ms;
        JobContext::new(
            Arc::new(c),
            Arc::new(Metrics::new()),
            SecretRegistry::default(),
        )
    };
    let off = context(0);
    let on = context(Config::default().git.completion_ref_max_age_ms);
    let mut times = (Vec::new(), Vec::new());
    for i in 0..jobs {
        for (ctx, repo, out) in [(&off, &kept, &mut times.0), (&on, &pruned, &mut times.1)] {
            let body = job(&format!("bench-{i}"), repo);
            let job = parse_job(&body, &ctx.config.validation_policy()).expect("valid job");
            let t = Instant::now();
            let end = run_job(
                ctx,
                &job,
                1,
                Arc::new(MemorySink::default()),
                CancellationToken::new(),
            )
            .await;
            out.push(t.elapsed());
            assert!(matches!(end, JobEnd::Finished(_)), "job {i} did not finish");
        }
    }
    let count = |repo: &Path| {
        git(repo, &["for-each-ref", "refs/harness/done/"])
            .lines()
            .count()
    };
    summary("prune off", &mut times.0, count(&kept));
    summary("prune on", &mut times.1, count(&pruned));
}
