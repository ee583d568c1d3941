//! The sandbox every agent process tree runs in (`docs/sandbox.md` has the threat model).
//!
//! One mechanism, chosen at start-up ([`Sandbox::detect`]): bubblewrap, with a user, PID, IPC
//! and UTS namespace and a private mount namespace. Inside, the root file system is read-only,
//! the worker's work dir (every other job's checkout and HOME), its config file and the
//! configured hidden paths are replaced by empty read-only ones, `/proc` shows only the
//! agent's own processes, `/tmp` is private, and only the job's own directories (plus the
//! configured shared caches) are writable. The network is the host's. The namespace ends with
//! its first process, so nothing the agent starts outlives it, and with the worker
//! (`--die-with-parent`). Where the worker runs as root, the agent runs as an unprivileged user.
//!
//! - [`bwrap`]: the bubblewrap command line for one agent.
//! - [`owner`]: handing a job's directories to the agents' user when the worker is root.

mod bwrap;
mod owner;

pub use owner::AGENT_UMASK;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;

/// Which mechanism confines the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Bubblewrap,
    /// Agents run unconfined (`sandbox.mode = "off"`, or `auto` with nothing available).
    None,
}

impl Mechanism {
    /// The label of `harness_sandbox_active` and of `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Bubblewrap => "bubblewrap",
            Mechanism::None => "none",
        }
    }

    pub const ALL: [Mechanism; 2] = [Mechanism::Bubblewrap, Mechanism::None];
}

/// Why the worker cannot start with the sandbox it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "sandbox.mode is \"required\" but no sandbox can be applied: {} ({}; see \
         docs/sandbox.md, or set sandbox.mode = \"auto\" or \"off\")",
        .0,
        hint(.0)
    )]
    Unavailable(String),
    #[error("cannot create the work dir {}: {source}", path.display())]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The sandbox agents run in, as detected at start-up.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mechanism: Mechanism,
    bwrap: PathBuf,
    /// Directories agents see empty and read-only.
    hidden_dirs: Vec<PathBuf>,
    /// Files agents see empty.
    hidden_files: Vec<PathBuf>,
    /// Writable for every agent (the configured shared caches).
    writable: Vec<PathBuf>,
    /// The user and group agents run as, when the worker is root.
    run_as: Option<(u32, u32)>,
}

/// What to do about a probe that failed for `why` (bubblewrap's own message, or ours).
fn hint(why: &str) -> &'static str {
    if why.contains("cannot run") || why.contains("No such file or directory (os error 2)") {
        "install bubblewrap, or point sandbox.bwrap at it"
    } else if why.contains("mount proc") {
        "the container's /proc is masked: give the pod procMount: Unmasked (Docker: \
         --security-opt systempaths=unconfined)"
    } else if why.contains("namespace") {
        "unprivileged user namespaces are refused: by the container's seccomp or AppArmor \
         profile, or by the kernel's user namespace settings"
    } else if why.contains("uid map") || why.contains("Operation not permitted") {
        "a capability the sandbox needs was dropped: run the worker as a non-root user, or keep \
         SETUID, SETGID, CHOWN, FOWNER, DAC_OVERRIDE and KILL"
    } else {
        "install bubblewrap and allow unprivileged user namespaces"
    }
}

/// How long the start-up probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl Sandbox {
    /// No confinement (tests of the unsandboxed path, `sandbox.mode = "off"`).
    pub fn none() -> Self {
        Self {
            mechanism: Mechanism::None,
            bwrap: PathBuf::new(),
            hidden_dirs: Vec::new(),
            hidden_files: Vec::new(),
            writable: Vec::new(),
            run_as: None,
        }
    }

    /// Chooses the mechanism for `config`: bubblewrap when a probe run of it works (as the user
    /// agents will run as), else none (`auto`, with a warning) or an error (`required`).
    /// `sandbox.mode = "off"` skips the probe.
    pub async fn detect(config: &Config) -> Result<Self, SandboxError> {
        let cfg = &config.sandbox;
        let run_as = (crate::sys::effective_uid() == 0).then_some((cfg.uid, cfg.gid));
        if cfg.mode == "off" {
            tracing::warn!("sandbox: off (sandbox.mode = \"off\"): agents run unconfined, as the worker's own user, and see what it sees");
            return Ok(Self::none());
        }
        // Made now if missing: a work dir that does not exist yet could not be hidden, and
        // the first job would make it visible.
        let work_dir = config.work_dir();
        if let Err(e) = crate::owned_dir::create_private(&work_dir) {
            return Err(SandboxError::WorkDir {
                path: work_dir,
                source: e,
            });
        }
        let mut hidden: Vec<PathBuf> = vec![work_dir];
        hidden.extend(config.loaded_from.clone());
        hidden.extend(cfg.hidden.iter().map(PathBuf::from));
        let (hidden_dirs, hidden_files) = split_existing(&hidden);
        let sandbox = Self {
            mechanism: Mechanism::Bubblewrap,
            bwrap: PathBuf::from(&cfg.bwrap),
            hidden_dirs,
            hidden_files,
            writable: resolve_existing(cfg.writable.iter().map(PathBuf::from)),
            run_as,
        };
        match sandbox.probe().await {
            Ok(()) => {
                tracing::info!(
                    mechanism = "bubblewrap",
                    run_as = run_as.map_or_else(|| "the worker's user".to_owned(), |(u, g)| format!("{u}:{g}")),
                    "sandbox: bubblewrap (user, PID, IPC and mount namespaces; read-only root; the work dir, the config file and {} hidden path(s) out of reach; writable: the job's own directories)",
                    sandbox.hidden_dirs.len() + sandbox.hidden_files.len()
                );
                Ok(sandbox)
            }
            Err(why) if cfg.mode == "required" => Err(SandboxError::Unavailable(why)),
            Err(why) => {
                tracing::warn!(reason = %why, "sandbox: none available ({why}): agents run unconfined; set sandbox.mode = \"required\" to refuse to start instead");
                Ok(Self {
                    run_as,
                    ..Self::none()
                })
            }
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user and group agents run as, when it is not the worker's own.
    pub fn run_as(&self) -> Option<(u32, u32)> {
        self.run_as
    }

    /// A command that runs `program args` for one agent. `own` are the job's own directories,
    /// the only writable ones besides the shared caches; `cwd` is where the agent starts.
    pub fn command(
        &self,
        program: &str,
        args: &[String],
        cwd: &Path,
        own: &[PathBuf],
    ) -> tokio::process::Command {
        let mut cmd = match self.mechanism {
            Mechanism::Bubblewrap => {
                // Resolved like the hidden paths, for the same reason.
                let own: Vec<PathBuf> = own
                    .iter()
                    .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                    .collect();
                let mut cmd = tokio::process::Command::new(&self.bwrap);
                cmd.args(bwrap::args(self, cwd, &own))
                    .arg("--")
                    .arg(program)
                    .args(args);
                cmd
            }
            Mechanism::None => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args);
                cmd
            }
        };
        cmd.current_dir(cwd);
        if let Some((uid, gid)) = self.run_as {
            // std drops the supplementary groups too when it switches from root.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Sets the worker process up for agents run as another user: its umask lets the agents'
    /// group write what the worker adds to their directories, and libgit2 accepts checkouts
    /// the agents' user owns. Every process stays not dumpable, so no process of the same user
    /// can read the worker's memory or environment. Call it at start-up, before any git work.
    pub fn apply_to_process(&self) {
        if let Err(e) = crate::sys::set_not_dumpable() {
            tracing::warn!(error = %e, "cannot make the worker not dumpable");
        }
        if self.run_as.is_some() {
            crate::sys::set_umask(AGENT_UMASK);
            crate::sys::set_git_owner_validation(false);
        }
    }

    /// Gives `dirs` (a job's own directories) to the agents' user, when agents run as another
    /// user than the worker, and lets that user pass (not list) the directories on the way to
    /// them that lie inside one of `roots` (the work dir, Codex's home root); a no-op when the
    /// agents run as the worker's user. Blocking: walks every entry.
    pub fn hand_over(&self, dirs: &[PathBuf], roots: &[PathBuf]) -> std::io::Result<()> {
        let Some((uid, gid)) = self.run_as else {
            return Ok(());
        };
        for dir in dirs {
            let on_the_way = dir
                .ancestors()
                .skip(1)
                .filter(|a| roots.iter().any(|r| a.starts_with(r)));
            for ancestor in on_the_way {
                owner::make_traversable(ancestor)?;
            }
            owner::hand_over(dir, uid, gid)?;
        }
        Ok(())
    }

    /// How the process run with [`Sandbox::command`] ended, as if it had run unconfined.
    /// Bubblewrap, the init of the agent's PID namespace, exits 128 + N when the agent dies
    /// of signal N (as a shell reports it); that is read back as the signal, so a failure can
    /// say which signal killed the agent.
    pub fn unwrap_status(&self, status: std::process::ExitStatus) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        match (self.mechanism, status.code()) {
            // A wait status with a signal number in its low bits: killed by that signal.
            (Mechanism::Bubblewrap, Some(code @ 129..=159)) => {
                std::process::ExitStatus::from_raw(code - 128)
            }
            _ => status,
        }
    }

    /// One run of `true` inside the sandbox, as an agent would be run.
    async fn probe(&self) -> Result<(), String> {
        let root = Path::new("/");
        let mut cmd = self.command("true", &[], root, &[]);
        cmd.env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let run = tokio::time::timeout(PROBE_TIMEOUT, cmd.output()).await;
        match run {
            Err(_) => Err(format!("{} did not finish in time", self.bwrap.display())),
            Ok(Err(e)) => Err(format!("cannot run {}: {e}", self.bwrap.display())),
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(format!(
                "{} failed: {}",
                self.bwrap.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
}

/// The paths of `hidden` that exist, as directories and files, resolved as in
/// [`resolve_existing`].
fn split_existing(hidden: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    resolve_existing(hidden.iter().cloned())
        .into_iter()
        .partition(|p| p.is_dir())
}

/// The paths that exist, with every symlink on the way resolved and each named once.
/// Bubblewrap mounts at a path inside the new root, where a symlink that points elsewhere
/// (`/var/run -> /run`, say) leads out of it, and the mount fails: one such path would cost
/// the whole sandbox.
fn resolve_existing(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut resolved: Vec<PathBuf> = Vec::new();
    for path in paths {
        if let Ok(real) = std::fs::canonicalize(&path) {
            if !resolved.contains(&real) {
                resolved.push(real);
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests;
