//! Jobs that reached the delivery limit without a result (contract 4.5, for crashes).
//!
//! A delivery that is interrupted gracefully on its last allowed attempt is finished with a
//! `failed` result by the worker running it. A worker that is SIGKILLed (or OOM-killed, or cut
//! off) during every delivery cannot do that: the broker dead-letters the job with reason
//! `delivery_limit` and nobody would publish a result. Every worker therefore consumes its own
//! copy of the dead-letter exchange (`amqp.topology.dead_watch_queue`; `harness.jobs.dead` keeps the
//! operators' copy) and publishes the result such a job is owed: the one an earlier run
//! recorded on the remote when there is one (a crash between the result and the ack), else a
//! `failed` result. Messages dead-lettered for another reason were settled with a result
//! already (an invalid job is announced when it is refused) and are only acked.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::completion::CompletionRecord;
use super::context::JobContext;
use super::events::{now_ms, publish_with_retry, EventSink};
use super::settle::{settle_one, worker_failure};
use super::workspace::Workspace;
use crate::broker::{JobDelivery, Settlement};
use crate::git::{self, Checkout, FileLimit, GitAuth, GitRemote, Identity, Runner};
use crate::job::outcome::{Event, FailureCause, JobState, ResultBody};
use crate::job::{accept_job, AgentJob, ValidationPolicy};

/// The `x-death` reason of a quorum queue's delivery limit.
const DELIVERY_LIMIT: &str = "delivery_limit";

/// Publishes the result a dead-lettered job is owed, then acks it; a result that cannot be
/// published leaves it to be tried again.
pub(super) async fn finish_dead_letter(
    ctx: JobContext,
    sink: Arc<dyn EventSink>,
    policy: ValidationPolicy,
    delivery: JobDelivery,
    cancel: CancellationToken,
) {
    let how = if delivery.death_reason.as_deref() == Some(DELIVERY_LIMIT) {
        match owed_result(&ctx, &policy, &delivery, &cancel).await {
            Some(body) => publish(&ctx, sink.as_ref(), body).await,
            None => Settlement::Ack,
        }
    } else {
        Settlement::Ack
    };
    settle_one(&ctx.metrics, &delivery, how).await;
}

async fn publish(ctx: &JobContext, sink: &dyn EventSink, body: ResultBody) -> Settlement {
    let failed = body.state == JobState::Failed;
    let cause = body.failure_cause.map(|c| c.as_str()).unwrap_or("none");
    let event = Event::Result(body);
    match publish_with_retry(sink, &event, ctx.config.amqp.publish_attempts).await {
        Ok(()) => {
            if failed {
                tracing::warn!(
                    failure_cause = cause,
                    "a job reached the delivery limit without a result: published one"
                );
            }
            Settlement::Ack
        }
        Err(e) => {
            ctx.metrics
                .publish_failures
                .with_label_values(&[e.reason()])
                .inc();
            tracing::error!(error = %e, "cannot publish the result of a dead-lettered job: it stays queued");
            Settlement::Requeue
        }
    }
}

/// The result a job that died at the delivery limit is owed, or `None` when its body has no
/// job id to report against.
async fn owed_result(
    ctx: &JobContext,
    policy: &ValidationPolicy,
    delivery: &JobDelivery,
    cancel: &CancellationToken,
) -> Option<ResultBody> {
    let deliveries = ctx.config.amqp.topology.delivery_limit.saturating_add(1);
    let job = match accept_job(&delivery.body, policy) {
        Ok(job) => job,
        // Its refusal could never be published (the delivery went back until the limit).
        Err(invalid) => {
            let job_id = invalid.job_id.as_deref()?;
            return Some(ResultBody::invalid(
                job_id,
                deliveries,
                now_ms(),
                &invalid.message,
            ));
        }
    };
    let mode = job.mode.as_str();
    if let Some(recorded) = recorded_result(ctx, &job, deliveries, cancel).await {
        // An earlier run finished it and counted it then.
        ctx.metrics.jobs_replayed.with_label_values(&[mode]).inc();
        return Some(recorded);
    }
    ctx.metrics
        .jobs_finished
        .with_label_values(&[mode, "failed", FailureCause::Agent.as_str()])
        .inc();
    let mut body = worker_failure(
        &job.job_id,
        deliveries,
        now_ms(),
        format!(
            "the job reached its delivery limit ({deliveries} deliveries) without a result: its \
             worker stopped during every delivery (killed, out of memory or cut off from the \
             broker); committed work, if any, is on branch {}",
            job.push_branch()
        ),
    );
    body.detail = Some("No attempt finished; see the workers' logs for this job id.".into());
    Some(body)
}

/// The result an earlier run recorded on the remote (contract 4.8): a run that published its
/// result but died before the ack, on every delivery.
async fn recorded_result(
    ctx: &JobContext,
    job: &AgentJob,
    deliveries: u32,
    cancel: &CancellationToken,
) -> Option<ResultBody> {
    if !ctx.config.git.completion_refs {
        return None;
    }
    // Where the job records it: a bootstrap's target, else its repository.
    let remote = GitRemote::new(job.push_clone_url(), GitAuth::token(job.gh_token.clone())).ok()?;
    let ws = Workspace::create(&ctx.config.work_dir(), &job.job_id, deliveries).ok()?;
    let runner = Runner::new(
        ctx.metrics.clone(),
        ctx.config.git_timeout(),
        cancel.clone(),
    );
    // Only its remote is used: nothing is cloned.
    let checkout = Checkout::new(ws.checkout(), remote, Identity::bot(), FileLimit(0), runner);
    let record = CompletionRecord {
        ref_name: git::completion_ref(&ctx.config.git.completion_ref_prefix, &job.job_id),
        scratch: ws.root().join("completion"),
    };
    let found = match record.find(&checkout).await {
        Ok(found) => found.map(|b| *b),
        Err(e) => {
            // Unknown: a `failed` result is published; a consumer that already has this job's
            // result keeps the first one (the same message_id).
            tracing::warn!(error = %e, "cannot ask the remote for the job's recorded result");
            None
        }
    };
    ws.remove().await;
    found
}
