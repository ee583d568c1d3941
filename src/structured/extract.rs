//! Reading a JSON document out of an agent's final answer (seed `extractJsonObject`), and the
//! advisory check for streaming corruption that doubles every token (seed `looksTokenDoubled`).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// A reply that is exactly one fenced block (```` ```json ```` or a bare fence, any case).
static WHOLE_FENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^```(?:json)?\s*([\s\S]*?)\s*```$").expect("static regex"));

/// Why no JSON could be read from a reply.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Neither the reply nor a `{...}` slice of it is JSON, and it holds no such slice.
    #[error("agent did not return a JSON object")]
    NoObject,
    /// The `{...}` slice is not JSON either.
    #[error("{0}")]
    Invalid(#[from] serde_json::Error),
}

/// The seed's `extractJsonObject`: the trimmed reply (or the body of the one fenced block it
/// consists of) parsed as JSON, else the slice from its first `{` to its last `}` parsed as
/// JSON. Any JSON value is returned, `null` and scalars included (Q10: the caller decides
/// what counts as a document).
pub fn extract_json_object(text: &str) -> Result<Value, ExtractError> {
    let trimmed = text.trim();
    let body = WHOLE_FENCE
        .captures(trimmed)
        .and_then(|c| c.get(1))
        .map_or(trimmed, |m| m.as_str());
    if let Ok(value) = serde_json::from_str(body) {
        return Ok(value);
    }
    let (Some(start), Some(end)) = (body.find('{'), body.rfind('}')) else {
        return Err(ExtractError::NoObject);
    };
    if end < start {
        return Err(ExtractError::NoObject);
    }
    Ok(serde_json::from_str(&body[start..=end])?)
}

/// The seed's `safeParse(extractJsonObject)`: a document, or nothing. `null` is nothing, every
/// other JSON value is a document (Q10, kept).
pub fn parse_document(text: &str) -> Option<Value> {
    extract_json_object(text).ok().filter(|v| !v.is_null())
}

/// How much of a reply the doubling check reads.
const DOUBLING_SCAN_CHARS: usize = 20_000;
/// Replies shorter than this are never called doubled.
const DOUBLING_MIN_CHARS: usize = 40;
/// The longest and shortest run that counts as a repeated token.
const DOUBLING_MAX_RUN: usize = 24;
const DOUBLING_MIN_RUN: usize = 2;

/// The doubling check's verdict: `ratio` is the share of the scanned text covered by runs
/// immediately repeated; `doubled` is `ratio >= 0.5`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Doubling {
    pub doubled: bool,
    pub ratio: f64,
}

/// The seed's `looksTokenDoubled` (5.6.8), for labelling a failure only: over the first
/// 20 000 chars, greedily at each position take the longest run of 24 down to 2 chars that is
/// immediately followed by itself, count both copies as covered and jump past them; else move
/// on one char.
pub fn looks_token_doubled(text: &str) -> Doubling {
    let chars: Vec<char> = text.chars().take(DOUBLING_SCAN_CHARS).collect();
    let n = chars.len();
    if n < DOUBLING_MIN_CHARS {
        return Doubling {
            doubled: false,
            ratio: 0.0,
        };
    }
    let mut covered = 0usize;
    let mut i = 0usize;
    while i < n {
        let run = (DOUBLING_MIN_RUN..=DOUBLING_MAX_RUN)
            .rev()
            .find(|&k| i + 2 * k <= n && chars[i..i + k] == chars[i + k..i + 2 * k]);
        match run {
            Some(k) => {
                covered += 2 * k;
                i += 2 * k;
            }
            None => i += 1,
        }
    }
    let ratio = covered as f64 / n as f64;
    Doubling {
        doubled: ratio >= 0.5,
        ratio,
    }
}
