//! The ledger: numbering, scrubbing and caps, the batch and result bounds, run totals.

use super::*;
use crate::redact::Secret;

const SECRET: &str = "gen-SECRET-0123456789";

fn ledger() -> Ledger {
    Ledger::new(Redactor::patterns_only().with_secret(&Secret::new(SECRET)))
}

fn call(input: u64, read: u64, write: u64, output: u64, text: &str) -> CallMetric {
    CallMetric {
        input_tokens: input,
        cache_read_tokens: read,
        cache_write_tokens: write,
        output_tokens: output,
        response_text: text.to_owned(),
        ..CallMetric::default()
    }
}

#[test]
fn spans_and_calls_are_numbered_job_wide_across_runs_and_batches() {
    let l = ledger();
    l.run_started();
    l.span(ToolSpan::new("read", 1, 2, true));
    l.call(call(1, 0, 0, 1, "a"), "agent".into());
    let first = l.take_batch().unwrap();
    l.run_ended(None);
    // A second run (a repair pass) continues the numbering: ordinals never collide.
    l.run_started();
    l.span(ToolSpan::new("edit", 3, 4, true));
    l.call(call(1, 0, 0, 1, "b"), "validation-repair".into());
    let second = l.take_batch().unwrap();
    assert_eq!((first.spans[0].seq, second.spans[0].seq), (0, 1));
    assert_eq!((first.calls[0].seq, second.calls[0].seq), (0, 1));
    assert_eq!(second.calls[0].phase, "validation-repair");
    assert!(l.take_batch().is_none(), "nothing new, nothing to publish");
}

#[test]
fn bodies_and_answers_are_redacted_then_capped_with_the_cut_counted() {
    let l = ledger();
    let mut span = ToolSpan::new("bash", 1, 2, true);
    span.args = Some(format!("echo {SECRET}"));
    span.result = Some("x".repeat(RESULT_CHARS + 5));
    span.result_dropped = 100; // cut by the parser already
    l.span(span);
    l.call(
        call(1, 0, 0, 1, &format!("token {SECRET} used")),
        "agent".into(),
    );
    let batch = l.take_batch().unwrap();
    let span = &batch.spans[0];
    assert_eq!(span.args.as_deref(), Some("echo ***"));
    assert_eq!(span.result.as_ref().unwrap().len(), RESULT_CHARS);
    assert_eq!(span.result_dropped, 105);
    assert_eq!(batch.calls[0].response_text, "token *** used");
}

#[test]
fn a_flood_fills_one_bounded_batch_and_counts_the_rest_while_totals_stay_exact() {
    let l = ledger();
    l.run_started();
    let body = "y".repeat(RESULT_CHARS);
    for _ in 0..1000 {
        let mut span = ToolSpan::new("bash", 1, 2, true);
        span.result = Some(body.clone());
        l.span(span);
        l.call(call(2, 3, 4, 5, &body), "agent".into());
    }
    let batch = l.take_batch().unwrap();
    let kept = batch.spans.len() + batch.calls.len();
    assert!(kept < 2000 && kept > 50, "{kept}");
    assert_eq!(batch.spans_dropped + batch.spans.len() as u64, 1000);
    assert_eq!(batch.calls_dropped + batch.calls.len() as u64, 1000);
    let spent = l.run_ended(None);
    assert_eq!(
        spent,
        Usage {
            input_tokens: 9000,
            output_tokens: 5000,
            cache_read_tokens: 3000,
            cache_write_tokens: 4000
        }
    );
    let spent = l.spent();
    let (calls, dropped) = (
        spent.call_metrics.unwrap(),
        spent.call_metrics_dropped.unwrap(),
    );
    assert_eq!(calls.len() as u64 + dropped, 1000);
    assert!(calls.len() < 1000, "the result's list is bounded too");
}

#[test]
fn a_run_counts_its_reported_total_or_else_the_sum_of_its_calls() {
    let l = ledger();
    l.run_started();
    l.call(call(10, 20, 0, 5, ""), "agent".into());
    // The stream's own total wins (it may count what no call showed, e.g. subagents).
    let reported = Usage::plain(100, 50);
    assert_eq!(l.run_ended(Some(reported)), reported);
    l.run_started();
    l.call(call(1, 2, 3, 4, ""), "agent".into());
    let killed = l.run_ended(None);
    assert_eq!(
        killed,
        Usage {
            input_tokens: 6,
            output_tokens: 4,
            cache_read_tokens: 2,
            cache_write_tokens: 3
        }
    );
    assert_eq!(
        l.spent().usage,
        Some(Usage {
            input_tokens: 106,
            output_tokens: 54,
            cache_read_tokens: 2,
            cache_write_tokens: 3
        })
    );
}
