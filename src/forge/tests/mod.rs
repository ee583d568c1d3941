//! The forge tests, by concern, against the loopback stub server, plus their shared request
//! and policy helpers.

mod cancel;
mod merge_requests;
mod pull_requests;
mod retry;
mod secrecy;
mod urls;

use std::time::Duration;

use reqwest::Client;
use tokio_util::sync::CancellationToken;

use super::http::{client_builder, http_client};
use super::retry::RetryPolicy;
use super::{open_with_policy, PrError, PrRequest};
use crate::http_stub::Stub;
use crate::redact::Secret;

const FAST: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(1),
    ..RetryPolicy::SEED
};

fn github<'a>(api_base: &'a str, token: &'a Secret) -> PrRequest<'a> {
    PrRequest {
        api_base: Some(api_base),
        provider: None,
        clone_url: "https://github.com/o/r.git",
        owner: "o",
        name: "r",
        head: "feature",
        base: "main",
        title: "T",
        body: "B",
        token,
        refresh: false,
    }
}

/// A client that sends requests for `host` to the stub, so host-based inference runs on
/// realistic names.
fn client_resolving(host: &str, stub: &Stub) -> Client {
    client_builder().resolve(host, stub.addr()).build().unwrap()
}

async fn open(req: &PrRequest<'_>, policy: &RetryPolicy) -> Result<String, PrError> {
    open_with_policy(&http_client(), req, &CancellationToken::new(), policy).await
}
