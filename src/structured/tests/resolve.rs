//! The resolution as a whole (seed 5.6): the primary parse first, one repair call when it
//! fails and a channel exists, and diagnostics that say what happened.

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::FAST;
use crate::http_stub::{Reply, Stub};
use crate::job::Harness;
use crate::redact::{Redactor, Secret};
use crate::structured::{
    repair_client, resolve_structured_output, AnthropicAuth, Channel, ParsedOn, Repair, Resolved,
};

async fn resolve(primary: &str, harness: Harness, channel: Option<Channel>) -> Resolved {
    let client = repair_client();
    let redactor = Redactor::patterns_only();
    let repair = Repair {
        label: "agent",
        shape_hint: "Expected a single JSON object.",
        model: "example-model",
        harness,
        channel,
        client: &client,
        limits: FAST,
        redactor: &redactor,
    };
    resolve_structured_output(primary, &repair, &CancellationToken::new()).await
}

fn proxy(stub: &Stub) -> Option<Channel> {
    Some(Channel::Proxy {
        base_url: format!("{}/v1", stub.url()),
        token: Secret::new("sess-xyz-0123456789"),
    })
}

fn chat_answer(content: &str) -> Reply {
    Reply::json(200, json!({"choices": [{"message": {"content": content}}]}))
}

#[tokio::test]
async fn a_primary_that_parses_is_returned_without_a_repair_call() {
    let stub = Stub::start(vec![Reply::text(500, "must not be called")]).await;
    let r = resolve(r#"{"ok":true,"v":1}"#, Harness::Pi, proxy(&stub)).await;
    assert_eq!(r.value, Some(json!({"ok": true, "v": 1})));
    assert_eq!(r.diagnostics.parsed_on, ParsedOn::Primary);
    assert!(!r.diagnostics.repair_attempted);
    assert_eq!(r.diagnostics.primary_chars, 17);
    assert!(stub.requests().is_empty());
}

#[tokio::test]
async fn an_unparseable_primary_is_recovered_by_one_repair_call() {
    let stub = Stub::start(vec![chat_answer(r#"{"ok":true,"v":2}"#)]).await;
    let r = resolve("this is not json at all", Harness::Pi, proxy(&stub)).await;
    assert_eq!(r.value, Some(json!({"ok": true, "v": 2})));
    let d = &r.diagnostics;
    assert_eq!(d.parsed_on, ParsedOn::Repair);
    assert!(d.repair_attempted && d.repair_succeeded);
    assert_eq!(d.suffix(), " [structured repair recovered it]");
    let sent = stub.requests();
    assert_eq!(sent.len(), 1);
    let last = sent[0].json()["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.ends_with("this is not json at all"), "{last}");
}

#[tokio::test]
async fn a_repair_that_still_does_not_parse_reports_so() {
    let stub = Stub::start(vec![chat_answer("still broken")]).await;
    let r = resolve("not json", Harness::Pi, proxy(&stub)).await;
    assert_eq!(r.value, None);
    let d = &r.diagnostics;
    assert_eq!(d.parsed_on, ParsedOn::None);
    assert!(d.repair_attempted && !d.repair_succeeded);
    assert_eq!(
        d.repair_error.as_deref(),
        Some("repair output still did not parse")
    );
}

#[tokio::test]
async fn a_failing_repair_call_is_captured_in_the_diagnostics() {
    let stub = Stub::start(vec![Reply::text(502, "bad gateway")]).await;
    let r = resolve("not json", Harness::Pi, proxy(&stub)).await;
    assert_eq!(r.value, None);
    let error = r.diagnostics.repair_error.clone().unwrap();
    assert!(error.contains("HTTP 502"), "{error}");
    assert_eq!(stub.requests().len(), 3);
    assert_eq!(
        r.diagnostics.suffix(),
        " [structured repair did not help (repair call failed: HTTP 502 \u{2014} bad gateway)]"
    );
}

#[tokio::test]
async fn a_claude_code_subscription_repairs_through_its_messages_api() {
    let stub = Stub::start(vec![Reply::json(
        200,
        json!({"content": [{"type": "text", "text": "{\"ok\":true,\"v\":9}"}]}),
    )])
    .await;
    let channel = Channel::Anthropic {
        base_url: format!("{}/api/anthropic", stub.url()),
        token: Secret::new("glm-key-secret-0123"),
        auth: AnthropicAuth::ApiKey,
    };
    let r = resolve("nope", Harness::ClaudeCode, Some(channel)).await;
    assert_eq!(r.value, Some(json!({"ok": true, "v": 9})));
    let sent = stub.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("x-api-key"), Some("glm-key-secret-0123"));
}

#[tokio::test]
async fn without_a_channel_nothing_is_called_and_the_reason_stays_out_of_the_suffix() {
    let r = resolve("not json", Harness::Codex, None).await;
    assert_eq!(r.value, None);
    let d = &r.diagnostics;
    assert_eq!(d.parsed_on, ParsedOn::None);
    assert!(!d.repair_attempted);
    assert_eq!(
        d.repair_error.as_deref(),
        Some("structured-output repair unavailable for the codex harness")
    );
    assert_eq!(d.suffix(), "");
}

#[tokio::test]
async fn a_doubled_primary_is_labelled_in_the_diagnostics() {
    let clean = r#"{"risks": ["the migration drops a column"], "summary": "one risk"}"#;
    let chars: Vec<char> = clean.chars().collect();
    // Doubled and then cut short: it no longer parses.
    let doubled: String = chars
        .chunks(3)
        .map(|c| c.iter().collect::<String>().repeat(2))
        .collect();
    let r = resolve(&doubled[..doubled.len() - 4], Harness::Codex, None).await;
    assert!(r.diagnostics.looks_doubled, "{:?}", r.diagnostics);
    assert_eq!(
        r.diagnostics.suffix(),
        " [output appeared token-doubled (streaming corruption)]"
    );
}
