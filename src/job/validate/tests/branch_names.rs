//! Branch names are checked when the job is read, with git's rules, so a job that could never be
//! pushed is refused before its agent runs (not a seed rule: the seed failed at the push).

use serde_json::{json, Value};

use super::*;

/// Every field of a job that names a branch, in the order they are checked.
const BRANCH_FIELDS: [&str; 6] = [
    "bootstrap.target.defaultBranch",
    "repo.baseBranch",
    "branch",
    "mergeBase",
    "newBranch",
    "pushBranch",
];

const GOOD: [&str; 12] = [
    "main",
    "feature/ok-1",
    "release/v1.2",
    "cat-factory/block-42",
    "a.b",
    "a-",
    "x@y",
    "UPPER_case",
    "fix/é-ünïcödé",
    "功能/分支",
    "emoji-🦀",
    "a/b/c/d",
];

const BAD: [&str; 29] = [
    "a//x",
    "..",
    "a..b",
    "@",
    "HEAD",
    "a.lock",
    "a/b.lock/c",
    "-x",
    "-",
    "a b",
    " a",
    "x~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "a@{1}",
    "x/",
    "/x",
    ".hidden",
    "a/.hidden",
    "a.",
    "a\u{0}b",
    "a\tb",
    "a\nb",
    "a\u{1b}[31m",
    "a\u{7f}",
];

fn refusal_text(field: &str) -> String {
    format!("Invalid job: '{field}' must be a valid git branch name")
}

/// Sets `field` of `job` to `name` (with the bootstrap target around it when there is none).
fn set_branch(job: &mut Value, field: &str, name: &str) {
    match field {
        "bootstrap.target.defaultBranch" if job.get("bootstrap").is_some() => {
            job["bootstrap"]["target"]["defaultBranch"] = json!(name);
        }
        "bootstrap.target.defaultBranch" => {
            job["bootstrap"] = json!({"target": {"owner": "o", "name": "n",
                "cloneUrl": "https://github.com/o/n.git", "defaultBranch": name}});
        }
        "repo.baseBranch" => job["repo"]["baseBranch"] = json!(name),
        top => job[top] = json!(name),
    }
}

/// The base job with `field` set to `name`.
fn with_branch(field: &str, name: &str) -> Value {
    let mut job = base("coding");
    set_branch(&mut job, field, name);
    job
}

#[test]
fn good_branch_names_are_accepted_in_every_branch_field() {
    for field in BRANCH_FIELDS {
        for name in GOOD {
            let job = parse(&with_branch(field, name))
                .unwrap_or_else(|e| panic!("{field} = {name:?}: {}", e.message));
            let read = match field {
                "bootstrap.target.defaultBranch" => job.bootstrap.map(|b| b.target.default_branch),
                "repo.baseBranch" => Some(job.repo.base_branch),
                "branch" => Some(job.branch),
                "mergeBase" => job.merge_base,
                "newBranch" => job.new_branch,
                _ => job.push_branch,
            };
            assert_eq!(read.as_deref(), Some(name), "{field}");
        }
    }
}

#[test]
fn bad_branch_names_are_refused_in_every_branch_field_with_the_job_id() {
    for field in BRANCH_FIELDS {
        for name in BAD {
            let err = parse(&with_branch(field, name))
                .expect_err(&format!("{field} = {name:?} must be refused"));
            assert_eq!(err.message, refusal_text(field), "{field} = {name:?}");
            assert_eq!(err.job_id.as_deref(), Some("job_123"));
        }
    }
}

#[test]
fn the_refusal_does_not_echo_the_name() {
    let err = parse(&with_branch("newBranch", "ghp_leak token")).unwrap_err();
    assert!(!err.message.contains("leak"), "{}", err.message);
}

#[test]
fn optional_branch_fields_that_are_absent_or_not_strings_are_not_checked() {
    let job = parse(&with(
        "coding",
        json!({"newBranch": "", "pushBranch": 3, "mergeBase": [".."]}),
    ))
    .unwrap();
    assert_eq!((job.new_branch, job.push_branch), (None, None));
}

#[test]
fn branch_names_are_checked_after_every_seed_rule_in_field_order() {
    let mut job = base("coding");
    for field in BRANCH_FIELDS {
        set_branch(&mut job, field, "a//x");
    }
    // A body the seed refuses keeps the seed's text: a required field ...
    let mut missing = job.clone();
    missing.as_object_mut().unwrap().remove("userPrompt");
    assert_eq!(refusal(&missing), nes_refusal("userPrompt"));
    // ... a host check ...
    let mut host = job.clone();
    host["githubApiBase"] = json!("https://evil.example");
    assert_eq!(
        refusal(&host),
        "Invalid job: 'githubApiBase' host 'evil.example' is not an allowed GitHub host"
    );
    // ... then each bad name, in order, until none is left.
    for field in BRANCH_FIELDS {
        assert_eq!(refusal(&job), refusal_text(field));
        set_branch(&mut job, field, "main");
    }
    assert!(parse(&job).is_ok());
}
