//! Fake agents: small `/bin/sh` scripts that behave like the `pi` CLI (they read the prompt on
//! stdin, print Pi's JSON event stream, edit files, commit with the git CLI, wait, crash).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Shell functions every fake agent can use.
const PRELUDE: &str = r#"#!/bin/sh
set -eu
PROMPT=$(cat)
# One completed tool call, as Pi reports it.
tool() { printf '{"type":"tool_execution_end","toolName":"%s","isError":false}\n' "$1"; }
# Pi's final event with the run's transcript; $1 is the final answer.
finish() {
  printf '{"type":"agent_end","messages":[{"role":"user","content":[{"type":"text","text":"task"}]},{"role":"assistant","content":[{"type":"toolCall","name":"bash"},{"type":"text","text":"%s"}],"stopReason":"stop","usage":{"input":10,"output":5,"cacheRead":0,"cacheWrite":0}}],"stopReason":"stop"}\n' "$1"
}
# Blocks until the test creates the file $1 (bounded, so a failed test cannot hang forever; the
# bound leaves room for a loaded machine).
wait_for() { i=0; while [ ! -e "$1" ]; do i=$((i+1)); [ $i -lt 2400 ] || exit 3; sleep 0.05; done; }
commit_all() { git add -A && git commit -q -m "$1"; }
"#;

/// Writes an executable fake agent whose behaviour is `body` (shell, after the prelude).
///
/// `dir` is opened to everyone: where the tests run as root, the sandbox runs agents as an
/// unprivileged user, which must reach the script and leave its marker files beside it
/// ([`super::worker::test_config`] makes `dir` writable inside the sandbox).
pub fn write_agent(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod dir");
    let path = dir.join(name);
    std::fs::write(&path, format!("{PRELUDE}\n{body}\n")).expect("write agent script");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path
}

/// A configuration file (in `dir`) for the `run` command: `dir`, where the fake agent lives
/// and leaves its marker files, is writable inside the sandbox.
pub fn agent_dir_config(dir: &Path) -> PathBuf {
    let path = dir.join("agent-dir.toml");
    let text = format!("[sandbox]\nwritable = [{:?}]\n", dir.display().to_string());
    std::fs::write(&path, text).expect("write the config");
    path
}
