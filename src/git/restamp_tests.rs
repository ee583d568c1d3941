//! Tests of the index restamp: freshness for the new owner, every index format, hostile files.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::*;
use crate::git::test_git::git;

fn checkout(root: &Path) -> std::path::PathBuf {
    let dir = root.join("co");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("a.txt"), "a").unwrap();
    std::fs::write(dir.join("sub/b.txt"), "b").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "one"]);
    dir
}

fn entry_owner(dir: &Path, path: &str) -> (u32, u32) {
    let repo = git2::Repository::open(dir).unwrap();
    let index = repo.index().unwrap();
    let e = index.get_path(Path::new(path), 0).unwrap();
    (e.uid, e.gid)
}

#[test]
fn a_chown_leaves_the_index_fresh_and_an_edit_is_still_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let meta = std::fs::metadata(dir.join("a.txt")).unwrap();
    let (uid, gid) = (meta.uid(), meta.gid());
    // Without root a chown cannot change hands: make the index look recorded by another
    // owner, as after a hand-over, by restamping to ourselves from a foreign record.
    foreign_index(&dir, uid, "2");
    // An edit keeping size but not mtime: git must still see it after the restamp.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.join("sub/b.txt"), "c").unwrap();

    let restamped = restamp_index(&dir, uid, gid).unwrap();
    assert_eq!(restamped, 2, "a.txt and the link, not the edited file");
    assert_eq!(entry_owner(&dir, "a.txt"), (uid, gid));
    let repo = git2::Repository::open(&dir).unwrap();
    let a = repo
        .index()
        .unwrap()
        .get_path(Path::new("a.txt"), 0)
        .unwrap();
    let now = std::fs::metadata(dir.join("a.txt")).unwrap();
    assert_eq!(
        (a.ctime.seconds(), a.ctime.nanoseconds()),
        (now.ctime() as i32, now.ctime_nsec() as u32)
    );
    assert_ne!(entry_owner(&dir, "sub/b.txt"), (uid, gid));
    let status = git(&dir, &["status", "--porcelain"]);
    assert_eq!(status.trim(), "M sub/b.txt");
    assert_eq!(
        restamp_index(&dir, uid, gid).unwrap(),
        0,
        "the edit stays stale"
    );
}

/// Makes every entry look recorded by another owner, as a clone by the worker before the
/// hand-over leaves it, in the index format `version`.
fn foreign_index(dir: &Path, uid: u32, version: &str) {
    let repo = git2::Repository::open(dir).unwrap();
    let mut index = repo.index().unwrap();
    let entries: Vec<_> = index.iter().collect();
    for mut e in entries {
        e.uid = uid.wrapping_add(1);
        index.add(&e).unwrap();
    }
    index.write().unwrap();
    git(dir, &["update-index", "--index-version", version]);
}

#[test]
fn the_patched_index_and_libgit2s_rewrite_agree_in_every_format() {
    for version in ["2", "3", "4"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = checkout(tmp.path());
        let meta = std::fs::metadata(dir.join("a.txt")).unwrap();
        let (uid, gid) = (meta.uid(), meta.gid());
        foreign_index(&dir, uid, version);
        assert_eq!(
            restamp_index(&dir, uid, gid).unwrap(),
            3,
            "index v{version}"
        );
        // libgit2 verifies the trailer when it reads the index back.
        let repo = git2::Repository::open(&dir).unwrap();
        let index = repo.index().unwrap();
        for e in index.iter() {
            let path = String::from_utf8(e.path.clone()).unwrap();
            let now = std::fs::symlink_metadata(dir.join(&path)).unwrap();
            assert_eq!((e.uid, e.gid), (uid, gid), "v{version} {path}");
            assert_eq!(
                (e.ctime.seconds(), e.ctime.nanoseconds()),
                (now.ctime() as i32, now.ctime_nsec() as u32),
                "v{version} {path}"
            );
        }
        assert!(git(&dir, &["status", "--porcelain"]).is_empty());
        assert_eq!(
            restamp_index(&dir, uid, gid).unwrap(),
            0,
            "v{version}: done once"
        );
    }
}

#[test]
fn an_index_behind_a_symlink_a_fifo_or_a_gitfile_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let meta = std::fs::metadata(dir.join("a.txt")).unwrap();
    let (uid, gid) = (meta.uid(), meta.gid());
    foreign_index(&dir, uid, "2");
    let real = tmp.path().join("elsewhere-index");
    std::fs::rename(dir.join(".git/index"), &real).unwrap();
    let before = std::fs::read(&real).unwrap();
    std::os::unix::fs::symlink(&real, dir.join(".git/index")).unwrap();
    assert_eq!(
        restamp_index(&dir, uid, gid).unwrap(),
        0,
        "a symlinked index"
    );
    assert_eq!(
        std::fs::read(&real).unwrap(),
        before,
        "its target untouched"
    );
    std::fs::remove_file(dir.join(".git/index")).unwrap();
    let made = Command::new("mkfifo")
        .arg(dir.join(".git/index"))
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(
        restamp_index(&dir, uid, gid).unwrap(),
        0,
        "a FIFO, without hanging"
    );
    std::fs::remove_file(dir.join(".git/index")).unwrap();
    std::fs::rename(&real, dir.join(".git/index")).unwrap();
    // A gitfile: the repository it names is another's.
    std::fs::rename(dir.join(".git"), tmp.path().join("other.git")).unwrap();
    let gitfile = format!("gitdir: {}\n", tmp.path().join("other.git").display());
    std::fs::write(dir.join(".git"), gitfile).unwrap();
    assert_eq!(restamp_index(&dir, uid, gid).unwrap(), 0, "a gitfile");
    assert_eq!(
        std::fs::read(tmp.path().join("other.git/index")).unwrap(),
        before
    );
}

fn chown_all(dir: &Path, uid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            chown_all(&entry.path(), uid);
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(uid)).unwrap();
        }
    }
}

/// Whether `git status`, run as `uid`, had to refresh the index (it then rewrites it).
fn status_rewrites_index(dir: &Path, uid: u32) -> bool {
    let before = std::fs::read(dir.join(".git/index")).unwrap();
    let ok = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(dir)
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok);
    std::fs::read(dir.join(".git/index")).unwrap() != before
}

#[test]
fn after_a_hand_over_the_new_owners_git_finds_the_index_fresh() {
    if crate::sys::effective_uid() != 0 {
        eprintln!("skipped: needs root to change a file's owner");
        return;
    }
    const AGENT: u32 = 65534;
    // As the worker does when agents run as another user (`Sandbox::apply_to_process`).
    crate::sys::set_git_owner_validation(false);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Without the restamp the new owner's git must re-read every file: the test's premise.
    let plain = checkout(&tmp.path().join("plain"));
    chown_all(&plain, AGENT);
    assert!(
        status_rewrites_index(&plain, AGENT),
        "a chown leaves the index stale"
    );

    let dir = checkout(&tmp.path().join("restamped"));
    chown_all(&dir, AGENT);
    assert_eq!(restamp_index(&dir, AGENT, AGENT).unwrap(), 3);
    assert!(
        !status_rewrites_index(&dir, AGENT),
        "the restamped index is fresh"
    );
}
