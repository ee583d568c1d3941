//! A job's failures and how its run ends, in one place.
//!
//! A flow returns `Result<_, Stop>`: [`Stop::Interrupted`] is an outcome (shutdown past the
//! grace, a lost channel: nothing is published, the delivery goes back), never an error with a
//! cause; so is [`Stop::WorkerFault`] (this worker cannot host the job: the delivery goes back
//! for a worker that can); [`Stop::Failed`] carries a [`FlowError`], which maps to exactly one failure cause of
//! the contract. The boundaries' own errors (git, agent, code host) convert with `?`: their
//! cancellations become the interruption, everything else a `FlowError`.

use crate::agent::AgentError;
use crate::forge::PrError;
use crate::git::GitError;
use crate::job::outcome::{FailureCause, PhaseTimings, ResultBody};
use crate::worker::warm::WarmError;
use crate::worker::workspace::ServiceDirError;

/// A failure of a flow, with its contract cause ([`FlowError::failure_cause`]).
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The git failure, then its fix on a line of its own when it has one.
    #[error("{}", with_remedy(.0, .0.remedy()))]
    Git(GitError),
    #[error(transparent)]
    Agent(AgentError),
    /// The stable first line, then the fix on a line of its own when there is one.
    #[error("{}", with_remedy(.0, .0.remedy().as_deref()))]
    Pr(PrError),
    #[error(transparent)]
    ServiceDir(#[from] ServiceDirError),
    #[error(transparent)]
    Warm(WarmError),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    /// The job's context files cannot be written where the agent reads them.
    #[error("cannot write the job's context files: {0}")]
    ContextFiles(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("a blocking task failed: {0}")]
    Task(String),
}

fn with_remedy(error: &dyn std::fmt::Display, remedy: Option<&str>) -> String {
    match remedy {
        Some(r) => format!("{error}\n{r}"),
        None => error.to_string(),
    }
}

impl FlowError {
    pub fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> FlowError {
        move |source| FlowError::Io { context, source }
    }

    pub fn failure_cause(&self) -> FailureCause {
        match self {
            // The repository's own layout makes the checkout unusable, too.
            FlowError::Git(_) | FlowError::ServiceDir(_) | FlowError::ContextFiles(_) => {
                FailureCause::Git
            }
            FlowError::Agent(e) => e.failure_cause(),
            FlowError::Pr(e) => e.failure_cause(),
            FlowError::Warm(_)
            | FlowError::Io { .. }
            | FlowError::Unsupported(_)
            | FlowError::Task(_) => FailureCause::Agent,
        }
    }
}

/// Why a flow ended without a result of its own.
#[derive(Debug)]
pub enum Stop {
    /// Stopped from outside: the job's token was cancelled.
    Interrupted,
    /// The worker, not the job, is at fault (its work dir cannot hold the job's workspace).
    WorkerFault(WorkerFault),
    Failed(FlowError),
}

/// Something wrong with this worker that stops it from running a job; `reason` is the label of
/// `harness_jobs_requeued_total`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WorkerFault {
    pub reason: &'static str,
    pub message: String,
}

impl From<FlowError> for Stop {
    fn from(e: FlowError) -> Self {
        Stop::Failed(e)
    }
}

impl From<GitError> for Stop {
    fn from(e: GitError) -> Self {
        if e.is_cancelled() {
            Stop::Interrupted
        } else {
            Stop::Failed(FlowError::Git(e))
        }
    }
}

impl From<AgentError> for Stop {
    fn from(e: AgentError) -> Self {
        if e.is_cancelled() {
            Stop::Interrupted
        } else {
            Stop::Failed(FlowError::Agent(e))
        }
    }
}

impl From<PrError> for Stop {
    fn from(e: PrError) -> Self {
        if e.is_cancelled() {
            Stop::Interrupted
        } else {
            Stop::Failed(FlowError::Pr(e))
        }
    }
}

impl From<ServiceDirError> for Stop {
    fn from(e: ServiceDirError) -> Self {
        Stop::Failed(e.into())
    }
}

/// How a run ended, as the delivery sees it.
#[derive(Debug)]
pub enum JobEnd {
    /// A terminal result, to publish and then ack.
    Finished(Box<ResultBody>),
    /// Stopped from outside (shutdown, lost channel): committed work was pushed as a checkpoint,
    /// no result is published, the delivery goes back to the queue.
    Interrupted,
    /// The result an earlier run recorded (the completion ref), to publish again as it is and
    /// then ack: counted as a replay, not as a job finished here.
    Replayed(Box<ResultBody>),
    /// This worker could not host the job: nothing is published, the delivery goes back.
    WorkerFault(WorkerFault),
}

/// `Phase timings: clone=3s, agent=41s. Failed in agent phase; <breadcrumb>.` (seed 3.7).
pub fn failure_detail(timings: &PhaseTimings, phase: &str, breadcrumb: &str) -> String {
    let list = timings.describe();
    if list.is_empty() {
        format!("Failed in {phase} phase; {breadcrumb}.")
    } else {
        format!("Phase timings: {list}. Failed in {phase} phase; {breadcrumb}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_detail_names_the_phase_timings_and_the_breadcrumb() {
        let mut t = PhaseTimings::default();
        t.add("starting", 100);
        t.add("clone", 2500);
        t.add("failed", 0);
        assert_eq!(
            failure_detail(&t, "clone", "no tool had completed yet"),
            "Phase timings: starting=0s, clone=3s, failed=0s. Failed in clone phase; no tool had completed yet."
        );
        assert_eq!(
            failure_detail(&PhaseTimings::default(), "starting", "x"),
            "Failed in starting phase; x."
        );
    }

    #[test]
    fn cancellations_of_every_boundary_are_the_interruption_and_failures_keep_their_cause() {
        assert!(matches!(
            Stop::from(GitError::Cancelled { op: "clone" }),
            Stop::Interrupted
        ));
        assert!(matches!(
            Stop::from(AgentError::Cancelled),
            Stop::Interrupted
        ));
        assert!(matches!(Stop::from(PrError::Cancelled), Stop::Interrupted));
        let git = GitError::Git {
            op: "push",
            message: "boom".into(),
        };
        match Stop::from(git) {
            Stop::Failed(e) => assert_eq!(e.failure_cause(), FailureCause::Git),
            other => panic!("a git failure is a failure: {other:?}"),
        }
        // Every way an agent run fails is the agent's cause (moved from the agent's tests).
        let exited = AgentError::Exited {
            command: "pi",
            code: Some(1),
            signal: None,
            output_tail: "boom".into(),
        };
        match Stop::from(exited) {
            Stop::Failed(e) => assert_eq!(e.failure_cause(), FailureCause::Agent),
            other => panic!("an agent failure is a failure: {other:?}"),
        }
    }
}
