//! executor-harness: a RabbitMQ worker that runs AI coding agents against git repositories.
//!
//! A dispatcher enqueues job messages; each worker consumes them, clones the repository, runs
//! the coding agent, pushes checkpoints while it works, pushes the final branch, publishes
//! follow-ups, progress and the outcome, and acks the job only after the push settled, so a
//! crashed worker's job is redelivered and resumes on its branch.
//!
//! # Layout
//!
//! The modules follow the stages of a job:
//!
//! - [`broker`]: connect to RabbitMQ (the connection carries the broker's version), declare
//!   the topology (`[amqp.topology]`, named once), consume jobs and dead letters, publish
//!   events with confirms, and the one call that acks, nacks or rejects a delivery.
//! - [`job`]: the job contract (serde types for every mode), validation with the stable
//!   refusal texts and their kinds, and the outcome types (results and their constructors,
//!   follow-ups, progress, failure causes, event ids).
//! - [`git`]: a job's working copy as one value, [`git::Checkout`], whose async methods run
//!   the blocking git2 work off the runtime with a per-step timeout ([`git::Runner`]), and the
//!   checkpoint pushes beside the agent ([`git::Checkpoints`]). Below it: credentials offered
//!   only to the clone URL's origin, clones and the resume refresh, non-forced pushes, the
//!   per-file size limit, completion refs and their pruning, conflict resolution's merge and
//!   its conflict markers (`merge`, `markers`), and bootstrap's fresh single-commit history
//!   and force push (`bootstrap`).
//! - [`forge`]: the code-host API: opening the pull request (GitHub) or merge request
//!   (GitLab) after the final push, with its retries, over HTTP.
//! - [`structured`]: an explore's JSON document (seed 5.6): reading it out of the agent's
//!   answer, and when that fails, the one repair call to the job's own model endpoint (the
//!   proxy's chat completions or a subscription's Messages API), retried and bounded. Used by
//!   the explore flow ([`worker::explore`]).
//! - [`agent`]: the agent runners, in two families: `agent/pi/` (the Pi runner, its
//!   event-stream parser and the HOME it reads) and `agent/cli/` (Claude Code and Codex: the
//!   runner they share, their config homes and stream parsers). Shared by both: process
//!   supervision (own process group, drained streams, group kill), the invocation, and the
//!   progress guard that stops an agent going nowhere.
//! - [`followups`]: the follow-up sentinel file, read only as a regular file in the agent's
//!   directory, off the runtime.
//! - [`worker`]: the consume loop (reconnecting, draining); the job driver
//!   ([`worker::run`]) that owns a job's workspace, checkout, reporter, watchdog and helper
//!   tasks; the flows that borrow them ([`worker::coding`], [`worker::conflict`],
//!   [`worker::bootstrap`]); a job's errors and ends
//!   ([`worker::error`]); and the one place that finishes a delivery ([`worker::settle`]).
//! - [`sandbox`]: the bubblewrap sandbox every agent process tree runs in: read-only host, the
//!   work dir and the config hidden, a private `/proc`, only the job's own directories
//!   writable, an unprivileged user when the worker is root (`docs/sandbox.md`).
//! - [`config`]: the configuration file, its defaults and environment overrides.
//! - [`redact`]: the one redactor every outgoing string passes through, and the [`redact::Secret`]
//!   type that never prints its value.
//! - [`metrics`], [`telemetry`], [`shutdown`]: Prometheus metrics, JSON log lines with the
//!   job's fields at the top level, and the signal handling that cancels the one token passed
//!   down from `main`.
//! - [`demo`]: the self-contained demo run (a throwaway bare repository and a scripted agent).
//! - [`http_retry`]: what the HTTP clients of [`forge`] and [`structured`] share: transient
//!   answers, the wait before the next attempt, an error's full text.
//! - [`owned_dir`]: the guard of a directory owned for one job or run (the job workspace, an
//!   agent's config home): created 0700, removed when its owner ends, however it ends.
//! - `sys`: the libc calls (and libgit2's global options), each behind a safe function; the
//!   only module where `unsafe` code is allowed.
//!
//! Dependencies between modules go one way: `worker` uses every stage, the stages use `job`,
//! `config`, `metrics` and `redact`, and no two modules use each other.

#![deny(unsafe_code)]

pub mod agent;
pub mod broker;
pub mod config;
pub mod demo;
pub mod followups;
pub mod forge;
pub mod git;
pub mod http_retry;
#[cfg(test)]
mod http_stub;
pub mod job;
pub mod metrics;
pub mod owned_dir;
pub mod redact;
pub mod sandbox;
pub mod shutdown;
pub mod structured;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod telemetry;
pub mod worker;

/// Process-wide memory bounds; call first in `main`, before any thread exists. glibc gives each
/// allocating thread an arena of its own (up to eight per core), and the blocking pool's git work
/// then kept tens of MiB per large job resident; libgit2 maps and caches without a useful bound.
pub fn bound_process_memory() {
    sys::limit_malloc_arenas(2);
    git::bound_memory();
}
