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
//! - [`broker`]: connect to RabbitMQ, declare the topology, consume jobs, publish events with
//!   confirms, and the one place that acks, nacks or rejects a delivery.
//! - [`job`]: the job contract (serde types for every mode), validation with the stable
//!   refusal texts, and the outcome types (results, follow-ups, progress, failure causes).
//! - [`git`]: credentials, checkout (fresh or resumed), checkpoint and final pushes, the
//!   safety-net commit. All of it is blocking git2 work, run off the async runtime.
//! - [`agent`]: the agent runners, in two families: `agent/pi/` (the Pi runner, its
//!   event-stream parser and the HOME it reads) and `agent/cli/` (Claude Code and Codex: the
//!   runner they share, their config homes and stream parsers). Shared by both: process
//!   supervision (own process group, drained streams, group kill), the invocation, and the
//!   progress guard that stops an agent going nowhere.
//! - [`followups`]: the follow-up sentinel file tailer and watcher.
//! - [`worker`]: the flow that ties the stages together for one job, its watchdogs, the event
//!   sink the flow publishes through, and the consume loop (reconnecting, draining) with its
//!   one ack decision.
//! - [`config`]: the configuration file, its defaults and environment overrides.
//! - [`redact`]: the one redactor every outgoing string passes through, and the [`redact::Secret`]
//!   type that never prints its value.
//! - [`metrics`], [`telemetry`], [`shutdown`]: Prometheus metrics, tracing set-up, and the
//!   signal handling that cancels the one token passed down from `main`.
//! - [`demo`]: the self-contained demo run (a throwaway bare repository and a scripted agent).
//! - [`owned_dir`]: the guard of a directory owned for one job or run (the job workspace, an
//!   agent's config home): created 0700, removed when its owner ends, however it ends.
//! - `sys`: the libc calls (and libgit2's global options), each behind a safe function; the
//!   only module where `unsafe` code is allowed.

#![deny(unsafe_code)]

pub mod agent;
pub mod broker;
pub mod config;
pub mod demo;
pub mod followups;
pub mod git;
pub mod job;
pub mod metrics;
pub mod owned_dir;
pub mod redact;
pub mod shutdown;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod telemetry;
pub mod worker;
