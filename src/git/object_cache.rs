//! The per-repository object cache (`git.object_cache_max_bytes`; off at 0): a bare mirror of
//! each remote under `<work_dir>/objects/`, so a fresh checkout of a repository an earlier job
//! cloned fetches only what changed since.
//!
//! A mirror is keyed by the SHA-256 of the remote's URL without user info, so every token for
//! one repository shares it. What keeps a job from reading what its own token may not: **every**
//! job fetches its branch into the mirror with its own token first (through the same askpass
//! path as a direct clone), and its checkout takes only that branch from the mirror. A token the
//! remote refuses fails the job as `git` authentication, exactly as a direct clone would, and
//! never reaches the cached objects.
//!
//! The checkout is a local clone of the mirror that copies its files (no hardlinks and no
//! alternates): the checkout is handed to the agents' user, and the mirror stays the worker's
//! own, 0700 and hidden from every sandbox like the rest of the work directory. It takes the
//! mirror's objects as they are, so it holds the full history even where a direct clone would
//! have been shallow, and objects of the other branches jobs fetched: read access to a
//! repository is per repository on the forges, and every job proved its own before the copy.
//! `origin` is then set to the job's URL, as a direct clone leaves it.
//!
//! An exclusive file lock (`<key>.lock`, so other worker processes on the same disk wait as
//! well) is held while a job fetches into a mirror, a shared one while it copies its checkout
//! out, and the sweep ([`super::object_cache_sweep`]) removes only mirrors it can lock
//! exclusively. The lock file's mtime is the mirror's last use. git's own housekeeping runs in
//! the fetch, in the foreground (`gc.autoDetach=false`), so it ends while the lock is held.
//!
//! Any failure of the cache other than a refused token or a cancel removes the mirror and
//! clones directly: the cache can make a job faster, never fail it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::cli_clone::{self, Transport};
use super::{GitError, GitRemote};
use crate::metrics::Metrics;

const OP: &str = "clone";
/// How often a job waiting for a mirror another job holds looks again.
const LOCK_POLL: Duration = Duration::from_millis(25);
/// Least time between two sweeps by one worker process.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// When this process last swept, in seconds since the epoch.
static LAST_SWEEP: AtomicU64 = AtomicU64::new(0);

/// Where mirrors live and how much disk they may take.
#[derive(Debug, Clone)]
pub struct ObjectCache {
    root: PathBuf,
    max_bytes: u64,
    max_age: Duration,
}

impl ObjectCache {
    /// The cache under `root`, or none when `max_bytes` is 0 (the cache is off).
    pub fn new(root: PathBuf, max_bytes: u64, max_age: Duration) -> Option<Self> {
        (max_bytes > 0).then_some(Self {
            root,
            max_bytes,
            max_age,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// [`super::clone_branch`], through `cache` when there is one and the remote is a `file://`,
/// `http://` or `https://` URL.
pub(crate) fn clone_branch_via(
    cache: Option<&ObjectCache>,
    metrics: &Metrics,
    remote: &GitRemote,
    branch: &str,
    dir: &Path,
    shallow: bool,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    let Some((cache, transport)) = cache.zip(Transport::of(remote.url())) else {
        return super::clone_branch(remote, branch, dir, shallow, cancel);
    };
    let cached = via_mirror(cache, remote, transport, branch, dir, cancel);
    let counted = |outcome: &str| {
        metrics
            .object_cache_clones
            .with_label_values(&[outcome])
            .inc()
    };
    match cached {
        Ok(()) => {
            counted("cached");
            sweep_now_and_then(cache, metrics);
            Ok(())
        }
        Err(e) if e.is_auth() || e.is_cancelled() => Err(e),
        Err(e) => {
            counted("direct");
            tracing::warn!(error = %e, "object cache: cloning directly instead");
            super::remove_any(OP, dir)?;
            super::clone_branch(remote, branch, dir, shallow, cancel)
        }
    }
}

fn via_mirror(
    cache: &ObjectCache,
    remote: &GitRemote,
    transport: Transport,
    branch: &str,
    dir: &Path,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    let url = cli_clone::without_user(remote.url(), transport)?;
    crate::owned_dir::create_private(&cache.root).map_err(|e| GitError::io(OP, &cache.root, e))?;
    let key = key(&url);
    let mirror = cache.root.join(format!("{key}.git"));
    let lock = lock_file(&cache.root.join(format!("{key}.lock")))?;
    wait_for(cancel, || lock.try_lock())?;
    let fetched = ensure_mirror(&mirror, cancel)
        .and_then(|()| fetch(&mirror, &url, transport, branch, remote, cancel));
    if let Err(e) = fetched {
        // A mirror a fetch failed in may be half written: the next job starts it afresh.
        if !e.is_auth() && !e.is_cancelled() {
            let _ = super::remove_any(OP, &mirror);
        }
        return Err(e);
    }
    // The last use, for the sweep's least-recently-used order.
    let _ = lock.set_modified(SystemTime::now());
    // Other jobs may copy from the mirror meanwhile; none may fetch into it or remove it.
    lock.unlock().map_err(|e| GitError::io(OP, &mirror, e))?;
    wait_for(cancel, || lock.try_lock_shared())?;
    // A local clone copies the mirror's pack files as they are (no hardlinks: the checkout is
    // handed to the agents' user), where the git transport would pack and index them again.
    // It cannot be shallow: the checkout holds the mirror's history, which costs a copy of
    // files, not a transfer.
    let mut cmd = cli_clone::git_command(Transport::File, None);
    cmd.args([
        "clone",
        "--quiet",
        "--no-tags",
        "--single-branch",
        "--template=",
        "--local",
        "--no-hardlinks",
    ])
    .arg("--branch")
    .arg(branch)
    .arg("--")
    .arg(&mirror)
    .arg(dir);
    cli_clone::run(cmd, cancel, None)?;
    let repo = super::open(OP, dir)?;
    repo.remote_set_url("origin", remote.url())
        .map_err(|e| GitError::local(OP, e))?;
    tracing::debug!(mirror = %mirror.display(), "object cache: checkout copied from the mirror");
    Ok(())
}

/// The mirror's name: the URL (without user info) hashed, so no URL shapes a path.
fn key(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn lock_file(path: &Path) -> Result<File, GitError> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| GitError::io(OP, path, e))
}

/// Polls `try_lock` until it holds the lock or the job is cancelled.
fn wait_for(
    cancel: &CancellationToken,
    mut try_lock: impl FnMut() -> Result<(), std::fs::TryLockError>,
) -> Result<(), GitError> {
    loop {
        match try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(GitError::Git {
                    op: OP,
                    message: format!("cannot lock the object cache: {e}"),
                })
            }
        }
        if cancel.is_cancelled() {
            return Err(GitError::Cancelled { op: OP });
        }
        std::thread::sleep(LOCK_POLL);
    }
}

/// Makes `mirror` a bare repository unless it is one: made under another name and renamed
/// into place, so a half-made one never carries the mirror's name.
fn ensure_mirror(mirror: &Path, cancel: &CancellationToken) -> Result<(), GitError> {
    let is_dir = std::fs::symlink_metadata(mirror).is_ok_and(|m| m.is_dir());
    if is_dir && git2::Repository::open_bare(mirror).is_ok_and(|r| r.is_bare()) {
        return Ok(());
    }
    super::remove_any(OP, mirror)?;
    let making = mirror.with_extension("making");
    super::remove_any(OP, &making)?;
    let mut cmd = cli_clone::git_command(Transport::File, None);
    cmd.args(["init", "--quiet", "--bare", "--template=", "--"])
        .arg(&making);
    cli_clone::run(cmd, cancel, None)?;
    std::fs::rename(&making, mirror).map_err(|e| GitError::io(OP, mirror, e))
}

/// Fetches `branch` from `url` into the mirror's own `refs/heads/<branch>`, with the job's
/// token: the remote decides, for every job, whether that token may read the branch. Every
/// branch name was checked with git's rules when the job was parsed, so none is a pattern.
fn fetch(
    mirror: &Path,
    url: &str,
    transport: Transport,
    branch: &str,
    remote: &GitRemote,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    let mut cmd = cli_clone::git_command(transport, super::network_read_timeout());
    // git's housekeeping in the foreground: nothing of it outlives the lock.
    cmd.args([
        "-c",
        "gc.autoDetach=false",
        "-c",
        "maintenance.autoDetach=false",
    ])
    .arg("--git-dir")
    .arg(mirror)
    .args([
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--update-head-ok",
        "--",
        url,
    ])
    .arg(format!("+refs/heads/{branch}:refs/heads/{branch}"));
    cli_clone::run_with_token(cmd, transport, url, remote.auth().secret(), cancel)
}

/// Sweeps the cache unless this process swept it in the last [`SWEEP_INTERVAL`].
fn sweep_now_and_then(cache: &ObjectCache, metrics: &Metrics) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_SWEEP.load(Ordering::Relaxed);
    if secs < last.saturating_add(SWEEP_INTERVAL.as_secs()) {
        return;
    }
    if LAST_SWEEP
        .compare_exchange(last, secs, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let swept = super::object_cache_sweep::sweep(&cache.root, cache.max_bytes, cache.max_age, now);
    metrics
        .object_cache_bytes
        .set(i64::try_from(swept.kept_bytes).unwrap_or(i64::MAX));
    if swept.removed > 0 {
        tracing::info!(
            removed = swept.removed,
            kept_bytes = swept.kept_bytes,
            "object cache: swept the least recently used repositories"
        );
    }
}

#[cfg(test)]
#[path = "object_cache_tests.rs"]
mod tests;
