//! The `executor-harness` command line: `worker`, `run`, `demo`, `enqueue`, `cancel` (contract
//! section 1). The commands themselves are in `cli/`.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use executor_harness::demo;
use executor_harness::telemetry::error_chain;

mod cli;

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
    ///
    /// Exit code: 0 after a clean drain (or once --max-jobs jobs are done); 1 with one line on
    /// stderr when it cannot start (a start-up check, the broker, the sandbox).
    Worker {
        /// Configuration file (default: built-in defaults; see config/default.toml).
        #[arg(long, env = "HARNESS_CONFIG")]
        config: Option<PathBuf>,
        /// Jobs run at once (worker.concurrency; wins over HARNESS_CONCURRENCY).
        #[arg(short = 'c', long, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: Option<u16>,
        /// Take at most N jobs, then finish them and exit 0 (worker.max_jobs; wins over
        /// HARNESS_MAX_JOBS). For run-to-completion pods such as a KEDA ScaledJob.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_jobs: Option<u64>,
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
    ///
    /// Prints the job's id (with --wait, its events). Exit code: 0 confirmed (with --wait: 0
    /// done, 1 failed, 2 invalid job), 124 no result within --timeout.
    Enqueue {
        /// The job message body (JSON).
        job: PathBuf,
        #[arg(long, env = "HARNESS_CONFIG")]
        config: Option<PathBuf>,
        /// Follow the job: show its progress, follow-ups and result, and exit with its outcome.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit code 124); the job stays queued
        /// or running.
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
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
    executor_harness::bound_process_memory();
    // One table of the variables the config reads, shown after every command's options.
    let env_help = executor_harness::config::env_help();
    let mut command = Cli::command().after_help(env_help.clone());
    for name in ["worker", "run", "enqueue", "cancel"] {
        command = command.mut_subcommand(name, |c| c.after_help(env_help.clone()));
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::DemoAgent { .. } = cli.command {
        return demo::agent_main();
    }
    // The broker's credentials live in memory from here on: not in the environment block a
    // process of the same user could read, nor in anything the worker starts.
    cli::take_amqp_url();
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
            // One line, each cause once.
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!("executor-harness: {}", error_chain(e));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Worker {
            config,
            concurrency,
            max_jobs,
        } => cli::worker::worker_cmd(config.as_deref(), concurrency, max_jobs).await,
        Command::Run { job, config, json } => {
            cli::worker::run_cmd(&job, config.as_deref(), json).await
        }
        Command::Demo { json } => Ok(ExitCode::from(demo::run_demo(json).await? as u8)),
        Command::Enqueue {
            job,
            config,
            wait,
            timeout,
            json,
            no_validate,
        } => {
            let options = cli::enqueue::Options {
                wait,
                timeout: timeout.map(std::time::Duration::from_secs),
                json,
                no_validate,
            };
            cli::enqueue::enqueue_cmd(&job, config.as_deref(), options).await
        }
        Command::Cancel { job_id, config } => {
            cli::enqueue::cancel_cmd(&job_id, config.as_deref()).await
        }
        Command::DemoAgent { .. } => Ok(ExitCode::SUCCESS),
    }
}
