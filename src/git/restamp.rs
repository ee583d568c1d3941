//! Keeping the index fresh across the hand-over of a checkout to the agents' user.
//!
//! Git decides whether a tracked file changed from the stat data its index recorded: mtime,
//! size, inode, and also ctime, owner and group. The hand-over `chown`s every file, which
//! changes the last three and nothing else, so without this the agent's first git command finds
//! every entry stale and re-reads the whole work tree (0.62 s against 0.07 s for `git status` on
//! a 20,000-file, 100 MB checkout). [`restamp_index`] records the new ctime, owner and group for
//! the entries whose content-bearing stat data (mtime to the nanosecond, size, inode) still
//! matches: exactly what `chown` leaves alone.
//!
//! Only entries still recorded with another owner are touched: after the first hand-over every
//! entry carries the agents' user, so the index an agent refreshed itself is never rewritten and
//! a later hand-over cannot mask an edit git would see through the ctime.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::IndexTime;

use super::GitError;

/// Records the current ctime, owner and group of the work tree files in `dir`'s index for the
/// entries not yet owned by `uid:gid` whose mtime, size and inode are unchanged. Returns how
/// many entries it restamped; the index is written only when there is one.
pub fn restamp_index(dir: &Path, uid: u32, gid: u32) -> Result<usize, GitError> {
    const OP: &str = "index";
    let repo = match git2::Repository::open(dir) {
        Ok(repo) => repo,
        // Not every job's directory is a checkout yet; nothing to keep fresh there.
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(0),
        Err(e) => return Err(GitError::local(OP, e)),
    };
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return Ok(0);
    };
    let mut index = repo.index().map_err(|e| GitError::local(OP, e))?;
    let mut changed = Vec::new();
    for mut entry in index.iter() {
        // Stage bits: a conflict entry describes no work tree file.
        let stage = (entry.flags >> 12) & 0x3;
        if stage != 0 || (entry.uid == uid && entry.gid == gid) {
            continue;
        }
        let path = root.join(OsStr::from_bytes(&entry.path));
        // lstat: a symlink entry is the link itself.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let unchanged = meta.uid() == uid
            && meta.gid() == gid
            && entry.mtime.seconds() == meta.mtime() as i32
            && entry.mtime.nanoseconds() == meta.mtime_nsec() as u32
            && entry.file_size == meta.size() as u32
            && entry.ino == meta.ino() as u32;
        if !unchanged {
            continue;
        }
        entry.ctime = IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32);
        entry.uid = uid;
        entry.gid = gid;
        entry.dev = meta.dev() as u32;
        changed.push(entry);
    }
    for entry in &changed {
        index.add(entry).map_err(|e| GitError::local(OP, e))?;
    }
    if !changed.is_empty() {
        index.write().map_err(|e| GitError::local(OP, e))?;
    }
    Ok(changed.len())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8(out.stdout).unwrap()
    }

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
        let repo = git2::Repository::open(&dir).unwrap();
        let mut index = repo.index().unwrap();
        let entries: Vec<_> = index.iter().collect();
        for mut e in entries {
            e.uid = uid.wrapping_add(1);
            index.add(&e).unwrap();
        }
        index.write().unwrap();
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
}
