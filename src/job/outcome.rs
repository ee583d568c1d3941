//! What a run publishes (contract section 3.2): the terminal result, follow-up items and
//! progress, plus the failure-cause vocabulary and the stable texts downstream regexes read.

mod explore_texts;
mod ids;
mod result_body;
mod texts;
mod trajectory;
mod validation;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use explore_texts::{
    no_report_reason, no_structured_reason, unusable_final_reason, UnusableFinal,
};
pub use ids::{correlation_id, EventIds};
pub use texts::{bootstrap_no_op_reason, unresolved_conflicts_reason, NEVER_ACTED_CAUSE};
pub use trajectory::{CallMetric, Spent, ToolSpan, Usage};
pub use validation::{command_failure, CheckOutcome, ValidationReport};

/// The contract's failure causes (seed 3.6, plus `invalid-job`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureCause {
    InactivityTimeout,
    MaxDuration,
    Agent,
    Git,
    Api,
    NoUsableOutput,
    NoChanges,
    InvalidJob,
    /// The model endpoint refused the run (401/403, 402 or quota, 429), contract 9.
    LlmUpstream,
    /// A `job.cancel` message stopped the job (contract 9).
    Cancelled,
    /// The agent produced output but completed no tool call for the window (contract 9).
    NoToolProgress,
}

impl FailureCause {
    /// Every cause, in the contract's order (metrics are zero-initialised from it).
    pub const ALL: [FailureCause; 11] = [
        FailureCause::InactivityTimeout,
        FailureCause::MaxDuration,
        FailureCause::Agent,
        FailureCause::Git,
        FailureCause::Api,
        FailureCause::NoUsableOutput,
        FailureCause::NoChanges,
        FailureCause::InvalidJob,
        FailureCause::LlmUpstream,
        FailureCause::Cancelled,
        FailureCause::NoToolProgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::InactivityTimeout => "inactivity-timeout",
            FailureCause::MaxDuration => "max-duration",
            FailureCause::Agent => "agent",
            FailureCause::Git => "git",
            FailureCause::Api => "api",
            FailureCause::NoUsableOutput => "no-usable-output",
            FailureCause::NoChanges => "no-changes",
            FailureCause::InvalidJob => "invalid-job",
            FailureCause::LlmUpstream => "llm-upstream",
            FailureCause::Cancelled => "cancelled",
            FailureCause::NoToolProgress => "no-tool-progress",
        }
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `done`: the handler returned (maybe with a logical `error`); `failed`: it threw or was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// What the agent did. Both zero means it never acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStats {
    pub tool_calls: u64,
    pub assistant_chars: u64,
}

impl RunStats {
    pub fn never_acted(&self) -> bool {
        self.tool_calls == 0 && self.assistant_chars == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    Pending,
    InProgress,
    Completed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoItem {
    pub label: String,
    pub status: TodoStatus,
}

/// The latest todo snapshot; it replaces the previous one, never merges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TodoProgress {
    pub completed: u64,
    pub in_progress: u64,
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<TodoItem>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpKind {
    FollowUp,
    Question,
}

/// A follow-up item the coding agent wrote to the sentinel file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpItem {
    pub kind: FollowUpKind,
    pub title: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_action: Option<String>,
}

/// The seed's `AgentResult`. Coding results always carry `pushed`, `resumed` and `branch`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<RunStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// A logical failure on a clean exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<FailureCause>,
    /// The last pre-PR validation attempt, when the job carried checks and produced work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_report: Option<ValidationReport>,
    /// Every model call of the job's agent runs, in order (seed-later 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_metrics: Option<Vec<CallMetric>>,
    /// Calls left out of `call_metrics` to keep the result within its size bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_metrics_dropped: Option<u64>,
    /// The tool (MCP) servers the agent's CLI reported, as it last reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_servers: Option<Vec<ToolServer>>,
}

/// Body of a `job.result` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultBody {
    pub job_id: String,
    pub attempt: u32,
    pub state: JobState,
    /// Epoch milliseconds.
    pub started_at: u64,
    pub finished_at: u64,
    /// Whole milliseconds per phase, in the order the phases were entered.
    pub phase_timings_ms: PhaseTimings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<AgentResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<FailureCause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The worker that produced it: version and capabilities (contract 9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<crate::job::capabilities::WorkerInfo>,
    /// A `failed` run's spending, which has no `result` to go in, at the top level (a `done`
    /// run carries it in `result`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<Box<Spent>>,
}

/// Body of a `job.followup` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpBody {
    pub job_id: String,
    pub attempt: u32,
    pub seq: u64,
    #[serde(flatten)]
    pub item: FollowUpItem,
}

/// Body of a `job.progress` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressBody {
    pub job_id: String,
    pub attempt: u32,
    pub seq: u64,
    /// Epoch milliseconds.
    pub at: u64,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<TodoProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<ToolSpan>>,
    /// Model calls completed since the last batch (seed-later 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_metrics: Option<Vec<CallMetric>>,
    /// Spans and calls that did not fit in this batch's size bound (the result still lists
    /// the calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans_dropped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_metrics_dropped: Option<u64>,
    /// The tool (MCP) servers the agent's CLI reported connecting, each time it reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_servers: Option<Vec<ToolServer>>,
    /// The latest validation attempt, whole, each time one finishes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_report: Option<ValidationReport>,
    /// The agent said nothing this long after the job started (once, seed-later 5.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStart>,
}

/// A cold start: when it was noticed (epoch ms) and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColdStart {
    pub at_ms: u64,
    pub message: String,
}

/// Every message a run emits, in the order it emits them.
// A few hundred bytes per event, each built once and moved to the publisher: boxing the
// result would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Progress(ProgressBody),
    Followup(FollowUpBody),
    Result(ResultBody),
}

impl Event {
    pub fn job_id(&self) -> &str {
        match self {
            Event::Progress(b) => &b.job_id,
            Event::Followup(b) => &b.job_id,
            Event::Result(b) => &b.job_id,
        }
    }

    /// `job.result` / `job.followup` / `job.progress`.
    pub fn routing_key(&self) -> &'static str {
        match self {
            Event::Progress(_) => "job.progress",
            Event::Followup(_) => "job.followup",
            Event::Result(_) => "job.result",
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Progress(_) => "progress",
            Event::Followup(_) => "followup",
            Event::Result(_) => "result",
        }
    }

    pub fn attempt(&self) -> u32 {
        match self {
            Event::Progress(b) => b.attempt,
            Event::Followup(b) => b.attempt,
            Event::Result(b) => b.attempt,
        }
    }

    /// The message body: the event without its `type` tag (the tag travels as the AMQP type).
    pub fn body_json(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            Event::Progress(b) => serde_json::to_vec(b),
            Event::Followup(b) => serde_json::to_vec(b),
            Event::Result(b) => serde_json::to_vec(b),
        }
    }
}

/// Per-phase durations in the order the phases were first entered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PhaseTimings(pub Vec<(String, u64)>);

impl PhaseTimings {
    pub fn add(&mut self, phase: &str, ms: u64) {
        match self.0.iter_mut().find(|(p, _)| p == phase) {
            Some((_, total)) => *total += ms,
            None => self.0.push((phase.to_owned(), ms)),
        }
    }

    /// `clone=3s, agent=41s` (seed 6.3: whole seconds, `0s` included).
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(p, ms)| format!("{p}={}s", (*ms as f64 / 1000.0).round() as u64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Serialize for PhaseTimings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for PhaseTimings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Order is lost through a map; good enough for readers, which only look values up.
        let map = BTreeMap::<String, u64>::deserialize(d)?;
        Ok(Self(map.into_iter().collect()))
    }
}

/// ` (the agent never acted — it most likely could not reach the model)`
pub const NEVER_ACTED: &str =
    " (the agent never acted \u{2014} it most likely could not reach the model)";

/// The coding no-op text: `the agent produced no file changes` + never-acted note + `.` +
/// stderr tail (seed 3.7).
pub fn no_changes_reason(stats: &RunStats, stderr_tail: Option<&str>) -> String {
    let mut out = String::from("the agent produced no file changes");
    if stats.never_acted() {
        out.push_str(NEVER_ACTED);
    }
    out.push('.');
    if let Some(tail) = stderr_tail.filter(|t| !t.is_empty()) {
        out.push_str(" Agent stderr: ");
        out.push_str(crate::redact::tail_chars(tail, 700));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_changes_text_matches_the_seed_word_for_word() {
        let never = RunStats::default();
        assert_eq!(
            no_changes_reason(&never, None),
            "the agent produced no file changes (the agent never acted \u{2014} it most likely could not reach the model)."
        );
        let acted = RunStats {
            tool_calls: 2,
            assistant_chars: 10,
        };
        assert_eq!(
            no_changes_reason(&acted, Some("boom")),
            "the agent produced no file changes. Agent stderr: boom"
        );
    }

    #[test]
    fn a_followup_body_carries_its_item_flat_and_no_type_tag() {
        let ev = Event::Followup(FollowUpBody {
            job_id: "j1".into(),
            attempt: 2,
            seq: 7,
            item: FollowUpItem {
                kind: FollowUpKind::Question,
                title: "t".into(),
                detail: String::new(),
                suggested_action: None,
            },
        });
        let body: serde_json::Value = serde_json::from_slice(&ev.body_json().unwrap()).unwrap();
        assert_eq!(body["kind"], "question");
        assert_eq!(body["seq"], 7);
        assert!(body.get("type").is_none());
    }

    #[test]
    fn phase_timings_keep_entry_order_and_describe_in_seconds() {
        let mut t = PhaseTimings::default();
        t.add("starting", 400);
        t.add("clone", 2600);
        t.add("agent", 41_000);
        assert_eq!(t.describe(), "starting=0s, clone=3s, agent=41s");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"starting":400,"clone":2600,"agent":41000}"#
        );
    }
}

/// One MCP server the agent's CLI reported at start (seed-later 10.4, `toolServers[]` on
/// `job.progress`): observational only, nothing branches on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolServer {
    pub id: String,
    pub status: ToolServerStatus,
    /// Tools the CLI listed for it; absent when unknown (no tool list, or ambiguous names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_count: Option<u64>,
}

/// A tool server's connection state, normalised from the CLI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolServerStatus {
    Ready,
    Failed,
    NeedsAuth,
    Unknown,
}
