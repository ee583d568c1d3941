//! The pull request through the GitHub REST API: the create call, and the lookup of the open
//! one when GitHub answers that it already exists.

use reqwest::header::{HeaderName, ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::json;

use super::http::{
    adopt_listed, excerpt, sensitive_value, success_body, url_field, ListedFields,
    HARNESS_USER_AGENT,
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
        let fields = ListedFields {
            url: "html_url",
            number: "number",
            body: "body",
        };
        let update = |number, body| {
            headers(client.patch(format!("{pulls}/{number}")))
                .json(&json!({"title": req.title, "body": body}))
        };
        if let Some(url) = adopt_listed(lookup, &fields, req, update, redactor).await {
            return Ok(url);
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
