//! The repository's own pull / merge request template (seed-later 3.4), found where GitHub and
//! GitLab look for one, so the agent can fill it in: neither host applies a template to a PR
//! opened through the API. A template is read only as a regular file inside the checkout.

use std::io::Read;
use std::path::Path;

use crate::job::Provider;

/// A template longer than this (in characters, trimmed) is named, not inlined in the prompt.
pub const INLINE_CHARS: usize = 8_000;
/// The most of a template file that is read.
const READ_BYTES: u64 = 64 * 1024;
const STEM: &str = "pull_request_template";
const EXTENSIONS: [&str; 3] = ["md", "markdown", "txt"];

/// A template found in the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrTemplate {
    /// Relative to the checkout root, with `/`.
    pub path: String,
    /// Its trimmed length in characters.
    pub chars: usize,
    /// The trimmed text, when it is short enough to inline.
    pub text: Option<String>,
}

enum Place {
    /// A file named `pull_request_template[.ext]` in this directory.
    Single(&'static str),
    /// The one template of this directory (`default.*`, or a lone file).
    Directory(&'static str),
}

const GITHUB: [Place; 4] = [
    Place::Single(".github"),
    Place::Single(""),
    Place::Single("docs"),
    Place::Directory(".github/PULL_REQUEST_TEMPLATE"),
];
const GITLAB: [Place; 1] = [Place::Directory(".gitlab/merge_request_templates")];

/// The first usable template at the places `provider` looks first (GitLab's first for GitLab,
/// GitHub's first otherwise), then the other host's. Never fails: what cannot be read, leads
/// out of the checkout, is not a regular file or is blank is passed over.
pub fn discover_template(root: &Path, provider: Provider) -> Option<PrTemplate> {
    let places: Vec<&Place> = match provider {
        Provider::Gitlab => GITLAB.iter().chain(GITHUB.iter()).collect(),
        Provider::Github => GITHUB.iter().chain(GITLAB.iter()).collect(),
    };
    let real_root = std::fs::canonicalize(root).ok()?;
    places.into_iter().find_map(|place| {
        let (dir, candidates) = match place {
            Place::Single(dir) => (*dir, single_candidates(&root.join(dir))),
            Place::Directory(dir) => (*dir, directory_pick(&root.join(dir))),
        };
        candidates.into_iter().find_map(|name| {
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            read_template(&real_root, &root.join(&rel), rel)
        })
    })
}

/// Sorted entries of `dir` (not following a symlinked `dir` out is left to the read).
fn entries(dir: &Path) -> Vec<(String, bool)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, bool)> = read
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_dir = e.file_type().ok()?.is_dir();
            Some((name, is_dir))
        })
        .collect();
    out.sort();
    out
}

fn split_ext(name: &str) -> (String, Option<String>) {
    let lower = name.to_lowercase();
    match lower.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), Some(ext.to_owned())),
        _ => (lower, None),
    }
}

fn single_candidates(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|(name, is_dir)| {
            let (stem, ext) = split_ext(name);
            !is_dir && stem == STEM && ext.is_none_or(|e| EXTENSIONS.contains(&e.as_str()))
        })
        .map(|(name, _)| name)
        .collect()
}

/// `default.*` when there is one, else the only template, else none: with several, a human
/// picks per PR.
fn directory_pick(dir: &Path) -> Vec<String> {
    let files: Vec<String> = entries(dir)
        .into_iter()
        .filter(|(name, is_dir)| {
            !is_dir
                && split_ext(name)
                    .1
                    .is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
        })
        .map(|(name, _)| name)
        .collect();
    if let Some(default) = files.iter().find(|n| split_ext(n).0 == "default") {
        return vec![default.clone()];
    }
    match files.as_slice() {
        [only] => vec![only.clone()],
        _ => Vec::new(),
    }
}

fn read_template(real_root: &Path, path: &Path, rel: String) -> Option<PrTemplate> {
    let real = std::fs::canonicalize(path).ok()?;
    if !real.starts_with(real_root) {
        tracing::warn!(path = %rel, "pr template: refused, it leads out of the checkout");
        return None;
    }
    if !std::fs::metadata(&real).ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&real)
        .ok()?
        .take(READ_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let chars = text.chars().count();
    Some(PrTemplate {
        path: rel,
        chars,
        text: (chars <= INLINE_CHARS).then(|| text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn each_hosts_places_are_tried_in_its_own_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "docs/PULL_REQUEST_TEMPLATE.md", "docs one");
        write(
            root,
            ".gitlab/merge_request_templates/Default.md",
            "gitlab one",
        );
        let gh = discover_template(root, Provider::Github).unwrap();
        assert_eq!(
            (gh.path.as_str(), gh.text.as_deref()),
            ("docs/PULL_REQUEST_TEMPLATE.md", Some("docs one"))
        );
        let gl = discover_template(root, Provider::Gitlab).unwrap();
        assert_eq!(gl.path, ".gitlab/merge_request_templates/Default.md");
        write(root, ".github/pull_request_template", "github one");
        assert_eq!(
            discover_template(root, Provider::Github).unwrap().path,
            ".github/pull_request_template"
        );
    }

    #[test]
    fn a_directory_of_several_without_a_default_offers_none() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, ".github/PULL_REQUEST_TEMPLATE/bug.md", "bug");
        write(root, ".github/PULL_REQUEST_TEMPLATE/feature.md", "feature");
        assert_eq!(discover_template(root, Provider::Github), None);
        std::fs::remove_file(root.join(".github/PULL_REQUEST_TEMPLATE/bug.md")).unwrap();
        assert_eq!(
            discover_template(root, Provider::Github).unwrap().path,
            ".github/PULL_REQUEST_TEMPLATE/feature.md"
        );
    }

    #[test]
    fn a_symlink_out_of_the_checkout_a_fifo_or_a_blank_file_is_passed_over() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.md", "host secret");
        let root = tmp.path();
        std::os::unix::fs::symlink(
            outside.path().join("secret.md"),
            root.join("PULL_REQUEST_TEMPLATE.md"),
        )
        .unwrap();
        write(root, "docs/pull_request_template.md", "   \n");
        std::fs::create_dir_all(root.join(".github")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join(".github/pull_request_template.md"))
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(discover_template(root, Provider::Github), None);
        // Inside the checkout a link is followed.
        write(root, "real/template.md", "inside");
        std::fs::create_dir_all(root.join(".gitlab/merge_request_templates")).unwrap();
        std::os::unix::fs::symlink(
            root.join("real/template.md"),
            root.join(".gitlab/merge_request_templates/default.md"),
        )
        .unwrap();
        assert_eq!(
            discover_template(root, Provider::Github)
                .unwrap()
                .text
                .as_deref(),
            Some("inside")
        );
    }

    #[test]
    fn a_long_template_is_named_not_inlined() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "pull_request_template.md",
            &"x".repeat(INLINE_CHARS + 1),
        );
        let t = discover_template(tmp.path(), Provider::Github).unwrap();
        assert_eq!((t.chars, t.text), (INLINE_CHARS + 1, None));
    }
}
