//! The token stays home: no cross-origin redirect is followed, and no error text quotes it.

use serde_json::json;

use super::{github, open, FAST};
use crate::forge::PrRequest;
use crate::http_stub::{Reply, Stub};
use crate::job::Provider;
use crate::redact::Secret;

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_so_the_token_stays_home() {
    let elsewhere = Stub::start(vec![Reply::json(
        201,
        json!({"web_url": "https://evil/mr"}),
    )])
    .await;
    let location = format!("{}/api/v4/projects/g%2Fp/merge_requests", elsewhere.url());
    let stub = Stub::start(vec![Reply::text(307, "").header("location", &location)]).await;
    let token = Secret::new("glpat-x");
    let clone_url = format!("{}/g/p.git", stub.url());
    let req = PrRequest {
        clone_url: &clone_url,
        provider: Some(Provider::Gitlab),
        ..github("http://unused.invalid", &token)
    };
    let err = open(&req, &FAST).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Failed to open merge request (HTTP 307)"),
        "{err}"
    );
    assert!(elsewhere.requests().is_empty());
}

#[tokio::test]
async fn no_error_text_contains_the_token() {
    let secret = "s3cr3t-token-value";
    let token = Secret::new(secret);
    let echo = format!("bad credentials {secret} (Bearer {secret}, private-token: {secret})");
    let cases = [
        Reply::text(401, &echo),
        Reply::text(500, &echo),
        Reply::text(422, &format!("pull request already exists {secret}")),
        Reply::text(409, &format!("merge request already exists {secret}")),
    ];
    for reply in cases {
        for provider in [Provider::Github, Provider::Gitlab] {
            let stub = Stub::start(vec![reply.clone()]).await;
            let api = stub.url();
            let clone_url = format!("{api}/g/p.git");
            let req = PrRequest {
                clone_url: &clone_url,
                provider: Some(provider),
                ..github(&api, &token)
            };
            let err = open(&req, &FAST).await.unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
    let err = open(&github("http://127.0.0.1:1", &token), &FAST)
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(secret));
}
