//! The Claude Code subscription harness (seed 5.3, 4.11.3): its argv, its isolated config home,
//! its system prompt and the environment every run gets. Its `stream-json` parser is
//! [`super::claude_stream`]; spawning and supervision are the runner's ([`super::runner`]).
//! Everything here is synchronous and process-free.

use std::io;
use std::path::Path;

use super::mcp::{claude_allowed_tools, claude_mcp_config, claude_mcp_config_path};
use super::setup::{
    path_string, subscription_credentials, system_prompt_with_context, write_private,
};
use crate::agent::skills::write_claude_skills;
use crate::job::AgentJob;
use crate::owned_dir::create_private;

/// The argv after the program name (seed 5.3). The user prompt goes in on stdin; the system
/// prompt is an argv value, as the CLI offers no other way to append one. `mcp_config` is the
/// file [`prepare_claude_home`] wrote the job's MCP servers to
/// ([`super::mcp::claude_mcp_config_path`]); the servers' env and headers stay in that file.
pub fn claude_args(job: &AgentJob, system_prompt: &str, mcp_config: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        // The API's own message events: each call's final output count is only there.
        "--include-partial-messages",
        "--permission-mode",
        "bypassPermissions",
        "--model",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(job.model.clone());
    if !system_prompt.is_empty() {
        args.push("--append-system-prompt".into());
        args.push(system_prompt.to_owned());
    }
    if let Some(path) = mcp_config {
        args.push("--mcp-config".into());
        args.push(path.to_string_lossy().into_owned());
        // Only the job's servers, never ones from the project's or the user's settings.
        args.push("--strict-mcp-config".into());
        if let Some(tools) = claude_allowed_tools(&job.mcp_servers) {
            args.push("--allowedTools".into());
            args.push(tools);
        }
    }
    args
}

/// The `--append-system-prompt` value.
pub fn claude_system_prompt(job: &AgentJob) -> String {
    system_prompt_with_context(job)
}

/// Prepares the isolated config home (seed 5.3) and returns the env pairs for the run.
///
/// With ambient auth the CLI uses the operator's own login: nothing is written and no pair is
/// returned. Otherwise `home` (outside the checkout, private to the run) gets a `.claude.json`
/// (0600) that skips the onboarding and trust prompts, and the token travels only in the
/// returned env: `ANTHROPIC_AUTH_TOKEN` beside `ANTHROPIC_BASE_URL` for an Anthropic-compatible
/// vendor, `CLAUDE_CODE_OAUTH_TOKEN` otherwise. `subscriptionBaseUrl` is the API's origin
/// without `/v1` (the CLI calls `<base>/v1/messages`).
///
/// The job's MCP servers go to `home/mcp-servers.json` (0600) in both cases: with ambient auth
/// `home` is then only a private per-run directory, not the CLI's config home. Skills go to
/// `home/skills/` only with the job's credentials (the ambient CLI reads the operator's own
/// config home; its skill resources go into the checkout instead, written by the worker).
pub fn prepare_claude_home(job: &AgentJob, home: &Path) -> io::Result<Vec<(String, String)>> {
    let credentials = subscription_credentials(job, "claude-code")?;
    if let Some(path) = claude_mcp_config_path(job, home) {
        // Checked here so the argv names exactly this file (it is passed as a string).
        path_string(&path)?;
        create_private(home)?;
        write_private(&path, claude_mcp_config(&job.mcp_servers).as_bytes())?;
    }
    let Some((token, base_url)) = credentials else {
        return Ok(Vec::new());
    };
    create_private(home)?;
    write_claude_skills(home, &job.skills);
    let onboarding = serde_json::json!({
        "hasCompletedOnboarding": true,
        "bypassPermissionsModeAccepted": true,
        "hasTrustDialogAccepted": true,
    });
    write_private(
        &home.join(".claude.json"),
        onboarding.to_string().as_bytes(),
    )?;

    let mut env = vec![("CLAUDE_CONFIG_DIR".to_owned(), path_string(home)?)];
    match base_url {
        Some(url) => {
            env.push(("ANTHROPIC_BASE_URL".into(), url.to_owned()));
            env.push(("ANTHROPIC_AUTH_TOKEN".into(), token.to_owned()));
        }
        None => env.push(("CLAUDE_CODE_OAUTH_TOKEN".into(), token.to_owned())),
    }
    Ok(env)
}

/// What every Claude Code run gets in its environment, whatever its credentials (ambient auth
/// included): `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, without which each run makes an
/// extra title-generation call to the model API and looks up api.anthropic.com; and, for a
/// worker running as root, `IS_SANDBOX=1`, without which `--permission-mode bypassPermissions`
/// exits 1 ("cannot be used with root/sudo privileges").
pub fn claude_run_env(as_root: bool) -> Vec<(String, String)> {
    let mut env = vec![(
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
        "1".to_owned(),
    )];
    if as_root {
        env.push(("IS_SANDBOX".to_owned(), "1".to_owned()));
    }
    env
}

#[cfg(test)]
#[path = "claude_tests.rs"]
mod tests;
