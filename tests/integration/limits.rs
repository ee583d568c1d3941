//! The per-file size limit on real repositories: what counts as new work, what does not, and
//! what cannot be read safely.

use std::path::Path;

use executor_harness::git::{
    check_new_blobs, clone_branch, commit_tracked_edits, create_branch, head_oid,
    refresh_from_base_if_clean, set_identity, FileLimit, GitAuth, GitError, GitRemote, Identity,
    Refresh,
};
use tokio_util::sync::CancellationToken;

use crate::support::repo::BareRepo;

const MIB: usize = 1024 * 1024;
const LIMIT: FileLimit = FileLimit(MIB as u64);

fn checkout(remote: &BareRepo, branch: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkout");
    let origin = GitRemote::new(&remote.url(), GitAuth::none()).unwrap();
    clone_branch(&origin, branch, &dir, false, &CancellationToken::new()).unwrap();
    set_identity(&dir, &Identity::bot()).unwrap();
    (tmp, dir)
}

fn write(dir: &Path, path: &str, bytes: usize) {
    std::fs::write(dir.join(path), vec![b'a'; bytes]).unwrap();
}

#[test]
fn a_big_file_the_base_already_holds_is_not_new_work_but_one_the_agent_adds_is() {
    let remote = BareRepo::new();
    remote.commit_files("work/big", &[("work.txt", "earlier\n")], "Earlier work");
    let big = "x".repeat(2 * MIB);
    remote.commit_files("main", &[("asset.bin", &big)], "A big asset on the base");

    // A resume merges the base (and its big asset) into the work branch.
    let (_tmp, dir) = checkout(&remote, "work/big");
    let before = head_oid(&dir).unwrap();
    let origin = GitRemote::new(&remote.url(), GitAuth::none()).unwrap();
    let refreshed = refresh_from_base_if_clean(
        &dir,
        &origin,
        "main",
        &Identity::bot(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(refreshed, Refresh::Merged);
    std::fs::write(dir.join("README.md"), "edited\n").unwrap();
    assert!(commit_tracked_edits(&dir, "Small work", &Identity::bot(), LIMIT).unwrap());
    let head = head_oid(&dir).unwrap();
    check_new_blobs(&dir, &head, std::slice::from_ref(&before), LIMIT).unwrap();

    // An unchanged big tracked file does not stop the safety-net commit either.
    std::fs::write(dir.join("README.md"), "edited again\n").unwrap();
    assert!(commit_tracked_edits(&dir, "More", &Identity::bot(), LIMIT).unwrap());

    // A big file of the agent's own is refused, by path, whichever commit added it.
    write(&dir, "mine.bin", 2 * MIB);
    crate::support::repo::git(&dir, &["add", "mine.bin"]);
    crate::support::repo::git(&dir, &["commit", "-q", "-m", "Add mine"]);
    write(&dir, "README.md", 10);
    assert!(commit_tracked_edits(&dir, "Later", &Identity::bot(), LIMIT).unwrap());
    let head = head_oid(&dir).unwrap();
    match check_new_blobs(&dir, &head, &[before], LIMIT) {
        Err(GitError::TooLarge { path, size, .. }) => {
            assert_eq!(path, "mine.bin");
            assert_eq!(size, 2 * MIB as u64);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_tracked_file_replaced_by_a_fifo_is_refused_without_opening_it() {
    let remote = BareRepo::new();
    let (_tmp, dir) = checkout(&remote, "main");
    create_branch(&dir, "work/fifo").unwrap();
    std::fs::remove_file(dir.join("README.md")).unwrap();
    let path = std::ffi::CString::new(dir.join("README.md").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    // Opening the FIFO to hash it would block forever; the check looks at its type first.
    let err = commit_tracked_edits(&dir, "x", &Identity::bot(), LIMIT).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn a_grown_tracked_file_over_the_limit_is_refused_before_it_is_staged() {
    let remote = BareRepo::new();
    let (_tmp, dir) = checkout(&remote, "main");
    write(&dir, "README.md", 2 * MIB);
    let err = commit_tracked_edits(&dir, "x", &Identity::bot(), LIMIT).unwrap_err();
    assert!(
        matches!(&err, GitError::TooLarge { path, .. } if path == "README.md"),
        "{err:?}"
    );
    // With no limit the same edit is committed.
    assert!(commit_tracked_edits(&dir, "x", &Identity::bot(), FileLimit(0)).unwrap());
}
