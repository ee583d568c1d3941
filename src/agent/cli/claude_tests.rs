use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::*;
use crate::agent::test_support::subscription_job as job;

const TOKEN: &str = "sk-ant-oat01-unit-test-token-value";

#[test]
fn args_follow_the_seed_invocation_and_carry_no_token() {
    let job = job(
        "claude-code",
        serde_json::json!({ "subscriptionToken": TOKEN }),
    );
    let args = claude_args(&job, "be brief", None);
    assert_eq!(
        args,
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--permission-mode",
            "bypassPermissions",
            "--model",
            "example-model",
            "--append-system-prompt",
            "be brief"
        ]
    );
    assert!(args.iter().all(|a| !a.contains(TOKEN)));
}

#[test]
fn the_system_prompt_points_at_the_context_files() {
    let plain = job(
        "claude-code",
        serde_json::json!({ "subscriptionToken": TOKEN }),
    );
    assert_eq!(claude_system_prompt(&plain), "You are the implementer.");

    let with_files = job(
        "claude-code",
        serde_json::json!({
            "subscriptionToken": TOKEN,
            "contextFiles": [
                {"path": "PROJ-1.md", "title": "The ticket", "url": "https://x/1", "content": "c"},
                {"path": "rfc.md", "title": "The RFC", "content": "c"}
            ]
        }),
    );
    let prompt = claude_system_prompt(&with_files);
    assert!(prompt.starts_with("You are the implementer.\n\nLinked context (requirements / RFCs / PRDs / tracker issues) for this task is in the .cat-context/ directory."), "{prompt}");
    assert!(prompt.ends_with("\n- .cat-context/PROJ-1.md \u{2014} The ticket\n- .cat-context/rfc.md \u{2014} The RFC"), "{prompt}");
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_home_holds_a_private_onboarding_file_and_the_token_goes_only_in_env() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("claude-home");
    let job = job(
        "claude-code",
        serde_json::json!({ "subscriptionToken": TOKEN }),
    );
    let env = prepare_claude_home(&job, &home).unwrap();

    let file = home.join(".claude.json");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&home), 0o700);
    let written: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["hasCompletedOnboarding"], true);
    assert_eq!(written["hasTrustDialogAccepted"], true);
    assert_eq!(written["bypassPermissionsModeAccepted"], true);
    for entry in fs::read_dir(&home).unwrap() {
        let contents = fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!contents.contains(TOKEN));
    }
    assert_eq!(
        env,
        [
            (
                "CLAUDE_CONFIG_DIR".to_owned(),
                home.to_str().unwrap().to_owned()
            ),
            ("CLAUDE_CODE_OAUTH_TOKEN".to_owned(), TOKEN.to_owned()),
        ]
    );
}

#[test]
fn a_vendor_base_url_sends_the_token_as_an_auth_token_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        "claude-code",
        serde_json::json!({
            "subscriptionToken": TOKEN,
            "subscriptionBaseUrl": "https://api.z.ai/api/anthropic"
        }),
    );
    let env = prepare_claude_home(&job, dir.path()).unwrap();
    assert_eq!(
        env[1..],
        [
            (
                "ANTHROPIC_BASE_URL".to_owned(),
                "https://api.z.ai/api/anthropic".to_owned()
            ),
            ("ANTHROPIC_AUTH_TOKEN".to_owned(), TOKEN.to_owned()),
        ]
    );
    assert!(env.iter().all(|(k, _)| k != "CLAUDE_CODE_OAUTH_TOKEN"));
}

#[test]
fn ambient_auth_writes_no_home_and_adds_no_env() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("unused");
    let job = job("claude-code", serde_json::json!({ "ambientAuth": true }));
    assert_eq!(prepare_claude_home(&job, &home).unwrap(), []);
    assert!(!home.exists());
}

#[test]
fn a_job_without_subscription_auth_is_refused_with_the_seed_text() {
    let dir = tempfile::tempdir().unwrap();
    let pi = job(
        "pi",
        serde_json::json!({ "proxyBaseUrl": "https://proxy", "sessionToken": "sess-123456" }),
    );
    let err = prepare_claude_home(&pi, dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "claude-code harness requires a subscription token (or ambientAuth)"
    );
}

#[test]
fn every_run_turns_off_nonessential_traffic_and_root_is_told_it_is_sandboxed() {
    let pairs = |root| {
        claude_run_env(root)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(pairs(false), ["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"]);
    assert_eq!(
        pairs(true),
        ["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "IS_SANDBOX=1"]
    );
}

const ENV_SECRET: &str = "env-secret-value-0001";

fn with_servers(auth: Value, servers: Value) -> AgentJob {
    let mut fields = auth;
    fields["mcpServers"] = servers;
    job("claude-code", fields)
}

fn two_servers() -> Value {
    serde_json::json!([
        {"id": "docs", "transport": "http", "url": "https://mcp.example.com/mcp",
         "headers": {"Authorization": "Bearer hdr-secret-0002"}, "secretKeys": ["Authorization"]},
        {"id": "fs", "command": "mcp-fs", "args": ["--root", "."],
         "env": {"FS_TOKEN": ENV_SECRET}, "secretKeys": ["FS_TOKEN"]}
    ])
}

#[test]
fn servers_add_the_config_file_and_strict_mode_to_argv_but_never_their_secrets() {
    let job = with_servers(
        serde_json::json!({ "subscriptionToken": TOKEN }),
        two_servers(),
    );
    let path = Path::new("/run/home/.claude/mcp-servers.json");
    let args = claude_args(&job, "", Some(path));
    let model = args.iter().position(|a| a == "example-model").unwrap();
    assert_eq!(
        args[model..],
        [
            "example-model",
            "--mcp-config",
            "/run/home/.claude/mcp-servers.json",
            "--strict-mcp-config"
        ],
        "no --allowedTools when no server restricts its tools"
    );
    let joined = args.join(" ");
    assert!(!joined.contains(ENV_SECRET) && !joined.contains("hdr-secret"));
}

#[test]
fn allowed_tools_list_each_server_then_the_built_in_tools() {
    let servers = serde_json::json!([
        {"id": "docs", "command": "d", "allowedTools": ["search", "fetch"]},
        {"id": "fs", "command": "f"}
    ]);
    let job = with_servers(serde_json::json!({ "subscriptionToken": TOKEN }), servers);
    let args = claude_args(&job, "", Some(Path::new("/h/mcp-servers.json")));
    let at = args.iter().position(|a| a == "--allowedTools").unwrap();
    let list: Vec<&str> = args[at + 1].split(',').collect();
    assert_eq!(
        list[..3],
        ["mcp__docs__search", "mcp__docs__fetch", "mcp__fs"]
    );
    assert_eq!(list[3..], super::super::mcp::CLAUDE_BUILTIN_TOOLS);
}

#[test]
fn the_home_holds_the_servers_in_a_private_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("claude-home");
    let job = with_servers(
        serde_json::json!({ "subscriptionToken": TOKEN }),
        two_servers(),
    );
    prepare_claude_home(&job, &home).unwrap();
    let file = home.join("mcp-servers.json");
    assert_eq!(mode(&file), 0o600);
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.contains("\n  "), "pretty-printed: {text}");
    let written: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"mcpServers": {
            "docs": {"type": "http", "url": "https://mcp.example.com/mcp",
                     "headers": {"Authorization": "Bearer hdr-secret-0002"}},
            "fs": {"type": "stdio", "command": "mcp-fs", "args": ["--root", "."],
                   "env": {"FS_TOKEN": ENV_SECRET}}
        }})
    );
}

#[test]
fn ambient_auth_writes_only_the_server_file_in_a_private_dir_and_no_env() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("run-dir");
    let mut fields = serde_json::json!({ "ambientAuth": true,
        "skills": [{"name": "s", "instructions": "i"}] });
    fields["mcpServers"] = two_servers();
    let job = job("claude-code", fields);
    assert_eq!(prepare_claude_home(&job, &home).unwrap(), []);
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("mcp-servers.json")), 0o600);
    assert!(
        !home.join("skills").exists(),
        "ambient skills go to the checkout"
    );
    assert!(!home.join(".claude.json").exists());
}

#[test]
fn skills_go_to_the_config_home_with_their_front_matter_and_resources() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("claude-home");
    let job = job(
        "claude-code",
        serde_json::json!({ "subscriptionToken": TOKEN, "skills": [{
            "name": "../Release Notes!", "description": "Writes notes.\nTwo lines: \"quoted\"",
            "instructions": "Read template.md first.",
            "resources": [{"relPath": "docs/template.md", "content": "# Notes"},
                          {"relPath": "SKILL.md", "content": "not the instructions"}]
        }]}),
    );
    prepare_claude_home(&job, &home).unwrap();
    let skill = home.join("skills/ReleaseNotes");
    assert_eq!(
        fs::read_to_string(skill.join("SKILL.md")).unwrap(),
        "---\nname: \"ReleaseNotes\"\ndescription: \"Writes notes. Two lines: \\\"quoted\\\"\"\n\
         ---\n\nRead template.md first.\n"
    );
    assert_eq!(
        fs::read_to_string(skill.join("docs/template.md")).unwrap(),
        "# Notes"
    );
    assert_eq!(mode(&skill.join("docs/template.md")), 0o600);
    assert_eq!(mode(&skill.join("docs")), 0o700);
    assert_eq!(mode(&home.join("skills")), 0o700);
}
