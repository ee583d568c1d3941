//! What the sandbox costs an agent run: starting a program under bubblewrap against starting
//! it directly, and (when run as root, where agents run as another user) handing a checkout of
//! N files to the agents' user before each agent run.
//!
//! ```sh
//! cargo run --release --example sandbox_cost -- --files 100000 --runs 50
//! ```
//!
//! Needs bubblewrap (`bwrap`) and unprivileged user namespaces; no broker, no network.

use std::path::Path;
use std::time::{Duration, Instant};

use executor_harness::config::Config;
use executor_harness::sandbox::{Mechanism, Sandbox};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn time_runs(sandbox: &Sandbox, cwd: &Path, runs: usize) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let status = sandbox
            .command("/bin/true", &[], cwd, &[cwd.to_path_buf()])
            .env_clear()
            .status()
            .await
            .expect("run /bin/true");
        assert!(status.success());
        times.push(started.elapsed());
    }
    median(times)
}

/// `files` files of 64 bytes, 100 to a directory, like a checkout's work tree.
fn make_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::write(dir.join(format!("f{i}")), [b'x'; 64]).expect("write");
    }
}

#[tokio::main]
async fn main() {
    let files = arg("--files", 100_000);
    let runs = arg("--runs", 50).max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.worker.work_dir = tmp.path().join("work").display().to_string();
    config.sandbox.mode = "required".into();
    let sandbox = match Sandbox::detect(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sandbox_cost: {e}");
            std::process::exit(1);
        }
    };
    assert_eq!(sandbox.mechanism(), Mechanism::Bubblewrap);
    let own = config.work_dir().join("jobs/bench/repo");
    std::fs::create_dir_all(&own).expect("mkdir");
    sandbox
        .hand_over(std::slice::from_ref(&own), &[config.work_dir()])
        .expect("hand over");

    let direct = time_runs(&Sandbox::none(), &own, runs).await;
    let sandboxed = time_runs(&sandbox, &own, runs).await;
    println!(
        "SANDBOX start /bin/true: direct median {:.1} ms, bubblewrap median {:.1} ms ({runs} runs)",
        direct.as_secs_f64() * 1e3,
        sandboxed.as_secs_f64() * 1e3
    );

    if sandbox.run_as().is_none() {
        println!("SANDBOX hand-over: not needed (agents run as the worker's own user; run as root to measure it)");
        return;
    }
    make_tree(&own, files);
    let started = Instant::now();
    sandbox
        .hand_over(std::slice::from_ref(&own), &[config.work_dir()])
        .expect("hand over");
    let first = started.elapsed();
    let started = Instant::now();
    sandbox
        .hand_over(std::slice::from_ref(&own), &[config.work_dir()])
        .expect("hand over");
    let again = started.elapsed();
    println!(
        "SANDBOX hand-over of {files} files: first {:.0} ms, again {:.0} ms",
        first.as_secs_f64() * 1e3,
        again.as_secs_f64() * 1e3
    );
}
