//! What this worker can run, on top of what the contract lets through: job kinds it does not
//! run yet are refused at the door, as invalid jobs (an `invalid-job` result, dead-lettered),
//! instead of being answered after a clone with a failure the backend would read as the
//! model's and retry.

use super::{parse_job, InvalidJob, RefusalKind, ValidationPolicy};
use crate::job::capabilities::{CAPABILITIES, VERSION};
use crate::job::{AgentJob, Mode};

/// A preview job: the frontend build and serve is not built in this worker.
pub const PREVIEW_UNSUPPORTED: &str =
    "Invalid job: 'preview' jobs are not supported by this worker";
/// An explore job that asks for its environment stood up first (the tester's `infra`).
pub const EXPLORE_INFRA_UNSUPPORTED: &str =
    "Invalid job: 'infra' (standing up an environment for an explore job) is not supported by this worker";

/// Validates a job body ([`parse_job`]) and refuses the kinds this worker cannot run.
pub fn accept_job(body: &[u8], policy: &ValidationPolicy) -> Result<AgentJob, InvalidJob> {
    let job = parse_job(body, policy)?;
    let unsupported = match (job.mode, &job.infra) {
        (Mode::Preview, _) => Some(PREVIEW_UNSUPPORTED),
        (Mode::Explore, Some(_)) => Some(EXPLORE_INFRA_UNSUPPORTED),
        (Mode::Explore, None) | (Mode::Coding, _) => None,
    };
    let missing = job
        .required_capabilities
        .iter()
        .find(|c| !CAPABILITIES.contains(&c.as_str()));
    let message = match (unsupported, missing) {
        (Some(message), _) => message.to_owned(),
        (None, Some(capability)) => format!(
            "Invalid job: capability '{capability}' is not supported by this worker (version {VERSION})"
        ),
        (None, None) => return Ok(job),
    };
    Err(InvalidJob {
        job_id: Some(job.job_id),
        message,
        kind: RefusalKind::Unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(mode: &str, extra: serde_json::Value) -> Vec<u8> {
        let mut job = json!({
            "jobId": "job-k", "mode": mode, "systemPrompt": "s", "userPrompt": "u", "model": "m",
            "proxyBaseUrl": "http://127.0.0.1:9/v1", "sessionToken": "sess-123456",
            "ghToken": "ghs_123456", "branch": "main",
            "repo": {"owner": "o", "name": "r", "baseBranch": "main",
                     "cloneUrl": "https://github.com/o/r.git"}
        });
        if let (Some(obj), Some(more)) = (job.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        job.to_string().into_bytes()
    }

    #[test]
    fn preview_and_explore_infra_are_refused_with_the_job_id_and_other_kinds_pass() {
        let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), 1 << 20);
        let preview = accept_job(&body("preview", json!({})), &policy).unwrap_err();
        assert_eq!(preview.message, PREVIEW_UNSUPPORTED);
        assert_eq!(preview.job_id.as_deref(), Some("job-k"));
        assert_eq!(preview.kind.label(), "unsupported");
        let infra = json!({"infra": {"environment": "local"}});
        let explore = accept_job(&body("explore", infra.clone()), &policy).unwrap_err();
        assert_eq!(explore.message, EXPLORE_INFRA_UNSUPPORTED);
        assert!(accept_job(&body("explore", json!({})), &policy).is_ok());
        // Coding jobs carry no stand-up of their own: an `infra` there is not acted on.
        assert!(accept_job(&body("coding", infra), &policy).is_ok());
        // The contract's own refusals come first.
        let bad = accept_job(b"{}", &policy).unwrap_err();
        assert_eq!(bad.kind, RefusalKind::Contract);
    }

    #[test]
    fn a_job_needing_a_capability_this_worker_lacks_is_refused_naming_it() {
        let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), 1 << 20);
        let needs = |caps: serde_json::Value| {
            accept_job(
                &body("coding", json!({ "requiredCapabilities": caps })),
                &policy,
            )
        };
        assert!(needs(json!(["validationChecks", "job.cancel", "mcpServers"])).is_ok());
        let refused = needs(json!(["validationChecks", "teleport"])).unwrap_err();
        assert_eq!(
            refused.message,
            format!("Invalid job: capability 'teleport' is not supported by this worker (version {VERSION})")
        );
        assert_eq!(refused.kind, RefusalKind::Unsupported);
        assert!(
            needs(json!("teleport")).is_ok(),
            "not a list: nothing required"
        );
    }
}
