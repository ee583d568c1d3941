//! The redactor: known values, token shapes, prose, idempotence.
use super::*;

fn patterns(s: &str) -> String {
    Redactor::patterns_only().redact(s)
}

#[test]
fn every_string_of_a_json_document_is_redacted_keys_included_and_its_shape_kept() {
    let r = Redactor::patterns_only().with_secret(&Secret::new("sess-SECRET-123"));
    let doc = serde_json::json!({
        "summary": "used sess-SECRET-123 to call it",
        "items": [{"note": "token ghp_abc123 leaked"}, 3, true, null],
        "sess-SECRET-123": 1
    });
    assert_eq!(
        r.redact_json(doc),
        serde_json::json!({
            "summary": "used *** to call it",
            "items": [{"note": "token ghp_*** leaked"}, 3, true, null],
            "***": 1
        })
    );
}

#[test]
fn strips_url_userinfo_so_a_leaked_clone_url_cannot_reveal_the_token() {
    let out = patterns("fatal: clone https://x-access-token:ghs_SECRET123@github.com/o/r.git");
    assert!(!out.contains("ghs_SECRET123"), "{out}");
    assert!(out.contains("https://***@github.com/o/r.git"), "{out}");
}

#[test]
fn strips_bare_access_token_credentials_and_github_token_shapes() {
    for (input, secret) in [
        ("x-access-token:ghs_TOPSECRET failed", "TOPSECRET"),
        ("token ghp_abcDEF123 leaked", "abcDEF123"),
        ("token github_pat_abc123 leaked", "abc123"),
    ] {
        let out = patterns(input);
        assert!(!out.contains(secret), "{input} -> {out}");
    }
}

#[test]
fn keeps_the_context_around_a_redacted_git_failure() {
    let out = patterns(
        "Command failed: git clone https://x-access-token:ghs_abcdefghijkl@github.com/o/r.git\nfatal: repository not found",
    );
    assert!(!out.contains("ghs_abcdefghijkl"));
    assert!(out.contains("repository not found"));
}

#[test]
fn scrubs_credential_named_assignments_but_not_author_lines() {
    let out = patterns(
        "POSTGRES_PASSWORD=hunter2 DATABASE_PASSWORD: s3cr3t-value DB_ACCESS_KEY=AKIA123 api_key=\"abcdef123456\" FATAL: boom",
    );
    for s in ["hunter2", "s3cr3t-value", "AKIA123", "abcdef123456"] {
        assert!(!out.contains(s), "{out}");
    }
    assert!(out.contains("FATAL: boom"));
    let author = "Author: Jane Doe <jane@example.com>";
    assert_eq!(patterns(author), author);
}

#[test]
fn masks_gitlab_and_bearer_tokens_that_the_seed_missed() {
    let out = patterns("glpat-abcDEF_123-x and Authorization: Bearer sess.abc-123");
    assert!(!out.contains("abcDEF_123"), "{out}");
    assert!(!out.contains("sess.abc-123"), "{out}");
}

#[test]
fn masks_known_job_secrets_by_value_but_not_short_ones() {
    let r = Redactor::patterns_only()
        .with_secret(&Secret::new("sess-EXAMPLE-value"))
        .with_secret(&Secret::new("cat"));
    assert_eq!(r.redact("got sess-EXAMPLE-value back"), "got *** back");
    assert_eq!(r.redact("the cat sat"), "the cat sat");
}

/// The token's 4-character windows past its `prefix` that occur in `out`.
fn surviving_fragments(out: &str, token: &str, prefix: &str) -> Vec<String> {
    let chars: Vec<char> = token[prefix.len()..].chars().collect();
    chars
        .windows(4)
        .map(|w| w.iter().collect::<String>())
        .filter(|f| out.contains(f.as_str()))
        .collect()
}

#[test]
fn a_known_token_with_special_characters_is_masked_whole_not_cut_by_a_pattern() {
    // Each would be half-masked by a pattern rule if the patterns ran first: the GitHub
    // shape stops at the first character outside `[A-Za-z0-9_]`, the assignment shape at
    // the first space.
    let tokens = [
        ("ghp_Sp3c!al$Tok@en:9x%yZ", "ghp_"),
        ("github_pat_11AB!cd$EF@gh:IJ", "github_pat_"),
        ("ghs_Abc.Def/Ghi+Jkl=Mno~Pqr", "ghs_"),
        ("glpat-Xy7!Qw$Er@Ty:Ui", "glpat-"),
        ("API_KEY=s3cr3t value$with@parts", "API_KEY="),
        ("db_password: hunter2!and more", "db_password: "),
    ];
    for (token, prefix) in tokens {
        let r = Redactor::patterns_only().with_secret(&Secret::new(token));
        let out = r.redact(&format!("before {token} after"));
        assert_eq!(out, "before *** after", "{token}");
        assert!(
            surviving_fragments(&out, token, prefix).is_empty(),
            "{token} -> {out}"
        );
        // Inside a URL, a JSON string and a line of agent output, too.
        for text in [
            format!("https://x-access-token:{token}@github.com/o/r.git"),
            format!("{{\"summary\":\"leaked {token}\"}}"),
            format!("echo {token}\n{token}"),
        ] {
            let out = r.redact(&text);
            assert!(
                surviving_fragments(&out, token, prefix).is_empty(),
                "{text} -> {out}"
            );
            assert_eq!(r.redact(&out), out, "not idempotent on {text}");
        }
    }
}

#[test]
fn of_two_known_tokens_where_one_contains_the_other_the_longer_is_masked_whole() {
    let r = Redactor::patterns_only()
        .with_secret(&Secret::new("Sp3c!al"))
        .with_secret(&Secret::new("ghp_Sp3c!al$Tok"));
    assert_eq!(r.redact("a ghp_Sp3c!al$Tok b Sp3c!al c"), "a *** b *** c");
}

#[test]
fn registers_long_json_leaves_of_a_codex_auth_blob() {
    let blob = r#"{"auth_mode":"chatgpt","tokens":{"access_token":"super-secret-access-token","refresh_token":"super-secret-refresh"},"account_id":"acct-1234567890"}"#;
    let r = Redactor::patterns_only().with_secret(&Secret::new(blob));
    let out = r.redact("stderr: super-secret-access-token and acct-1234567890 via chatgpt");
    assert!(!out.contains("super-secret-access-token"));
    assert!(!out.contains("acct-1234567890"));
    assert!(out.contains("chatgpt"));
}

#[test]
fn prose_keeps_counts_and_words_but_not_credentials_or_known_values() {
    let r = Redactor::patterns_only().with_secret(&Secret::new("sess-EXAMPLE-value"));
    let summary = "Done. Tokens: 42, max_tokens: 32768, monkey: banana, Key: Value. \
                   Set API_KEY=sk-live-9f8e7d and password: hunter2; the token ghp_abc123 \
                   and sess-EXAMPLE-value are gone.";
    let out = r.redact_prose(summary);
    for kept in [
        "Tokens: 42",
        "max_tokens: 32768",
        "monkey: banana",
        "Key: Value.",
    ] {
        assert!(out.contains(kept), "{kept} was mangled: {out}");
    }
    for gone in ["sk-live-9f8e7d", "hunter2", "abc123", "sess-EXAMPLE-value"] {
        assert!(!out.contains(gone), "{gone} survived: {out}");
    }
    assert_eq!(r.redact_prose(&out), out, "idempotent");
    // The strict rule (errors, logs) still masks every assignment.
    assert!(r.redact("Tokens: 42").contains("***"));
}

#[test]
fn is_idempotent() {
    let r = Redactor::patterns_only().with_secret(&Secret::new("abcdefgh"));
    let once = r.redact("https://u:p@h/x token=abcdefgh ghp_zzz abcdefgh");
    assert_eq!(r.redact(&once), once);
}

#[test]
fn secret_never_prints_or_serialises_its_value() {
    let s = Secret::new("hunter2-value");
    assert_eq!(format!("{s} {s:?}"), "*** ***");
    assert!(serde_json::to_string(&s).is_err());
}

#[test]
fn tails_and_heads_respect_char_boundaries() {
    assert_eq!(tail_chars("héllo", 3), "llo");
    assert_eq!(head_chars("héllo", 2), "hé");
    assert_eq!(tail_chars("ab", 5), "ab");
}

#[test]
fn a_capped_body_is_redacted_before_it_is_cut_so_no_secret_head_survives() {
    let r = Redactor::patterns_only().with_secret(&Secret::new("hunter2-SECRET-value"));
    // The cap falls inside the secret: cutting first would keep its head.
    let (kept, cut) = r.redact_head("abc hunter2-SECRET-value tail", 10);
    assert!(!kept.contains("hunter2"), "{kept}");
    assert_eq!(kept, "abc *** ta");
    assert_eq!(cut, 2);
    let (whole, none) = r.redact_head("short", 10);
    assert_eq!((whole.as_str(), none), ("short", 0));
}
