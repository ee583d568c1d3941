//! The HTTP client both providers use, and the response handling they share: the JSON of a
//! success, the lookup after "already exists", quoted excerpts and header values for tokens.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{redirect, Client, RequestBuilder, Response};
use serde_json::Value;

use super::description::preserve_managed;
use super::{PrError, PrRequest};
use crate::http_retry::error_chain;
use crate::redact::{head_chars, Redactor};

pub(super) const HARNESS_USER_AGENT: &str = "executor-harness";
/// How much of an error response body the failure text quotes.
const BODY_EXCERPT_CHARS: usize = 300;

/// The client to open pull requests with: the harness user agent, bounded connect and request
/// times, and redirects followed only within the same origin, since a custom header such as
/// GitLab's `PRIVATE-TOKEN` would otherwise be forwarded to another host.
pub fn http_client() -> Client {
    client_builder().build().unwrap_or_else(|err| {
        tracing::warn!(error = %err, "HTTP client settings refused, using the defaults");
        Client::new()
    })
}

pub(super) fn client_builder() -> reqwest::ClientBuilder {
    Client::builder()
        .user_agent(HARNESS_USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .redirect(redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if same_origin && attempt.previous().len() <= 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
}

/// The JSON of a 2xx answer; a body that is not JSON simply has no URL in it.
pub(super) async fn success_body(resp: Response, redactor: &Redactor) -> Result<Value, PrError> {
    let text = resp
        .text()
        .await
        .map_err(|err| PrError::Network(redactor.redact(&error_chain(&err))))?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Where a provider's listed pull or merge request keeps what adopting it needs.
pub(super) struct ListedFields {
    pub url: &'static str,
    /// GitHub's `number`, GitLab's `iid`.
    pub number: &'static str,
    /// GitHub's `body`, GitLab's `description`.
    pub body: &'static str,
}

/// After an "already exists" answer: the URL of the first open one `lookup` lists, refreshed
/// first when `req.refresh` asks (its title and body replaced, the engine's managed region of
/// the old body kept). `update(number, body)` builds the provider's update request. The lookup
/// is not retried and any failure of it is `None`: the caller then reports the create's error.
pub(super) async fn adopt_listed(
    lookup: RequestBuilder,
    fields: &ListedFields,
    req: &PrRequest<'_>,
    update: impl FnOnce(u64, String) -> RequestBuilder,
    redactor: &Redactor,
) -> Option<String> {
    let resp = lookup.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let list: Value = resp.json().await.ok()?;
    let open = list.as_array()?.first()?;
    let url = url_field(open, fields.url)?;
    if req.refresh {
        match open.get(fields.number).and_then(Value::as_u64) {
            Some(number) => {
                let existing = open.get(fields.body).and_then(Value::as_str).unwrap_or("");
                let body = preserve_managed(existing, req.body);
                refresh(update(number, body), redactor).await;
            }
            None => tracing::warn!(
                field = fields.number,
                "pull request refresh skipped: the open one has no number"
            ),
        }
    }
    Some(url)
}

/// Brings an open PR's title and body up to date (no retry); the outcome is logged, never an
/// error: the PR exists either way.
async fn refresh(update: RequestBuilder, redactor: &Redactor) {
    match update.send().await {
        Ok(resp) if resp.status().is_success() => {
            tracing::info!(status = resp.status().as_u16(), "pull request refreshed");
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            tracing::warn!(status, body = %excerpt(&text, redactor), "pull request refresh refused");
        }
        Err(e) => {
            tracing::warn!(error = %redactor.redact(&error_chain(&e)), "pull request refresh failed");
        }
    }
}

pub(super) fn url_field(body: &Value, field: &str) -> Option<String> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
}

/// Redacted before it is cut, so a token straddling the cut cannot leak in part.
pub(super) fn excerpt(text: &str, redactor: &Redactor) -> String {
    head_chars(&redactor.redact(text), BODY_EXCERPT_CHARS).to_owned()
}

pub(super) fn sensitive_value(value: &str) -> Result<HeaderValue, PrError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| PrError::InvalidToken)?;
    value.set_sensitive(true);
    Ok(value)
}
