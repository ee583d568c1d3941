//! The pull request of a coding job (seed 4.10, seed-later 3): the repository's template
//! offered to the agent before it runs, the description it wrote read (and removed) after it,
//! and the PR opened, or the open one refreshed, with the agent's title and body made inert.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::forge::{
    self, discover_template, infer_provider, parse_description, PrDescription, PrError, PrRequest,
    DESCRIPTION_FILE, DESCRIPTION_READ_BYTES,
};
use crate::job::prompts::template_note;
use crate::worker::context::JobRun;
use crate::worker::error::{FlowError, Stop};

/// What the PR step learned before the agent ran.
#[derive(Debug, Default)]
pub struct PrPlan {
    /// The template note for every pass's prompt, when the repository ships a template.
    pub note: Option<String>,
    /// A description's lone `# ` heading becomes the title only without a template (with
    /// one, the body is the filled template and the PR keeps the dispatch title).
    pub title_from_heading: bool,
}

/// Keeps the description file out of git, and, when the job opens a PR, finds the
/// repository's template at the checkout root.
pub async fn plan(run: &JobRun<'_>) -> Result<PrPlan, Stop> {
    run.checkout.exclude(DESCRIPTION_FILE).await?;
    if run.job.pr.is_none() {
        return Ok(PrPlan::default());
    }
    // The job's provider when it names one, else the clone URL's (the seed did not infer).
    let provider = run
        .job
        .repo
        .provider
        .unwrap_or_else(|| infer_provider(&run.job.repo.clone_url));
    let root = run.checkout.dir().to_path_buf();
    let template = tokio::task::spawn_blocking(move || discover_template(&root, provider))
        .await
        .map_err(|e| FlowError::Task(e.to_string()))?;
    let Some(t) = template else {
        return Ok(PrPlan {
            note: None,
            title_from_heading: true,
        });
    };
    tracing::info!(path = %t.path, chars = t.chars, inlined = t.text.is_some(), "pr template: found");
    Ok(PrPlan {
        note: Some(template_note(&t.path, t.chars, t.text.as_deref())),
        title_from_heading: false,
    })
}

/// Reads and removes the agent's description: at the checkout root, else in `work_dir`. Only
/// a regular file is read (never through a symlink, never a FIFO), and only its first
/// [`DESCRIPTION_READ_BYTES`].
pub async fn take_description(
    run: &JobRun<'_>,
    work_dir: &Path,
    title_from_heading: bool,
) -> Result<Option<PrDescription>, Stop> {
    let mut places = vec![run.checkout.dir().join(DESCRIPTION_FILE)];
    if work_dir != run.checkout.dir() {
        places.push(work_dir.join(DESCRIPTION_FILE));
    }
    // Every place is read and removed; the first usable one counts.
    let raw = tokio::task::spawn_blocking(move || {
        let found: Vec<Option<String>> = places.iter().map(|p| read_and_remove(p)).collect();
        found.into_iter().flatten().next()
    })
    .await
    .map_err(|e| FlowError::Task(e.to_string()))?;
    Ok(raw.and_then(|raw| parse_description(&raw, title_from_heading, &run.job.redactor())))
}

fn read_and_remove(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let text = if meta.file_type().is_file() {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let mut bytes = Vec::new();
        match file.map(|f| f.take(DESCRIPTION_READ_BYTES).read_to_end(&mut bytes)) {
            Ok(Ok(_)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => None,
        }
    } else {
        tracing::warn!(path = %path.display(), "pr description: not a regular file, ignored");
        None
    };
    // Removed even when unusable, so it cannot reach a later commit.
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "pr description: cannot remove it");
    }
    text
}

/// How opening the PR ended.
pub enum Opened {
    Url(String),
    /// The branch holds nothing its base lacks (GitHub's "No commits between").
    NothingToCompare,
}

/// Opens the job's PR (or refreshes the open one with the agent's description) and returns
/// its URL.
pub async fn open(
    run: &JobRun<'_>,
    description: Option<&PrDescription>,
) -> Result<Option<Opened>, Stop> {
    let job = run.job;
    let Some(spec) = &job.pr else {
        return Ok(None);
    };
    let title = description.and_then(|d| d.title.as_deref());
    let body = description.and_then(|d| d.body.as_deref());
    let req = PrRequest {
        api_base: job.github_api_base.as_deref(),
        provider: job.repo.provider,
        clone_url: &job.repo.clone_url,
        owner: &job.repo.owner,
        name: &job.repo.name,
        head: job.push_branch(),
        base: &job.repo.base_branch,
        title: title.unwrap_or(&spec.title),
        body: body.unwrap_or(&spec.body),
        token: &job.gh_token,
        refresh: description.is_some(),
    };
    match forge::open_pull_request(run.ctx.http(), &req, run.cancel).await {
        Ok(url) => Ok(Some(Opened::Url(url))),
        // The branch's work was merged meanwhile: a no-op, not a failure of the code host.
        Err(PrError::Github { status: 422, body }) if body.contains("No commits between") => {
            tracing::info!("coding-agent: no commits between the branch and its base");
            Ok(Some(Opened::NothingToCompare))
        }
        // GitLab's way of saying the same (the seed failed these as `api`).
        Err(PrError::Gitlab {
            status: 400 | 409 | 422,
            body,
        }) if nothing_to_compare(&body) => {
            tracing::info!("coding-agent: the branch and its base are identical");
            Ok(Some(Opened::NothingToCompare))
        }
        Err(e) if run.cancel.is_cancelled() => {
            tracing::warn!(error = %e, "PR open interrupted");
            Err(Stop::Interrupted)
        }
        Err(e) => Err(e.into()),
    }
}

/// A GitLab refusal that says the merge request would hold nothing.
fn nothing_to_compare(body: &str) -> bool {
    let body = body.to_lowercase();
    [
        "are identical",
        "no changes",
        "nothing to merge",
        "no commits",
    ]
    .iter()
    .any(|phrase| body.contains(phrase))
}

#[cfg(test)]
mod tests {
    #[test]
    fn gitlabs_nothing_to_compare_is_recognised_and_other_refusals_are_not() {
        assert!(super::nothing_to_compare(
            r#"{"message":["Validation failed: Source branch 'x' and target branch 'main' are identical"]}"#
        ));
        assert!(!super::nothing_to_compare(r#"{"message":"403 Forbidden"}"#));
    }
}
