//! Bootstrap's git side (seed 4.4): whether the agent produced anything, the fresh
//! single-commit history built from what it left, and the force push of that history to the
//! target repository.
//!
//! The history is built from the work tree directly, never through the agent's `.git`: every
//! directory is read with `lstat`, symlinks are stored as links and never followed, each file
//! is checked against the size limit before it is read and streamed into its blob, and the
//! repository's `.gitignore` files are honoured as `git add -A` would.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository, RepositoryInitOptions, StatusOptions};
use tokio_util::sync::CancellationToken;

use super::clone::require_local_branch;
use super::credentials::NetState;
use super::limits::FileLimit;
use super::push::{non_fast_forward, push_refspecs, rejection, PushAttempt};
use super::{open, GitError, GitRemote, Identity};

/// Deeper directories than this are refused: the walk recurses once per level.
const MAX_DEPTH: usize = 256;

/// Git's modes for tree entries.
const MODE_TREE: i32 = 0o040000;
const MODE_BLOB: i32 = 0o100644;
const MODE_EXECUTABLE: i32 = 0o100755;
const MODE_LINK: i32 = 0o120000;

/// With a reference clone: whether the agent changed anything since `start` (the clone's tip).
/// Commits it made count (the seed looked at the work tree only and called an agent that
/// committed its work a no-op, Q7), as do edits, deletions and new files that are not ignored.
/// An agent that replaced the repository (its own `git init`) changed it.
pub fn changed_since(dir: &Path, start: &str) -> Result<bool, GitError> {
    const OP: &str = "status";
    let local = |e| GitError::local(OP, e);
    let repo = open(OP, dir)?;
    let head_tree = match repo.head() {
        Ok(head) => Some(head.peel_to_tree().map_err(local)?.id()),
        Err(e) if e.code() == ErrorCode::UnbornBranch => None,
        Err(e) => return Err(local(e)),
    };
    let start_tree = Oid::from_str(start)
        .and_then(|oid| repo.find_commit(oid))
        .map(|commit| commit.tree_id())
        .ok();
    if head_tree.is_none() || head_tree != start_tree {
        return Ok(true);
    }
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options)).map_err(local)?;
    Ok(!statuses.is_empty())
}

/// From scratch: whether `dir` holds at least one regular file at any depth (`.git` included,
/// as the seed counts it; symlinks never count and are never followed).
pub fn holds_any_file(dir: &Path) -> Result<bool, GitError> {
    const OP: &str = "status";
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries = std::fs::read_dir(&next).map_err(|e| GitError::io(OP, &next, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| GitError::io(OP, &next, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| GitError::io(OP, &entry.path(), e))?;
            if kind.is_file() {
                return Ok(true);
            }
            if kind.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(false)
}

/// Replaces whatever history `dir` had with one commit and no parent on `branch`: removes
/// `<dir>/.git`, initialises a new repository there, and commits the work tree (every `.git`
/// left out, ignored paths left out). Returns the commit. A work tree with nothing to commit is
/// refused: a repository cannot be bootstrapped with an empty tree.
pub fn fresh_history(
    dir: &Path,
    branch: &str,
    message: &str,
    id: &Identity,
    limit: FileLimit,
) -> Result<String, GitError> {
    const OP: &str = "commit";
    let local = |e| GitError::local(OP, e);
    // The agent could have replaced its working directory with a link to anywhere.
    let meta = std::fs::symlink_metadata(dir).map_err(|e| GitError::io(OP, dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(GitError::Git {
            op: OP,
            message: "the bootstrap directory is no longer a directory".to_owned(),
        });
    }
    super::remove_any(OP, &dir.join(".git"))?;
    let mut init = RepositoryInitOptions::new();
    init.initial_head(branch).no_reinit(true);
    let repo = Repository::init_opts(dir, &init).map_err(local)?;
    let walk = Walk { repo: &repo, limit };
    let Some(tree) = walk.tree(dir, Path::new(""), 0)? else {
        return Err(GitError::Git {
            op: OP,
            message: "the bootstrapped work tree has no file to commit (everything is ignored, \
                      empty or inside .git): refusing to push an empty tree"
                .to_owned(),
        });
    };
    let tree = repo.find_tree(tree).map_err(local)?;
    let signature = id.signature()?;
    let commit = repo
        .commit(Some("HEAD"), &signature, &signature, message, &tree, &[])
        .map_err(local)?;
    Ok(commit.to_string())
}

/// Force-pushes `refs/heads/<branch>` to the same branch on `remote`. Ok only when the remote
/// accepted the update.
pub fn force_push_branch(
    dir: &Path,
    remote: &GitRemote,
    branch: &str,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    const OP: &str = "push";
    let auth = remote.auth();
    let state = NetState::new(remote, cancel);
    state.check_cancel(OP)?;
    let repo = open(OP, dir)?;
    require_local_branch(&repo, OP, branch)?;
    let remote_ref = format!("refs/heads/{branch}");
    let refspec = format!("+refs/heads/{branch}:{remote_ref}");
    match push_refspecs(&repo, remote, &state, OP, &[refspec])? {
        PushAttempt::NotFastForward(message) => Err(non_fast_forward(remote_ref, &message, auth)),
        PushAttempt::Sent(report) => match report.rejected.into_iter().next() {
            Some((refname, reason)) => Err(rejection(&state, auth, refname, reason)),
            None => Ok(()),
        },
    }
}

/// Removes `path` whatever it is; a symlink is removed, not followed. Missing is fine.
/// Writes the trees and blobs of a work tree into its repository.
struct Walk<'a> {
    repo: &'a Repository,
    limit: FileLimit,
}

impl Walk<'_> {
    /// The tree of the directory `abs` (`rel` inside the root), or `None` when nothing in it
    /// is committed (git stores no empty directory).
    fn tree(&self, abs: &Path, rel: &Path, depth: usize) -> Result<Option<Oid>, GitError> {
        const OP: &str = "commit";
        let local = |e| GitError::local(OP, e);
        if depth > MAX_DEPTH {
            return Err(GitError::Git {
                op: OP,
                message: format!(
                    "'{}' is more than {MAX_DEPTH} directories deep",
                    rel.display()
                ),
            });
        }
        let mut builder = self.repo.treebuilder(None).map_err(local)?;
        let entries = std::fs::read_dir(abs).map_err(|e| GitError::io(OP, abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| GitError::io(OP, abs, e))?;
            let name = entry.file_name();
            if name.as_bytes().eq_ignore_ascii_case(b".git") {
                continue;
            }
            let (path, rel) = (entry.path(), rel.join(&name));
            let meta = std::fs::symlink_metadata(&path).map_err(|e| GitError::io(OP, &path, e))?;
            let kind = meta.file_type();
            if self.ignored(&rel, kind.is_dir())? {
                continue;
            }
            let (oid, mode) = if kind.is_dir() {
                match self.tree(&path, &rel, depth + 1)? {
                    Some(oid) => (oid, MODE_TREE),
                    None => continue,
                }
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| GitError::io(OP, &path, e))?;
                let oid = self
                    .repo
                    .blob(target.as_os_str().as_bytes())
                    .map_err(local)?;
                (oid, MODE_LINK)
            } else if kind.is_file() {
                let mode = if meta.mode() & 0o111 != 0 {
                    MODE_EXECUTABLE
                } else {
                    MODE_BLOB
                };
                (self.blob(&path, &rel, meta.len())?, mode)
            } else {
                return Err(GitError::Git {
                    op: OP,
                    message: format!(
                        "'{}' is not a regular file (a FIFO, socket or device): refusing to read it",
                        rel.display()
                    ),
                });
            };
            builder.insert(&name, oid, mode).map_err(local)?;
        }
        if builder.is_empty() {
            return Ok(None);
        }
        builder.write().map(Some).map_err(local)
    }

    /// Streams the regular file at `path` into a blob, refused first when its size is over
    /// the limit, and read no further than the size it had then.
    fn blob(&self, path: &Path, rel: &Path, size: u64) -> Result<Oid, GitError> {
        const OP: &str = "commit";
        if self.limit.0 > 0 && size > self.limit.0 {
            return Err(GitError::TooLarge {
                op: OP,
                path: rel.display().to_string(),
                size,
                limit: self.limit.0,
            });
        }
        let io = |e| GitError::io(OP, path, e);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        let mut writer = self
            .repo
            .blob_writer(None)
            .map_err(|e| GitError::local(OP, e))?;
        std::io::copy(&mut file.take(size), &mut writer).map_err(io)?;
        writer.commit().map_err(|e| GitError::local(OP, e))
    }

    /// Whether the repository's ignore rules leave `rel` out.
    fn ignored(&self, rel: &Path, is_dir: bool) -> Result<bool, GitError> {
        let mut query = PathBuf::from(rel);
        if is_dir {
            // A trailing slash lets directory-only patterns (`build/`) match.
            query.as_mut_os_string().push("/");
        }
        self.repo
            .is_path_ignored(&query)
            .map_err(|e| GitError::local("commit", e))
    }
}
