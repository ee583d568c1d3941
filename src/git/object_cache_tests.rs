use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::*;
use crate::git::object_cache_sweep::sweep;
use crate::git::test_git::git;
use crate::git::GitAuth;
use crate::redact::Secret;

const TOKEN: &str = "tok-object-cache-0123456789";

/// A bare origin with one commit on `main`, and the work tree that pushes to it.
fn origin(root: &Path) -> (GitRemote, PathBuf) {
    let seed = root.join("seed");
    std::fs::create_dir(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    commit(&seed, "1");
    git(root, &["clone", "-q", "--bare", "seed", "origin.git"]);
    git(&seed, &["remote", "add", "origin", "../origin.git"]);
    let url = format!("file://{}", root.join("origin.git").display());
    (GitRemote::new(&url, GitAuth::none()).unwrap(), seed)
}

fn commit(seed: &Path, text: &str) {
    std::fs::write(seed.join("f.txt"), text).unwrap();
    git(seed, &["add", "f.txt"]);
    git(seed, &["commit", "-qm", text]);
}

fn cache(root: &Path) -> ObjectCache {
    ObjectCache::new(root.join("objects"), u64::MAX, Duration::from_secs(3600)).unwrap()
}

fn mirror_of(cache: &ObjectCache, url: &str) -> PathBuf {
    cache.root().join(format!("{}.git", key(url)))
}

fn metrics() -> Metrics {
    Metrics::new()
}

/// `main` of `remote` into `dir` through `cache`, counted into metrics of its own.
fn via(
    cache: &ObjectCache,
    remote: &GitRemote,
    dir: &Path,
    shallow: bool,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    clone_branch_via(
        Some(cache),
        &metrics(),
        remote,
        "main",
        dir,
        shallow,
        cancel,
    )
}

fn live() -> CancellationToken {
    CancellationToken::new()
}

#[test]
fn no_cache_at_zero_bytes() {
    assert!(ObjectCache::new("/x".into(), 0, Duration::from_secs(1)).is_none());
}

#[test]
fn a_second_checkout_takes_the_new_commits_through_the_mirror_and_shares_no_file_with_it() {
    let root = tempfile::tempdir().unwrap();
    let (remote, seed) = origin(root.path());
    let cache = cache(root.path());
    let first = root.path().join("first");
    via(&cache, &remote, &first, false, &live()).unwrap();
    let mirror = mirror_of(&cache, remote.url());
    assert!(mirror.join("HEAD").is_file(), "the mirror was made");
    let mode = std::fs::metadata(cache.root())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the cache is the worker's own");

    commit(&seed, "2");
    git(&seed, &["push", "-q", "origin", "main"]);
    let tip = git(&seed, &["rev-parse", "HEAD"]);
    let second = root.path().join("second");
    via(&cache, &remote, &second, false, &live()).unwrap();
    assert_eq!(git(&second, &["rev-parse", "HEAD"]), tip, "the new commit");
    assert_eq!(git(&mirror, &["rev-parse", "refs/heads/main"]), tip);
    assert_eq!(std::fs::read_to_string(second.join("f.txt")).unwrap(), "2");
    assert_eq!(git(&second, &["remote", "get-url", "origin"]), remote.url());
    assert_eq!(
        git(&second, &["config", "remote.origin.fetch"]),
        "+refs/heads/main:refs/remotes/origin/main"
    );
    assert_eq!(git(&second, &["rev-parse", "origin/main"]), tip);
    // The checkout is handed to the agents' user: nothing of it may be the mirror's.
    assert!(!second.join(".git/objects/info/alternates").exists());
    let mirror_inodes = inodes(&mirror.join("objects"));
    let shared: Vec<_> = inodes(&second.join(".git/objects"))
        .intersection(&mirror_inodes)
        .copied()
        .collect();
    assert!(shared.is_empty(), "hardlinked from the mirror: {shared:?}");

    // Asked shallow, it gets the mirror's history: a copy of files, not a transfer.
    let shallow = root.path().join("shallow");
    via(&cache, &remote, &shallow, true, &live()).unwrap();
    assert!(!shallow.join(".git/shallow").exists());
    assert_eq!(git(&shallow, &["rev-list", "--count", "HEAD"]), "2");
    assert_eq!(git(&shallow, &["rev-parse", "HEAD"]), tip);
}

fn inodes(dir: &Path) -> std::collections::BTreeSet<u64> {
    let mut found = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let m = entry.metadata().unwrap();
            if m.is_dir() {
                stack.push(entry.path());
            } else {
                found.insert(m.ino());
            }
        }
    }
    found
}

/// A server that refuses every request with 401, noting the `Authorization` headers it got.
fn refusing_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/o/r.git", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    std::thread::spawn(move || {
        // Bounded: it serves for 30 s at most.
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            for line in text.lines() {
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    noted.lock().unwrap().push(line.to_owned());
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, seen)
}

#[test]
fn a_token_the_remote_refuses_gets_nothing_from_a_mirror_another_job_filled() {
    let root = tempfile::tempdir().unwrap();
    let (file_remote, _seed) = origin(root.path());
    let cache = cache(root.path());
    let (url, seen) = refusing_server();
    // What an earlier job, whose token could read the repository, left in the cache.
    std::fs::create_dir_all(cache.root()).unwrap();
    let mirror = mirror_of(&cache, &url);
    let origin_path = file_remote.url().trim_start_matches("file://");
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            origin_path,
            mirror.to_str().unwrap(),
        ],
    );
    let remote = GitRemote::new(&url, GitAuth::token(Secret::new(TOKEN))).unwrap();
    let dir = root.path().join("checkout");
    let err = via(&cache, &remote, &dir, false, &live()).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(!dir.join(".git").exists(), "no checkout from the mirror");
    assert!(
        mirror.join("HEAD").exists(),
        "an auth failure keeps the mirror"
    );
    assert!(!seen.lock().unwrap().is_empty(), "the token was offered");
}

#[test]
fn a_cache_that_cannot_be_used_clones_directly_and_a_broken_mirror_is_made_afresh() {
    let root = tempfile::tempdir().unwrap();
    let (remote, _seed) = origin(root.path());
    // The cache's root is a file: nothing can be cached, the job still gets its checkout.
    std::fs::write(root.path().join("objects"), "not a directory").unwrap();
    let blocked = cache(root.path());
    let dir = root.path().join("direct");
    let m = metrics();
    let count = |outcome: &str| m.object_cache_clones.with_label_values(&[outcome]).get();
    clone_branch_via(Some(&blocked), &m, &remote, "main", &dir, false, &live()).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "1");
    assert_eq!((count("direct"), count("cached")), (1, 0));

    let cache = ObjectCache::new(
        root.path().join("cache2"),
        u64::MAX,
        Duration::from_secs(3600),
    )
    .unwrap();
    let mirror = mirror_of(&cache, remote.url());
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::write(mirror.join("HEAD"), "garbage").unwrap();
    let dir = root.path().join("remade");
    clone_branch_via(Some(&cache), &m, &remote, "main", &dir, false, &live()).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "1");
    assert_eq!((count("direct"), count("cached")), (1, 1));
    assert!(git2::Repository::open_bare(&mirror).is_ok(), "made afresh");
}

#[test]
fn a_cancelled_job_neither_waits_for_a_held_mirror_nor_falls_back() {
    let root = tempfile::tempdir().unwrap();
    let (remote, _seed) = origin(root.path());
    let cache = cache(root.path());
    std::fs::create_dir_all(cache.root()).unwrap();
    let held = lock_file(&cache.root().join(format!("{}.lock", key(remote.url())))).unwrap();
    held.lock().unwrap();
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        stopper.cancel();
    });
    let dir = root.path().join("c");
    let err = via(&cache, &remote, &dir, false, &cancel).unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(!dir.exists(), "no direct clone after a cancel");
}

#[test]
fn the_key_ignores_nothing_but_user_info_and_shapes_no_path() {
    let a = key("https://h/o/r.git");
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, key("https://h/o/r2.git"));
    let remote = GitRemote::new(
        "https://x-access-token@h/o/r.git",
        GitAuth::token(Secret::new(TOKEN)),
    )
    .unwrap();
    let url = cli_clone::without_user(remote.url(), Transport::Https).unwrap();
    assert_eq!(
        key(&url),
        a,
        "one mirror whatever user name the URL carries"
    );
}

/// A fake mirror of `bytes` bytes last used `age` ago.
fn fake_mirror(root: &Path, key: &str, bytes: usize, age: Duration) {
    let git = root.join(format!("{key}.git"));
    std::fs::create_dir_all(git.join("objects/pack")).unwrap();
    std::fs::write(git.join("objects/pack/p.pack"), vec![0u8; bytes]).unwrap();
    let lock = lock_file(&root.join(format!("{key}.lock"))).unwrap();
    lock.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn the_sweep_removes_stale_mirrors_then_the_least_recently_used_past_the_cap_but_none_in_use() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let hour = Duration::from_secs(3600);
    fake_mirror(r, "stale", 10, hour * 48);
    fake_mirror(r, "old", 1000, hour * 3);
    fake_mirror(r, "busy", 1000, hour * 2);
    fake_mirror(r, "new", 1000, hour);
    std::fs::create_dir_all(r.join("gone-git.removing/x")).unwrap();
    let busy = lock_file(&r.join("busy.lock")).unwrap();
    busy.lock_shared().unwrap();

    let swept = sweep(r, 1500, hour * 24, SystemTime::now());
    let exists = |k: &str| r.join(format!("{k}.git")).exists();
    assert!(!exists("stale"), "past the maximum age");
    assert!(!exists("old"), "least recently used past the cap");
    assert!(exists("busy"), "in use: kept even over the cap");
    assert!(
        !exists("new"),
        "next least recently used, the busy one skipped"
    );
    assert!(r.join("new.lock").exists(), "lock files stay");
    assert!(
        !r.join("gone-git.removing").exists(),
        "an unfinished removal is finished"
    );
    assert_eq!(
        swept,
        crate::git::object_cache_sweep::Swept {
            removed: 3,
            kept_bytes: 1000
        }
    );
    drop(busy);
    let swept = sweep(r, 1500, hour * 24, SystemTime::now());
    assert_eq!(swept.removed, 0, "within bounds");
    assert!(exists("busy"));
}
