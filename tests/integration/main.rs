//! The integration tests: one binary, one module per area, shared helpers in `support`.

mod support;

mod bootstrap;
mod broker;
mod cancel;
mod cli;
mod completion;
mod conflict;
mod explore;
mod failures;
mod faults;
mod followups;
mod gates;
mod git;
mod hostile;
mod hostile_ids;
mod limits;
mod logs;
mod modes;
mod object_cache;
mod observability;
mod pull_requests;
mod races;
mod real_pi;
mod real_subscription;
mod reclaim;
mod resume;
mod sandbox;
mod secrets;
mod spending;
mod supervision;
mod tools;
mod warm;
mod worker;
