//! `worker` (consume jobs, serve the probes) and `run` (one job from a file, no broker).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use executor_harness::job::accept_job;
use executor_harness::job::outcome::{Event, ResultBody};
use executor_harness::metrics::{Metrics, ServeLimits};
use executor_harness::telemetry::LogTarget;
use executor_harness::worker::context::JobContext;
use executor_harness::worker::error::JobEnd;
use executor_harness::worker::events::{now_ms, EventSink, StdoutSink};
use executor_harness::worker::run::run_job;
use executor_harness::{shutdown, worker};

use super::{init_logs, load_config};

pub async fn worker_cmd(
    path: Option<&Path>,
    concurrency: Option<u16>,
    max_jobs: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut config = load_config(path)?;
    if let Some(n) = concurrency {
        config.worker.concurrency = n;
    }
    if let Some(n) = max_jobs {
        config.worker.max_jobs = n;
    }
    let config = Arc::new(config);
    let secrets = init_logs(&config, &config.log.level, LogTarget::Stderr);
    let metrics = Arc::new(Metrics::new());
    // The tree: `root` ends the probes once the worker is done; `shutdown` (SIGTERM, SIGINT)
    // starts the drain, during which /healthz still answers.
    let root = CancellationToken::new();
    let shutdown = root.child_token();
    shutdown::spawn_signal_listener(shutdown.clone()).context("cannot install signal handlers")?;
    let server = match config.metrics.listen.trim() {
        "" => None,
        addr => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            Some(tokio::spawn(executor_harness::metrics::serve(
                listener,
                metrics.clone(),
                ServeLimits::default(),
                root.clone(),
            )))
        }
    };
    let ran = worker::run_worker(config, metrics, secrets, shutdown).await;
    root.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    ran?;
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
}

pub async fn run_cmd(path: &Path, config: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load_config(config)?);
    // The live status holds the terminal: log lines go to a file instead of between its lines.
    let live = !json && std::io::stdout().is_terminal();
    let target = match live {
        true => run_log_file(&config.work_dir()),
        false => LogTarget::Stderr,
    };
    let secrets = init_logs(&config, &config.log.level, target);
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
        JobEnd::Finished(body) | JobEnd::Replayed(body) => {
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
        JobEnd::WorkerFault(fault) => {
            eprintln!("executor-harness: the job could not run here: {fault}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `<work_dir>/run-<pid>.log`, announced on stderr; stderr itself when no file can be made.
fn run_log_file(work_dir: &Path) -> LogTarget {
    let path = work_dir.join(format!("run-{}.log", std::process::id()));
    let opened = std::fs::create_dir_all(work_dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    });
    match opened {
        Ok(file) => {
            eprintln!("executor-harness: logs in {}", path.display());
            LogTarget::File(file)
        }
        Err(_) => LogTarget::Stderr,
    }
}
