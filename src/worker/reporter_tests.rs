//! The reporter's ordering, numbering and phase timings.
use std::time::Duration;

use super::*;
use crate::job::outcome::FollowUpKind;
use crate::worker::events::{BoxFuture, SinkError};

/// Publishes one event for each permit the test hands out.
struct GatedSink(Arc<Semaphore>);

impl EventSink for GatedSink {
    fn publish<'a>(&'a self, _event: &'a Event) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let permit = self
                .0
                .acquire()
                .await
                .map_err(|_| SinkError::Disconnected)?;
            permit.forget();
            Ok(())
        })
    }
}

fn item(n: usize) -> FollowUpItem {
    FollowUpItem {
        kind: FollowUpKind::FollowUp,
        title: format!("item {n}"),
        detail: String::new(),
        suggested_action: None,
    }
}

#[tokio::test]
async fn follow_ups_wait_for_room_while_the_broker_is_behind_instead_of_piling_up() {
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(GatedSink(gate.clone()));
    let reporter = JobReporter::start(
        "job-1",
        1,
        Redactor::patterns_only(),
        sink,
        Arc::new(Metrics::new()),
        &JobTasks::new(),
    );
    for n in 0..FOLLOWUPS_IN_FLIGHT {
        reporter.followup(item(n)).await;
    }
    let next = reporter.followup(item(FOLLOWUPS_IN_FLIGHT));
    tokio::pin!(next);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut next)
            .await
            .is_err(),
        "queued past the cap"
    );
    // One published: one slot free.
    gate.add_permits(1);
    tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("queued once a slot was free");
}
