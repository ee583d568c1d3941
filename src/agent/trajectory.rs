//! The raw material of a run's trajectory (seed-later 8): tool bodies and model answers as
//! the stream parsers hand them on. Parsers keep only a head of each, so a tool that printed
//! megabytes costs a bounded copy; the worker redacts and caps them further before they leave.

use serde_json::Value;

/// Characters of a body a parser keeps. Comfortably above the published caps, so that
/// redacting before the final cut still sees whole secrets near the cut.
pub const BODY_HEAD_CHARS: usize = 16 * 1024;

/// A body's kept head and the number of characters cut from it.
pub fn head(text: &str) -> (String, u64) {
    let kept = crate::redact::head_chars(text, BODY_HEAD_CHARS);
    let cut = text[kept.len()..].chars().count() as u64;
    (kept.to_owned(), cut)
}

/// A JSON body as text: strings as they are, anything else as compact JSON; then its head.
pub fn body(value: &Value) -> (String, u64) {
    match value {
        Value::String(s) => head(s),
        other => head(&other.to_string()),
    }
}

/// The first of `keys` that `value` holds, as a body.
pub fn body_of(value: &Value, keys: &[&str]) -> Option<(String, u64)> {
    keys.iter()
        .find_map(|k| value.get(*k).filter(|v| !v.is_null()))
        .map(body)
}

/// Sets a span's bodies from what the parser kept.
pub fn with_bodies(
    mut span: crate::job::outcome::ToolSpan,
    args: Option<(String, u64)>,
    result: Option<(String, u64)>,
) -> crate::job::outcome::ToolSpan {
    if let Some((text, cut)) = args {
        span.args = Some(text);
        span.args_dropped = cut;
    }
    if let Some((text, cut)) = result {
        span.result = Some(text);
        span.result_dropped = cut;
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_keeps_strings_as_they_are_and_other_values_as_json() {
        assert_eq!(body(&json!("ls -la")), ("ls -la".to_owned(), 0));
        assert_eq!(
            body(&json!({"path": "a.txt"})),
            (r#"{"path":"a.txt"}"#.to_owned(), 0)
        );
        assert_eq!(
            body_of(&json!({"input": null, "args": [1]}), &["input", "args"]),
            Some(("[1]".to_owned(), 0))
        );
    }

    #[test]
    fn a_huge_body_is_cut_to_its_head_and_the_cut_is_counted_in_chars() {
        let big = "é".repeat(BODY_HEAD_CHARS + 10);
        let (kept, cut) = head(&big);
        assert_eq!(kept.chars().count(), BODY_HEAD_CHARS);
        assert_eq!(cut, 10);
    }
}
