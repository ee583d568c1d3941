//! The integration tests, in one binary: one module per area, helpers under `support`.

mod broker;
mod support;
