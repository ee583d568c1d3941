//! `file://` remotes are always allowed (the contract's `cloneUrl` rule), but never one inside
//! the worker's own work directory: there lie the other jobs' checkouts, the warm checkouts
//! and the object cache, which the worker, root in production, would otherwise probe, clone
//! for this job's agent and push into.

use std::path::{Path, PathBuf};

use url::Url;

use super::GitError;

/// Fails when `url` is a `file://` URL whose path, symlinks resolved, lies under one of
/// `roots`. Reads the file system: call it off the async runtime.
pub fn refuse_local_url_under(url: &str, roots: &[PathBuf]) -> Result<(), GitError> {
    let Some(path) = Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
    else {
        return Ok(());
    };
    // A path that does not exist is not a repository of anyone's: the clone says so.
    let Ok(path) = path.canonicalize() else {
        return Ok(());
    };
    for root in roots {
        if within(&path, root) {
            return Err(GitError::Git {
                op: "clone",
                message: format!(
                    "the clone URL {url} is inside the worker's work directory, where other \
                     jobs' checkouts are: refused"
                ),
            });
        }
    }
    Ok(())
}

fn within(path: &Path, root: &Path) -> bool {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_url_into_the_work_dir_is_refused_also_through_a_link_and_others_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        let other_job = work.join("jobs/other/checkout");
        std::fs::create_dir_all(&other_job).unwrap();
        let elsewhere = tmp.path().join("repos/r.git");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&work, &link).unwrap();
        let roots = [work.clone()];
        let url = |p: &Path| format!("file://{}", p.display());

        let err = refuse_local_url_under(&url(&other_job), &roots).unwrap_err();
        assert!(err.to_string().contains("work directory"), "{err}");
        assert!(refuse_local_url_under(&url(&link.join("jobs/other/checkout")), &roots).is_err());
        let dotted = format!("{}/repos/../work/jobs/other/checkout", url(tmp.path()));
        assert!(
            refuse_local_url_under(&dotted, &roots).is_err(),
            "dot segments"
        );
        assert!(refuse_local_url_under(&url(&elsewhere), &roots).is_ok());
        assert!(refuse_local_url_under("https://github.com/o/r.git", &roots).is_ok());
        assert!(refuse_local_url_under(&url(&tmp.path().join("nope")), &roots).is_ok());
    }
}
