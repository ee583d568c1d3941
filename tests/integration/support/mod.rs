//! Helpers shared by the integration tests.
//!
//! - [`model_mock`]: a loopback, scripted mock of an OpenAI-compatible chat-completions API that
//!   records every request, for driving the real agent CLIs offline.

// Each helper exposes more than any one test module uses.
#![allow(dead_code)]

pub mod model_mock;
