//! The watchdogs: their texts, the inactivity window, the cap, tool silence and cold starts.
use super::*;

/// Inactivity and max-duration windows in seconds; no tool-silence or cold-start window.
fn windows(inactivity: u64, max_duration: u64) -> Windows {
    Windows {
        inactivity: Duration::from_secs(inactivity),
        max_duration: Duration::from_secs(max_duration),
        tool_silence: Duration::ZERO,
        cold_start: Duration::ZERO,
    }
}

struct Fixed;
impl JobState for Fixed {
    fn phase(&self) -> String {
        "agent".into()
    }
    fn breadcrumb(&self) -> String {
        "last completed tool bash 3s ago".into()
    }
}

#[test]
fn the_messages_are_the_seed_texts_word_for_word() {
    let r = KillReason::Inactivity {
        window: Duration::from_millis(600_000),
        phase: "agent".into(),
        breadcrumb: "no tool had completed yet".into(),
    };
    assert_eq!(
        r.message(),
        "Aborted: no agent activity for 600s (likely hung in agent phase; no tool had completed yet)"
    );
    assert_eq!(r.failure_cause(), FailureCause::InactivityTimeout);
    let r = KillReason::MaxDuration {
        cap: Duration::from_millis(1_500),
    };
    assert_eq!(r.message(), "Aborted: exceeded max duration of 2s");
    assert_eq!(
        r.detail(&PhaseTimings::default(), "no tool had completed yet"),
        "Phase timings: (none). no tool had completed yet."
    );
    assert_eq!(r.failure_cause(), FailureCause::MaxDuration);
}

#[tokio::test(start_paused = true)]
async fn silence_of_a_running_agent_fires_inactivity_with_its_phase_and_breadcrumb() {
    let clock = Arc::new(ActivityClock::default());
    let job = CancellationToken::new();
    let w = Watchdog::start(
        clock.clone(),
        windows(10, 3600),
        Arc::new(Fixed),
        job.clone(),
        &JobTasks::new(),
    );
    clock.watch(true);
    tokio::time::sleep(Duration::from_secs(6)).await;
    clock.touch();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!job.is_cancelled(), "activity pushed the deadline");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(job.is_cancelled());
    assert_eq!(
        w.stop().await.unwrap().message(),
        "Aborted: no agent activity for 10s (likely hung in agent phase; last completed tool bash 3s ago)"
    );
}

#[tokio::test(start_paused = true)]
async fn silence_outside_the_agent_does_not_count_but_the_cap_does() {
    let clock = Arc::new(ActivityClock::default());
    let job = CancellationToken::new();
    let w = Watchdog::start(
        clock.clone(),
        windows(10, 60),
        Arc::new(Fixed),
        job.clone(),
        &JobTasks::new(),
    );
    // A long git step: no agent running, no activity.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!job.is_cancelled());
    clock.watch(true);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        clock.touch();
    }
    assert!(job.is_cancelled(), "busy past the cap");
    assert_eq!(
        w.stop().await,
        Some(KillReason::MaxDuration {
            cap: Duration::from_secs(60)
        })
    );
}

/// Remembers a cold start the way the reporter does.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<Duration>>);
impl JobState for Recording {
    fn phase(&self) -> String {
        "clone".into()
    }
    fn breadcrumb(&self) -> String {
        "no tool had completed yet".into()
    }
    fn cold_start(&self, after: Duration) {
        self.0.lock().unwrap().push(after);
    }
}

fn with_tool_silence(tool_silence: u64, cold_start: u64) -> Windows {
    Windows {
        tool_silence: Duration::from_secs(tool_silence),
        cold_start: Duration::from_secs(cold_start),
        ..windows(3600, 7200)
    }
}

#[tokio::test(start_paused = true)]
async fn a_chatty_agent_that_completes_no_tool_is_stopped_and_a_tool_re_arms_the_window() {
    let clock = Arc::new(ActivityClock::default());
    let job = CancellationToken::new();
    let w = Watchdog::start(
        clock.clone(),
        with_tool_silence(20, 0),
        Arc::new(Fixed),
        job.clone(),
        &JobTasks::new(),
    );
    clock.watch(true);
    clock.tool_window(true);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        clock.touch();
    }
    clock.tool_done();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        clock.touch();
    }
    assert!(
        !job.is_cancelled(),
        "the completed tool re-armed the window"
    );
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        clock.touch();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(job.is_cancelled());
    let r = w.stop().await.unwrap();
    assert_eq!(
        r.message(),
        "Aborted: the agent produced output but completed no tool call for 20s (last completed tool bash 3s ago)"
    );
    assert_eq!(r.failure_cause(), FailureCause::NoToolProgress);
}

#[tokio::test(start_paused = true)]
async fn a_silent_agent_is_left_to_the_inactivity_window_and_checks_open_no_tool_window() {
    let clock = Arc::new(ActivityClock::default());
    let job = CancellationToken::new();
    let w = Watchdog::start(
        clock.clone(),
        Windows {
            inactivity: Duration::from_secs(100),
            ..with_tool_silence(20, 0)
        },
        Arc::new(Fixed),
        job.clone(),
        &JobTasks::new(),
    );
    // A quiet agent: no output, so no tool-silence kill (inactivity will come for it).
    clock.watch(true);
    clock.tool_window(true);
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert!(!job.is_cancelled());
    clock.tool_window(false);
    // A check: heartbeats, no tools, no tool window.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        clock.touch();
    }
    assert!(!job.is_cancelled());
    assert_eq!(w.stop().await, None);
}

#[tokio::test(start_paused = true)]
async fn no_output_by_the_cold_start_deadline_is_recorded_once_and_kills_nothing() {
    let clock = Arc::new(ActivityClock::default());
    let job = CancellationToken::new();
    let state = Arc::new(Recording::default());
    let w = Watchdog::start(
        clock.clone(),
        with_tool_silence(0, 120),
        state.clone(),
        job.clone(),
        &JobTasks::new(),
    );
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(*state.0.lock().unwrap(), vec![Duration::from_secs(120)]);
    assert!(!job.is_cancelled());
    assert_eq!(w.stop().await, None);

    let heard = Arc::new(ActivityClock::default());
    let quiet = Arc::new(Recording::default());
    let w = Watchdog::start(
        heard.clone(),
        with_tool_silence(0, 120),
        quiet.clone(),
        CancellationToken::new(),
        &JobTasks::new(),
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    heard.touch();
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(quiet.0.lock().unwrap().is_empty(), "output came in time");
    w.stop().await;
}
