//! Where a job's skills go (seed-later 10.1): Claude Code with its own config home reads
//! `<config home>/skills/<name>/SKILL.md` and the skill's resources beside it; every other
//! agent gets the resources only, at `<cwd>/.cat-context/skill/<name>/<relPath>` (its
//! instructions are already in the prompt the backend wrote).
//!
//! Every write walks the path one component at a time and never follows a symlink: a checkout
//! may hold `.cat-context/skill/...` as links to anywhere on the host. A component that is
//! not a real directory skips that file. Skills are best-effort, as in the seed: a file that
//! cannot be written is logged and skipped, never failing the job.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::job::{AgentJob, Harness, HarnessAuth, Skill};

/// The skills directory in Claude Code's config home.
const CLAUDE_SKILLS_DIR: &str = "skills";
/// Each skill's instructions file there.
const SKILL_FILE: &str = "SKILL.md";
/// The resource directory in the agent's cwd (inside the git-excluded `.cat-context/`).
pub const CHECKOUT_SKILLS_DIR: [&str; 2] = [".cat-context", "skill"];

/// `SKILL.md`: front matter with the name and the one-line description as JSON strings (so
/// no value can end the front matter), a blank line, the instructions.
pub fn skill_md(skill: &Skill) -> String {
    let one_line = skill
        .description
        .replace("\r\n", " ")
        .replace(['\r', '\n'], " ");
    let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    format!(
        "---\nname: {}\ndescription: {}\n---\n\n{}\n",
        quote(&skill.name),
        quote(&one_line),
        skill.instructions
    )
}

/// Whether `job`'s skill resources go into the checkout: every agent but Claude Code with the
/// job's own credentials (which reads them from its config home).
pub fn resources_in_checkout(job: &AgentJob) -> bool {
    match &job.auth {
        HarnessAuth::Subscription {
            harness: Harness::ClaudeCode,
            ambient_auth,
            ..
        } => *ambient_auth,
        _ => true,
    }
}

/// Writes every skill into Claude Code's config `home`: resources, then `SKILL.md` (so a
/// resource named like it cannot replace the instructions). Returns the files written.
pub fn write_claude_skills(home: &Path, skills: &[Skill]) -> usize {
    let mut written = 0;
    for skill in skills {
        let base = [CLAUDE_SKILLS_DIR, skill.name.as_str()];
        written += write_resources(home, &base, skill);
        let file: Vec<&str> = base.iter().copied().chain([SKILL_FILE]).collect();
        written += usize::from(write_logged(home, &file, skill_md(skill).as_bytes()));
    }
    written
}

/// Writes every skill's resources under `<work_dir>/.cat-context/skill/<name>/`. Returns the
/// files written (0 when no skill has resources: nothing is created then).
pub fn write_checkout_skill_resources(work_dir: &Path, skills: &[Skill]) -> usize {
    skills
        .iter()
        .map(|skill| {
            let base = [
                CHECKOUT_SKILLS_DIR[0],
                CHECKOUT_SKILLS_DIR[1],
                skill.name.as_str(),
            ];
            write_resources(work_dir, &base, skill)
        })
        .sum()
}

fn write_resources(root: &Path, base: &[&str], skill: &Skill) -> usize {
    let mut written = 0;
    for resource in &skill.resources {
        let path: Vec<&str> = base.iter().copied().chain(resource.segments()).collect();
        written += usize::from(write_logged(root, &path, resource.content.as_bytes()));
    }
    written
}

fn write_logged(root: &Path, components: &[&str], contents: &[u8]) -> bool {
    match write_beneath(root, components, contents) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(file = %components.join("/"), error = %e, "skipping a skill file");
            false
        }
    }
}

/// Writes `root/<components...>` (0600; missing directories made 0700) without following a
/// symlink anywhere below `root`: each directory on the way must be a real directory or is
/// created, and the file is replaced (a link there is removed, not followed) and opened with
/// `O_NOFOLLOW | O_CREAT | O_EXCL`. The components are sanitised names: no `..`, no `/`.
pub(crate) fn write_beneath(root: &Path, components: &[&str], contents: &[u8]) -> io::Result<()> {
    let Some((file, dirs)) = components.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let mut dir = root.to_path_buf();
    for component in dirs {
        dir.push(component);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => return Err(not_a_directory(component)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new().mode(0o700).create(&dir)?
            }
            Err(e) => return Err(e),
        }
    }
    let path = dir.join(file);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{file} is a directory"),
            ))
        }
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    out.write_all(contents)
}

fn not_a_directory(component: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{component} is a symlink or not a directory"),
    )
}

#[cfg(test)]
#[path = "skills_tests.rs"]
mod tests;
