//! The envelope (size, JSON, object, `kind`, `jobId`) and the validation order (seed 2.0).

use serde_json::{json, Value};

use super::*;

#[test]
fn an_oversized_body_is_refused_before_it_is_parsed() {
    let small = ValidationPolicy::with_hosts(Vec::<String>::new(), 10);
    assert_eq!(
        parse_job(b"{\"jobId\":\"x\"}", &small).unwrap_err(),
        InvalidJob {
            job_id: None,
            message: "Invalid job: body exceeds 10 bytes".into(),
            kind: RefusalKind::TooLarge,
        }
    );
    // Exactly at the limit is parsed (and then refused for what it says).
    assert_eq!(
        parse_job(b"[1,2,3,45]", &small).unwrap_err().message,
        "Invalid job: body must be an object"
    );
}

#[test]
fn a_kind_other_than_agent_is_refused_before_anything_else() {
    let cases = [
        (json!({"kind": "deploy"}), "deploy"),
        (json!({"kind": ""}), ""),
        (json!({"kind": 5}), "5"),
        (json!({"kind": null}), "null"),
        (json!({"kind": ["agent"]}), "[\"agent\"]"),
    ];
    for (job, shown) in cases {
        assert_eq!(
            refusal(&job),
            format!("Invalid job: unknown job kind '{shown}'")
        );
    }
    let err = parse(&with("coding", json!({"kind": "Agent"}))).unwrap_err();
    assert_eq!(err.message, "Invalid job: unknown job kind 'Agent'");
    assert_eq!(err.job_id.as_deref(), Some("job_123"));
}

#[test]
fn a_kind_of_agent_or_no_kind_is_accepted() {
    assert!(parse(&with("coding", json!({"kind": "agent"}))).is_ok());
    assert!(parse(&base("coding")).is_ok());
}

#[test]
fn a_refusal_reports_the_job_id_even_when_an_earlier_field_failed() {
    let err = parse(&base("nonsense")).unwrap_err();
    assert_eq!(err.job_id.as_deref(), Some("job_123"));
    let err = parse(&with("coding", json!({"pr": {}}))).unwrap_err();
    assert_eq!(err.message, nes_refusal("pr.title"));
    assert_eq!(err.job_id.as_deref(), Some("job_123"));
}

#[test]
fn a_refusal_has_no_job_id_when_the_body_has_no_usable_one() {
    for job_id in [json!(""), json!(123), json!(["job_123"])] {
        let err = parse(&with("coding", json!({ "jobId": job_id }))).unwrap_err();
        assert_eq!(err.message, nes_refusal("jobId"));
        assert_eq!(err.job_id, None);
    }
    let err = parse(&with("coding", json!({"jobId": null}))).unwrap_err();
    assert_eq!(err.job_id, None);
    // Whitespace is a non-empty string, as in the seed.
    assert_eq!(
        parse(&with("coding", json!({"jobId": " "})))
            .unwrap()
            .job_id,
        " "
    );
}

#[test]
fn non_object_bodies_are_refused() {
    for body in ["[]", "null", "42", "\"job\"", "true"] {
        assert_eq!(
            parse_job(body.as_bytes(), &policy()).unwrap_err(),
            InvalidJob {
                job_id: None,
                message: "Invalid job: body must be an object".into(),
                kind: RefusalKind::Contract,
            },
            "{body}"
        );
    }
}

// ---- validation order (seed 2.0) ------------------------------------------------------------

#[test]
fn an_empty_job_reports_each_missing_field_in_the_seed_order() {
    // Each step adds what the previous refusal asked for, plus a bad value for a later field
    // that must not be reported yet.
    let steps: Vec<(Value, String)> = vec![
        (json!({}), MODE_REFUSAL.to_string()),
        (json!({"mode": "coding", "pr": {"title": ""}}), nes_refusal("pr.title")),
        (
            json!({"pr": {"title": "T"}, "bootstrap": {"target": "x"}}),
            nes_refusal("bootstrap.target.owner"),
        ),
        (
            json!({"bootstrap": {"target": {"owner": "o"}}}),
            nes_refusal("bootstrap.target.name"),
        ),
        (
            json!({"bootstrap": {"target": {"owner": "o", "name": "n"}}}),
            nes_refusal("bootstrap.target.cloneUrl"),
        ),
        (
            json!({"bootstrap": {"target": {"owner": "o", "name": "n",
                "cloneUrl": "https://evil.example/x.git"}}}),
            nes_refusal("bootstrap.target.defaultBranch"),
        ),
        (
            json!({"bootstrap": {"target": {"owner": "o", "name": "n",
                "cloneUrl": "https://evil.example/x.git", "defaultBranch": "main"}},
                "contextFiles": 7, "guardLimits": "x", "infra": [], "output": 1}),
            nes_refusal("jobId"),
        ),
        (json!({"jobId": "j"}), nes_refusal("systemPrompt")),
        (json!({"systemPrompt": "s"}), nes_refusal("userPrompt")),
        (json!({"userPrompt": "u"}), nes_refusal("model")),
        (json!({"model": "m"}), nes_refusal("proxyBaseUrl")),
        (json!({"proxyBaseUrl": "p"}), nes_refusal("sessionToken")),
        (json!({"sessionToken": "t"}), nes_refusal("ghToken")),
        (
            json!({"ghToken": "g", "githubApiBase": "https://evil.example"}),
            nes_refusal("repo.owner"),
        ),
        (json!({"repo": {"owner": "o"}}), nes_refusal("repo.name")),
        (json!({"repo": {"owner": "o", "name": "n"}}), nes_refusal("repo.baseBranch")),
        (
            json!({"repo": {"owner": "o", "name": "n", "baseBranch": "b",
                "provider": "bitbucket"}}),
            nes_refusal("repo.cloneUrl"),
        ),
        (
            json!({"repo": {"owner": "o", "name": "n", "baseBranch": "b",
                "cloneUrl": "https://evil.example/a.git", "provider": "bitbucket",
                "serviceDirectory": ".."}}),
            "Invalid job: 'repo.provider' must be 'github' or 'gitlab'".into(),
        ),
        (
            json!({"repo": {"owner": "o", "name": "n", "baseBranch": "b",
                "cloneUrl": "https://evil.example/a.git", "serviceDirectory": ".."}}),
            "Invalid job: 'repo.serviceDirectory' must be a path inside the repo".into(),
        ),
        (
            json!({"repo": {"owner": "o", "name": "n", "baseBranch": "b",
                "cloneUrl": "https://evil.example/a.git"}}),
            nes_refusal("branch"),
        ),
        (
            json!({"branch": "main"}),
            "Invalid job: 'repo.cloneUrl' host 'evil.example' is not an allowed GitHub host"
                .into(),
        ),
        (
            json!({"repo": {"owner": "o", "name": "n", "baseBranch": "b",
                "cloneUrl": "https://github.com/a.git"}}),
            "Invalid job: 'githubApiBase' host 'evil.example' is not an allowed GitHub host"
                .into(),
        ),
        (
            json!({"githubApiBase": "https://api.github.com"}),
            "Invalid job: 'bootstrap.target.cloneUrl' host 'evil.example' is not an allowed GitHub host"
                .into(),
        ),
    ];
    let mut job = json!({});
    for (extra, expected) in steps {
        merge(&mut job, extra);
        assert_eq!(refusal(&job), expected, "{job}");
    }
    let mut target = job["bootstrap"]["target"].clone();
    target["cloneUrl"] = json!("https://github.com/o/n.git");
    merge(&mut job, json!({"bootstrap": {"target": target}}));
    assert!(parse(&job).is_ok());
}

// ---- the jobId bound (not a seed rule) ---------------------------------------------------------

fn job_id_refusal() -> String {
    format!("Invalid job: 'jobId' must be at most {MAX_JOB_ID_BYTES} bytes")
}

#[test]
fn the_job_id_bound_is_200_bytes_as_documented() {
    assert_eq!(MAX_JOB_ID_BYTES, 200);
    assert_eq!(
        job_id_refusal(),
        "Invalid job: 'jobId' must be at most 200 bytes"
    );
}

#[test]
fn a_job_id_up_to_the_bound_is_accepted_and_a_longer_one_refused_with_the_whole_id() {
    let at_bound = "j".repeat(MAX_JOB_ID_BYTES);
    let job = parse(&with("coding", json!({ "jobId": at_bound }))).unwrap();
    assert_eq!(job.job_id, at_bound);
    for over in ["j".repeat(MAX_JOB_ID_BYTES + 1), "j".repeat(250)] {
        let err = parse(&with("coding", json!({ "jobId": over }))).unwrap_err();
        assert_eq!(err.message, job_id_refusal());
        // The refusal is still announced against the id the dispatcher sent.
        assert_eq!(err.job_id.as_deref(), Some(over.as_str()));
    }
}

#[test]
fn the_job_id_bound_counts_bytes_not_characters() {
    // 100 two-byte characters fit; 101 do not, though they are far fewer than 200 characters.
    assert!(parse(&with("coding", json!({"jobId": "é".repeat(100)}))).is_ok());
    let err = parse(&with("coding", json!({"jobId": "é".repeat(101)}))).unwrap_err();
    assert_eq!(err.message, job_id_refusal());
}

#[test]
fn the_job_id_bound_is_checked_after_the_seed_rules_and_before_branch_names() {
    let long = "j".repeat(250);
    let missing = with("coding", json!({"jobId": long, "userPrompt": null}));
    assert_eq!(refusal(&missing), nes_refusal("userPrompt"));
    let host = with(
        "coding",
        json!({"jobId": long, "githubApiBase": "https://evil.example"}),
    );
    assert_eq!(
        refusal(&host),
        "Invalid job: 'githubApiBase' host 'evil.example' is not an allowed GitHub host"
    );
    let branch = with("coding", json!({"jobId": long, "newBranch": "a//x"}));
    assert_eq!(refusal(&branch), job_id_refusal());
}

#[test]
fn each_refusal_keeps_the_kind_its_metric_label_comes_from() {
    let small = ValidationPolicy::with_hosts(Vec::<String>::new(), 10);
    let kind = |body: &[u8], policy: &ValidationPolicy| parse_job(body, policy).unwrap_err().kind;
    assert_eq!(kind(b"{\"jobId\":\"x\"}", &small).label(), "oversize");
    assert_eq!(kind(b"{not json", &policy()).label(), "not-json");
    assert_eq!(kind(b"[]", &policy()).label(), "invalid-job");
    assert_eq!(kind(b"{\"jobId\":\"j\"}", &policy()).label(), "invalid-job");
}
