//! `enqueue` (publish a job, optionally follow it to its result) and `cancel`: quiet by default,
//! as a dispatcher's one-liners should be (log lines only for errors unless `RUST_LOG` asks).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use executor_harness::config::Config;
use executor_harness::job::accept_job;
use executor_harness::job::outcome::{Event, FailureCause};
use executor_harness::telemetry::LogTarget;
use executor_harness::worker::events::{EventSink, StdoutSink};
use executor_harness::{broker, worker};

use super::{init_logs, load_config};

/// The exit code of `enqueue --wait --timeout` when no result came in time (as `timeout(1)`).
pub const TIMED_OUT: u8 = 124;

pub struct Options {
    pub wait: bool,
    pub timeout: Option<Duration>,
    pub json: bool,
    pub no_validate: bool,
}

pub async fn cancel_cmd(job_id: &str, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    init_logs(&config, "error", LogTarget::Stderr);
    if !broker::control::is_job_id(job_id) {
        anyhow::bail!("a jobId must be 1 to 200 bytes");
    }
    let conn = connect(&config, "executor-harness cancel").await?;
    let timeout = Duration::from_millis(config.amqp.confirm_timeout_ms);
    let exchange = &config.amqp.topology.control_exchange;
    let published = broker::publish_cancel(&conn, exchange, job_id, timeout).await;
    let _ = conn.close(200, "cancel sent".into()).await;
    match published {
        Ok(()) => {
            eprintln!("executor-harness: cancel of {job_id} published on {exchange}");
            Ok(ExitCode::SUCCESS)
        }
        Err(broker::PublishError::Unroutable) => {
            eprintln!(
                "executor-harness: no worker is listening on {exchange}: nothing was cancelled"
            );
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}

async fn connect(config: &Config, name: &str) -> anyhow::Result<broker::BrokerConnection> {
    let conn = broker::connect(&config.amqp.url, name, config.amqp.heartbeat_secs).await?;
    if config.amqp.declare {
        broker::declare_topology(&conn, &worker::topology(config)).await?;
    }
    Ok(conn)
}

pub async fn enqueue_cmd(
    path: &Path,
    config: Option<&Path>,
    options: Options,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    init_logs(&config, "error", LogTarget::Stderr);
    let body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let job_id = match accept_job(&body, &config.validation_policy()) {
        Ok(job) => Some(job.job_id),
        Err(invalid) if options.no_validate => invalid.job_id,
        Err(invalid) => {
            eprintln!(
                "executor-harness: {} (use --no-validate to publish it anyway)",
                invalid.message
            );
            return Ok(ExitCode::from(2));
        }
    };
    let conn = connect(&config, "executor-harness enqueue").await?;
    let jobs_queue = &config.amqp.topology.jobs_queue;
    // Bound before publishing, so not one event of the job can be missed.
    let mut follower = match (&job_id, options.wait) {
        (Some(id), true) => Some(
            broker::EventFollower::open(&conn, &config.amqp.topology.events_exchange, id).await?,
        ),
        (None, true) => anyhow::bail!("--wait needs a readable jobId in the job"),
        _ => None,
    };
    let timeout = Duration::from_millis(config.amqp.confirm_timeout_ms);
    broker::enqueue_job(&conn, jobs_queue, &body, timeout).await?;
    let Some(follower) = follower.as_mut() else {
        println!("{}", job_id.as_deref().unwrap_or(""));
        let _ = conn.close(200, "enqueued".into()).await;
        return Ok(ExitCode::SUCCESS);
    };
    if let Ok(0) = broker::queue_consumers(&conn, jobs_queue).await {
        eprintln!(
            "executor-harness: warning: no worker consumes {jobs_queue} now; the job waits there until one does"
        );
    }
    let sink = StdoutSink::new(options.json);
    let follow = async {
        while let Some(next) = follower.next().await {
            let (kind, mut value) = next?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("type".into(), serde_json::Value::String(kind.clone()));
            }
            let event: Event = serde_json::from_value(value)?;
            sink.publish(&event).await?;
            if let Event::Result(r) = &event {
                return Ok(match (r.succeeded(), r.failure_cause) {
                    (true, _) => ExitCode::SUCCESS,
                    (false, Some(FailureCause::InvalidJob)) => ExitCode::from(2),
                    (false, _) => ExitCode::FAILURE,
                });
            }
        }
        anyhow::bail!("the broker connection ended before the job's result arrived")
    };
    let outcome = match options.timeout {
        Some(limit) => match tokio::time::timeout(limit, follow).await {
            Ok(outcome) => outcome,
            Err(_) => {
                eprintln!(
                    "executor-harness: no result for {} within {}s; the job stays queued or running",
                    job_id.as_deref().unwrap_or(""),
                    limit.as_secs()
                );
                Ok(ExitCode::from(TIMED_OUT))
            }
        },
        None => follow.await,
    };
    let _ = conn.close(200, "done".into()).await;
    outcome
}
