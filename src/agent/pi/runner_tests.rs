use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::agent::process::tests::wait_gone;
use crate::agent::test_support::{job, Recorder, GH_TOKEN, SESSION_TOKEN};
use crate::agent::{prepare_pi_home_with, AgentError, GuardLimits};
use crate::job::outcome::RunStats;

fn fixture_path(name: &str) -> String {
    format!(
        "{}/tests/fixtures/agent-streams/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A temp dir with a fake `pi` script, a work dir and a prepared job HOME.
struct FakePi {
    dir: tempfile::TempDir,
}

impl FakePi {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pi.sh"), format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        prepare_pi_home_with(&job(), &dir.path().join("home"), None, None).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn invocation(&self) -> Invocation {
        let mut inv = Invocation::new(self.path("work"), self.path("home"));
        inv.command = vec![
            "/bin/sh".into(),
            self.path("pi.sh").to_string_lossy().into_owned(),
        ];
        inv.kill_grace = Duration::from_millis(500);
        inv.extra_env = vec![("OUT".into(), self.dir.path().to_string_lossy().into_owned())];
        inv
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

async fn run(inv: &Invocation) -> (Result<AgentRun, AgentError>, Arc<Recorder>) {
    let (recorder, _rx) = Recorder::new();
    let recorder = Arc::new(recorder);
    let result = run_pi(&job(), inv, recorder.clone(), CancellationToken::new()).await;
    (result, recorder)
}

#[tokio::test]
async fn a_clean_run_reports_summary_spans_and_progress_with_the_job_home_and_no_token() {
    let fake = FakePi::new(
        r#"printf '%s\n' "$@" > "$OUT/args"
env > "$OUT/env"
pwd > "$OUT/cwd"
cat > "$OUT/prompt"
printf '%s' "$(cat "$FIXTURE")"
echo 'warning: slow' >&2"#,
    );
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("pi-0.80.3-todo.events.jsonl"),
    ));
    inv.extra_env
        .push(("LEAKY".into(), format!("x{SESSION_TOKEN}x")));
    let (recorder, mut activity) = Recorder::new();
    let recorder = Arc::new(recorder);
    let run = run_pi(&job(), &inv, recorder.clone(), CancellationToken::new())
        .await
        .unwrap();

    // The final line had no newline: it still carried the agent_end with the summary.
    assert_eq!(run.summary, "All done.");
    assert_eq!(
        run.stats,
        RunStats {
            tool_calls: 7,
            assistant_chars: 9
        }
    );
    assert_eq!(run.stderr_tail.as_deref(), Some("warning: slow"));
    assert!(activity.try_recv().is_ok(), "output counted as activity");
    let spans = recorder.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 7);
    assert!(spans.windows(2).all(|w| w[0].ended_at == w[1].started_at));
    let progress = recorder.progress.lock().unwrap().clone();
    assert_eq!(progress.len(), 5);
    assert_eq!(
        progress.last().map(|p| (p.completed, p.total)),
        Some((2, 2))
    );

    let args: Vec<String> = read(&fake.path("args"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(args, pi_args("mock-model"));
    assert_eq!(args[4], "proxy/mock-model");
    assert_eq!(read(&fake.path("prompt")), job().user_prompt);
    assert_eq!(
        read(&fake.path("cwd")).trim(),
        std::fs::canonicalize(fake.path("work"))
            .unwrap()
            .to_string_lossy()
    );
    let env = read(&fake.path("env"));
    let home = fake.path("home");
    assert!(env.lines().any(|l| l == format!("HOME={}", home.display())));
    assert!(env
        .lines()
        .any(|l| l == format!("PI_CODING_AGENT_DIR={}", home.join(".pi/agent").display())));
    assert!(
        !env.contains(SESSION_TOKEN),
        "the session token leaked into the env"
    );
    assert!(!env.contains(GH_TOKEN));
    assert!(!env.contains("LEAKY="));
}

#[tokio::test]
async fn a_refused_credential_on_a_clean_exit_is_an_upstream_failure_with_its_message_and_fix() {
    let fake = FakePi::new(r#"cat "$FIXTURE"; echo 'retrying...' >&2; exit 0"#);
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("pi-0.80.3-err401-exit0.events.jsonl"),
    ));
    let (result, _) = run(&inv).await;
    let err = result.unwrap_err();
    assert!(matches!(err, AgentError::LlmUpstream { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}\n{}",
            r#"401: {"message":"invalid session token","type":"invalid_request_error"} Agent stderr: retrying..."#,
            crate::agent::upstream::AUTH_REMEDY
        )
    );
}

#[tokio::test]
async fn a_retried_run_that_recovers_is_not_a_failure() {
    let fake = FakePi::new(r#"cat "$FIXTURE""#);
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("pi-0.80.3-retry-then-ok.events.jsonl"),
    ));
    let run = run(&inv).await.0.unwrap();
    assert_eq!(run.summary, "done after retry");
    assert_eq!(run.stats.tool_calls, 2);
    assert_eq!(run.stderr_tail, None);
}

#[tokio::test]
async fn a_non_zero_exit_quotes_the_redacted_stderr() {
    let fake = FakePi::new(&format!(
        "cat \"$FIXTURE\"\ncat \"$STDERR\" >&2\necho 'proxy said no to {SESSION_TOKEN}' >&2\nexit 1"
    ));
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("pi-0.80.3-no-token.events.jsonl"),
    ));
    inv.extra_env.push((
        "STDERR".into(),
        fixture_path("pi-0.80.3-no-token.stderr.txt"),
    ));
    let err = run(&inv).await.0.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("pi exited with code 1: No API key found for proxy."),
        "{text}"
    );
    assert!(text.ends_with("proxy said no to ***"), "{text}");
    assert!(!text.contains(SESSION_TOKEN));
}

#[tokio::test]
async fn a_run_killed_by_a_signal_says_which_signal() {
    let fake = FakePi::new(r#"head -n 5 "$FIXTURE"; kill -9 $$"#);
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("pi-0.80.3-killed.events.jsonl"),
    ));
    let err = run(&inv).await.0.unwrap_err();
    assert!(matches!(
        err,
        AgentError::Exited {
            code: None,
            signal: Some(9),
            ..
        }
    ));
    // The seed said `code null` here (seed-later 4.5).
    assert!(
        err.to_string().starts_with("pi killed by SIGKILL: "),
        "{err}"
    );
}

#[tokio::test]
async fn cancelling_kills_pi_and_the_processes_it_started() {
    let fake = FakePi::new(
        r#"sleep 1000 & echo $! > "$OUT/grandchild.pid"
echo '{"type":"agent_start"}'
wait"#,
    );
    let inv = fake.invocation();
    let (recorder, mut activity) = Recorder::new();
    let cancel = CancellationToken::new();
    let j = job();
    let run = run_pi(&j, &inv, Arc::new(recorder), cancel.clone());
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => panic!("ended before cancel: {r:?}"),
        a = activity.recv() => assert!(a.is_some()),
    }
    let grandchild: i32 = read(&fake.path("grandchild.pid")).trim().parse().unwrap();
    cancel.cancel();
    let err = run.await.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(
        wait_gone(grandchild).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn an_already_cancelled_run_never_starts_pi() {
    let fake = FakePi::new(r#"touch "$OUT/started""#);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (recorder, _rx) = Recorder::new();
    let err = run_pi(&job(), &fake.invocation(), Arc::new(recorder), cancel)
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert!(!fake.path("started").exists());
}

#[tokio::test]
async fn a_missing_pi_binary_is_a_spawn_failure() {
    let fake = FakePi::new("");
    let mut inv = fake.invocation();
    inv.command = vec!["/nonexistent/pi".into()];
    let err = run(&inv).await.0.unwrap_err();
    assert!(matches!(err, AgentError::Spawn { .. }));
    assert!(err
        .to_string()
        .starts_with("could not start pi (/nonexistent/pi): "));
}

#[test]
fn the_child_env_drops_askpass_removed_and_token_carrying_variables() {
    let mut inv = Invocation::new("/w", "/jobs/1/home");
    inv.env_remove = vec!["AMQP_URL".into()];
    inv.extra_env = vec![
        ("EXTRA".into(), "yes".into()),
        ("PATH".into(), "/custom".into()),
        ("HOME".into(), "/elsewhere".into()),
        ("SEARXNG_API_KEY".into(), SESSION_TOKEN.into()),
    ];
    let inherited = [
        ("PATH", "/usr/bin"),
        ("AMQP_URL", "amqp://u:p@h"),
        ("GIT_ASKPASS", "/tmp/askpass.sh"),
        ("GIT_ASKPASS_TOKEN", "whatever"),
        ("HOME", "/root"),
        ("PI_CODING_AGENT_DIR", "/root/.pi/agent"),
        ("STRAY", GH_TOKEN),
        ("LANG", "C.UTF-8"),
    ]
    .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let j = job();
    let secrets = job_secrets(&j);
    let env: Vec<(String, String)> = child_env(inherited, &inv, &secrets)
        .into_iter()
        .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
        .collect();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("LANG", "C.UTF-8"),
            ("EXTRA", "yes"),
            ("PATH", "/custom"),
            ("HOME", "/jobs/1/home"),
            ("PI_CODING_AGENT_DIR", "/jobs/1/home/.pi/agent"),
        ]
    );
}

#[test]
fn the_run_future_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let (j, inv) = (job(), Invocation::new("/w", "/h"));
    let (recorder, _rx) = Recorder::new();
    let fut = run_pi(&j, &inv, Arc::new(recorder), CancellationToken::new());
    assert_send(&fut);
}

/// Pi printing `n` successful `bash` calls, then a wait the guard must cut short.
fn pi_bash_calls(n: usize) -> String {
    let mut script = String::from("cat > /dev/null\necho 'probing' >&2\n");
    for _ in 0..n {
        script.push_str(
            "echo '{\"type\":\"tool_execution_end\",\"toolName\":\"bash\",\"isError\":false}'\n",
        );
    }
    script.push_str("sleep 10\n");
    script
}

const NO_EDIT_TAIL: &str = "tool calls and not one file edit \u{2014} the agent is exploring or \
     probing the environment without implementing anything. Aborting before it burns the whole \
     run.";

/// `n` bash calls under a worker base of 5 and the job's `maxToolCallsWithoutEdit = over`.
async fn pi_guarded(n: usize, over: u64) -> Result<AgentRun, AgentError> {
    let fake = FakePi::new(&pi_bash_calls(n));
    let mut j = job();
    j.guard_limits = Some(crate::job::GuardLimitsSpec {
        max_tool_calls_without_edit: Some(over),
        ..Default::default()
    });
    let mut inv = fake.invocation();
    let base = GuardLimits {
        max_tool_calls_without_edit: 5,
        ..GuardLimits::default()
    };
    inv.guard = GuardLimits::merge(base, j.guard_limits);
    let (recorder, _rx) = Recorder::new();
    run_pi(&j, &inv, Arc::new(recorder), CancellationToken::new()).await
}

#[tokio::test]
async fn the_guard_stops_a_pi_run_of_bash_calls_without_an_edit_at_the_worker_bound() {
    let err = pi_guarded(20, 3).await.unwrap_err();
    assert!(matches!(err, AgentError::Stopped { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no progress: 5 {NO_EDIT_TAIL} Agent stderr: probing")
    );
}

#[tokio::test]
async fn a_job_may_loosen_the_pi_guard() {
    let err = pi_guarded(20, 8).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no progress: 8 {NO_EDIT_TAIL} Agent stderr: probing")
    );
}

#[tokio::test]
async fn a_run_that_does_not_expect_edits_is_not_stopped_for_making_none() {
    let fake = FakePi::new(&pi_bash_calls(6).replace("sleep 10\n", ""));
    let mut inv = fake.invocation();
    inv.guard.max_tool_calls_without_edit = 5;
    inv.expects_edits = false;
    let run = run(&inv).await.0.unwrap();
    assert_eq!(run.stats.tool_calls, 6);
}

#[tokio::test]
async fn the_unterminated_last_pi_line_is_not_guarded() {
    let script = format!(
        "{}printf '%s' '{{\"type\":\"tool_execution_end\",\"toolName\":\"bash\",\"isError\":false}}'",
        pi_bash_calls(4).replace("sleep 10\n", "")
    );
    let fake = FakePi::new(&script);
    let mut inv = fake.invocation();
    inv.guard.max_tool_calls_without_edit = 5;
    let (result, recorder) = run(&inv).await;
    assert_eq!(result.unwrap().stats.tool_calls, 5);
    assert_eq!(recorder.spans.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn a_server_error_that_outlived_the_retries_stays_an_agent_failure() {
    let fake = FakePi::new(r#"cat "$FIXTURE"; exit 0"#);
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("pi-0.80.3-err500.events.jsonl"),
    ));
    let err = run(&inv).await.0.unwrap_err();
    assert!(matches!(err, AgentError::RunFailed { .. }), "{err:?}");
    assert_eq!(
        err.failure_cause(),
        crate::job::outcome::FailureCause::Agent
    );
}

#[tokio::test]
async fn a_clean_exit_whose_terminal_record_was_dropped_for_its_size_has_no_usable_output() {
    // The terminal record is over the line cap: dropped whole, never half-parsed.
    let fake = FakePi::new(
        r#"printf '{"type":"agent_start"}\n{"type":"agent_end","pad":"'; head -c 9000000 /dev/zero | tr '\0' x; printf '"}\n'; echo 'done' >&2; exit 0"#,
    );
    let err = run(&fake.invocation()).await.0.unwrap_err();
    assert!(
        matches!(err, AgentError::TerminalRecordDropped { oversized: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "pi exited 0 but its terminal record was dropped for exceeding the JSONL line cap (1 oversized record(s)), so the run's outcome is unknown. done"
    );
    assert_eq!(
        err.failure_cause(),
        crate::job::outcome::FailureCause::NoUsableOutput
    );
}
