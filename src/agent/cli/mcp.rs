//! A job's MCP servers as each CLI reads them (seed-later 10.2): Claude Code's
//! `--mcp-config` file and `--allowedTools` list, and Codex's `[mcp_servers]` tables.
//! Everything here is pure; the files are written by the config-home preparations.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::job::{AgentJob, McpServer, McpTransport};

/// Claude Code's MCP config, in its per-run config home.
pub const MCP_CONFIG_FILE: &str = "mcp-servers.json";

/// Claude Code's own tools, allowed beside the MCP tools whenever `--allowedTools` is given
/// (the list replaces the default set, so without them the agent could not edit a file).
pub const CLAUDE_BUILTIN_TOOLS: [&str; 24] = [
    "Agent",
    "Bash",
    "BashOutput",
    "Edit",
    "ExitPlanMode",
    "Glob",
    "Grep",
    "KillBash",
    "KillShell",
    "ListMcpResources",
    "MultiEdit",
    "NotebookEdit",
    "NotebookRead",
    "Read",
    "ReadMcpResource",
    "SlashCommand",
    "Skill",
    "Task",
    "TaskCreate",
    "TaskUpdate",
    "TodoWrite",
    "WebFetch",
    "WebSearch",
    "Write",
];

/// Where Claude Code's MCP config goes for a run whose config home is `home`, when the job
/// has servers. The file is written there in ambient mode too (`home` is then a private
/// per-job directory the CLI does not use as its config home).
pub fn claude_mcp_config_path(job: &AgentJob, home: &Path) -> Option<PathBuf> {
    (!job.mcp_servers.is_empty()).then(|| home.join(MCP_CONFIG_FILE))
}

/// `{"mcpServers": {<id>: {type: "http", url, headers?} | {type: "stdio", command, args?,
/// env?}}}`, pretty-printed. It holds env and header values, secrets included: it is only ever
/// written as a 0600 file, never passed in argv.
pub fn claude_mcp_config(servers: &[McpServer]) -> String {
    let mut by_id = Map::new();
    for server in servers {
        let entry = match &server.transport {
            McpTransport::Http { url, headers } => {
                let mut e = json!({"type": "http", "url": url});
                if !headers.is_empty() {
                    e["headers"] = string_object(headers);
                }
                e
            }
            McpTransport::Stdio { command, args, env } => {
                let mut e = json!({"type": "stdio", "command": command});
                if !args.is_empty() {
                    e["args"] = json!(args);
                }
                if !env.is_empty() {
                    e["env"] = string_object(env);
                }
                e
            }
        };
        by_id.insert(server.id.clone(), entry);
    }
    let config = json!({ "mcpServers": by_id });
    // A Value of strings and maps always serialises.
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

fn string_object(pairs: &[(String, crate::redact::Secret)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose().to_owned())))
            .collect(),
    )
}

/// The `--allowedTools` value, only when some server restricts its tools: `mcp__<id>__<tool>`
/// per allowed tool, `mcp__<id>` for an unrestricted server, then the built-in tools. Scoping,
/// not a security boundary: under `bypassPermissions` the CLI may not gate on it.
pub fn claude_allowed_tools(servers: &[McpServer]) -> Option<String> {
    if servers.iter().all(|s| s.allowed_tools.is_none()) {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for server in servers {
        match &server.allowed_tools {
            Some(tools) => names.extend(tools.iter().map(|t| format!("mcp__{}__{t}", server.id))),
            None => names.push(format!("mcp__{}", server.id)),
        }
    }
    names.extend(CLAUDE_BUILTIN_TOOLS.iter().map(|t| (*t).to_owned()));
    Some(names.join(","))
}

/// Codex's `mcp_servers` table: one `[mcp_servers.<id>]` per stdio server with `command`,
/// `args` (when any) and `env` (when any). As in the seed, http servers and `allowedTools` are
/// not given to Codex (not mapped onto its config yet). `None` when no stdio server is left.
pub fn codex_mcp_servers(servers: &[McpServer]) -> Option<toml::Table> {
    let mut table = toml::Table::new();
    for server in servers {
        let McpTransport::Stdio { command, args, env } = &server.transport else {
            continue;
        };
        let mut entry = toml::Table::new();
        entry.insert("command".into(), command.as_str().into());
        if !args.is_empty() {
            let args: Vec<toml::Value> = args.iter().map(|a| a.as_str().into()).collect();
            entry.insert("args".into(), args.into());
        }
        if !env.is_empty() {
            let env: toml::Table = env
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().into()))
                .collect();
            entry.insert("env".into(), env.into());
        }
        table.insert(server.id.clone(), entry.into());
    }
    (!table.is_empty()).then_some(table)
}

#[cfg(test)]
#[path = "mcp_tests.rs"]
mod tests;
