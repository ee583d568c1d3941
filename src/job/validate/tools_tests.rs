//! `skills` and `mcpServers` (seed-later 10.1, 10.2), including the spec's verified examples.

use serde_json::json;

use super::*;
use crate::job::validate::{parse_job, ValidationPolicy};

#[test]
fn skill_names_keep_the_last_segment_cleaned_and_fall_back_to_skill() {
    assert_eq!(skill_name("../My Skill!"), "MySkill");
    assert_eq!(skill_name("ééé"), "skill");
    assert_eq!(skill_name(r"a\b\c-d_e.f"), "c-d_e.f");
    for unusable in ["", ".", "..", ".hidden", "a/", "a/.."] {
        assert_eq!(skill_name(unusable), "skill", "{unusable:?}");
    }
}

#[test]
fn skills_need_instructions_and_the_first_of_a_name_wins() {
    let parsed = skills(Some(&json!([
        {"name": "a", "instructions": ""},
        {"name": "a", "instructions": "first", "description": 7},
        {"name": "../a", "instructions": "second"},
        {"name": 5, "instructions": "unnamed", "description": "d"},
        "not an object",
        {"name": "b"}
    ])));
    let names: Vec<(&str, &str, &str)> = parsed
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.instructions.as_str(),
                s.description.as_str(),
            )
        })
        .collect();
    assert_eq!(names, [("a", "first", ""), ("skill", "unnamed", "d")]);
    assert!(skills(Some(&json!({"name": "a"}))).is_empty());
    assert!(skills(None).is_empty());
}

#[test]
fn resource_paths_never_leave_the_skill_directory() {
    let parsed = skills(Some(&json!([{
        "name": "s",
        "instructions": "i",
        "resources": [
            {"relPath": "docs/./guide.md", "content": "g"},
            {"relPath": "../escape.md", "content": "x"},
            {"relPath": "a/../../b", "content": "x"},
            {"relPath": r"win\path\f.txt", "content": "w"},
            {"relPath": "/abs//x y.txt", "content": "a"},
            {"relPath": ".git/config", "content": "dotted segment dropped"},
            {"relPath": ".hidden", "content": "nothing left"},
            {"relPath": "docs/guide.md", "content": "repeat"},
            {"relPath": "n.txt", "content": 3},
            {"relPath": 4, "content": "c"}
        ]
    }])));
    let paths: Vec<(&str, &str)> = parsed[0]
        .resources
        .iter()
        .map(|r| (r.rel_path.as_str(), r.content.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("docs/guide.md", "g"),
            ("win/path/f.txt", "w"),
            ("abs/xy.txt", "a"),
            ("config", "dotted segment dropped"),
        ]
    );
}

#[test]
fn the_url_rule_allows_https_and_loopback_http_as_the_parser_normalises_them() {
    for ok in [
        "https://mcp.example.com/mcp",
        "http://localhost:8080/mcp",
        "http://LOCALHOST/",
        "http://127.0.0.1:3000/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://2130706433/",
        "http://[::1]:9000/mcp",
        "http://[0:0:0:0:0:0:0:1]/",
    ] {
        assert!(is_allowed_mcp_url(ok), "{ok}");
    }
    for refused in [
        r"http://evil.example\@127.0.0.1/mcp",
        "http://127.0.0.1@evil.example",
        "http://evil.example/",
        "http://localhost.evil.example/",
        "http://128.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost /",
        "https://example.com/\tx",
        " https://example.com/",
        "https://example.com/\n",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "not a url",
        "",
    ] {
        assert!(!is_allowed_mcp_url(refused), "{refused:?}");
    }
    // The CLI gets the canonical form, naming the host that was checked.
    assert_eq!(
        allowed_mcp_url("http://2130706433/mcp").as_deref(),
        Some("http://127.0.0.1/mcp")
    );
}

#[test]
fn servers_are_dropped_for_a_bad_id_a_repeat_a_bad_url_or_no_command() {
    let parsed = mcp_servers(Some(&json!([
        {"id": "Upper", "command": "x"},
        {"id": "-lead", "command": "x"},
        {"id": "a".repeat(65), "command": "x"},
        {"id": "web", "transport": "http", "url": "http://evil.example/"},
        {"id": "web", "transport": "http", "url": "https://mcp.example.com/",
         "headers": {"Authorization": "Bearer abcdefgh", "X-N": 1}},
        {"id": "web", "command": "shadowed"},
        {"id": "fs", "command": ""},
        {"id": "fs", "transport": "sse", "command": "mcp-fs", "args": ["--root", 3, "."],
         "env": {"TOKEN": "s3cr3t-value", "N": 2}, "secretKeys": ["TOKEN", 4, "MISSING"],
         "allowedTools": ["read_file", "bad,name", "", 7]},
        {"id": "all", "command": "srv", "allowedTools": ["bad name"]}
    ])));
    let ids: Vec<&str> = parsed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["web", "fs", "all"]);
    let McpTransport::Http { url, headers } = &parsed[0].transport else {
        panic!("web is http");
    };
    assert_eq!(url, "https://mcp.example.com/");
    assert_eq!(headers.len(), 1);
    let fs = &parsed[1];
    let McpTransport::Stdio { command, args, env } = &fs.transport else {
        panic!("anything but http is stdio");
    };
    assert_eq!(command, "mcp-fs");
    assert_eq!(args, &["--root", "."]);
    assert_eq!(env.len(), 1);
    assert_eq!(
        fs.allowed_tools.as_deref(),
        Some(&["read_file".to_owned()][..])
    );
    assert_eq!(fs.secret_keys, ["TOKEN", "MISSING"]);
    let secrets: Vec<&str> = fs.secret_values().iter().map(|s| s.expose()).collect();
    assert_eq!(secrets, ["s3cr3t-value"]);
    assert_eq!(
        parsed[2].allowed_tools, None,
        "no usable name means all tools"
    );
}

fn job(extra: serde_json::Value) -> crate::job::AgentJob {
    let mut body = json!({
        "mode": "coding", "jobId": "j", "systemPrompt": "s", "userPrompt": "u", "model": "m",
        "harness": "claude-code", "subscriptionToken": "sub-token-123456",
        "ghToken": "ght", "branch": "main",
        "repo": {"owner": "o", "name": "n", "baseBranch": "main",
                 "cloneUrl": "https://github.com/o/n.git"}
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), 1 << 20);
    parse_job(body.to_string().as_bytes(), &policy).unwrap()
}

#[test]
fn malformed_tool_fields_never_refuse_the_job() {
    for bad in [
        json!("x"),
        json!({"a": 1}),
        json!([1, null, []]),
        json!(null),
    ] {
        let j = job(json!({"skills": bad, "mcpServers": bad}));
        assert!(j.skills.is_empty() && j.mcp_servers.is_empty());
    }
}

#[test]
fn secret_key_values_are_masked_by_the_jobs_redactor_and_hidden_from_debug() {
    let j = job(json!({"mcpServers": [
        {"id": "api", "transport": "http", "url": "https://mcp.example.com/",
         "headers": {"Authorization": "Bearer hdr-secret-0001"}, "secretKeys": ["Authorization"]},
        {"id": "local", "command": "srv", "env": {"API_KEY": "env-secret-0002"},
         "secretKeys": ["API_KEY"]}
    ]}));
    let text = j
        .redactor()
        .redact("saw Bearer hdr-secret-0001 and env-secret-0002");
    assert!(!text.contains("hdr-secret-0001"), "{text}");
    assert!(!text.contains("env-secret-0002"), "{text}");
    let debug = format!("{:?}", j.mcp_servers);
    assert!(!debug.contains("secret-000"), "{debug}");
}

#[test]
fn the_mcp_guard_knobs_are_floored_and_bad_ones_dropped() {
    let j = job(json!({"guardLimits": {"maxConsecutiveMcpCalls": 50.9,
                                       "maxConsecutiveNonActionCalls": -1}}));
    let limits = j.guard_limits.unwrap();
    assert_eq!(limits.max_consecutive_mcp_calls, Some(50));
    assert_eq!(limits.max_consecutive_non_action_calls, None);
}
