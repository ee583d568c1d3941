//! Agent runners and their supervision.

pub mod claude;
pub mod codex;
