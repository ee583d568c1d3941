//! The seed's `parseAgentJob` rows (seed 9.1, rows 1-29 and 40-43), each on the seed's base fixture.

use serde_json::{json, Value};

use super::*;

#[test]
fn row01_a_gitlab_provider_parses_when_its_host_is_allowed() {
    let job = with(
        "coding",
        json!({"repo": {"owner": "acme", "name": "widgets", "baseBranch": "main",
            "cloneUrl": "https://gitlab.com/acme/widgets.git", "provider": "gitlab"}}),
    );
    let gitlab = ValidationPolicy::with_hosts(["gitlab.com"], MAX);
    assert_eq!(
        parse_with(&job, &gitlab).unwrap().repo.provider,
        Some(Provider::Gitlab)
    );
    assert_eq!(
        parse(&job).unwrap_err().message,
        "Invalid job: 'repo.cloneUrl' host 'gitlab.com' is not an allowed GitHub host"
    );
}

#[test]
fn row02_an_absent_provider_stays_absent() {
    assert_eq!(parse(&base("coding")).unwrap().repo.provider, None);
}

#[test]
fn row03_an_unknown_provider_is_refused() {
    let mut job = base("coding");
    job["repo"]["provider"] = json!("bitbucket");
    assert_eq!(
        refusal(&job),
        "Invalid job: 'repo.provider' must be 'github' or 'gitlab'"
    );
}

#[test]
fn row04_a_structured_explore_job_is_accepted() {
    let job = parse(&with(
        "explore",
        json!({"output": {"kind": "structured", "shapeHint": "{\"x\":number}", "repair": true}}),
    ))
    .unwrap();
    assert_eq!(job.mode, Mode::Explore);
    assert_eq!(job.branch, "main");
    assert_eq!(
        job.output,
        Some(OutputSpec {
            kind: OutputKind::Structured,
            shape_hint: Some("{\"x\":number}".into()),
            repair: Some(true),
            fail_on_unusable_final: false,
        })
    );
}

#[test]
fn row05_an_explicit_repair_false_is_carried_through() {
    let job = parse(&with(
        "explore",
        json!({"output": {"kind": "structured", "repair": false}}),
    ))
    .unwrap();
    assert_eq!(
        job.output,
        Some(OutputSpec {
            kind: OutputKind::Structured,
            shape_hint: None,
            repair: Some(false),
            fail_on_unusable_final: false,
        })
    );
}

#[test]
fn row06_fail_on_unusable_final_is_carried_through() {
    let job = parse(&with(
        "explore",
        json!({"output": {"kind": "structured", "shapeHint": "{\"service\":string}",
            "failOnUnusableFinal": true}}),
    ))
    .unwrap();
    assert_eq!(
        job.output,
        Some(OutputSpec {
            kind: OutputKind::Structured,
            shape_hint: Some("{\"service\":string}".into()),
            repair: None,
            fail_on_unusable_final: true,
        })
    );
}

#[test]
fn row07_the_explore_service_infra_spec_is_carried_through() {
    let expected = Some(InfraSpec::Service(ServiceInfraSpec {
        environment: ServiceEnvironment::Local,
        no_infra_dependencies: false,
        compose_path: Some("docker-compose.yml".into()),
        environment_url: None,
    }));
    let job = parse(&with(
        "explore",
        json!({"infra": {"environment": "local", "composePath": "docker-compose.yml"}}),
    ))
    .unwrap();
    assert_eq!(job.infra, expected);
    // An explicit service kind parses the same and is not kept.
    let job = parse(&with(
        "explore",
        json!({"infra": {"kind": "service", "environment": "local",
            "composePath": "docker-compose.yml"}}),
    ))
    .unwrap();
    assert_eq!(job.infra, expected);
}

#[test]
fn row08_an_infra_spec_without_a_recognised_environment_is_dropped() {
    for infra in [
        json!({"composePath": "docker-compose.yml"}),
        json!({"environment": "staging"}),
        json!({"environment": "LOCAL"}),
    ] {
        let job = parse(&with("explore", json!({ "infra": infra }))).unwrap();
        assert_eq!(job.infra, None);
    }
}

#[test]
fn row09_the_frontend_infra_spec_is_carried_through() {
    let job = parse(&with(
        "explore",
        json!({"infra": {"kind": "frontend", "packageManager": "pnpm", "buildScript": "build",
            "outputDir": "dist", "serveMode": "static", "servePort": 4173,
            "envInjection": "build",
            "env": {"PUB_API_URL": "https://api.example", "PUB_AUTH_URL": "https://auth.example"},
            "wiremockMappingsPath": "mocks/", "wiremockPort": 8089}}),
    ))
    .unwrap();
    assert_eq!(
        frontend(&job),
        &FrontendInfraSpec {
            package_manager: Some("pnpm".into()),
            install: None,
            build_script: Some("build".into()),
            output_dir: Some("dist".into()),
            serve_mode: Some("static".into()),
            serve_script: None,
            serve_port: Some(4173),
            env_injection: Some("build".into()),
            env: env(&[
                ("PUB_API_URL", "https://api.example"),
                ("PUB_AUTH_URL", "https://auth.example")
            ]),
            wiremock_mappings_path: Some("mocks/".into()),
            wiremock_port: Some(8089),
        }
    );
}

#[test]
fn row10_non_string_env_entries_and_unrecognised_knobs_are_dropped() {
    let job = parse(&with(
        "explore",
        json!({"infra": {"kind": "frontend", "packageManager": "bun", "serveMode": "weird",
            "env": {"GOOD": "https://ok", "BAD": 42, "ALSO_BAD": null, "PATH": "https://evil"},
            "servePort": -3}}),
    ))
    .unwrap();
    assert_eq!(
        frontend(&job),
        &FrontendInfraSpec {
            env: env(&[("GOOD", "https://ok")]),
            ..FrontendInfraSpec::default()
        }
    );
}

#[test]
fn row11_reserved_env_names_and_families_are_dropped() {
    let job = parse(&with(
        "explore",
        json!({"infra": {"kind": "frontend", "env": {"PUB_API_URL": "https://ok",
            "NODE_EXTRA_CA_CERTS": "/x", "BASH_ENV": "/x", "npm_config_registry": "https://evil",
            "GIT_SSH_COMMAND": "evil"}}}),
    ))
    .unwrap();
    assert_eq!(frontend(&job).env, env(&[("PUB_API_URL", "https://ok")]));
}

#[test]
fn row12_reserved_env_families_are_dropped_whatever_their_case() {
    let job = parse(&with(
        "explore",
        json!({"infra": {"kind": "frontend", "env": {"PUB_API_URL": "https://ok",
            "NPM_CONFIG_REGISTRY": "https://evil", "Npm_Config_Cafile": "/x",
            "Git_Ssh_Command": "evil"}}}),
    ))
    .unwrap();
    assert_eq!(frontend(&job).env, env(&[("PUB_API_URL", "https://ok")]));
}

#[test]
fn row13_out_of_range_ports_are_dropped() {
    let job = parse(&with(
        "explore",
        json!({"infra": {"kind": "frontend", "servePort": 70000, "wiremockPort": 0}}),
    ))
    .unwrap();
    assert_eq!(frontend(&job), &FrontendInfraSpec::default());
}

#[test]
fn row14_a_coding_job_with_a_fresh_branch_and_pr_is_accepted() {
    let job = parse(&with(
        "coding",
        json!({"newBranch": "cat-factory/blk_1", "pushBranch": "cat-factory/blk_1",
            "commitMessage": "Implement it", "pr": {"title": "Implement", "body": "body"}}),
    ))
    .unwrap();
    assert_eq!(job.mode, Mode::Coding);
    assert_eq!(job.new_branch.as_deref(), Some("cat-factory/blk_1"));
    assert_eq!(job.push_branch.as_deref(), Some("cat-factory/blk_1"));
    assert_eq!(job.commit_message.as_deref(), Some("Implement it"));
    assert_eq!(
        job.pr,
        Some(PrSpec {
            title: "Implement".into(),
            body: "body".into()
        })
    );
}

#[test]
fn row15_a_bare_coding_job_has_no_output_spec_and_default_flags() {
    let job = parse(&base("coding")).unwrap();
    assert_eq!(job.output, None);
    assert!(job.no_changes_is_error);
    assert!(!job.full);
}

#[test]
fn row16_the_non_fatal_no_op_and_full_history_flags_are_carried_through() {
    let job = parse(&with(
        "coding",
        json!({"noChangesIsError": false, "full": true}),
    ))
    .unwrap();
    assert!(!job.no_changes_is_error);
    assert!(job.full);
}

#[test]
fn row17_guard_limit_knobs_are_floored_and_bad_ones_dropped() {
    let job = parse(&with(
        "coding",
        json!({"guardLimits": {"maxConsecutiveErrors": 20, "maxConsecutiveWebCalls": 40.7,
            "maxToolCallsWithoutEdit": -5}}),
    ))
    .unwrap();
    assert_eq!(
        job.guard_limits,
        Some(GuardLimitsSpec {
            max_tool_calls_without_edit: None,
            max_consecutive_errors: Some(20),
            max_consecutive_web_calls: Some(40),
            ..Default::default()
        })
    );
}

#[test]
fn row18_a_guard_limits_object_with_no_usable_knob_is_dropped() {
    let job = parse(&with(
        "coding",
        json!({"guardLimits": {"maxConsecutiveErrors": "nope", "maxConsecutiveWebCalls": 0}}),
    ))
    .unwrap();
    assert_eq!(job.guard_limits, None);
}

#[test]
fn row19_the_conflict_merge_base_is_carried_through() {
    let job = parse(&with(
        "coding",
        json!({"branch": "cat-factory/blk_1", "full": true, "mergeBase": "main",
            "noChangesIsError": false}),
    ))
    .unwrap();
    assert_eq!(job.merge_base.as_deref(), Some("main"));
    assert_eq!(job.branch, "cat-factory/blk_1");
}

#[test]
fn row20_an_empty_merge_base_is_dropped() {
    let job = parse(&with("coding", json!({"mergeBase": ""}))).unwrap();
    assert_eq!(job.merge_base, None);
}

fn bootstrap_target(clone_url: &str) -> Value {
    json!({"owner": "acme", "name": "new-svc", "cloneUrl": clone_url, "defaultBranch": "main"})
}

#[test]
fn row21_the_bootstrap_spec_is_carried_through() {
    let job = parse(&with(
        "coding",
        json!({"bootstrap": {"target": bootstrap_target("https://github.com/acme/new-svc.git")}}),
    ))
    .unwrap();
    assert_eq!(
        job.bootstrap,
        Some(BootstrapSpec {
            target: BootstrapTarget {
                owner: "acme".into(),
                name: "new-svc".into(),
                clone_url: "https://github.com/acme/new-svc.git".into(),
                default_branch: "main".into(),
            },
            from_scratch: false,
        })
    );
}

#[test]
fn row22_the_from_scratch_bootstrap_flag_is_carried_through() {
    let job = parse(&with(
        "coding",
        json!({"bootstrap": {"target": bootstrap_target("https://github.com/acme/new-svc.git"),
            "fromScratch": true}}),
    ))
    .unwrap();
    assert!(job.bootstrap.unwrap().from_scratch);
}

#[test]
fn row23_a_bootstrap_target_on_a_foreign_host_is_refused() {
    let job = with(
        "coding",
        json!({"bootstrap": {"target": bootstrap_target("https://evil.example/acme/new-svc.git")}}),
    );
    assert_eq!(
        refusal(&job),
        "Invalid job: 'bootstrap.target.cloneUrl' host 'evil.example' is not an allowed GitHub host"
    );
}

#[test]
fn row24_a_missing_or_invalid_mode_is_refused() {
    let mut job = base("coding");
    job.as_object_mut().unwrap().remove("mode");
    assert_eq!(refusal(&job), MODE_REFUSAL);
    assert_eq!(refusal(&base("nonsense")), MODE_REFUSAL);
}

#[test]
fn row25_a_clone_url_on_a_foreign_host_is_refused() {
    let mut job = base("explore");
    job["repo"]["cloneUrl"] = json!("https://evil.example/acme/widgets.git");
    assert_eq!(
        refusal(&job),
        "Invalid job: 'repo.cloneUrl' host 'evil.example' is not an allowed GitHub host"
    );
}

#[test]
fn row26_a_missing_branch_is_refused() {
    assert_eq!(
        refusal(&with("explore", json!({"branch": null}))),
        nes_refusal("branch")
    );
}

#[test]
fn row27_an_absent_service_directory_means_the_whole_repo() {
    assert_eq!(parse(&base("coding")).unwrap().repo.service_directory, None);
}

#[test]
fn row28_a_service_directory_is_normalised_to_a_clean_relative_path() {
    let mut job = base("coding");
    job["repo"]["serviceDirectory"] = json!("/packages/api/");
    assert_eq!(
        parse(&job).unwrap().repo.service_directory.as_deref(),
        Some("packages/api")
    );
}

#[test]
fn row29_a_service_directory_escaping_the_checkout_is_refused() {
    let mut job = base("coding");
    job["repo"]["serviceDirectory"] = json!("../secrets");
    assert_eq!(
        refusal(&job),
        "Invalid job: 'repo.serviceDirectory' must be a path inside the repo"
    );
}

// ---- seed 9.1, describe parseAgentJob (preview mode) ----------------------------------------

#[test]
fn row40_a_preview_job_carries_its_frontend_infra_spec() {
    let job = parse(&with(
        "preview",
        json!({"infra": {"kind": "frontend", "servePort": 4173}}),
    ))
    .unwrap();
    assert_eq!(job.mode, Mode::Preview);
    assert_eq!(frontend(&job).serve_port, Some(4173));
}

#[test]
fn row41_a_preview_job_needs_no_agent_only_fields() {
    let job = parse(&with(
        "preview",
        json!({"systemPrompt": null, "userPrompt": null, "model": null}),
    ))
    .unwrap();
    assert_eq!(
        (
            job.system_prompt.as_str(),
            job.user_prompt.as_str(),
            job.model.as_str()
        ),
        ("", "", "")
    );
    // The proxy pair and the git token are still required.
    assert_eq!(
        refusal(&with(
            "preview",
            json!({"systemPrompt": null, "proxyBaseUrl": null})
        )),
        nes_refusal("proxyBaseUrl")
    );
    assert_eq!(
        refusal(&with("preview", json!({"ghToken": null}))),
        nes_refusal("ghToken")
    );
}

#[test]
fn row42_a_non_preview_mode_still_requires_the_agent_only_fields() {
    assert_eq!(
        refusal(&with("explore", json!({"model": null}))),
        nes_refusal("model")
    );
}

#[test]
fn row43_an_unknown_mode_is_refused() {
    assert_eq!(refusal(&base("serve")), MODE_REFUSAL);
}
