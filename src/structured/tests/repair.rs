//! The repair client against a loopback stub: both APIs and both auth styles, the retry of a
//! refused `response_format`, transient answers, `Retry-After`, the overall timeout, the job's
//! token in its header and never in an error text.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::FAST;
use crate::http_stub::{Reply, Stub};
use crate::job::{Harness, HarnessAuth};
use crate::redact::{Redactor, Secret};
use crate::structured::{
    repair_client, repair_prompt, request_repair, AnthropicAuth, Channel, RepairError,
    RepairLimits, REPAIR_SYSTEM,
};

const SESSION: &str = "sess-xyz-0123456789";
const SUBSCRIPTION: &str = "glm-key-secret-0123";

fn proxy(stub: &Stub) -> Channel {
    Channel::Proxy {
        // Trailing slashes are trimmed before the path is added.
        base_url: format!("{}/v1//", stub.url()),
        token: Secret::new(SESSION),
    }
}

fn anthropic(base_url: String, auth: AnthropicAuth) -> Channel {
    Channel::Anthropic {
        base_url,
        token: Secret::new(SUBSCRIPTION),
        auth,
    }
}

fn chat_answer(content: &str) -> Reply {
    Reply::json(
        200,
        json!({"choices": [{"message": {"role": "assistant", "content": content}}]}),
    )
}

async fn ask(channel: &Channel, limits: &RepairLimits) -> Result<String, RepairError> {
    let prompt = repair_prompt("Expected a single JSON object.", "this is not json at all");
    request_repair(
        &repair_client(),
        channel,
        "example-model",
        &prompt,
        limits,
        &Redactor::patterns_only(),
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn the_proxy_gets_one_chat_completion_with_the_session_token_as_bearer() {
    let stub = Stub::start(vec![chat_answer(r#"{"ok":true,"v":2}"#)]).await;
    let text = ask(&proxy(&stub), &FAST).await.unwrap();
    assert_eq!(text, r#"{"ok":true,"v":2}"#);
    let sent = stub.requests();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        req.header("authorization"),
        Some(&*format!("Bearer {SESSION}"))
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    assert_eq!(body["model"], "example-model");
    assert_eq!(body["stream"], false);
    assert_eq!(body["max_tokens"], 32768);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert!(body.get("temperature").is_none(), "{body}");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": REPAIR_SYSTEM})
    );
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(
        body["messages"][1]["content"],
        "Expected a single JSON object.\n\nThe text below was meant to be that JSON object but \
         does not parse. Return ONLY the corrected JSON object.\n\nthis is not json at all"
    );
}

#[tokio::test]
async fn a_refused_response_format_is_asked_again_without_it() {
    let stub = Stub::start(vec![
        Reply::json(400, json!({"error": "unsupported response_format"})),
        chat_answer(r#"{"ok":true,"v":7}"#),
    ])
    .await;
    assert_eq!(
        ask(&proxy(&stub), &FAST).await.unwrap(),
        r#"{"ok":true,"v":7}"#
    );
    let sent = stub.requests();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].json().get("response_format").is_some());
    assert!(sent[1].json().get("response_format").is_none());
    assert_eq!(sent[1].json()["messages"], sent[0].json()["messages"]);
}

#[tokio::test]
async fn a_500_is_retried_after_the_500_ms_backoff() {
    let stub = Stub::start(vec![Reply::text(500, "boom"), chat_answer("{}")]).await;
    assert_eq!(ask(&proxy(&stub), &RepairLimits::SEED).await.unwrap(), "{}");
    let sent = stub.requests();
    assert_eq!(sent.len(), 2);
    // 500 ms plus at most 25 % jitter.
    let gap = sent[1].at - sent[0].at;
    assert!(gap >= Duration::from_millis(500), "{gap:?}");
    assert!(gap < Duration::from_millis(1000), "{gap:?}");
    // A transient answer is not a refused `response_format`.
    assert!(sent[1].json().get("response_format").is_some());
}

#[tokio::test]
async fn a_429_waits_as_long_as_its_retry_after_asks() {
    let stub = Stub::start(vec![
        Reply::text(429, "slow down").header("retry-after", "1"),
        chat_answer("{}"),
    ])
    .await;
    assert_eq!(ask(&proxy(&stub), &RepairLimits::SEED).await.unwrap(), "{}");
    let sent = stub.requests();
    assert_eq!(sent.len(), 2);
    // The backoff alone would have waited at most 625 ms.
    let gap = sent[1].at - sent[0].at;
    assert!(gap >= Duration::from_millis(1000), "{gap:?}");
    assert!(gap < Duration::from_millis(1500), "{gap:?}");
}

#[tokio::test]
async fn transient_answers_end_after_three_attempts_with_the_seed_text() {
    let stub = Stub::start(vec![Reply::text(502, "upstream down")]).await;
    let err = ask(&proxy(&stub), &FAST).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "repair call failed: HTTP 502 \u{2014} upstream down"
    );
    assert_eq!(stub.requests().len(), 3);

    // A 429 that never clears is not mistaken for a refused `response_format`.
    let stub = Stub::start(vec![Reply::text(429, "")]).await;
    let err = ask(&proxy(&stub), &FAST).await.unwrap_err();
    assert_eq!(err.to_string(), "repair call failed: HTTP 429");
    assert_eq!(stub.requests().len(), 3);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_network_error_after_the_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let channel = Channel::Proxy {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        token: Secret::new(SESSION),
    };
    let err = ask(&channel, &FAST).await.unwrap_err();
    assert!(matches!(err, RepairError::Network(_)), "{err}");
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn a_hung_endpoint_is_cut_off_by_the_call_timeout() {
    let stub = Stub::start(vec![Reply::hang()]).await;
    let limits = RepairLimits {
        timeout: Duration::from_millis(300),
        ..FAST
    };
    let started = Instant::now();
    let err = ask(&proxy(&stub), &limits).await.unwrap_err();
    assert!(matches!(err, RepairError::TimedOut(_)), "{err}");
    assert_eq!(err.to_string(), "structured repair timed out after 300ms");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_jobs_token_ends_a_repair_at_once() {
    let stub = Stub::start(vec![Reply::hang()]).await;
    let cancel = CancellationToken::new();
    let call = {
        let (channel, cancel) = (proxy(&stub), cancel.clone());
        tokio::spawn(async move {
            let client = repair_client();
            let redactor = Redactor::patterns_only();
            request_repair(
                &client,
                &channel,
                "m",
                "p",
                &RepairLimits::SEED,
                &redactor,
                &cancel,
            )
            .await
        })
    };
    while stub.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled_at = Instant::now();
    cancel.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, RepairError::Cancelled), "{err}");
    assert!(cancelled_at.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn a_vendor_messages_api_gets_the_token_as_x_api_key() {
    let stub = Stub::start(vec![Reply::json(
        200,
        json!({"content": [
            {"type": "text", "text": "{\"ok\":true,"},
            {"type": "tool_use", "name": "x"},
            {"type": "text", "text": "\"v\":9}"}
        ]}),
    )])
    .await;
    let channel = anthropic(
        format!("{}/api/anthropic/", stub.url()),
        AnthropicAuth::ApiKey,
    );
    assert_eq!(ask(&channel, &FAST).await.unwrap(), r#"{"ok":true,"v":9}"#);
    let sent = stub.requests();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.target, "/api/anthropic/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(SUBSCRIPTION));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("anthropic-beta"), None);
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    assert_eq!(body["system"], REPAIR_SYSTEM);
    assert_eq!(body["max_tokens"], 32768);
    assert_eq!(body["messages"][0]["role"], "user");
    assert!(
        body.get("temperature").is_none() && body.get("stream").is_none(),
        "{body}"
    );
}

#[tokio::test]
async fn anthropic_oauth_gets_the_token_as_bearer_with_the_oauth_beta() {
    let stub = Stub::start(vec![Reply::json(
        200,
        json!({"content": [{"type": "text", "text": "{}"}]}),
    )])
    .await;
    let channel = anthropic(stub.url(), AnthropicAuth::OAuth);
    assert_eq!(ask(&channel, &FAST).await.unwrap(), "{}");
    let req = &stub.requests()[0];
    assert_eq!(req.target, "/v1/messages");
    assert_eq!(
        req.header("authorization"),
        Some(&*format!("Bearer {SUBSCRIPTION}"))
    );
    assert_eq!(req.header("anthropic-beta"), Some("oauth-2025-04-20"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("x-api-key"), None);
}

#[tokio::test]
async fn a_refusal_that_echoes_the_token_is_quoted_with_the_token_masked() {
    let stub = Stub::start(vec![Reply::text(
        401,
        &format!("key {SESSION} is not valid"),
    )])
    .await;
    let err = ask(&proxy(&stub), &FAST).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "repair call failed: HTTP 401 \u{2014} key *** is not valid"
    );
    // Refused twice: once with `response_format`, once without; never retried as transient.
    assert_eq!(stub.requests().len(), 2);

    let stub = Stub::start(vec![Reply::text(403, &format!("denied: {SUBSCRIPTION}"))]).await;
    let channel = anthropic(stub.url(), AnthropicAuth::ApiKey);
    let err = ask(&channel, &FAST).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "subscription repair call failed: HTTP 403 \u{2014} denied: ***"
    );
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn an_answer_without_text_is_an_empty_repair() {
    let stub = Stub::start(vec![Reply::json(200, json!({"choices": []}))]).await;
    assert_eq!(ask(&proxy(&stub), &FAST).await.unwrap(), "");
    let stub = Stub::start(vec![Reply::text(200, "not json")]).await;
    assert_eq!(ask(&proxy(&stub), &FAST).await.unwrap(), "");
}

#[test]
fn the_channel_follows_the_jobs_credentials() {
    let pi = HarnessAuth::Pi {
        proxy_base_url: "https://proxy.test/v1".into(),
        session_token: Secret::new(SESSION),
    };
    assert!(matches!(
        Channel::for_auth(&pi),
        Some(Channel::Proxy { base_url, .. }) if base_url == "https://proxy.test/v1"
    ));
    let claude = |base: Option<&str>, token: Option<&str>| HarnessAuth::Subscription {
        harness: Harness::ClaudeCode,
        subscription_token: token.map(Secret::new),
        subscription_base_url: base.map(str::to_owned),
        ambient_auth: token.is_none(),
    };
    assert!(matches!(
        Channel::for_auth(&claude(None, Some(SUBSCRIPTION))),
        Some(Channel::Anthropic { base_url, auth: AnthropicAuth::OAuth, .. })
            if base_url == "https://api.anthropic.com"
    ));
    assert!(matches!(
        Channel::for_auth(&claude(Some("https://api.z.ai/api/anthropic"), Some(SUBSCRIPTION))),
        Some(Channel::Anthropic { base_url, auth: AnthropicAuth::ApiKey, .. })
            if base_url == "https://api.z.ai/api/anthropic"
    ));
    // Ambient claude-code and Codex reach no JSON endpoint the worker may call.
    assert!(Channel::for_auth(&claude(None, None)).is_none());
    let codex = HarnessAuth::Subscription {
        harness: Harness::Codex,
        subscription_token: Some(Secret::new("codex-token-0123")),
        subscription_base_url: None,
        ambient_auth: false,
    };
    assert!(Channel::for_auth(&codex).is_none());
}
