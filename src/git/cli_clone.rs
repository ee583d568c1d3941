//! Clones with the git CLI, over `file://`, `http://` and `https://`.
//!
//! libgit2's local transport cannot clone shallow and builds a brand-new pack with a delta
//! search for every clone; `git upload-pack` sends the packs on disk as they are. Over HTTP,
//! libgit2 receives and indexes the pack in the worker's own memory, a little slower than git;
//! `git clone` does it in a child process whose memory ends with it. Fetches, pushes and
//! probes stay with libgit2.
//!
//! The child sees no system or user configuration and no templates (nothing of the host's git
//! setup, no hooks), an environment cleared down to `PATH` (plus, over HTTP, the proxy and CA
//! variables the worker itself has, so it connects the way the worker would), is never
//! prompted on a terminal, runs in its own process group so a cancel or a timeout stops all
//! of it, and keeps only the tail of what it says. It may use only the URL's own transport
//! (`GIT_ALLOW_PROTOCOL`), so neither a redirect nor anything else switches transport.
//!
//! Over HTTP, as with libgit2: only the first request may be redirected
//! (`http.followRedirects=initial`); a transfer that stays silent for the worker's network
//! read timeout is abandoned (`http.lowSpeedTime`); the token is offered only to the URL's
//! scheme, host and port, and reaches git only through its askpass program and its environment
//! ([`super::askpass`]), never an argv, a file or `.git/config`. git gets the URL without user
//! info, so its first request goes without credentials (a user name alone would make curl send
//! it with an empty password, a failed attempt at the host); `origin` is then set to the job's
//! URL (at most the user name `x-access-token`). A refused or missing token is a
//! [`GitError::Auth`], as libgit2's refused credential is.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

use super::askpass::Askpass;
use super::{clean, GitError, GitRemote};
use crate::redact::Secret;

const OP: &str = "clone";
/// What is kept of git's stderr for an error message.
const STDERR_TAIL_BYTES: usize = 4096;
/// How often a running clone looks at its cancel token.
const POLL: Duration = Duration::from_millis(20);
/// What a network clone inherits from the worker's environment besides `PATH`: the proxy
/// (curl reads both spellings, and only the lower-case `http_proxy`) and CA settings.
const NETWORK_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
];

/// The transports cloned with the git CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    File,
    Http,
    Https,
}

impl Transport {
    /// The transport of `url` when the CLI clones it (`file://`, `http://`, `https://`).
    pub(crate) fn of(url: &str) -> Option<Self> {
        let scheme = url.split_once("://")?.0;
        [
            ("file", Transport::File),
            ("http", Transport::Http),
            ("https", Transport::Https),
        ]
        .into_iter()
        .find(|(name, _)| scheme.eq_ignore_ascii_case(name))
        .map(|(_, transport)| transport)
    }

    fn protocol(self) -> &'static str {
        match self {
            Transport::File => "file",
            Transport::Http => "http",
            Transport::Https => "https",
        }
    }
}

/// `git clone --single-branch --branch <branch> [--depth 1] <url> <dir>`, as libgit2's clone
/// would leave it: `origin` at the job's URL fetching only `branch`, the branch checked out.
pub(crate) fn clone_branch(
    remote: &GitRemote,
    branch: &str,
    dir: &Path,
    shallow: bool,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    if cancel.is_cancelled() {
        return Err(GitError::Cancelled { op: OP });
    }
    let Some(transport) = Transport::of(remote.url()) else {
        return Err(GitError::Git {
            op: OP,
            message: "not a file, http or https URL".to_owned(),
        });
    };
    let token = remote.auth().secret();
    let url = without_user(remote.url(), transport)?;
    let mut cmd = git_command(transport, super::network_read_timeout());
    clone_args(&mut cmd, &url, branch, dir, shallow);
    run_with_token(cmd, transport, &url, token, cancel)?;
    if url != remote.url() {
        let repo = super::open(OP, dir)?;
        repo.remote_set_url("origin", remote.url())
            .map_err(|e| GitError::local(OP, e))?;
    }
    Ok(())
}

/// Runs `cmd`, a git command that talks to `url`, with the job's token offered through an
/// askpass program when the transport takes one.
pub(super) fn run_with_token(
    mut cmd: Command,
    transport: Transport,
    url: &str,
    token: Option<&Secret>,
    cancel: &CancellationToken,
) -> Result<(), GitError> {
    // Kept until git has ended: dropping it removes the program.
    let askpass = match (transport, token) {
        (Transport::File, _) | (_, None) => None,
        (_, Some(token)) => {
            let askpass = Askpass::create()?;
            askpass.install(&mut cmd, url, token)?;
            Some(askpass)
        }
    };
    let ran = run(cmd, cancel, token);
    drop(askpass);
    ran
}

/// `url` without user info (an http(s) URL's user name comes from the askpass program).
pub(super) fn without_user(url: &str, transport: Transport) -> Result<String, GitError> {
    if transport == Transport::File {
        return Ok(url.to_owned());
    }
    let invalid = || GitError::Git {
        op: OP,
        message: "the clone URL is not a valid http(s) URL".to_owned(),
    };
    let mut parsed = Url::parse(url).map_err(|_| invalid())?;
    if parsed.username().is_empty() && parsed.password().is_none() {
        return Ok(url.to_owned());
    }
    parsed.set_password(None).map_err(|()| invalid())?;
    parsed.set_username("").map_err(|()| invalid())?;
    Ok(parsed.into())
}

/// `git` with the settings every command here runs with, before its subcommand; no
/// credential: [`Askpass::install`] adds it.
pub(super) fn git_command(transport: Transport, read_timeout: Option<Duration>) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", transport.protocol())
        .env("LC_ALL", "C")
        // The remote's owner is whoever the job's URL names; libgit2 did not ask either.
        .args(["-c", "safe.directory=*", "-c", "credential.helper="])
        // Writing a large work tree is CPU-bound: a few processes share it (git's default is
        // one), at most four so that concurrent jobs do not crowd each other out.
        .arg("-c")
        .arg(format!("checkout.workers={}", checkout_workers()));
    if transport != Transport::File {
        for name in NETWORK_ENV {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.args(["-c", "http.followRedirects=initial"]);
        if let Some(timeout) = read_timeout {
            // Below one byte a second for the read timeout: the peer stopped answering.
            let secs = timeout.as_millis().div_ceil(1000).max(1);
            cmd.args(["-c", "http.lowSpeedLimit=1", "-c"])
                .arg(format!("http.lowSpeedTime={secs}"));
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// How many processes a clone's checkout uses: the CPUs this process may run on, 1 to 4.
fn checkout_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// The clone's subcommand and arguments, after [`git_command`].
pub(super) fn clone_args(cmd: &mut Command, url: &str, branch: &str, dir: &Path, shallow: bool) {
    cmd.args([
        "clone",
        "--quiet",
        "--no-tags",
        "--single-branch",
        "--template=",
    ])
    .arg("--branch")
    .arg(branch);
    if shallow {
        cmd.args(["--depth", "1"]);
    }
    cmd.arg("--").arg(url).arg(dir);
}

/// Runs `cmd` to its end, or kills its process group when `cancel` fires.
pub(super) fn run(
    mut cmd: Command,
    cancel: &CancellationToken,
    token: Option<&Secret>,
) -> Result<(), GitError> {
    let mut child = cmd.spawn().map_err(|e| GitError::Git {
        op: OP,
        message: format!("cannot run git: {e}"),
    })?;
    // A reader thread keeps the pipe drained whatever git prints, holding only the tail.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        if let Some(mut pipe) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL_BYTES * 2 {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
        tail
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if cancel.is_cancelled() => {
                // The group git leads: its id stays valid until git is reaped below.
                crate::sys::kill_group(child.id() as i32, libc::SIGKILL);
                let _ = child.wait();
                let _ = reader.join();
                return Err(GitError::Cancelled { op: OP });
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                return Err(GitError::Git {
                    op: OP,
                    message: format!("waiting for git failed: {e}"),
                })
            }
        }
    };
    if status.success() {
        let _ = reader.join();
        return Ok(());
    }
    let tail = reader.join().unwrap_or_default();
    Err(failure(&status.to_string(), &tail, token))
}

/// git's failure as a [`GitError`]: an authentication failure when git says the credential
/// was refused or could not be given, else a generic one; either way redacted.
fn failure(status: &str, stderr: &[u8], token: Option<&Secret>) -> GitError {
    let said = clean(&String::from_utf8_lossy(stderr), token);
    let said = crate::redact::tail_chars(&said, STDERR_TAIL_BYTES);
    let message = if said.is_empty() {
        format!("git {status}")
    } else {
        said.to_owned()
    };
    if super::remedy::says_auth_failed(&message) {
        GitError::Auth { op: OP, message }
    } else {
        GitError::Git { op: OP, message }
    }
}

#[cfg(test)]
#[path = "cli_clone_tests.rs"]
mod tests;
