//! The job's own secrets (seed-later 9): `testSecrets` and `generatorSecrets` (environment
//! for the agent) and `packageRegistries` (an `.npmrc` in the job's HOME). Unlike the other
//! optional fields, a malformed entry refuses the job, with the seed's texts.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::Refusal;
use crate::job::sanitize::is_reserved_env_name;
use crate::job::{NpmRegistry, SecretEnv};
use crate::redact::Secret;

static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("static regex"));
static NPM_SCOPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^@[a-z0-9~-][a-z0-9._~-]*$").expect("static regex"));
/// Printable ASCII without space: a token cannot add lines to the `.npmrc`.
static NPM_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\x21-\x7e]+$").expect("static regex"));

fn refuse(text: String) -> Refusal {
    Refusal::Field(text)
}

/// `[{key, value}]`: keys valid environment names, reserved ones and repeats dropped (first
/// wins), values non-empty strings kept as given.
pub(super) fn secret_env(v: Option<&Value>, field: &str) -> Result<Vec<SecretEnv>, Refusal> {
    let entries = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(refuse(format!("'{field}' must be an array"))),
    };
    let mut out: Vec<SecretEnv> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(o) = entry.as_object() else {
            return Err(refuse(format!("'{field}[{i}]' must be an object")));
        };
        let key = match o.get("key").and_then(Value::as_str) {
            Some(k) if !k.is_empty() => k.trim(),
            _ => {
                return Err(refuse(format!(
                    "'{field}[{i}].key' must be a non-empty string"
                )))
            }
        };
        if !ENV_NAME.is_match(key) {
            return Err(refuse(format!(
                "'{field}[{i}].key' must be a valid environment variable name"
            )));
        }
        // Checked before the value, as the seed does: a dropped entry's value is not read.
        if is_reserved_env_name(key) || out.iter().any(|e| e.key == key) {
            continue;
        }
        let value = match o.get("value").and_then(Value::as_str) {
            Some(v) if !v.is_empty() => v,
            _ => {
                return Err(refuse(format!(
                    "'{field}[{i}].value' must be a non-empty string"
                )))
            }
        };
        out.push(SecretEnv {
            key: key.to_owned(),
            value: Secret::new(value),
        });
    }
    Ok(out)
}

/// `[{ecosystem: "npm", host, scopes, token}]`: other ecosystems dropped, hosts only from
/// `allowed` (lower-cased), scopes like `@org`, tokens printable without spaces.
pub(super) fn package_registries(
    v: Option<&Value>,
    allowed: &BTreeSet<String>,
) -> Result<Vec<NpmRegistry>, Refusal> {
    const F: &str = "packageRegistries";
    let entries = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(refuse(format!("'{F}' must be an array"))),
    };
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(o) = entry.as_object() else {
            return Err(refuse(format!("'{F}[{i}]' must be an object")));
        };
        if o.get("ecosystem").and_then(Value::as_str) != Some("npm") {
            continue;
        }
        let host = match o.get("host").and_then(Value::as_str).map(str::trim) {
            Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
            _ => {
                return Err(refuse(format!(
                    "'{F}[{i}].host' must be a non-empty string"
                )))
            }
        };
        if !allowed.contains(&host) {
            return Err(refuse(format!(
                "'{F}[{i}].host' '{host}' is not an allowed npm registry host"
            )));
        }
        let Some(Value::Array(raw_scopes)) = o.get("scopes") else {
            return Err(refuse(format!("'{F}[{i}].scopes' must be an array")));
        };
        let mut scopes = Vec::new();
        for (j, scope) in raw_scopes.iter().enumerate() {
            match scope.as_str().map(str::trim) {
                Some(s) if NPM_SCOPE.is_match(s) => scopes.push(s.to_owned()),
                _ => {
                    return Err(refuse(format!(
                        "'{F}[{i}].scopes[{j}]' must look like @org"
                    )))
                }
            }
        }
        let token = match o.get("token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t,
            _ => {
                return Err(refuse(format!(
                    "'{F}[{i}].token' must be a non-empty string"
                )))
            }
        };
        if !NPM_TOKEN.is_match(token) {
            return Err(refuse(format!(
                "'{F}[{i}].token' must not contain spaces or control characters"
            )));
        }
        out.push(NpmRegistry {
            host,
            scopes,
            token: Secret::new(token),
        });
    }
    Ok(out)
}

/// The `.npmrc` for `registries`: each scope's registry, then each host's token once (the last
/// entry for a host wins).
pub fn render_npmrc(registries: &[NpmRegistry]) -> String {
    let mut text = String::new();
    for r in registries {
        for scope in &r.scopes {
            text.push_str(&format!("{scope}:registry=https://{}/\n", r.host));
        }
    }
    let mut hosts: Vec<&str> = Vec::new();
    for r in registries {
        if !hosts.contains(&r.host.as_str()) {
            hosts.push(&r.host);
        }
    }
    for host in hosts {
        if let Some(last) = registries.iter().rev().find(|r| r.host == host) {
            text.push_str(&format!("//{host}/:_authToken={}\n", last.token.expose()));
        }
    }
    text
}
