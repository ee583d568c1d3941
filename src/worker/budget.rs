//! `worker.max_jobs`: take at most N deliveries of the jobs queue, then drain and exit (a
//! run-to-completion pod).
//!
//! The broker sends a consumer a new delivery whenever one of its `prefetch` slots frees, and
//! a consumer's prefetch cannot be lowered once it consumes (RabbitMQ applies `basic.qos` to
//! later consumers only). So with `R` jobs left, a consumer opens with `P = min(concurrency,
//! R)` and may see `R - P` settles; before the next one frees a slot, the consumer is
//! cancelled (and the broker has confirmed it), so no delivery beyond the `R` can come. The
//! worker then finishes what it holds and exits, possibly short of N when the queue ran dry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::broker::ConsumerCanceller;

/// The allowance, shared by the consume loop (which takes) and the job tasks (which settle).
pub struct Budget {
    /// 0: no limit.
    max: u64,
    taken: AtomicU64,
    /// Set once the worker takes nothing more.
    stopped: AtomicBool,
    consumer: tokio::sync::Mutex<Option<Open>>,
}

/// The consumer taking jobs now, and the settles it may still see.
struct Open {
    canceller: ConsumerCanceller,
    settles_left: u64,
}

impl Budget {
    pub fn new(max_jobs: u64) -> Self {
        Self {
            max: max_jobs,
            taken: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            consumer: tokio::sync::Mutex::new(None),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.max > 0
    }

    fn left(&self) -> u64 {
        self.max.saturating_sub(self.taken.load(Ordering::SeqCst))
    }

    /// The prefetch of a consumer opened now: 0 when nothing more may be taken.
    pub fn prefetch(&self, concurrency: u16) -> u16 {
        if !self.is_limited() {
            return concurrency;
        }
        if self.stopped() {
            return 0;
        }
        u16::try_from(self.left()).map_or(concurrency, |left| left.min(concurrency))
    }

    /// Records the consumer opened with `prefetch` (from [`Budget::prefetch`]).
    pub async fn opened(&self, prefetch: u16, canceller: ConsumerCanceller) {
        if self.is_limited() {
            *self.consumer.lock().await = Some(Open {
                canceller,
                settles_left: self.left().saturating_sub(u64::from(prefetch)),
            });
        }
    }

    /// Counts a delivery taken; `true` when it was the last one allowed.
    pub fn took(&self) -> bool {
        if !self.is_limited() {
            return false;
        }
        let taken = self.taken.fetch_add(1, Ordering::SeqCst) + 1;
        if taken >= self.max {
            self.stopped.store(true, Ordering::SeqCst);
        }
        taken >= self.max
    }

    /// Whether the worker takes nothing more (the allowance is spent, or its consumer was
    /// cancelled to keep within it).
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Call before settling a delivery of the jobs queue: when the slot it frees could let the
    /// broker send more than is left, the consumer is cancelled first.
    pub async fn before_settle(&self) {
        if !self.is_limited() {
            return;
        }
        let mut open = self.consumer.lock().await;
        let Some(current) = open.as_mut() else {
            return;
        };
        if current.settles_left > 0 {
            current.settles_left -= 1;
            return;
        }
        self.stopped.store(true, Ordering::SeqCst);
        if let Err(e) = current.canceller.cancel().await {
            // A closed channel sends nothing more either.
            tracing::debug!(error = %e, "cancelling the jobs consumer at the job limit");
        }
        *open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_never_exceeds_what_is_left() {
        let b = Budget::new(3);
        assert_eq!(b.prefetch(8), 3);
        assert!(!b.took());
        assert_eq!(b.prefetch(8), 2);
        assert_eq!(b.prefetch(1), 1);
        assert!(!b.took());
        assert!(b.took(), "the third is the last");
        assert!(b.stopped());
        assert_eq!(b.prefetch(8), 0);
    }

    #[test]
    fn without_a_limit_the_prefetch_is_the_concurrency_and_nothing_stops() {
        let b = Budget::new(0);
        assert_eq!(b.prefetch(4), 4);
        assert!(!b.took());
        assert!(!b.stopped());
    }
}
