//! `toolServers` from Claude Code's `init` event (seed-later 10.4).

use serde_json::json;

use super::*;

fn init(extra: Value) -> Value {
    let mut event = json!({"type": "system", "subtype": "init", "session_id": "s"});
    if let (Some(e), Some(x)) = (event.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    event
}

fn summary(servers: &[ToolServer]) -> Vec<(&str, ToolServerStatus, Option<u64>)> {
    servers
        .iter()
        .map(|s| (s.id.as_str(), s.status, s.tool_count))
        .collect()
}

#[test]
fn statuses_are_normalised_and_bad_or_repeated_names_dropped() {
    let servers = tool_servers(&init(json!({
        "mcp_servers": [
            {"name": "a", "status": " Connected "},
            {"name": "b", "status": "READY"},
            {"name": "c", "status": "ok"},
            {"name": "d", "status": "failed"},
            {"name": "e", "status": "Error"},
            {"name": "f", "status": "needs-auth"},
            {"name": "g", "status": "needs_auth"},
            {"name": "h", "status": "pending"},
            {"name": "i"},
            {"name": "a", "status": "failed"},
            {"name": "Bad Name", "status": "connected"},
            {"status": "connected"},
            "j"
        ]
    })))
    .unwrap();
    use ToolServerStatus::*;
    let statuses: Vec<(&str, ToolServerStatus)> =
        servers.iter().map(|s| (s.id.as_str(), s.status)).collect();
    assert_eq!(
        statuses,
        [
            ("a", Ready),
            ("b", Ready),
            ("c", Ready),
            ("d", Failed),
            ("e", Failed),
            ("f", NeedsAuth),
            ("g", NeedsAuth),
            ("h", Unknown),
            ("i", Unknown),
        ]
    );
}

#[test]
fn tool_counts_follow_the_names_and_are_absent_without_a_tool_list() {
    let rows = json!([{"name": "docs", "status": "connected"}, {"name": "fs", "status": "failed"}]);
    let counted = tool_servers(&init(json!({
        "mcp_servers": rows,
        "tools": ["Bash", "mcp__docs__search", "mcp__docs__fetch", "mcp__docs__", "mcp__other__x", 7]
    })))
    .unwrap();
    assert_eq!(
        summary(&counted),
        [
            ("docs", ToolServerStatus::Ready, Some(2)),
            ("fs", ToolServerStatus::Failed, Some(0))
        ]
    );
    let unlisted = tool_servers(&init(json!({"mcp_servers": rows}))).unwrap();
    assert!(unlisted.iter().all(|s| s.tool_count.is_none()));
}

#[test]
fn a_tool_name_two_servers_could_own_leaves_both_counts_absent() {
    let servers = tool_servers(&init(json!({
        "mcp_servers": [{"name": "a", "status": "connected"},
                        {"name": "a__b", "status": "connected"},
                        {"name": "z", "status": "connected"}],
        "tools": ["mcp__a__x", "mcp__a__b__c", "mcp__z__y"]
    })))
    .unwrap();
    let counts: Vec<Option<u64>> = servers.iter().map(|s| s.tool_count).collect();
    assert_eq!(counts, [None, None, Some(1)]);
}

#[test]
fn no_server_row_or_another_event_gives_nothing() {
    assert_eq!(tool_servers(&init(json!({}))), None);
    assert_eq!(tool_servers(&init(json!({"mcp_servers": []}))), None);
    assert_eq!(
        tool_servers(&init(json!({"mcp_servers": [{"name": "-x"}]}))),
        None
    );
    let other = json!({"type": "system", "subtype": "status",
                       "mcp_servers": [{"name": "a", "status": "connected"}]});
    assert_eq!(tool_servers(&other), None);
}

#[test]
fn serialises_camel_case_without_an_absent_count() {
    let servers = tool_servers(&init(json!({
        "mcp_servers": [{"name": "a", "status": "needs-auth"}, {"name": "b", "status": "ok"}],
        "tools": ["mcp__b__t"]
    })))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&servers).unwrap(),
        json!([{"id": "a", "status": "needs_auth", "toolCount": 0},
               {"id": "b", "status": "ready", "toolCount": 1}])
    );
    let unlisted = tool_servers(&init(json!({"mcp_servers": [{"name": "a"}]}))).unwrap();
    assert_eq!(
        serde_json::to_value(&unlisted).unwrap(),
        json!([{"id": "a", "status": "unknown"}])
    );
}
