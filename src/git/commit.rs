//! The safety-net commit after a successful agent run, the untracked-leftover listing, and
//! `.git/info/exclude`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use git2::{Status, StatusOptions};

use super::limits::{check_work_tree, FileLimit};
use super::{open, GitError, Identity};

/// `git add -u` over the whole repository, then a commit when the index differs from HEAD.
///
/// Only tracked files are staged (edits and deletions); new files are never added, so scratch
/// files the agent left behind cannot reach the branch (seed-behaviour 4.1 step 11.2). Returns
/// whether a commit was made. A tracked file over `limit`, or one that became a FIFO or device,
/// is refused before anything is read.
pub fn commit_tracked_edits(
    dir: &Path,
    message: &str,
    id: &Identity,
    limit: FileLimit,
) -> Result<bool, GitError> {
    const OP: &str = "commit";
    let repo = open(OP, dir)?;
    let local = |e| GitError::local(OP, e);
    check_work_tree(&repo, limit, OP)?;

    let mut index = repo.index().map_err(local)?;
    index.update_all(["*"], None).map_err(local)?;
    index.write().map_err(local)?;
    let tree_id = index.write_tree().map_err(local)?;

    let parent = match repo.head() {
        Ok(head) => Some(head.peel_to_commit().map_err(local)?),
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => None,
        Err(e) => return Err(local(e)),
    };
    if parent.as_ref().map(|p| p.tree_id()) == Some(tree_id) {
        return Ok(false);
    }
    if parent.is_none() && index.is_empty() {
        return Ok(false);
    }
    let tree = repo.find_tree(tree_id).map_err(local)?;
    let signature = id.signature()?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )
    .map_err(local)?;
    Ok(true)
}

/// Files neither tracked nor ignored, relative to the repository root, like
/// `git ls-files --others --exclude-standard` (files, not directories).
pub fn untracked_files(dir: &Path) -> Result<Vec<String>, GitError> {
    const OP: &str = "status";
    let repo = open(OP, dir)?;
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(|e| GitError::local(OP, e))?;
    let mut files: Vec<String> = statuses
        .iter()
        .filter(|entry| entry.status().contains(Status::WT_NEW))
        .map(|entry| String::from_utf8_lossy(entry.path_bytes()).into_owned())
        .collect();
    files.sort();
    Ok(files)
}

/// Appends `pattern` to `.git/info/exclude` (once), so a file the worker owns in the work tree
/// (the follow-up sentinel) is neither listed as a leftover nor committable by accident.
pub fn exclude_path(dir: &Path, pattern: &str) -> Result<(), GitError> {
    const OP: &str = "exclude";
    let repo = open(OP, dir)?;
    let info = repo.path().join("info");
    let file = info.join("exclude");
    std::fs::create_dir_all(&info).map_err(|e| GitError::io(OP, &info, e))?;
    let existing = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(GitError::io(OP, &file, e)),
    };
    if existing.lines().any(|line| line.trim() == pattern) {
        return Ok(());
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .map_err(|e| GitError::io(OP, &file, e))?;
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(out, "{separator}{pattern}").map_err(|e| GitError::io(OP, &file, e))
}
