//! A job's spending and trajectory (seed-later 8): every model call and tool span its agent
//! runs report, numbered job-wide, scrubbed and capped; batched for progress messages and kept
//! for the result; and the job's token total, run by run.
//!
//! Bounded whatever the agent prints: a progress batch holds at most `BATCH_BYTES` (what does
//! not fit before the next flush is counted, not kept) and the result's call list at most
//! `RESULT_CALL_BYTES` (later calls are counted; the token totals stay exact).

use std::sync::Mutex;

use crate::job::outcome::{CallMetric, Spent, ToolServer, ToolSpan, Usage};
use crate::redact::Redactor;

/// Published heads of a span's arguments and result (the seed's caps), and of a call's answer.
pub const ARGS_CHARS: usize = 2048;
pub const RESULT_CHARS: usize = 4096;
pub const RESPONSE_CHARS: usize = 2048;
/// A progress batch's bound, well under any broker's message size.
const BATCH_BYTES: usize = 512 * 1024;
/// The result's call list bound.
const RESULT_CALL_BYTES: usize = 1024 * 1024;
/// What a record costs beyond its texts, as serialised.
const RECORD_OVERHEAD: usize = 256;

/// Spans and calls to publish in one progress message, and how many did not fit.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub spans: Vec<ToolSpan>,
    pub calls: Vec<CallMetric>,
    pub spans_dropped: u64,
    pub calls_dropped: u64,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.spans.is_empty()
            && self.calls.is_empty()
            && self.spans_dropped == 0
            && self.calls_dropped == 0
    }
}

#[derive(Default)]
struct Inner {
    span_seq: u64,
    call_seq: u64,
    batch: Batch,
    batch_bytes: usize,
    calls: Vec<CallMetric>,
    calls_bytes: usize,
    calls_dropped: u64,
    /// The calls of the agent run under way, summed: its spending when its stream reports no
    /// total (a run killed mid-way).
    run_calls: Usage,
    total: Usage,
    tool_servers: Option<Vec<ToolServer>>,
}

pub struct Ledger {
    redactor: Redactor,
    inner: Mutex<Inner>,
}

fn span_bytes(span: &ToolSpan) -> usize {
    RECORD_OVERHEAD
        + span.tool.len()
        + span.args.as_ref().map_or(0, String::len)
        + span.result.as_ref().map_or(0, String::len)
}

impl Ledger {
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a completed tool call: numbered, bodies redacted then capped.
    pub fn span(&self, mut span: ToolSpan) {
        let mut inner = self.inner();
        span.seq = inner.span_seq;
        inner.span_seq += 1;
        if inner.batch_bytes >= BATCH_BYTES {
            inner.batch.spans_dropped += 1;
            return;
        }
        span.tool = self.redactor.redact(&span.tool);
        if let Some(args) = span.args.take() {
            let (kept, cut) = self.redactor.redact_head(&args, ARGS_CHARS);
            span.args = Some(kept);
            span.args_dropped += cut;
        }
        if let Some(result) = span.result.take() {
            let (kept, cut) = self.redactor.redact_head(&result, RESULT_CHARS);
            span.result = Some(kept);
            span.result_dropped += cut;
        }
        inner.batch_bytes += span_bytes(&span);
        inner.batch.spans.push(span);
    }

    /// Records a completed model call in `phase`: numbered, its tokens counted, its answer
    /// redacted then capped.
    pub fn call(&self, mut call: CallMetric, phase: String) {
        let (response, cut) = self
            .redactor
            .redact_head(&call.response_text, RESPONSE_CHARS);
        call.response_text = response;
        call.response_dropped += cut;
        call.phase = phase;
        let mut inner = self.inner();
        call.seq = inner.call_seq;
        inner.call_seq += 1;
        inner.run_calls.add(&call.usage());
        let bytes = RECORD_OVERHEAD + call.response_text.len();
        if inner.calls_bytes + bytes <= RESULT_CALL_BYTES {
            inner.calls_bytes += bytes;
            inner.calls.push(call.clone());
        } else {
            inner.calls_dropped += 1;
        }
        if inner.batch_bytes >= BATCH_BYTES {
            inner.batch.calls_dropped += 1;
            return;
        }
        inner.batch_bytes += bytes;
        inner.batch.calls.push(call);
    }

    /// What to publish now, if anything.
    pub fn take_batch(&self) -> Option<Batch> {
        let mut inner = self.inner();
        inner.batch_bytes = 0;
        let batch = std::mem::take(&mut inner.batch);
        (!batch.is_empty()).then_some(batch)
    }

    /// An agent run starts: its calls are summed from zero.
    pub fn run_started(&self) {
        self.inner().run_calls = Usage::default();
    }

    /// An agent run ended with the total its stream `reported`, if any, else the sum of its
    /// calls; that is added to the job's total and returned.
    pub fn run_ended(&self, reported: Option<Usage>) -> Usage {
        let mut inner = self.inner();
        let spent = reported.unwrap_or(inner.run_calls);
        inner.run_calls = Usage::default();
        inner.total.add(&spent);
        spent
    }

    /// The tool servers the agent reported; a later report replaces an earlier one.
    pub fn tool_servers(&self, servers: Vec<ToolServer>) {
        self.inner().tool_servers = Some(servers);
    }

    /// What the job spent and used, for its result: the token total (`None` when it spent
    /// nothing), the calls kept and how many were left out, the tool servers.
    pub fn spent(&self) -> Spent {
        let inner = self.inner();
        let made_calls = !inner.calls.is_empty() || inner.calls_dropped > 0;
        Spent {
            usage: inner.total.nonzero(),
            call_metrics: made_calls.then(|| inner.calls.clone()),
            call_metrics_dropped: (inner.calls_dropped > 0).then_some(inner.calls_dropped),
            tool_servers: inner.tool_servers.clone(),
        }
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
