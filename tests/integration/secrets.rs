//! The job's tokens appear nowhere they must not: the worker runs as its own process (so its
//! real logs are read), against a smart-HTTP remote that demands the git token, with an agent
//! that tries to leak the session token through stderr, a follow-up and its summary. And a token
//! whose shape a pattern rule only half matches is masked whole in the result.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::broker::{passive_queue, TestBroker};
use crate::support::git_http::GitHttpServer;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, drain_json, next_json, test_config, TestWorker};

/// Neither token has a recognisable shape: only by-value redaction can catch them.
const GIT_TOKEN: &str = "tok-git-SECRET-4f9a2b71";
const SESSION_TOKEN: &str = "sess-SECRET-77aa0c3e";
/// GitHub-shaped, with characters the `ghp_` pattern stops at: only masking the known value
/// before the patterns run removes all of it.
const SPECIAL_GIT_TOKEN: &str = "ghp_Sp3c!al$Tok@en:9x%yZ";
/// The job's own secrets (seed-later 9): a `generatorSecrets` value and a registry token.
const GEN_SECRET: &str = "gen-SECRET-value-5d1e";
const NPM_TOKEN: &str = "npm-SECRET-token-8c2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_appear_in_no_config_message_log_argv_or_agent_environment() {
    let root = tempfile::tempdir().unwrap();
    let origin = BareRepo::new_in(root.path(), "repo");
    let server = GitHttpServer::start(root.path(), GIT_TOKEN);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let agent = write_agent(
        s,
        "agent",
        &format!(
            r#"echo "$0 $*" > {s}/agent-argv.txt
env > {s}/agent-env.txt
cp .git/config {s}/git-config.txt
[ "$API_KEY" = "{GEN_SECRET}" ] && echo env-ok >> {s}/own-secrets.txt
grep -qx '//registry.npmjs.org/:_authToken={NPM_TOKEN}' "$HOME/.npmrc" && echo npmrc-ok >> {s}/own-secrets.txt
stat -c %a "$HOME/.npmrc" >> {s}/own-secrets.txt
TOKEN=$(sed -n 's/.*"apiKey": "\(.*\)".*/\1/p' "$HOME/.pi/agent/models.json")
test -n "$TOKEN"
echo "leaking $TOKEN and $API_KEY on stderr" >&2
printf '{{"title":"leak %s","detail":"detail %s"}}\n' "$TOKEN" "$TOKEN" >> .cat-follow-ups.jsonl
echo x > x.txt
commit_all 'Work'
finish "summary with $TOKEN $API_KEY""#,
            s = s.display()
        ),
    );

    let broker = TestBroker::new(|_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let mut config = test_config(&broker, &agent, work.path());
    config.job.allowed_hosts = vec!["127.0.0.1".into()];
    config.log.level = "debug".into();
    let config_path = s.join("config.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let log_path = s.join("worker.log");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_executor-harness"))
        .args(["worker", "--config"])
        .arg(&config_path)
        .env("HARNESS_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();

    let mut job = coding_job("job-secrets", &server.url("repo"), Some("work/secrets"));
    job["ghToken"] = json!(GIT_TOKEN);
    job["sessionToken"] = json!(SESSION_TOKEN);
    job["streamFollowUps"] = json!(true);
    job["generatorSecrets"] = json!([{"key": "API_KEY", "value": GEN_SECRET}]);
    job["packageRegistries"] = json!([{"ecosystem": "npm", "host": "registry.npmjs.org",
        "scopes": ["@acme"], "token": NPM_TOKEN}]);
    // The install sees the job's secret too, and prints it.
    job["dependencyInstall"] = json!({"command": format!(
        "echo \"install sees $API_KEY\"; [ \"$API_KEY\" = {GEN_SECRET} ] && echo install-ok >> {}/own-secrets.txt",
        s.display()
    )});
    let topo = broker.topo.clone();
    // The worker declares the topology; enqueue once all of it exists.
    let mut declared = false;
    for _ in 0..200 {
        let mut all = true;
        for q in topo.queues() {
            all &= passive_queue(&broker.conn, q).await.is_ok();
        }
        if all {
            declared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(declared, "the worker never declared its topology");
    executor_harness::broker::enqueue_job(
        &broker.conn,
        &topo.jobs_queue,
        job.to_string().as_bytes(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let result = next_json(&broker.conn, &topo.results_queue, Duration::from_secs(60))
        .await
        .expect("a result");
    // SIGTERM: the worker drains and exits 0.
    // SAFETY: plain kill(2) on the child we spawned.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let status = worker.wait().unwrap();
    assert!(status.success(), "worker exit: {status:?}");

    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["result"]["pushed"], true);
    assert!(origin.tip("work/secrets").is_some());
    // The token really was used, and only through the credential callback.
    assert!(server.accepted_attempts() > 0);
    // The leak attempts were redacted, not dropped.
    assert_eq!(result["result"]["summary"], "summary with *** ***");
    // The job's own secrets reached the install, the agent's environment and its `.npmrc`.
    assert_eq!(
        std::fs::read_to_string(s.join("own-secrets.txt")).unwrap(),
        "install-ok\nenv-ok\nnpmrc-ok\n600\n"
    );

    let mut published = vec![result.clone()];
    published.extend(drain_json(&broker.conn, &topo.followups_queue).await);
    published.extend(drain_json(&broker.conn, &topo.progress_queue).await);
    assert!(published.iter().any(|m| m["title"] == "leak ***"));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("job started"), "the log was captured: {log}");
    let places = [
        (
            "published messages",
            serde_json::to_string(&published).unwrap(),
        ),
        ("worker log", log),
        (
            "agent environment",
            std::fs::read_to_string(s.join("agent-env.txt")).unwrap(),
        ),
        (
            "agent argv",
            std::fs::read_to_string(s.join("agent-argv.txt")).unwrap(),
        ),
        (
            "checkout .git/config",
            std::fs::read_to_string(s.join("git-config.txt")).unwrap(),
        ),
    ];
    for (place, text) in &places {
        for token in [GIT_TOKEN, SESSION_TOKEN] {
            assert!(!text.contains(token), "{token} found in the {place}");
        }
        // The job's own secrets are meant for the agent's environment, and nowhere else.
        for secret in [GEN_SECRET, NPM_TOKEN] {
            if *place != "agent environment" || secret == NPM_TOKEN {
                assert!(!text.contains(secret), "{secret} found in the {place}");
            }
        }
    }
    // Nothing of the job is left on disk either.
    let leftovers: Vec<_> = walk(work.path());
    assert!(leftovers.is_empty(), "workspace left behind: {leftovers:?}");
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_special_characters_printed_by_the_agent_leaves_no_fragment_in_the_result() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        &format!(
            "T='{SPECIAL_GIT_TOKEN}'\necho \"leaking $T\" >&2\necho x > x.txt\ncommit_all 'Work'\nfinish \"summary with $T and more\""
        ),
    );
    let w = TestWorker::start(&agent, |_| {}).await;
    let mut job = coding_job("job-special-token", &origin.url(), Some("work/special"));
    job["ghToken"] = json!(SPECIAL_GIT_TOKEN);
    w.enqueue(&job).await;
    let result = w.next_result(Duration::from_secs(60)).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["result"]["summary"], "summary with *** and more");
    let published = result.to_string();
    let secret: Vec<char> = SPECIAL_GIT_TOKEN["ghp_".len()..].chars().collect();
    for fragment in secret.windows(4).map(|w| w.iter().collect::<String>()) {
        assert!(
            !published.contains(&fragment),
            "{fragment:?} of the token is in {published}"
        );
    }
    w.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
