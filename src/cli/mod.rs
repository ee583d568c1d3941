//! The commands: `worker` and `run` (this machine runs jobs), `enqueue` and `cancel` (a
//! dispatcher's one-liners), and what they share: the configuration and the logs.

pub mod enqueue;
pub mod worker;

use std::path::Path;

use executor_harness::config::Config;
use executor_harness::telemetry::{self, LogTarget, SecretRegistry};

/// `AMQP_URL` as the process started with it: taken out of the environment first thing, so
/// the broker's credentials live in memory only (not in the environment block a process of the
/// same user could read, nor in anything the worker starts).
static TAKEN_AMQP_URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Call before any thread starts.
pub fn take_amqp_url() {
    let url = executor_harness::config::take_env("AMQP_URL");
    TAKEN_AMQP_URL.get_or_init(|| url);
}

pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let taken = |k: &str| match k {
        "AMQP_URL" => TAKEN_AMQP_URL.get().cloned().flatten(),
        _ => None,
    };
    Ok(Config::load_with(path, taken)?)
}

/// Logging as `log.format` and `HARNESS_LOG_FORMAT` say, at `level` unless `RUST_LOG` says
/// otherwise, through a redactor that learns each job's secrets.
pub fn init_logs(config: &Config, level: &str, target: LogTarget) -> SecretRegistry {
    let secrets = SecretRegistry::default();
    telemetry::init(&config.log.format, level, target, secrets.clone());
    secrets
}
