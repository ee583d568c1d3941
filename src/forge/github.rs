//! The pull request through the GitHub REST API: the create call, and the lookup of the open
//! one when GitHub answers that it already exists.

use reqwest::header::{HeaderName, ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::json;

use super::description::preserve_managed;
use super::http::{
    excerpt, first_listed, refresh, sensitive_value, success_body, url_field, HARNESS_USER_AGENT,
};
use super::retry::{send_with_retry, RetryPolicy};
use super::{encode_component, PrError, PrRequest};
use crate::redact::Redactor;

const GITHUB_API: &str = "https://api.github.com";
const GITHUB_API_VERSION: &str = "2022-11-28";
const GITHUB_VERSION_HEADER: HeaderName = HeaderName::from_static("x-github-api-version");

pub(super) async fn open_github(
    client: &Client,
    req: &PrRequest<'_>,
    redactor: &Redactor,
    policy: &RetryPolicy,
) -> Result<String, PrError> {
    let pulls = format!(
        "{}/repos/{}/{}/pulls",
        github_api_base(req.api_base),
        encode_component(req.owner),
        encode_component(req.name)
    );
    let auth = sensitive_value(&format!("Bearer {}", req.token.expose()))?;
    let headers = |builder: RequestBuilder| {
        builder
            .header(AUTHORIZATION, auth.clone())
            .header(ACCEPT, "application/vnd.github+json")
            .header(USER_AGENT, HARNESS_USER_AGENT)
            .header(GITHUB_VERSION_HEADER, GITHUB_API_VERSION)
    };
    let payload = json!({"title": req.title, "head": req.head, "base": req.base, "body": req.body});
    let resp = send_with_retry(
        || headers(client.post(&pulls)).json(&payload),
        policy,
        redactor,
    )
    .await?;
    let status = resp.status();
    if status.is_success() {
        let body = success_body(resp, redactor).await?;
        return url_field(&body, "html_url").ok_or(PrError::GithubNoUrl);
    }
    let text = resp.text().await.unwrap_or_default();
    if status == StatusCode::UNPROCESSABLE_ENTITY
        && text.to_lowercase().contains("pull request already exists")
    {
        let head = format!("{}:{}", req.owner, req.head);
        let lookup = headers(client.get(&pulls)).query(&[
            ("head", head.as_str()),
            ("base", req.base),
            ("state", "open"),
        ]);
        if let Some(open) = first_listed(lookup).await {
            if let Some(url) = url_field(&open, "html_url") {
                match open.get("number").and_then(serde_json::Value::as_u64) {
                    Some(number) if req.refresh => {
                        let existing = open.get("body").and_then(serde_json::Value::as_str);
                        let body = preserve_managed(existing.unwrap_or(""), req.body);
                        let update = headers(client.patch(format!("{pulls}/{number}")))
                            .json(&json!({"title": req.title, "body": body}));
                        refresh(update, redactor).await;
                    }
                    None if req.refresh => {
                        tracing::warn!("pull request refresh skipped: the open one has no number")
                    }
                    _ => {}
                }
                return Ok(url);
            }
        }
    }
    Err(PrError::Github {
        status: status.as_u16(),
        body: excerpt(&text, redactor),
    })
}

pub(super) fn github_api_base(api_base: Option<&str>) -> &str {
    api_base.unwrap_or(GITHUB_API)
}
