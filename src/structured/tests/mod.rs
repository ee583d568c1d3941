//! The structured-output tests, by concern: reading a document out of a reply, the doubling
//! heuristic and the diagnostics texts, the repair client against a loopback stub, and the
//! resolution as a whole.

mod extract;
mod repair;
mod resolve;

use std::time::Duration;

use super::RepairLimits;

/// The seed's retry with short waits, for tests that only count attempts.
const FAST: RepairLimits = RepairLimits {
    base: Duration::from_millis(1),
    ..RepairLimits::SEED
};
