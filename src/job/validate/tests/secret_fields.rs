//! The job's own secrets (seed-later 9): a malformed entry refuses the job with the seed's
//! text; reserved and repeated keys are dropped; the `.npmrc` says each scope's registry and
//! each host's token once.

use serde_json::json;

use super::*;
use crate::job::validate::render_npmrc;

fn refused(extra: serde_json::Value) -> String {
    parse(&with("coding", extra)).unwrap_err().message
}

#[test]
fn secret_env_entries_are_checked_in_order_and_reserved_or_repeated_keys_dropped() {
    let job = parse(&with(
        "coding",
        json!({"generatorSecrets": [
            {"key": " API_KEY ", "value": "v1"},
            {"key": "API_KEY", "value": "v2"},
            {"key": "PATH", "value": ""},
            {"key": "npm_config_registry", "value": "x"}
        ], "testSecrets": null}),
    ))
    .unwrap();
    let keys: Vec<&str> = job
        .generator_secrets
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(keys, ["API_KEY"]);
    assert_eq!(job.generator_secrets[0].value.expose(), "v1");
    assert!(job.test_secrets.is_empty());
    assert_eq!(
        refused(json!({"testSecrets": {"k": "v"}})),
        "Invalid job: 'testSecrets' must be an array"
    );
    assert_eq!(
        refused(json!({"testSecrets": ["x"]})),
        "Invalid job: 'testSecrets[0]' must be an object"
    );
    assert_eq!(
        refused(json!({"generatorSecrets": [{"key": "1BAD", "value": "v"}]})),
        "Invalid job: 'generatorSecrets[0].key' must be a valid environment variable name"
    );
    assert_eq!(
        refused(json!({"generatorSecrets": [{"key": "OK", "value": ""}]})),
        "Invalid job: 'generatorSecrets[0].value' must be a non-empty string"
    );
}

#[test]
fn registries_name_an_allowed_host_scopes_like_an_org_and_a_one_line_token() {
    let job = parse(&with(
        "coding",
        json!({"packageRegistries": [
            {"ecosystem": "pypi", "host": "pypi.org", "scopes": [], "token": "t"},
            {"ecosystem": "npm", "host": " NPM.pkg.github.com ", "scopes": ["@acme", "@acme-ui"], "token": "ghp_first"},
            {"ecosystem": "npm", "host": "npm.pkg.github.com", "scopes": [], "token": "ghp_second"}
        ]}),
    ))
    .unwrap();
    assert_eq!(
        job.package_registries.len(),
        2,
        "other ecosystems are dropped"
    );
    assert_eq!(
        render_npmrc(&job.package_registries),
        "@acme:registry=https://npm.pkg.github.com/\n@acme-ui:registry=https://npm.pkg.github.com/\n//npm.pkg.github.com/:_authToken=ghp_second\n"
    );
    let entry = |e: serde_json::Value| json!({"packageRegistries": [e]});
    assert_eq!(
        refused(entry(json!({"ecosystem": "npm", "host": "evil.example", "scopes": [], "token": "t"}))),
        "Invalid job: 'packageRegistries[0].host' 'evil.example' is not an allowed npm registry host"
    );
    assert_eq!(
        refused(entry(
            json!({"ecosystem": "npm", "host": "registry.npmjs.org", "scopes": ["acme"], "token": "t"})
        )),
        "Invalid job: 'packageRegistries[0].scopes[0]' must look like @org"
    );
    assert_eq!(
        refused(entry(
            json!({"ecosystem": "npm", "host": "registry.npmjs.org", "scopes": [], "token": "a\nregistry=http://evil"})
        )),
        "Invalid job: 'packageRegistries[0].token' must not contain spaces or control characters"
    );
}

#[test]
fn every_secret_of_the_job_is_masked_by_its_redactor() {
    let job = parse(&with(
        "coding",
        json!({"generatorSecrets": [{"key": "API_KEY", "value": "gen-secret-0001"}],
               "packageRegistries": [{"ecosystem": "npm", "host": "registry.npmjs.org", "scopes": [], "token": "npm-token-0002"}]}),
    ))
    .unwrap();
    assert_eq!(
        job.redactor().redact("gen-secret-0001 and npm-token-0002"),
        "*** and ***"
    );
}
