//! Opening a GitLab merge request: the request sent, the recovery of one already open, and
//! the seed's failure texts.

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{client_resolving, github, open, FAST};
use crate::forge::{infer_provider, open_pull_request, PrRequest};
use crate::http_stub::{Reply, Stub};
use crate::job::outcome::FailureCause;
use crate::job::Provider;
use crate::redact::Secret;

#[tokio::test]
async fn opens_a_gitlab_merge_request_for_a_gitlab_clone_url() {
    let stub = Stub::start(vec![Reply::json(
        201,
        json!({"web_url": "https://gitlab.example.test/group/proj/-/merge_requests/3"}),
    )])
    .await;
    let token = Secret::new("glpat-x");
    let clone_url = format!(
        "http://gitlab.example.test:{}/group/proj.git",
        stub.addr().port()
    );
    let req = PrRequest {
        clone_url: &clone_url,
        ..github("http://unused.invalid", &token)
    };
    let client = client_resolving("gitlab.example.test", &stub);
    let url = open_pull_request(&client, &req, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        url,
        "https://gitlab.example.test/group/proj/-/merge_requests/3"
    );
    let sent = stub.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(
        sent[0].target,
        "/api/v4/projects/group%2Fproj/merge_requests"
    );
    assert_eq!(sent[0].header("private-token"), Some("glpat-x"));
    assert_eq!(sent[0].header("authorization"), None);
    assert_eq!(sent[0].header("accept"), Some("application/json"));
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(sent[0].header("user-agent"), Some("executor-harness"));
    assert_eq!(
        sent[0].json(),
        json!({"source_branch": "feature", "target_branch": "main", "title": "T", "description": "B"})
    );
}

#[tokio::test]
async fn returns_the_existing_merge_request_when_one_already_exists() {
    let stub = Stub::start(vec![
        Reply::json(
            409,
            json!({"message": ["another open merge request already exists"]}),
        ),
        Reply::json(
            200,
            json!([{"web_url": "https://gitlab.example.test/g/p/-/merge_requests/9"}]),
        ),
    ])
    .await;
    let token = Secret::new("glpat-x");
    let clone_url = format!(
        "http://gitlab.example.test:{}/group/proj.git",
        stub.addr().port()
    );
    let req = PrRequest {
        clone_url: &clone_url,
        ..github("http://unused.invalid", &token)
    };
    let client = client_resolving("gitlab.example.test", &stub);
    let url = open_pull_request(&client, &req, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(url, "https://gitlab.example.test/g/p/-/merge_requests/9");
    let sent = stub.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].method, "GET");
    assert_eq!(
        sent[1].target,
        "/api/v4/projects/group%2Fproj/merge_requests?source_branch=feature&target_branch=main&state=opened"
    );
    assert_eq!(sent[1].header("private-token"), Some("glpat-x"));
    assert_eq!(sent[1].header("content-type"), None);
}

#[tokio::test]
async fn an_open_merge_request_is_refreshed_with_the_agents_description_keeping_the_region() {
    let region = "<!-- cat-factory:verification-report:start -->r<!-- cat-factory:verification-report:end -->";
    let stub = Stub::start(vec![
        Reply::json(409, json!({"message": ["merge request already exists"]})),
        Reply::json(
            200,
            json!([{"iid": 9, "web_url": "https://gl/mr/9", "description": format!("old {region}")}]),
        ),
        Reply::json(200, json!({})),
    ])
    .await;
    let token = Secret::new("glpat-x");
    let clone_url = format!(
        "http://gitlab.example.test:{}/group/proj.git",
        stub.addr().port()
    );
    let req = PrRequest {
        clone_url: &clone_url,
        title: "New",
        body: "New body",
        refresh: true,
        ..github("http://unused.invalid", &token)
    };
    let client = client_resolving("gitlab.example.test", &stub);
    let url = open_pull_request(&client, &req, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(url, "https://gl/mr/9");
    let sent = stub.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].method, "PUT");
    assert_eq!(
        sent[2].target,
        "/api/v4/projects/group%2Fproj/merge_requests/9"
    );
    assert_eq!(sent[2].header("private-token"), Some("glpat-x"));
    assert_eq!(
        sent[2].json(),
        json!({"title": "New", "description": format!("New body\n\n{region}\n")})
    );
}

#[tokio::test]
async fn a_gitlab_400_naming_an_open_merge_request_is_recovered_too() {
    let stub = Stub::start(vec![
        Reply::json(
            400,
            json!({"message": ["Another open merge request for this branch"]}),
        ),
        Reply::json(200, json!([{"web_url": "https://gl/mr/4"}])),
    ])
    .await;
    let token = Secret::new("glpat-x");
    let clone_url = format!("{}/team/proj.git", stub.url());
    let req = PrRequest {
        clone_url: &clone_url,
        provider: Some(Provider::Gitlab),
        ..github("http://unused.invalid", &token)
    };
    assert_eq!(open(&req, &FAST).await.unwrap(), "https://gl/mr/4");
    assert_eq!(stub.requests().len(), 2);
}

#[tokio::test]
async fn opens_a_merge_request_when_the_provider_is_set_even_for_a_host_inference_misses() {
    let stub = Stub::start(vec![Reply::json(
        201,
        json!({"web_url": "https://git.acme.test/mr/1"}),
    )])
    .await;
    let token = Secret::new("glpat-x");
    let clone_url = format!("http://git.acme.test:{}/team/proj.git", stub.addr().port());
    assert_eq!(infer_provider(&clone_url), Provider::Github);
    let req = PrRequest {
        clone_url: &clone_url,
        provider: Some(Provider::Gitlab),
        ..github("http://unused.invalid", &token)
    };
    let client = client_resolving("git.acme.test", &stub);
    let url = open_pull_request(&client, &req, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(url, "https://git.acme.test/mr/1");
    let sent = stub.requests();
    assert_eq!(
        sent[0].target,
        "/api/v4/projects/team%2Fproj/merge_requests"
    );
    let host = format!("git.acme.test:{}", stub.addr().port());
    assert_eq!(sent[0].header("host"), Some(host.as_str()));
    assert_eq!(sent[0].header("private-token"), Some("glpat-x"));
}

#[tokio::test]
async fn a_gitlab_failure_quotes_the_seed_text() {
    let stub = Stub::start(vec![Reply::json(403, json!({"message": "403 Forbidden"}))]).await;
    let token = Secret::new("glpat-x");
    let clone_url = format!("{}/g/p.git", stub.url());
    let req = PrRequest {
        clone_url: &clone_url,
        provider: Some(Provider::Gitlab),
        ..github("http://unused.invalid", &token)
    };
    let err = open(&req, &FAST).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Failed to open merge request (HTTP 403): {"message":"403 Forbidden"}"#
    );
    assert_eq!(err.failure_cause(), FailureCause::Api);
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn gitlab_without_a_usable_clone_url_is_an_agent_failure() {
    let token = Secret::new("glpat-x");
    for (clone_url, text) in [
        (
            "",
            "Cannot open a GitLab merge request without the repo clone URL",
        ),
        (
            "git@gitlab.com:g/p.git",
            "Cannot open a GitLab merge request: the repo clone URL is not a valid URL",
        ),
    ] {
        let req = PrRequest {
            clone_url,
            provider: Some(Provider::Gitlab),
            ..github("http://unused.invalid", &token)
        };
        let err = open(&req, &FAST).await.unwrap_err();
        assert_eq!(err.to_string(), text);
        assert_eq!(err.failure_cause(), FailureCause::Agent);
    }
}
