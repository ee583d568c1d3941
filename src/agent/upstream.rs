//! Model-endpoint refusals told apart from agent failures (seed-later 4.3): an exhausted quota,
//! a rate limit the agent's retries could not ride out, a refused credential. Each is the
//! `llm-upstream` cause with the fix appended. Unlike the seed, which matched any `401` or
//! "authentication" in 500 characters of stderr, a status number counts only next to a word
//! that makes it a status.

use std::sync::LazyLock;

use regex::Regex;

pub const QUOTA_REMEDY: &str = "The model provider rejected the run: the account is out of quota or credit (HTTP 402). Top up or raise the limit with the provider, or switch to a provider key that has quota, then retry.";
pub const RATE_REMEDY: &str = "The model provider rate-limited the run (HTTP 429) and the agent exhausted its automatic retries. This is usually transient — wait a moment and retry. If it persists, reduce concurrent runs or use a provider key / plan with a higher rate limit.";
pub const AUTH_REMEDY: &str = "The model provider rejected the run: the API credential was refused (HTTP 401/403). The provider key is most likely invalid, revoked, or expired — replace it, then retry.";

/// A status number with a word that makes it an HTTP status, either side of it, or leading
/// the text as `<status>: <body>` (how Pi reports a failed model call).
static STATUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\b(?:status(?:\s*code)?|http(?:/[\d.]+)?|error|code)\W{0,3}(40[123]|429)\b|\b(40[123]|429)\W{0,3}(?:status|error|too many|unauthorized|forbidden|payment|rate)|\A\s*(40[123]|429)\s*:)")
        .expect("static regex")
});
static QUOTA: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)payment required|insufficient[_ ](?:funds|quota|credit|balance)|out of (?:quota|credits?)|quota exceeded|exceeded your current quota|billing (?:hard )?limit")
        .expect("static regex")
});
static RATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)too many requests|rate[ _-]?limit(?:ed)?\b").expect("static regex")
});
static AUTH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bunauthorized\b|\bforbidden\b|invalid[_ ](?:api[_ ])?key|incorrect api key|invalid x-api-key|authentication_error|invalid (?:access |bearer )?token")
        .expect("static regex")
});

/// The fix for a model-endpoint refusal described by `text` (the agent's terminal error or
/// its output at a failed exit), or `None` when it is not one.
pub fn llm_refusal_remedy(text: &str) -> Option<&'static str> {
    let status = STATUS
        .captures_iter(text)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)).or_else(|| c.get(3)))
        .map(|m| m.as_str())
        .next();
    match status {
        Some("402") => return Some(QUOTA_REMEDY),
        Some("429") if !QUOTA.is_match(text) => return Some(RATE_REMEDY),
        Some("401" | "403") => return Some(AUTH_REMEDY),
        _ => {}
    }
    if QUOTA.is_match(text) {
        Some(QUOTA_REMEDY)
    } else if RATE.is_match(text) {
        Some(RATE_REMEDY)
    } else if AUTH.is_match(text) {
        Some(AUTH_REMEDY)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_by_status_or_by_their_words() {
        assert_eq!(
            llm_refusal_remedy("429 status code (no body)"),
            Some(RATE_REMEDY)
        );
        assert_eq!(
            llm_refusal_remedy(r#"401: {"message":"mock: invalid session token"}"#),
            Some(AUTH_REMEDY)
        );
        assert_eq!(
            llm_refusal_remedy("Error: 401 Unauthorized from proxy"),
            Some(AUTH_REMEDY)
        );
        assert_eq!(llm_refusal_remedy("HTTP 403: forbidden"), Some(AUTH_REMEDY));
        assert_eq!(llm_refusal_remedy("status: 402"), Some(QUOTA_REMEDY));
        assert_eq!(
            llm_refusal_remedy("429: You exceeded your current quota, please check your plan"),
            Some(QUOTA_REMEDY)
        );
        assert_eq!(
            llm_refusal_remedy("Rate limit reached for requests"),
            Some(RATE_REMEDY)
        );
        assert_eq!(
            llm_refusal_remedy("invalid_api_key: Incorrect API key provided"),
            Some(AUTH_REMEDY)
        );
    }

    #[test]
    fn a_number_or_a_word_out_of_context_is_not_a_refusal() {
        assert_eq!(
            llm_refusal_remedy("SyntaxError at line 401 of app.js"),
            None
        );
        assert_eq!(
            llm_refusal_remedy("added authentication to the login form"),
            None
        );
        assert_eq!(llm_refusal_remedy("connection reset by peer"), None);
        assert_eq!(llm_refusal_remedy("500 status code"), None);
        assert_eq!(llm_refusal_remedy("see 401: the note below"), None);
    }
}
