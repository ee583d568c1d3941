//! The Claude Code and Codex harnesses (seed 5.3 to 5.5): the runner they share ([`runner`]),
//! each CLI's arguments, isolated config home and stream parser ([`claude`], [`codex`]), what
//! both need to set a run up ([`setup`]: the per-run config home, credentials, private files,
//! the system prompt), and the stream types and helpers both parsers use ([`stream`]).

pub mod claude;
pub mod codex;
pub mod runner;
pub mod setup;
pub mod stream;

pub use runner::{run_claude, run_codex};
