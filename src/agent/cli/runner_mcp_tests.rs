//! A Claude Code run with the job's MCP servers: the CLI is told where their config is, the
//! file is there (private) while it runs and gone after, and no server secret is in argv.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::agent::test_support::{subscription_job, Recorder};

const ENV_SECRET: &str = "mcp-env-secret-000001";

/// A fake `claude` that saves its argv and the file after `--mcp-config`, then ends cleanly.
const FAKE: &str = r#"printf '%s\n' "$@" > "$OUT/args"
while [ $# -gt 0 ]; do
  if [ "$1" = "--mcp-config" ]; then cp "$2" "$OUT/mcp.json"; stat -c %a "$2" > "$OUT/mode"; fi
  shift
done
cat > /dev/null
echo '{"type":"result","subtype":"success","is_error":false,"result":"done"}'"#;

async fn run(auth: serde_json::Value) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("cli.sh"), format!("#!/bin/sh\n{FAKE}\n")).unwrap();
    std::fs::create_dir(root.join("work")).unwrap();
    std::fs::create_dir(root.join("home")).unwrap();
    let mut inv = Invocation::new(root.join("work"), root.join("home"));
    inv.command = vec!["/bin/sh".into(), root.join("cli.sh").display().to_string()];
    inv.kill_grace = Duration::from_millis(500);
    inv.extra_env = vec![("OUT".into(), root.display().to_string())];
    let mut fields = auth;
    fields["mcpServers"] = json!([{"id": "fs", "command": "mcp-fs",
        "env": {"FS_TOKEN": ENV_SECRET}, "secretKeys": ["FS_TOKEN"]}]);
    let job = subscription_job("claude-code", fields);
    let (recorder, _rx) = Recorder::new();
    run_claude(&job, &inv, Arc::new(recorder), CancellationToken::new())
        .await
        .unwrap();
    let args = std::fs::read_to_string(root.join("args")).unwrap();
    let args = args.lines().map(str::to_owned).collect();
    (dir, args)
}

fn check(dir: &tempfile::TempDir, args: &[String]) {
    let at = args.iter().position(|a| a == "--mcp-config").unwrap();
    let config = std::path::Path::new(&args[at + 1]);
    assert!(config.starts_with(dir.path().join("home")), "{config:?}");
    assert_eq!(args[at + 2], "--strict-mcp-config");
    assert!(!config.exists(), "removed with the run's config home");
    assert!(args.iter().all(|a| !a.contains(ENV_SECRET)));
    let saved = std::fs::read_to_string(dir.path().join("mcp.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["mcpServers"]["fs"]["env"]["FS_TOKEN"], ENV_SECRET);
    let mode = std::fs::read_to_string(dir.path().join("mode")).unwrap();
    assert_eq!(mode.trim(), "600");
}

#[tokio::test]
async fn a_leased_run_reads_its_servers_from_its_config_home() {
    let (dir, args) = run(json!({"subscriptionToken": "sk-ant-oat01-mcp-test-token"})).await;
    check(&dir, &args);
}

#[tokio::test]
async fn an_ambient_run_reads_them_from_a_private_dir_under_the_jobs_home() {
    let (dir, args) = run(json!({"ambientAuth": true})).await;
    check(&dir, &args);
}
