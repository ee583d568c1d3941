//! The registry: every metric exists from start-up, and the gauges say what they are set to.

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

#[test]
fn the_replay_build_and_slot_metrics_exist_from_start_up() {
    let text = Metrics::new().render();
    for series in [
        "harness_jobs_replayed_total{mode=\"coding\"} 0",
        "harness_slots 0",
        "harness_slots_busy 0",
        "harness_jobs_requeued_total{reason=\"workspace\"} 0",
    ] {
        assert!(text.contains(series), "missing {series}:\n{text}");
    }
    let build = format!(
        "harness_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
}

#[test]
fn a_held_slot_is_busy_until_its_guard_drops() {
    let m = Metrics::new();
    let a = m.hold_slot();
    let b = m.hold_slot();
    assert_eq!(m.slots_busy.get(), 2);
    drop(a);
    assert_eq!(m.slots_busy.get(), 1);
    drop(b);
    assert_eq!(m.slots_busy.get(), 0);
}

#[test]
fn a_start_up_problem_makes_readyz_say_it_until_cleared() {
    let m = Metrics::new();
    m.set_ready(true);
    assert!(m.readiness().0);
    m.set_not_ready(Some("worker.work_dir /x is not writable".into()));
    let (ready, body) = m.readiness();
    assert!(!ready);
    assert_eq!(body, "not ready: worker.work_dir /x is not writable\n");
    m.set_not_ready(None);
    assert!(m.readiness().0);
}
