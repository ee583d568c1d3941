//! The merge request through the GitLab REST API: the API base and project path derived from
//! the clone URL, the create call, and the lookup of the open one when GitLab answers that it
//! already exists.

use reqwest::header::{HeaderName, ACCEPT, USER_AGENT};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::json;
use url::Url;

use super::http::{
    adopt_listed, excerpt, sensitive_value, success_body, url_field, ListedFields,
    HARNESS_USER_AGENT,
};
use super::retry::{send_with_retry, RetryPolicy};
use super::{encode_component, host_with_port, PrError, PrRequest};
use crate::redact::Redactor;

const PRIVATE_TOKEN: HeaderName = HeaderName::from_static("private-token");

pub(super) async fn open_gitlab(
    client: &Client,
    req: &PrRequest<'_>,
    redactor: &Redactor,
    policy: &RetryPolicy,
) -> Result<String, PrError> {
    let (api_base, project) = gitlab_target(req.clone_url)?;
    let merge_requests = format!("{api_base}/projects/{project}/merge_requests");
    let token = sensitive_value(req.token.expose())?;
    let headers = |builder: RequestBuilder| {
        builder
            .header(PRIVATE_TOKEN, token.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, HARNESS_USER_AGENT)
    };
    let payload = json!({
        "source_branch": req.head,
        "target_branch": req.base,
        "title": req.title,
        "description": req.body,
    });
    let resp = send_with_retry(
        || headers(client.post(&merge_requests)).json(&payload),
        policy,
        redactor,
    )
    .await?;
    let status = resp.status();
    if status.is_success() {
        let body = success_body(resp, redactor).await?;
        return url_field(&body, "web_url").ok_or(PrError::GitlabNoUrl);
    }
    let text = resp.text().await.unwrap_or_default();
    let lowered = text.to_lowercase();
    if matches!(status, StatusCode::CONFLICT | StatusCode::BAD_REQUEST)
        && (lowered.contains("already exists") || lowered.contains("open merge request"))
    {
        let lookup = headers(client.get(&merge_requests)).query(&[
            ("source_branch", req.head),
            ("target_branch", req.base),
            ("state", "opened"),
        ]);
        let fields = ListedFields {
            url: "web_url",
            number: "iid",
            body: "description",
        };
        let update = |iid, body| {
            headers(client.put(format!("{merge_requests}/{iid}")))
                .json(&json!({"title": req.title, "description": body}))
        };
        if let Some(url) = adopt_listed(lookup, &fields, req, update, redactor).await {
            return Ok(url);
        }
    }
    Err(PrError::Gitlab {
        status: status.as_u16(),
        body: excerpt(&text, redactor),
    })
}

/// The GitLab REST base (`<scheme>://<host>/api/v4`) and the URL-encoded project path of a
/// clone URL; the whole namespace path is encoded, so subgroups survive.
pub(super) fn gitlab_target(clone_url: &str) -> Result<(String, String), PrError> {
    if clone_url.trim().is_empty() {
        return Err(PrError::MissingCloneUrl);
    }
    let url = Url::parse(clone_url).map_err(|_| PrError::InvalidCloneUrl)?;
    let host = host_with_port(&url).ok_or(PrError::InvalidCloneUrl)?;
    let path = url.path().trim_start_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    Ok((
        format!("{}://{host}/api/v4", url.scheme()),
        encode_component(path),
    ))
}
