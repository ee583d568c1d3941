//! The pull request itself (seed-later 3): the agent's description as its body, made inert
//! before it reaches the code host, the repository's template in the agent's prompt, and an
//! already-open PR refreshed on a redelivery.

use std::time::Duration;

use serde_json::json;

use crate::support::agents::write_agent;
use crate::support::code_host::CodeHost;
use crate::support::repo::BareRepo;
use crate::support::worker::{coding_job, TestWorker};

const WAIT: Duration = Duration::from_secs(60);
const START: &str = "<!-- cat-factory:verification-report:start -->";
const END: &str = "<!-- cat-factory:verification-report:end -->";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_description_fills_the_repos_template_and_reaches_the_host_inert() {
    let origin = BareRepo::new();
    origin.commit_files(
        "main",
        &[(
            ".github/pull_request_template.md",
            "## Summary\n\n## Checklist\n- [ ] tests\n",
        )],
        "Add a PR template",
    );
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"printf '%s' "$PROMPT" > "$(dirname "$0")/prompt"
echo hello > hello.txt
commit_all 'Add hello'
printf '## Summary\nAdds hello for @someone, closes #1.\n\n## Checklist\n- [x] tests\n' > .cat-pr-description.md
finish 'done'"#,
    );
    let host = CodeHost::github_accepting();
    let w = TestWorker::start(&agent, |c| c.job.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let mut job = coding_job("described", &origin.url(), Some("work/described"));
    job["pr"] = json!({"title": "Dispatch title", "body": "Dispatch body"});
    job["githubApiBase"] = json!(host.url());
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(
        r["result"]["prUrl"],
        "https://github.example/acme/widgets/pull/7"
    );

    let created = host.requests();
    assert_eq!(created.len(), 1);
    let sent = created[0].json();
    assert_eq!(
        sent["title"], "Dispatch title",
        "with a template, the dispatch title stays"
    );
    assert_eq!(
        sent["body"],
        "## Summary\nAdds hello for &#64;someone, closes &#35;1.\n\n## Checklist\n- [x] tests"
    );
    let prompt = std::fs::read_to_string(scratch.path().join("prompt")).unwrap();
    assert!(
        prompt.contains("pull request template at `.github/pull_request_template.md`"),
        "{prompt}"
    );
    assert!(
        prompt.contains("```\n## Summary\n\n## Checklist\n- [ ] tests\n```"),
        "{prompt}"
    );
    assert_eq!(
        origin.file_at("work/described", ".cat-pr-description.md"),
        None,
        "the description never reaches the branch"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_refreshes_the_open_prs_title_and_body_keeping_the_engines_region() {
    let origin = BareRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let agent = write_agent(
        scratch.path(),
        "agent",
        r#"echo more > more.txt
commit_all 'More work'
printf '# Fresh title for @lead\n\nFresh body.\n' > .cat-pr-description.md
finish 'done'"#,
    );
    // The PR an earlier delivery opened is there: the create answers that it exists.
    let old_body = format!("Stale body\n{START}\nreport\n{END}\n");
    let host = CodeHost::start(move |r| {
        match r.method.as_str() {
        "POST" => (
            422,
            r#"{"message":"Validation Failed","errors":[{"message":"A pull request already exists for acme:work/again."}]}"#.into(),
        ),
        "GET" => (
            200,
            json!([{"number": 7, "html_url": "https://github.example/acme/widgets/pull/7", "body": old_body}]).to_string(),
        ),
        "PATCH" => (200, "{}".into()),
        _ => (404, "{}".into()),
    }
    });
    let w = TestWorker::start(&agent, |c| c.job.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let mut job = coding_job("again", &origin.url(), Some("work/again"));
    job["pr"] = json!({"title": "Dispatch title"});
    job["githubApiBase"] = json!(host.url());
    w.enqueue(&job).await;
    let r = w.next_result(WAIT).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(
        r["result"]["prUrl"],
        "https://github.example/acme/widgets/pull/7"
    );
    let requests = host.requests();
    let methods: Vec<&str> = requests.iter().map(|q| q.method.as_str()).collect();
    assert_eq!(methods, ["POST", "GET", "PATCH"]);
    let patch = &requests[2];
    assert_eq!(patch.target, "/repos/acme/widgets/pulls/7");
    assert_eq!(
        patch.json(),
        json!({"title": "Fresh title for &#64;lead", "body": format!("Fresh body.\n\n{START}\nreport\n{END}\n")})
    );
    assert!(patch
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    w.stop().await;
}
