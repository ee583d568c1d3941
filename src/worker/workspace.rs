//! A job's private directory: the checkout and the agent's HOME, side by side under
//! `worker.work_dir`, readable by the worker's user only, removed when the job ends.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    removed: bool,
}

impl Workspace {
    /// Makes `<work_dir>/jobs/<job id>-a<attempt>-<unique>/{home}`; the checkout (`repo`) is
    /// created by the clone. Each attempt and each duplicate gets its own directory.
    pub fn create(work_dir: &Path, job_id: &str, attempt: u32) -> std::io::Result<Self> {
        let safe = crate::job::sanitize::dir_component(job_id);
        let unique = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = work_dir
            .join("jobs")
            .join(format!("{safe}-a{attempt}-{unique}"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("home"))?;
        Ok(Self {
            root,
            removed: false,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The clone root (`dir` in the seed).
    pub fn checkout(&self) -> PathBuf {
        self.root.join("repo")
    }

    /// The agent's HOME (its AGENTS.md and models.json live here, never in the checkout).
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// Removes the directory off the async runtime.
    pub async fn remove(mut self) {
        let root = self.root.clone();
        self.removed = true;
        let res = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&root)).await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "cannot remove the job workspace");
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // Only on a path that skipped `remove` (a panic or an early return).
        if !self.removed {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Removes what a killed worker left under `root` (its job workspaces, with a `models.json`
/// holding a session token, or per-run config homes): entries named `...-<pid>-<n>` whose
/// process is gone. Entries of live processes, including other workers sharing the
/// directory, are kept. Returns how many were removed.
pub fn sweep_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in a `...-<pid>-<counter>` name.
fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '-');
    let counter = parts.next()?;
    let pid = parts.next()?;
    parts.next()?;
    counter.parse::<u64>().ok()?;
    pid.parse::<u32>().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_workers_leftovers_are_swept_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let live = Workspace::create(root.path(), "job/1", 1).unwrap();
        // pid_max on Linux is at most 2^22: this pid cannot be running.
        let dead = root.path().join("jobs/job_2-a1-4999999-0");
        std::fs::create_dir_all(dead.join("home/.pi/agent")).unwrap();
        std::fs::write(dead.join("home/.pi/agent/models.json"), b"token").unwrap();
        let unrelated = root.path().join("jobs/notes");
        std::fs::create_dir_all(&unrelated).unwrap();

        assert_eq!(sweep_stale(&root.path().join("jobs")), 1);
        assert!(!dead.exists());
        assert!(live.root().exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn owner_pids_are_read_from_the_end_of_the_name() {
        assert_eq!(owner_pid("job-1-a2-1234-7"), Some(1234));
        assert_eq!(owner_pid("abc-1234-7"), Some(1234));
        assert_eq!(owner_pid("1234-7"), None);
        assert_eq!(owner_pid("abc-x-7"), None);
    }
}
