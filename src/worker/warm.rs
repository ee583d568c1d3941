//! Where warm checkouts live and who may use one: a job with `persistentCheckout` works in a
//! checkout kept per repository under `<work_dir>/warm/`, which one job at a time may hold:
//! an in-process lock keyed by the directory, and an exclusive file lock beside it so that
//! other worker processes sharing the disk wait too. A state file beside it says whether the
//! last preparation finished; one that did not (a kill half way through a clone) makes the
//! next holder remake the checkout.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;

use crate::job::sanitize::dir_component;

/// How often a job waiting for a warm checkout held by another process looks again.
const LOCK_POLL: Duration = Duration::from_millis(200);
const PREPARING: &str = "preparing";
const READY: &str = "ready";

/// The warm checkout of `owner/name` under `root`: readable names, and a hash of the exact
/// owner and name, so two repositories whose names sanitise alike never share a directory.
pub fn warm_dir(root: &Path, owner: &str, name: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{owner}\0{name}").as_bytes());
    let mut hash = String::with_capacity(16);
    for byte in &digest[..8] {
        let _ = write!(hash, "{byte:02x}");
    }
    root.join(format!(
        "{}-{}-{hash}",
        dir_component(owner),
        dir_component(name)
    ))
}

/// The in-process locks of the warm checkouts, by directory.
#[derive(Default)]
pub struct WarmLocks {
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why a warm checkout could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("cannot lock the warm checkout {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the job was stopped while waiting for its warm checkout")]
    Cancelled,
}

impl WarmLocks {
    /// Waits until `dir` is free in this process and in every other, and takes it.
    pub async fn acquire(
        &self,
        dir: PathBuf,
        cancel: &CancellationToken,
    ) -> Result<WarmLease, WarmError> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(dir.clone())
            .or_default()
            .clone();
        let guard = tokio::select! {
            _ = cancel.cancelled() => return Err(WarmError::Cancelled),
            guard = lock.lock_owned() => guard,
        };
        let lock_path = dir.with_extension("lock");
        let io = |source| WarmError::Lock {
            path: lock_path.clone(),
            source,
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(WarmError::Cancelled),
                _ = tokio::time::sleep(LOCK_POLL) => {}
            }
        }
        Ok(WarmLease {
            dir,
            _file: file,
            _guard: guard,
        })
    }
}

/// A warm checkout held by one job; released when dropped (the file lock with its file).
pub struct WarmLease {
    dir: PathBuf,
    _file: File,
    _guard: OwnedMutexGuard<()>,
}

impl WarmLease {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_path(&self) -> PathBuf {
        self.dir.with_extension("state")
    }

    /// Whether the last preparation of this checkout never finished.
    pub fn interrupted(&self) -> bool {
        std::fs::read_to_string(self.state_path()).is_ok_and(|s| s.trim() == PREPARING)
    }

    /// Notes that a preparation starts (a kill from here on leaves the checkout to remake).
    pub fn preparing(&self) {
        let _ = std::fs::write(self.state_path(), PREPARING);
    }

    /// Notes that the checkout is ready for the job.
    pub fn ready(&self) {
        let _ = std::fs::write(self.state_path(), READY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_names_that_sanitise_alike_get_different_directories() {
        let root = Path::new("/w");
        let a = warm_dir(root, "a/b", "c");
        let b = warm_dir(root, "a_b", "c");
        assert_ne!(a, b);
        assert!(a.starts_with(root));
        assert_eq!(a, warm_dir(root, "a/b", "c"), "stable");
        assert!(!warm_dir(root, "..", "..")
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .contains('/'));
    }

    #[tokio::test]
    async fn a_held_checkout_is_waited_for_in_process_and_the_wait_can_be_cancelled() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = Arc::new(WarmLocks::default());
        let dir = tmp.path().join("warm/repo");
        let live = CancellationToken::new();
        let first = locks.acquire(dir.clone(), &live).await.unwrap();
        first.preparing();
        assert!(first.interrupted());
        let cancel = CancellationToken::new();
        let waiting = tokio::spawn({
            let (locks, dir, cancel) = (locks.clone(), dir.clone(), cancel.clone());
            async move { locks.acquire(dir, &cancel).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the second job waits");
        cancel.cancel();
        assert!(matches!(waiting.await.unwrap(), Err(WarmError::Cancelled)));
        first.ready();
        drop(first);
        let again = locks.acquire(dir, &live).await.unwrap();
        assert!(!again.interrupted());
    }
}
