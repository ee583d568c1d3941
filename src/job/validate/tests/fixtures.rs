//! Every file of `tests/fixtures/jobs/`, with the refusal texts of its README.

use serde_json::Value;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jobs/", $name)
    };
}

const VALID_FIXTURES: [&str; 7] = [
    fixture!("bootstrap-from-reference.json"),
    fixture!("coding-claude-code.json"),
    fixture!("coding-full.json"),
    fixture!("coding-in-place-ci-fix.json"),
    fixture!("coding-minimal.json"),
    fixture!("conflict-resolution.json"),
    fixture!("explore-structured.json"),
];

/// The refusals of `fixtures/jobs/README.md`, with the `jobId` each one reports.
const INVALID_FIXTURES: [(&str, &str, Option<&str>); 5] = [
    (
        fixture!("invalid-missing-user-prompt.json"),
        "Invalid job: 'userPrompt' must be a non-empty string",
        Some("job-0001"),
    ),
    (
        fixture!("invalid-host.json"),
        "Invalid job: 'repo.cloneUrl' host 'evil.example' is not an allowed GitHub host",
        Some("job-0001"),
    ),
    (
        fixture!("invalid-service-directory.json"),
        "Invalid job: 'repo.serviceDirectory' must be a path inside the repo",
        Some("job-0001"),
    ),
    (
        fixture!("invalid-mode.json"),
        "Invalid job: 'mode' must be 'explore', 'coding' or 'preview'",
        Some("job-0001"),
    ),
    (
        fixture!("invalid-ssh-url.json"),
        "Invalid job: 'repo.cloneUrl' must be an https or file URL",
        Some("job-0001"),
    ),
];

const NOT_OBJECT_FIXTURE: &str = fixture!("invalid-not-object.json");
const NOT_JSON_FIXTURE: &str = fixture!("invalid-not-json.txt");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse_fixture(path: &str) -> Result<AgentJob, InvalidJob> {
    parse_job(&read(path), &policy())
}

#[test]
fn every_valid_fixture_parses() {
    for path in VALID_FIXTURES {
        let job = parse_fixture(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(job.job_id.starts_with("job-"), "{path}");
    }
}

#[test]
fn the_full_coding_fixture_keeps_every_field() {
    let job = parse_fixture(fixture!("coding-full.json")).unwrap();
    assert_eq!(job.job_id, "job-0002");
    assert_eq!(job.repo.service_directory.as_deref(), Some("packages/api"));
    assert_eq!(job.repo.provider, Some(Provider::Github));
    assert_eq!(job.push_branch(), "cat-factory/block-42");
    assert_eq!(job.safety_net_message(), "Add CONTRIBUTING.md");
    assert!(job.stream_follow_ups && job.no_changes_is_error);
    assert_eq!(
        job.guard_limits,
        Some(GuardLimitsSpec {
            max_tool_calls_without_edit: Some(60),
            max_consecutive_errors: Some(12),
            max_consecutive_web_calls: Some(25),
            ..Default::default()
        })
    );
    assert_eq!(
        job.context_files,
        vec![ContextFile {
            path: "requirements.md".into(),
            title: "Requirements".into(),
            url: "https://tracker.example/REQ-1".into(),
            content: "# Requirements\n\nTests must be documented.\n".into(),
        }]
    );
    assert_eq!(
        job.gh_token.expose(),
        "ghs_EXAMPLEnotarealtoken000000000000000"
    );
}

#[test]
fn the_claude_code_fixture_carries_a_subscription_and_no_proxy() {
    let job = parse_fixture(fixture!("coding-claude-code.json")).unwrap();
    assert_eq!(
        job.auth,
        HarnessAuth::Subscription {
            harness: Harness::ClaudeCode,
            subscription_token: Some(Secret::new("sk-ant-oat01-EXAMPLE-not-real")),
            subscription_base_url: None,
            ambient_auth: false,
        }
    );
}

#[test]
fn every_invalid_fixture_is_refused_with_its_documented_text() {
    for (path, message, job_id) in INVALID_FIXTURES {
        let err = parse_fixture(path).expect_err(path);
        assert_eq!(err.message, message, "{path}");
        assert_eq!(err.job_id.as_deref(), job_id, "{path}");
    }
}

#[test]
fn the_not_object_fixture_is_refused_without_a_job_id() {
    assert_eq!(
        parse_fixture(NOT_OBJECT_FIXTURE).unwrap_err(),
        InvalidJob {
            job_id: None,
            message: "Invalid job: body must be an object".into(),
            kind: RefusalKind::Contract,
        }
    );
}

#[test]
fn the_not_json_fixture_is_refused_with_the_parser_message_and_no_job_id() {
    let body = read(NOT_JSON_FIXTURE);
    let parser_error = serde_json::from_slice::<Value>(&body).unwrap_err();
    let err = parse_job(&body, &policy()).unwrap_err();
    assert_eq!(err.job_id, None);
    assert_eq!(
        err.message,
        format!("Invalid job: body is not valid JSON ({parser_error})")
    );
    assert_eq!(
        err.message,
        "Invalid job: body is not valid JSON (key must be a string at line 1 column 41)"
    );
}

#[test]
fn every_fixture_file_is_covered_by_a_test() {
    let dir = fixture!("");
    let mut known: Vec<&str> = VALID_FIXTURES.to_vec();
    known.extend(INVALID_FIXTURES.iter().map(|f| f.0));
    known.extend([NOT_OBJECT_FIXTURE, NOT_JSON_FIXTURE]);
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "README.md" {
            continue;
        }
        let path = format!("{dir}{name}");
        assert!(known.contains(&path.as_str()), "untested fixture {name}");
    }
}
