//! Provider inference, the GitLab target and the GitHub API base derived from job fields, and
//! JavaScript-compatible URL encoding.

use crate::forge::github::github_api_base;
use crate::forge::gitlab::gitlab_target;
use crate::forge::{encode_component, infer_provider};
use crate::job::Provider;

#[test]
fn detects_gitlab_from_the_clone_url_host_including_self_managed() {
    for url in [
        "https://gitlab.com/group/proj.git",
        "https://gitlab.example.com/group/proj.git",
        "https://code.gitlab.example.com/group/proj.git",
    ] {
        assert_eq!(infer_provider(url), Provider::Gitlab, "{url}");
    }
}

#[test]
fn defaults_to_github_for_enterprise_hosts_and_unparseable_input() {
    for url in [
        "https://github.com/o/r.git",
        "https://github.acme.com/o/r.git",
        "not a url",
        "",
        "https://mygitlab.com/o/r.git",
    ] {
        assert_eq!(infer_provider(url), Provider::Github, "{url}");
    }
}

#[test]
fn derives_the_gitlab_rest_base_from_the_clone_url_host() {
    let (base, _) = gitlab_target("https://gitlab.com/group/proj.git").unwrap();
    assert_eq!(base, "https://gitlab.com/api/v4");
    let (base, _) = gitlab_target("https://gitlab.example.com/group/proj.git").unwrap();
    assert_eq!(base, "https://gitlab.example.com/api/v4");
    let (base, _) = gitlab_target("https://u:p@gitlab.example.com:8443/g/p.git").unwrap();
    assert_eq!(base, "https://gitlab.example.com:8443/api/v4");
}

#[test]
fn url_encodes_the_full_gitlab_namespace_path_so_subgroups_survive() {
    let (_, project) = gitlab_target("https://gitlab.com/group/sub/proj.git").unwrap();
    assert_eq!(project, "group%2Fsub%2Fproj");
    let (_, project) = gitlab_target("https://gitlab.com/group/proj").unwrap();
    assert_eq!(project, "group%2Fproj");
}

#[test]
fn encodes_components_like_javascript() {
    assert_eq!(
        encode_component("a b/c:d~e*'()é"),
        "a%20b%2Fc%3Ad~e*'()%C3%A9"
    );
}

#[test]
fn the_default_github_api_base_is_api_github_com_and_an_empty_one_is_kept() {
    assert_eq!(github_api_base(None), "https://api.github.com");
    assert_eq!(github_api_base(Some("")), "");
}
