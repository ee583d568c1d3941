//! The `executor-harness` command line: `worker`, `run`, `demo`, `enqueue` (contract section 1).

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use executor_harness::config::Config;
use executor_harness::job::accept_job;
use executor_harness::job::outcome::{Event, ResultBody};
use executor_harness::metrics::Metrics;
use executor_harness::telemetry::{self, SecretRegistry};
use executor_harness::worker::context::JobContext;
use executor_harness::worker::error::JobEnd;
use executor_harness::worker::events::now_ms;
use executor_harness::worker::events::{EventSink, StdoutSink};
use executor_harness::worker::run::run_job;
use executor_harness::{broker, demo, shutdown, worker};
use tracing::Instrument;

#[derive(Parser)]
#[command(
    name = "executor-harness",
    version,
    about = "Runs AI coding agents against git repositories at the command of a RabbitMQ queue.",
    long_about = "Runs AI coding agents against git repositories at the command of a RabbitMQ \
queue: it clones the repository, runs the agent (Pi by default), pushes checkpoints while it \
works, pushes the branch, opens the pull request, publishes follow-ups, progress and the \
outcome, and acks the job only after the push settled.\n\nStart with `executor-harness demo` \
(no broker, no network needed)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume jobs from RabbitMQ until SIGTERM/SIGINT, then drain and exit 0.
    Worker {
        /// Configuration file (default: built-in defaults; see config/default.toml).
        #[arg(long, env = "HARNESS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run ONE job from a file with no broker; events are printed to stdout.
    ///
    /// Exit code: 0 done with no error, 1 any failure, 2 invalid job.
    Run {
        /// The job message body (JSON).
        job: PathBuf,
        #[arg(long, env = "HARNESS_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON lines even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// Run a full coding job against a throwaway local repository with a built-in scripted
    /// agent (no broker, no network), then print the outcome and the pushed branch's log.
    Demo {
        /// Print JSON lines even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// Publish a job message to the jobs queue (with publisher confirm): a dispatcher in one line.
    Enqueue {
        /// The job message body (JSON).
        job: PathBuf,
        #[arg(long, env = "HARNESS_CONFIG")]
        config: Option<PathBuf>,
        /// Follow the job: show its progress, follow-ups and result, and exit with its outcome.
        #[arg(long)]
        wait: bool,
        /// Print JSON lines even on a terminal (with --wait).
        #[arg(long)]
        json: bool,
        /// Publish even when the body fails local validation (to exercise dead-lettering).
        #[arg(long)]
        no_validate: bool,
    },
    /// Cancel a job by its jobId: every worker hears it; the one running the job stops it
    /// (its committed work pushed, a `failed` result with cause `cancelled`), and every
    /// worker finishes a later delivery of it without running it (contract 9).
    ///
    /// Exit code: 0 published, 3 no worker is listening, 1 any other failure.
    Cancel {
        /// The `jobId` to cancel.
        job_id: String,
        #[arg(long, env = "HARNESS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The demo's scripted agent (speaks Pi's JSON event stream). Not for direct use.
    #[command(hide = true)]
    DemoAgent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::DemoAgent { .. } = cli.command {
        return demo::agent_main();
    }
    // The broker's credentials live in memory from here on: not in the environment block a
    // process of the same user could read, nor in anything the worker starts.
    let amqp_url = executor_harness::config::take_env("AMQP_URL");
    TAKEN_AMQP_URL.get_or_init(|| amqp_url);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("executor-harness: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before any git work starts, so a stalled remote cannot outlive a git step's timeout.
    executor_harness::git::set_network_timeouts(
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(120),
    );
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("executor-harness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Worker { config } => worker_cmd(config.as_deref()).await,
        Command::Run { job, config, json } => run_cmd(&job, config.as_deref(), json).await,
        Command::Demo { json } => Ok(ExitCode::from(demo::run_demo(json).await? as u8)),
        Command::Enqueue {
            job,
            config,
            wait,
            json,
            no_validate,
        } => enqueue_cmd(&job, config.as_deref(), wait, json, no_validate).await,
        Command::Cancel { job_id, config } => cancel_cmd(&job_id, config.as_deref()).await,
        Command::DemoAgent { .. } => Ok(ExitCode::SUCCESS),
    }
}

async fn cancel_cmd(job_id: &str, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    telemetry::init(false, "warn", SecretRegistry::default());
    if !broker::control::is_job_id(job_id) {
        anyhow::bail!("a jobId must be 1 to 200 bytes");
    }
    let conn = broker::connect(
        &config.amqp.url,
        "executor-harness cancel",
        config.amqp.heartbeat_secs,
    )
    .await?;
    if config.amqp.declare {
        broker::declare_topology(&conn, &worker::topology(&config)).await?;
    }
    let timeout = std::time::Duration::from_millis(config.amqp.confirm_timeout_ms);
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

/// `AMQP_URL` as the process started with it (see `main`).
static TAKEN_AMQP_URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let taken = |k: &str| match k {
        "AMQP_URL" => TAKEN_AMQP_URL.get().cloned().flatten(),
        _ => None,
    };
    Ok(Config::load_with(path, taken)?)
}

/// The configuration, and logging through a redactor that learns each job's secrets.
fn start(path: Option<&Path>) -> anyhow::Result<(Arc<Config>, SecretRegistry)> {
    let config = Arc::new(load_config(path)?);
    let secrets = SecretRegistry::default();
    telemetry::init(
        config.log.format == "json",
        &config.log.level,
        secrets.clone(),
    );
    Ok((config, secrets))
}

async fn worker_cmd(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, secrets) = start(config)?;
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    shutdown::spawn_signal_listener(shutdown.clone()).context("cannot install signal handlers")?;
    if !config.metrics.listen.trim().is_empty() {
        let addr = config.metrics.listen.trim();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tokio::spawn(executor_harness::metrics::serve(
            listener,
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    worker::run_worker(config, metrics, secrets, shutdown).await?;
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
}

async fn run_cmd(path: &Path, config: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let (config, secrets) = start(config)?;
    let body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let sink: Arc<dyn EventSink> = Arc::new(StdoutSink::new(json));
    let job = match accept_job(&body, &config.validation_policy()) {
        Ok(job) => job,
        Err(invalid) => {
            match &invalid.job_id {
                Some(id) => {
                    let body = ResultBody::invalid(id, 1, now_ms(), &invalid.message);
                    let event = Event::Result(body);
                    sink.publish(&event).await?;
                }
                None => eprintln!("executor-harness: {}", invalid.message),
            }
            return Ok(ExitCode::from(2));
        }
    };
    let cancel = CancellationToken::new();
    shutdown::spawn_signal_listener(cancel.clone()).context("cannot install signal handlers")?;
    let ctx = JobContext::start(config, Arc::new(Metrics::new()), secrets).await?;
    let run = run_job(&ctx, &job, 1, sink.clone(), cancel).instrument(worker::job_span(&job, 1));
    match run.await {
        JobEnd::Finished(body) => {
            let ok = body.succeeded();
            sink.publish(&Event::Result(*body)).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        JobEnd::Interrupted => {
            eprintln!("executor-harness: the job was interrupted; committed work was pushed");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn enqueue_cmd(
    path: &Path,
    config: Option<&Path>,
    wait: bool,
    json: bool,
    no_validate: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    telemetry::init(false, "warn", SecretRegistry::default());
    let body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let job_id = match accept_job(&body, &config.validation_policy()) {
        Ok(job) => Some(job.job_id),
        Err(invalid) if no_validate => invalid.job_id,
        Err(invalid) => {
            eprintln!(
                "executor-harness: {} (use --no-validate to publish it anyway)",
                invalid.message
            );
            return Ok(ExitCode::from(2));
        }
    };
    let conn = broker::connect(
        &config.amqp.url,
        "executor-harness enqueue",
        config.amqp.heartbeat_secs,
    )
    .await?;
    if config.amqp.declare {
        broker::declare_topology(&conn, &worker::topology(&config)).await?;
    }
    // Bound before publishing, so not one event of the job can be missed.
    let mut follower = match (&job_id, wait) {
        (Some(id), true) => Some(
            broker::EventFollower::open(&conn, &config.amqp.topology.events_exchange, id).await?,
        ),
        (None, true) => anyhow::bail!("--wait needs a readable jobId in the job"),
        _ => None,
    };
    let timeout = std::time::Duration::from_millis(config.amqp.confirm_timeout_ms);
    broker::enqueue_job(&conn, &config.amqp.topology.jobs_queue, &body, timeout).await?;
    let Some(follower) = follower.as_mut() else {
        eprintln!(
            "executor-harness: enqueued {} on {}",
            job_id.as_deref().unwrap_or("(no jobId)"),
            config.amqp.topology.jobs_queue
        );
        return Ok(ExitCode::SUCCESS);
    };
    let sink = StdoutSink::new(json);
    while let Some(next) = follower.next().await {
        let (kind, mut value) = next?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("type".into(), serde_json::Value::String(kind.clone()));
        }
        let event: Event = serde_json::from_value(value)?;
        sink.publish(&event).await?;
        if let Event::Result(r) = &event {
            let ok = r.succeeded();
            let _ = conn.close(200, "done".into()).await;
            return Ok(match (ok, r.failure_cause) {
                (true, _) => ExitCode::SUCCESS,
                (false, Some(executor_harness::job::outcome::FailureCause::InvalidJob)) => {
                    ExitCode::from(2)
                }
                (false, _) => ExitCode::FAILURE,
            });
        }
    }
    anyhow::bail!("the broker connection ended before the job's result arrived")
}
