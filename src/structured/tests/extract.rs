//! Reading a document out of a reply (`extractJsonObject`), the doubling heuristic, and the
//! diagnostics suffix texts.

use serde_json::json;

use crate::structured::{
    extract_json_object, looks_token_doubled, parse_document, Diagnostics, ExtractError, ParsedOn,
};

#[test]
fn a_reply_that_is_one_fenced_block_is_read_from_inside_the_fence() {
    for reply in [
        "```json\n{\"ok\": true}\n```",
        "  ```JSON {\"ok\": true} ```  ",
        "```\n{\"ok\": true}\n```",
    ] {
        assert_eq!(
            extract_json_object(reply).unwrap(),
            json!({"ok": true}),
            "{reply}"
        );
    }
    // A fenced array is JSON too: the fence alone decides nothing about the shape.
    assert_eq!(
        extract_json_object("```json\n[1, 2]\n```").unwrap(),
        json!([1, 2])
    );
}

#[test]
fn an_object_embedded_in_prose_is_the_slice_from_the_first_to_the_last_brace() {
    let reply =
        "Here is the result:\n```json\n{\"a\": {\"b\": [1, {\"c\": 2}]}}\n```\nHope it helps!";
    assert_eq!(
        extract_json_object(reply).unwrap(),
        json!({"a": {"b": [1, {"c": 2}]}})
    );
    let nested = r#"Result {"outer": {"inner": {"deep": "x}"}}, "n": 1} done"#;
    assert_eq!(
        extract_json_object(nested).unwrap(),
        json!({"outer": {"inner": {"deep": "x}"}}, "n": 1})
    );
}

#[test]
fn a_reply_without_a_brace_pair_says_it_holds_no_object() {
    for reply in [
        "this is not json at all",
        "only an opening {",
        "} backwards {",
        "",
    ] {
        let err = extract_json_object(reply).unwrap_err();
        assert!(matches!(err, ExtractError::NoObject), "{reply}: {err}");
        assert_eq!(err.to_string(), "agent did not return a JSON object");
    }
    // Braces that do not hold JSON are a parse failure, not a document.
    assert!(matches!(
        extract_json_object("{ not: json }").unwrap_err(),
        ExtractError::Invalid(_)
    ));
    assert_eq!(parse_document("{ not: json }"), None);
}

#[test]
fn q10_any_json_value_but_null_is_a_document_as_in_the_seed() {
    assert_eq!(parse_document("42"), Some(json!(42)));
    assert_eq!(parse_document("\"str\""), Some(json!("str")));
    assert_eq!(parse_document("[1,2]"), Some(json!([1, 2])));
    assert_eq!(parse_document(" true "), Some(json!(true)));
    // `null` parses but is no document: it goes to the repair like unparseable text.
    assert_eq!(extract_json_object("null").unwrap(), json!(null));
    assert_eq!(parse_document("null"), None);
}

#[test]
fn every_token_emitted_twice_is_flagged_as_doubled_near_ratio_one() {
    let clean = r#"{"risks": ["the migration drops a column", "no rollback"], "summary": "two risks found in the schema change"}"#;
    let chars: Vec<char> = clean.chars().collect();
    let doubled: String = chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>().repeat(2))
        .collect();
    let d = looks_token_doubled(&doubled);
    assert!(d.doubled, "{d:?}");
    assert!(d.ratio > 0.8, "{d:?}");
}

#[test]
fn clean_pretty_printed_json_and_short_texts_are_not_doubled() {
    let pretty = serde_json::to_string_pretty(&json!({
        "summary": "The service reads its configuration once at start-up.",
        "risks": [
            {"title": "Stale config", "detail": "A reload needs a restart.", "severity": "low"},
            {"title": "No validation", "detail": "Bad values fail late.", "severity": "medium"}
        ],
        "environment": "local"
    }))
    .unwrap();
    let d = looks_token_doubled(&pretty);
    assert!(!d.doubled, "{d:?}");
    assert!(d.ratio < 0.5, "{d:?}");
    assert!(!looks_token_doubled("{{}}").doubled);
    // Under 40 chars is never doubled, however repetitive.
    assert!(!looks_token_doubled(&"ab".repeat(19)).doubled);
    assert!(looks_token_doubled(&"ab".repeat(20)).doubled);
}

#[test]
fn only_the_first_20000_chars_are_scanned() {
    // Random letters (hardly ever an immediate repeat), then a doubled tail past the window.
    let mut rng = fastrand::Rng::with_seed(7);
    let head: String = (0..20_000).map(|_| rng.lowercase()).collect();
    let text = format!("{head}{}", "xyxy".repeat(10_000));
    let d = looks_token_doubled(&text);
    assert!(!d.doubled, "{d:?}");
}

fn diagnostics() -> Diagnostics {
    Diagnostics {
        parsed_on: ParsedOn::None,
        primary_chars: 100,
        looks_doubled: false,
        doubled_ratio: 0.0,
        repair_attempted: false,
        repair_succeeded: false,
        repair_error: None,
    }
}

#[test]
fn the_suffix_summarises_a_doubled_unrecovered_failure_with_its_error() {
    let d = Diagnostics {
        looks_doubled: true,
        repair_attempted: true,
        repair_error: Some("repair output still did not parse".into()),
        ..diagnostics()
    };
    assert_eq!(
        d.suffix(),
        " [output appeared token-doubled (streaming corruption); structured repair did not help \
         (repair output still did not parse)]"
    );
    let quiet = Diagnostics {
        repair_attempted: true,
        ..diagnostics()
    };
    assert_eq!(quiet.suffix(), " [structured repair did not help]");
}

#[test]
fn the_suffix_is_empty_for_a_clean_primary_and_names_a_recovery() {
    let primary = Diagnostics {
        parsed_on: ParsedOn::Primary,
        ..diagnostics()
    };
    assert_eq!(primary.suffix(), "");
    let recovered = Diagnostics {
        parsed_on: ParsedOn::Repair,
        repair_attempted: true,
        repair_succeeded: true,
        ..diagnostics()
    };
    assert_eq!(recovered.suffix(), " [structured repair recovered it]");
    // No repair was attempted (no channel): its reason stays out of the job's error.
    let unavailable = Diagnostics {
        repair_error: Some("structured-output repair unavailable for the codex harness".into()),
        ..diagnostics()
    };
    assert_eq!(unavailable.suffix(), "");
}
