//! Clones over `file://` with the git CLI. libgit2's local transport cannot clone shallow and
//! builds a brand-new pack with a delta search for every clone (most of a large repository's
//! clone time, in the worker's own memory); `git upload-pack` sends the packs on disk as they
//! are, and `git clone --depth 1` fetches only the tip. No credential is involved: a `file://`
//! remote needs none, so none is offered.
//!
//! The child sees no system or user configuration and no templates (nothing of the host's git
//! setup, no hooks), is never prompted, runs in its own process group so a cancel or a timeout
//! stops all of it, and keeps only the tail of what it says.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::GitError;

/// What is kept of git's stderr for an error message.
const STDERR_TAIL_BYTES: usize = 4096;
/// How often a running clone looks at its cancel token.
const POLL: Duration = Duration::from_millis(20);

/// Whether `url` is a `file://` URL, which [`clone_branch`] clones with the git CLI.
pub fn is_file_url(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://"))
}

/// `git clone --single-branch --branch <branch> [--depth 1] <url> <dir>`, as libgit2's clone
/// would leave it: `origin` fetching only `branch`, the branch checked out.
pub fn clone_branch(
    url: &str,
    branch: &str,
    dir: &Path,
    shallow: bool,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    const OP: &str = "clone";
    if cancel.is_cancelled() {
        return Err(GitError::Cancelled { op: OP });
    }
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        // The remote's owner is whoever the job's URL names; libgit2 did not ask either.
        .args(["-c", "safe.directory=*", "-c", "credential.helper="])
        .args([
            "clone",
            "--quiet",
            "--no-tags",
            "--single-branch",
            "--template=",
        ])
        .arg("--branch")
        .arg(branch);
    if shallow {
        cmd.args(["--depth", "1"]);
    }
    cmd.arg("--")
        .arg(url)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| GitError::Git {
        op: OP,
        message: format!("cannot run git: {e}"),
    })?;
    // A reader thread keeps the pipe drained whatever git prints, holding only the tail.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        if let Some(mut pipe) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL_BYTES * 2 {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
        tail
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if cancel.is_cancelled() => {
                // The group git leads: its id stays valid until git is reaped below.
                crate::sys::kill_group(child.id() as i32, libc::SIGKILL);
                let _ = child.wait();
                let _ = reader.join();
                return Err(GitError::Cancelled { op: OP });
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                return Err(GitError::Git {
                    op: OP,
                    message: format!("waiting for git failed: {e}"),
                })
            }
        }
    };
    let tail = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&tail);
    let said = said.trim();
    let said = crate::redact::tail_chars(said, STDERR_TAIL_BYTES);
    Err(GitError::Git {
        op: OP,
        message: if said.is_empty() {
            format!("git clone {status}")
        } else {
            said.to_owned()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// A bare repository with two commits on `main` and one on `other`.
    fn origin(root: &Path) -> String {
        let seed = root.join("seed");
        std::fs::create_dir(&seed).unwrap();
        git(&seed, &["init", "-q", "-b", "main"]);
        for n in ["1", "2"] {
            std::fs::write(seed.join("f.txt"), n).unwrap();
            git(&seed, &["add", "f.txt"]);
            git(&seed, &["commit", "-qm", n]);
        }
        git(&seed, &["branch", "other"]);
        git(root, &["clone", "-q", "--bare", "seed", "origin.git"]);
        format!("file://{}", root.join("origin.git").display())
    }

    #[test]
    fn a_shallow_file_clone_holds_the_tip_of_its_branch_only() {
        let root = tempfile::tempdir().unwrap();
        let url = origin(root.path());
        let dir = root.path().join("shallow");
        clone_branch(&url, "main", &dir, true, &CancellationToken::new()).unwrap();
        assert!(dir.join(".git/shallow").exists(), "depth 1");
        assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "2");
        let repo = git2::Repository::open(&dir).unwrap();
        assert_eq!(repo.head().unwrap().shorthand().ok(), Some("main"));
        let fetch = repo
            .config()
            .unwrap()
            .get_string("remote.origin.fetch")
            .unwrap();
        assert_eq!(fetch, "+refs/heads/main:refs/remotes/origin/main");
        assert!(repo.find_reference("refs/remotes/origin/other").is_err());
        let full = root.path().join("full");
        clone_branch(&url, "main", &full, false, &CancellationToken::new()).unwrap();
        assert!(!full.join(".git/shallow").exists());
    }

    #[test]
    fn a_missing_branch_is_gits_own_message_and_a_cancel_stops_before_anything() {
        let root = tempfile::tempdir().unwrap();
        let url = origin(root.path());
        let err = clone_branch(
            &url,
            "nope",
            &root.path().join("a"),
            true,
            &CancellationToken::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = clone_branch(&url, "main", &root.path().join("b"), true, &cancel).unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        assert!(is_file_url("FILE:///x") && !is_file_url("https://github.com/a/b.git"));
    }
}
