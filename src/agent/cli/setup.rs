//! What the Claude Code and Codex harnesses share to set a run up: where each CLI's per-run
//! config home goes, the [`OwnedDir`] that removes it when the run ends, its preparation off
//! the async runtime, the credentials a job carries, private files, and the system prompt with
//! the context pointer.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::agent::invocation::Invocation;
use crate::agent::AgentError;
use crate::job::{AgentJob, HarnessAuth};
use crate::owned_dir::OwnedDir;

/// Claude Code's config home (`CLAUDE_CONFIG_DIR`), inside the job's HOME.
pub const CLAUDE_HOME_DIR: &str = ".claude";
/// Codex's `CODEX_HOME` inside the job's HOME, when no [`Invocation::codex_home_root`] is set.
pub const CODEX_HOME_DIR: &str = ".codex";

/// Codex's `CODEX_HOME` for one run: a directory of its own under
/// [`Invocation::codex_home_root`] (named after the job, unique per run, so duplicate
/// deliveries never share one), or `<home_dir>/.codex` without a root.
pub fn codex_home_for(job: &AgentJob, inv: &Invocation) -> PathBuf {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let Some(root) = &inv.codex_home_root else {
        return inv.home_dir.join(CODEX_HOME_DIR);
    };
    let safe = crate::job::sanitize::dir_component(&job.job_id);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    root.join(format!("{safe}-{}-{run}", std::process::id()))
}

/// A CLI's config home for one run, made (0700) when the home is prepared and removed when the
/// run ends: by [`OwnedDir::remove`], or, when the run's future is dropped (the worker shutting
/// down), on drop.
pub(super) fn config_home(path: PathBuf) -> OwnedDir {
    OwnedDir::claim(path, "the agent's config home")
}

pub(super) type PrepareHome = fn(&AgentJob, &Path) -> io::Result<Vec<(String, String)>>;

/// Writes the CLI's config home off the async runtime and gives it to the agents' user (when
/// the sandbox runs agents as another user); returns its env pairs.
pub(super) async fn prepare_home(
    job: &AgentJob,
    inv: &Invocation,
    home: PathBuf,
    prepare: PrepareHome,
) -> Result<Vec<(String, String)>, AgentError> {
    let job = job.clone();
    let sandbox = inv.sandbox.clone();
    let roots: Vec<PathBuf> = inv.codex_home_root.iter().cloned().collect();
    tokio::task::spawn_blocking(move || {
        let env = prepare(&job, &home)?;
        sandbox.hand_over(&[home], &roots)?;
        Ok(env)
    })
    .await
    .map_err(|e| AgentError::Io {
        context: "preparing the agent's config home failed",
        source: io::Error::other(e.to_string()),
    })?
    .map_err(|source| AgentError::Io {
        context: "cannot prepare the agent's config home",
        source,
    })
}

/// The subscription token and base URL, `None` for ambient auth, or the seed's runtime refusal
/// when the job carries no usable credential (the parser normally makes that unreachable).
pub(super) fn subscription_credentials<'a>(
    job: &'a AgentJob,
    harness: &str,
) -> io::Result<Option<(&'a str, Option<&'a str>)>> {
    let refusal = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{harness} harness requires a subscription token (or ambientAuth)"),
        )
    };
    match &job.auth {
        HarnessAuth::Subscription {
            ambient_auth: true, ..
        } => Ok(None),
        HarnessAuth::Subscription {
            subscription_token: Some(token),
            subscription_base_url,
            ..
        } if !token.expose().is_empty() => Ok(Some((
            token.expose(),
            subscription_base_url.as_deref().filter(|u| !u.is_empty()),
        ))),
        HarnessAuth::Subscription { .. } | HarnessAuth::Pi { .. } => Err(refusal()),
    }
}

/// Writes a file only its owner can read, whatever was at the path before.
pub(super) fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    crate::owned_dir::replace_file(path, contents, 0o600)
}

pub(super) fn path_string(path: &Path) -> io::Result<String> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the agent home path is not valid UTF-8",
        )
    })
}

/// The system prompt with the pointer to `.cat-context/` when the job has context files
/// (seed 4.11.3). Codex composes its stdin prompt from the same text (seed 4.11.4).
pub fn system_prompt_with_context(job: &AgentJob) -> String {
    if job.context_files.is_empty() {
        return job.system_prompt.clone();
    }
    let mut pointer = String::from(
        "Linked context (requirements / RFCs / PRDs / tracker issues) for this task is in the \
         .cat-context/ directory. Read the files there when they bear on the task; do not try to \
         reach Jira, Confluence or GitHub for them.",
    );
    for file in &job.context_files {
        pointer.push_str(&format!(
            "\n- .cat-context/{} \u{2014} {}",
            file.path, file.title
        ));
    }
    if job.system_prompt.is_empty() {
        pointer
    } else {
        format!("{}\n\n{pointer}", job.system_prompt)
    }
}
