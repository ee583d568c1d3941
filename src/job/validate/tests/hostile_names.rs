//! Hostile `jobId`s and branch names: the bounds and the git rules hold for sizes, bytes and
//! characters a stranger's body may carry, and nothing panics.

use serde_json::json;

use super::*;

#[test]
fn job_ids_of_any_size_or_content_are_accepted_within_the_bound_or_refused_past_it() {
    let huge = "x".repeat(3 * 1024 * 1024);
    let straddling = format!("{}🦀", "a".repeat(MAX_JOB_ID_BYTES - 2));
    let cases: [(&str, bool); 8] = [
        (&huge, false),
        (&straddling, false),
        ("\u{0}", true),
        ("a\u{0}b\u{202E}", true),
        ("job:result:1:2", true),
        ("sha256:0000", true),
        (" ", true),
        ("🦀", true),
    ];
    for (id, accepted) in cases {
        let outcome = parse(&with("coding", json!({ "jobId": id })));
        match outcome {
            Ok(job) => {
                assert!(accepted, "{} bytes accepted", id.len());
                assert_eq!(job.job_id, id);
            }
            Err(e) => {
                assert!(!accepted, "{} bytes refused: {}", id.len(), e.message);
                assert_eq!(
                    e.message,
                    format!("Invalid job: 'jobId' must be at most {MAX_JOB_ID_BYTES} bytes")
                );
                assert_eq!(e.job_id.as_deref(), Some(id));
            }
        }
    }
}

#[test]
fn branch_names_that_git_would_misread_are_refused_whatever_their_size() {
    let refused = |name: &str| {
        let err = parse(&with("coding", json!({ "newBranch": name }))).unwrap_err();
        assert_eq!(
            err.message, "Invalid job: 'newBranch' must be a valid git branch name",
            "{name:?}"
        );
    };
    let huge_bad = format!("{}..", "a".repeat(1024 * 1024));
    for name in [
        huge_bad.as_str(),
        "refs/heads/../../config",
        "../../etc/passwd",
        "a/../b",
        "@{-1}",
        "a@{u}",
        "HEAD",
        "-f",
        "--force",
        "a.lock/b",
        "a\u{0}",
        "\u{7f}",
        "a\r",
    ] {
        refused(name);
    }
    // What git accepts is accepted, however odd: a long name, look-alikes, `refs/heads/...`
    // (then `refs/heads/refs/heads/x`, as `git branch` would make it).
    let long_ok = "a".repeat(64 * 1024);
    for name in [
        long_ok.as_str(),
        "m\u{430}in",
        "refs/heads/x",
        "heads",
        "@x",
        "x@",
    ] {
        let job = parse(&with("coding", json!({ "newBranch": name }))).unwrap();
        assert_eq!(job.new_branch.as_deref(), Some(name));
    }
}
