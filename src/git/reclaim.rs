//! Taking a checkout's `.git` back from the job's processes before the worker's own git work
//! on it.
//!
//! The worker's git steps (the safety-net commit, the status walks, the pushes) run with the
//! worker's rights, which as root reach every other job's directories, in a `.git` the agent,
//! the install and the checks could rewrite as they liked. Anything there that points
//! elsewhere would make those steps read or write outside the checkout: a symlink
//! (`.git/refs/heads`, `.git/objects`, `.git/packed-refs` to another job's repository), a
//! gitfile or a `commondir`, `core.worktree` or an `include.path` in the config, object
//! alternates. A FIFO where a file should be would hang the step.
//!
//! So after every run of the job's processes ([`reclaim`]) the `.git` must be a plain
//! directory of regular files and directories, or the job fails without a further git step;
//! its local config is replaced by the worker's own (the job's `origin`, the identity, no
//! automatic gc) and alternates are removed. A push checks the first condition again
//! ([`ensure_plain`]), since checkpoints push while the agent still runs; that leaves the
//! agent the moment between the check and the push, which only a repository the agent cannot
//! write would close.

use std::path::Path;

use git2::Repository;

use super::{set_identity, GitError, Identity};

const OP: &str = "reclaim";
/// The most entries a `.git` may hold to be walked; a larger one fails the check.
pub(crate) const MAX_GIT_DIR_ENTRIES: usize = 500_000;

/// What the worker's config leaves of a checkout's: the core settings of a clone. The remote,
/// the identity and the gc settings are then written through libgit2, which escapes them.
const BASE_CONFIG: &str =
    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n";

/// Checks `dir/.git` ([`ensure_plain`]), then replaces its local config with the worker's:
/// `origin` at `url` fetching every branch, `id` as the identity, gc off; and removes object
/// alternates. A checkout with no `.git`, or one that is no repository, is left as it is.
pub fn reclaim(dir: &Path, url: &str, id: &Identity) -> Result<(), GitError> {
    let git_dir = dir.join(".git");
    // Nothing to take back (bootstrap's work tree, which gets a repository of its own later);
    // the worker's next step on it will say what is missing.
    if std::fs::symlink_metadata(&git_dir).is_err() {
        return Ok(());
    }
    ensure_plain(dir)?;
    // Not a repository (no HEAD): nothing of it is used as one; bootstrap replaces it.
    if !git_dir.join("HEAD").is_file() {
        return Ok(());
    }
    replace_config(&git_dir, url)?;
    let alternates = git_dir.join("objects/info/alternates");
    match std::fs::remove_file(&alternates) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(GitError::io(OP, &alternates, e))
        }
        _ => {}
    }
    set_identity(dir, id)
}

/// Replaces `git_dir/config` (a new file, never written through what was there) with the
/// core settings of a clone and `origin` at `url`.
pub(super) fn replace_config(git_dir: &Path, url: &str) -> Result<(), GitError> {
    let config = git_dir.join("config");
    crate::owned_dir::replace_file(&config, BASE_CONFIG.as_bytes(), 0o664)
        .map_err(|e| GitError::io(OP, &config, e))?;
    let repo = Repository::open(git_dir).map_err(|e| GitError::local(OP, e))?;
    repo.remote_with_fetch("origin", url, "+refs/heads/*:refs/remotes/origin/*")
        .map_err(|e| GitError::local(OP, e))?;
    Ok(())
}

/// Fails unless `dir/.git` is a plain directory: no symlink, gitfile, `commondir` or special
/// file anywhere in it, and at most [`MAX_GIT_DIR_ENTRIES`] entries.
pub fn ensure_plain(dir: &Path) -> Result<(), GitError> {
    match plain_git_dir(&dir.join(".git")) {
        Ok(()) => Ok(()),
        Err(why) => Err(GitError::Git {
            op: OP,
            message: format!(
                "the checkout's .git is not the worker's to use: {why}; a job's processes may \
                 not point it elsewhere"
            ),
        }),
    }
}

/// Whether `git_dir` is a real directory holding only regular files and directories (its
/// `hooks` aside, which the worker never uses), no `commondir` (which would put refs and config in another repository) and not too many
/// entries to walk; if not, why.
pub(crate) fn plain_git_dir(git_dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(git_dir).map_err(|e| format!(".git: {e}"))?;
    if !meta.is_dir() {
        return Err(".git is a symlink or a file".to_owned());
    }
    if std::fs::symlink_metadata(git_dir.join("commondir")).is_ok() {
        return Err(".git/commondir exists".to_owned());
    }
    let mut stack = vec![git_dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            seen += 1;
            if seen > MAX_GIT_DIR_ENTRIES {
                return Err(format!(".git holds over {MAX_GIT_DIR_ENTRIES} entries"));
            }
            let entry = entry.map_err(|e| e.to_string())?;
            // libgit2 never reads or runs hooks, and installs link them (husky, pre-commit).
            if dir == git_dir && entry.file_name() == "hooks" {
                continue;
            }
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if !kind.is_file() {
                let path = entry.path();
                let shown = path.strip_prefix(git_dir).unwrap_or(&path);
                return Err(format!(
                    ".git/{} is a symlink or a special file",
                    shown.display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "reclaim_tests.rs"]
mod tests;
