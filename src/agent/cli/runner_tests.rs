use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::agent::cli::setup::CODEX_HOME_DIR;
use crate::agent::guard::GuardLimits;
use crate::agent::process::tests::wait_gone;
use crate::agent::run_agent;
use crate::agent::test_support::{subscription_job, Recorder};
use crate::job::outcome::{RunStats, Usage};

const CLAUDE_TOKEN: &str = "sk-ant-oat01-runner-test-token-value";
const AUTH_BLOB: &str = r#"{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"id_token":"runner-test-id-token","access_token":"runner-test-access-token","refresh_token":"runner-test-refresh-token","account_id":"acct-runner-0001"},"last_refresh":"2026-01-01T00:00:00Z"}"#;

fn fixture_path(name: &str) -> String {
    format!(
        "{}/tests/fixtures/agent-streams/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn claude_job(extra: Value) -> AgentJob {
    let mut fields = json!({ "subscriptionToken": CLAUDE_TOKEN });
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    subscription_job("claude-code", fields)
}

fn codex_job() -> AgentJob {
    subscription_job("codex", json!({ "subscriptionToken": AUTH_BLOB }))
}

/// A temp dir with a fake CLI script (it finds `$OUT`, the temp dir, in its env), a work dir
/// and an empty job HOME.
struct FakeCli {
    dir: tempfile::TempDir,
}

impl FakeCli {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cli.sh"), format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn invocation(&self) -> Invocation {
        let mut inv = Invocation::new(self.path("work"), self.path("home"));
        inv.command = vec![
            "/bin/sh".into(),
            self.path("cli.sh").to_string_lossy().into_owned(),
        ];
        inv.kill_grace = Duration::from_millis(500);
        inv.extra_env = vec![("OUT".into(), self.dir.path().to_string_lossy().into_owned())];
        inv
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).contains(needle))
            .unwrap_or(false)
        {
            out.push(path);
        }
    }
    out
}

async fn run_with(
    job: &AgentJob,
    inv: &Invocation,
) -> (Result<AgentRun, AgentError>, Arc<Recorder>) {
    let (recorder, _rx) = Recorder::new();
    let recorder = Arc::new(recorder);
    let result = run_agent(job, inv, recorder.clone(), CancellationToken::new()).await;
    (result, recorder)
}

/// Dumps argv, env, cwd and stdin to `$OUT`, then prints `$FIXTURE` and a stderr line.
const DUMP_AND_PRINT: &str = r#"printf '%s\n' "$@" > "$OUT/args"
env > "$OUT/env"
pwd > "$OUT/cwd"
cat > "$OUT/prompt"
cat "$FIXTURE"
echo 'note: using subscription' >&2"#;

#[tokio::test]
async fn a_claude_run_reports_the_stream_and_gets_its_token_only_in_its_own_env() {
    let fake = FakeCli::new(&format!(
        "{DUMP_AND_PRINT}\ncp \"$CLAUDE_CONFIG_DIR/.claude.json\" \"$OUT/claude.json\""
    ));
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("claude-code-2.1.330-happy.events.jsonl"),
    ));
    inv.extra_env
        .push(("LEAKY".into(), format!("x{CLAUDE_TOKEN}x")));
    inv.extra_env
        .push(("ANTHROPIC_API_KEY".into(), "sk-ant-api-operator".into()));
    let job = claude_job(Value::Null);
    let (recorder, mut activity) = Recorder::new();
    let recorder = Arc::new(recorder);
    let run = run_claude(&job, &inv, recorder.clone(), CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(run.summary, "Created hello.txt and committed it.");
    assert_eq!(
        run.stats,
        RunStats {
            tool_calls: 2,
            assistant_chars: 35
        }
    );
    assert_eq!(
        run.usage,
        Some(Usage {
            input_tokens: 300,
            output_tokens: 27,
            ..Usage::default()
        })
    );
    assert_eq!(run.stderr_tail.as_deref(), Some("note: using subscription"));
    assert!(activity.try_recv().is_ok(), "output counted as activity");
    let spans = recorder.spans.lock().unwrap().clone();
    let tools: Vec<(&str, bool)> = spans.iter().map(|s| (s.tool.as_str(), s.ok)).collect();
    assert_eq!(tools, [("Write", true), ("Bash", true)]);
    assert!(spans.iter().all(|s| s.started_at <= s.ended_at));

    let args: Vec<String> = read(&fake.path("args"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(args, claude_args(&job, "You are the implementer.", None));
    assert_eq!(read(&fake.path("prompt")), job.user_prompt);
    assert_eq!(
        read(&fake.path("cwd")).trim(),
        std::fs::canonicalize(fake.path("work"))
            .unwrap()
            .to_string_lossy()
    );

    let env = read(&fake.path("env"));
    let home = fake.path("home");
    let config_dir = home.join(CLAUDE_HOME_DIR);
    assert!(env.lines().any(|l| l == format!("HOME={}", home.display())));
    assert!(env
        .lines()
        .any(|l| l == format!("CLAUDE_CONFIG_DIR={}", config_dir.display())));
    assert!(read(&fake.path("claude.json")).contains("hasCompletedOnboarding"));
    assert!(!config_dir.exists(), "the config home outlived the run");
    assert!(env
        .lines()
        .any(|l| l == "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"));
    let root = crate::sys::effective_uid() == 0;
    assert_eq!(env.lines().any(|l| l == "IS_SANDBOX=1"), root);
    let token_lines: Vec<&str> = env.lines().filter(|l| l.contains(CLAUDE_TOKEN)).collect();
    assert_eq!(
        token_lines,
        [format!("CLAUDE_CODE_OAUTH_TOKEN={CLAUDE_TOKEN}")]
    );
    assert!(!env.contains("LEAKY="));
    assert!(!env.contains("ANTHROPIC_API_KEY="));
    // Nowhere on disk: not in the home, the checkout, or what the CLI wrote (bar its env dump).
    assert_eq!(files_containing(&home, CLAUDE_TOKEN), Vec::<PathBuf>::new());
    assert_eq!(
        files_containing(&fake.path("work"), CLAUDE_TOKEN),
        Vec::<PathBuf>::new()
    );
    assert!(!read(&fake.path("args")).contains(CLAUDE_TOKEN));
}

#[tokio::test]
async fn a_codex_run_reads_its_prompt_on_stdin_and_its_token_from_its_home_auth_json() {
    let fake = FakeCli::new(&format!(
        "{DUMP_AND_PRINT}\ncat \"$CODEX_HOME/auth.json\" > \"$OUT/auth-seen\"\n\
         stat -c %a \"$CODEX_HOME\" \"$CODEX_HOME/auth.json\" > \"$OUT/modes\"\ncat \"$STDERR\" >&2"
    ));
    let mut inv = fake.invocation();
    inv.extra_env.push((
        "FIXTURE".into(),
        fixture_path("codex-0.169.0-happy.events.jsonl"),
    ));
    inv.extra_env.push((
        "STDERR".into(),
        fixture_path("codex-0.169.0-happy.stderr.txt"),
    ));
    let job = codex_job();
    let (run, recorder) = run_with(&job, &inv).await;
    let run = run.unwrap();
    assert_eq!(run.summary, "Created hello.txt and committed it.");
    assert_eq!(run.stats.tool_calls, 1);
    assert_eq!(
        run.usage,
        Some(Usage {
            input_tokens: 200,
            output_tokens: 18,
            ..Usage::default()
        })
    );
    let spans = recorder.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].tool, "shell");

    assert_eq!(
        read(&fake.path("args")).lines().collect::<Vec<_>>(),
        codex_args(&job)
    );
    assert_eq!(read(&fake.path("prompt")), codex_prompt(&job));
    assert_eq!(read(&fake.path("auth-seen")), AUTH_BLOB);
    assert_eq!(read(&fake.path("modes")), "700\n600\n");
    let home = fake.path("home");
    let codex_home = home.join(CODEX_HOME_DIR);
    let env = read(&fake.path("env"));
    assert!(env
        .lines()
        .any(|l| l == format!("CODEX_HOME={}", codex_home.display())));
    assert!(env.lines().any(|l| l == format!("HOME={}", home.display())));
    assert!(!codex_home.exists(), "the token's home outlived the run");
    for secret in ["runner-test-access-token", "runner-test-refresh-token"] {
        assert!(!env.contains(secret), "{secret} in the env");
        assert!(!read(&fake.path("args")).contains(secret));
        assert!(files_containing(&home, secret).is_empty());
        assert!(files_containing(&fake.path("work"), secret).is_empty());
    }
}

#[tokio::test]
async fn an_error_result_on_a_clean_exit_is_a_failure() {
    let fake = FakeCli::new(&format!(
        r#"cat > /dev/null
echo '{{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Invalid API key {CLAUDE_TOKEN}"}}'
echo 'auth failed' >&2
exit 0"#
    ));
    let err = run_with(&claude_job(Value::Null), &fake.invocation())
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, AgentError::RunFailed { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "claude-code reported an error (API status 401): Invalid API key *** Agent stderr: auth failed"
    );
}

#[tokio::test]
async fn a_failed_codex_turn_is_a_failure_even_on_exit_0() {
    let fake = FakeCli::new(
        r#"cat > /dev/null
echo '{"type":"turn.started"}'
echo '{"type":"turn.failed","error":{"message":"usage limit reached"}}'"#,
    );
    let err = run_with(&codex_job(), &fake.invocation())
        .await
        .0
        .unwrap_err();
    assert_eq!(err.to_string(), "codex turn failed: usage limit reached");
}

#[tokio::test]
async fn a_non_zero_exit_quotes_the_last_700_chars_of_redacted_stderr() {
    let fake = FakeCli::new(&format!(
        "cat > /dev/null\nhead -c 3000 /dev/zero | tr '\\0' 'x' >&2\necho >&2\necho 'refused {CLAUDE_TOKEN}' >&2\nexit 3"
    ));
    let err = run_with(&claude_job(Value::Null), &fake.invocation())
        .await
        .0
        .unwrap_err();
    let AgentError::Exited {
        code, output_tail, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*code, Some(3));
    assert_eq!(output_tail.chars().count(), 700);
    assert!(output_tail.ends_with("\nrefused ***"), "{output_tail}");
    assert!(err
        .to_string()
        .starts_with("claude exited with code 3: xxx"));

    let codex = FakeCli::new("cat > /dev/null\necho 'bad model' >&2\nexit 2");
    let err = run_with(&codex_job(), &codex.invocation())
        .await
        .0
        .unwrap_err();
    assert_eq!(err.to_string(), "codex exited with code 2: bad model");
}

#[tokio::test]
async fn cancelling_kills_the_cli_and_the_processes_it_started() {
    let fake = FakeCli::new(
        r#"sleep 1000 & echo $! > "$OUT/grandchild.pid"
echo '{"type":"system","subtype":"init"}'
wait"#,
    );
    let inv = fake.invocation();
    let (recorder, mut activity) = Recorder::new();
    let cancel = CancellationToken::new();
    let job = claude_job(Value::Null);
    let run = run_claude(&job, &inv, Arc::new(recorder), cancel.clone());
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
async fn a_codex_home_under_the_configured_root_is_private_per_run_and_removed_even_on_cancel() {
    let fake = FakeCli::new(
        r#"echo "$CODEX_HOME" >> "$OUT/homes"
stat -c %a "$CODEX_HOME" > "$OUT/mode"
echo '{"type":"thread.started"}'
exec sleep 1000"#,
    );
    let root = fake.path("codex-homes");
    let mut inv = fake.invocation();
    inv.codex_home_root = Some(root.clone());
    let job = codex_job();
    for _ in 0..2 {
        let (recorder, mut activity) = Recorder::new();
        let cancel = CancellationToken::new();
        let run = run_codex(&job, &inv, Arc::new(recorder), cancel.clone());
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => panic!("ended before cancel: {r:?}"),
            a = activity.recv() => assert!(a.is_some()),
        }
        cancel.cancel();
        assert!(run.await.unwrap_err().is_cancelled());
    }
    let homes: Vec<PathBuf> = read(&fake.path("homes"))
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(homes.len(), 2);
    assert_ne!(homes[0], homes[1], "each run has its own home");
    for home in &homes {
        assert_eq!(home.parent(), Some(root.as_path()));
        assert!(home
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("job-1-"));
        assert!(!home.exists(), "{} outlived its run", home.display());
    }
    assert_eq!(read(&fake.path("mode")), "700\n");
    assert!(!fake.path("home").join(CODEX_HOME_DIR).exists());
    // A dropped run (the worker going away mid-run) removes its home too.
    let (recorder, mut activity) = Recorder::new();
    {
        let run = run_codex(&job, &inv, Arc::new(recorder), CancellationToken::new());
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => panic!("ended: {r:?}"),
            a = activity.recv() => assert!(a.is_some()),
        }
    }
    let third = PathBuf::from(read(&fake.path("homes")).lines().nth(2).unwrap());
    assert!(
        !third.exists(),
        "{} outlived a dropped run",
        third.display()
    );
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

/// A Claude Code stream of `n` successful `Bash` calls, then a wait the guard must cut short.
fn claude_bash_calls(n: usize) -> String {
    let mut script = String::from("cat > /dev/null\necho 'probing' >&2\n");
    for i in 0..n {
        script.push_str(&format!(
            "echo '{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"tool_use\",\"id\":\"t{i}\",\"name\":\"Bash\",\"input\":{{}}}}]}}}}'\n\
             echo '{{\"type\":\"user\",\"message\":{{\"content\":[{{\"type\":\"tool_result\",\"tool_use_id\":\"t{i}\",\"content\":\"ok\"}}]}}}}'\n"
        ));
    }
    script.push_str("sleep 10\n");
    script
}

/// Runs `n` Bash calls under `[guard] max_tool_calls_without_edit = base` and the job's
/// `guardLimits.maxToolCallsWithoutEdit = over`, merged as the worker merges them.
async fn claude_guarded(n: usize, base: u64, over: u64) -> Result<AgentRun, AgentError> {
    let fake = FakeCli::new(&claude_bash_calls(n));
    let job = claude_job(json!({ "guardLimits": { "maxToolCallsWithoutEdit": over } }));
    let mut inv = fake.invocation();
    let base = GuardLimits {
        max_tool_calls_without_edit: base,
        ..GuardLimits::default()
    };
    inv.guard = GuardLimits::merge(base, job.guard_limits);
    run_with(&job, &inv).await.0
}

const NO_EDIT_TAIL: &str = "tool calls and not one file edit \u{2014} the agent is exploring or \
     probing the environment without implementing anything. Aborting before it burns the whole \
     run.";

#[tokio::test]
async fn the_guard_stops_a_claude_run_of_bash_calls_without_an_edit_and_ignores_a_tighter_job_limit(
) {
    let err = claude_guarded(20, 5, 3).await.unwrap_err();
    assert!(matches!(err, AgentError::Stopped { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no progress: 5 {NO_EDIT_TAIL} Agent stderr: probing")
    );
}

#[tokio::test]
async fn a_looser_job_limit_is_honoured_by_the_guard() {
    let err = claude_guarded(20, 5, 8).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no progress: 8 {NO_EDIT_TAIL} Agent stderr: probing")
    );
}

#[tokio::test]
async fn claude_web_and_task_tools_are_classified_for_the_guard() {
    // Six web searches and six task updates, no edit, under a no-edit bound of 3: neither counts.
    let mut script = String::from("cat > /dev/null\n");
    for (i, name) in ["WebSearch", "TodoWrite", "TaskUpdate", "WebFetch"]
        .iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        script.push_str(&format!(
            "echo '{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"tool_use\",\"id\":\"t{i}\",\"name\":\"{name}\",\"input\":{{}}}}]}}}}'\n\
             echo '{{\"type\":\"user\",\"message\":{{\"content\":[{{\"type\":\"tool_result\",\"tool_use_id\":\"t{i}\",\"content\":\"ok\"}}]}}}}'\n"
        ));
    }
    let fake = FakeCli::new(&script);
    let mut inv = fake.invocation();
    inv.guard.max_tool_calls_without_edit = 3;
    let run = run_with(&claude_job(Value::Null), &inv).await.0.unwrap();
    assert_eq!(run.stats.tool_calls, 12);
}

#[tokio::test]
async fn the_unterminated_last_line_is_not_guarded() {
    // The fifth call's result is the last line, without a newline: a clean exit stays clean.
    let mut script = claude_bash_calls(5).replace("sleep 10\n", "");
    let cut = script.trim_end().rfind('\n').unwrap();
    let last = script[cut + 1..]
        .trim_end()
        .replace("echo '", "printf '%s' '");
    script.truncate(cut + 1);
    script.push_str(&last);
    let fake = FakeCli::new(&script);
    let mut inv = fake.invocation();
    inv.guard.max_tool_calls_without_edit = 5;
    let (run, recorder) = run_with(&claude_job(Value::Null), &inv).await;
    let run = run.unwrap();
    assert_eq!(run.stats.tool_calls, 5);
    assert_eq!(
        recorder.spans.lock().unwrap().len(),
        5,
        "the last call still has its span"
    );
}

#[tokio::test]
async fn a_span_whose_start_was_never_announced_starts_where_the_previous_one_ended() {
    let fake = FakeCli::new(
        r#"cat > /dev/null
echo '{"type":"assistant","message":{"content":[{"type":"tool_use","id":"a","name":"Edit","input":{}}]}}'
echo '{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"a","content":"ok"}]}}'
echo '{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"zzz","content":"?","is_error":true}]}}'"#,
    );
    let (run, recorder) = run_with(&claude_job(Value::Null), &fake.invocation()).await;
    run.unwrap();
    let spans = recorder.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1].tool, "unknown");
    assert!(!spans[1].ok);
    assert_eq!(spans[1].started_at, spans[0].ended_at);
    assert!(spans[1].ended_at >= spans[1].started_at);
}

#[test]
fn the_env_strips_inherited_credentials_and_pins_home_and_the_run_s_own_pairs() {
    let inv = Invocation::new("/w", "/jobs/1/home");
    let inherited = [
        ("PATH", "/usr/bin"),
        ("HOME", "/root"),
        ("ANTHROPIC_API_KEY", "sk-ant-api-operator"),
        ("OPENAI_API_KEY", "sk-operator"),
        ("CLAUDE_CODE_OAUTH_TOKEN", "operator-oauth"),
        ("ANTHROPIC_AUTH_TOKEN", "operator-auth"),
        ("CODEX_HOME", "/root/.codex"),
        ("CLAUDE_CONFIG_DIR", "/root/.claude"),
        ("ANTHROPIC_BASE_URL", "https://gateway.operator.example"),
        ("CLAUDE_CODE_USE_BEDROCK", "1"),
        ("CODEX_API_KEY", "sk-operator-codex"),
        ("CLAUDE_CODE_MAX_OUTPUT_TOKENS", "64000"),
        ("STRAY", CLAUDE_TOKEN),
    ]
    .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let job = claude_job(Value::Null);
    let pairs = vec![
        (
            "CLAUDE_CONFIG_DIR".to_owned(),
            "/jobs/1/home/.claude".to_owned(),
        ),
        (
            "CLAUDE_CODE_OAUTH_TOKEN".to_owned(),
            CLAUDE_TOKEN.to_owned(),
        ),
    ];
    let env: Vec<(String, String)> = cli_env(inherited.clone(), &job, &inv, pairs)
        .into_iter()
        .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        env,
        [
            ("PATH", "/usr/bin"),
            ("CLAUDE_CODE_MAX_OUTPUT_TOKENS", "64000"),
            ("HOME", "/jobs/1/home"),
            ("CLAUDE_CONFIG_DIR", "/jobs/1/home/.claude"),
            ("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE_TOKEN),
        ]
    );

    // Ambient auth keeps the operator's login.
    let ambient = subscription_job("claude-code", json!({ "ambientAuth": true }));
    let env = cli_env(inherited, &ambient, &inv, claude_run_env(false));
    let keys: Vec<String> = env
        .iter()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    assert!(keys.contains(&"ANTHROPIC_API_KEY".to_owned()));
    assert!(env.iter().any(|(k, v)| k == "HOME" && v == "/root"));
    assert!(env
        .iter()
        .any(|(k, v)| k == "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" && v == "1"));
}

#[test]
fn the_run_futures_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let (job, inv) = (claude_job(Value::Null), Invocation::new("/w", "/h"));
    let (recorder, _rx) = Recorder::new();
    let recorder = Arc::new(recorder);
    assert_send(&run_claude(
        &job,
        &inv,
        recorder.clone(),
        CancellationToken::new(),
    ));
    assert_send(&run_codex(
        &job,
        &inv,
        recorder.clone(),
        CancellationToken::new(),
    ));
    assert_send(&run_agent(&job, &inv, recorder, CancellationToken::new()));
}
