//! Bare-repository fixtures made with the `git` CLI: a remote with an initial commit on `main`,
//! commits (of files or a symbolic link) pushed onto its branches, reads of a branch tip or a
//! file at a ref, and a pre-receive hook that rejects every push.
//!
//! The CLI runs with the user's and the system's git config shut out, so a developer's
//! `~/.gitconfig` (signing, hooks, default branch) cannot change what a test sees.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Runs `git` in `dir` and returns its trimmed stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Fixture",
            "-c",
            "user.email=fixture@example.com",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository used as a remote. Owns its temporary directory unless it was made inside
/// a directory the caller owns (a [`super::git_http::GitHttpServer`] root).
pub struct BareRepo {
    path: PathBuf,
    _owned: Option<TempDir>,
}

impl BareRepo {
    /// A bare repository `repo.git` in its own temporary directory, with one commit on `main`
    /// (`README.md` = `hello\n`).
    pub fn new() -> Self {
        let root = TempDir::new().expect("tempdir");
        let mut repo = Self::new_in(root.path(), "repo");
        repo._owned = Some(root);
        repo
    }

    /// Like [`BareRepo::new`], at `<root>/<name>.git`.
    pub fn new_in(root: &Path, name: &str) -> Self {
        let path = root.join(format!("{name}.git"));
        std::fs::create_dir_all(&path).expect("mkdir bare repo");
        git(&path, &["init", "--bare", "--initial-branch=main"]);
        let repo = Self { path, _owned: None };
        repo.commit_files("main", &[("README.md", "hello\n")], "initial commit");
        repo
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A `file://` URL of the repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    /// Commits `files` (path, content) on `branch` and pushes it to this repository. A branch
    /// that does not exist yet starts at `main`. Returns the new tip.
    pub fn commit_files(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        self.commit(branch, message, |dir| {
            for (path, content) in files {
                let file = dir.join(path);
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::write(&file, content).expect("write fixture file");
                git(dir, &["add", "--", path]);
            }
        })
    }

    /// Commits a symbolic link `link` -> `target` on `branch`, as a hostile repository can.
    pub fn commit_symlink(&self, branch: &str, link: &str, target: &Path, message: &str) -> String {
        self.commit(branch, message, |dir| {
            std::os::unix::fs::symlink(target, dir.join(link)).expect("symlink");
            git(dir, &["add", "--", link]);
        })
    }

    /// Commits what `stage` writes and adds in a work tree of `branch`, and pushes it.
    fn commit(&self, branch: &str, message: &str, stage: impl FnOnce(&Path)) -> String {
        let work = TempDir::new().expect("tempdir");
        let dir = work.path();
        git(dir, &["init", "--quiet"]);
        git(
            dir,
            &["remote", "add", "origin", &self.path.display().to_string()],
        );
        let has_branch = !git(dir, &["ls-remote", "--heads", "origin", branch]).is_empty();
        let has_main = !git(dir, &["ls-remote", "--heads", "origin", "main"]).is_empty();
        if has_branch {
            git(dir, &["fetch", "--quiet", "origin", branch]);
            git(dir, &["checkout", "--quiet", "-B", branch, "FETCH_HEAD"]);
        } else if has_main {
            git(dir, &["fetch", "--quiet", "origin", "main"]);
            git(dir, &["checkout", "--quiet", "-B", branch, "FETCH_HEAD"]);
        } else {
            git(dir, &["checkout", "--quiet", "-b", branch]);
        }
        stage(dir);
        git(dir, &["commit", "--quiet", "--allow-empty", "-m", message]);
        git(
            dir,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        git(dir, &["rev-parse", "HEAD"])
    }

    /// A completion record for `id` as an earlier worker left it: a commit over the empty tree
    /// on `main`'s tip, committed `days_ago`, at `refs/harness/done/<id>`.
    pub fn record_completion(&self, id: &str, days_ago: u64) {
        let when = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            - days_ago * 86_400;
        let tree = git(
            &self.path,
            &["hash-object", "-w", "-t", "tree", "/dev/null"],
        );
        let out = Command::new("git")
            .args(["commit-tree", &tree, "-p", "main", "-m"])
            .arg(format!("{{\"jobId\":\"{id}\"}}"))
            .current_dir(&self.path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "bot")
            .env("GIT_AUTHOR_EMAIL", "bot@example.com")
            .env("GIT_COMMITTER_NAME", "bot")
            .env("GIT_COMMITTER_EMAIL", "bot@example.com")
            .env("GIT_COMMITTER_DATE", format!("@{when} +0000"))
            .output()
            .expect("git runs");
        assert!(out.status.success(), "commit-tree");
        let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        git(
            &self.path,
            &["update-ref", &format!("refs/harness/done/{id}"), &commit],
        );
    }

    /// Every ref under `prefix`, sorted.
    pub fn refs(&self, prefix: &str) -> Vec<String> {
        git(&self.path, &["for-each-ref", "--format=%(refname)", prefix])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The commit `refs/heads/<branch>` points at, or `None` when the branch does not exist.
    pub fn tip(&self, branch: &str) -> Option<String> {
        let out = git(
            &self.path,
            &[
                "for-each-ref",
                "--format=%(objectname)",
                &format!("refs/heads/{branch}"),
            ],
        );
        (!out.is_empty()).then_some(out)
    }

    /// The content of `path` at `rev` (`main`, a commit id...), or `None` when it is absent.
    pub fn file_at(&self, rev: &str, path: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["cat-file", "-p", &format!("{rev}:{path}")])
            .current_dir(&self.path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Commit subjects reachable from `rev`, newest first.
    pub fn subjects(&self, rev: &str) -> Vec<String> {
        git(&self.path, &["log", "--format=%s", rev])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Installs a `pre-receive` hook that rejects every push with `reason` on stderr. Hooks
    /// run only where `git receive-pack` runs: over smart HTTP, not libgit2's local transport.
    pub fn reject_pushes_with_hook(&self, reason: &str) {
        use std::os::unix::fs::PermissionsExt;
        let hook = self.path.join("hooks").join("pre-receive");
        std::fs::create_dir_all(hook.parent().expect("hooks dir")).expect("mkdir hooks");
        std::fs::write(&hook, format!("#!/bin/sh\necho '{reason}' >&2\nexit 1\n"))
            .expect("write hook");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}
