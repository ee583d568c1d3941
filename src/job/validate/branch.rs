//! Branch names, checked when the job is read: the worker hands them to git (clone, checkout,
//! push, the PR's head and base), and a name git refuses would fail only at the push, after the
//! agent ran, its work lost. Not a seed rule.

/// Whether `git branch <name>` would take `name`: git's ref-name rules for
/// `refs/heads/<name>` (no `..`, `//`, `@{`, control characters, space, `~^:?*[\`, no component
/// starting with `.` or ending in `.lock`, no trailing `/` or `.`), plus what `git branch`
/// refuses on top: `@` alone (HEAD's alias), `HEAD`, and a leading `-` (read as an option).
pub(super) fn is_valid_branch_name(name: &str) -> bool {
    if name == "@" || name == "HEAD" || name.starts_with('-') {
        return false;
    }
    // git refuses DEL too; libgit2 does not (and a NUL never reaches its C string).
    if name.chars().any(|c| c.is_ascii_control()) {
        return false;
    }
    git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
}
