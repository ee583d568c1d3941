//! Structured output (seed 5.6): reading a JSON document out of an agent's final answer, and
//! when that fails, one repair call to the job's own model endpoint asking for the same text as
//! valid JSON. Used by the structured explore flow.
//!
//! - `extract`: the seed's `extractJsonObject` and the token-doubling heuristic.
//! - `repair`: which endpoint the job's credentials reach ([`Channel`]) and the request to it.
//! - `http`: the client, the retries on transient answers, bounded reads ([`RepairLimits`]).
//! - `error`: [`RepairError`].
//!
//! This file holds [`resolve_structured_output`], which never fails: what went wrong is in its
//! [`Diagnostics`], whose [`Diagnostics::suffix`] the job's error quotes.

mod error;
mod extract;
mod http;
mod repair;
#[cfg(test)]
mod tests;

use reqwest::Client;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::job::Harness;
use crate::redact::Redactor;

pub use error::RepairError;
pub use extract::{
    extract_json_object, looks_token_doubled, parse_document, Doubling, ExtractError,
};
pub use http::{repair_client, RepairLimits};
pub use repair::{repair_prompt, request_repair, AnthropicAuth, Channel, REPAIR_SYSTEM};

/// The shape hint used when the job gives none.
pub const DEFAULT_SHAPE_HINT: &str = "Expected a single JSON object.";

/// What a resolution needs beside the reply: what is asked for, and where a repair can go.
pub struct Repair<'a> {
    /// Who produced the reply, for the logs (`agent`).
    pub label: &'a str,
    /// What the document should look like (`output.shapeHint`).
    pub shape_hint: &'a str,
    pub model: &'a str,
    /// Named when no channel can repair.
    pub harness: Harness,
    /// `None` when the job's credentials reach no JSON-capable endpoint (Codex, ambient
    /// claude-code).
    pub channel: Option<Channel>,
    pub client: &'a Client,
    pub limits: RepairLimits,
    /// The job's redactor (the channel's token is added to it).
    pub redactor: &'a Redactor,
}

/// Where the document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedOn {
    Primary,
    Repair,
    None,
}

/// How a resolution went (the seed's `StructuredDiagnostics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    pub parsed_on: ParsedOn,
    pub primary_chars: usize,
    pub looks_doubled: bool,
    pub doubled_ratio: f64,
    pub repair_attempted: bool,
    pub repair_succeeded: bool,
    /// Why the repair gave nothing; quoted only when a repair was attempted.
    pub repair_error: Option<String>,
}

impl Diagnostics {
    /// The seed's `diagnosticsSuffix`: `""`, or ` [<parts joined by "; ">]`.
    pub fn suffix(&self) -> String {
        let mut parts = Vec::new();
        if self.looks_doubled {
            parts.push("output appeared token-doubled (streaming corruption)".to_owned());
        }
        if self.repair_attempted {
            if self.repair_succeeded {
                parts.push("structured repair recovered it".to_owned());
            } else {
                let mut part = "structured repair did not help".to_owned();
                if let Some(e) = &self.repair_error {
                    part.push_str(&format!(" ({e})"));
                }
                parts.push(part);
            }
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" [{}]", parts.join("; "))
        }
    }
}

/// A resolution: the document (`None` when there is none) and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub value: Option<Value>,
    pub diagnostics: Diagnostics,
}

/// The seed's `resolveStructuredOutput`: `primary` parsed as a document; else, when the job's
/// credentials reach a channel, one repair call and its answer parsed. Never fails; a
/// cancelled `cancel` ends the repair at once (the caller then reports the interruption).
pub async fn resolve_structured_output(
    primary: &str,
    repair: &Repair<'_>,
    cancel: &CancellationToken,
) -> Resolved {
    let primary_chars = primary.chars().count();
    let mut diagnostics = Diagnostics {
        parsed_on: ParsedOn::Primary,
        primary_chars,
        looks_doubled: false,
        doubled_ratio: 0.0,
        repair_attempted: false,
        repair_succeeded: false,
        repair_error: None,
    };
    if let Some(value) = parse_document(primary) {
        return Resolved {
            value: Some(value),
            diagnostics,
        };
    }
    let doubling = looks_token_doubled(primary);
    diagnostics.parsed_on = ParsedOn::None;
    diagnostics.looks_doubled = doubling.doubled;
    diagnostics.doubled_ratio = doubling.ratio;
    let Some(channel) = &repair.channel else {
        diagnostics.repair_error = Some(format!(
            "structured-output repair unavailable for the {} harness",
            repair.harness.as_str()
        ));
        return Resolved {
            value: None,
            diagnostics,
        };
    };
    tracing::warn!(
        agent = repair.label,
        primary_chars,
        looks_doubled = doubling.doubled,
        doubled_ratio = doubling.ratio,
        "structured-output: primary unparseable \u{2014} attempting structured repair"
    );
    diagnostics.repair_attempted = true;
    let prompt = repair_prompt(repair.shape_hint, primary);
    let answer = request_repair(
        repair.client,
        channel,
        repair.model,
        &prompt,
        &repair.limits,
        repair.redactor,
        cancel,
    )
    .await;
    let value = match answer {
        Ok(text) => match parse_document(&text) {
            Some(value) => Some(value),
            None => {
                diagnostics.repair_error = Some("repair output still did not parse".to_owned());
                None
            }
        },
        Err(e) => {
            diagnostics.repair_error = Some(e.to_string());
            None
        }
    };
    match &value {
        Some(_) => {
            diagnostics.parsed_on = ParsedOn::Repair;
            diagnostics.repair_succeeded = true;
            tracing::info!(
                agent = repair.label,
                "structured-output: repair recovered a usable document"
            );
        }
        None => tracing::error!(
            agent = repair.label,
            repair_error = diagnostics.repair_error.as_deref().unwrap_or(""),
            "structured-output: unrecoverable after structured repair"
        ),
    }
    Resolved { value, diagnostics }
}
