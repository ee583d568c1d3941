use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::agent::test_support::{job, SESSION_TOKEN};
use crate::job::ContextFile;

#[test]
fn models_json_is_born_0600_and_holds_the_literal_session_token() {
    let home = tempfile::tempdir().unwrap();
    prepare_pi_home_with(&job(), home.path(), None, None).unwrap();
    let path = pi_agent_dir(home.path()).join("models.json");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        doc,
        json!({"providers": {"proxy": {
            "baseUrl": "http://127.0.0.1:9/v1",
            "api": "openai-completions",
            "apiKey": SESSION_TOKEN,
            "compat": {"supportsDeveloperRole": false, "supportsReasoningEffort": false},
            "models": [{"id": "mock-model", "name": "mock-model", "maxTokens": 32768}],
        }}})
    );
}

#[test]
fn preparing_again_keeps_models_json_private_even_if_it_was_widened() {
    let home = tempfile::tempdir().unwrap();
    prepare_pi_home_with(&job(), home.path(), None, None).unwrap();
    let path = pi_agent_dir(home.path()).join("models.json");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    prepare_pi_home_with(&job(), home.path(), None, None).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn agents_md_has_the_monorepo_block_only_with_a_service_directory() {
    let home = tempfile::tempdir().unwrap();
    let mut j = job();
    prepare_pi_home_with(&j, home.path(), None, None).unwrap();
    let plain = fs::read_to_string(pi_agent_dir(home.path()).join("AGENTS.md")).unwrap();
    assert!(plain.starts_with("You are a careful engineer.\n\n## Service blueprint"));
    assert!(plain.contains("## Service specification (the prescriptive spec)"));
    assert!(plain.contains("## Progress tracking (required)"));
    assert!(!plain.contains("## Monorepo service"));

    j.repo.service_directory = Some("packages/api".into());
    prepare_pi_home_with(&j, home.path(), None, None).unwrap();
    let mono = fs::read_to_string(pi_agent_dir(home.path()).join("AGENTS.md")).unwrap();
    assert!(mono.contains("\n\n## Monorepo service (work within your subdirectory)\n"));
    assert!(mono.contains("`packages/api/`"));
}

#[test]
fn the_web_tools_block_appears_only_with_a_provider_and_prefers_the_jobs_guidance() {
    let mut j = job();
    j.web_tools_guidance = Some("## Custom web rules\nOnly docs.rs.".into());
    let off = compose_agents_md(&j, None);
    assert!(!off.contains("Custom web rules") && !off.contains("## Web search"));
    let custom = compose_agents_md(&j, Some("brave"));
    assert!(custom.ends_with("\n\n## Custom web rules\nOnly docs.rs."));
    j.web_tools_guidance = None;
    assert!(compose_agents_md(&j, Some("brave")).contains("## Web search & fetch (use sparingly)"));
}

#[test]
fn the_context_block_lists_each_file_with_its_title_and_url() {
    let mut j = job();
    assert!(!compose_agents_md(&j, None).contains("Linked context"));
    j.context_files = vec![
        ContextFile {
            path: "PROJ-1.md".into(),
            title: "The ticket".into(),
            url: "https://jira.example/PROJ-1".into(),
            content: String::new(),
        },
        ContextFile {
            path: "rfc.md".into(),
            title: "The RFC".into(),
            url: String::new(),
            content: String::new(),
        },
    ];
    let md = compose_agents_md(&j, None);
    assert!(md.contains("\n\n## Linked context (read on demand)\n"));
    assert!(md.contains(
        "- `.cat-context/PROJ-1.md` \u{2014} The ticket (https://jira.example/PROJ-1)\n"
    ));
    assert!(md.contains("- `.cat-context/rfc.md` \u{2014} The RFC\n"));
    assert!(md.contains("Jira"));
}

#[test]
fn the_users_extensions_are_linked_but_not_their_agents_md_models_or_credentials() {
    let user = tempfile::tempdir().unwrap();
    for f in ["settings.json", "AGENTS.md", "models.json", "auth.json"] {
        fs::write(user.path().join(f), "user").unwrap();
    }
    fs::create_dir(user.path().join("extensions")).unwrap();
    fs::create_dir(user.path().join("sessions")).unwrap();
    let home = tempfile::tempdir().unwrap();
    prepare_pi_home_with(&job(), home.path(), Some(user.path()), None).unwrap();
    // Twice: re-preparing the same HOME must not fail on the existing links.
    prepare_pi_home_with(&job(), home.path(), Some(user.path()), None).unwrap();
    let agent = pi_agent_dir(home.path());
    let real_user = fs::canonicalize(user.path()).unwrap();
    for linked in ["settings.json", "extensions"] {
        assert_eq!(
            fs::read_link(agent.join(linked)).unwrap(),
            real_user.join(linked)
        );
    }
    for own in ["AGENTS.md", "models.json"] {
        assert!(!fs::symlink_metadata(agent.join(own))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert!(!agent.join("auth.json").exists());
    assert!(!agent.join("sessions").exists());
    assert_eq!(
        fs::read_to_string(user.path().join("models.json")).unwrap(),
        "user"
    );
}

#[test]
fn a_missing_user_agent_dir_is_not_an_error() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("nope");
    prepare_pi_home_with(&job(), home.path(), Some(&missing), None).unwrap();
}

#[test]
fn a_detected_provider_is_written_without_any_key() {
    let home = tempfile::tempdir().unwrap();
    prepare_pi_home_with(&job(), home.path(), None, Some("brave")).unwrap();
    let path = home.path().join(".config/rpiv-web-tools/config.json");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc, json!({"provider": "brave"}));
}

#[test]
fn a_web_search_job_gets_the_proxys_search_in_its_private_config_and_others_get_none() {
    let home = tempfile::tempdir().unwrap();
    let mut j = job();
    prepare_pi_home_with(&j, home.path(), None, None).unwrap();
    let path = home.path().join(".config/rpiv-web-tools/config.json");
    assert!(!path.exists(), "no provider, no web search");
    let agents_md = |home: &Path| fs::read_to_string(pi_agent_dir(home).join("AGENTS.md")).unwrap();
    assert!(!agents_md(home.path()).contains("## Web search"));

    j.web_search = true;
    let HarnessAuth::Pi { proxy_base_url, .. } = &mut j.auth else {
        panic!("a Pi job")
    };
    *proxy_base_url = "http://127.0.0.1:9/v1/".into();
    prepare_pi_home_with(&j, home.path(), None, None).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        doc,
        json!({"provider": "searxng",
               "baseUrls": {"searxng": "http://127.0.0.1:9/v1/web-search"},
               "apiKeys": {"searxng": SESSION_TOKEN}})
    );
    assert!(agents_md(home.path()).contains("## Web search"));

    // A provider the worker's environment names wins, and keeps its own key (seed quirk).
    prepare_pi_home_with(&j, home.path(), None, Some("brave")).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc, json!({"provider": "brave"}));
}

#[test]
fn web_search_detection_follows_the_seed_priority() {
    let none: [(&str, &str); 0] = [];
    assert_eq!(detect_web_search_provider(none), None);
    assert_eq!(
        detect_web_search_provider([("SEARXNG_URL", "http://s"), ("EXA_API_KEY", "k")]),
        Some("exa".into())
    );
    assert_eq!(
        detect_web_search_provider([("BRAVE_SEARCH_API_KEY", "  ")]),
        None,
        "blank values do not count"
    );
    assert_eq!(
        detect_web_search_provider([
            ("WEB_SEARCH_PROVIDER", " Tavily "),
            ("TAVILY_API_KEY", "t"),
            ("BRAVE_SEARCH_API_KEY", "b")
        ]),
        Some("tavily".into())
    );
    assert_eq!(
        detect_web_search_provider([
            ("WEB_SEARCH_PROVIDER", "tavily"),
            ("BRAVE_SEARCH_API_KEY", "b")
        ]),
        Some("brave".into()),
        "an explicit provider without its key falls back to the priority order"
    );
    assert_eq!(
        detect_web_search_provider([("WEB_SEARCH_PROVIDER", "Kagi")]),
        Some("kagi".into())
    );
}

#[test]
fn a_token_with_template_characters_is_written_escaped_so_pi_sends_it_verbatim() {
    let mut j = job();
    j.auth = crate::job::HarnessAuth::Pi {
        proxy_base_url: "http://127.0.0.1:9/v1".into(),
        session_token: crate::redact::Secret::new("!curl $HOME ${PATH} $$x!"),
    };
    let home = tempfile::tempdir().unwrap();
    prepare_pi_home_with(&j, home.path(), None, None).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(pi_agent_dir(home.path()).join("models.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["providers"]["proxy"]["apiKey"],
        "$!curl $$HOME $${PATH} $$$$x$!"
    );
}
