use std::process::Command;

use super::*;
use crate::git::test_git::git;

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

#[test]
fn only_a_plain_git_dir_passes_never_one_with_a_link_a_gitfile_a_commondir_or_a_fifo() {
    let tmp = tempfile::tempdir().unwrap();
    let git_dir = tmp.path().join("co/.git");
    std::fs::create_dir_all(git_dir.join("refs/heads")).unwrap();
    std::fs::write(git_dir.join("config"), "[core]\n").unwrap();
    assert!(plain_git_dir(&git_dir).is_ok());

    // The agent's link to a file the worker would then overwrite.
    std::fs::remove_file(git_dir.join("config")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", git_dir.join("config")).unwrap();
    assert!(plain_git_dir(&git_dir).is_err(), "a symlinked config");
    std::fs::remove_file(git_dir.join("config")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), git_dir.join("refs/heads/x")).unwrap();
    let why = plain_git_dir(&git_dir).unwrap_err();
    assert!(why.contains(".git/refs/heads/x"), "names the link: {why}");
    std::fs::remove_file(git_dir.join("refs/heads/x")).unwrap();
    std::fs::write(git_dir.join("commondir"), "../../other\n").unwrap();
    assert!(plain_git_dir(&git_dir).is_err(), "a commondir");
    std::fs::remove_file(git_dir.join("commondir")).unwrap();
    std::fs::create_dir(git_dir.join("hooks")).unwrap();
    std::os::unix::fs::symlink("/bin/true", git_dir.join("hooks/pre-commit")).unwrap();
    assert!(plain_git_dir(&git_dir).is_ok(), "hooks are the agent's own");
    mkfifo(&git_dir.join("index"));
    assert!(plain_git_dir(&git_dir).is_err(), "a FIFO, never opened");
    std::fs::remove_file(git_dir.join("index")).unwrap();
    assert!(plain_git_dir(&git_dir).is_ok());

    let gitfile = tmp.path().join("other/.git");
    std::fs::create_dir_all(tmp.path().join("other")).unwrap();
    std::fs::write(&gitfile, "gitdir: ../co/.git\n").unwrap();
    assert!(plain_git_dir(&gitfile).is_err(), "a gitfile");
    std::os::unix::fs::symlink(&git_dir, tmp.path().join("linked")).unwrap();
    assert!(
        plain_git_dir(&tmp.path().join("linked")).is_err(),
        "a symlinked .git"
    );
}

#[test]
fn reclaim_drops_what_points_elsewhere_and_keeps_the_repository_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    git(&other, &["init", "-q", "-b", "main"]);
    let co = tmp.path().join("co");
    std::fs::create_dir(&co).unwrap();
    git(&co, &["init", "-q", "-b", "main"]);
    std::fs::write(co.join("f.txt"), "1").unwrap();
    git(&co, &["add", "f.txt"]);
    git(&co, &["commit", "-qm", "one"]);
    let head = git(&co, &["rev-parse", "HEAD"]);
    // What an agent could leave for the worker's next step.
    let worktree = other.display().to_string();
    git(&co, &["config", "core.worktree", &worktree]);
    git(&co, &["config", "include.path", "/etc/hostname"]);
    git(
        &co,
        &["config", "url.http://elsewhere/.insteadOf", "file://"],
    );
    let objects = other.join(".git/objects").display().to_string();
    std::fs::write(co.join(".git/objects/info/alternates"), objects).unwrap();

    let id = Identity {
        name: "Bot \"q\"".into(),
        email: "bot@example.invalid".into(),
    };
    reclaim(&co, "https://x-access-token@h/o/r.git", &id).unwrap();
    let config = std::fs::read_to_string(co.join(".git/config")).unwrap();
    for gone in ["worktree", "include", "insteadOf", "elsewhere"] {
        assert!(!config.contains(gone), "{gone} left: {config}");
    }
    assert!(!co.join(".git/objects/info/alternates").exists());
    let repo = Repository::open(&co).unwrap();
    assert_eq!(repo.workdir().unwrap(), co.join("").as_path());
    assert_eq!(
        repo.head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .id()
            .to_string(),
        head
    );
    let cfg = repo.config().unwrap().snapshot().unwrap();
    assert_eq!(cfg.get_str("user.name").unwrap(), "Bot \"q\"");
    assert_eq!(
        cfg.get_str("remote.origin.url").unwrap(),
        "https://x-access-token@h/o/r.git"
    );
    assert_eq!(cfg.get_i32("gc.auto").unwrap(), 0);

    std::fs::remove_file(co.join(".git/HEAD")).unwrap();
    std::os::unix::fs::symlink(other.join(".git/HEAD"), co.join(".git/HEAD")).unwrap();
    let err = reclaim(&co, "https://h/o/r.git", &id).unwrap_err();
    assert!(err.to_string().contains(".git/HEAD"), "{err}");
    assert_eq!(
        std::fs::read_to_string(co.join(".git/config")).unwrap(),
        config,
        "nothing written after a failed check"
    );
}

#[test]
fn a_checkout_without_a_repository_is_left_to_the_next_step() {
    let tmp = tempfile::tempdir().unwrap();
    let id = Identity::bot();
    reclaim(tmp.path(), "https://h/o/r.git", &id).unwrap();
    assert!(!tmp.path().join(".git").exists(), "nothing made");
    std::fs::create_dir(tmp.path().join(".git")).unwrap();
    std::fs::write(tmp.path().join(".git/junk"), "x").unwrap();
    reclaim(tmp.path(), "https://h/o/r.git", &id).unwrap();
    assert!(
        !tmp.path().join(".git/config").exists(),
        "no config written"
    );
}
