//! Prometheus metrics (contract section 8), declared in one place with help text and fixed
//! labels, in a private registry; and the small HTTP endpoint serving them with the health and
//! readiness probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    pub jobs_requeued: IntCounterVec,
    pub jobs_rejected: IntCounterVec,
    pub settle_failures: IntCounterVec,
    pub jobs_in_flight: IntGauge,
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
    /// 1 for the sandbox mechanism agents run in (`bubblewrap` or `none`), 0 for the others.
    pub sandbox_active: IntGaugeVec,
    /// True while connected and consuming (`/readyz`).
    pub ready: AtomicBool,
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
        let jobs_in_flight = IntGauge::new("jobs_in_flight", "Jobs running in this worker.")
            .expect("static metric definition");
        r.register(Box::new(jobs_in_flight.clone())).expect("once");
        let followups_published = IntCounter::new(
            "followups_published_total",
            "Follow-up items published (confirmed).",
        )
        .expect("static metric definition");
        r.register(Box::new(followups_published.clone()))
            .expect("once");
        let amqp_connected = IntGauge::new("amqp_connected", "1 while connected to the broker.")
            .expect("static metric definition");
        r.register(Box::new(amqp_connected.clone())).expect("once");
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
                "Jobs whose result was published.",
                &["mode", "state", "failure_cause"],
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
                &["job"],
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
            sandbox: std::sync::RwLock::new("none"),
            registry: r,
        };
        m.zero_initialise();
        m
    }

    /// Every label combination exists from start-up, so dashboards and alerts see zeros.
    fn zero_initialise(&self) {
        self.set_sandbox("none");
        for job in ["running", "remembered"] {
            self.cancels_received.with_label_values(&[job]);
        }
        for mode in ["coding", "explore", "preview"] {
            self.jobs_received.with_label_values(&[mode]);
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
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `stop` is cancelled. A deliberately tiny
/// HTTP/1.1 responder: one GET per connection, no keep-alive.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (mut sock, _) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (status, body, ctype) = match path {
                "/metrics" => ("200 OK", metrics.render(), "text/plain; version=0.0.4"),
                "/healthz" => (
                    "200 OK",
                    crate::job::capabilities::health_json(),
                    "application/json",
                ),
                "/readyz" if metrics.ready.load(Ordering::Relaxed) => (
                    "200 OK",
                    format!("ready (sandbox: {})\n", metrics.sandbox_mechanism()),
                    "text/plain",
                ),
                "/readyz" => (
                    "503 Service Unavailable",
                    "not ready\n".to_owned(),
                    "text/plain",
                ),
                _ => ("404 Not Found", "not found\n".to_owned(), "text/plain"),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_metric_exists_from_start_up() {
        let text = Metrics::new().render();
        for name in [
            "harness_jobs_received_total",
            "harness_jobs_finished_total",
            "harness_jobs_requeued_total",
            "harness_jobs_rejected_total",
            "harness_jobs_in_flight",
            "harness_job_duration_seconds_bucket",
            "harness_phase_duration_seconds_bucket",
            "harness_checkpoint_pushes_total",
            "harness_followups_published_total",
            "harness_publish_failures_total",
            "harness_amqp_connected",
            "harness_amqp_reconnects_total",
            "harness_git_operation_duration_seconds_bucket",
            "harness_agent_tokens_total",
            "harness_sandbox_active",
            "harness_cancels_received_total",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
        assert!(text.contains("le=\"7200\""));
    }

    #[test]
    fn the_active_sandbox_mechanism_is_the_one_set_to_one() {
        let m = Metrics::new();
        assert!(m
            .render()
            .contains("harness_sandbox_active{mechanism=\"none\"} 1"));
        m.set_sandbox("bubblewrap");
        let text = m.render();
        assert!(
            text.contains("harness_sandbox_active{mechanism=\"bubblewrap\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("harness_sandbox_active{mechanism=\"none\"} 0"),
            "{text}"
        );
        assert_eq!(m.sandbox_mechanism(), "bubblewrap");
    }
}
