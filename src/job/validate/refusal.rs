//! Why a body was refused: the stable texts of seed section 2.12 and contract 3.1, and the
//! kind each refusal is counted by.

use super::MAX_JOB_ID_BYTES;

/// A refused job message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidJob {
    /// The body's `jobId`, when one could be read (then an `invalid-job` result is published).
    pub job_id: Option<String>,
    /// The exact refusal text, e.g. `Invalid job: 'branch' must be a non-empty string`.
    pub message: String,
    /// Which rule refused it.
    pub kind: RefusalKind,
}

/// The rule a body broke, without its details: what metrics and logs group refusals by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Over `amqp.max_message_bytes`.
    TooLarge,
    /// Not JSON at all.
    NotJson,
    /// JSON, but a rule of the job contract refused it.
    Contract,
    /// A valid job of a kind this worker does not run.
    Unsupported,
}

impl RefusalKind {
    /// The `reason` label of `harness_jobs_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::TooLarge => "oversize",
            RefusalKind::NotJson => "not-json",
            RefusalKind::Contract => "invalid-job",
            RefusalKind::Unsupported => "unsupported",
        }
    }

    /// Every kind, for zero-initialised metrics.
    pub const ALL: [RefusalKind; 4] = [
        RefusalKind::TooLarge,
        RefusalKind::NotJson,
        RefusalKind::Contract,
        RefusalKind::Unsupported,
    ];
}

/// Why a body was refused; `Display` is the stable text of seed section 2.12 and contract 3.1.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("Invalid job: body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("Invalid job: body is not valid JSON ({0})")]
    NotJson(serde_json::Error),
    #[error("Invalid job: body must be an object")]
    NotObject,
    #[error("Invalid job: unknown job kind '{0}'")]
    UnknownKind(String),
    #[error("Invalid job: 'mode' must be 'explore', 'coding' or 'preview'")]
    Mode,
    #[error("Invalid job: '{0}' must be a non-empty string")]
    Required(&'static str),
    #[error("Invalid job: 'repo.provider' must be 'github' or 'gitlab'")]
    Provider,
    #[error("Invalid job: 'repo.serviceDirectory' must be a path inside the repo")]
    ServiceDirectory,
    #[error("Invalid job: '{0}' must be a valid URL")]
    NotUrl(&'static str),
    #[error("Invalid job: '{0}' must be an https or file URL")]
    Scheme(&'static str),
    #[error("Invalid job: '{path}' host '{host}' is not an allowed GitHub host")]
    Host { path: &'static str, host: String },
    #[error("Invalid job: 'jobId' must be at most {MAX_JOB_ID_BYTES} bytes")]
    JobIdTooLong,
    #[error("Invalid job: '{0}' must be a valid git branch name")]
    BranchName(&'static str),
    /// A rule of an entry of a list field (secrets, registries): the text after `Invalid job: `.
    #[error("Invalid job: {0}")]
    Field(String),
}

impl Refusal {
    pub(super) fn kind(&self) -> RefusalKind {
        match self {
            Refusal::TooLarge(_) => RefusalKind::TooLarge,
            Refusal::NotJson(_) => RefusalKind::NotJson,
            Refusal::NotObject
            | Refusal::UnknownKind(_)
            | Refusal::Mode
            | Refusal::Required(_)
            | Refusal::Provider
            | Refusal::ServiceDirectory
            | Refusal::NotUrl(_)
            | Refusal::Scheme(_)
            | Refusal::Host { .. }
            | Refusal::JobIdTooLong
            | Refusal::BranchName(_)
            | Refusal::Field(_) => RefusalKind::Contract,
        }
    }
}
