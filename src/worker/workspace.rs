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
        let safe: String = job_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
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
