//! The Claude Code and Codex harnesses (seed 5.3 to 5.5):
//!
//! - [`runner`]: the runner they share (supervision, environment, exit decision).
//! - [`setup`]: what both need to set a run up: the per-run config home, the credentials a job
//!   carries, private files, the system prompt with the context pointer.
//! - [`claude`], [`claude_stream`]: Claude Code's argv, config home and environment; the parser
//!   of its `stream-json` output; [`claude_calls`] groups its envelopes into model calls.
//! - [`codex`], [`codex_stream`]: Codex's argv, `CODEX_HOME` and stdin prompt; the parser of
//!   its `exec --json` output.
//! - [`stream`]: the stream types and JSON helpers both parsers use.
//! - [`mcp`]: a job's MCP servers as each CLI reads them.
//! - [`tool_servers`]: the MCP servers Claude Code reported connecting (its `init` event).

pub mod claude;
pub mod claude_calls;
pub mod claude_stream;
pub mod codex;
pub mod codex_stream;
pub mod mcp;
pub mod runner;
pub mod setup;
pub mod stream;
pub mod tool_servers;

pub use runner::{run_claude, run_codex};
pub use tool_servers::tool_servers;
