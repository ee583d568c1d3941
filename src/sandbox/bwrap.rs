//! The bubblewrap command line for one agent.
//!
//! Mount operations apply in order: the host's root read-only, a private `/dev`, `/proc` and
//! `/tmp`, empty file systems over the hidden directories (the work dir first), the shared
//! caches bound writable on top, the hidden directories inside those caches covered again,
//! then the job's own directories bound writable, the hidden files replaced by empty ones, and
//! last the hidden directories made read-only (not what is mounted inside them), so an agent
//! cannot even leave files where another job's checkout is.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Sandbox;

pub(super) fn args(sandbox: &Sandbox, cwd: &Path, own: &[PathBuf]) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(&[
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        // The namespace's init (bubblewrap) dies with the worker, and every process in the
        // namespace with it.
        "--die-with-parent",
        // No TIOCSTI into a terminal the worker might hold.
        "--new-session",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]);
    for dir in &sandbox.hidden_dirs {
        a.push("--tmpfs".into());
        a.push(dir.into());
    }
    for dir in &sandbox.writable {
        a.push("--bind".into());
        a.push(dir.into());
        a.push(dir.into());
    }
    // A hidden path inside a shared cache bound writable (the work dir in a cache, a config
    // file in one) was uncovered by that bind: hidden again on top of it, before the job's
    // own directories (inside the work dir) are bound, so they stay visible.
    let inside_writable = |p: &PathBuf| sandbox.writable.iter().any(|b| p.starts_with(b) && p != b);
    for dir in sandbox.hidden_dirs.iter().filter(|d| inside_writable(d)) {
        a.push("--tmpfs".into());
        a.push(dir.into());
    }
    for dir in own {
        a.push("--bind".into());
        a.push(dir.into());
        a.push(dir.into());
    }
    for file in &sandbox.hidden_files {
        a.push("--ro-bind".into());
        a.push("/dev/null".into());
        a.push(file.into());
    }
    for dir in &sandbox.hidden_dirs {
        a.push("--remount-ro".into());
        a.push(dir.into());
    }
    a.push("--chdir".into());
    a.push(cwd.into());
    a
}
