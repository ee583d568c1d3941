//! The one redactor every string leaving the worker passes through (contract section 7), and
//! the [`Secret`] type that holds tokens without ever printing them.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A secret value (a git token, the model-proxy session token, a subscription token).
///
/// `Debug` and `Display` print `***`, and serialisation refuses, so a secret cannot reach a log
/// line or a published message by accident; code that needs the value calls [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the few places that must hand it on (the git credential callback,
    /// Pi's `models.json`, a subscription CLI's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("a secret is never serialised"))
    }
}

/// Known values shorter than this are not scrubbed: they would mangle ordinary text.
const MIN_KNOWN_SECRET_LEN: usize = 6;
/// JSON leaves of a subscription credential shorter than this are not registered.
const MIN_JSON_LEAF_LEN: usize = 12;

static URL_USERINFO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(https?://)[^@\s/]*@").expect("static regex"));
static ACCESS_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)x-access-token:[^@\s]+").expect("static regex"));
static GITHUB_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(gh[pso]_|github_pat_)[A-Za-z0-9_]+").expect("static regex"));
static GITLAB_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bglpat-[A-Za-z0-9_\-]+").expect("static regex"));
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]+").expect("static regex"));
static CREDENTIAL_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b([A-Za-z0-9_]*(?:password|passwd|pwd|secret|token|key|credential)[A-Za-z0-9_]*\s*[:=]\s*)\S+",
    )
    .expect("static regex")
});

/// Masks secrets in text: every known secret value of the job, then the seed's four pattern
/// rules, GitLab `glpat-` tokens and `Bearer` values (which the seed missed, Q15).
#[derive(Clone, Default)]
pub struct Redactor {
    known: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("known", &self.known.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor with the pattern rules only.
    pub fn patterns_only() -> Self {
        Self::default()
    }

    /// Registers a secret value. A subscription credential that is a JSON blob (a Codex
    /// `auth.json`) also registers every string leaf long enough to be a token.
    pub fn with_secret(mut self, secret: &Secret) -> Self {
        self.add(secret.expose());
        self
    }

    fn add(&mut self, value: &str) {
        if value.chars().count() < MIN_KNOWN_SECRET_LEN {
            return;
        }
        if !self.known.iter().any(|k| k == value) {
            self.known.push(value.to_owned());
            // Longest first, so a token that contains another is masked whole.
            self.known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        }
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(value) {
            let mut leaves = Vec::new();
            collect_string_leaves(&json, &mut leaves);
            for leaf in leaves {
                if leaf.chars().count() >= MIN_JSON_LEAF_LEN && leaf != value {
                    self.add(&leaf);
                }
            }
        }
    }

    /// Redacts `input`. Idempotent: redacting twice gives the same text.
    pub fn redact(&self, input: &str) -> String {
        let out = self.redact_shapes(input);
        CREDENTIAL_ASSIGNMENT
            .replace_all(&out, "${1}***")
            .into_owned()
    }

    /// Redacts an agent's prose (a summary, a follow-up, a todo label): the known values and
    /// the token shapes as [`Redactor::redact`] does, but a `name: value` or `name=value` pair
    /// is masked only when the value looks like a credential. "Tokens: 42", "max_tokens: 32768"
    /// or "monkey: banana" stay as written (the seed's rule turned them into `***`, Q16), while
    /// `API_KEY=sk-live-9f8e7d` is still masked. Idempotent.
    pub fn redact_prose(&self, input: &str) -> String {
        let out = self.redact_shapes(input);
        CREDENTIAL_ASSIGNMENT
            .replace_all(&out, |caps: &regex::Captures<'_>| {
                let (name, value) = (&caps[1], &caps[0][caps[1].len()..]);
                if looks_like_credential(value) {
                    format!("{name}***")
                } else {
                    caps[0].to_owned()
                }
            })
            .into_owned()
    }

    /// Known values, then every token shape except the `name=value` rule.
    fn redact_shapes(&self, input: &str) -> String {
        // Known values first (longest first): a pattern that matched only the head of a token
        // (a GitHub shape stops at `!`, an assignment at a space) would leave its tail behind,
        // no longer matching the known value.
        let mut out = input.to_owned();
        for secret in &self.known {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out = URL_USERINFO.replace_all(&out, "${1}***@").into_owned();
        out = ACCESS_TOKEN
            .replace_all(&out, "x-access-token:***")
            .into_owned();
        out = GITHUB_TOKEN.replace_all(&out, "${1}***").into_owned();
        out = GITLAB_TOKEN.replace_all(&out, "glpat-***").into_owned();
        BEARER.replace_all(&out, "${1}***").into_owned()
    }

    /// Redacts `input` as [`Redactor::redact`] does, then keeps its first `max_chars`
    /// characters; also returns how many characters were cut. Redacting before cutting means
    /// a cut can never leave the head of a secret behind.
    pub fn redact_head(&self, input: &str, max_chars: usize) -> (String, u64) {
        let out = self.redact(input);
        let kept = head_chars(&out, max_chars);
        let cut = out[kept.len()..].chars().count() as u64;
        (kept.to_owned(), cut)
    }

    /// Redacts every string of a JSON document, object keys included (a structured result is
    /// the agent's text as much as its summary is).
    pub fn redact_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact(&k), self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Whether the value of a `name: value` pair in prose could be a credential: not a number, not
/// a plain word, not already masked. Secrets mix cases, digits or symbols; prose values are
/// counts and words.
fn looks_like_credential(value: &str) -> bool {
    let v = value.trim_matches(|c: char| matches!(c, '"' | '\'' | ',' | '.' | ';' | ')' | '('));
    if v.is_empty() || v == "***" || v.ends_with("***") {
        return false;
    }
    let numeric = v
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '_' | '%' | 'k' | 'K' | 'M'));
    let plain_word = v.chars().all(|c| c.is_alphabetic() || c == '-')
        && (v.chars().all(|c| c.is_lowercase() || c == '-')
            || v.chars().skip(1).all(|c| c.is_lowercase()));
    let number = numeric && v.chars().any(|c| c.is_ascii_digit());
    !(number || plain_word)
}

fn collect_string_leaves(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_string_leaves(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_string_leaves(v, out)),
        _ => {}
    }
}

/// The last `max_chars` characters of `s` (on a char boundary).
pub fn tail_chars(s: &str, max_chars: usize) -> &str {
    let count = s.chars().count();
    if count <= max_chars {
        return s;
    }
    let skip = count - max_chars;
    match s.char_indices().nth(skip) {
        Some((idx, _)) => &s[idx..],
        None => "",
    }
}

/// The first `max_chars` characters of `s` (on a char boundary).
pub fn head_chars(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
