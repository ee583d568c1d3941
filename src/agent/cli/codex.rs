//! The Codex subscription harness (seed 5.4, 4.11.4): its argv, its per-run `CODEX_HOME`, its
//! stdin prompt. The parser of its `exec --json` output is [`super::codex_stream`].

use std::io;
use std::path::Path;

use serde_json::Value;

use super::mcp::codex_mcp_servers;
use super::setup::{
    path_string, subscription_credentials, system_prompt_with_context, write_private,
};
use crate::job::{AgentJob, McpServer};
use crate::owned_dir::create_private;

pub use super::codex_stream::CodexStream;

/// The provider id a `subscriptionBaseUrl` is configured under (the built-in ids such as
/// `openai` cannot be overridden from config.toml).
const PROVIDER_ID: &str = "subscription";

/// The argv after the program name (seed 5.4); `-` makes Codex read the prompt from stdin.
pub fn codex_args(job: &AgentJob) -> Vec<String> {
    [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "--model",
        &job.model,
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The stdin prompt (seed 4.11.4): the system prompt (with the context pointer), a rule, then
/// the user prompt; just the user prompt when there is no system prompt.
pub fn codex_prompt(job: &AgentJob) -> String {
    let system = system_prompt_with_context(job);
    if system.is_empty() {
        job.user_prompt.clone()
    } else {
        format!("{system}\n\n---\n\n{}", job.user_prompt)
    }
}

/// Prepares the per-run `CODEX_HOME` (seed 5.4) and returns the env pairs for the run.
///
/// With ambient auth the CLI uses the operator's own `~/.codex`: nothing is written and no pair
/// is returned. Otherwise `home` (outside the checkout, private to the run) gets `auth.json`
/// (0600) holding the token, which is the only place the token goes, and `config.toml` keeping
/// credentials in that file. A `subscriptionBaseUrl` becomes a custom Responses-API provider
/// that takes its credentials from the same `auth.json` (`requires_openai_auth`), so the token
/// never has to travel in the environment.
pub fn prepare_codex_home(job: &AgentJob, home: &Path) -> io::Result<Vec<(String, String)>> {
    let Some((token, base_url)) = subscription_credentials(job, "codex")? else {
        return Ok(Vec::new());
    };
    create_private(home)?;
    write_private(&home.join("auth.json"), auth_json(token).as_bytes())?;
    let config = config_toml(base_url, &job.mcp_servers)?;
    write_private(&home.join("config.toml"), config.as_bytes())?;
    Ok(vec![("CODEX_HOME".to_owned(), path_string(home)?)])
}

/// The seed writes the token verbatim: a leased subscription is a whole `auth.json` blob. A bare
/// API key would leave Codex an unreadable file, so it is wrapped the way `codex login
/// --with-api-key` stores one.
fn auth_json(token: &str) -> String {
    match serde_json::from_str::<Value>(token) {
        Ok(Value::Object(_)) => token.to_owned(),
        _ => serde_json::json!({ "OPENAI_API_KEY": token }).to_string(),
    }
}

/// Codex's `config.toml`: credentials kept in `auth.json`; no plugin sync and no analytics
/// (without them every run contacts chatgpt.com, api.github.com and ab.chatgpt.com). A
/// `subscriptionBaseUrl` (the Responses API base, with its `/v1`) becomes a custom provider
/// that takes its credentials from the same `auth.json` (`requires_openai_auth`), so the token
/// never has to travel in the environment. The job's stdio MCP servers become `mcp_servers`
/// ([`codex_mcp_servers`]); their env values are secrets too, so this file is 0600 as well.
pub fn config_toml(base_url: Option<&str>, servers: &[McpServer]) -> io::Result<String> {
    let mut config = toml::Table::new();
    config.insert("cli_auth_credentials_store".into(), "file".into());
    let mut features = toml::Table::new();
    features.insert("plugins".into(), false.into());
    config.insert("features".into(), features.into());
    let mut analytics = toml::Table::new();
    analytics.insert("enabled".into(), false.into());
    config.insert("analytics".into(), analytics.into());
    if let Some(url) = base_url {
        config.insert("model_provider".into(), PROVIDER_ID.into());
        let mut provider = toml::Table::new();
        provider.insert("name".into(), PROVIDER_ID.into());
        provider.insert("base_url".into(), url.into());
        provider.insert("wire_api".into(), "responses".into());
        provider.insert("requires_openai_auth".into(), true.into());
        let mut providers = toml::Table::new();
        providers.insert(PROVIDER_ID.into(), provider.into());
        config.insert("model_providers".into(), providers.into());
    }
    if let Some(servers) = codex_mcp_servers(servers) {
        config.insert("mcp_servers".into(), servers.into());
    }
    toml::to_string(&config).map_err(io::Error::other)
}

#[cfg(test)]
#[path = "codex_tests.rs"]
mod tests;
