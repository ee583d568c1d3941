//! What this worker is and honours (contract 9): its version, and the optional job fields and
//! control messages it implements, in every result and on `/healthz`, so a dispatcher can keep
//! a job from a worker too old to honour it. A name is added only with what implements it.

use serde::{Deserialize, Serialize};

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The optional job fields this worker parses and honours, and `job.cancel`.
pub const CAPABILITIES: &[&str] = &[
    "bootstrap",
    "contextFiles",
    "dependencyInstall",
    "full",
    "generatorSecrets",
    "guardLimits",
    "job.cancel",
    "mcpServers",
    "mergeBase",
    "output",
    "packageRegistries",
    "persistentCheckout",
    "pushBranch",
    "skills",
    "streamFollowUps",
    "testSecrets",
    "validationChecks",
    "webSearch",
];

/// The `worker` object of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub version: String,
    pub capabilities: Vec<String>,
}

impl WorkerInfo {
    pub fn current() -> Self {
        Self {
            version: VERSION.to_owned(),
            capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        }
    }
}

/// The `/healthz` body.
pub fn health_json() -> String {
    serde_json::json!({"status": "ok", "version": VERSION, "capabilities": CAPABILITIES})
        .to_string()
}
