//! The tools a job brings for its agent (seed-later 10): skills (instructions and resource
//! files) and MCP tool servers. Parsed by `validate::tools`; placed per harness by the agent
//! runners and the worker.

use crate::redact::Secret;

/// One skill (`skills[]`): a named set of instructions and the files they refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    /// Sanitised: `[A-Za-z0-9._-]+`, never dotted, unique within the job.
    pub name: String,
    /// `""` when absent.
    pub description: String,
    /// Non-empty.
    pub instructions: String,
    pub resources: Vec<SkillResource>,
}

/// One file of a skill, at `<skill dir>/<rel_path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillResource {
    /// `/`-separated segments, each sanitised like a skill name: no `..`, no dotfiles, no
    /// empty segment, so it cannot leave the skill's directory.
    pub rel_path: String,
    pub content: String,
}

impl SkillResource {
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.rel_path.split('/')
    }
}

/// One MCP tool server (`mcpServers[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    /// `^[a-z0-9][a-z0-9_-]{0,63}$`, unique within the job.
    pub id: String,
    pub transport: McpTransport,
    /// Tools the agent may call on this server; `None` means all of them.
    pub allowed_tools: Option<Vec<String>>,
    /// Names in `env` (stdio) or `headers` (http) whose values are secrets.
    pub secret_keys: Vec<String>,
}

/// How the CLI reaches a server. Env and header values are held as [`Secret`]s whether or not
/// `secretKeys` names them, so none can reach a log through `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// A command the CLI spawns and speaks to over stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        env: Vec<(String, Secret)>,
    },
    /// A streamable-HTTP endpoint; `url` passed the URL rule (https, or http on loopback) and
    /// is kept in its parsed (canonical) form.
    Http {
        url: String,
        headers: Vec<(String, Secret)>,
    },
}

impl McpServer {
    /// The values `secret_keys` names (`env[key]`, else `headers[key]`), non-empty ones only:
    /// registered with the job's redactor.
    pub fn secret_values(&self) -> Vec<&Secret> {
        let pairs = match &self.transport {
            McpTransport::Stdio { env, .. } => env,
            McpTransport::Http { headers, .. } => headers,
        };
        self.secret_keys
            .iter()
            .filter_map(|key| pairs.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v)
            .filter(|v| !v.expose().is_empty())
            .collect()
    }
}
