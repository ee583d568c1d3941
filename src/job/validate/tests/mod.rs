//! `parse_job` against the seed's `parseAgentJob` suite (seed 9.1), the shared job fixtures,
//! the rules of seed section 2 one by one, and a corpus of hostile bodies.

mod auth_and_hosts;
mod branch_names;
mod envelope;
mod fields;
mod fixtures;
mod fuzzgen;
mod gates;
mod generated;
mod hostile;
mod hostile_names;
mod secret_fields;
mod seed;

use serde_json::{json, Value};

use super::*;
use crate::job::{
    ContextFile, FrontendInfraSpec, GuardLimitsSpec, InfraSpec, OutputKind, OutputSpec,
    ServiceEnvironment, ServiceInfraSpec,
};

const MAX: usize = 4 * 1024 * 1024;

fn policy() -> ValidationPolicy {
    ValidationPolicy::with_hosts(Vec::<String>::new(), MAX)
}

/// The seed's base parse fixture (seed section 9) plus `mode`.
fn base(mode: &str) -> Value {
    json!({
        "mode": mode,
        "jobId": "job_123",
        "systemPrompt": "You are a careful engineer.",
        "userPrompt": "Do the thing.",
        "model": "qwen3-max",
        "proxyBaseUrl": "https://w/v1",
        "sessionToken": "sess",
        "ghToken": "ght",
        "repo": {
            "owner": "acme",
            "name": "widgets",
            "baseBranch": "main",
            "cloneUrl": "https://github.com/acme/widgets.git"
        },
        "branch": "main"
    })
}

/// `base(mode)` with the top-level fields of `extra` set (a `null` removes the field).
fn with(mode: &str, extra: Value) -> Value {
    let mut job = base(mode);
    merge(&mut job, extra);
    job
}

fn merge(job: &mut Value, extra: Value) {
    let (Some(o), Value::Object(extra)) = (job.as_object_mut(), extra) else {
        panic!("objects only");
    };
    for (k, v) in extra {
        if v.is_null() {
            o.remove(&k);
        } else {
            o.insert(k, v);
        }
    }
}

fn parse_with(job: &Value, policy: &ValidationPolicy) -> Result<AgentJob, InvalidJob> {
    parse_job(&serde_json::to_vec(job).unwrap(), policy)
}

fn parse(job: &Value) -> Result<AgentJob, InvalidJob> {
    parse_with(job, &policy())
}

fn refusal(job: &Value) -> String {
    parse(job).expect_err("the job must be refused").message
}

fn nes_refusal(path: &str) -> String {
    format!("Invalid job: '{path}' must be a non-empty string")
}

fn frontend(spec: &AgentJob) -> &FrontendInfraSpec {
    match &spec.infra {
        Some(InfraSpec::Frontend(f)) => f,
        other => panic!("expected a frontend infra spec, got {other:?}"),
    }
}

fn env(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

const MODE_REFUSAL: &str = "Invalid job: 'mode' must be 'explore', 'coding' or 'preview'";
