//! Helpers shared by the integration tests.
//!
//! - [`repo`]: bare-repository fixtures (initial commit on `main`, commits on branches, reads
//!   of tips and files, a rejecting pre-receive hook).
//! - [`git_http`]: a real smart-HTTP git server with token auth that records every attempt.
//! - [`fault_proxy`]: a loopback TCP proxy that drops, black-holes or refuses connections and
//!   can hold back an AMQP client's acks.
//! - [`process`]: the worker binary as a child process (kill, terminate, log, `/readyz`).
//! - [`broker`]: connections to the local RabbitMQ, unique names per test, clean-up.
//! - [`agents`]: fake agent scripts that speak Pi's JSON event stream.
//! - [`model_mock`]: a loopback model API (chat completions, Anthropic Messages, OpenAI
//!   Responses) for driving the real `pi`, `claude` and `codex` CLIs.
//! - [`code_host`]: a loopback GitHub/GitLab API answering from a test's function.
//! - [`worker`]: an in-process worker on a test's own topology.

#![allow(dead_code)]

pub mod agents;
pub mod broker;
pub mod code_host;
pub mod fault_proxy;
pub mod git_http;
pub mod model_mock;
pub mod process;
pub mod repo;
pub mod worker;
