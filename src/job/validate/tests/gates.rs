//! The pre-PR gates' job fields (seed-later 0.1): `validationChecks` and `dependencyInstall`
//! never refuse a job; what is malformed is dropped.

use serde_json::json;

use super::*;
use crate::job::CheckSpec;

#[test]
fn validation_checks_keep_usable_entries_label_them_and_clamp_the_attempts() {
    let job = parse(&with(
        "coding",
        json!({"validationChecks": {"checks": [
            {"label": "  lint ", "command": "npm run lint "},
            {"command": "cargo test"},
            {"label": "blank", "command": "   "},
            {"label": "no command"},
            "not an object",
            {"label": "", "command": 7}
        ], "maxAttempts": 2.9}}),
    ))
    .unwrap();
    let spec = job.validation_checks.expect("two usable checks");
    assert_eq!(
        spec.checks,
        vec![
            CheckSpec {
                label: "lint".into(),
                command: "npm run lint ".into()
            },
            CheckSpec {
                label: "cargo test".into(),
                command: "cargo test".into()
            },
        ]
    );
    assert_eq!(spec.max_attempts, 2);
    let attempts = |v: serde_json::Value| {
        parse(&with(
            "coding",
            json!({"validationChecks": {"checks": [{"command": "true"}], "maxAttempts": v}}),
        ))
        .unwrap()
        .validation_checks
        .unwrap()
        .max_attempts
    };
    assert_eq!(
        attempts(json!(0.5)),
        1,
        "the seed kept 0 (quirk); at least one"
    );
    assert_eq!(attempts(json!(1e9)), 10);
    assert_eq!(attempts(json!("5")), 3);
    assert_eq!(attempts(json!(-1)), 3);
}

#[test]
fn validation_checks_without_a_usable_check_are_absent() {
    for v in [
        json!({"checks": []}),
        json!({"checks": [{"command": ""}]}),
        json!({"checks": "npm test"}),
        json!([{"command": "npm test"}]),
        json!(null),
    ] {
        let job = parse(&with("coding", json!({ "validationChecks": v }))).unwrap();
        assert_eq!(job.validation_checks, None, "{v}");
    }
}

#[test]
fn dependency_install_is_a_trimmed_non_blank_command() {
    let job = parse(&with(
        "coding",
        json!({"dependencyInstall": {"command": "  npm ci \n"}}),
    ))
    .unwrap();
    assert_eq!(job.dependency_install.as_deref(), Some("npm ci"));
    for v in [
        json!({"command": "  "}),
        json!({"command": 1}),
        json!("npm ci"),
    ] {
        let job = parse(&with("coding", json!({ "dependencyInstall": v }))).unwrap();
        assert_eq!(job.dependency_install, None, "{v}");
    }
}
