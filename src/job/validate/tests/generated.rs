//! A fixed sample of the bodies the `fuzz_job` example generates by the million (see
//! `fuzzgen`), so every input class it knows runs in CI too.

use std::collections::BTreeMap;
use std::panic::catch_unwind;

use serde_json::json;

use super::fuzzgen::{
    check, fixtures_dir, load_valid_fixtures, Generator, Mutation, Outcome, REFUSAL_CLASSES,
};
use super::*;

const SEED: u64 = 8;
const SAMPLE: u64 = 2_000;

#[test]
fn generated_bodies_are_accepted_or_refused_and_never_panic() {
    let fixtures = load_valid_fixtures(&fixtures_dir()).unwrap();
    let generator = Generator::new(&fixtures, SEED).unwrap();
    let policy = policy();
    let mut accepted = 0;
    let mut refused: BTreeMap<&str, u64> = BTreeMap::new();
    let mut applied: BTreeMap<&str, u64> = BTreeMap::new();
    for index in 0..SAMPLE {
        let input = generator.input(index);
        let outcome = catch_unwind(|| parse_job(&input.body, &policy)).unwrap_or_else(|_| {
            let head = &input.body[..input.body.len().min(4096)];
            panic!(
                "input {index} of seed {SEED} panicked; it starts {:?}",
                String::from_utf8_lossy(head)
            )
        });
        let debug;
        let checked = match &outcome {
            Ok(job) => {
                debug = format!("{job:?}");
                check(
                    &input.body,
                    &Outcome::Accepted {
                        job_id: &job.job_id,
                        debug: &debug,
                    },
                )
            }
            Err(e) => check(
                &input.body,
                &Outcome::Refused {
                    job_id: e.job_id.as_deref(),
                    message: &e.message,
                },
            ),
        };
        match checked.unwrap_or_else(|e| panic!("input {index} of seed {SEED}: {e}")) {
            None => accepted += 1,
            Some(class) => *refused.entry(class).or_default() += 1,
        }
        for m in Mutation::ALL.into_iter().filter(|&m| input.has(m)) {
            *applied.entry(m.name()).or_default() += 1;
        }
    }
    // Guards against a generator that silently stopped reaching the validator's branches.
    assert!(accepted >= SAMPLE / 10, "only {accepted} accepted");
    for class in REFUSAL_CLASSES {
        assert!(
            refused.contains_key(class),
            "no {class} refusal: {refused:?}"
        );
    }
    for m in Mutation::ALL {
        assert!(applied.contains_key(m.name()), "no {} input", m.name());
    }
}

#[test]
fn the_checks_catch_a_shown_token_a_wrong_job_id_a_wrong_bound_and_an_unknown_refusal() {
    let body = serde_json::to_vec(&with(
        "coding",
        json!({"kind": "deploy", "ghToken": "ght_long_enough"}),
    ))
    .unwrap();
    let refused = |job_id, message| check(&body, &Outcome::Refused { job_id, message });
    assert_eq!(
        refused(Some("job_123"), "Invalid job: unknown job kind 'deploy'"),
        Ok(Some("unknown-kind"))
    );
    assert!(refused(
        Some("job_123"),
        "Invalid job: unknown job kind 'ght_long_enough'"
    )
    .is_err());
    assert!(refused(
        Some("job_123"),
        "Invalid job: 'repo.cloneUrl' host 'ght_long_enough' is not an allowed GitHub host"
    )
    .is_err());
    assert!(refused(None, "Invalid job: unknown job kind 'deploy'").is_err());
    assert!(refused(Some("job_123"), "Invalid job: something new").is_err());
    assert!(refused(Some("job_123"), "Invalid job: body is not valid JSON (x)").is_err());
    assert_eq!(
        refused(
            Some("job_123"),
            "Invalid job: 'newBranch' must be a valid git branch name"
        ),
        Ok(Some("branch-name"))
    );
    // A job id refused as too long must be longer than the bound the text states.
    let too_long = "Invalid job: 'jobId' must be at most 200 bytes";
    assert!(refused(Some("job_123"), too_long).is_err());
    let long_id = "j".repeat(201);
    let long_body = serde_json::to_vec(&with("coding", json!({ "jobId": long_id }))).unwrap();
    assert_eq!(
        check(
            &long_body,
            &Outcome::Refused {
                job_id: Some(&long_id),
                message: too_long
            }
        ),
        Ok(Some("job-id-too-long"))
    );

    let accepted = |debug| {
        check(
            &body,
            &Outcome::Accepted {
                job_id: "job_123",
                debug,
            },
        )
    };
    assert_eq!(accepted("AgentJob { gh_token: *** }"), Ok(None));
    assert!(accepted("AgentJob { gh_token: ght_long_enough }").is_err());
}
