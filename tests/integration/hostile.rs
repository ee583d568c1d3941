//! The repository and the agent are hostile input: each test is an attack from the issue
//! that found it, run against the real worker (in process, or as its own process where memory
//! is measured).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::agents::{agent_dir_config, write_agent};
use crate::support::git_http::GitHttpServer;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, eventually, TestWorker};

const WAIT: Duration = Duration::from_secs(30);
/// The git token of [`coding_job`].
const GIT_TOKEN: &str = "ghs_TESTgittoken000000000000000000001";

/// The job's remote on 127.0.0.1 and an attacker's on 127.0.0.2, both real smart-HTTP git
/// servers that accept the job's token (so a token sent to the attacker would work there).
struct TwoHosts {
    _roots: (tempfile::TempDir, tempfile::TempDir),
    origin: BareRepo,
    server: GitHttpServer,
    attacker: GitHttpServer,
    steal: BareRepo,
}

impl TwoHosts {
    fn new() -> Self {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let origin = BareRepo::new_in(ours.path(), "repo");
        let steal = BareRepo::new_in(theirs.path(), "steal");
        let server = GitHttpServer::start(ours.path(), GIT_TOKEN);
        let attacker = GitHttpServer::start_on("127.0.0.2", theirs.path(), GIT_TOKEN);
        Self {
            _roots: (ours, theirs),
            origin,
            server,
            attacker,
            steal,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_points_origin_at_another_host_sends_it_nothing_and_its_work_lands_on_the_job_remote(
) {
    let hosts = TwoHosts::new();
    let steal = hosts.attacker.url("steal");
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            "git remote set-url origin {steal}\ngit remote set-url --push origin {steal}\n\
             echo x > x.txt\ncommit_all 'Work'\ntouch {s}/committed\nwait_for {s}/go\n\
             echo y > y.txt\ncommit_all 'More work'\nfinish 'done'",
            s = s.display()
        ),
    );
    let w = TestWorker::start(&agent, |c| {
        c.job.allowed_hosts = vec!["127.0.0.1".into(), "127.0.0.2".into()];
        c.job.checkpoint_interval_ms = 50;
    })
    .await;
    w.enqueue(&coding_job(
        "job-steal",
        &hosts.server.url("repo"),
        Some("work/steal"),
    ))
    .await;
    // A checkpoint push after the rewrite goes to the job's remote.
    eventually("a checkpoint on the job's remote", WAIT, || {
        hosts.origin.tip("work/steal").is_some()
    })
    .await;
    std::fs::write(s.join("go"), b"").unwrap();
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["pushed"], true);
    assert_eq!(
        hosts.origin.subjects("work/steal")[..2],
        ["More work", "Work"]
    );
    assert!(hosts.server.accepted_attempts() > 0);
    assert_eq!(
        hosts.attacker.requests(),
        0,
        "the attacker's host was contacted"
    );
    assert_eq!(hosts.steal.tip("work/steal"), None);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_rewrites_the_remote_url_in_git_config_contacts_no_one_else_and_its_work_lands_on_the_job_remote(
) {
    let hosts = TwoHosts::new();
    let ours = hosts.server.url("");
    let ours = ours.trim_end_matches(".git");
    let theirs = hosts.attacker.url("");
    let theirs = theirs.trim_end_matches(".git");
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!(
            "git config url.{theirs}.insteadOf {ours}\ngit config url.{theirs}.pushInsteadOf {ours}\n\
             git config http.followRedirects true\n\
             echo x > x.txt\ncommit_all 'Work'\nfinish 'done'"
        ),
    );
    let w = TestWorker::start(&agent, |c| {
        c.job.allowed_hosts = vec!["127.0.0.1".into(), "127.0.0.2".into()];
    })
    .await;
    w.enqueue(&coding_job(
        "job-insteadof",
        &hosts.server.url("repo"),
        Some("work/insteadof"),
    ))
    .await;
    let r = w.next_result(WAIT).await;
    // The agent's config is replaced by the worker's once it has run (a checkpoint during the
    // run refuses the rewritten remote: `git::credentials` unit tests).
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(hosts.attacker.requests(), 0);
    assert_eq!(hosts.steal.tip("work/insteadof"), None);
    assert!(hosts.origin.tip("work/insteadof").is_some(), "{r}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_directory_through_a_committed_symlink_out_of_the_checkout_is_refused_before_the_agent(
) {
    let host = tempfile::tempdir().unwrap();
    let origin = BareRepo::new();
    origin.commit_symlink("main", "svc", host.path(), "Link out");
    let scratch = tempfile::tempdir().unwrap();
    let ran = scratch.path().join("ran");
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!("touch {}\nfinish 'ran'", ran.display()),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = coding_job("job-svc", &origin.url(), Some("work/svc"));
    job["repo"]["serviceDirectory"] = json!("svc/x/y");
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("outside the checkout"), "{error}");
    assert!(
        !host.path().join("x").exists(),
        "created outside the checkout"
    );
    assert!(!ran.exists(), "the agent ran");
    w.stop().await;
}

/// Runs `executor-harness run` on `job` with `agent` and returns its JSON lines and its peak
/// resident memory in KiB (`ru_maxrss` of the waited child).
fn run_measured(
    job: &serde_json::Value,
    agent: &Path,
    work: &Path,
    env: &[(&str, &str)],
) -> (Vec<serde_json::Value>, i64) {
    let job_path = work.join("job.json");
    std::fs::write(&job_path, job.to_string()).unwrap();
    let out_path = work.join("out.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_executor-harness"));
    cmd.args(["run", "--json"])
        .arg(&job_path)
        .env("HARNESS_PI_COMMAND", agent)
        .env("HARNESS_CONFIG", agent_dir_config(work))
        .env("HARNESS_WORK_DIR", work.join("work"))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Reaped by waitpid below. Its peak memory is its own VmHWM, polled while it runs: the
    // rusage of wait4 is no measure here, because a child spawned with vfork records the
    // parent's (this test process's) high-water mark as its own when it execs.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let mut peak_kib = 0i64;
    let mut status = 0;
    loop {
        if let Some(hwm) = vm_hwm_kib(pid) {
            peak_kib = peak_kib.max(hwm);
        }
        // SAFETY: polls our own child; the pointer is valid for the call.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped == pid {
            break;
        }
        assert_eq!(reaped, 0, "waitpid failed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let lines = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, peak_kib)
}

/// A running process's peak resident memory (`VmHWM`), in KiB; `None` once it has exited.
fn vm_hwm_kib(pid: i32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn result_of(lines: &[serde_json::Value]) -> &serde_json::Value {
    lines
        .iter()
        .find(|l| l["type"] == "result")
        .expect("a result line")
}

#[test]
fn a_2_gb_tracked_file_is_refused_without_being_read_and_the_committed_work_is_still_pushed() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    // Sparse: the test writes no 2 GB, but whoever reads it reads 2 GB.
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\ntruncate -s 2G README.md\nfinish 'done'",
    );
    let job = coding_job("job-2g", &origin.url(), Some("work/2g"));
    let (lines, peak_kib) = run_measured(&job, &agent, scratch.path(), &[]);
    eprintln!("FIGURE big-file peak_rss_kib={peak_kib} file_bytes=2147483648");
    let r = result_of(&lines);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("'README.md' is 2147483648 bytes") && error.contains("git.max_file_bytes"),
        "{error}"
    );
    // The agent's own commit is kept for a retry; the big edit never left the checkout.
    assert_eq!(origin.subjects("work/2g")[0], "Work");
    assert_eq!(origin.file_at("work/2g", "README.md").unwrap(), "hello\n");
    // Memory does not follow the file: the bound is a tenth of it.
    assert!(
        peak_kib < 200 * 1024,
        "peak RSS {peak_kib} KiB for a 2 GiB file"
    );
}

#[test]
fn a_committed_file_over_the_limit_is_refused_before_any_push_packs_it() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "head -c 3145728 /dev/zero > blob.bin\ncommit_all 'Add a blob'\nfinish 'done'",
    );
    let job = coding_job("job-blob", &origin.url(), Some("work/blob"));
    let (lines, _) = run_measured(
        &job,
        &agent,
        scratch.path(),
        &[("HARNESS_GIT_MAX_FILE_BYTES", "1048576")],
    );
    let r = result_of(&lines);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("'blob.bin' is 3145728 bytes, over the 1048576-byte limit"),
        "{r}"
    );
    assert_eq!(origin.tip("work/blob"), None, "nothing was pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_refs_older_than_the_max_age_are_pruned_when_the_worker_next_records_one() {
    let origin = BareRepo::new();
    for i in 0..5 {
        origin.record_completion(&format!("old-{i}"), 30);
    }
    origin.record_completion("recent", 1);
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\nfinish 'done'",
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    w.enqueue(&coding_job("job-prune", &origin.url(), Some("work/prune")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(
        origin.refs("refs/harness/done/"),
        ["refs/harness/done/job-prune", "refs/harness/done/recent"]
    );
    w.stop().await;
}

#[test]
fn an_agent_that_floods_its_output_leaves_the_workers_memory_bounded_and_the_run_right() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    // 500 MB of lines, one 100 MB line, 1 MB of binary junk without a newline, then a normal
    // end: only tails and the line in progress (up to the line cap) are ever held.
    let agent = write_agent(
        scratch.path(),
        "agent",
        "echo x > x.txt\ncommit_all 'Work'\ntool bash\n\
         head -c 524288000 /dev/zero | tr '\\0' 'x' | fold -w 4096\n\
         head -c 104857600 /dev/zero | tr '\\0' 'y'; echo\n\
         head -c 1048576 /dev/urandom; echo\n\
         finish 'survived the flood'",
    );
    let job = coding_job("job-flood", &origin.url(), Some("work/flood"));
    let (lines, peak_kib) = run_measured(&job, &agent, scratch.path(), &[]);
    eprintln!("FIGURE output-flood peak_rss_kib={peak_kib} printed_bytes=630194176");
    let r = result_of(&lines);
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["result"]["summary"], "survived the flood");
    assert_eq!(r["result"]["pushed"], true);
    // The bound: well under what was printed, and under one line cap per stream on top of
    // an idle worker's footprint.
    assert!(
        peak_kib < 150 * 1024,
        "peak RSS {peak_kib} KiB for 600 MB of output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_clone_url_into_the_work_dir_is_refused_before_any_git_step() {
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(scratch.path(), "agent", "touch ran\nfinish 'done'");
    let w = TestWorker::start(&agent, |_| {}).await;
    // Another job's checkout, as the worker lays them out, holding a repository.
    let other = w.dir.path().join("jobs/other/checkout");
    std::fs::create_dir_all(&other).unwrap();
    let made = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let url = format!("file://{}", other.display());
    w.enqueue(&coding_job("job-local-url", &url, Some("work/local")))
        .await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["failureCause"], "git", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("work directory"),
        "{r}"
    );
    let refs = Command::new("git")
        .args(["for-each-ref"])
        .current_dir(&other)
        .output()
        .unwrap();
    assert!(refs.stdout.is_empty(), "nothing pushed into it");
    w.stop().await;
}
