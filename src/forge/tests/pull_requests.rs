//! Opening a GitHub pull request: the request sent, the recovery of one already open, and the
//! seed's failure texts.

use serde_json::json;

use super::{github, open, FAST};
use crate::forge::retry::RetryPolicy;
use crate::forge::PrRequest;
use crate::http_stub::{Reply, Stub};
use crate::job::outcome::FailureCause;
use crate::job::Provider;
use crate::redact::Secret;

#[tokio::test]
async fn opens_a_github_pull_request_for_a_github_clone_url() {
    let stub = Stub::start(vec![Reply::json(
        201,
        json!({"html_url": "https://github.com/o/r/pull/5"}),
    )])
    .await;
    let token = Secret::new("ghp_x");
    let url = open(&github(&stub.url(), &token), &RetryPolicy::SEED)
        .await
        .unwrap();
    assert_eq!(url, "https://github.com/o/r/pull/5");
    let sent = stub.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].target, "/repos/o/r/pulls");
    assert_eq!(sent[0].header("authorization"), Some("Bearer ghp_x"));
    assert_eq!(
        sent[0].header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(sent[0].header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(sent[0].header("user-agent"), Some("executor-harness"));
    assert_eq!(sent[0].header("private-token"), None);
    assert_eq!(
        sent[0].json(),
        json!({"title": "T", "head": "feature", "base": "main", "body": "B"})
    );
}

#[tokio::test]
async fn opens_a_github_pull_request_when_the_provider_is_github_even_for_a_gitlab_host() {
    let stub = Stub::start(vec![Reply::json(
        201,
        json!({"html_url": "https://github.com/o/r/pull/6"}),
    )])
    .await;
    let token = Secret::new("ghp_x");
    let api = stub.url();
    let req = PrRequest {
        clone_url: "https://gitlab.com/o/r.git",
        provider: Some(Provider::Github),
        ..github(&api, &token)
    };
    assert_eq!(
        open(&req, &FAST).await.unwrap(),
        "https://github.com/o/r/pull/6"
    );
    let sent = stub.requests();
    assert_eq!(sent[0].target, "/repos/o/r/pulls");
    assert_eq!(sent[0].header("authorization"), Some("Bearer ghp_x"));
    assert_eq!(sent[0].header("private-token"), None);
}

#[tokio::test]
async fn does_not_retry_a_422_already_exists_but_returns_the_existing_pull_request() {
    let stub = Stub::start(vec![
        Reply::json(
            422,
            json!({"message": "A pull request already exists for o:feature."}),
        ),
        Reply::json(200, json!([{"html_url": "https://github.com/o/r/pull/13"}])),
    ])
    .await;
    let token = Secret::new("ghp_x");
    let url = open(&github(&stub.url(), &token), &FAST).await.unwrap();
    assert_eq!(url, "https://github.com/o/r/pull/13");
    let sent = stub.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[1].method, "GET");
    assert_eq!(
        sent[1].target,
        "/repos/o/r/pulls?head=o%3Afeature&base=main&state=open"
    );
    assert_eq!(sent[1].header("authorization"), Some("Bearer ghp_x"));
    assert_eq!(
        sent[1].header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(sent[1].header("content-type"), None);
}

#[tokio::test]
async fn an_already_exists_answer_whose_lookup_finds_nothing_reports_the_original_answer() {
    let stub = Stub::start(vec![
        Reply::json(
            422,
            json!({"message": "A pull request already exists for o:feature."}),
        ),
        Reply::json(200, json!([])),
    ])
    .await;
    let token = Secret::new("ghp_x");
    let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Failed to open PR (HTTP 422): {"message":"A pull request already exists for o:feature."}"#
    );
    assert_eq!(err.failure_cause(), FailureCause::Api);
    assert_eq!(stub.requests().len(), 2);
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_quotes_the_first_300_chars_of_the_body() {
    let body = "x".repeat(400);
    let stub = Stub::start(vec![Reply::text(404, &body)]).await;
    let token = Secret::new("ghp_x");
    let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Failed to open PR (HTTP 404): {}", "x".repeat(300))
    );
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn a_success_without_a_url_is_an_api_failure() {
    let stub = Stub::start(vec![Reply::json(201, json!({"number": 5}))]).await;
    let token = Secret::new("ghp_x");
    let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
    assert_eq!(err.to_string(), "GitHub did not return a PR url");
    assert_eq!(err.failure_cause(), FailureCause::Api);

    let stub = Stub::start(vec![Reply::text(201, "not json")]).await;
    let clone_url = format!("{}/g/p.git", stub.url());
    let req = PrRequest {
        clone_url: &clone_url,
        provider: Some(Provider::Gitlab),
        ..github("http://unused.invalid", &token)
    };
    let err = open(&req, &FAST).await.unwrap_err();
    assert_eq!(err.to_string(), "GitLab did not return a merge request url");
    assert_eq!(err.failure_cause(), FailureCause::Api);
}
