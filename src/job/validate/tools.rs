//! `skills` and `mcpServers` (seed-later 10.1, 10.2). Like the seed's parsers these never
//! refuse a job: a malformed entry is dropped, and a list with nothing left is no list.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;
use url::{Host, Url};

use super::{nes, object, Object};
use crate::job::{McpServer, McpTransport, Skill, SkillResource};
use crate::redact::Secret;

/// The name used when a skill's own sanitises to nothing usable.
const FALLBACK_SKILL_NAME: &str = "skill";

static SERVER_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]{0,63}$").expect("static regex"));
/// No comma: the names are joined into one comma-separated CLI argument.
static TOOL_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$").expect("static regex"));

/// Whether `id` is a usable MCP server id (also what a CLI's report of a server must match).
pub fn is_mcp_server_id(id: &str) -> bool {
    SERVER_ID.is_match(id)
}

/// `skills[]`: entries need non-empty string `instructions`; names are sanitised and the
/// first of a name wins.
pub(super) fn skills(v: Option<&Value>) -> Vec<Skill> {
    let Some(Value::Array(entries)) = v else {
        return Vec::new();
    };
    let mut out: Vec<Skill> = Vec::new();
    for e in entries.iter().filter_map(Value::as_object) {
        let Some(instructions) = nes(e.get("instructions")) else {
            continue;
        };
        let raw_name = e.get("name").and_then(Value::as_str).unwrap_or("");
        let name = skill_name(raw_name);
        if out.iter().any(|s| s.name == name) {
            continue;
        }
        out.push(Skill {
            name,
            description: e
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            instructions: instructions.to_owned(),
            resources: resources(e.get("resources")),
        });
    }
    out
}

/// The last `/`-segment (a `\` counts as `/`) with everything outside `[A-Za-z0-9._-]`
/// deleted; empty, `.`, `..` or dotted names become [`FALLBACK_SKILL_NAME`].
pub(crate) fn skill_name(raw: &str) -> String {
    let normalised = raw.replace('\\', "/");
    let last = normalised.rsplit('/').next().unwrap_or("");
    clean_segment(last).unwrap_or_else(|| FALLBACK_SKILL_NAME.to_owned())
}

/// A name or path segment kept to `[A-Za-z0-9._-]`; `None` when nothing usable is left
/// (empty, or starting with a dot, which covers `.` and `..`).
fn clean_segment(raw: &str) -> Option<String> {
    let kept: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    (!kept.is_empty() && !kept.starts_with('.')).then_some(kept)
}

/// `resources[]`: a `..` anywhere drops the resource; other segments are cleaned (unusable
/// ones dropped); repeats of a path and non-string contents are dropped.
fn resources(v: Option<&Value>) -> Vec<SkillResource> {
    let Some(Value::Array(entries)) = v else {
        return Vec::new();
    };
    let mut out: Vec<SkillResource> = Vec::new();
    for e in entries.iter().filter_map(Value::as_object) {
        let Some(rel_path) = e.get("relPath").and_then(Value::as_str).and_then(rel_path) else {
            continue;
        };
        let Some(content) = e.get("content").and_then(Value::as_str) else {
            continue;
        };
        if out.iter().any(|r| r.rel_path == rel_path) {
            continue;
        }
        out.push(SkillResource {
            rel_path,
            content: content.to_owned(),
        });
    }
    out
}

fn rel_path(raw: &str) -> Option<String> {
    let normalised = raw.replace('\\', "/");
    let segments: Vec<&str> = normalised
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segments.contains(&"..") {
        return None;
    }
    let cleaned: Vec<String> = segments.into_iter().filter_map(clean_segment).collect();
    (!cleaned.is_empty()).then(|| cleaned.join("/"))
}

/// `mcpServers[]`: ids match [`SERVER_ID`] and the first of an id wins; `transport: "http"`
/// needs a URL passing [`is_allowed_mcp_url`], anything else is stdio and needs a command.
pub(super) fn mcp_servers(v: Option<&Value>) -> Vec<McpServer> {
    let Some(Value::Array(entries)) = v else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in entries.iter().filter_map(Value::as_object) {
        let Some(id) = e
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| SERVER_ID.is_match(id))
        else {
            continue;
        };
        if seen.contains(id) {
            continue;
        }
        let Some(transport) = transport(e) else {
            continue;
        };
        seen.insert(id.to_owned());
        out.push(McpServer {
            id: id.to_owned(),
            transport,
            allowed_tools: allowed_tools(e.get("allowedTools")),
            secret_keys: string_entries(e.get("secretKeys")),
        });
    }
    out
}

fn transport(e: &Object) -> Option<McpTransport> {
    if e.get("transport").and_then(Value::as_str) == Some("http") {
        let url = e
            .get("url")
            .and_then(Value::as_str)
            .and_then(allowed_mcp_url)?;
        return Some(McpTransport::Http {
            url,
            headers: string_map(e.get("headers")),
        });
    }
    Some(McpTransport::Stdio {
        command: nes(e.get("command"))?.to_owned(),
        args: string_entries(e.get("args")),
        env: string_map(e.get("env")),
    })
}

/// `None` (every tool) when no usable name is left.
fn allowed_tools(v: Option<&Value>) -> Option<Vec<String>> {
    let names: Vec<String> = string_entries(v)
        .into_iter()
        .filter(|t| TOOL_NAME.is_match(t))
        .collect();
    (!names.is_empty()).then_some(names)
}

/// The string entries of an array, in order; anything else is none.
fn string_entries(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The string-valued pairs of an object.
fn string_map(v: Option<&Value>) -> Vec<(String, Secret)> {
    object(v)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), Secret::new(v.as_str()?))))
                .collect()
        })
        .unwrap_or_default()
}

/// The URL rule for an http MCP server (seed-later 10.2): no character at or below 0x20
/// anywhere, then a WHATWG parse; `https` anywhere, `http` only to `localhost`, `::1` or
/// `127.0.0.0/8` as the parser normalised the host (so `http://2130706433/` is loopback and
/// `http://evil.example\@127.0.0.1/` is not). Returns the parsed URL's serialisation, which
/// is what the CLI is given, so it reaches the host that was checked.
pub fn allowed_mcp_url(raw: &str) -> Option<String> {
    if raw.chars().any(|c| c <= '\u{20}') {
        return None;
    }
    let url = Url::parse(raw).ok()?;
    let allowed = match url.scheme() {
        "https" => true,
        "http" => match url.host()? {
            Host::Domain(d) => d == "localhost",
            Host::Ipv4(ip) => ip.octets()[0] == 127,
            Host::Ipv6(ip) => ip == std::net::Ipv6Addr::LOCALHOST,
        },
        _ => false,
    };
    allowed.then(|| url.to_string())
}

/// Whether `raw` passes [`allowed_mcp_url`].
pub fn is_allowed_mcp_url(raw: &str) -> bool {
    allowed_mcp_url(raw).is_some()
}

#[cfg(test)]
#[path = "tools_tests.rs"]
mod tests;
