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
use std::os::unix::fs::OpenOptionsExt;
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
    // An agent has had the checkout before every hand-over but the first: only a real `.git`
    // directory's own regular index file of a sane size is read, never through a symlink, a
    // FIFO or a gitfile pointing at another repository.
    let git_dir = root.join(".git");
    let file = git_dir.join("index");
    let plain_dir = std::fs::symlink_metadata(&git_dir).is_ok_and(|m| m.is_dir());
    match std::fs::symlink_metadata(&file) {
        Ok(m) if plain_dir && m.is_file() && m.len() <= MAX_INDEX_BYTES => {}
        _ => return Ok(0),
    }
    // The common index formats are patched in place: libgit2 takes about 6 µs to replace each
    // entry (0.12 s for 20,000), the patch a stat call each.
    if let Some(n) = restamp_file(&root, &file, uid, gid).map_err(|e| GitError::io(OP, &file, e))? {
        return Ok(n);
    }
    let mut index = repo.index().map_err(|e| GitError::local(OP, e))?;
    let mut changed = Vec::new();
    for mut entry in index.iter() {
        // Stage bits: a conflict entry describes no work tree file.
        let stage = (entry.flags >> 12) & 0x3;
        if stage != 0 || (entry.uid == uid && entry.gid == gid) {
            continue;
        }
        let recorded = Recorded {
            mtime: (entry.mtime.seconds() as u32, entry.mtime.nanoseconds()),
            ino: entry.ino,
            size: entry.file_size,
        };
        let Some(meta) = still_fresh(&root, &entry.path, &recorded, uid, gid) else {
            continue;
        };
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

/// The content-bearing stat data an index entry recorded, as the index stores it (32 bits).
struct Recorded {
    mtime: (u32, u32),
    ino: u32,
    size: u32,
}

/// The file's metadata when it now belongs to `uid:gid` and its mtime, size and inode are the
/// recorded ones: a `chown` is all that happened to it.
fn still_fresh(
    root: &Path,
    path: &[u8],
    recorded: &Recorded,
    uid: u32,
    gid: u32,
) -> Option<std::fs::Metadata> {
    // lstat: a symlink entry is the link itself.
    let meta = std::fs::symlink_metadata(root.join(OsStr::from_bytes(path))).ok()?;
    let unchanged = meta.uid() == uid
        && meta.gid() == gid
        && recorded.mtime == (meta.mtime() as u32, meta.mtime_nsec() as u32)
        && recorded.size == meta.size() as u32
        && recorded.ino == meta.ino() as u32;
    unchanged.then_some(meta)
}

/// The largest index restamped (about 600,000 entries); a larger one is left for git to refresh.
const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// Size of the SHA-1 index trailer and object names; another object format is left to libgit2.
const SHA1_LEN: usize = 20;
/// An entry's fixed part: ten 32-bit stat fields, the object name, 16 bits of flags.
const ENTRY_FIXED: usize = 40 + SHA1_LEN + 2;

/// Restamps an index file of version 2 or 3 with a valid SHA-1 trailer in place (written to
/// `index.lock` and renamed over, as git does). `None` when the file is in another format.
fn restamp_file(root: &Path, file: &Path, uid: u32, gid: u32) -> std::io::Result<Option<usize>> {
    use sha1::{Digest, Sha1};
    let mut data = Vec::new();
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file);
    match opened {
        Ok(f) => {
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, MAX_INDEX_BYTES + 1),
                &mut data,
            )?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(0)),
        Err(e) => return Err(e),
    }
    if data.len() as u64 > MAX_INDEX_BYTES {
        return Ok(Some(0));
    }
    let be32 = |d: &[u8], at: usize| {
        d.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(body_len) = data.len().checked_sub(SHA1_LEN) else {
        return Ok(None);
    };
    let version = be32(&data, 4);
    if data.get(..4) != Some(b"DIRC".as_slice())
        || !matches!(version, Some(2 | 3))
        || Sha1::digest(&data[..body_len]).as_slice() != &data[body_len..]
    {
        return Ok(None);
    }
    let count = be32(&data, 8).unwrap_or(0);
    let mut at = 12;
    let mut changed = 0;
    for _ in 0..count {
        let field = |n: usize| be32(&data, at + 4 * n);
        let (
            Some(flags),
            Some(mtime_s),
            Some(mtime_ns),
            Some(ino),
            Some(old_uid),
            Some(old_gid),
            Some(size),
        ) = (
            data.get(at + 60..at + 62)
                .map(|b| u16::from_be_bytes([b[0], b[1]])),
            field(2),
            field(3),
            field(5),
            field(7),
            field(8),
            field(9),
        )
        else {
            return Ok(None);
        };
        let extended = version == Some(3) && flags & 0x4000 != 0;
        let name_at = at + ENTRY_FIXED + if extended { 2 } else { 0 };
        let Some(name_len) = data
            .get(name_at..body_len)
            .and_then(|rest| rest.iter().position(|&b| b == 0))
        else {
            return Ok(None);
        };
        let next = at + ((ENTRY_FIXED + if extended { 2 } else { 0 } + name_len + 8) & !7);
        let stage = (flags >> 12) & 0x3;
        if stage == 0 && (old_uid, old_gid) != (uid, gid) {
            let recorded = Recorded {
                mtime: (mtime_s, mtime_ns),
                ino,
                size,
            };
            let path = &data[name_at..name_at + name_len];
            if let Some(meta) = still_fresh(root, path, &recorded, uid, gid) {
                let mut put = |n: usize, v: u32| {
                    data[at + 4 * n..at + 4 * n + 4].copy_from_slice(&v.to_be_bytes())
                };
                put(0, meta.ctime() as u32);
                put(1, meta.ctime_nsec() as u32);
                put(4, meta.dev() as u32);
                put(7, uid);
                put(8, gid);
                changed += 1;
            }
        }
        at = next;
    }
    if at > body_len {
        return Ok(None);
    }
    if changed > 0 {
        let sum = Sha1::digest(&data[..body_len]);
        data[body_len..].copy_from_slice(&sum);
        let lock = file.with_extension("lock");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &data));
        if let Err(e) = written.and_then(|()| std::fs::rename(&lock, file)) {
            let _ = std::fs::remove_file(&lock);
            return Err(e);
        }
    }
    Ok(Some(changed))
}

#[cfg(test)]
#[path = "restamp_tests.rs"]
mod tests;
