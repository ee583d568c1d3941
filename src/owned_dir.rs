//! A directory owned for one job or one run (the job workspace, an agent's config home): made
//! private (0700) and removed when its owner ends, by [`OwnedDir::remove`] or, on any path that
//! skips it (an early return, a panic, a dropped future), on drop.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Owns a directory and removes it, with everything in it, when done.
#[derive(Debug)]
pub struct OwnedDir {
    path: PathBuf,
    /// What the directory is, for the warning when it cannot be removed.
    what: &'static str,
    removed: bool,
}

impl OwnedDir {
    /// Creates `path` (and any missing parent) 0700 and owns it.
    pub fn create(path: PathBuf, what: &'static str) -> io::Result<Self> {
        create_private(&path)?;
        Ok(Self::claim(path, what))
    }

    /// Owns `path` before it exists: whoever fills it makes it with [`create_private`], or
    /// never does (removing it is then a no-op).
    pub fn claim(path: PathBuf, what: &'static str) -> Self {
        Self {
            path,
            what,
            removed: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory off the async runtime; one that is not there is fine. A failed
    /// removal is retried a few times (the last processes of a killed agent may still be
    /// writing into it while they die), then logged, naming what the directory was.
    pub async fn remove(mut self) {
        use backon::{ExponentialBuilder, Retryable};
        self.removed = true;
        let path = self.path.clone();
        let attempt = || {
            let path = path.clone();
            async move {
                tokio::task::spawn_blocking(move || remove_any(&path))
                    .await
                    .map_err(io::Error::other)?
            }
        };
        let res = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(std::time::Duration::from_millis(100))
                    .with_max_delay(std::time::Duration::from_secs(1))
                    .with_max_times(4),
            )
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "cannot remove {}", self.what);
        }
    }
}

impl Drop for OwnedDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_any(&self.path);
        }
    }
}

/// Creates `dir` (and any missing parent) 0700, unless it is a directory already.
pub fn create_private(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Removes whatever is at `path`, if anything: a tree, a file, or a link itself (never what it
/// points to).
pub fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Writes a file that is born with `mode`: an existing file (or link) is removed first, so
/// the mode never depends on what was there, no data is ever written under a wider one, and
/// the write never follows a link (`create_new` refuses any path that exists).
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_created_directory_and_its_missing_parents_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OwnedDir::create(tmp.path().join("a/b"), "a test dir").unwrap();
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
    }

    #[test]
    fn dropping_the_owner_removes_the_directory_and_its_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("owned");
        let dir = OwnedDir::create(path.clone(), "a test dir").unwrap();
        std::fs::write(path.join("secret"), b"token").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn remove_removes_it_and_a_claimed_directory_never_made_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("owned");
        let dir = OwnedDir::claim(path.clone(), "a test dir");
        create_private(&path.join("inner")).unwrap();
        dir.remove().await;
        assert!(!path.exists());
        OwnedDir::claim(tmp.path().join("never"), "a test dir")
            .remove()
            .await;
        drop(OwnedDir::claim(tmp.path().join("never"), "a test dir"));
        assert!(tmp.path().exists());
    }
}
