//! `parse_job`: the seed's hand-written validator (seed section 2), with its exact refusal
//! texts, its validation order, and its silent dropping of malformed optional values.

use std::collections::BTreeSet;

use super::AgentJob;

/// What validation needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationPolicy {
    /// Lower-cased host names a token may be sent to (`github.com` and `api.github.com` are
    /// always in; the config list, `GITHUB_ENTERPRISE_HOST` and `GITHUB_ALLOWED_HOSTS` add more).
    /// `file://` URLs are always allowed.
    pub allowed_hosts: BTreeSet<String>,
    /// Bodies longer than this are refused before they are parsed.
    pub max_body_bytes: usize,
}

impl ValidationPolicy {
    /// The defaults plus `extra` hosts (trimmed, lower-cased, empties ignored).
    pub fn with_hosts<I, S>(extra: I, max_body_bytes: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut allowed_hosts: BTreeSet<String> = ["github.com", "api.github.com"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for h in extra {
            let h = h.as_ref().trim().to_ascii_lowercase();
            if !h.is_empty() {
                allowed_hosts.insert(h);
            }
        }
        Self {
            allowed_hosts,
            max_body_bytes,
        }
    }
}

/// A refused job message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidJob {
    /// The body's `jobId`, when one could be read (then an `invalid-job` result is published).
    pub job_id: Option<String>,
    /// The exact refusal text, e.g. `Invalid job: 'branch' must be a non-empty string`.
    pub message: String,
}

/// Validates a job body.
pub fn parse_job(body: &[u8], policy: &ValidationPolicy) -> Result<AgentJob, InvalidJob> {
    let _ = (body, policy);
    todo!("job validation")
}
