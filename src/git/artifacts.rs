//! What a dependency install leaves in a checkout: the new untracked entries it made (kept out
//! of git by anchored excludes) and the tracked files it rewrote (put back), so none of it
//! reaches the branch.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use git2::{build::CheckoutBuilder, Status, StatusOptions};

use super::{open, GitError};

/// What the work tree holds beside HEAD's tree, from one status walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeState {
    /// Untracked entries relative to the root, an untracked directory as one `dir/` entry
    /// (like `git ls-files --others --exclude-standard --directory --no-empty-directory`).
    pub untracked: Vec<String>,
    /// Tracked files whose work-tree copy differs from the index (modified, deleted,
    /// retyped); not the conflicted ones of a merge in progress.
    pub changed: Vec<String>,
}

pub fn tree_state(dir: &Path) -> Result<TreeState, GitError> {
    const OP: &str = "status";
    let repo = open(OP, dir)?;
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(|e| GitError::local(OP, e))?;
    let changed_flags = Status::WT_MODIFIED | Status::WT_DELETED | Status::WT_TYPECHANGE;
    let mut state = TreeState::default();
    for entry in statuses.iter() {
        let status = entry.status();
        let path = || String::from_utf8_lossy(entry.path_bytes()).into_owned();
        if status.contains(Status::WT_NEW) {
            state.untracked.push(path());
        } else if status.intersects(changed_flags) && !status.contains(Status::CONFLICTED) {
            state.changed.push(path());
        }
    }
    state.untracked.sort();
    state.changed.sort();
    Ok(state)
}

/// After an install that started from `before`: keeps the entries it created out of git
/// ([`exclude_entries`]) and puts back the tracked files it changed ([`restore_tracked`]);
/// returns both lists.
pub fn set_aside(dir: &Path, before: &TreeState) -> Result<(Vec<String>, Vec<String>), GitError> {
    let after = tree_state(dir)?;
    let added: Vec<String> = after
        .untracked
        .into_iter()
        .filter(|e| !before.untracked.contains(e))
        .collect();
    let rewritten: Vec<String> = after
        .changed
        .into_iter()
        .filter(|p| !before.changed.contains(p))
        .collect();
    exclude_entries(dir, &added)?;
    restore_tracked(dir, &rewritten)?;
    Ok((added, rewritten))
}

/// Puts `paths` (tracked files) back as the index has them: HEAD's version before any work,
/// the merge's during a merge in progress.
fn restore_tracked(dir: &Path, paths: &[String]) -> Result<(), GitError> {
    const OP: &str = "checkout";
    if paths.is_empty() {
        return Ok(());
    }
    let repo = open(OP, dir)?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    for path in paths {
        checkout.path(path);
    }
    repo.checkout_index(None, Some(&mut checkout))
        .map_err(|e| GitError::local(OP, e))
}

/// Keeps each of `entries` (as [`untracked_entries`] lists them) out of git at its own place
/// only: anchored to the root, pattern characters escaped, so an install's top-level
/// `node_modules/` does not also hide a `node_modules` the agent adds deeper down on purpose.
fn exclude_entries(dir: &Path, entries: &[String]) -> Result<(), GitError> {
    const OP: &str = "exclude";
    if entries.is_empty() {
        return Ok(());
    }
    let repo = open(OP, dir)?;
    let info = repo.path().join("info");
    let file = info.join("exclude");
    std::fs::create_dir_all(&info).map_err(|e| GitError::io(OP, &info, e))?;
    let mut text = String::from("\n");
    for entry in entries {
        text.push_str(&anchored_pattern(entry));
        text.push('\n');
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .map_err(|e| GitError::io(OP, &file, e))?;
    out.write_all(text.as_bytes())
        .map_err(|e| GitError::io(OP, &file, e))
}

/// `/path` with `\`, `*`, `?`, `[`, `]` escaped; a trailing space is escaped too, since git
/// drops it otherwise.
fn anchored_pattern(entry: &str) -> String {
    let mut out = String::from("/");
    for c in entry.chars() {
        if matches!(c, '\\' | '*' | '?' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(tmp.path()).unwrap();
        for (path, content) in files {
            let p = tmp.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
            .unwrap();
        tmp
    }

    #[test]
    fn an_installs_new_directories_and_files_are_excluded_at_their_own_place_only() {
        let tmp = repo_with(&[("package.json", "{}"), ("svc/a.txt", "a")]);
        let d = tmp.path();
        std::fs::create_dir_all(d.join("node_modules/left-pad")).unwrap();
        std::fs::write(d.join("node_modules/left-pad/index.js"), "x").unwrap();
        std::fs::write(d.join("weird[1]*.log"), "x").unwrap();
        let (added, _) = set_aside(d, &TreeState::default()).unwrap();
        assert_eq!(added, vec!["node_modules/", "weird[1]*.log"]);
        assert!(tree_state(d).unwrap().untracked.is_empty());
        // Deeper down, the same name is the agent's to add.
        std::fs::create_dir_all(d.join("svc/node_modules")).unwrap();
        std::fs::write(d.join("svc/node_modules/keep.js"), "x").unwrap();
        assert_eq!(tree_state(d).unwrap().untracked, vec!["svc/node_modules/"]);
    }

    #[test]
    fn tracked_files_an_install_rewrote_are_put_back_and_earlier_changes_kept() {
        let tmp = repo_with(&[("package-lock.json", "v1"), ("src/a.js", "a")]);
        let d = tmp.path();
        // Changed before the install (a merge in progress): kept as it is.
        std::fs::write(d.join("src/a.js"), "merged").unwrap();
        let before = tree_state(d).unwrap();
        assert_eq!(before.changed, vec!["src/a.js"]);
        std::fs::write(d.join("package-lock.json"), "v2").unwrap();
        let (_, restored) = set_aside(d, &before).unwrap();
        assert_eq!(restored, vec!["package-lock.json"]);
        assert_eq!(
            std::fs::read_to_string(d.join("package-lock.json")).unwrap(),
            "v1"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("src/a.js")).unwrap(),
            "merged"
        );
        assert_eq!(tree_state(d).unwrap().changed, vec!["src/a.js"]);
    }
}
