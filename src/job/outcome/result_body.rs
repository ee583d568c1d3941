//! The ways a result body is made: a run that returned (`done`), one that failed or was
//! stopped (`failed`), a message that failed validation (`invalid`); and the one test of
//! success that `run`, `demo` and `enqueue --wait` exit by.

use super::{AgentResult, FailureCause, JobState, PhaseTimings, ResultBody};
use crate::job::capabilities::WorkerInfo;
use crate::redact::Redactor;

impl ResultBody {
    /// A run that returned: `done`, with the result's own `error` cause copied to the top
    /// level (seed 3.6).
    pub fn done(
        job_id: &str,
        attempt: u32,
        started_at: u64,
        finished_at: u64,
        timings: PhaseTimings,
        result: AgentResult,
    ) -> Self {
        Self {
            job_id: job_id.to_owned(),
            attempt,
            state: JobState::Done,
            started_at,
            finished_at,
            phase_timings_ms: timings,
            failure_cause: result.error.as_ref().and(result.failure_cause),
            result: Some(result),
            error: None,
            detail: None,
            worker: Some(WorkerInfo::current()),
            spent: None,
        }
    }

    /// A run that failed or was stopped: `failed`, with its cause, error and detail.
    #[allow(clippy::too_many_arguments)]
    pub fn failed(
        job_id: &str,
        attempt: u32,
        started_at: u64,
        finished_at: u64,
        timings: PhaseTimings,
        cause: FailureCause,
        error: String,
        detail: Option<String>,
    ) -> Self {
        Self {
            job_id: job_id.to_owned(),
            attempt,
            state: JobState::Failed,
            started_at,
            finished_at,
            phase_timings_ms: timings,
            result: None,
            error: Some(error),
            failure_cause: Some(cause),
            detail,
            worker: Some(WorkerInfo::current()),
            spent: None,
        }
    }

    /// A message that failed validation (contract 4.2): no phase ran; the refusal text goes
    /// through the pattern redactor (no job's secrets are known for a refused body).
    pub fn invalid(job_id: &str, attempt: u32, at: u64, message: &str) -> Self {
        Self::failed(
            job_id,
            attempt,
            at,
            at,
            PhaseTimings::default(),
            FailureCause::InvalidJob,
            Redactor::patterns_only().redact(message),
            None,
        )
    }

    /// `done` with no `error`, at the top level or in the result: the exit code 0 of `run`.
    pub fn succeeded(&self) -> bool {
        self.state == JobState::Done
            && self.error.is_none()
            && self.result.as_ref().is_none_or(|r| r.error.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_run_with_a_logical_error_copies_its_cause_and_does_not_succeed() {
        let result = AgentResult {
            error: Some("no changes".into()),
            failure_cause: Some(FailureCause::NoChanges),
            ..AgentResult::default()
        };
        let body = ResultBody::done("j", 1, 10, 20, PhaseTimings::default(), result);
        assert_eq!(body.state, JobState::Done);
        assert_eq!(body.failure_cause, Some(FailureCause::NoChanges));
        assert!(!body.succeeded());
        let clean = ResultBody::done(
            "j",
            1,
            10,
            20,
            PhaseTimings::default(),
            AgentResult::default(),
        );
        assert_eq!(clean.failure_cause, None);
        assert!(clean.succeeded());
    }

    #[test]
    fn failed_and_invalid_bodies_carry_their_cause_and_never_succeed() {
        let failed = ResultBody::failed(
            "j",
            2,
            1,
            2,
            PhaseTimings::default(),
            FailureCause::Git,
            "boom".into(),
            Some("detail".into()),
        );
        assert_eq!(failed.state, JobState::Failed);
        assert!(!failed.succeeded());
        let invalid = ResultBody::invalid("j", 1, 5, "Invalid job: https://u:p@h/x");
        assert_eq!(invalid.failure_cause, Some(FailureCause::InvalidJob));
        assert_eq!(
            invalid.error.as_deref(),
            Some("Invalid job: https://***@h/x")
        );
        assert_eq!((invalid.started_at, invalid.finished_at), (5, 5));
        assert!(!invalid.succeeded());
    }
}
