//! Prometheus metrics (contract sections 8 and 9), declared in one place with help text and
//! fixed labels, in a private registry; `server` serves them with the health and readiness
//! probes.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

mod server;
pub use server::{serve, ServeLimits};

use crate::job::outcome::FailureCause;
use crate::job::RefusalKind;

/// Job durations run from seconds to the two-hour cap and beyond.
const JOB_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 5400.0, 7200.0,
    10800.0,
];
const STEP_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

pub struct Metrics {
    registry: Registry,
    pub jobs_received: IntCounterVec,
    pub jobs_finished: IntCounterVec,
    /// Results re-published from a completion ref: not counted as finished, nor timed.
    pub jobs_replayed: IntCounterVec,
    pub jobs_requeued: IntCounterVec,
    pub jobs_rejected: IntCounterVec,
    pub settle_failures: IntCounterVec,
    pub jobs_in_flight: IntGauge,
    /// The configured concurrency (prefetch of the jobs consumer).
    pub slots: IntGauge,
    /// Deliveries of the jobs queue this worker holds (running, held as duplicates, being
    /// refused): `slots_busy == slots` means the worker takes nothing more.
    pub slots_busy: IntGauge,
    pub job_duration: HistogramVec,
    pub phase_duration: HistogramVec,
    pub checkpoint_pushes: IntCounterVec,
    pub followups_published: IntCounter,
    pub publish_failures: IntCounterVec,
    pub amqp_connected: IntGauge,
    pub amqp_reconnects: IntCounter,
    /// `job.cancel` messages received, by whether the job ran here (`running`) or not
    /// (`remembered`).
    pub cancels_received: IntCounterVec,
    pub git_operation_duration: HistogramVec,
    pub agent_tokens: IntCounterVec,
    /// Fresh checkouts made through the object cache, by how (`cached`, or `direct` when the
    /// cache could not be used and the clone went to the remote).
    pub object_cache_clones: IntCounterVec,
    /// What the object cache's mirrors took on disk at the last sweep.
    pub object_cache_bytes: IntGauge,
    /// 1 for the sandbox mechanism agents run in (`bubblewrap` or `none`), 0 for the others.
    pub sandbox_active: IntGaugeVec,
    /// True while connected and consuming (`/readyz`).
    pub ready: AtomicBool,
    /// Why the worker cannot work (a failed start-up check), for `/readyz`.
    not_ready: std::sync::RwLock<Option<String>>,
    /// The sandbox mechanism, for `/readyz`.
    sandbox: std::sync::RwLock<&'static str>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("static metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("harness".into()), None).expect("valid prefix");
        let jobs_in_flight = gauge(&r, "jobs_in_flight", "Jobs running in this worker.");
        let followups_published = IntCounter::new(
            "followups_published_total",
            "Follow-up items published (confirmed).",
        )
        .expect("static metric definition");
        r.register(Box::new(followups_published.clone()))
            .expect("once");
        let amqp_connected = gauge(&r, "amqp_connected", "1 while connected to the broker.");
        let amqp_reconnects =
            IntCounter::new("amqp_reconnects_total", "Reconnections to the broker.")
                .expect("static metric definition");
        r.register(Box::new(amqp_reconnects.clone())).expect("once");
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            // Process metrics are named without the prefix, as Prometheus expects them.
            let _ = prometheus::default_registry().register(Box::new(pc));
        }
        let m = Self {
            jobs_received: counter(&r, "jobs_received_total", "Valid jobs received.", &["mode"]),
            jobs_finished: counter(
                &r,
                "jobs_finished_total",
                "Jobs whose result was published (replays excluded).",
                &["mode", "state", "failure_cause"],
            ),
            jobs_replayed: counter(
                &r,
                "jobs_replayed_total",
                "Results re-published from a completion ref instead of running the job.",
                &["mode"],
            ),
            jobs_requeued: counter(
                &r,
                "jobs_requeued_total",
                "Deliveries given back to the queue.",
                &["reason"],
            ),
            jobs_rejected: counter(
                &r,
                "jobs_rejected_total",
                "Job messages dead-lettered.",
                &["reason"],
            ),
            settle_failures: counter(
                &r,
                "settle_failures_total",
                "Acks, nacks and rejects that did nothing (the channel was gone): the broker redelivers.",
                &["settlement"],
            ),
            jobs_in_flight,
            slots: gauge(&r, "slots", "Jobs this worker runs at once (its concurrency)."),
            slots_busy: gauge(
                &r,
                "slots_busy",
                "Deliveries of the jobs queue this worker holds unsettled.",
            ),
            job_duration: histogram(
                &r,
                "job_duration_seconds",
                "Wall-clock time of a job, received to result.",
                &["mode", "state"],
                JOB_BUCKETS,
            ),
            phase_duration: histogram(
                &r,
                "phase_duration_seconds",
                "Time spent in each job phase.",
                &["phase"],
                JOB_BUCKETS,
            ),
            checkpoint_pushes: counter(
                &r,
                "checkpoint_pushes_total",
                "Checkpoint pushes by result.",
                &["result"],
            ),
            followups_published,
            publish_failures: counter(
                &r,
                "publish_failures_total",
                "Event publishes that failed (nack, unroutable, timeout, channel gone).",
                &["reason"],
            ),
            amqp_connected,
            amqp_reconnects,
            cancels_received: counter(
                &r,
                "cancels_received_total",
                "job.cancel messages received, by whether the job was running here.",
                // Not `job`: Prometheus gives that label to the scrape target.
                &["target"],
            ),
            git_operation_duration: histogram(
                &r,
                "git_operation_duration_seconds",
                "Duration of git operations.",
                &["op"],
                STEP_BUCKETS,
            ),
            agent_tokens: counter(
                &r,
                "agent_tokens_total",
                "Model tokens the agents reported.",
                &["direction"],
            ),
            object_cache_clones: counter(
                &r,
                "object_cache_clones_total",
                "Fresh checkouts made through the object cache, by how.",
                &["outcome"],
            ),
            object_cache_bytes: gauge(
                &r,
                "object_cache_bytes",
                "Bytes the object cache's mirrors took at the last sweep.",
            ),
            sandbox_active: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "sandbox_active",
                        "1 for the mechanism that confines the agents (bubblewrap or none).",
                    ),
                    &["mechanism"],
                )
                .expect("static metric definition");
                r.register(Box::new(g.clone())).expect("once");
                g
            },
            ready: AtomicBool::new(false),
            not_ready: std::sync::RwLock::new(None),
            sandbox: std::sync::RwLock::new("none"),
            registry: r,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "1, labelled with this worker's version."),
            &["version"],
        )
        .expect("static metric definition");
        m.registry
            .register(Box::new(build_info.clone()))
            .expect("once");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.zero_initialise();
        m
    }

    /// Every label combination exists from start-up, so dashboards and alerts see zeros.
    fn zero_initialise(&self) {
        self.set_sandbox("none");
        for target in ["running", "remembered"] {
            self.cancels_received.with_label_values(&[target]);
        }
        for mode in ["coding", "explore", "preview"] {
            self.jobs_received.with_label_values(&[mode]);
            self.jobs_replayed.with_label_values(&[mode]);
            for state in ["done", "failed"] {
                self.job_duration.with_label_values(&[mode, state]);
            }
            self.jobs_finished
                .with_label_values(&[mode, "done", "none"]);
            for cause in FailureCause::ALL {
                for state in ["done", "failed"] {
                    self.jobs_finished
                        .with_label_values(&[mode, state, cause.as_str()]);
                }
            }
        }
        for reason in [
            "interrupted",
            "workspace",
            "publish-failed",
            "invalid-unannounced",
            "duplicate-requeued",
        ] {
            self.jobs_requeued.with_label_values(&[reason]);
        }
        for kind in RefusalKind::ALL {
            self.jobs_rejected.with_label_values(&[kind.label()]);
        }
        self.jobs_rejected.with_label_values(&["unpublishable"]);
        for settlement in ["basic.ack", "basic.nack", "basic.reject"] {
            self.settle_failures.with_label_values(&[settlement]);
        }
        for result in ["pushed", "failed"] {
            self.checkpoint_pushes.with_label_values(&[result]);
        }
        for reason in ["nacked", "unroutable", "timeout", "channel-closed", "other"] {
            self.publish_failures.with_label_values(&[reason]);
        }
        for phase in ["starting", "clone", "agent", "push"] {
            self.phase_duration.with_label_values(&[phase]);
        }
        for op in ["probe", "clone", "refresh", "merge", "push", "commit"] {
            self.git_operation_duration.with_label_values(&[op]);
        }
        for d in ["input", "output"] {
            self.agent_tokens.with_label_values(&[d]);
        }
        for outcome in ["cached", "direct"] {
            self.object_cache_clones.with_label_values(&[outcome]);
        }
    }

    pub fn observe_git(&self, op: &str, seconds: f64) {
        self.git_operation_duration
            .with_label_values(&[op])
            .observe(seconds);
    }

    /// The Prometheus text exposition of this registry plus the process metrics.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::default_registry().gather());
        let mut out = Vec::new();
        if TextEncoder::new().encode(&families, &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Records the mechanism agents run in (`harness_sandbox_active`, `/readyz`).
    pub fn set_sandbox(&self, mechanism: &'static str) {
        for m in ["bubblewrap", "none"] {
            self.sandbox_active
                .with_label_values(&[m])
                .set(i64::from(m == mechanism));
        }
        *self.sandbox.write().unwrap_or_else(|p| p.into_inner()) = mechanism;
    }

    fn sandbox_mechanism(&self) -> &'static str {
        *self.sandbox.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Records why the worker cannot work (`None` once it can): `/readyz` answers 503 with it.
    pub fn set_not_ready(&self, reason: Option<String>) {
        *self.not_ready.write().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// `/readyz`: whether the worker is ready, and the line saying why or why not.
    pub fn readiness(&self) -> (bool, String) {
        let blocked = self
            .not_ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match blocked {
            Some(reason) => (false, format!("not ready: {reason}\n")),
            None if self.ready.load(Ordering::Relaxed) => (
                true,
                format!("ready (sandbox: {})\n", self.sandbox_mechanism()),
            ),
            None => (false, "not ready\n".to_owned()),
        }
    }

    /// Holds one slot until the guard drops (`harness_slots_busy`).
    pub fn hold_slot(&self) -> SlotGuard {
        self.slots_busy.inc();
        SlotGuard(self.slots_busy.clone())
    }
}

/// One delivery of the jobs queue held by this worker; released when dropped.
#[derive(Debug)]
pub struct SlotGuard(IntGauge);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
