//! The code-host API: opening the pull request (GitHub) or merge request (GitLab) after the
//! final push (seed 4.10).
//!
//! A resumed run opens it again: the provider answers "already exists" and a lookup returns the
//! open one, so the call is idempotent per branch. 5xx, 429 and network errors are retried a
//! few times; everything else is answered at once. The token travels only in the
//! `Authorization` / `PRIVATE-TOKEN` header, and every error text is redacted.
//!
//! - `github`: the pull request through the GitHub REST API.
//! - `gitlab`: the merge request through the GitLab REST API.
//! - `retry`: the retry policy for transient answers (backoff, jitter, `Retry-After`).
//! - `http`: the HTTP client and the response handling both providers share.
//! - `error`: [`PrError`] and its failure cause.
//! - `description`: the agent's `.cat-pr-description.md` read into a title and a body.
//! - `markdown`: agent text made inert (no mention, reference or closing keyword links).
//! - `template`: the repository's own PR / MR template, found where the hosts look.
//!
//! This file holds the request, the entry point that picks the provider and watches for
//! cancellation, and the URL helpers of the seed.

mod description;
mod error;
mod github;
mod gitlab;
mod http;
mod markdown;
mod retry;
mod template;
#[cfg(test)]
#[cfg(test)]
mod tests;

use reqwest::Client;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::job::Provider;
use crate::redact::{Redactor, Secret};

pub use description::{
    parse_description, preserve_managed, PrDescription, DESCRIPTION_FILE, DESCRIPTION_READ_BYTES,
};
pub use error::PrError;
pub use http::http_client;
pub use template::{discover_template, PrTemplate};

use retry::RetryPolicy;

/// Everything needed to open the pull or merge request of one job.
#[derive(Debug, Clone, Copy)]
pub struct PrRequest<'a> {
    /// `job.githubApiBase`; `None` means `https://api.github.com`. Kept as given, even `""`.
    pub api_base: Option<&'a str>,
    /// `job.repo.provider`: authoritative when set, else inferred from `clone_url`.
    pub provider: Option<Provider>,
    /// The GitLab API base and project path are derived from it.
    pub clone_url: &'a str,
    pub owner: &'a str,
    pub name: &'a str,
    /// The pushed branch.
    pub head: &'a str,
    /// `repo.baseBranch`.
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub token: &'a Secret,
    /// When the PR already exists (a redelivery), bring its title and body up to date with
    /// these (the agent wrote a description) instead of leaving it stale.
    pub refresh: bool,
}

/// Opens the pull request (GitHub) or merge request (GitLab) and returns its web URL, or the
/// URL of the one already open for the branch.
pub async fn open_pull_request(
    client: &Client,
    req: &PrRequest<'_>,
    cancel: &CancellationToken,
) -> Result<String, PrError> {
    open_with_policy(client, req, cancel, &RetryPolicy::SEED).await
}

/// The seed's `inferVcsProvider`: a host (with its port) that is `gitlab.com`, starts with
/// `gitlab.` or contains `.gitlab.` is GitLab; anything else, unparseable input included, is
/// GitHub.
pub fn infer_provider(clone_url: &str) -> Provider {
    let Some(host) = Url::parse(clone_url).ok().and_then(|u| host_with_port(&u)) else {
        return Provider::Github;
    };
    let host = host.to_lowercase();
    if host == "gitlab.com" || host.starts_with("gitlab.") || host.contains(".gitlab.") {
        Provider::Gitlab
    } else {
        Provider::Github
    }
}

async fn open_with_policy(
    client: &Client,
    req: &PrRequest<'_>,
    cancel: &CancellationToken,
    policy: &RetryPolicy,
) -> Result<String, PrError> {
    let redactor = Redactor::patterns_only().with_secret(req.token);
    let provider = req
        .provider
        .unwrap_or_else(|| infer_provider(req.clone_url));
    let open = async {
        match provider {
            Provider::Github => github::open_github(client, req, &redactor, policy).await,
            Provider::Gitlab => gitlab::open_gitlab(client, req, &redactor, policy).await,
        }
    };
    // Dropping the request future aborts whatever it waits on: a request, a body, a backoff.
    let url = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(PrError::Cancelled),
        url = open => url?,
    };
    let host = match provider {
        Provider::Github => "github",
        Provider::Gitlab => "gitlab",
    };
    tracing::info!(provider = host, url = %url, "pull request open");
    Ok(url)
}

/// The URL's host with its port when it is not the scheme's default (JavaScript's `url.host`).
fn host_with_port(url: &Url) -> Option<String> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// JavaScript's `encodeURIComponent`.
fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
