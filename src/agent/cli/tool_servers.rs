//! `toolServers` (seed-later 10.4): the MCP servers Claude Code reports in its
//! `{"type":"system","subtype":"init"}` event, with their state and how many tools each
//! offers. Observational only: the worker publishes it once and nothing branches on it.

use serde_json::Value;

use crate::job::outcome::{ToolServer, ToolServerStatus};
use crate::job::validate::is_mcp_server_id;

/// The servers of an `init` event: `mcp_servers[]` rows whose `name` is a valid server id
/// (repeats dropped), each with its normalised status and its tool count. `None` for any other
/// event and when no row is left (absent, not empty).
///
/// A server's count is the `tools[]` names `mcp__<id>__<tool>`; a name two servers could own
/// (ids `a` and `a__b` both match `mcp__a__b__c`) leaves both counts absent, and so does an
/// event without a `tools` array.
pub fn tool_servers(init_event: &Value) -> Option<Vec<ToolServer>> {
    let str_at = |key: &str| init_event.get(key).and_then(Value::as_str);
    if str_at("type") != Some("system") || str_at("subtype") != Some("init") {
        return None;
    }
    let mut servers: Vec<ToolServer> = Vec::new();
    for row in init_event.get("mcp_servers")?.as_array()? {
        let Some(id) = row
            .get("name")
            .and_then(Value::as_str)
            .filter(|id| is_mcp_server_id(id))
        else {
            continue;
        };
        if servers.iter().any(|s| s.id == id) {
            continue;
        }
        servers.push(ToolServer {
            id: id.to_owned(),
            status: status(row.get("status")),
            tool_count: None,
        });
    }
    if servers.is_empty() {
        return None;
    }
    if let Some(tools) = init_event.get("tools").and_then(Value::as_array) {
        count_tools(&mut servers, tools);
    }
    Some(servers)
}

fn status(v: Option<&Value>) -> ToolServerStatus {
    let word = v
        .and_then(Value::as_str)
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    match word.as_str() {
        "connected" | "ready" | "ok" => ToolServerStatus::Ready,
        "failed" | "error" => ToolServerStatus::Failed,
        "needs-auth" | "needs_auth" => ToolServerStatus::NeedsAuth,
        _ => ToolServerStatus::Unknown,
    }
}

fn count_tools(servers: &mut [ToolServer], tools: &[Value]) {
    let mut counts = vec![0u64; servers.len()];
    let mut ambiguous = vec![false; servers.len()];
    for name in tools.iter().filter_map(Value::as_str) {
        let Some(rest) = name.strip_prefix("mcp__") else {
            continue;
        };
        let owners: Vec<usize> = servers
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                rest.strip_prefix(s.id.as_str())
                    .and_then(|r| r.strip_prefix("__"))
                    .is_some_and(|tool| !tool.is_empty())
            })
            .map(|(i, _)| i)
            .collect();
        match owners.as_slice() {
            [one] => counts[*one] += 1,
            many => many.iter().for_each(|i| ambiguous[*i] = true),
        }
    }
    for (i, server) in servers.iter_mut().enumerate() {
        server.tool_count = (!ambiguous[i]).then_some(counts[i]);
    }
}

#[cfg(test)]
#[path = "tool_servers_tests.rs"]
mod tests;
