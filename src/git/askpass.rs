//! How the job's token reaches a `git` process: its `GIT_ASKPASS` program.
//!
//! git runs `$GIT_ASKPASS "<prompt>"` for each credential it needs and reads the answer from the
//! program's stdout. The program here is a fixed POSIX shell script (it holds no secret) in a
//! private directory (0700) made for one git process and removed when it ends (a worker killed
//! meanwhile leaves it behind, holding nothing secret). The answers live only in that git
//! process's environment (and so in its askpass child's, which answers with `printf`, a shell
//! builtin: no argv of any process holds them). Nothing that holds the token touches a disk,
//! an argv or a config file.
//!
//! The script answers only the two prompts git asks for the job's own origin
//! (`Username for 'https://host'`, then `Password for 'https://x-access-token@host'`); any
//! other (a redirect to another host, a proxy asking for its own credential) gets no answer,
//! so git fails with "could not read Username", an authentication failure, and the token never
//! leaves for a host it is not for. The worker's own binary could answer as well, but the
//! library's tests run in a test harness that cannot; a script works for both.
//!
//! A process of the same user that is not sandboxed can read a running git's environment, as
//! it can read anything else of that user's; the sandboxed agents run in their own PID
//! namespace with a private `/tmp`, and agents run as another user cannot read either.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

use url::Url;

use super::credentials::TOKEN_USERNAME;
use super::GitError;
use crate::redact::Secret;

const USER_PROMPT_VAR: &str = "HARNESS_GIT_ASKPASS_USER_PROMPT";
const USER_VAR: &str = "HARNESS_GIT_ASKPASS_USER";
const PASSWORD_PROMPT_VAR: &str = "HARNESS_GIT_ASKPASS_PASSWORD_PROMPT";
const PASSWORD_VAR: &str = "HARNESS_GIT_ASKPASS_PASSWORD";

/// Quoted expansions in `case` patterns match literally; `printf` is a builtin, so the answer
/// is written without a child process whose argv could show it.
const SCRIPT: &str = r#"#!/bin/sh
case "$1" in
"$HARNESS_GIT_ASKPASS_USER_PROMPT") printf '%s\n' "$HARNESS_GIT_ASKPASS_USER" ;;
"$HARNESS_GIT_ASKPASS_PASSWORD_PROMPT") printf '%s\n' "$HARNESS_GIT_ASKPASS_PASSWORD" ;;
*) exit 1 ;;
esac
"#;

/// The askpass program of one git process; dropping it removes its directory.
pub(crate) struct Askpass {
    _dir: tempfile::TempDir,
    program: PathBuf,
}

impl Askpass {
    /// Writes the script into a fresh private directory under the temporary directory.
    pub(crate) fn create() -> Result<Self, GitError> {
        let failed = |e: std::io::Error| GitError::Io {
            op: "clone",
            message: format!("cannot write the askpass program: {e}"),
        };
        // Private whatever the umask: mkdir's mode only loses bits to it.
        let dir = tempfile::Builder::new()
            .prefix("harness-askpass-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(failed)?;
        let program = dir.path().join("askpass");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&program)
            .map_err(failed)?;
        file.write_all(SCRIPT.as_bytes()).map_err(failed)?;
        // Closed before any git runs it: an executable still open for writing is ETXTBSY.
        drop(file);
        Ok(Self { _dir: dir, program })
    }

    #[cfg(test)]
    pub(crate) fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// Makes `cmd` (a git run for `url`, which carries no user info) answer git's prompts for
    /// `url`'s origin with the token user name and `token`, and nothing else.
    pub(crate) fn install(
        &self,
        cmd: &mut Command,
        url: &str,
        token: &Secret,
    ) -> Result<(), GitError> {
        let (user_prompt, password_prompt) = prompts(url)?;
        cmd.env("GIT_ASKPASS", &self.program)
            .env(USER_PROMPT_VAR, user_prompt)
            .env(USER_VAR, TOKEN_USERNAME)
            .env(PASSWORD_PROMPT_VAR, password_prompt)
            .env(PASSWORD_VAR, token.expose());
        Ok(())
    }
}

/// The prompts git shows for `url`'s origin, as its `credential_describe` spells them:
/// `scheme://[user@]host[:port]`, the port only when the URL names one.
fn prompts(url: &str) -> Result<(String, String), GitError> {
    let invalid = || GitError::Git {
        op: "clone",
        message: "the clone URL is not a valid http(s) URL".to_owned(),
    };
    let parsed = Url::parse(url).map_err(|_| invalid())?;
    let host = parsed.host_str().ok_or_else(invalid)?;
    let host = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let scheme = parsed.scheme();
    Ok((
        format!("Username for '{scheme}://{host}': "),
        format!("Password for '{scheme}://{TOKEN_USERNAME}@{host}': "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(askpass: &Askpass, url: &str, prompt: &str) -> (bool, String) {
        let mut cmd = Command::new(askpass.program());
        cmd.env_clear().arg(prompt);
        askpass
            .install(&mut cmd, url, &Secret::new("tok-askpass-123"))
            .unwrap();
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn answers_only_the_prompts_of_the_urls_own_origin() {
        let askpass = Askpass::create().unwrap();
        let url = "http://127.0.0.1:8080/r.git";
        assert_eq!(
            ask(&askpass, url, "Username for 'http://127.0.0.1:8080': "),
            (true, "x-access-token\n".to_owned())
        );
        assert_eq!(
            ask(
                &askpass,
                url,
                "Password for 'http://x-access-token@127.0.0.1:8080': "
            ),
            (true, "tok-askpass-123\n".to_owned())
        );
        for other in [
            "Username for 'http://127.0.0.2:8080': ",
            "Password for 'http://x-access-token@127.0.0.1:8081': ",
            "Password for 'https://x-access-token@127.0.0.1:8080': ",
            "Password for 'http://x-access-token@127.0.0.1:8080/r.git': ",
            "Password for proxy 'http://proxy:3128': ",
            "*",
        ] {
            assert_eq!(ask(&askpass, url, other), (false, String::new()), "{other}");
        }
    }

    #[test]
    fn the_program_is_private_holds_no_secret_and_goes_with_its_owner() {
        use std::path::Path;
        let askpass = Askpass::create().unwrap();
        let program = askpass.program().to_path_buf();
        let dir = program.parent().unwrap().to_path_buf();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(std::fs::read_to_string(&program).unwrap(), SCRIPT);
        drop(askpass);
        assert!(!dir.exists());
    }

    #[test]
    fn prompts_name_scheme_host_and_only_an_explicit_port() {
        assert_eq!(
            prompts("https://github.com/o/r.git").unwrap(),
            (
                "Username for 'https://github.com': ".to_owned(),
                "Password for 'https://x-access-token@github.com': ".to_owned()
            )
        );
        assert_eq!(
            prompts("https://github.com:8443/o/r.git").unwrap().0,
            "Username for 'https://github.com:8443': "
        );
        assert!(prompts("not a url").is_err());
    }
}
