//! Helpers shared by the integration tests.
//!
//! - [`repo`]: bare-repository fixtures (initial commit on `main`, commits on branches, reads
//!   of tips and files, a rejecting pre-receive hook).
//! - [`git_http`]: a real smart-HTTP git server with token auth that records every attempt.

#![allow(dead_code)]

pub mod git_http;
pub mod repo;
