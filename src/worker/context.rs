//! What a flow works with: the worker-wide [`JobContext`], the per-job [`JobRun`] the driver
//! lends each flow, and the [`FlowEnd`] a flow hands back.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::git::Checkout;
use crate::job::outcome::{AgentResult, ResultBody};
use crate::job::AgentJob;
use crate::metrics::Metrics;
use crate::sandbox::{Sandbox, SandboxError};
use crate::telemetry::SecretRegistry;
use crate::worker::cancels::Cancels;
use crate::worker::completion::{CompletionRecord, PruneGate};
use crate::worker::reporter::JobReporter;
use crate::worker::tasks::JobTasks;
use crate::worker::warm::{WarmLease, WarmLocks};
use crate::worker::workspace::Workspace;

/// What every job shares: configuration, metrics, the HTTP client for the PR API.
#[derive(Clone)]
pub struct JobContext {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Built on first use: most jobs open no PR, and an idle worker should not hold the TLS
    /// roots in memory.
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    pub secrets: SecretRegistry,
    /// When this worker last pruned old completion refs from each remote.
    pub(crate) prune_gate: Arc<PruneGate>,
    /// Who holds which warm checkout in this process.
    pub(crate) warm_locks: Arc<WarmLocks>,
    /// The sandbox every agent runs in.
    pub sandbox: Arc<Sandbox>,
    /// The jobs running here, to stop one on a cancel, and the cancelled ids remembered.
    pub cancels: Arc<Cancels>,
}

impl JobContext {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>, secrets: SecretRegistry) -> Self {
        Self {
            metrics,
            http: Arc::default(),
            secrets,
            prune_gate: Arc::default(),
            warm_locks: Arc::default(),
            sandbox: Arc::new(Sandbox::none()),
            cancels: Arc::new(Cancels::new(Duration::from_millis(
                config.worker.cancel_memory_ms,
            ))),
            config,
        }
    }

    /// The context of a worker (or a one-job run) about to start jobs: the sandbox detected
    /// for `config` (an error when `sandbox.mode = "required"` finds none), announced in the
    /// metrics, and the process set up for it (see [`Sandbox::apply_to_process`]).
    pub async fn start(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        secrets: SecretRegistry,
    ) -> Result<Self, SandboxError> {
        let sandbox = Sandbox::detect(&config).await?;
        sandbox.apply_to_process();
        metrics.set_sandbox(sandbox.mechanism().as_str());
        Ok(Self::new(config, metrics, secrets).with_sandbox(sandbox))
    }

    /// The same context with agents run in `sandbox`.
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Arc::new(sandbox);
        self
    }

    /// The HTTP client for the PR/MR API (one per worker, so connections are reused).
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(crate::forge::http_client)
    }
}

/// What a flow hands back to the driver.
#[allow(clippy::large_enum_variant)] // one value per job, moved once
pub enum FlowEnd {
    /// The flow ran; `head` is the tip its completion record points at, `None` for a flow
    /// that writes nothing to the remote (explore), which records no completion.
    Ran {
        result: AgentResult,
        head: Option<String>,
    },
    /// The job already has an outcome (an earlier delivery finished it, or another run of it
    /// won a race): its recorded result, published again as it is.
    Replayed(Box<ResultBody>),
}

/// What a flow works with. The driver owns all of it; the flow borrows it.
pub struct JobRun<'a> {
    pub ctx: &'a JobContext,
    pub job: &'a AgentJob,
    pub ws: &'a Workspace,
    pub checkout: &'a Checkout,
    /// The warm checkout the job holds (`persistentCheckout`): the flow prepares it instead of
    /// cloning.
    pub warm: Option<&'a WarmLease>,
    /// Where the job's completion is recorded, when completion refs are on.
    pub record: Option<&'a CompletionRecord>,
    pub reporter: &'a Arc<JobReporter>,
    pub tasks: &'a JobTasks,
    /// The job's token: a watchdog or an interruption cancels it.
    pub cancel: &'a CancellationToken,
}
