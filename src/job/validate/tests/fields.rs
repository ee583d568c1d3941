//! Top-level flags and strings (seed 2.1) and the optional parts that never refuse a job
//! (seed 2.5, 2.7, 2.8, 2.9).

use serde_json::{json, Value};

use super::*;

#[test]
fn optional_flags_survive_only_with_the_one_accepted_value() {
    let on = parse(&with(
        "coding",
        json!({"webSearch": true, "full": true, "persistentCheckout": true,
            "streamFollowUps": true, "noChangesIsError": false}),
    ))
    .unwrap();
    assert!(on.web_search && on.full && on.persistent_checkout && on.stream_follow_ups);
    assert!(!on.no_changes_is_error);
    let off = parse(&with(
        "coding",
        json!({"webSearch": "true", "full": 1, "persistentCheckout": "yes",
            "streamFollowUps": [true], "noChangesIsError": 0}),
    ))
    .unwrap();
    assert!(!off.web_search && !off.full && !off.persistent_checkout && !off.stream_follow_ups);
    assert!(off.no_changes_is_error);
}

#[test]
fn optional_branch_fields_need_a_non_empty_string() {
    let job = parse(&with(
        "coding",
        json!({"newBranch": "", "pushBranch": 3, "commitMessage": "", "mergeBase": false}),
    ))
    .unwrap();
    assert_eq!(
        (
            job.new_branch,
            job.push_branch,
            job.commit_message,
            job.merge_base
        ),
        (None, None, None, None)
    );
}

#[test]
fn github_api_base_keeps_any_string_and_checks_only_a_non_empty_one() {
    let job = parse(&with("coding", json!({"githubApiBase": ""}))).unwrap();
    assert_eq!(job.github_api_base.as_deref(), Some(""));
    let job = parse(&with("coding", json!({"githubApiBase": 42}))).unwrap();
    assert_eq!(job.github_api_base, None);
    let job = parse(&with(
        "coding",
        json!({"githubApiBase": "https://api.github.com"}),
    ))
    .unwrap();
    assert_eq!(
        job.github_api_base.as_deref(),
        Some("https://api.github.com")
    );
    assert_eq!(
        refusal(&with("coding", json!({"githubApiBase": "not a url"}))),
        "Invalid job: 'githubApiBase' must be a valid URL"
    );
}

#[test]
fn web_tools_guidance_keeps_any_string() {
    let job = parse(&with("coding", json!({"webToolsGuidance": ""}))).unwrap();
    assert_eq!(job.web_tools_guidance.as_deref(), Some(""));
    let job = parse(&with("coding", json!({"webToolsGuidance": {}}))).unwrap();
    assert_eq!(job.web_tools_guidance, None);
}

#[test]
fn preview_prompts_keep_a_string_and_replace_anything_else_with_empty() {
    let job = parse(&with(
        "preview",
        json!({"systemPrompt": "", "userPrompt": 5, "model": "m"}),
    ))
    .unwrap();
    assert_eq!(
        (
            job.system_prompt.as_str(),
            job.user_prompt.as_str(),
            job.model.as_str()
        ),
        ("", "", "m")
    );
}

#[test]
fn a_non_object_repo_fails_on_its_owner() {
    for repo in [json!(null), json!("acme/widgets"), json!([]), json!(1)] {
        assert_eq!(
            refusal(&with("coding", json!({ "repo": repo }))),
            nes_refusal("repo.owner")
        );
    }
    let mut job = base("coding");
    job.as_object_mut().unwrap().remove("repo");
    assert_eq!(refusal(&job), nes_refusal("repo.owner"));
}

#[test]
fn a_null_provider_is_absent_and_any_other_non_provider_is_refused() {
    let mut job = base("coding");
    job["repo"]["provider"] = Value::Null;
    assert_eq!(parse(&job).unwrap().repo.provider, None);
    for bad in [json!(""), json!("GitHub"), json!(1), json!({})] {
        job["repo"]["provider"] = bad;
        assert_eq!(
            refusal(&job),
            "Invalid job: 'repo.provider' must be 'github' or 'gitlab'"
        );
    }
}

#[test]
fn a_non_string_service_directory_is_absent() {
    let mut job = base("coding");
    job["repo"]["serviceDirectory"] = json!(["..", "x"]);
    assert_eq!(parse(&job).unwrap().repo.service_directory, None);
    job["repo"]["serviceDirectory"] = json!(" ./ ");
    assert_eq!(parse(&job).unwrap().repo.service_directory, None);
}

#[test]
fn a_malformed_output_spec_falls_back_to_prose_defaults() {
    let job = parse(&with("explore", json!({"output": "structured"}))).unwrap();
    assert_eq!(job.output, None);
    let job = parse(&with(
        "explore",
        json!({"output": {"kind": "STRUCTURED", "shapeHint": 1, "repair": "no",
            "failOnUnusableFinal": "true"}}),
    ))
    .unwrap();
    assert_eq!(job.output, Some(OutputSpec::default()));
}

#[test]
fn a_non_object_pr_means_no_pr_and_a_non_string_body_is_empty() {
    for pr in [json!("Implement"), json!(null), json!(true)] {
        assert_eq!(
            parse(&with("coding", json!({ "pr": pr }))).unwrap().pr,
            None
        );
    }
    let job = parse(&with("coding", json!({"pr": {"title": "T", "body": 5}}))).unwrap();
    assert_eq!(
        job.pr,
        Some(PrSpec {
            title: "T".into(),
            body: String::new()
        })
    );
    assert_eq!(job.safety_net_message(), "T");
}

#[test]
fn a_non_object_bootstrap_target_fails_on_its_owner() {
    for target in [json!(null), json!("acme/new"), json!([])] {
        assert_eq!(
            refusal(&with("coding", json!({"bootstrap": {"target": target}}))),
            nes_refusal("bootstrap.target.owner")
        );
    }
    assert_eq!(
        parse(&with("coding", json!({"bootstrap": "yes"})))
            .unwrap()
            .bootstrap,
        None
    );
}

#[test]
fn a_bootstrap_pushes_to_its_target_and_every_other_job_to_its_repository() {
    let plain = parse(&with("coding", json!({}))).unwrap();
    assert_eq!(plain.push_clone_url(), plain.repo.clone_url);
    let target = "https://github.com/acme/new-service.git";
    let bootstrap = parse(&with(
        "coding",
        json!({"bootstrap": {"target": {"owner": "acme", "name": "new-service",
            "cloneUrl": target, "defaultBranch": "main"}}}),
    ))
    .unwrap();
    assert_eq!(bootstrap.push_clone_url(), target);
}

#[test]
fn context_files_are_sanitised_and_the_first_usable_name_wins() {
    let job = parse(&with(
        "explore",
        json!({"contextFiles": [
            "not an object",
            {"path": "../../etc/pa ss wd", "content": "first", "title": "T", "url": "https://u"},
            {"path": "passwd", "content": "second"},
            {"path": ".env", "content": "dotfile"},
            {"path": 7, "content": "no path"},
            {"path": "a/b\\c.md", "content": 1},
            {"path": "c.md", "content": "later wins", "title": 3, "url": null},
            {"path": "c.md", "content": "too late"},
            {"path": "e.md", "content": "", "title": ""}
        ]}),
    ))
    .unwrap();
    let files = |path: &str, title: &str, url: &str, content: &str| ContextFile {
        path: path.into(),
        title: title.into(),
        url: url.into(),
        content: content.into(),
    };
    assert_eq!(
        job.context_files,
        vec![
            files("passwd", "T", "https://u", "first"),
            files("c.md", "c.md", "", "later wins"),
            files("e.md", "", "", ""),
        ]
    );
}

#[test]
fn context_files_that_are_not_an_array_are_none() {
    for cf in [
        json!({"path": "a.md", "content": "x"}),
        json!("a.md"),
        json!([]),
    ] {
        let job = parse(&with("explore", json!({ "contextFiles": cf }))).unwrap();
        assert!(job.context_files.is_empty());
    }
}

#[test]
fn service_infra_flags_and_strings_are_kept_only_when_valid() {
    let job = parse(&with(
        "explore",
        json!({"infra": {"environment": "ephemeral", "noInfraDependencies": true,
            "composePath": "", "environmentUrl": "https://env.example"}}),
    ))
    .unwrap();
    assert_eq!(
        job.infra,
        Some(InfraSpec::Service(ServiceInfraSpec {
            environment: ServiceEnvironment::Ephemeral,
            no_infra_dependencies: true,
            compose_path: None,
            environment_url: Some("https://env.example".into()),
        }))
    );
    let job = parse(&with("explore", json!({"infra": "local"}))).unwrap();
    assert_eq!(job.infra, None);
}

#[test]
fn frontend_knobs_are_kept_only_when_valid() {
    let job = parse(&with(
        "preview",
        json!({"infra": {"kind": "frontend", "packageManager": "yarn",
            "install": "pnpm i --frozen-lockfile", "buildScript": "", "outputDir": 5,
            "serveMode": "command", "serveScript": "start", "servePort": 4173.9,
            "envInjection": "runtime", "env": {"home": "/h", "": "empty", "HOME": "/root"},
            "wiremockMappingsPath": "", "wiremockPort": 65535.5}}),
    ))
    .unwrap();
    assert_eq!(
        frontend(&job),
        &FrontendInfraSpec {
            package_manager: Some("yarn".into()),
            install: Some("pnpm i --frozen-lockfile".into()),
            build_script: None,
            output_dir: None,
            serve_mode: Some("command".into()),
            serve_script: Some("start".into()),
            serve_port: Some(4173),
            env_injection: Some("runtime".into()),
            env: env(&[("home", "/h")]),
            wiremock_mappings_path: None,
            wiremock_port: Some(65535),
        }
    );
}

#[test]
fn ports_that_cannot_bind_are_dropped() {
    for port in [
        json!(0.5),
        json!(65536),
        json!("4173"),
        json!(-1),
        json!(1e300),
    ] {
        let job = parse(&with(
            "preview",
            json!({"infra": {"kind": "frontend", "servePort": port, "wiremockPort": port}}),
        ))
        .unwrap();
        assert_eq!(frontend(&job), &FrontendInfraSpec::default(), "{port}");
    }
}

#[test]
fn an_env_with_no_surviving_entry_is_omitted() {
    let job = parse(&with(
        "preview",
        json!({"infra": {"kind": "frontend", "env": {"PATH": "/x", "N": 1}}}),
    ))
    .unwrap();
    assert_eq!(frontend(&job).env, None);
    let job = parse(&with(
        "preview",
        json!({"infra": {"kind": "frontend", "env": ["A=1"]}}),
    ))
    .unwrap();
    assert_eq!(frontend(&job).env, None);
}

#[test]
fn guard_limit_knobs_accept_any_positive_finite_number() {
    let job = parse(&with(
        "coding",
        json!({"guardLimits": {"maxToolCallsWithoutEdit": 1e30, "maxConsecutiveErrors": 0.5,
            "maxConsecutiveWebCalls": true}}),
    ))
    .unwrap();
    assert_eq!(
        job.guard_limits,
        Some(GuardLimitsSpec {
            max_tool_calls_without_edit: Some(u64::MAX),
            max_consecutive_errors: Some(0),
            max_consecutive_web_calls: None,
            ..Default::default()
        })
    );
    let job = parse(&with("coding", json!({"guardLimits": [20]}))).unwrap();
    assert_eq!(job.guard_limits, None);
}
