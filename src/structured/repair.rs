//! The structured-repair request (seed 5.6 steps 4 and 5): which endpoint the job's own
//! credentials reach (the model proxy's chat completions, or a claude-code subscription's
//! Messages API), what is asked of it, and the text it answered. The call is bounded as a
//! whole and ends with the job's token; the token travels only in its header and is masked by
//! value in every error text.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::error::RepairError;
use super::http::{sensitive, Http, RepairLimits};
use crate::job::{Harness, HarnessAuth};
use crate::redact::{head_chars, Redactor, Secret};

/// The repairer's instructions (the seed's `REPAIR_SYSTEM`, in our words).
pub const REPAIR_SYSTEM: &str = "You repair JSON. You are given text that was meant to be a \
single JSON object but does not parse. Reply with only the corrected JSON object: no prose, no \
code fences, no commentary. Never repeat or duplicate tokens. Keep the content faithfully and \
fix only the structure.";
/// The instruction between the shape hint and the broken text.
const REPAIR_ASK: &str = "The text below was meant to be that JSON object but does not parse. \
Return ONLY the corrected JSON object.";
/// How much of the broken text is sent.
const BAD_TEXT_CHARS: usize = 40_000;
/// The repair answer's output budget (Pi's own ceiling).
const MAX_TOKENS: u64 = 32_768;
const ANTHROPIC_BASE: &str = "https://api.anthropic.com";
const ANTHROPIC_VERSION: &str = "2023-06-01";
const ANTHROPIC_OAUTH_BETA: &str = "oauth-2025-04-20";

/// Where a repair can be asked for, from the job's own credentials.
#[derive(Debug, Clone)]
pub enum Channel {
    /// The model proxy (Pi): `POST <base>/chat/completions` with the session token as bearer.
    Proxy { base_url: String, token: Secret },
    /// A claude-code subscription: `POST <base>/v1/messages`.
    Anthropic {
        base_url: String,
        token: Secret,
        auth: AnthropicAuth,
    },
}

/// How the Messages API is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnthropicAuth {
    /// A vendor's Anthropic-compatible endpoint: `x-api-key`.
    ApiKey,
    /// Anthropic itself with an OAuth token: `Authorization: Bearer` plus the OAuth beta.
    OAuth,
}

impl Channel {
    /// The seed's choice: the proxy when the job has one and its session token; else a
    /// claude-code job's subscription token (its vendor base URL, or Anthropic's); else none
    /// (Codex, ambient claude-code).
    pub fn for_auth(auth: &HarnessAuth) -> Option<Channel> {
        match auth {
            HarnessAuth::Pi {
                proxy_base_url,
                session_token,
            } if !proxy_base_url.is_empty() && !session_token.expose().is_empty() => {
                Some(Channel::Proxy {
                    base_url: proxy_base_url.clone(),
                    token: session_token.clone(),
                })
            }
            HarnessAuth::Subscription {
                harness: Harness::ClaudeCode,
                subscription_token: Some(token),
                subscription_base_url,
                ..
            } if !token.expose().is_empty() => {
                let vendor = subscription_base_url.as_deref().filter(|u| !u.is_empty());
                Some(Channel::Anthropic {
                    base_url: vendor.unwrap_or(ANTHROPIC_BASE).to_owned(),
                    token: token.clone(),
                    auth: match vendor {
                        Some(_) => AnthropicAuth::ApiKey,
                        None => AnthropicAuth::OAuth,
                    },
                })
            }
            _ => None,
        }
    }

    fn token(&self) -> &Secret {
        match self {
            Channel::Proxy { token, .. } | Channel::Anthropic { token, .. } => token,
        }
    }
}

/// The user message: the shape hint, the ask, and the start of the broken text.
pub fn repair_prompt(shape_hint: &str, bad_text: &str) -> String {
    format!(
        "{shape_hint}\n\n{REPAIR_ASK}\n\n{}",
        head_chars(bad_text, BAD_TEXT_CHARS)
    )
}

/// Asks `channel` to repair: returns the text it answered (maybe still not JSON). Ends early
/// when `cancel` fires or the call outlasts `limits.timeout`.
pub async fn request_repair(
    client: &Client,
    channel: &Channel,
    model: &str,
    prompt: &str,
    limits: &RepairLimits,
    redactor: &Redactor,
    cancel: &CancellationToken,
) -> Result<String, RepairError> {
    let redactor = redactor.clone().with_secret(channel.token());
    let http = Http {
        client,
        limits,
        redactor: &redactor,
    };
    let call = async {
        match channel {
            Channel::Proxy { base_url, token } => {
                proxy(&http, base_url, token, model, prompt).await
            }
            Channel::Anthropic {
                base_url,
                token,
                auth,
            } => anthropic(&http, base_url, token, *auth, model, prompt).await,
        }
    };
    // Dropping the call aborts whatever it waits on: a request, a body, a backoff.
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(RepairError::Cancelled),
        done = tokio::time::timeout(limits.timeout, call) => {
            done.unwrap_or(Err(RepairError::TimedOut(limits.timeout)))
        }
    }
}

/// The proxy's chat completions; a 4xx other than 429 is asked again without
/// `response_format`.
async fn proxy(
    http: &Http<'_>,
    base_url: &str,
    token: &Secret,
    model: &str,
    prompt: &str,
) -> Result<String, RepairError> {
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        sensitive(&format!("Bearer {}", token.expose()))?,
    );
    // No `temperature`: the newest models refuse sampling parameters.
    let mut body = json!({
        "model": model,
        "stream": false,
        "max_tokens": MAX_TOKENS,
        "messages": [
            {"role": "system", "content": REPAIR_SYSTEM},
            {"role": "user", "content": prompt},
        ],
        "response_format": {"type": "json_object"},
    });
    let mut resp = http.post(&url, &headers, &body).await?;
    let status = resp.status();
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        // Some upstreams refuse `response_format`; the prompt alone asks for JSON.
        tracing::warn!(
                status = status.as_u16(),
                "structured-output: repair upstream refused response_format \u{2014} retrying without it"
            );
        if let Some(fields) = body.as_object_mut() {
            fields.remove("response_format");
        }
        resp = http.post(&url, &headers, &body).await?;
    }
    let status = resp.status();
    if !status.is_success() {
        let detail = http.detail(resp).await;
        return Err(RepairError::Proxy {
            status: status.as_u16(),
            detail,
        });
    }
    let answer = http.answer(resp).await?;
    Ok(answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

/// The Messages API of a claude-code subscription; the answer is its text blocks.
async fn anthropic(
    http: &Http<'_>,
    base_url: &str,
    token: &Secret,
    auth: AnthropicAuth,
    model: &str,
    prompt: &str,
) -> Result<String, RepairError> {
    let url = format!("{}/v1/messages", base_url.trim_end_matches('/'));
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(ANTHROPIC_VERSION),
    );
    match auth {
        AnthropicAuth::ApiKey => {
            headers.insert(
                HeaderName::from_static("x-api-key"),
                sensitive(token.expose())?,
            );
        }
        AnthropicAuth::OAuth => {
            headers.insert(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose()))?,
            );
            headers.insert(
                HeaderName::from_static("anthropic-beta"),
                HeaderValue::from_static(ANTHROPIC_OAUTH_BETA),
            );
        }
    }
    let body = json!({
        "model": model,
        "max_tokens": MAX_TOKENS,
        "system": REPAIR_SYSTEM,
        "messages": [{"role": "user", "content": prompt}],
    });
    let resp = http.post(&url, &headers, &body).await?;
    let status = resp.status();
    if !status.is_success() {
        let detail = http.detail(resp).await;
        return Err(RepairError::Subscription {
            status: status.as_u16(),
            detail,
        });
    }
    let answer = http.answer(resp).await?;
    let blocks = answer.get("content").and_then(Value::as_array);
    Ok(blocks
        .into_iter()
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect())
}
