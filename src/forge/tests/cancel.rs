//! Cancellation before, during and between the requests.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::github;
use crate::forge::http::http_client;
use crate::forge::retry::RetryPolicy;
use crate::forge::{open_pull_request, open_with_policy};
use crate::http_stub::{Reply, Stub};
use crate::redact::Secret;

#[tokio::test]
async fn cancellation_mid_backoff_ends_the_call_without_further_attempts() {
    let mut stub = Stub::start(vec![Reply::text(503, "unavailable")]).await;
    let token = Secret::new("ghp_x");
    let api = stub.url();
    let cancel = CancellationToken::new();
    let call = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let req = github(&api, &token);
            open_with_policy(&http_client(), &req, &cancel, &RetryPolicy::SEED).await
        })
    };
    stub.next_request().await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(cancelled_at.elapsed() < Duration::from_millis(400));
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn cancellation_during_a_request_ends_the_call() {
    let mut stub = Stub::start(vec![Reply::hang()]).await;
    let token = Secret::new("ghp_x");
    let api = stub.url();
    let cancel = CancellationToken::new();
    let call = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            open_pull_request(&http_client(), &github(&api, &token), &cancel).await
        })
    };
    stub.next_request().await;
    cancel.cancel();
    assert!(call.await.unwrap().unwrap_err().is_cancelled());
}

#[tokio::test]
async fn an_already_cancelled_job_sends_nothing() {
    let stub = Stub::start(vec![Reply::json(201, json!({"html_url": "u"}))]).await;
    let token = Secret::new("ghp_x");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = open_pull_request(&http_client(), &github(&stub.url(), &token), &cancel)
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert!(stub.requests().is_empty());
}
