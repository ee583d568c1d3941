//! Keeps the object cache ([`super::object_cache`]) within its bounds: a mirror no job used
//! for the maximum age is removed, then the least recently used go until the rest fit in the
//! size cap. A mirror in use (its lock held by a job of any process) is never touched; one
//! being removed is renamed first, so no job ever finds half of one under the mirror's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::object_cache::lock_file;
use crate::owned_dir::remove_any;

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Mirrors removed.
    pub removed: usize,
    /// Bytes of the mirrors kept.
    pub kept_bytes: u64,
}

/// One mirror as the sweep sees it.
struct Mirror {
    key: String,
    /// Whether there is anything to remove (a lock file alone is not).
    present: bool,
    last_used: SystemTime,
    bytes: u64,
}

/// Sweeps the cache at `root` as of `now`.
pub(crate) fn sweep(root: &Path, max_bytes: u64, max_age: Duration, now: SystemTime) -> Swept {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Swept::default();
    };
    let mut keys = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((key, ext)) = name.rsplit_once('.') else {
            continue;
        };
        match ext {
            "git" | "lock" | "making" => {
                keys.insert(key.to_owned(), ());
            }
            // What an earlier sweep renamed and could not finish removing.
            "removing" => {
                let _ = remove_any(&entry.path());
            }
            _ => {}
        }
    }
    let mut mirrors: Vec<Mirror> = keys
        .into_keys()
        .map(|key| {
            let git = root.join(format!("{key}.git"));
            let last_used = std::fs::metadata(root.join(format!("{key}.lock")))
                .or_else(|_| std::fs::symlink_metadata(&git))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let making = root.join(format!("{key}.making"));
            let present = [&git, &making]
                .iter()
                .any(|p| std::fs::symlink_metadata(p).is_ok());
            let bytes = tree_bytes(&git) + tree_bytes(&making);
            Mirror {
                key,
                present,
                last_used,
                bytes,
            }
        })
        .collect();
    // Oldest first.
    mirrors.sort_by_key(|m| m.last_used);
    let mut total: u64 = mirrors.iter().map(|m| m.bytes).sum();
    let mut swept = Swept::default();
    for mirror in mirrors.iter().filter(|m| m.present) {
        let stale = now
            .duration_since(mirror.last_used)
            .is_ok_and(|age| age > max_age);
        if (stale || total > max_bytes) && remove(root, &mirror.key) {
            total -= mirror.bytes;
            swept.removed += 1;
        }
    }
    swept.kept_bytes = total;
    swept
}

/// Removes the mirror `key` when no job holds it; whether it did. The lock file stays: a job
/// may be waiting on it.
fn remove(root: &Path, key: &str) -> bool {
    let Ok(lock) = lock_file(&root.join(format!("{key}.lock"))) else {
        return false;
    };
    if lock.try_lock().is_err() {
        return false;
    }
    let mut removed = true;
    for ext in ["git", "making"] {
        let path = root.join(format!("{key}.{ext}"));
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let doomed = root.join(format!("{key}-{ext}.removing"));
        removed &= std::fs::rename(&path, &doomed).is_ok() && remove_any(&doomed).is_ok();
    }
    removed
}

/// The bytes of the files under `path` (the mirror is the worker's own: no link is followed
/// anyway).
fn tree_bytes(path: &Path) -> u64 {
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut bytes = 0u64;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => bytes = bytes.saturating_add(m.len()),
                Err(_) => {}
            }
        }
    }
    bytes
}
