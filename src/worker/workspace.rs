//! A job's private directory: the checkout and the agent's HOME, side by side under
//! `worker.work_dir`, readable by the worker's user only, removed when the job ends (an
//! [`OwnedDir`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::owned_dir::{create_private, OwnedDir};

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct Workspace {
    dir: OwnedDir,
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
        let dir = OwnedDir::create(root, "the job workspace")?;
        create_private(&dir.path().join("home"))?;
        Ok(Self { dir })
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The clone root (`dir` in the seed).
    pub fn checkout(&self) -> PathBuf {
        self.root().join("repo")
    }

    /// The agent's HOME (its AGENTS.md and models.json live here, never in the checkout).
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// Removes the directory off the async runtime (on a path that skips this, a panic or an
    /// early return, dropping the workspace removes it).
    pub async fn remove(self) {
        self.dir.remove().await;
    }
}

/// A `serviceDirectory` the checkout cannot hold: a symlink on the way leads out of it, or a
/// component is not a directory.
#[derive(Debug, thiserror::Error)]
pub enum ServiceDirError {
    #[error(
        "repo.serviceDirectory '{relative}' leads outside the checkout through the symlink \
         '{through}'"
    )]
    Escapes { relative: String, through: String },
    #[error("repo.serviceDirectory '{relative}': '{at}' is not a directory")]
    NotADirectory { relative: String, at: String },
    #[error("repo.serviceDirectory '{relative}': {source}")]
    Io {
        relative: String,
        source: std::io::Error,
    },
}

/// Resolves `relative` (already free of `..` and absolute parts, see
/// `job::sanitize::sanitize_service_directory`) inside `checkout`, creating what is missing.
///
/// Each component is looked at before anything is created: a symlink is followed only when
/// its target stays inside the checkout, so a repository holding `svc -> /some/host/dir`
/// cannot make the worker create directories, or run the agent, outside the checkout. Returns
/// the resolved (canonical) directory. Nothing else runs in the checkout yet, so no one can
/// swap a component between the check and its use.
pub fn resolve_service_directory(
    checkout: &Path,
    relative: &str,
) -> Result<PathBuf, ServiceDirError> {
    let io = |source| ServiceDirError::Io {
        relative: relative.to_owned(),
        source,
    };
    let root = checkout.canonicalize().map_err(io)?;
    let mut current = root.clone();
    let mut walked = PathBuf::new();
    for component in Path::new(relative).components() {
        walked.push(component);
        let next = current.join(component);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = next.canonicalize().map_err(io)?;
                if !target.starts_with(&root) {
                    return Err(ServiceDirError::Escapes {
                        relative: relative.to_owned(),
                        through: walked.display().to_string(),
                    });
                }
                if !target.is_dir() {
                    return Err(ServiceDirError::NotADirectory {
                        relative: relative.to_owned(),
                        at: walked.display().to_string(),
                    });
                }
                current = target;
            }
            Ok(meta) if meta.is_dir() => current = next,
            Ok(_) => {
                return Err(ServiceDirError::NotADirectory {
                    relative: relative.to_owned(),
                    at: walked.display().to_string(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&next).map_err(io)?;
                current = next;
            }
            Err(e) => return Err(io(e)),
        }
    }
    Ok(current)
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
    fn a_service_directory_through_a_symlink_out_of_the_checkout_is_refused_before_creating_anything(
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        let checkout = tmp.path().join("repo");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::create_dir_all(checkout.join("inside/real")).unwrap();
        std::os::unix::fs::symlink(&host, checkout.join("svc")).unwrap();
        std::os::unix::fs::symlink("inside", checkout.join("alias")).unwrap();
        std::fs::write(checkout.join("file"), b"x").unwrap();

        let err = resolve_service_directory(&checkout, "svc/x/y").unwrap_err();
        assert!(
            matches!(&err, ServiceDirError::Escapes { through, .. } if through == "svc"),
            "{err}"
        );
        assert!(!host.join("x").exists(), "nothing was created outside");

        // A symlink that stays inside is followed; missing parts are created inside.
        let dir = resolve_service_directory(&checkout, "alias/real/new").unwrap();
        assert_eq!(
            dir,
            checkout.canonicalize().unwrap().join("inside/real/new")
        );
        assert!(dir.is_dir());
        assert!(matches!(
            resolve_service_directory(&checkout, "file/x"),
            Err(ServiceDirError::NotADirectory { .. })
        ));
        // A dangling symlink cannot be resolved, so it is refused too.
        std::os::unix::fs::symlink("/nonexistent/place", checkout.join("dangling")).unwrap();
        assert!(resolve_service_directory(&checkout, "dangling/x").is_err());
        assert!(!Path::new("/nonexistent/place").exists());
    }

    #[test]
    fn owner_pids_are_read_from_the_end_of_the_name() {
        assert_eq!(owner_pid("job-1-a2-1234-7"), Some(1234));
        assert_eq!(owner_pid("abc-1234-7"), Some(1234));
        assert_eq!(owner_pid("1234-7"), None);
        assert_eq!(owner_pid("abc-x-7"), None);
    }
}
