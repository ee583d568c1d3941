//! The per-job HOME Pi runs with (seed 4.11.2, contract section 5): `~/.pi/agent/AGENTS.md`
//! (the job's instructions), `~/.pi/agent/models.json` (the proxy provider, mode 0600, holding
//! the session token, which reaches Pi nowhere else), the web-tools provider choice, and links
//! to the worker user's installed Pi extensions. One HOME per job, so concurrent jobs never
//! overwrite each other's prompt or model (seed Q14).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::stream::PI_MAX_OUTPUT_TOKENS;
use crate::job::{AgentJob, HarnessAuth};

/// Entries of the user's `~/.pi/agent` that are never linked into a job's agent dir: the job
/// writes its own AGENTS.md and models.json; `auth.json` holds the user's provider credentials
/// and `sessions/` earlier runs' transcripts, neither of which a job should see.
const NOT_LINKED: [&str; 4] = ["AGENTS.md", "models.json", "auth.json", "sessions"];

/// Web search providers in detection priority, with the variable that enables each.
const WEB_SEARCH_PROVIDERS: [(&str, &str); 10] = [
    ("brave", "BRAVE_SEARCH_API_KEY"),
    ("tavily", "TAVILY_API_KEY"),
    ("exa", "EXA_API_KEY"),
    ("serper", "SERPER_API_KEY"),
    ("perplexity", "PERPLEXITY_API_KEY"),
    ("youcom", "YOUCOM_API_KEY"),
    ("jina", "JINA_API_KEY"),
    ("firecrawl", "FIRECRAWL_API_KEY"),
    ("searxng", "SEARXNG_URL"),
    ("ollama", "OLLAMA_HOST"),
];

/// `<home>/.pi/agent`, the directory Pi reads its global configuration from.
pub fn pi_agent_dir(home: &Path) -> PathBuf {
    home.join(".pi").join("agent")
}

/// Prepares `home` for a Pi run, detecting the web-search provider from the worker's
/// environment (seed 4.11.2 item 1); a job with `webSearch: true` gets the model proxy's
/// search (`<proxyBaseUrl>/web-search`) when the worker's environment names no provider.
pub fn prepare_pi_home(
    job: &AgentJob,
    home: &Path,
    user_pi_agent_dir: Option<&Path>,
) -> io::Result<()> {
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let provider = detect_web_search_provider(env);
    prepare_pi_home_with(job, home, user_pi_agent_dir, provider.as_deref())
}

/// The proxy-backed search of a `webSearch: true` Pi job: SearXNG at
/// `<proxyBaseUrl without trailing slashes>/web-search`, authorised with the session token
/// (seed 4.11.2). `None` for other jobs.
pub fn proxy_web_search(job: &AgentJob) -> Option<(String, &crate::redact::Secret)> {
    match &job.auth {
        HarnessAuth::Pi {
            proxy_base_url,
            session_token,
        } if job.web_search => Some((
            format!("{}/web-search", proxy_base_url.trim_end_matches('/')),
            session_token,
        )),
        _ => None,
    }
}

/// Prepares `home` for a Pi run with an explicit web-search provider (`None`: web tools off).
///
/// Writes `.pi/agent/AGENTS.md`, `.pi/agent/models.json` (0600), and, with a provider,
/// `.config/rpiv-web-tools/config.json` (0600, the provider id only); links every entry of
/// `user_pi_agent_dir` (when it exists) except those in [`NOT_LINKED`]. Safe to call again on
/// the same HOME.
pub fn prepare_pi_home_with(
    job: &AgentJob,
    home: &Path,
    user_pi_agent_dir: Option<&Path>,
    web_search_provider: Option<&str>,
) -> io::Result<()> {
    let agent_dir = pi_agent_dir(home);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&agent_dir)?;
    if let Some(user_dir) = user_pi_agent_dir.filter(|d| d.is_dir()) {
        link_user_entries(user_dir, &agent_dir)?;
    }
    let provider_for_guidance = web_search_provider.or(proxy_web_search(job).map(|_| "searxng"));
    crate::owned_dir::replace_file(
        &agent_dir.join("AGENTS.md"),
        compose_agents_md(job, provider_for_guidance).as_bytes(),
        0o644,
    )?;
    crate::owned_dir::replace_file(&agent_dir.join("models.json"), &models_json(job)?, 0o600)?;
    let web_search_provider = web_search_provider.or(proxy_web_search(job).map(|_| "searxng"));
    if let Some(provider) = web_search_provider {
        let dir = home.join(".config").join("rpiv-web-tools");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let mut config = json!({ "provider": provider });
        // The proxy's search is configured in this file (0600, in the job's own HOME), not
        // in the agent's environment, which every tool it runs would inherit: like the
        // session token in models.json. An explicitly chosen provider keeps its own key.
        if let (Some((url, token)), "searxng") = (proxy_web_search(job), provider) {
            config["baseUrls"] = json!({ "searxng": url });
            config["apiKeys"] = json!({ "searxng": token.expose() });
        }
        crate::owned_dir::replace_file(
            &dir.join("config.json"),
            &serde_json::to_vec_pretty(&config)?,
            0o600,
        )?;
    }
    Ok(())
}

/// Pi's provider file: the `proxy` provider with the session token as a literal `apiKey`.
fn models_json(job: &AgentJob) -> io::Result<Vec<u8>> {
    let HarnessAuth::Pi {
        proxy_base_url,
        session_token,
    } = &job.auth
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the job has no model-proxy credentials for Pi",
        ));
    };
    let doc = json!({
        "providers": {
            "proxy": {
                "baseUrl": proxy_base_url,
                "api": "openai-completions",
                "apiKey": pi_literal(session_token.expose()),
                "compat": {"supportsDeveloperRole": false, "supportsReasoningEffort": false},
                "models": [{"id": job.model, "name": job.model, "maxTokens": PI_MAX_OUTPUT_TOKENS}],
            }
        }
    });
    Ok(serde_json::to_vec_pretty(&doc)?)
}

/// Pi reads `apiKey` as a template: a leading `!` runs a shell command and `$NAME` expands
/// from the environment. `$$` and `$!` are its escapes for a literal `$` and `!`, so any token
/// reaches the model proxy byte for byte (proven against the real CLI in `real_pi`).
pub fn pi_literal(value: &str) -> String {
    value.replace('$', "$$").replace('!', "$!")
}

/// Links the user's installed extensions, settings and the like into the job's agent dir.
fn link_user_entries(user_dir: &Path, agent_dir: &Path) -> io::Result<()> {
    let user_dir = fs::canonicalize(user_dir)?;
    if fs::canonicalize(agent_dir)? == user_dir {
        return Ok(());
    }
    for entry in fs::read_dir(&user_dir)? {
        let name: OsString = entry?.file_name();
        if NOT_LINKED.iter().any(|n| name == *n) {
            continue;
        }
        let target = user_dir.join(&name);
        let link = agent_dir.join(&name);
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if fs::read_link(&link)? == target {
                    continue;
                }
                fs::remove_file(&link)?;
            }
            // Something the job itself created there; leave it alone.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::os::unix::fs::symlink(&target, &link)?;
    }
    Ok(())
}

/// The web-search provider `rpiv-web-tools` should use, from environment pairs: an explicit
/// `WEB_SEARCH_PROVIDER` wins when its credential variable is set (an unknown id is taken as
/// is); otherwise the first provider, in priority order, whose variable is non-blank.
pub fn detect_web_search_provider<I, K, V>(env: I) -> Option<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    let set = |name: &str| env.iter().any(|(k, v)| k == name && !v.trim().is_empty());
    let explicit = env
        .iter()
        .find(|(k, _)| k == "WEB_SEARCH_PROVIDER")
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty());
    if let Some(id) = explicit {
        match WEB_SEARCH_PROVIDERS.iter().find(|(p, _)| *p == id) {
            Some((_, var)) if set(var) => return Some(id),
            Some(_) => {}
            None => return Some(id),
        }
    }
    WEB_SEARCH_PROVIDERS
        .iter()
        .find(|(_, var)| set(var))
        .map(|(p, _)| (*p).to_owned())
}

const BLUEPRINT_GUIDANCE: &str = "\n\n## Service blueprint (read first, stay shallow)\n\
If the repository has a `blueprints/` directory, read `blueprints/overview.md` first: it maps \
the service's modules and how they fit together. Open `blueprints/modules/<name>.md` only for \
the modules your task touches. `blueprints/version.json` is a manifest, not documentation. Do \
not read the whole blueprint up front.";

const SPEC_GUIDANCE: &str = "\n\n## Service specification (the prescriptive spec)\n\
If the repository has a `spec/` directory, it says how the service must behave. Read \
`spec/overview.md` first, then `spec/modules/<module>/<feature>.md` (or `.json`) for the \
feature at hand. The Gherkin scenarios in `spec/features/<module>/<feature>.feature` are the \
acceptance criteria and the source of truth: where code and spec disagree, the spec wins.";

const TODO_GUIDANCE: &str = "\n\n## Progress tracking (required)\n\
Track your work with the `todo` tool: it is the only progress signal anyone watching this run \
sees. Before you change any code, `create` one task per subtask. As you go, `update` each task \
to `in_progress` when you start it and to `completed` when it is done, and keep the list \
current until the end.";

const WEB_TOOLS_GUIDANCE: &str = "\n\n## Web search & fetch (use sparingly)\n\
You have `web_search` and `web_fetch`. Use them only when the repository cannot answer the \
question (an external API, a library's behaviour, an unfamiliar error). Prefer first-party \
documentation, cite the URLs you relied on, and do not research instead of doing the work.";

/// The job's global `AGENTS.md` (seed 4.11.2 item 2). Pi reads it in addition to the
/// repository's own `AGENTS.md`/`CLAUDE.md`.
pub fn compose_agents_md(job: &AgentJob, web_search_provider: Option<&str>) -> String {
    let mut out = job.system_prompt.clone();
    out.push_str(BLUEPRINT_GUIDANCE);
    out.push_str(SPEC_GUIDANCE);
    out.push_str(TODO_GUIDANCE);
    if let Some(dir) = job.repo.service_directory.as_deref() {
        out.push_str(&format!(
            "\n\n## Monorepo service (work within your subdirectory)\n\
             This repository is a monorepo and your task concerns the service in `{dir}/`, \
             which is your working directory. Keep your changes inside `{dir}/`. Build, test \
             and lint with that service's own scripts and tooling. Touch shared or root-level \
             files only when the task truly requires it."
        ));
    }
    if web_search_provider.is_some() {
        match job
            .web_tools_guidance
            .as_deref()
            .filter(|g| !g.trim().is_empty())
        {
            Some(custom) => {
                out.push_str("\n\n");
                out.push_str(custom);
            }
            None => out.push_str(WEB_TOOLS_GUIDANCE),
        }
    }
    if !job.context_files.is_empty() {
        out.push_str(
            "\n\n## Linked context (read on demand)\n\
             Requirements, RFCs, PRDs and tracker issues for this task are saved in the \
             `.cat-context/` directory. Open a file when you need it:\n",
        );
        for file in &job.context_files {
            out.push_str(&format!(
                "- `.cat-context/{}` \u{2014} {}",
                file.path, file.title
            ));
            if !file.url.is_empty() {
                out.push_str(&format!(" ({})", file.url));
            }
            out.push('\n');
        }
        out.push_str(
            "These files are your copy of that material: do not try to reach Jira, \
             Confluence or GitHub for it.",
        );
    }
    out
}

#[cfg(test)]
#[path = "home_tests.rs"]
mod tests;
