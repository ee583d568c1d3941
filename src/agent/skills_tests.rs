//! Skill files (seed-later 10.1): Claude Code's config home and the checkout's
//! `.cat-context/skill/`, never written through a symlink.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;
use crate::job::SkillResource;

fn skill(name: &str, resources: &[(&str, &str)]) -> Skill {
    Skill {
        name: name.into(),
        description: String::new(),
        instructions: "Do it well.".into(),
        resources: resources
            .iter()
            .map(|(p, c)| SkillResource {
                rel_path: (*p).into(),
                content: (*c).into(),
            })
            .collect(),
    }
}

#[test]
fn resources_land_under_cat_context_skill_and_a_skill_without_any_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let skills = [
        skill("lint", &[("rules/a.md", "A"), ("b.txt", "B")]),
        skill("plain", &[]),
    ];
    assert_eq!(write_checkout_skill_resources(work.path(), &skills), 2);
    let base = work.path().join(".cat-context/skill/lint");
    assert_eq!(fs::read_to_string(base.join("rules/a.md")).unwrap(), "A");
    assert_eq!(fs::read_to_string(base.join("b.txt")).unwrap(), "B");
    assert!(!work.path().join(".cat-context/skill/plain").exists());
    let mode = fs::metadata(base.join("b.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        write_checkout_skill_resources(empty.path(), &skills[1..]),
        0
    );
    assert!(!empty.path().join(".cat-context").exists());
}

#[test]
fn a_hostile_symlink_in_the_checkout_is_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let skill_dir = work.path().join(".cat-context/skill");
    fs::create_dir_all(&skill_dir).unwrap();
    // A repository could hold these: a skill dir, a subdirectory and a file as links out.
    symlink(outside.path(), skill_dir.join("evil")).unwrap();
    fs::create_dir(skill_dir.join("sub")).unwrap();
    symlink(outside.path(), skill_dir.join("sub/docs")).unwrap();
    let target = outside.path().join("victim.txt");
    fs::write(&target, "untouched").unwrap();
    symlink(&target, skill_dir.join("sub/file.txt")).unwrap();

    let skills = [
        skill("evil", &[("x.txt", "pwned")]),
        skill("sub", &[("docs/y.txt", "pwned"), ("file.txt", "replaced")]),
    ];
    assert_eq!(write_checkout_skill_resources(work.path(), &skills), 1);
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        1,
        "nothing new outside"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
    // The link itself was replaced by a real file inside the checkout.
    let file = skill_dir.join("sub/file.txt");
    assert!(!fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&file).unwrap(), "replaced");
}

#[test]
fn a_symlinked_cat_context_is_refused_whole() {
    let outside = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    symlink(outside.path(), work.path().join(".cat-context")).unwrap();
    let skills = [skill("s", &[("a.txt", "pwned")])];
    assert_eq!(write_checkout_skill_resources(work.path(), &skills), 0);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn skill_md_quotes_its_front_matter_and_keeps_the_description_on_one_line() {
    let mut s = skill("n", &[]);
    s.description = "a\r\nb\nc\rd".into();
    s.instructions = "---\nline".into();
    assert_eq!(
        skill_md(&s),
        "---\nname: \"n\"\ndescription: \"a b c d\"\n---\n\n---\nline\n"
    );
}

#[test]
fn only_claude_code_with_the_jobs_credentials_keeps_resources_out_of_the_checkout() {
    use crate::agent::test_support::subscription_job;
    let leased = subscription_job(
        "claude-code",
        serde_json::json!({"subscriptionToken": "sk-000000"}),
    );
    assert!(!resources_in_checkout(&leased));
    let ambient = subscription_job("claude-code", serde_json::json!({"ambientAuth": true}));
    assert!(resources_in_checkout(&ambient));
    let codex = subscription_job(
        "codex",
        serde_json::json!({"subscriptionToken": "sk-000000"}),
    );
    assert!(resources_in_checkout(&codex));
    assert!(
        resources_in_checkout(&crate::agent::test_support::job()),
        "pi"
    );
}
