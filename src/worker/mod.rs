//! The flow of one job and the consume loop.
