//! The Claude Code and Codex harnesses (seed 5.3 to 5.5): the runner they share ([`runner`]),
//! each CLI's arguments, isolated config home and stream parser ([`claude`], [`codex`]), and
//! the stream types and helpers both parsers use ([`stream`]).

pub mod claude;
pub mod codex;
pub mod runner;
pub mod stream;

pub use runner::{run_claude, run_codex};
