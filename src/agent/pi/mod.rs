//! The Pi harness (seed 5.1): the runner ([`runner`]: invocation, environment, exit decision),
//! the parser of Pi's JSON event stream ([`stream`]), and the per-job HOME Pi reads ([`home`]:
//! `AGENTS.md`, `models.json`, installed extensions). The parser's model calls and tool
//! bodies are read in [`calls`], its todo snapshots in [`todo`].

mod calls;
pub mod home;
pub mod runner;
pub mod stream;
mod todo;

pub use home::{
    compose_agents_md, detect_web_search_provider, prepare_pi_home, prepare_pi_home_with,
};
pub use runner::run_pi;
