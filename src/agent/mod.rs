//! Agent runners and their supervision: two harness families over shared parts.
//!
//! - [`pi`]: the Pi harness (seed 5.1): its runner (invocation, environment, exit decision),
//!   the parser of its JSON event stream (summary, stats, usage, todo progress, tool spans,
//!   terminal errors), and the per-job HOME it reads (`AGENTS.md`, `models.json`, installed
//!   extensions).
//! - [`cli`]: the Claude Code and Codex harnesses (seed 5.3 to 5.5): the runner they share,
//!   each CLI's arguments, isolated config home and stream parser, over shared stream types.
//!
//! Shared by both:
//!
//! - this module: [`run_agent`], which runs the job's harness as an [`Invocation`] says, and
//!   what every runner reports through ([`AgentObserver`], [`AgentRun`], [`AgentError`]).
//! - [`process`]: runs an agent CLI in its own process group, drains stdout and stderr
//!   concurrently with bounded memory, and kills the whole group (TERM, grace, KILL) on
//!   cancellation or when the future is dropped.
//! - [`invocation`]: what a run is started with, and the environment the agent gets.
//! - [`guard`]: the progress guard every runner feeds its completed tool calls to (seed 5.2).
//! - [`captured`]: the job's own shell commands beside the agent (install, checks), run as
//!   the agent is.

pub mod captured;
pub mod cli;
pub mod guard;
pub mod invocation;
pub mod pi;
pub mod process;
pub mod skills;
pub mod trajectory;
pub mod upstream;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::job::outcome::{CallMetric, RunStats, TodoProgress, ToolSpan, Usage};
use crate::job::{AgentJob, Harness};

pub use captured::{run_captured, Captured, CapturedCommand};
pub use cli::{run_claude, run_codex};
pub use guard::{GuardLimits, ProgressGuard};
pub use invocation::Invocation;
pub use pi::{
    compose_agents_md, detect_web_search_provider, prepare_pi_home, prepare_pi_home_with, run_pi,
};

/// The name the Pi-only code knew the invocation by.
pub type PiInvocation = Invocation;

/// Runs the job's harness (Pi, Claude Code or Codex) as `inv` says; `inv.command` must be
/// that harness's program. See [`run_pi`], [`run_claude`] and [`run_codex`].
pub async fn run_agent(
    job: &AgentJob,
    inv: &Invocation,
    observer: Arc<dyn AgentObserver>,
    cancel: CancellationToken,
) -> Result<AgentRun, AgentError> {
    match job.auth.harness() {
        Harness::Pi => run_pi(job, inv, observer, cancel).await,
        Harness::ClaudeCode => run_claude(job, inv, observer, cancel).await,
        Harness::Codex => run_codex(job, inv, observer, cancel).await,
    }
}

/// Epoch milliseconds, the clock of tool spans.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Receives what an agent run reports while it runs. Called from the runner's task, so
/// implementations must be quick and must not block.
pub trait AgentObserver: Send + Sync {
    /// Any stdout or stderr output (resets the inactivity watchdog later).
    fn on_activity(&self);
    /// A new todo snapshot (seed 5.1.4).
    fn on_progress(&self, progress: TodoProgress);
    /// One completed tool call, its bodies as the parser kept them (not yet redacted).
    fn on_span(&self, span: ToolSpan);
    /// One completed model call, its answer as the parser kept it (not yet redacted).
    fn on_call(&self, call: CallMetric);
    /// The tool (MCP) servers the agent reported connecting (Claude Code's `init` event).
    fn on_tool_servers(&self, _servers: Vec<crate::job::outcome::ToolServer>) {}
}

/// Signs that the final answer was cut off or missing (seed 5.1.6), read by the structured
/// output resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunDiagnostics {
    /// Some assistant message hit the output-token ceiling.
    pub truncated: bool,
    /// The last assistant message hit the ceiling.
    pub final_truncated: bool,
    /// The last assistant message has no text (e.g. a final turn of tool calls only).
    pub final_answer_empty: bool,
}

/// A run that ended cleanly.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    /// The agent's final answer (or the seed's fallbacks). Not redacted, as in the seed.
    pub summary: String,
    pub stats: RunStats,
    pub usage: Option<Usage>,
    /// The redacted, trimmed last 1500 chars of stderr, when there was any.
    pub stderr_tail: Option<String>,
    pub diagnostics: RunDiagnostics,
}

/// Why an agent run did not produce an [`AgentRun`]. Every text is redacted.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The cancel token fired (a watchdog or shutdown); the caller knows why and reports that.
    #[error("agent run aborted")]
    Cancelled,
    /// The run was stopped from inside: the progress guard tripped (seed 5.2).
    #[error("{reason}{}", stderr_suffix(.stderr_tail))]
    Stopped {
        reason: String,
        stderr_tail: Option<String>,
    },
    /// The process exited non-zero or was killed by a signal (`code` is then `None`).
    #[error("{command} {}: {}", how_it_ended(*.code, *.signal), or_no_output(.output_tail))]
    Exited {
        /// The harness's CLI as the seed names it: `pi`, `claude` or `codex`.
        command: &'static str,
        code: Option<i32>,
        signal: Option<i32>,
        /// Redacted: Pi's last 500 chars of stderr (or of stdout when stderr was empty), a
        /// subscription CLI's last 700 chars of stderr.
        output_tail: String,
    },
    /// The CLI exited 0 but the run failed: Pi's last model call failed or its retries ran
    /// out (seed 5.1.5, with the failed-last-message rule the seed missed), Claude Code's
    /// result was an error (Q18), Codex's last turn failed.
    #[error("{message}{}", stderr_suffix(.stderr_tail))]
    RunFailed {
        message: String,
        stderr_tail: Option<String>,
        /// What the run did before it failed, summed over every attempt.
        stats: RunStats,
        usage: Option<Usage>,
    },
    /// The model endpoint refused the run (quota, rate limit, credential): `detail` is the
    /// run's failure as [`AgentError::RunFailed`] or [`AgentError::Exited`] would say it.
    #[error("{detail}\n{remedy}")]
    LlmUpstream {
        detail: String,
        remedy: &'static str,
        stats: RunStats,
        usage: Option<Usage>,
    },
    /// Pi exited 0 but no terminal record was read and a record was dropped for its size:
    /// the run's outcome is unknown (seed-later 6.3).
    #[error(
        "pi exited 0 but its terminal record was dropped for exceeding the JSONL line cap ({oversized} oversized record(s)), so the run's outcome is unknown{}",
        stderr_tail.as_deref().map(|t| format!(". {t}")).unwrap_or_default()
    )]
    TerminalRecordDropped {
        oversized: u64,
        stderr_tail: Option<String>,
    },
    /// The program could not be started (not found, not executable).
    #[error("could not start {command} ({program}): {source}")]
    Spawn {
        /// The harness's CLI, as in [`AgentError::Exited`].
        command: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Preparing the run or reading the child's status failed.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What a CLI said, or that it said nothing (the seed ended such a text at the colon).
fn or_no_output(tail: &str) -> &str {
    if tail.trim().is_empty() {
        "(no stderr output)"
    } else {
        tail
    }
}

/// `exited with code N`, or `killed by SIGKILL` (seed-later 4.5).
fn how_it_ended(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => match signal_name(signal) {
            Some(name) => format!("killed by {name}"),
            None => format!("killed by signal {signal}"),
        },
        (None, None) => "killed by signal".to_owned(),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

fn stderr_suffix(tail: &Option<String>) -> String {
    match tail {
        Some(t) if !t.is_empty() => format!(" Agent stderr: {t}"),
        _ => String::new(),
    }
}

impl AgentError {
    /// True when the run ended because the cancel token fired; the caller then reports the
    /// watchdog's or the shutdown's reason instead of this error.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, AgentError::Cancelled)
    }

    /// What the failed run had spent before it failed, when its stream said.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            AgentError::RunFailed { usage, .. } | AgentError::LlmUpstream { usage, .. } => *usage,
            AgentError::Cancelled
            | AgentError::Stopped { .. }
            | AgentError::Exited { .. }
            | AgentError::TerminalRecordDropped { .. }
            | AgentError::Spawn { .. }
            | AgentError::Io { .. } => None,
        }
    }

    /// The contract's cause for this failure (a cancellation is never published: whoever
    /// cancelled reports its own).
    pub fn failure_cause(&self) -> crate::job::outcome::FailureCause {
        use crate::job::outcome::FailureCause;
        match self {
            AgentError::LlmUpstream { .. } => FailureCause::LlmUpstream,
            AgentError::TerminalRecordDropped { .. } => FailureCause::NoUsableOutput,
            AgentError::Cancelled
            | AgentError::Stopped { .. }
            | AgentError::Exited { .. }
            | AgentError::RunFailed { .. }
            | AgentError::Spawn { .. }
            | AgentError::Io { .. } => FailureCause::Agent,
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders shared by the agent module's tests.

    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::AgentObserver;
    use crate::job::outcome::{CallMetric, TodoProgress, ToolSpan};
    use crate::job::{parse_job, AgentJob, HarnessAuth, Mode, RepoSpec, ValidationPolicy};
    use crate::redact::Secret;

    pub const SESSION_TOKEN: &str = "sess-TEST-token-0123456789";
    pub const GH_TOKEN: &str = "ghs_testGitToken0123456789";

    pub fn job() -> AgentJob {
        AgentJob {
            job_id: "job-1".into(),
            mode: Mode::Coding,
            system_prompt: "You are a careful engineer.".into(),
            user_prompt: "Create hello.txt, update README.md, and commit.".into(),
            model: "mock-model".into(),
            auth: HarnessAuth::Pi {
                proxy_base_url: "http://127.0.0.1:9/v1".into(),
                session_token: Secret::new(SESSION_TOKEN),
            },
            gh_token: Secret::new(GH_TOKEN),
            repo: RepoSpec {
                owner: "acme".into(),
                name: "widgets".into(),
                base_branch: "main".into(),
                clone_url: "https://github.com/acme/widgets.git".into(),
                provider: None,
                service_directory: None,
            },
            branch: "main".into(),
            github_api_base: None,
            web_tools_guidance: None,
            web_search: false,
            full: false,
            merge_base: None,
            bootstrap: None,
            output: None,
            context_files: Vec::new(),
            infra: None,
            new_branch: Some("cat-factory/blk_1".into()),
            push_branch: None,
            commit_message: None,
            pr: None,
            no_changes_is_error: true,
            persistent_checkout: false,
            stream_follow_ups: false,
            guard_limits: None,
            validation_checks: None,
            dependency_install: None,
            test_secrets: Vec::new(),
            generator_secrets: Vec::new(),
            package_registries: Vec::new(),
            skills: Vec::new(),
            mcp_servers: Vec::new(),
            required_capabilities: Vec::new(),
        }
    }

    /// A valid job of `harness` (`pi`, `claude-code`, `codex`) with `extra` fields merged in.
    pub fn subscription_job(harness: &str, extra: serde_json::Value) -> AgentJob {
        let mut body = serde_json::json!({
            "jobId": "job-1",
            "mode": "coding",
            "systemPrompt": "You are the implementer.",
            "userPrompt": "Add a CONTRIBUTING.md.",
            "model": "example-model",
            "ghToken": "ghs_EXAMPLEnotarealtoken000000000000000",
            "repo": {
                "owner": "acme",
                "name": "widgets",
                "baseBranch": "main",
                "cloneUrl": "https://github.com/acme/widgets.git"
            },
            "branch": "main",
            "harness": harness,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), 1 << 20);
        parse_job(body.to_string().as_bytes(), &policy).unwrap()
    }

    /// Records everything and forwards activity to a channel so tests can sequence on it.
    pub struct Recorder {
        pub progress: Mutex<Vec<TodoProgress>>,
        pub spans: Mutex<Vec<ToolSpan>>,
        pub calls: Mutex<Vec<CallMetric>>,
        activity: mpsc::UnboundedSender<()>,
    }

    impl Recorder {
        pub fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
            let (tx, rx) = mpsc::unbounded_channel();
            let rec = Self {
                progress: Mutex::new(Vec::new()),
                spans: Mutex::new(Vec::new()),
                calls: Mutex::new(Vec::new()),
                activity: tx,
            };
            (rec, rx)
        }
    }

    impl AgentObserver for Recorder {
        fn on_activity(&self) {
            let _ = self.activity.send(());
        }
        fn on_progress(&self, progress: TodoProgress) {
            self.progress.lock().unwrap().push(progress);
        }
        fn on_span(&self, span: ToolSpan) {
            self.spans.lock().unwrap().push(span);
        }
        fn on_call(&self, call: CallMetric) {
            self.calls.lock().unwrap().push(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_follow_the_seed() {
        let exited = AgentError::Exited {
            command: "pi",
            code: Some(1),
            signal: None,
            output_tail: "boom".into(),
        };
        assert_eq!(exited.to_string(), "pi exited with code 1: boom");
        let signalled = AgentError::Exited {
            command: "claude",
            code: None,
            signal: Some(9),
            output_tail: String::new(),
        };
        assert_eq!(
            signalled.to_string(),
            "claude killed by SIGKILL: (no stderr output)"
        );
        let failed = AgentError::RunFailed {
            message: "401: denied".into(),
            stderr_tail: Some("warn".into()),
            stats: RunStats::default(),
            usage: None,
        };
        assert_eq!(failed.to_string(), "401: denied Agent stderr: warn");
        let quiet = AgentError::RunFailed {
            message: "401: denied".into(),
            stderr_tail: None,
            stats: RunStats::default(),
            usage: None,
        };
        assert_eq!(quiet.to_string(), "401: denied");
        assert_eq!(AgentError::Cancelled.to_string(), "agent run aborted");
        assert!(AgentError::Cancelled.is_cancelled());
        assert!(!exited.is_cancelled());
    }
}
