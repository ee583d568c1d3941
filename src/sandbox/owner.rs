//! Handing a job's directories to the agents' user, when the worker is root and the agents are
//! not: the agent must own its checkout, HOME and TMPDIR, and whatever the worker writes there
//! later (checkpoint commits while the agent works) must stay writable for it.
//!
//! Everything under a handed-over directory is owned by the agents' user and group, and every
//! directory carries the set-group-ID bit, so what the worker creates there afterwards belongs
//! to the agents' group; with the worker's umask at `0o002` ([`AGENT_UMASK`]) it is also
//! group-writable. The walk never follows a symlink: a link is re-owned itself, its target
//! left alone, so a repository's `link -> /etc` changes nothing outside.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The worker's umask while agents run as another user: what the worker creates in a job's
/// directories is writable by the agents' group.
pub const AGENT_UMASK: u32 = 0o002;

/// Gives `root` and everything under it to `uid:gid`, with set-group-ID directories.
pub(super) fn hand_over(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symlink", root.display()),
        ));
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        own_dir(&dir, uid, gid)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            // The entry's own type, never its target's.
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                lchown_if_needed(&path, uid, gid)?;
            }
        }
    }
    Ok(())
}

/// A `chown` changes the file's ctime even to the same owner, which makes git re-read the file:
/// what already belongs to the agents (handed over before an earlier run) is left untouched.
fn lchown_if_needed(path: &Path, uid: u32, gid: u32) -> io::Result<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(meta);
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    std::fs::symlink_metadata(path)
}

fn own_dir(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let mode = lchown_if_needed(dir, uid, gid)?.permissions().mode();
    // Set-group-ID after the chown, which clears it.
    let wanted = mode | libc::S_ISGID | 0o700;
    if wanted != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(wanted & 0o7777))?;
    }
    Ok(())
}

/// Lets the agents' user traverse `dir` (not list it): the work dir and its `jobs` and `warm`
/// directories lie on the way to a job's own directories.
pub(super) fn make_traversable(dir: &Path) -> io::Result<()> {
    let mode = std::fs::metadata(dir)?.permissions().mode();
    let wanted = mode | 0o011;
    if wanted != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(wanted & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_under_the_root_changes_hands_and_nothing_a_symlink_points_at() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"host file").unwrap();
        let root = tmp.path().join("ws");
        std::fs::create_dir_all(root.join("repo/.git/objects/ab")).unwrap();
        std::fs::write(root.join("repo/.git/objects/ab/cd"), b"obj").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("repo/link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("repo/dirlink")).unwrap();
        // Without root, hand over to ourselves: the walk, the modes and the links still show.
        let (uid, gid) = match crate::sys::effective_uid() {
            0 => (65534, 65534),
            me => (me, current_gid()),
        };
        hand_over(&root, uid, gid).unwrap();

        let dir = std::fs::metadata(root.join("repo/.git/objects/ab")).unwrap();
        assert_eq!(dir.uid(), uid);
        assert_ne!(
            dir.mode() & libc::S_ISGID,
            0,
            "directories pass their group on"
        );
        let link = std::fs::symlink_metadata(root.join("repo/link")).unwrap();
        assert_eq!(link.uid(), uid);
        let target = std::fs::metadata(&outside).unwrap();
        assert_eq!(target.mode() & libc::S_ISGID, 0);
        let above = std::fs::metadata(tmp.path()).unwrap();
        assert_eq!(
            above.mode() & libc::S_ISGID,
            0,
            "a directory symlink is not walked"
        );
        assert!(hand_over(&root.join("repo/dirlink"), uid, gid).is_err());
        assert!(hand_over(&tmp.path().join("missing"), uid, gid).is_ok());
    }

    fn current_gid() -> u32 {
        std::fs::metadata("/proc/self")
            .map(|m| m.gid())
            .unwrap_or(0)
    }
}
