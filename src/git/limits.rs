//! The per-file size limit (`git.max_file_bytes`).
//!
//! libgit2 holds a whole blob in memory to pack it, and reads a whole file to filter it, so an
//! agent that writes a 2 GB file would make the worker's memory follow it. Both checks here
//! look at metadata only: the work tree's `lstat` sizes before the safety-net commit stages
//! anything, and the object headers of the blobs new commits add before any push packs them.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::{Delta, FileMode, ObjectType, Oid, Repository};

use super::{open, GitError};

/// The largest file the worker lets into a commit or a push; `0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit(pub u64);

impl FileLimit {
    fn exceeded_by(self, size: u64) -> bool {
        self.0 > 0 && size > self.0
    }
}

/// Refuses the work tree when a tracked path now holds a file over the limit, or something
/// git cannot read safely (a FIFO would block the reader forever).
///
/// A big file that is unchanged since checkout (same size and modification time as its index
/// entry, or failing that the same content hash, computed by streaming) is not new work and
/// passes.
pub(crate) fn check_work_tree(
    repo: &Repository,
    limit: FileLimit,
    op: &'static str,
) -> Result<(), GitError> {
    let workdir = repo.workdir().ok_or_else(|| GitError::Git {
        op,
        message: "the repository has no work tree".to_owned(),
    })?;
    let index = repo.index().map_err(|e| GitError::local(op, e))?;
    for entry in index.iter() {
        let rel = String::from_utf8_lossy(&entry.path).into_owned();
        let Ok(meta) = std::fs::symlink_metadata(workdir.join(&rel)) else {
            continue; // deleted: staging a deletion reads nothing
        };
        let kind = meta.file_type();
        if kind.is_symlink() || kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(GitError::Git {
                op,
                message: format!(
                    "'{rel}' is not a regular file (a FIFO, socket or device): refusing to read it"
                ),
            });
        }
        if !limit.exceeded_by(meta.len()) {
            continue;
        }
        // The index keeps the size truncated to 32 bits, as git does. Another size is another
        // file; only a same-sized file with another time is hashed (streamed) to tell.
        let same_size = u64::from(entry.file_size) == meta.len() & 0xffff_ffff;
        let same_time = i64::from(entry.mtime.seconds()) == meta.mtime()
            && i64::from(entry.mtime.nanoseconds()) == meta.mtime_nsec();
        let unchanged = same_size
            && (same_time
                || Oid::hash_file(ObjectType::Blob, workdir.join(&rel)).ok() == Some(entry.id));
        if !unchanged {
            return Err(too_large(op, rel, meta.len(), limit));
        }
    }
    Ok(())
}

/// Refuses a push whose new commits (reachable from `head`, not from any of `known` nor from a
/// remote-tracking ref, which the remote already has) add a blob over the limit. Sizes come
/// from object headers; no blob is read.
///
/// A blob counts as added by a commit when it is new against every parent, so a merge does not
/// count what one side already had (a resume merging a base that holds a big asset).
pub fn check_new_blobs(
    dir: &Path,
    head: &str,
    known: &[String],
    limit: FileLimit,
) -> Result<(), GitError> {
    const OP: &str = "push";
    if limit.0 == 0 {
        return Ok(());
    }
    let local = |e| GitError::local(OP, e);
    let repo = open(OP, dir)?;
    let odb = repo.odb().map_err(local)?;
    let mut walk = repo.revwalk().map_err(local)?;
    walk.push(Oid::from_str(head).map_err(local)?)
        .map_err(local)?;
    // A resume merges the base in: the base's own commits are on the remote already.
    walk.hide_glob("refs/remotes/*").map_err(local)?;
    for k in known {
        // A tip the shallow history does not hold has nothing to hide.
        if let Ok(oid) = Oid::from_str(k) {
            let _ = walk.hide(oid);
        }
    }
    for oid in walk {
        let commit = repo.find_commit(oid.map_err(local)?).map_err(local)?;
        for (blob, path) in added_blobs(&repo, &commit).map_err(local)? {
            let (size, _) = odb.read_header(blob).map_err(local)?;
            if limit.exceeded_by(size as u64) {
                return Err(too_large(OP, path, size as u64, limit));
            }
        }
    }
    Ok(())
}

/// Blobs `commit` adds or changes against every one of its parents, with a path each.
fn added_blobs(
    repo: &Repository,
    commit: &git2::Commit<'_>,
) -> Result<HashMap<Oid, String>, git2::Error> {
    let tree = commit.tree()?;
    let parents: Vec<git2::Tree<'_>> = commit
        .parents()
        .map(|p| p.tree())
        .collect::<Result<_, _>>()?;
    let mut common: Option<HashMap<Oid, String>> = None;
    let sides: Vec<Option<&git2::Tree<'_>>> = if parents.is_empty() {
        vec![None]
    } else {
        parents.iter().map(Some).collect()
    };
    for parent in sides {
        let diff = repo.diff_tree_to_tree(parent, Some(&tree), None)?;
        let mut new = HashMap::new();
        for delta in diff.deltas() {
            let file = delta.new_file();
            let is_blob = matches!(
                file.mode(),
                FileMode::Blob | FileMode::BlobExecutable | FileMode::BlobGroupWritable
            );
            let changed = matches!(
                delta.status(),
                Delta::Added | Delta::Modified | Delta::Typechange | Delta::Copied | Delta::Renamed
            );
            if is_blob && changed {
                let path = file
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                new.insert(file.id(), path);
            }
        }
        common = Some(match common {
            None => new,
            Some(seen) => seen
                .into_iter()
                .filter(|(oid, _)| new.contains_key(oid))
                .collect(),
        });
    }
    Ok(common.unwrap_or_default())
}

fn too_large(op: &'static str, path: String, size: u64, limit: FileLimit) -> GitError {
    GitError::TooLarge {
        op,
        path,
        size,
        limit: limit.0,
    }
}
