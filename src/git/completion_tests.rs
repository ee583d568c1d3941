//! Completion ref names: readable, valid, distinct and reversible.
use super::*;

const PREFIX: &str = "refs/harness/done/";

#[test]
fn plain_job_ids_are_kept_readable() {
    assert_eq!(
        completion_ref(PREFIX, "job-42_a"),
        "refs/harness/done/job-42_a"
    );
    assert_eq!(
        completion_ref(PREFIX, "3f2b9c1e-0d4a-4c53-9a0e-5b7f1d2e3c4a"),
        "refs/harness/done/3f2b9c1e-0d4a-4c53-9a0e-5b7f1d2e3c4a"
    );
}

#[test]
fn a_prefix_without_a_trailing_slash_gets_one() {
    assert_eq!(completion_ref("refs/done", "j1"), "refs/done/j1");
}

#[test]
fn characters_git_refuses_are_percent_encoded_into_one_valid_component() {
    let odd = [
        "a b",
        "a..b",
        "a/b",
        "x.lock",
        ".hidden",
        "end.",
        "t~1^2:3?4*5[6\\7",
        "at@{0}",
        "@",
        "tab\there\u{7f}",
        "ünïcødé-🚀",
        "100%",
        "a//b/",
    ];
    for id in odd {
        let name = completion_ref(PREFIX, id);
        assert!(git2::Reference::is_valid_name(&name), "{id:?} -> {name}");
        let component = name.strip_prefix(PREFIX).unwrap();
        assert!(!component.contains('/'), "{id:?} -> {name}");
        assert_eq!(decode(component), id, "{name} decodes back");
    }
    assert_eq!(
        completion_ref(PREFIX, "a b/c.lock"),
        "refs/harness/done/a%20b%2Fc%2Elock"
    );
}

#[test]
fn an_encoded_looking_id_and_the_id_it_encodes_get_different_refs() {
    let pairs = [("a b", "a%20b"), ("a.b", "a%2Eb"), ("x", "X")];
    for (one, other) in pairs {
        assert_ne!(completion_ref(PREFIX, one), completion_ref(PREFIX, other));
    }
}

#[test]
fn empty_and_overlong_ids_are_hashed_into_valid_distinct_refs() {
    let long_a = "a".repeat(300);
    let long_b = format!("{}b", "a".repeat(299));
    let spaces = " ".repeat(70); // 210 bytes once encoded
    let mut seen = std::collections::HashSet::new();
    for id in ["", long_a.as_str(), long_b.as_str(), spaces.as_str()] {
        let name = completion_ref(PREFIX, id);
        assert!(git2::Reference::is_valid_name(&name), "{name}");
        let component = name.strip_prefix(PREFIX).unwrap();
        assert!(component.starts_with(HASHED_PREFIX), "{name}");
        assert_eq!(component.len(), HASHED_PREFIX.len() + 64);
        assert!(seen.insert(name));
    }
    let at_limit = "a".repeat(MAX_COMPONENT_BYTES);
    assert_eq!(
        completion_ref(PREFIX, &at_limit),
        format!("{PREFIX}{at_limit}")
    );
}

#[test]
fn invalid_completion_ref_names_are_refused_before_any_network_use() {
    assert!(require_ref_name("push", "refs/harness/done/j1").is_ok());
    for bad in [
        "harness/done/j1",
        "refs/harness/done/",
        "refs/a b",
        "refs/x.lock",
    ] {
        let err = require_ref_name("push", bad).unwrap_err();
        assert!(err.to_string().contains("not a valid ref name"), "{err}");
    }
}

/// The inverse of the readable encoding, to prove it loses nothing.
fn decode(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
