//! Conflict markers: the `git diff` of the conflicted files the agent is shown, and the check
//! that no file of a completed merge still holds a marker the agent left behind.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use git2::{ErrorCode, ObjectType, Odb, Oid, Patch, Repository, Tree};

use super::limits::FileLimit;
use super::{open, GitError};

/// The longest conflict diff put into the prompt, in characters (seed 4.3 step 6.3).
pub const CONFLICT_DIFF_MAX_CHARS: usize = 24_000;

/// Appended to a diff cut at [`CONFLICT_DIFF_MAX_CHARS`], word for word the seed's.
const TRUNCATED: &str = "\n\n[diff truncated at 24000 characters \u{2014} open the files directly \
                         to see the remaining conflicts]";

/// The most of one file read for the diff: the diff is cut at 24,000 characters anyway, and
/// the file is the repository's, so its size is a stranger's choice.
const DIFF_FILE_MAX_BYTES: u64 = 1 << 20;

/// The diff of each conflicted path between the branch's tip and the work tree (which holds
/// the markers), like `git diff -- <paths>`, cut at 24,000 characters with the seed's note.
/// `""` when there are no paths.
pub fn conflict_diff(dir: &Path, paths: &[String]) -> Result<String, GitError> {
    const OP: &str = "diff";
    let local = |e| GitError::local(OP, e);
    let repo = open(OP, dir)?;
    let workdir = repo.workdir().ok_or_else(|| GitError::Git {
        op: OP,
        message: "the repository has no work tree".to_owned(),
    })?;
    let odb = repo.odb().map_err(local)?;
    let head = repo.head().and_then(|h| h.peel_to_tree()).map_err(local)?;
    let mut out = String::new();
    for path in paths {
        if out.chars().count() > CONFLICT_DIFF_MAX_CHARS {
            break;
        }
        let rel = Path::new(path);
        let ours = match blob_at(&repo, &odb, &head, path, DIFF_FILE_MAX_BYTES).map_err(local)? {
            Side::Text(bytes) | Side::Binary(bytes) => Some(bytes),
            Side::Absent => Some(Vec::new()),
            Side::TooLarge => None,
        };
        let theirs = work_file(&workdir.join(rel));
        let (Some(ours), Some(theirs)) = (ours, theirs) else {
            out.push_str(&format!(
                "diff --git a/{path} b/{path}\n(not shown: not a regular file or over {DIFF_FILE_MAX_BYTES} bytes)\n"
            ));
            continue;
        };
        let mut patch =
            Patch::from_buffers(&ours, Some(rel), &theirs, Some(rel), None).map_err(local)?;
        let text = patch.to_buf().map_err(local)?;
        out.push_str(&String::from_utf8_lossy(&text));
    }
    Ok(cap_diff(out))
}

/// Cuts `diff` at [`CONFLICT_DIFF_MAX_CHARS`] characters and appends the seed's note.
fn cap_diff(diff: String) -> String {
    match diff.char_indices().nth(CONFLICT_DIFF_MAX_CHARS) {
        None => diff,
        Some((cut, _)) => format!("{}{TRUNCATED}", &diff[..cut]),
    }
}

/// A work-tree file's bytes, read as a regular file only (never through a symlink), or `None`
/// when it is something else or too large to show. A missing file is empty.
fn work_file(path: &Path) -> Option<Vec<u8>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(_) => return None,
    };
    if !meta.file_type().is_file() || meta.len() > DIFF_FILE_MAX_BYTES {
        return None;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut bytes = Vec::new();
    file.take(DIFF_FILE_MAX_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// What a tree holds at a path.
enum Side {
    Absent,
    Text(Vec<u8>),
    Binary(Vec<u8>),
    /// Over the size given: not read.
    TooLarge,
}

/// The blob at `path` in `tree`, read only when its header says it is at most `max` bytes
/// (`0`: any size). A submodule or a directory there counts as absent.
fn blob_at(
    repo: &Repository,
    odb: &Odb<'_>,
    tree: &Tree<'_>,
    path: &str,
    max: u64,
) -> Result<Side, git2::Error> {
    let entry = match tree.get_path(Path::new(path)) {
        Ok(entry) => entry,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(Side::Absent),
        Err(e) => return Err(e),
    };
    if entry.kind() != Some(ObjectType::Blob) {
        return Ok(Side::Absent);
    }
    let (size, _) = odb.read_header(entry.id())?;
    if max > 0 && size as u64 > max {
        return Ok(Side::TooLarge);
    }
    let blob = repo.find_blob(entry.id())?;
    let bytes = blob.content().to_vec();
    Ok(if blob.is_binary() {
        Side::Binary(bytes)
    } else {
        Side::Text(bytes)
    })
}

/// The `paths` whose content in `tree` still holds a conflict marker line that the same file
/// had on none of `sides` (the two commits merged). A file that already held such a line
/// before the merge (a test fixture, a setext heading underlined with seven `=`) is not
/// refused for it. Binary files and files over `limit` are not read (the push refuses the
/// latter anyway).
pub(crate) fn marked_paths(
    repo: &Repository,
    tree: &Tree<'_>,
    paths: &[String],
    sides: &[Oid],
    limit: FileLimit,
) -> Result<Vec<String>, git2::Error> {
    let odb = repo.odb()?;
    let side_trees = sides
        .iter()
        .map(|oid| repo.find_commit(*oid).and_then(|c| c.tree()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut marked = Vec::new();
    for path in paths {
        let Side::Text(content) = blob_at(repo, &odb, tree, path, limit.0)? else {
            continue;
        };
        let left: Vec<&[u8]> = marker_lines(&content).collect();
        if left.is_empty() {
            continue;
        }
        let mut before: HashSet<Vec<u8>> = HashSet::new();
        for side in &side_trees {
            if let Side::Text(old) = blob_at(repo, &odb, side, path, limit.0)? {
                before.extend(marker_lines(&old).map(<[u8]>::to_vec));
            }
        }
        if left.iter().any(|line| !before.contains(*line)) {
            marked.push(path.clone());
        }
    }
    Ok(marked)
}

fn marker_lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content.split(|b| *b == b'\n').filter(|l| is_marker(l))
}

/// A conflict marker line as git itself detects one (`git diff --check`): seven `<`, `|` or
/// `>` followed by a space or the end of the line, or exactly seven `=` with nothing but
/// whitespace after them.
fn is_marker(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(&c) = line.first() else {
        return false;
    };
    if !matches!(c, b'<' | b'|' | b'=' | b'>')
        || line.len() < 7
        || line[..7].iter().any(|b| *b != c)
    {
        return false;
    }
    match line.get(7) {
        None => true,
        Some(b' ' | b'\t') if c == b'=' => line[7..].iter().all(u8::is_ascii_whitespace),
        Some(b' ' | b'\t') => true,
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_are_the_ones_git_detects() {
        for marker in [
            "<<<<<<< HEAD",
            "<<<<<<<",
            "=======",
            "=======  ",
            ">>>>>>> origin/main",
            "||||||| base",
            ">>>>>>> theirs\r",
        ] {
            assert!(is_marker(marker.as_bytes()), "{marker:?}");
        }
        for text in [
            "",
            "<<<<<< six",
            "========",
            "======= text",
            "<<<<<<<<",
            "a <<<<<<< b",
            "  =======",
            "->>>>>>> x",
        ] {
            assert!(!is_marker(text.as_bytes()), "{text:?}");
        }
    }

    /// A commit of `files` (path, content) with no parent, in `repo`.
    fn commit(repo: &Repository, files: &[(&str, &str)]) -> Oid {
        let mut builder = repo.treebuilder(None).unwrap();
        for (path, content) in files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            builder.insert(path, blob, 0o100644).unwrap();
        }
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap()
    }

    #[test]
    fn only_marker_lines_that_no_side_of_the_merge_had_make_a_file_unresolved() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let heading = "Title\n=======\n";
        let ours = commit(&repo, &[("doc.md", heading), ("code.txt", "a\n")]);
        let theirs = commit(&repo, &[("doc.md", heading), ("code.txt", "b\n")]);
        let paths = vec!["doc.md".to_owned(), "code.txt".to_owned()];
        let staged = |files: &[(&str, &str)]| {
            let oid = commit(&repo, files);
            repo.find_commit(oid).unwrap().tree().unwrap()
        };
        let marked = |tree: &Tree<'_>| {
            marked_paths(&repo, tree, &paths, &[ours, theirs], FileLimit(0)).unwrap()
        };

        // The heading both sides had is content, not a leftover.
        let clean = staged(&[("doc.md", "Title\n=======\nmore\n"), ("code.txt", "ab\n")]);
        assert!(marked(&clean).is_empty());
        // A region left as the merge wrote it.
        let left = staged(&[
            ("doc.md", heading),
            ("code.txt", "<<<<<<< HEAD\na\n=======\nb\n>>>>>>> main\n"),
        ]);
        assert_eq!(marked(&left), ["code.txt"]);
        // A resolution by deletion has nothing left to check.
        let deleted = staged(&[("doc.md", heading)]);
        assert!(marked(&deleted).is_empty());
    }

    #[test]
    fn a_long_diff_is_cut_at_24000_characters_with_the_seeds_note() {
        let short = "é".repeat(CONFLICT_DIFF_MAX_CHARS);
        assert_eq!(cap_diff(short.clone()), short);
        let long = "é".repeat(CONFLICT_DIFF_MAX_CHARS + 5);
        let capped = cap_diff(long);
        assert_eq!(
            capped,
            format!(
                "{}\n\n[diff truncated at 24000 characters \u{2014} open the files directly to see the remaining conflicts]",
                "é".repeat(CONFLICT_DIFF_MAX_CHARS)
            )
        );
    }
}
