//! The AMQP ids of an event (contract 3.2): `correlation_id` names the job, and `message_id` is
//! deterministic so consumers can deduplicate. Both are AMQP short strings (255 bytes at most).
//!
//! A `jobId` within [`MAX_JOB_ID_BYTES`] is used as it is. A longer one (only an invalid job's:
//! validation refuses it) would not fit, and a refusal that cannot be published is never
//! announced; it is carried as `sha256:<hex of its SHA-256>` instead. The body keeps the full
//! `jobId` either way.

use std::borrow::Cow;
use std::fmt::Write;

use sha2::{Digest, Sha256};

use super::Event;
use crate::job::MAX_JOB_ID_BYTES;

const HASHED_PREFIX: &str = "sha256:";

/// The ids one event is published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIds {
    pub correlation_id: String,
    pub message_id: String,
}

/// The `correlation_id` of a job's events: its `jobId`, or `sha256:<hex>` of an over-long one.
pub fn correlation_id(job_id: &str) -> Cow<'_, str> {
    if job_id.len() <= MAX_JOB_ID_BYTES {
        return Cow::Borrowed(job_id);
    }
    let mut out = String::with_capacity(HASHED_PREFIX.len() + 64);
    out.push_str(HASHED_PREFIX);
    for byte in Sha256::digest(job_id.as_bytes()) {
        let _ = write!(out, "{byte:02x}");
    }
    Cow::Owned(out)
}

impl Event {
    /// The ids of this event; every kind of event takes them from here.
    pub fn ids(&self) -> EventIds {
        let correlation_id = correlation_id(self.job_id()).into_owned();
        let message_id = match self {
            Event::Progress(b) => format!("{correlation_id}:progress:{}:{}", b.attempt, b.seq),
            Event::Followup(b) => format!("{correlation_id}:followup:{}:{}", b.attempt, b.seq),
            Event::Result(_) => format!("{correlation_id}:result"),
        };
        EventIds {
            correlation_id,
            message_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        FollowUpBody, FollowUpItem, FollowUpKind, JobState, PhaseTimings, ProgressBody, ResultBody,
    };
    use super::*;

    /// AMQP's short-string limit.
    const SHORT_STRING_BYTES: usize = 255;

    /// One event of each kind for `job_id`, at the widest attempt and seq.
    fn every_kind(job_id: &str) -> [Event; 3] {
        [
            Event::Progress(ProgressBody {
                job_id: job_id.into(),
                attempt: u32::MAX,
                seq: u64::MAX,
                at: 0,
                phase: "agent".into(),
                progress: None,
                spans: None,
                call_metrics: None,
                spans_dropped: None,
                call_metrics_dropped: None,
                tool_servers: None,
                validation_report: None,
                cold_start: None,
            }),
            Event::Followup(FollowUpBody {
                job_id: job_id.into(),
                attempt: u32::MAX,
                seq: u64::MAX,
                item: FollowUpItem {
                    kind: FollowUpKind::FollowUp,
                    title: "t".into(),
                    detail: String::new(),
                    suggested_action: None,
                },
            }),
            Event::Result(ResultBody {
                job_id: job_id.into(),
                attempt: u32::MAX,
                state: JobState::Failed,
                started_at: 0,
                finished_at: 0,
                phase_timings_ms: PhaseTimings::default(),
                result: None,
                error: None,
                failure_cause: None,
                detail: None,
                worker: None,
                spent: None,
            }),
        ]
    }

    #[test]
    fn message_ids_are_deterministic_per_job_attempt_and_seq() {
        let [progress, followup, result] = every_kind("j1");
        assert_eq!(
            progress.ids().message_id,
            "j1:progress:4294967295:18446744073709551615"
        );
        assert_eq!(
            followup.ids().message_id,
            "j1:followup:4294967295:18446744073709551615"
        );
        assert_eq!(result.ids().message_id, "j1:result");
        assert_eq!(result.ids().correlation_id, "j1");
    }

    #[test]
    fn a_job_id_at_the_bound_is_used_as_it_is_and_every_id_fits_a_short_string() {
        let id = "é".repeat(MAX_JOB_ID_BYTES / 2);
        for event in every_kind(&id) {
            let ids = event.ids();
            assert_eq!(ids.correlation_id, id);
            assert!(ids.message_id.starts_with(&format!("{id}:")));
            assert!(
                ids.message_id.len() <= SHORT_STRING_BYTES,
                "{} bytes",
                ids.message_id.len()
            );
        }
    }

    #[test]
    fn an_over_long_job_id_is_carried_as_its_hash_in_the_ids_and_whole_in_the_body() {
        let hashed = |id: &str| correlation_id(id).into_owned();
        for id in [
            "j".repeat(MAX_JOB_ID_BYTES + 1),
            "j".repeat(250),
            "x".repeat(3 << 20),
        ] {
            let key = hashed(&id);
            assert!(key.starts_with("sha256:"), "{key}");
            assert_eq!(key.len(), "sha256:".len() + 64);
            for event in every_kind(&id) {
                let ids = event.ids();
                assert_eq!(ids.correlation_id, key);
                assert!(ids.message_id.starts_with(&format!("{key}:")));
                assert!(ids.message_id.len() <= SHORT_STRING_BYTES);
                let body: serde_json::Value =
                    serde_json::from_slice(&event.body_json().unwrap()).unwrap();
                assert_eq!(body["jobId"], id.as_str());
            }
        }
        // Deterministic, so a redelivery's refusal deduplicates with the first; distinct ids
        // stay distinct.
        let a = "a".repeat(250);
        assert_eq!(hashed(&a), hashed(&a));
        assert_ne!(hashed(&a), hashed(&"b".repeat(250)));
        assert_eq!(
            hashed(&a),
            "sha256:3f3e35e0a775d9b1d5ec2eccca06381c41efedeb59d5ac5491ebe9696cb0887b"
        );
    }
}
