//! Completion refs against real remotes (`file://` and the smart-HTTP server with a token): the
//! final push followed by its completion ref, the pre-start probe, reading a stored result without a
//! work tree, ref naming for odd job ids, and first-writer-wins.

use std::path::{Path, PathBuf};

use executor_harness::git::{
    clone_branch, commit_tracked_edits, completion_ref, create_branch, head_oid, probe_remote,
    prune_completion_refs, push_branch, push_completion, read_completion, set_identity, FileLimit,
    GitAuth, GitError, GitRemote, Identity, RemoteProbe,
};
use executor_harness::redact::Secret;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::git_http::GitHttpServer;
use crate::support::repo::{git, BareRepo};

/// These tests are not about the size limit.
const NO_LIMIT: FileLimit = FileLimit(0);
const TOKEN: &str = "c0mpletion-token-value-456";
const PREFIX: &str = "refs/harness/done/";
const BRANCH: &str = "cat-factory/done";

/// A published result body as the worker stores it: multi-line JSON with non-ASCII text.
const RESULT: &str = "{\n  \"jobId\": \"job-1\",\n  \"status\": \"completed\",\n  \
                      \"summary\": \"Añadido el gestor ✓ — 日本語のテスト 🚀\",\n  \
                      \"stats\": {\"turns\": 3}\n}\n";

fn live() -> CancellationToken {
    CancellationToken::new()
}

/// A bare remote reached either through `file://` or through the smart-HTTP server.
struct Remote {
    _root: TempDir,
    repo: BareRepo,
    server: Option<GitHttpServer>,
    url: String,
    auth: GitAuth,
}

impl Remote {
    fn file() -> Self {
        let root = TempDir::new().unwrap();
        let repo = BareRepo::new_in(root.path(), "r");
        let url = repo.url();
        Self {
            _root: root,
            repo,
            server: None,
            url,
            auth: GitAuth::none(),
        }
    }

    fn http() -> Self {
        let root = TempDir::new().unwrap();
        let repo = BareRepo::new_in(root.path(), "r");
        repo.commit_files("main", &[("second.txt", "2\n")], "second commit");
        let server = GitHttpServer::start(root.path(), TOKEN);
        let url = server.url("r");
        Self {
            _root: root,
            repo,
            server: Some(server),
            url,
            auth: GitAuth::token(Secret::new(TOKEN)),
        }
    }

    /// The remote as a job builds it from its clone URL.
    fn origin(&self) -> GitRemote {
        GitRemote::new(&self.url, self.auth.clone()).unwrap()
    }

    /// A checkout of `main` on a new work branch with one commit of its own.
    fn work(&self, branch: &str, content: &str) -> (TempDir, PathBuf) {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("checkout");
        clone_branch(&self.origin(), "main", &dir, true, &live()).unwrap();
        set_identity(&dir, &Identity::bot()).unwrap();
        create_branch(&dir, branch).unwrap();
        std::fs::write(dir.join("README.md"), content).unwrap();
        assert!(commit_tracked_edits(&dir, "Agent changes", &Identity::bot(), NO_LIMIT).unwrap());
        (tmp, dir)
    }

    fn probe(&self, branch: Option<&str>, refname: &str) -> RemoteProbe {
        probe_remote(&self.origin(), branch, refname, &live()).unwrap()
    }

    /// Where `refname` points on the remote, read with the git CLI.
    fn target(&self, refname: &str) -> Option<String> {
        let out = git(
            self.repo.path(),
            &["for-each-ref", "--format=%(objectname)", refname],
        );
        (!out.is_empty()).then_some(out)
    }

    /// The message of the commit `refname` points at, byte for byte (not trimmed).
    fn message_at(&self, refname: &str) -> String {
        let out = std::process::Command::new("git")
            .args(["cat-file", "commit", refname])
            .current_dir(self.repo.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{refname} is a commit");
        let raw = String::from_utf8(out.stdout).unwrap();
        raw.split_once("\n\n").unwrap().1.to_owned()
    }

    /// The worker's final push: the branch, then its completion ref on the same tip.
    fn push_final(&self, dir: &Path, refname: &str, message: &str) -> Result<(), GitError> {
        let origin = self.origin();
        push_branch(dir, &origin, BRANCH, BRANCH, &live())?;
        let head = head_oid(dir).unwrap();
        push_completion(
            dir,
            &origin,
            &head,
            refname,
            message,
            &Identity::bot(),
            &live(),
        )
    }
}

fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                hits.push(path);
            }
        }
    }
    hits
}

fn a_pushed_branch_and_its_completion_ref_are_both_found_by_the_probe(remote: &Remote) {
    let refname = completion_ref(PREFIX, "job-1");
    let before = remote.probe(Some(BRANCH), &refname);
    assert_eq!(
        before,
        RemoteProbe {
            branch_exists: false,
            completion: None
        }
    );

    let (_tmp, dir) = remote.work(BRANCH, "finished\n");
    let head = head_oid(&dir).unwrap();
    remote.push_final(&dir, &refname, RESULT).unwrap();

    assert_eq!(remote.repo.tip(BRANCH).as_deref(), Some(head.as_str()));
    let probe = remote.probe(Some(BRANCH), &refname);
    assert!(probe.branch_exists);
    let done = probe.completion.expect("the completion ref exists");
    assert_eq!(remote.target(&refname).as_deref(), Some(done.as_str()));
    // The work stays reachable from the ref; the commit itself carries no files.
    assert_eq!(
        git(remote.repo.path(), &["rev-parse", &format!("{done}^")]),
        head
    );
    assert_eq!(
        git(remote.repo.path(), &["ls-tree", "-r", "--name-only", &done]),
        ""
    );
    assert_eq!(remote.message_at(&refname), RESULT);
    let author = git(remote.repo.path(), &["log", "-1", "--format=%an", &done]);
    assert_eq!(author, "cat-factory[bot]");
}

#[test]
fn over_file_the_branch_and_its_completion_ref_are_found_by_the_probe() {
    a_pushed_branch_and_its_completion_ref_are_both_found_by_the_probe(&Remote::file());
}

#[test]
fn over_smart_http_the_branch_and_its_completion_ref_are_found_by_the_probe() {
    let remote = Remote::http();
    a_pushed_branch_and_its_completion_ref_are_both_found_by_the_probe(&remote);
    let server = remote.server.as_ref().unwrap();
    assert_eq!(server.bad_attempts(), 0);
    assert!(server.accepted_attempts() > 0);
    assert!(server
        .attempts()
        .iter()
        .all(|a| a.username == "x-access-token"));
}

#[test]
fn a_missing_completion_ref_probes_as_none_and_the_branch_is_matched_exactly() {
    let remote = Remote::file();
    let refname = completion_ref(PREFIX, "never-ran");
    assert_eq!(
        remote.probe(Some("main"), &refname),
        RemoteProbe {
            branch_exists: true,
            completion: None
        }
    );
    assert!(!remote.probe(Some("mai"), &refname).branch_exists);
    assert!(!remote.probe(None, &refname).branch_exists);

    // Another job's ref is not this job's.
    let (_tmp, dir) = remote.work(BRANCH, "x\n");
    let other = completion_ref(PREFIX, "never-ran-2");
    remote.push_final(&dir, &other, RESULT).unwrap();
    assert_eq!(remote.probe(None, &refname).completion, None);
    assert!(remote.probe(None, &other).completion.is_some());
}

fn read_completion_returns_the_exact_message_in_a_bare_scratch_repo(
    remote: &Remote,
    scratch: &Path,
) {
    let refname = completion_ref(PREFIX, "job-read");
    let (_tmp, dir) = remote.work(BRANCH, "read me\n");
    remote.push_final(&dir, &refname, RESULT).unwrap();

    let message = read_completion(&remote.origin(), &refname, scratch, &live()).unwrap();
    assert_eq!(message, RESULT);

    assert_eq!(git(scratch, &["rev-parse", "--is-bare-repository"]), "true");
    assert!(!scratch.join("README.md").exists());
    assert!(!scratch.join(".git").exists());
    assert_eq!(
        git(scratch, &["for-each-ref", "--format=%(refname)"]),
        refname,
        "only the completion ref was fetched"
    );
    assert!(
        !git(scratch, &["config", "--list", "--local"]).contains("remote."),
        "the scratch repo names no remote"
    );
    // Reading again into the same scratch repo works (a redelivery after a crash mid-read).
    let again = read_completion(&remote.origin(), &refname, scratch, &live()).unwrap();
    assert_eq!(again, RESULT);
}

#[test]
fn over_file_read_completion_returns_the_exact_message_without_a_work_tree() {
    let scratch = TempDir::new().unwrap();
    let scratch = scratch.path().join("scratch");
    read_completion_returns_the_exact_message_in_a_bare_scratch_repo(&Remote::file(), &scratch);
}

#[test]
fn over_smart_http_read_completion_fetches_one_commit_and_stores_no_token() {
    let remote = Remote::http();
    let tmp = TempDir::new().unwrap();
    let scratch = tmp.path().join("scratch");
    read_completion_returns_the_exact_message_in_a_bare_scratch_repo(&remote, &scratch);

    // Depth 1: the completion commit is there, the work it points at is not.
    let refname = completion_ref(PREFIX, "job-read");
    let done = remote.target(&refname).unwrap();
    let parent = git(remote.repo.path(), &["rev-parse", &format!("{done}^")]);
    assert!(scratch.join("shallow").exists());
    let has_parent = std::process::Command::new("git")
        .args(["cat-file", "-e", &parent])
        .current_dir(&scratch)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap()
        .success();
    assert!(!has_parent, "the head commit was not fetched");

    assert_eq!(files_containing(&scratch, TOKEN), Vec::<PathBuf>::new());
    assert_eq!(remote.server.as_ref().unwrap().bad_attempts(), 0);
}

#[test]
fn reading_a_completion_ref_the_remote_lacks_is_an_error() {
    let remote = Remote::file();
    let scratch = TempDir::new().unwrap();
    let err = read_completion(
        &remote.origin(),
        &completion_ref(PREFIX, "absent"),
        &scratch.path().join("s"),
        &live(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn job_ids_with_odd_characters_map_to_valid_distinct_refs_the_remote_accepts() {
    let remote = Remote::http();
    let (_tmp, dir) = remote.work(BRANCH, "odd\n");
    let head = head_oid(&dir).unwrap();
    let long = "x".repeat(500);
    let ids = [
        "plain-id",
        "with space",
        "a..b",
        "a/b",
        "A/b",
        "job.lock",
        "~^:?*[\\",
        "ctrl\u{1}\t",
        "@{-1}",
        "ünï 🚀",
        "a%20b",
        long.as_str(),
    ];
    let mut refs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let refname = completion_ref(PREFIX, id);
        git(
            remote.repo.path(),
            &["check-ref-format", "--normalize", &refname],
        );
        assert!(!refs.contains(&refname), "{id:?} collides: {refname}");
        let message = format!("{{\"jobId\": {i}}}");
        push_completion(
            &dir,
            &remote.origin(),
            &head,
            &refname,
            &message,
            &Identity::bot(),
            &live(),
        )
        .unwrap();
        refs.push(refname);
    }
    for (i, refname) in refs.iter().enumerate() {
        assert!(
            remote.probe(None, refname).completion.is_some(),
            "{refname}"
        );
        assert_eq!(remote.message_at(refname), format!("{{\"jobId\": {i}}}"));
    }
}

fn a_second_writer_with_another_result_does_not_overwrite_the_first(remote: &Remote) {
    let refname = completion_ref(PREFIX, "job-twice");
    let (_tmp, dir) = remote.work(BRANCH, "first\n");
    let head = head_oid(&dir).unwrap();
    let id = Identity::bot();
    let push = |dir: &Path, head: &str, message: &str| {
        push_completion(dir, &remote.origin(), head, &refname, message, &id, &live())
    };
    push(&dir, &head, RESULT).unwrap();
    let first = remote.target(&refname).unwrap();

    let other = "{\"status\": \"completed\", \"summary\": \"a different run\"}";
    let err = push(&dir, &head, other).unwrap_err();
    assert!(
        matches!(&err, GitError::Rejected { refname: r, .. } if *r == refname),
        "{err:?}"
    );
    assert_eq!(remote.target(&refname).as_deref(), Some(first.as_str()));
    assert_eq!(remote.message_at(&refname), RESULT);

    // The same result again is success, from this checkout or from another head.
    push(&dir, &head, RESULT).unwrap();
    let (_tmp2, dir2) = remote.work("cat-factory/other", "second\n");
    let head2 = head_oid(&dir2).unwrap();
    assert_ne!(head2, head);
    push(&dir2, &head2, RESULT).unwrap();
    assert_eq!(remote.target(&refname).as_deref(), Some(first.as_str()));
    // Checking what the remote holds leaves no completion ref behind in the checkout.
    assert_eq!(
        git(&dir2, &["for-each-ref", "--format=%(refname)", PREFIX]),
        ""
    );
}

#[test]
fn over_file_a_second_push_completion_with_another_message_does_not_overwrite_the_first() {
    a_second_writer_with_another_result_does_not_overwrite_the_first(&Remote::file());
}

#[test]
fn over_smart_http_a_second_push_completion_with_another_message_does_not_overwrite_the_first() {
    a_second_writer_with_another_result_does_not_overwrite_the_first(&Remote::http());
}

#[test]
fn a_cancelled_token_stops_probe_read_and_pushes_before_they_start() {
    let remote = Remote::file();
    let refname = completion_ref(PREFIX, "job-cancel");
    let (_tmp, dir) = remote.work(BRANCH, "cancel\n");
    let head = head_oid(&dir).unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let origin = remote.origin();
    let id = Identity::bot();
    let scratch = TempDir::new().unwrap();

    assert!(probe_remote(&origin, None, &refname, &cancel)
        .unwrap_err()
        .is_cancelled());
    assert!(read_completion(&origin, &refname, scratch.path(), &cancel)
        .unwrap_err()
        .is_cancelled());
    assert!(
        push_completion(&dir, &origin, &head, &refname, RESULT, &id, &cancel)
            .unwrap_err()
            .is_cancelled()
    );
    assert_eq!(remote.probe(Some(BRANCH), &refname).completion, None);
    assert_eq!(remote.repo.tip(BRANCH), None);
}

#[test]
fn over_smart_http_prune_deletes_only_records_older_than_the_max_age_and_keeps_nothing_locally() {
    let remote = Remote::http();
    for id in ["old-a", "old-b"] {
        remote.repo.record_completion(id, 10);
    }
    remote.repo.record_completion("young", 2);
    remote.repo.record_completion("mine", 30);
    let tmp = TempDir::new().unwrap();
    let scratch = tmp.path().join("prune");
    let week = std::time::Duration::from_secs(7 * 86_400);
    let keep = completion_ref(PREFIX, "mine");
    let pruned =
        prune_completion_refs(&remote.origin(), PREFIX, &keep, week, &scratch, &live()).unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(
        remote.repo.refs(PREFIX),
        ["refs/harness/done/mine", "refs/harness/done/young"],
        "the record being written is kept, whatever its date"
    );
    assert!(!scratch.exists(), "the scratch repository is removed");
    assert_eq!(remote.server.as_ref().unwrap().bad_attempts(), 0);
    // Nothing older is left: a second prune deletes nothing.
    let again =
        prune_completion_refs(&remote.origin(), PREFIX, &keep, week, &scratch, &live()).unwrap();
    assert_eq!(again, 0);
}

#[test]
fn a_completion_commit_is_dated_at_the_results_finish_so_its_age_is_the_jobs() {
    let remote = Remote::file();
    let refname = completion_ref(PREFIX, "job-dated");
    let (_tmp, dir) = remote.work(BRANCH, "dated\n");
    let message = r#"{"jobId":"job-dated","finishedAt":1700000000123}"#;
    remote.push_final(&dir, &refname, message).unwrap();
    let when = git(remote.repo.path(), &["log", "-1", "--format=%ct", &refname]);
    assert_eq!(when, "1700000000");
}
