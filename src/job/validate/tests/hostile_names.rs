//! Hostile branch names: git's rules hold for the sizes, bytes and characters a stranger's body
//! may carry, and nothing panics.

use serde_json::json;

use super::*;

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
