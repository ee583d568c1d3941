use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::*;
use crate::git::test_git::git;
use crate::git::GitAuth;

const TOKEN: &str = "tok-cli-clone-0123456789";

/// A bare repository with two commits on `main` and one on `other`.
fn origin(root: &Path) -> GitRemote {
    let seed = root.join("seed");
    std::fs::create_dir(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    for n in ["1", "2"] {
        std::fs::write(seed.join("f.txt"), n).unwrap();
        git(&seed, &["add", "f.txt"]);
        git(&seed, &["commit", "-qm", n]);
    }
    git(&seed, &["branch", "other"]);
    git(root, &["clone", "-q", "--bare", "seed", "origin.git"]);
    let url = format!("file://{}", root.join("origin.git").display());
    GitRemote::new(&url, GitAuth::none()).unwrap()
}

/// The clone's whole command, as [`clone_branch`] builds it.
fn command(
    url: &str,
    transport: Transport,
    branch: &str,
    dir: &Path,
    shallow: bool,
    read_timeout: Option<Duration>,
) -> Command {
    let mut cmd = git_command(transport, read_timeout);
    clone_args(&mut cmd, url, branch, dir, shallow);
    cmd
}

fn live() -> CancellationToken {
    CancellationToken::new()
}

#[test]
fn a_shallow_file_clone_holds_the_tip_of_its_branch_only() {
    let root = tempfile::tempdir().unwrap();
    let remote = origin(root.path());
    let dir = root.path().join("shallow");
    clone_branch(&remote, "main", &dir, true, &live()).unwrap();
    assert!(dir.join(".git/shallow").exists(), "depth 1");
    assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "2");
    let repo = git2::Repository::open(&dir).unwrap();
    assert_eq!(repo.head().unwrap().shorthand().ok(), Some("main"));
    let config = repo.config().unwrap();
    let fetch = config.get_string("remote.origin.fetch").unwrap();
    assert_eq!(fetch, "+refs/heads/main:refs/remotes/origin/main");
    assert_eq!(
        config.get_string("remote.origin.url").unwrap(),
        remote.url()
    );
    assert!(repo.find_reference("refs/remotes/origin/other").is_err());
    let full = root.path().join("full");
    clone_branch(&remote, "main", &full, false, &live()).unwrap();
    assert!(!full.join(".git/shallow").exists());
}

#[test]
fn a_missing_branch_is_gits_own_message_and_a_cancel_stops_before_anything() {
    let root = tempfile::tempdir().unwrap();
    let remote = origin(root.path());
    let err = clone_branch(&remote, "nope", &root.path().join("a"), true, &live()).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(!err.is_auth(), "{err}");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = clone_branch(&remote, "main", &root.path().join("b"), true, &cancel).unwrap_err();
    assert!(err.is_cancelled(), "{err}");
}

#[test]
fn the_cli_clones_file_and_http_urls_only() {
    assert_eq!(Transport::of("FILE:///x"), Some(Transport::File));
    assert_eq!(Transport::of("http://h/r.git"), Some(Transport::Http));
    assert_eq!(Transport::of("HTTPS://h/r.git"), Some(Transport::Https));
    for other in [
        "ssh://git@h/r.git",
        "git@h:r.git",
        "/srv/r.git",
        "ftp://h/r",
    ] {
        assert_eq!(Transport::of(other), None, "{other}");
    }
}

#[test]
fn the_token_is_in_no_argument_and_the_url_git_gets_has_no_user() {
    let url = without_user(
        "https://x-access-token@github.com/o/r.git",
        Transport::Https,
    )
    .unwrap();
    assert_eq!(url, "https://github.com/o/r.git");
    let dir = Path::new("/tmp/x");
    let mut cmd = command(
        &url,
        Transport::Https,
        "main",
        dir,
        true,
        Some(Duration::from_millis(120_500)),
    );
    let askpass = Askpass::create().unwrap();
    askpass
        .install(&mut cmd, &url, &Secret::new(TOKEN))
        .unwrap();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(args.iter().all(|a| !a.contains(TOKEN)), "{args:?}");
    for wanted in [
        "credential.helper=",
        "http.followRedirects=initial",
        "http.lowSpeedLimit=1",
        "http.lowSpeedTime=121",
        "--template=",
        "--depth",
        "https://github.com/o/r.git",
    ] {
        assert!(args.iter().any(|a| a == wanted), "{wanted}: {args:?}");
    }
    let envs: Vec<(String, String)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    let holding: Vec<&str> = envs
        .iter()
        .filter(|(_, v)| v.contains(TOKEN))
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(holding, ["HARNESS_GIT_ASKPASS_PASSWORD"]);
    let env = |name: &str| {
        envs.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(env("GIT_ALLOW_PROTOCOL"), Some("https"));
    assert_eq!(env("GIT_TERMINAL_PROMPT"), Some("0"));
    assert_eq!(env("GIT_CONFIG_NOSYSTEM"), Some("1"));
    assert_eq!(env("GIT_CONFIG_GLOBAL"), Some("/dev/null"));
    assert_eq!(env("GIT_ASKPASS").map(Path::new), Some(askpass.program()));
    let file = command("file:///r.git", Transport::File, "main", dir, false, None);
    let file_args: Vec<_> = file.get_args().collect();
    assert!(!file_args
        .iter()
        .any(|a| a.to_string_lossy().starts_with("http.")));
}

/// One request a [`Server`] saw: its request line and its `Authorization` header.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    authorization: Option<String>,
}

/// A tiny HTTP server on `ip`: `answer` gets each request line and returns the whole
/// response, or `None` to hold the connection open without answering.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(ip: &str, answer: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let url = format!("http://{}/r.git", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, answer) = (Arc::clone(&seen), Arc::new(answer));
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut authorization = None;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") {
                            authorization = Some(value.trim().to_owned());
                        }
                    }
                }
                let line = line.trim().to_owned();
                log.lock().unwrap().push(Seen {
                    line: line.clone(),
                    authorization,
                });
                match answer(&line) {
                    Some(response) => {
                        let _ = stream.write_all(response.as_bytes());
                    }
                    None => held.push(stream),
                }
            }
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn unauthorized(_: &str) -> Option<String> {
    Some(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned(),
    )
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn http_remote(url: &str, token: Option<&str>) -> GitRemote {
    let auth = token.map_or_else(GitAuth::none, |t| GitAuth::token(Secret::new(t)));
    GitRemote::new(url, auth).unwrap()
}

#[test]
fn a_refused_token_is_an_auth_error_that_never_shows_the_token() {
    let server = Server::start("127.0.0.1", unauthorized);
    let root = tempfile::tempdir().unwrap();
    // A user name in the URL is not sent on its own first (a failed attempt at the host).
    let url = server.url.replace("http://", "http://someone@");
    let err = clone_branch(
        &http_remote(&url, Some(TOKEN)),
        "main",
        &root.path().join("c"),
        true,
        &live(),
    )
    .unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN), "{err:?}");
    let offered: Vec<Option<String>> = server.seen().into_iter().map(|s| s.authorization).collect();
    let basic = format!(
        "Basic {}",
        base64(format!("x-access-token:{TOKEN}").as_bytes())
    );
    assert_eq!(
        offered,
        [None, Some(basic)],
        "anonymous, then the token once"
    );
    assert!(!root.path().join("c").exists());
}

#[test]
fn without_a_token_an_authenticating_remote_is_an_auth_error_and_gets_no_credential() {
    let server = Server::start("127.0.0.1", unauthorized);
    let root = tempfile::tempdir().unwrap();
    let remote = http_remote(&server.url, None);
    let err = clone_branch(&remote, "main", &root.path().join("c"), false, &live()).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(server.seen().iter().all(|s| s.authorization.is_none()));
}

#[test]
fn a_redirect_to_another_host_gets_no_token() {
    let elsewhere = Server::start("127.0.0.2", unauthorized);
    let target = elsewhere.url.clone();
    let server = Server::start("127.0.0.1", move |line| {
        let path = line.split(' ').nth(1).unwrap_or("/");
        let rest = path.strip_prefix("/r.git").unwrap_or(path);
        Some(format!(
            "HTTP/1.1 302 Found\r\nLocation: {target}{rest}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        ))
    });
    let root = tempfile::tempdir().unwrap();
    let remote = http_remote(&server.url, Some(TOKEN));
    let err = clone_branch(&remote, "main", &root.path().join("c"), true, &live()).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    let followed = elsewhere.seen();
    assert!(
        followed
            .first()
            .is_some_and(|s| s.line.contains("/r.git/info/refs?service=")),
        "the redirect was followed: {followed:?}"
    );
    let offered: Vec<Seen> = server
        .seen()
        .into_iter()
        .chain(elsewhere.seen())
        .filter(|s| s.authorization.is_some())
        .collect();
    assert!(offered.is_empty(), "{offered:?}");
}

#[test]
fn a_cancel_kills_a_clone_waiting_on_a_silent_server() {
    let server = Server::start("127.0.0.1", |_| None);
    let root = tempfile::tempdir().unwrap();
    let remote = http_remote(&server.url, Some(TOKEN));
    let cancel = CancellationToken::new();
    let (dir, token) = (root.path().join("c"), cancel.clone());
    let started = Instant::now();
    let clone = std::thread::spawn(move || clone_branch(&remote, "main", &dir, true, &token));
    while server.seen().is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    cancel.cancel();
    let err = clone.join().unwrap().unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_silent_server_is_given_up_after_the_read_timeout() {
    let server = Server::start("127.0.0.1", |_| None);
    let root = tempfile::tempdir().unwrap();
    let cmd = command(
        &server.url,
        Transport::Http,
        "main",
        &root.path().join("c"),
        true,
        Some(Duration::from_millis(1)),
    );
    let started = Instant::now();
    let err = run(cmd, &live(), None).unwrap_err();
    assert!(!err.is_auth() && !err.is_cancelled(), "{err:?}");
    assert!(err.to_string().contains("too slow"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn gits_failures_are_classified_and_redacted() {
    let auth = failure(
        "exit status: 128",
        format!("remote: HTTP Basic: Access denied {TOKEN}\nfatal: Authentication failed for 'https://h/r.git/'\n").as_bytes(),
        Some(&Secret::new(TOKEN)),
    );
    assert!(auth.is_auth(), "{auth:?}");
    assert!(!auth.to_string().contains(TOKEN), "{auth}");
    let prompt = failure(
        "exit status: 128",
        b"fatal: could not read Username for 'https://h': terminal prompts disabled\n",
        None,
    );
    assert!(prompt.is_auth(), "{prompt:?}");
    let forbidden = failure(
        "exit status: 128",
        b"fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403\n",
        None,
    );
    assert!(!forbidden.is_auth(), "as libgit2's 403: {forbidden:?}");
    let silent = failure("exit status: 128", b"", None);
    assert_eq!(silent.to_string(), "git clone: git exit status: 128");
}
