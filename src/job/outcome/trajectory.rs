//! What an agent spent and did, call by call (seed-later 8): token usage with its cache
//! classes, per model call and per run, and the tool spans with their scrubbed, capped bodies.

use serde::{Deserialize, Serialize};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Tokens a run (or a job) spent. `input_tokens` counts every input token, fresh or cached;
/// the two cache classes say how many of them were read from or written to the provider's
/// prompt cache, so the fresh input is `input_tokens - cache_read_tokens - cache_write_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// A total with no cache information.
    pub fn plain(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    /// `None` for a total that counted nothing.
    pub fn nonzero(self) -> Option<Usage> {
        (!self.is_zero()).then_some(self)
    }
}

/// One model call (seed-later 8.1). Unlike [`Usage`], `input_tokens` is the **fresh** input
/// only: the three input classes add up to the call's whole prompt. `seq` (job-scoped, from
/// 0) and `phase` are stamped by the worker when the call is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallMetric {
    pub seq: u64,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    /// The provider's stop reason (`stop`, `toolUse`, `end_turn`, `error`...), when reported.
    pub finish_reason: Option<String>,
    /// The head of the call's text answer, scrubbed; `""` for a tool-only turn.
    pub response_text: String,
    /// Characters of the answer not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub response_dropped: u64,
}

impl CallMetric {
    /// The call's tokens as a run total counts them (input inclusive of the cache classes).
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens + self.cache_read_tokens + self.cache_write_tokens,
            output_tokens: self.output_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
        }
    }
}

/// One completed tool call (seed-later 8.5): when, whether it succeeded, and what it was asked
/// and answered, scrubbed and capped. `seq` is job-scoped, stamped by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpan {
    #[serde(default)]
    pub seq: u64,
    pub tool: String,
    pub started_at: u64,
    pub ended_at: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Characters of the arguments not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub args_dropped: u64,
    /// Characters of the result not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub result_dropped: u64,
}

impl ToolSpan {
    /// A span without bodies.
    pub fn new(tool: impl Into<String>, started_at: u64, ended_at: u64, ok: bool) -> Self {
        Self {
            tool: tool.into(),
            started_at,
            ended_at,
            ok,
            ..Self::default()
        }
    }
}

/// What a job spent and used: its tokens, its model calls (with the calls left out to keep a
/// message within its bound) and the tool servers its agent reported.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_metrics: Option<Vec<CallMetric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_metrics_dropped: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_servers: Option<Vec<super::ToolServer>>,
}
