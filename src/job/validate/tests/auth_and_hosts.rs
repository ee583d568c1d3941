//! Harness auth (seed 2.3) and the host allowlist (seed 2.10).

use serde_json::json;

use super::*;

#[test]
fn the_pi_harness_requires_the_proxy_pair_and_drops_subscription_fields() {
    let job = parse(&with(
        "coding",
        json!({"subscriptionToken": "sub", "ambientAuth": true, "harness": "gemini"}),
    ))
    .unwrap();
    assert_eq!(
        job.auth,
        HarnessAuth::Pi {
            proxy_base_url: "https://w/v1".into(),
            session_token: Secret::new("sess"),
        }
    );
    assert_eq!(
        refusal(&with(
            "coding",
            json!({"harness": "pi", "sessionToken": ""})
        )),
        nes_refusal("sessionToken")
    );
}

#[test]
fn a_subscription_harness_requires_its_token_and_drops_the_proxy_pair() {
    for (name, harness) in [
        ("claude-code", Harness::ClaudeCode),
        ("codex", Harness::Codex),
    ] {
        assert_eq!(
            refusal(&with("coding", json!({ "harness": name }))),
            nes_refusal("subscriptionToken")
        );
        let job = parse(&with(
            "coding",
            json!({"harness": name, "subscriptionToken": "sub",
                "subscriptionBaseUrl": "https://sub.example", "proxyBaseUrl": null,
                "sessionToken": null}),
        ))
        .unwrap();
        assert_eq!(
            job.auth,
            HarnessAuth::Subscription {
                harness,
                subscription_token: Some(Secret::new("sub")),
                subscription_base_url: Some("https://sub.example".into()),
                ambient_auth: false,
            }
        );
        assert_eq!(job.auth.harness(), harness);
    }
}

#[test]
fn ambient_auth_needs_no_subscription_token_and_carries_none() {
    let job = parse(&with(
        "coding",
        json!({"harness": "codex", "ambientAuth": true, "subscriptionToken": "sub",
            "subscriptionBaseUrl": "https://sub.example"}),
    ))
    .unwrap();
    assert_eq!(
        job.auth,
        HarnessAuth::Subscription {
            harness: Harness::Codex,
            subscription_token: None,
            subscription_base_url: None,
            ambient_auth: true,
        }
    );
    assert_eq!(
        refusal(&with(
            "coding",
            json!({"harness": "codex", "ambientAuth": "true"})
        )),
        nes_refusal("subscriptionToken")
    );
}

#[test]
fn the_job_redactor_masks_the_tokens_it_carries() {
    let job = parse(&with("coding", json!({"sessionToken": "sess-value-123"}))).unwrap();
    assert_eq!(
        job.redactor().redact("token sess-value-123 leaked"),
        "token *** leaked"
    );
}

// ---- host allowlist (seed 2.10) -------------------------------------------------------------

fn clone_url_refusal(url: &str, policy: &ValidationPolicy) -> Option<String> {
    let mut job = base("coding");
    job["repo"]["cloneUrl"] = json!(url);
    parse_with(&job, policy).err().map(|e| e.message)
}

#[test]
fn file_urls_are_always_allowed() {
    assert_eq!(clone_url_refusal("file:///tmp/repo.git", &policy()), None);
    assert_eq!(clone_url_refusal("FILE://evil.example/x", &policy()), None);
}

#[test]
fn http_and_https_hosts_are_lower_cased_and_their_port_ignored() {
    for url in [
        "http://github.com/acme/widgets.git",
        "HTTPS://GitHub.COM:8443/acme/widgets.git",
        "https://user@api.github.com/x",
        "  https://github.com/acme/widgets.git\n",
    ] {
        assert_eq!(clone_url_refusal(url, &policy()), None, "{url}");
    }
}

#[test]
fn configured_hosts_extend_the_allowlist() {
    let ghe = ValidationPolicy::with_hosts([" GHE.Example.com ", ""], MAX);
    assert_eq!(
        clone_url_refusal("https://ghe.example.com/a/b.git", &ghe),
        None
    );
    assert_eq!(
        clone_url_refusal("https://ghe.example.com/a/b.git", &policy()).as_deref(),
        Some("Invalid job: 'repo.cloneUrl' host 'ghe.example.com' is not an allowed GitHub host")
    );
}

#[test]
fn urls_that_are_not_http_https_or_file_are_refused() {
    for url in [
        "ssh://git@github.com/acme/widgets.git",
        "git://github.com/acme/widgets.git",
        "ftp://github.com/x",
        "javascript:alert(1)",
    ] {
        assert_eq!(
            clone_url_refusal(url, &policy()).as_deref(),
            Some("Invalid job: 'repo.cloneUrl' must be an https or file URL"),
            "{url}"
        );
    }
}

#[test]
fn strings_that_are_not_urls_are_refused() {
    for url in [
        "git@github.com:acme/widgets.git",
        "github.com/acme/widgets",
        "https://",
        "http://exa mple.com/",
        "https://[::1",
    ] {
        assert_eq!(
            clone_url_refusal(url, &policy()).as_deref(),
            Some("Invalid job: 'repo.cloneUrl' must be a valid URL"),
            "{url}"
        );
    }
}

#[test]
fn look_alike_hosts_are_refused_by_their_parsed_host() {
    let cases = [
        (
            "https://github.com.evil.example/x",
            "github.com.evil.example",
        ),
        ("https://github.com@evil.example/x", "evil.example"),
        ("https://evil.example\\@github.com/x", "evil.example"),
        ("https://127.0.0.1/x", "127.0.0.1"),
        ("https://[::1]/x", "[::1]"),
        ("https://xn--gthub-zsa.com/x", "xn--gthub-zsa.com"),
        ("https://gíthub.com/x", "xn--gthub-zsa.com"),
    ];
    for (url, host) in cases {
        assert_eq!(
            clone_url_refusal(url, &policy()),
            Some(format!(
                "Invalid job: 'repo.cloneUrl' host '{host}' is not an allowed GitHub host"
            )),
            "{url}"
        );
    }
}

#[test]
fn a_clone_url_is_kept_in_the_form_its_host_was_checked_in() {
    // Lenient spellings the URL standard reads as github.com: git must see exactly that host.
    for raw in [
        "https:github.com/acme/widgets.git",
        "https:\\\\github.com/acme/widgets.git",
        "https:/github.com/acme/widgets.git",
        "\thttps://GitHub.com/acme/widgets.git",
    ] {
        let mut job = base("coding");
        job["repo"]["cloneUrl"] = json!(raw);
        assert_eq!(
            parse(&job).unwrap().repo.clone_url,
            "https://github.com/acme/widgets.git",
            "{raw:?}"
        );
    }
    let mut job = base("coding");
    job["repo"]["cloneUrl"] = json!("file:///srv/repo.git");
    assert_eq!(parse(&job).unwrap().repo.clone_url, "file:///srv/repo.git");
}
