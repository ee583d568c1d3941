//! The checks every outcome of `parse_job` must pass, whatever the body.

use serde_json::Value;

/// The refusal classes of `parse_job`'s stable texts.
pub const REFUSAL_CLASSES: [&str; 13] = [
    "too-large",
    "not-json",
    "not-object",
    "unknown-kind",
    "mode",
    "missing-field",
    "provider",
    "service-directory",
    "not-url",
    "scheme",
    "host",
    "job-id-too-long",
    "branch-name",
];

/// The class of a refusal text, and the part of it copied from the body, if any.
fn refusal_class(message: &str) -> Option<(&'static str, &str)> {
    let rest = message.strip_prefix("Invalid job: ")?;
    let class = if rest.starts_with("body exceeds ") {
        "too-large"
    } else if rest.starts_with("body is not valid JSON (") {
        "not-json"
    } else if rest == "body must be an object" {
        "not-object"
    } else if let Some(kind) = rest.strip_prefix("unknown job kind '") {
        return Some(("unknown-kind", kind.strip_suffix('\'')?));
    } else if rest == "'mode' must be 'explore', 'coding' or 'preview'" {
        "mode"
    } else if rest.ends_with("' must be a non-empty string") {
        "missing-field"
    } else if rest == "'repo.provider' must be 'github' or 'gitlab'" {
        "provider"
    } else if rest == "'repo.serviceDirectory' must be a path inside the repo" {
        "service-directory"
    } else if rest.ends_with("' must be a valid URL") {
        "not-url"
    } else if rest.ends_with("' must be an https or file URL") {
        "scheme"
    } else if let Some(tail) = rest.strip_suffix("' is not an allowed GitHub host") {
        let (_, host) = tail.split_once("' host '")?;
        return Some(("host", host));
    } else if let Some(bound) = rest.strip_prefix("'jobId' must be at most ") {
        // The bound, checked against the body's id below.
        return Some(("job-id-too-long", bound.strip_suffix(" bytes")?));
    } else if rest.ends_with("' must be a valid git branch name") {
        "branch-name"
    } else {
        return None;
    };
    Some((class, ""))
}

/// What `parse_job` returned, reduced to what the checks need.
pub enum Outcome<'a> {
    Accepted {
        job_id: &'a str,
        /// The job's `Debug` text.
        debug: &'a str,
    },
    Refused {
        job_id: Option<&'a str>,
        message: &'a str,
    },
}

/// Checks an outcome against the body: a refusal has a known class and reports the body's
/// `jobId` when it could be read; nothing shown (refusal text or accepted job's `Debug`)
/// contains a token of the body. Returns the refusal class, `None` for an accepted job.
pub fn check(body: &[u8], outcome: &Outcome<'_>) -> Result<Option<&'static str>, String> {
    let (class, reported_id, shown) = match outcome {
        Outcome::Accepted { job_id, debug } => (None, Some(*job_id), *debug),
        Outcome::Refused { job_id, message } => {
            let (class, echoed) =
                refusal_class(message).ok_or_else(|| format!("unknown refusal: {message}"))?;
            if matches!(class, "too-large" | "not-json" | "not-object") {
                return match job_id {
                    None => Ok(Some(class)),
                    Some(id) => Err(format!("{class} refusal reports job id {id:?}")),
                };
            }
            (Some(class), *job_id, echoed)
        }
    };
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) else {
        return Err("a body that is not a JSON object got past the envelope".into());
    };
    let body_id = o
        .get("jobId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if reported_id != body_id {
        return Err(format!(
            "reported job id {reported_id:?}, the body says {body_id:?}"
        ));
    }
    if class == Some("job-id-too-long") {
        let bound: usize = shown
            .parse()
            .map_err(|_| format!("no bound in the job id refusal: {shown:?}"))?;
        if body_id.map_or(0, str::len) <= bound {
            return Err(format!(
                "a job id of at most {bound} bytes refused as too long"
            ));
        }
    }
    for key in ["ghToken", "sessionToken", "subscriptionToken"] {
        let Some(token) = o.get(key).and_then(Value::as_str) else {
            continue;
        };
        // Only a token written once, and long enough not to occur by chance, is checked: the
        // same text elsewhere in the body may be shown legitimately.
        if token.len() >= 8 && occurrences(body, token.as_bytes()) == 1 && shown.contains(token) {
            return Err(format!("the value of {key} is shown"));
        }
    }
    Ok(class)
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .take(2)
        .count()
}
