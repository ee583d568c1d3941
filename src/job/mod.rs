//! The job contract: the generic agent job every mode shares (seed section 2), its validation
//! ([`validate`]), and the outcome types a run publishes ([`outcome`]).
//!
//! The parser rebuilds the job from the body rather than deserialising it directly, so unknown
//! fields are dropped and malformed optional values fall back to their defaults, exactly as the
//! seed does; only the cases of seed section 2.12 refuse a job, plus two of our own, checked
//! after them: a `jobId` over [`MAX_JOB_ID_BYTES`] and a branch name git would refuse.

pub mod capabilities;
pub mod outcome;
pub mod prompts;
pub mod sanitize;
pub mod tools;
pub mod validate;

use serde::Serialize;

use crate::redact::{Redactor, Secret};

pub use sanitize::{sanitize_context_file_name, sanitize_service_directory, PathOutsideRepo};
pub use tools::{McpServer, McpTransport, Skill, SkillResource};
pub use validate::{
    accept_job, parse_job, InvalidJob, RefusalKind, ValidationPolicy, EXPLORE_INFRA_UNSUPPORTED,
    MAX_JOB_ID_BYTES, PREVIEW_UNSUPPORTED,
};

/// What a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Explore,
    Coding,
    Preview,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Explore => "explore",
            Mode::Coding => "coding",
            Mode::Preview => "preview",
        }
    }
}

/// Which agent CLI runs the job. An absent or unrecognised `harness` is Pi.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Harness {
    #[default]
    Pi,
    ClaudeCode,
    Codex,
}

impl Harness {
    pub fn as_str(self) -> &'static str {
        match self {
            Harness::Pi => "pi",
            Harness::ClaudeCode => "claude-code",
            Harness::Codex => "codex",
        }
    }
}

/// The credentials the agent itself uses to reach a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HarnessAuth {
    /// Pi through the model proxy.
    Pi {
        proxy_base_url: String,
        session_token: Secret,
    },
    /// Claude Code or Codex on a leased subscription.
    Subscription {
        harness: Harness,
        subscription_token: Option<Secret>,
        subscription_base_url: Option<String>,
        ambient_auth: bool,
    },
}

impl HarnessAuth {
    pub fn harness(&self) -> Harness {
        match self {
            HarnessAuth::Pi { .. } => Harness::Pi,
            HarnessAuth::Subscription { harness, .. } => *harness,
        }
    }
}

/// VCS provider for opening the pull or merge request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    pub owner: String,
    pub name: String,
    /// The PR base. The coding flows clone `job.branch`, not this.
    pub base_branch: String,
    pub clone_url: String,
    pub provider: Option<Provider>,
    /// Sanitised relative path of a monorepo service; the agent's cwd.
    pub service_directory: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrSpec {
    pub title: String,
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputKind {
    #[default]
    Prose,
    Structured,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputSpec {
    pub kind: OutputKind,
    pub shape_hint: Option<String>,
    pub repair: Option<bool>,
    pub fail_on_unusable_final: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapTarget {
    pub owner: String,
    pub name: String,
    pub clone_url: String,
    pub default_branch: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapSpec {
    pub target: BootstrapTarget,
    pub from_scratch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    /// Sanitised basename (no directories, no dotfiles).
    pub path: String,
    pub title: String,
    pub url: String,
    pub content: String,
}

/// Loosen-only overrides of the progress guard's knobs (each floored, positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuardLimitsSpec {
    pub max_tool_calls_without_edit: Option<u64>,
    pub max_consecutive_errors: Option<u64>,
    pub max_consecutive_web_calls: Option<u64>,
    pub max_consecutive_mcp_calls: Option<u64>,
    pub max_consecutive_non_action_calls: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEnvironment {
    Local,
    Ephemeral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfraSpec {
    pub environment: ServiceEnvironment,
    pub no_infra_dependencies: bool,
    pub compose_path: Option<String>,
    pub environment_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrontendInfraSpec {
    pub package_manager: Option<String>,
    pub install: Option<String>,
    pub build_script: Option<String>,
    pub output_dir: Option<String>,
    pub serve_mode: Option<String>,
    pub serve_script: Option<String>,
    pub serve_port: Option<u16>,
    pub env_injection: Option<String>,
    /// Reserved names (PATH, HOME, LD_PRELOAD, npm_config_*, git_* ...) already dropped.
    pub env: Option<Vec<(String, String)>>,
    pub wiremock_mappings_path: Option<String>,
    pub wiremock_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfraSpec {
    Service(ServiceInfraSpec),
    Frontend(FrontendInfraSpec),
}

/// One secret environment variable of the job's (`testSecrets`, `generatorSecrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    pub key: String,
    pub value: Secret,
}

/// A private npm registry the job's installs may use (`packageRegistries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmRegistry {
    /// Lower-cased, one of the allowed npm hosts.
    pub host: String,
    /// `@org` scopes resolved through it.
    pub scopes: Vec<String>,
    pub token: Secret,
}

/// One pre-PR check (`validationChecks.checks[]`): a shell command run in the agent's
/// directory, named by its label in reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub label: String,
    /// Kept as given (untrimmed): it is the repository's own command line.
    pub command: String,
}

/// `validationChecks` (seed-later 1.1): the checks every attempt runs, and how many attempts
/// (agent passes) the job gets before it gives up on a PR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationChecksSpec {
    pub checks: Vec<CheckSpec>,
    /// 1..=10; the seed's default is 3.
    pub max_attempts: u32,
}

/// A validated generic agent job (seed section 2.1). Field docs name the flows that read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentJob {
    /// Idempotency key and log correlation; the body's value is authoritative.
    pub job_id: String,
    pub mode: Mode,
    /// `""` for preview when absent.
    pub system_prompt: String,
    pub user_prompt: String,
    pub model: String,
    pub auth: HarnessAuth,
    /// Git auth for every host and the PR API.
    pub gh_token: Secret,
    pub repo: RepoSpec,
    /// Branch to clone: the base for new work, or the PR branch itself.
    pub branch: String,
    /// `Some("")` is kept, as the seed keeps it (it then fails the PR open with `api`).
    pub github_api_base: Option<String>,
    pub web_tools_guidance: Option<String>,
    pub web_search: bool,
    pub full: bool,
    pub merge_base: Option<String>,
    pub bootstrap: Option<BootstrapSpec>,
    pub output: Option<OutputSpec>,
    pub context_files: Vec<ContextFile>,
    pub infra: Option<InfraSpec>,
    pub new_branch: Option<String>,
    pub push_branch: Option<String>,
    pub commit_message: Option<String>,
    pub pr: Option<PrSpec>,
    /// `false` only when the body said `noChangesIsError: false`.
    pub no_changes_is_error: bool,
    pub persistent_checkout: bool,
    pub stream_follow_ups: bool,
    pub guard_limits: Option<GuardLimitsSpec>,
    /// Checks run after the agent, before the PR (coding only).
    pub validation_checks: Option<ValidationChecksSpec>,
    /// `dependencyInstall.command`, trimmed: run before the agent, best-effort.
    pub dependency_install: Option<String>,
    /// Environment of an explore job's agent only.
    pub test_secrets: Vec<SecretEnv>,
    /// Environment of every agent, and of the install and the checks.
    pub generator_secrets: Vec<SecretEnv>,
    /// Written as the `.npmrc` of the job's HOME.
    pub package_registries: Vec<NpmRegistry>,
    /// Skills for the agent: Claude Code's config home, or resource files in the checkout.
    pub skills: Vec<Skill>,
    /// MCP tool servers for Claude Code and Codex (Pi has no MCP client).
    pub mcp_servers: Vec<McpServer>,
    /// Capabilities the job needs from its worker (`requiredCapabilities`); a worker without
    /// one of them refuses the job instead of running it without.
    pub required_capabilities: Vec<String>,
}

impl AgentJob {
    /// `P`: the branch the work is pushed to.
    pub fn push_branch(&self) -> &str {
        self.push_branch
            .as_deref()
            .or(self.new_branch.as_deref())
            .unwrap_or(&self.branch)
    }

    /// The clone URL of the repository the job pushes to and records its completion on: a
    /// bootstrap's target (it only clones from `repo`), else `repo`'s.
    pub fn push_clone_url(&self) -> &str {
        match &self.bootstrap {
            Some(bootstrap) => &bootstrap.target.clone_url,
            None => &self.repo.clone_url,
        }
    }

    /// `M`: the safety-net commit message.
    pub fn safety_net_message(&self) -> &str {
        self.commit_message
            .as_deref()
            .or(self.pr.as_ref().map(|p| p.title.as_str()))
            .unwrap_or("Agent changes")
    }

    /// The redactor for everything this job publishes or logs: patterns plus every secret the
    /// job carries, by value (a strict improvement on the seed, Q15).
    pub fn redactor(&self) -> Redactor {
        let mut r = Redactor::patterns_only().with_secret(&self.gh_token);
        let own = self
            .test_secrets
            .iter()
            .chain(&self.generator_secrets)
            .map(|e| &e.value)
            .chain(self.package_registries.iter().map(|r| &r.token))
            .chain(self.mcp_servers.iter().flat_map(McpServer::secret_values));
        for secret in own {
            r = r.with_secret(secret);
        }
        match &self.auth {
            HarnessAuth::Pi { session_token, .. } => r = r.with_secret(session_token),
            HarnessAuth::Subscription {
                subscription_token: Some(t),
                ..
            } => r = r.with_secret(t),
            HarnessAuth::Subscription { .. } => {}
        }
        r
    }

    /// `owner/name`, for logs.
    pub fn repo_slug(&self) -> String {
        format!("{}/{}", self.repo.owner, self.repo.name)
    }
}
