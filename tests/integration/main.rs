//! The integration tests, in one binary: one module per area, helpers under `support`.

mod support;

mod real_pi;
