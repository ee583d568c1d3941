//! What the git module's tests share: the git CLI run in a directory.

use std::path::Path;
use std::process::Command;

/// `git <args>` in `dir`, with a committer identity; panics unless it succeeds. Its stdout,
/// trimmed.
pub(super) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
