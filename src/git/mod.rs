//! Git work for a job, all through git2 and all blocking: callers run it in `spawn_blocking`.
pub mod pr;
