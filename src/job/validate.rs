//! `parse_job`: the seed's hand-written validator (seed section 2), with its exact refusal
//! texts, its validation order, and its silent dropping of malformed optional values.
//!
//! The body is read as a `serde_json::Value` and the job rebuilt field by field rather than
//! deserialised into the types, because the seed's rules (first failure wins, in a fixed order;
//! a malformed optional value falls back to its default) do not fit a derived deserialiser.
//! serde_json's recursion limit keeps hostile nesting from reaching the stack.
//!
//! Two rules are not the seed's and run after all of its rules: the `jobId` bound (the AMQP ids
//! derived from it must fit a short string) and git's rules for every branch name (module `branch`).

mod branch;
mod optional;
mod refusal;
mod secrets;
mod supported;
#[cfg(test)]
mod tests;
mod tools;

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use url::Url;

use super::sanitize::sanitize_service_directory;
use super::{
    AgentJob, BootstrapSpec, BootstrapTarget, Harness, HarnessAuth, Mode, PrSpec, Provider,
    RepoSpec,
};
use crate::redact::Secret;
use refusal::Refusal;
pub use refusal::{InvalidJob, RefusalKind};
pub use secrets::render_npmrc;
pub use supported::{accept_job, EXPLORE_INFRA_UNSUPPORTED, PREVIEW_UNSUPPORTED};
pub use tools::{allowed_mcp_url, is_allowed_mcp_url, is_mcp_server_id};

type Object = Map<String, Value>;

/// The longest `jobId` accepted, in bytes. Every AMQP id the worker derives from it must fit a
/// 255-byte short string, and the widest, `<jobId>:progress:<u32>:<u64>`, adds 41 bytes.
pub const MAX_JOB_ID_BYTES: usize = 200;

/// What validation needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationPolicy {
    /// Lower-cased host names a token may be sent to (`github.com` and `api.github.com` are
    /// always in; the config list, `GITHUB_ENTERPRISE_HOST` and `GITHUB_ALLOWED_HOSTS` add more).
    /// `file://` URLs are always allowed.
    pub allowed_hosts: BTreeSet<String>,
    /// Bodies longer than this are refused before they are parsed.
    pub max_body_bytes: usize,
    /// Lower-cased npm registry hosts a `packageRegistries` token may be for
    /// (`registry.npmjs.org` and `npm.pkg.github.com`, plus `job.npm_registry_hosts`).
    pub npm_hosts: BTreeSet<String>,
}

impl ValidationPolicy {
    /// The defaults plus `extra` hosts (trimmed, lower-cased, empties ignored).
    pub fn with_hosts<I, S>(extra: I, max_body_bytes: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut allowed_hosts: BTreeSet<String> = ["github.com", "api.github.com"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for h in extra {
            let h = h.as_ref().trim().to_ascii_lowercase();
            if !h.is_empty() {
                allowed_hosts.insert(h);
            }
        }
        Self {
            allowed_hosts,
            max_body_bytes,
            npm_hosts: ["registry.npmjs.org", "npm.pkg.github.com"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// The same with `extra` npm registry hosts (trimmed, lower-cased, empties ignored).
    pub fn with_npm_hosts<I, S>(mut self, extra: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for h in extra {
            let h = h.as_ref().trim().to_ascii_lowercase();
            if !h.is_empty() {
                self.npm_hosts.insert(h);
            }
        }
        self
    }
}

/// Validates a job body.
pub fn parse_job(body: &[u8], policy: &ValidationPolicy) -> Result<AgentJob, InvalidJob> {
    let refuse = |job_id: Option<String>, r: Refusal| InvalidJob {
        job_id,
        message: r.to_string(),
        kind: r.kind(),
    };
    if body.len() > policy.max_body_bytes {
        return Err(refuse(None, Refusal::TooLarge(policy.max_body_bytes)));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| refuse(None, Refusal::NotJson(e)))?;
    let Value::Object(o) = &value else {
        return Err(refuse(None, Refusal::NotObject));
    };
    // Read up front so a refusal for any field can still be reported against the job.
    let job_id = nes(o.get("jobId")).map(str::to_owned);
    parse_object(o, policy).map_err(|r| refuse(job_id, r))
}

/// The seed's validation order (section 2.0): the first failure wins.
fn parse_object(o: &Object, policy: &ValidationPolicy) -> Result<AgentJob, Refusal> {
    if let Some(kind) = o.get("kind") {
        if kind.as_str() != Some("agent") {
            let shown = match kind {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Err(Refusal::UnknownKind(shown));
        }
    }
    let mode = match o.get("mode").and_then(Value::as_str) {
        Some("explore") => Mode::Explore,
        Some("coding") => Mode::Coding,
        Some("preview") => Mode::Preview,
        _ => return Err(Refusal::Mode),
    };
    let output = optional::output(o.get("output"));
    let pr = parse_pr(o.get("pr"))?;
    let infra = optional::infra(o.get("infra"));
    let bootstrap = parse_bootstrap(o.get("bootstrap"))?;
    let context_files = optional::context_files(o.get("contextFiles"));
    // Before the jobId, in the seed's order: a bad entry is reported first.
    let package_registries =
        secrets::package_registries(o.get("packageRegistries"), &policy.npm_hosts)?;
    let skills = tools::skills(o.get("skills"));
    let mcp_servers = tools::mcp_servers(o.get("mcpServers"));
    let test_secrets = secrets::secret_env(o.get("testSecrets"), "testSecrets")?;
    let generator_secrets = secrets::secret_env(o.get("generatorSecrets"), "generatorSecrets")?;
    let guard_limits = optional::guard_limits(o.get("guardLimits"));
    let validation_checks = optional::validation_checks(o.get("validationChecks"));
    let dependency_install = optional::dependency_install(o.get("dependencyInstall"));
    let job_id = required(o, "jobId", "jobId")?;
    let (system_prompt, user_prompt, model) = if mode == Mode::Preview {
        // Preview runs no agent: the prompts are optional there.
        let or_empty = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        (
            or_empty("systemPrompt"),
            or_empty("userPrompt"),
            or_empty("model"),
        )
    } else {
        (
            required(o, "systemPrompt", "systemPrompt")?,
            required(o, "userPrompt", "userPrompt")?,
            required(o, "model", "model")?,
        )
    };
    let auth = parse_auth(o)?;
    let gh_token = Secret::new(required(o, "ghToken", "ghToken")?);
    let repo = parse_repo(o.get("repo"))?;
    let branch = required(o, "branch", "branch")?;
    let github_api_base = o
        .get("githubApiBase")
        .and_then(Value::as_str)
        .map(str::to_owned);

    // Clone URLs are kept in the form the host check read them, so libgit2 (with a parser of
    // its own) cannot see another host, or no host, in a lenient spelling such as
    // `https:github.com/a/b` or `https:\\github.com/a/b`.
    let mut repo = repo;
    repo.clone_url = check_host(&repo.clone_url, "repo.cloneUrl", policy)?;
    if let Some(base) = github_api_base.as_deref().filter(|b| !b.is_empty()) {
        check_host(base, "githubApiBase", policy)?;
    }
    let mut bootstrap = bootstrap;
    if let Some(b) = bootstrap.as_mut() {
        b.target.clone_url = check_host(&b.target.clone_url, "bootstrap.target.cloneUrl", policy)?;
    }

    // Not seed rules: checked after all of them, so a body the seed refuses keeps its text.
    if job_id.len() > MAX_JOB_ID_BYTES {
        return Err(Refusal::JobIdTooLong);
    }
    let merge_base = nes(o.get("mergeBase")).map(str::to_owned);
    let new_branch = nes(o.get("newBranch")).map(str::to_owned);
    let push_branch = nes(o.get("pushBranch")).map(str::to_owned);
    let branch_names = [
        (
            "bootstrap.target.defaultBranch",
            bootstrap.as_ref().map(|b| b.target.default_branch.as_str()),
        ),
        ("repo.baseBranch", Some(repo.base_branch.as_str())),
        ("branch", Some(branch.as_str())),
        ("mergeBase", merge_base.as_deref()),
        ("newBranch", new_branch.as_deref()),
        ("pushBranch", push_branch.as_deref()),
    ];
    for (path, name) in branch_names {
        if name.is_some_and(|n| !branch::is_valid_branch_name(n)) {
            return Err(Refusal::BranchName(path));
        }
    }

    Ok(AgentJob {
        job_id,
        mode,
        system_prompt,
        user_prompt,
        model,
        auth,
        gh_token,
        repo,
        branch,
        github_api_base,
        web_tools_guidance: o
            .get("webToolsGuidance")
            .and_then(Value::as_str)
            .map(str::to_owned),
        web_search: is_true(o.get("webSearch")),
        full: is_true(o.get("full")),
        merge_base,
        bootstrap,
        output,
        context_files,
        infra,
        new_branch,
        push_branch,
        commit_message: nes(o.get("commitMessage")).map(str::to_owned),
        pr,
        no_changes_is_error: o.get("noChangesIsError") != Some(&Value::Bool(false)),
        persistent_checkout: is_true(o.get("persistentCheckout")),
        stream_follow_ups: is_true(o.get("streamFollowUps")),
        guard_limits,
        validation_checks,
        dependency_install,
        test_secrets,
        generator_secrets,
        package_registries,
        skills,
        mcp_servers,
        required_capabilities: optional::strings(o.get("requiredCapabilities")),
    })
}

/// A JSON object. Arrays are not objects here: the body check refuses them, and the nested
/// checks follow the same rule.
fn object(v: Option<&Value>) -> Option<&Object> {
    v.and_then(Value::as_object)
}

/// A non-empty string ("NES"); whitespace-only counts as non-empty, as in the seed.
fn nes(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn is_true(v: Option<&Value>) -> bool {
    v == Some(&Value::Bool(true))
}

fn required(o: &Object, key: &str, path: &'static str) -> Result<String, Refusal> {
    nes(o.get(key))
        .map(str::to_owned)
        .ok_or(Refusal::Required(path))
}

fn parse_pr(v: Option<&Value>) -> Result<Option<PrSpec>, Refusal> {
    let Some(pr) = object(v) else {
        return Ok(None);
    };
    Ok(Some(PrSpec {
        title: required(pr, "title", "pr.title")?,
        body: pr
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }))
}

/// The target's fields only; its clone URL is host-checked last, with the others.
fn parse_bootstrap(v: Option<&Value>) -> Result<Option<BootstrapSpec>, Refusal> {
    let Some(b) = object(v) else {
        return Ok(None);
    };
    let empty = Object::new();
    let t = object(b.get("target")).unwrap_or(&empty);
    let target = BootstrapTarget {
        owner: required(t, "owner", "bootstrap.target.owner")?,
        name: required(t, "name", "bootstrap.target.name")?,
        clone_url: required(t, "cloneUrl", "bootstrap.target.cloneUrl")?,
        default_branch: required(t, "defaultBranch", "bootstrap.target.defaultBranch")?,
    };
    Ok(Some(BootstrapSpec {
        target,
        from_scratch: is_true(b.get("fromScratch")),
    }))
}

/// Seed section 2.3: a subscription harness needs its token (unless ambient), anything else is
/// Pi and needs the proxy pair; the other harness's fields are dropped.
fn parse_auth(o: &Object) -> Result<HarnessAuth, Refusal> {
    let harness = match o.get("harness").and_then(Value::as_str) {
        Some("claude-code") => Harness::ClaudeCode,
        Some("codex") => Harness::Codex,
        _ => {
            return Ok(HarnessAuth::Pi {
                proxy_base_url: required(o, "proxyBaseUrl", "proxyBaseUrl")?,
                session_token: Secret::new(required(o, "sessionToken", "sessionToken")?),
            })
        }
    };
    // Ambient: the CLI's own login, so the job carries nothing else (seed: `{harness, ambientAuth}`).
    if is_true(o.get("ambientAuth")) {
        return Ok(HarnessAuth::Subscription {
            harness,
            subscription_token: None,
            subscription_base_url: None,
            ambient_auth: true,
        });
    }
    Ok(HarnessAuth::Subscription {
        harness,
        subscription_token: Some(Secret::new(required(
            o,
            "subscriptionToken",
            "subscriptionToken",
        )?)),
        subscription_base_url: nes(o.get("subscriptionBaseUrl")).map(str::to_owned),
        ambient_auth: false,
    })
}

fn parse_repo(v: Option<&Value>) -> Result<RepoSpec, Refusal> {
    // The seed reads `o.repo ?? {}`: a missing repo fails on its first field.
    let empty = Object::new();
    let r = object(v).unwrap_or(&empty);
    let owner = required(r, "owner", "repo.owner")?;
    let name = required(r, "name", "repo.name")?;
    let base_branch = required(r, "baseBranch", "repo.baseBranch")?;
    let clone_url = required(r, "cloneUrl", "repo.cloneUrl")?;
    let provider = match r.get("provider") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "github" => Some(Provider::Github),
        Some(Value::String(s)) if s == "gitlab" => Some(Provider::Gitlab),
        Some(_) => return Err(Refusal::Provider),
    };
    let service_directory = match r.get("serviceDirectory").and_then(Value::as_str) {
        Some(raw) => sanitize_service_directory(raw).map_err(|_| Refusal::ServiceDirectory)?,
        None => None,
    };
    Ok(RepoSpec {
        owner,
        name,
        base_branch,
        clone_url,
        provider,
        service_directory,
    })
}

/// Seed section 2.10: the ghToken goes to these URLs, so their host must be allowed. The `url`
/// crate parses as WHATWG `URL` does (host lower-cased, IDNs to punycode).
/// Returns the URL as parsed (its canonical serialisation).
fn check_host(raw: &str, path: &'static str, policy: &ValidationPolicy) -> Result<String, Refusal> {
    let url = Url::parse(raw).map_err(|_| Refusal::NotUrl(path))?;
    match url.scheme() {
        // Local: no token leaves the machine.
        "file" => Ok(url.to_string()),
        "https" | "http" => {
            let host = url.host_str().unwrap_or("").to_ascii_lowercase();
            if policy.allowed_hosts.contains(&host) {
                Ok(url.to_string())
            } else {
                Err(Refusal::Host { path, host })
            }
        }
        _ => Err(Refusal::Scheme(path)),
    }
}
