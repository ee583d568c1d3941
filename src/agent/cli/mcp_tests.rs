//! The job's MCP servers as Claude Code and Codex read them (seed-later 10.2).

use serde_json::json;

use super::*;
use crate::agent::test_support::subscription_job;

fn servers(list: serde_json::Value) -> Vec<McpServer> {
    subscription_job(
        "codex",
        json!({"subscriptionToken": "sk-test-000000", "mcpServers": list}),
    )
    .mcp_servers
}

#[test]
fn the_config_path_is_only_there_when_the_job_has_servers() {
    let home = Path::new("/h");
    let none = subscription_job(
        "claude-code",
        json!({"subscriptionToken": "sk-test-000000"}),
    );
    assert_eq!(claude_mcp_config_path(&none, home), None);
    let some = subscription_job(
        "claude-code",
        json!({"subscriptionToken": "sk-test-000000", "mcpServers": [{"id": "a", "command": "x"}]}),
    );
    assert_eq!(
        claude_mcp_config_path(&some, home),
        Some(home.join("mcp-servers.json"))
    );
}

#[test]
fn claude_config_omits_empty_args_env_and_headers() {
    let config = claude_mcp_config(&servers(json!([
        {"id": "a", "command": "x"},
        {"id": "b", "transport": "http", "url": "http://127.1:8/mcp"}
    ])));
    let parsed: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        parsed,
        json!({"mcpServers": {
            "a": {"type": "stdio", "command": "x"},
            "b": {"type": "http", "url": "http://127.0.0.1:8/mcp"}
        }})
    );
}

#[test]
fn codex_gets_stdio_servers_as_toml_tables_and_no_http_servers() {
    let table = codex_mcp_servers(&servers(json!([
        {"id": "fs", "command": "mcp \"fs\"", "args": ["--root", "a b"],
         "env": {"TOKEN": "tok=1\nx", "weird key": "v"}, "allowedTools": ["read"]},
        {"id": "bare", "command": "srv"},
        {"id": "web", "transport": "http", "url": "https://mcp.example.com/"}
    ])))
    .unwrap();
    let text = toml::to_string(&table).unwrap();
    let back: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(back, table, "quoting survives a round trip: {text}");
    let fs = back["fs"].as_table().unwrap();
    assert_eq!(fs["command"].as_str(), Some("mcp \"fs\""));
    assert_eq!(
        fs["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["--root", "a b"]
    );
    assert_eq!(fs["env"]["TOKEN"].as_str(), Some("tok=1\nx"));
    assert!(fs.get("allowedTools").is_none() && fs.get("allowed_tools").is_none());
    let bare = back["bare"].as_table().unwrap();
    assert_eq!(bare.keys().collect::<Vec<_>>(), ["command"]);
    assert!(back.get("web").is_none());
    let only_http =
        servers(json!([{"id": "web", "transport": "http", "url": "https://x.example/"}]));
    assert_eq!(codex_mcp_servers(&only_http), None);
}
