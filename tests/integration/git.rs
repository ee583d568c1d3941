//! git operations against real repositories: bare repos over `file://` and a smart-HTTP
//! server with token auth.

use std::path::{Path, PathBuf};

use executor_harness::git::{
    clone_branch, commit_tracked_edits, create_branch, current_branch, exclude_path, head_oid,
    push_branch, refresh_from_base_if_clean, remote_branch_exists, set_identity, untracked_files,
    FileLimit, GitAuth, GitError, GitRemote, Identity, Refresh,
};
use executor_harness::redact::Secret;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::git_http::GitHttpServer;
use crate::support::repo::{git, BareRepo};

/// These tests are not about the size limit.
const NO_LIMIT: FileLimit = FileLimit(0);
const TOKEN: &str = "s3cret-token-value-123";

fn none() -> GitAuth {
    GitAuth::none()
}

fn token(value: &str) -> GitAuth {
    GitAuth::token(Secret::new(value))
}

/// The remote of `url` with `auth`, as a job builds it from its clone URL.
fn at(url: &str, auth: GitAuth) -> GitRemote {
    GitRemote::new(url, auth).unwrap()
}

fn live() -> CancellationToken {
    CancellationToken::new()
}

/// A temporary parent and the (not yet existing) checkout path inside it.
fn workspace() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("checkout");
    (tmp, dir)
}

fn clone(url: &str, branch: &str, auth: &GitAuth, shallow: bool) -> (TempDir, PathBuf) {
    let (tmp, dir) = workspace();
    clone_branch(&at(url, auth.clone()), branch, &dir, shallow, &live()).unwrap();
    set_identity(&dir, &Identity::bot()).unwrap();
    (tmp, dir)
}

fn write(dir: &Path, path: &str, content: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, content).unwrap();
}

fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path)).unwrap()
}

fn parents(dir: &Path, rev: &str) -> Vec<String> {
    let line = git(dir, &["rev-list", "--parents", "-n", "1", rev]);
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

fn bytes_contain(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if bytes_contain(&std::fs::read(&path).unwrap(), needle.as_bytes()) {
                hits.push(path);
            }
        }
    }
    hits
}

#[test]
fn a_fresh_clone_of_main_then_branch_commit_and_push_lands_on_the_remote() {
    let remote = BareRepo::new();
    let main_tip = remote.tip("main").unwrap();
    let (_tmp, dir) = workspace();

    // Shallow is asked for; the local transport clones in full instead of failing.
    clone_branch(&at(&remote.url(), none()), "main", &dir, true, &live()).unwrap();
    assert_eq!(current_branch(&dir).unwrap().as_deref(), Some("main"));
    assert_eq!(head_oid(&dir).unwrap(), main_tip);
    set_identity(&dir, &Identity::bot()).unwrap();
    assert_eq!(
        git(&dir, &["config", "--local", "user.name"]),
        "cat-factory[bot]"
    );

    create_branch(&dir, "cat-factory/b1").unwrap();
    assert_eq!(
        current_branch(&dir).unwrap().as_deref(),
        Some("cat-factory/b1")
    );
    write(&dir, "README.md", "hello, edited\n");
    assert!(commit_tracked_edits(&dir, "Agent changes", &Identity::bot(), NO_LIMIT).unwrap());
    let head = head_oid(&dir).unwrap();
    assert_ne!(head, main_tip);

    let origin = at(&remote.url(), none());
    push_branch(&dir, &origin, "cat-factory/b1", "cat-factory/b1", &live()).unwrap();
    assert_eq!(remote.tip("cat-factory/b1").as_deref(), Some(head.as_str()));
    assert_eq!(
        remote.file_at("cat-factory/b1", "README.md").unwrap(),
        "hello, edited\n"
    );
    assert_eq!(remote.subjects("cat-factory/b1")[0], "Agent changes");
    let author = git(
        remote.path(),
        &["log", "-1", "--format=%an <%ae>", "cat-factory/b1"],
    );
    assert_eq!(
        author,
        "cat-factory[bot] <cat-factory[bot]@users.noreply.github.com>"
    );
    assert_eq!(remote.tip("main").unwrap(), main_tip, "main is untouched");
}

#[test]
fn pushing_to_a_differently_named_remote_branch_works() {
    let remote = BareRepo::new();
    let (_tmp, dir) = clone(&remote.url(), "main", &none(), false);
    create_branch(&dir, "local-work").unwrap();
    write(&dir, "README.md", "changed\n");
    assert!(commit_tracked_edits(&dir, "work", &Identity::bot(), NO_LIMIT).unwrap());

    push_branch(
        &dir,
        &at(&remote.url(), none()),
        "local-work",
        "cat-factory/remote-name",
        &live(),
    )
    .unwrap();
    assert_eq!(
        remote.tip("cat-factory/remote-name"),
        Some(head_oid(&dir).unwrap())
    );
    assert_eq!(remote.tip("local-work"), None);
}

#[test]
fn remote_branch_exists_matches_the_exact_branch_name_not_a_suffix() {
    let remote = BareRepo::new();
    remote.commit_files("feature/x", &[("x.txt", "x\n")], "feature x");
    let origin = at(&remote.url(), none());
    let probe = |branch: &str| remote_branch_exists(&origin, branch, &live());

    assert!(probe("feature/x").unwrap());
    assert!(probe("main").unwrap());
    assert!(!probe("x").unwrap(), "a tail match must not count");
    assert!(!probe("feature").unwrap());
    assert!(!probe("ain").unwrap());
}

#[test]
fn a_resumed_clone_keeps_its_commits_and_refresh_merges_a_base_that_moved() {
    let remote = BareRepo::new();
    let work_tip = remote.commit_files("cat-factory/b2", &[("work.txt", "work\n")], "prior work");
    let base_tip = remote.commit_files("main", &[("base.txt", "base\n")], "base moved");

    let (_tmp, dir) = clone(&remote.url(), "cat-factory/b2", &none(), false);
    let origin = at(&remote.url(), none());
    assert_eq!(
        head_oid(&dir).unwrap(),
        work_tip,
        "the resume keeps the prior commits"
    );
    assert_eq!(
        current_branch(&dir).unwrap().as_deref(),
        Some("cat-factory/b2")
    );

    let outcome =
        refresh_from_base_if_clean(&dir, &origin, "main", &Identity::bot(), &live()).unwrap();
    assert_eq!(outcome, Refresh::Merged);
    let merge = head_oid(&dir).unwrap();
    assert_eq!(parents(&dir, &merge), vec![work_tip, base_tip]);
    assert_eq!(read(&dir, "work.txt"), "work\n");
    assert_eq!(read(&dir, "base.txt"), "base\n");
    assert_eq!(
        git(&dir, &["status", "--porcelain"]),
        "",
        "index and work tree match the merge"
    );
    assert_eq!(
        git(&dir, &["log", "-1", "--format=%s"]),
        "Merge branch 'main' into cat-factory/b2"
    );

    push_branch(&dir, &origin, "cat-factory/b2", "cat-factory/b2", &live()).unwrap();
    assert_eq!(remote.tip("cat-factory/b2"), Some(merge));
}

#[test]
fn refresh_fast_forwards_a_branch_without_commits_of_its_own_then_is_up_to_date() {
    let remote = BareRepo::new();
    git(remote.path(), &["branch", "cat-factory/b3", "main"]);
    let base_tip = remote.commit_files("main", &[("base.txt", "base\n")], "base moved");

    let (_tmp, dir) = clone(&remote.url(), "cat-factory/b3", &none(), false);
    let origin = at(&remote.url(), none());
    let refresh = || refresh_from_base_if_clean(&dir, &origin, "main", &Identity::bot(), &live());
    assert_eq!(refresh().unwrap(), Refresh::FastForwarded);
    assert_eq!(head_oid(&dir).unwrap(), base_tip);
    assert_eq!(read(&dir, "base.txt"), "base\n");
    assert_eq!(
        current_branch(&dir).unwrap().as_deref(),
        Some("cat-factory/b3")
    );
    assert_eq!(refresh().unwrap(), Refresh::UpToDate);
    assert_eq!(head_oid(&dir).unwrap(), base_tip);
}

#[test]
fn refresh_leaves_the_branch_and_work_tree_at_the_old_tip_on_conflict() {
    let remote = BareRepo::new();
    let work_tip = remote.commit_files(
        "cat-factory/b4",
        &[("README.md", "work side\n")],
        "work edit",
    );
    remote.commit_files("main", &[("README.md", "base side\n")], "base edit");

    let (_tmp, dir) = clone(&remote.url(), "cat-factory/b4", &none(), false);
    let origin = at(&remote.url(), none());
    let outcome =
        refresh_from_base_if_clean(&dir, &origin, "main", &Identity::bot(), &live()).unwrap();
    assert_eq!(outcome, Refresh::Conflicted);
    assert_eq!(head_oid(&dir).unwrap(), work_tip);
    assert_eq!(read(&dir, "README.md"), "work side\n");
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    assert!(!dir.join(".git/MERGE_HEAD").exists());
}

#[test]
fn a_non_fast_forward_push_is_rejected_and_does_not_clobber_the_remote() {
    let remote = BareRepo::new();
    let (_tmp, dir) = clone(&remote.url(), "main", &none(), false);
    let theirs = remote.commit_files("main", &[("other.txt", "someone else\n")], "concurrent");

    write(&dir, "README.md", "mine\n");
    assert!(commit_tracked_edits(&dir, "mine", &Identity::bot(), NO_LIMIT).unwrap());
    let err = push_branch(&dir, &at(&remote.url(), none()), "main", "main", &live()).unwrap_err();
    assert!(matches!(err, GitError::Rejected { .. }), "{err:?}");
    assert_eq!(remote.tip("main"), Some(theirs));
}

#[test]
fn the_safety_net_commit_stages_tracked_edits_and_deletions_but_never_new_files() {
    let remote = BareRepo::new();
    remote.commit_files(
        "main",
        &[("docs/a.txt", "a\n"), (".config/tool.toml", "x = 1\n")],
        "docs",
    );
    let (_tmp, dir) = clone(&remote.url(), "main", &none(), false);
    let before = head_oid(&dir).unwrap();

    write(&dir, "README.md", "edited\n");
    write(&dir, ".config/tool.toml", "x = 2\n");
    std::fs::remove_file(dir.join("docs/a.txt")).unwrap();
    write(&dir, "new.txt", "scratch\n");
    write(&dir, "sub/deeper/new2.txt", "scratch\n");

    assert!(commit_tracked_edits(&dir, "Agent changes", &Identity::bot(), NO_LIMIT).unwrap());
    let head = head_oid(&dir).unwrap();
    assert_eq!(parents(&dir, &head), vec![before]);
    let files = git(&dir, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert_eq!(
        files, ".config/tool.toml\nREADME.md",
        "the deletion is committed, new files are not"
    );
    assert_eq!(git(&dir, &["show", "HEAD:.config/tool.toml"]), "x = 2");
    assert_eq!(git(&dir, &["show", "HEAD:README.md"]), "edited");
    assert_eq!(
        untracked_files(&dir).unwrap(),
        vec!["new.txt".to_owned(), "sub/deeper/new2.txt".to_owned()]
    );

    assert!(!commit_tracked_edits(&dir, "again", &Identity::bot(), NO_LIMIT).unwrap());
    assert_eq!(
        head_oid(&dir).unwrap(),
        head,
        "nothing tracked changed: no empty commit"
    );
}

#[test]
fn untracked_files_skip_ignored_and_excluded_paths() {
    let remote = BareRepo::new();
    remote.commit_files("main", &[(".gitignore", "*.log\n")], "ignore logs");
    let (_tmp, dir) = clone(&remote.url(), "main", &none(), false);
    write(&dir, "debug.log", "noise\n");
    write(&dir, ".cat-follow-ups.jsonl", "{}\n");
    write(&dir, "keep.txt", "left behind\n");
    assert_eq!(
        untracked_files(&dir).unwrap(),
        vec![".cat-follow-ups.jsonl".to_owned(), "keep.txt".to_owned()]
    );

    exclude_path(&dir, ".cat-follow-ups.jsonl").unwrap();
    exclude_path(&dir, ".cat-follow-ups.jsonl").unwrap();
    assert_eq!(untracked_files(&dir).unwrap(), vec!["keep.txt".to_owned()]);
    let exclude = read(&dir, ".git/info/exclude");
    assert_eq!(
        exclude.matches(".cat-follow-ups.jsonl").count(),
        1,
        "{exclude}"
    );
}

/// A server root with one bare repository `r.git` that has two commits on `main`.
fn served_repo() -> (TempDir, BareRepo, GitHttpServer) {
    let root = TempDir::new().unwrap();
    let repo = BareRepo::new_in(root.path(), "r");
    repo.commit_files("main", &[("second.txt", "2\n")], "second commit");
    let server = GitHttpServer::start(root.path(), TOKEN);
    (root, repo, server)
}

#[test]
fn over_smart_http_a_token_clone_is_shallow_and_push_lands_with_no_token_on_disk() {
    let (_root, repo, server) = served_repo();
    let url = server.url("r");
    let auth = token(TOKEN);

    let origin = at(&url, auth.clone());
    assert!(remote_branch_exists(&origin, "main", &live()).unwrap());
    let (_tmp, dir) = clone(&url, "main", &auth, true);
    assert_eq!(git(&dir, &["rev-list", "--count", "HEAD"]), "1", "depth 1");
    assert!(dir.join(".git/shallow").exists());

    create_branch(&dir, "cat-factory/http").unwrap();
    write(&dir, "README.md", "over http\n");
    assert!(commit_tracked_edits(&dir, "Agent changes", &Identity::bot(), NO_LIMIT).unwrap());
    push_branch(
        &dir,
        &origin,
        "cat-factory/http",
        "cat-factory/http",
        &live(),
    )
    .unwrap();
    assert_eq!(repo.tip("cat-factory/http"), Some(head_oid(&dir).unwrap()));
    assert_eq!(
        repo.file_at("cat-factory/http", "README.md").unwrap(),
        "over http\n"
    );

    assert_eq!(server.bad_attempts(), 0);
    assert!(
        server.accepted_attempts() >= 3,
        "probe, clone and push all authenticated"
    );
    assert!(server
        .attempts()
        .iter()
        .all(|a| a.username == "x-access-token"));
    let config = read(&dir, ".git/config");
    assert!(!config.contains(TOKEN), "{config}");
    assert!(config.contains(&url), "origin is the plain URL: {config}");
    assert_eq!(files_containing(&dir, TOKEN), Vec::<PathBuf>::new());
}

#[test]
fn a_clone_url_naming_a_user_sends_no_attempt_without_the_token_and_origin_keeps_the_url() {
    let (_root, _repo, server) = served_repo();
    // As an https clone URL is stored: with the token's user name, never a password.
    let url = server
        .url("r")
        .replace("http://", "http://x-access-token:leaked@");
    let remote = at(&url, token(TOKEN));
    let (_tmp, dir) = workspace();
    clone_branch(&remote, "main", &dir, false, &live()).unwrap();
    assert_eq!(server.bad_attempts(), 0, "{:?}", server.attempts());
    assert!(server.accepted_attempts() >= 1);
    let config = read(&dir, ".git/config");
    assert!(config.contains(remote.url()), "{config}");
    assert!(remote.url().contains("x-access-token@"), "{}", remote.url());
    assert!(
        !config.contains("leaked") && !config.contains(TOKEN),
        "{config}"
    );
    assert_eq!(files_containing(&dir, TOKEN), Vec::<PathBuf>::new());
}

#[test]
fn a_wrong_token_is_an_auth_error_after_at_most_two_attempts() {
    let (_root, _repo, server) = served_repo();
    let url = server.url("r");
    let wrong = "wrong-token-value-999";

    let (_tmp, dir) = workspace();
    let err = clone_branch(&at(&url, token(wrong)), "main", &dir, true, &live()).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(!err.to_string().contains(wrong), "{err}");
    let after_clone = server.bad_attempts();
    assert!(
        (1..=2).contains(&after_clone),
        "saw {after_clone} bad attempts"
    );

    let err = remote_branch_exists(&at(&url, token(wrong)), "main", &live()).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(server.bad_attempts() - after_clone <= 2);
}

#[test]
fn a_push_with_a_wrong_token_is_an_auth_error_and_changes_nothing() {
    let (_root, repo, server) = served_repo();
    let url = server.url("r");
    let (_tmp, dir) = clone(&url, "main", &token(TOKEN), true);
    write(&dir, "README.md", "x\n");
    assert!(commit_tracked_edits(&dir, "x", &Identity::bot(), NO_LIMIT).unwrap());

    let wrong = at(&url, token("wrong-token-value"));
    let err = push_branch(&dir, &wrong, "main", "main", &live()).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(server.bad_attempts() <= 2, "saw {}", server.bad_attempts());
    assert_ne!(repo.tip("main"), Some(head_oid(&dir).unwrap()));
}

#[test]
fn without_a_token_an_authenticating_remote_is_an_auth_error() {
    let (_root, _repo, server) = served_repo();
    let err = remote_branch_exists(&at(&server.url("r"), none()), "main", &live()).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(server.bad_attempts(), 0, "nothing was offered");
    assert!(server.anonymous_requests() >= 1);
}

#[test]
fn a_push_rejected_by_a_pre_receive_hook_is_a_rejected_error() {
    let (_root, repo, server) = served_repo();
    let url = server.url("r");
    let auth = token(TOKEN);
    let (_tmp, dir) = clone(&url, "main", &auth, true);
    create_branch(&dir, "cat-factory/hooked").unwrap();
    write(&dir, "README.md", "refused\n");
    assert!(commit_tracked_edits(&dir, "refused", &Identity::bot(), NO_LIMIT).unwrap());

    repo.reject_pushes_with_hook("protected by policy");
    let err = push_branch(
        &dir,
        &at(&url, auth),
        "cat-factory/hooked",
        "cat-factory/hooked",
        &live(),
    )
    .unwrap_err();
    match &err {
        GitError::Rejected { refname, reason } => {
            assert_eq!(refname, "refs/heads/cat-factory/hooked");
            assert!(
                reason.contains("protected by policy"),
                "the hook's words: {reason}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(repo.tip("cat-factory/hooked"), None);
}

#[test]
fn a_cancelled_token_stops_probe_clone_and_push_before_they_start() {
    let remote = BareRepo::new();
    let cancelled = CancellationToken::new();
    cancelled.cancel();

    let origin = at(&remote.url(), none());
    let err = remote_branch_exists(&origin, "main", &cancelled).unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    let (_tmp, dir) = workspace();
    let err = clone_branch(&origin, "main", &dir, true, &cancelled).unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(!dir.exists());

    let (_tmp2, dir) = clone(&remote.url(), "main", &none(), false);
    write(&dir, "README.md", "never pushed\n");
    assert!(commit_tracked_edits(&dir, "x", &Identity::bot(), NO_LIMIT).unwrap());
    let before = remote.tip("main");
    let err = push_branch(&dir, &origin, "main", "main", &cancelled).unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(remote.tip("main"), before);
}

#[test]
fn cancelling_while_a_clone_transfers_returns_cancelled() {
    let (_root, _repo, server) = served_repo();
    let cancel = CancellationToken::new();
    let in_server = cancel.clone();
    // The token fires once the clone asks for its pack, before the pack is sent.
    server.before_upload_pack(move || in_server.cancel());

    let (_tmp, dir) = workspace();
    let origin = at(&server.url("r"), token(TOKEN));
    let err = clone_branch(&origin, "main", &dir, true, &cancel).unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
}
