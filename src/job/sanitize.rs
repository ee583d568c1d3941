//! The path and name sanitisers of the job contract (seed sections 2.2, 2.7 and 2.8), usable on
//! their own by the flows that build paths from job fields.

/// A `serviceDirectory` that climbs out of the checkout (a `..` segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the path leaves the repository")]
pub struct PathOutsideRepo;

/// Normalises a monorepo `serviceDirectory` to a clean relative path (seed section 2.2).
///
/// `Ok(None)` means "the whole repository". Absolute paths are not refused, their leading
/// slash is stripped, exactly as the seed does.
pub fn sanitize_service_directory(raw: &str) -> Result<Option<String>, PathOutsideRepo> {
    let unified = js_trim(raw).replace('\\', "/");
    let stripped = unified.trim_matches('/');
    if stripped.is_empty() {
        return Ok(None);
    }
    let segments: Vec<&str> = stripped
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segments.is_empty() {
        return Ok(None);
    }
    if segments.contains(&"..") {
        return Err(PathOutsideRepo);
    }
    Ok(Some(segments.join("/")))
}

/// Reduces a context file's `path` to a safe basename (seed section 2.7): the last segment,
/// only `[A-Za-z0-9._-]`, never empty, `.`, `..` or a dotfile.
pub fn sanitize_context_file_name(raw: &str) -> Option<String> {
    let unified = raw.replace('\\', "/");
    let base = unified.rsplit('/').next().unwrap_or("");
    let name: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    // ".." also starts with '.', so one check covers both and every dotfile.
    if name.is_empty() || name.starts_with('.') {
        return None;
    }
    Some(name)
}

/// Environment names a frontend `infra.env` may not set (seed section 2.8): they would let the
/// job hijack the tools the stand-up runs.
pub fn is_reserved_env_name(name: &str) -> bool {
    const EXACT: [&str; 11] = [
        "PATH",
        "HOME",
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_EXTRA_CA_CERTS",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "BASH_ENV",
        "ENV",
        "SHELL",
        "IFS",
    ];
    // npm and git read these families whatever their case.
    const PREFIXES: [&str; 2] = ["npm_config_", "git_"];
    EXACT.contains(&name)
        || PREFIXES.iter().any(|p| {
            name.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        })
}

/// JavaScript's `String.prototype.trim`: its whitespace set differs from Rust's (it trims
/// U+FEFF and keeps U+0085), and the seed's results depend on it.
fn js_trim(s: &str) -> &str {
    s.trim_matches(|c: char| {
        matches!(
            c,
            '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200A}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202F}'
                    | '\u{205F}'
                    | '\u{3000}'
                    | '\u{FEFF}'
        )
    })
}

/// A job id as one directory-name component: ASCII letters, digits, `-` and `_` kept, anything
/// else `_`, at most 64 characters. Not reversible: callers add a unique suffix.
pub fn dir_component(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_directory_loses_its_outer_slashes() {
        assert_eq!(
            sanitize_service_directory("/packages/api/"),
            Ok(Some("packages/api".to_string()))
        );
    }

    #[test]
    fn a_service_directory_loses_empty_and_dot_segments() {
        assert_eq!(
            sanitize_service_directory("./a//b/."),
            Ok(Some("a/b".to_string()))
        );
    }

    #[test]
    fn a_service_directory_climbing_out_is_refused() {
        assert_eq!(
            sanitize_service_directory("../secrets"),
            Err(PathOutsideRepo)
        );
        assert_eq!(
            sanitize_service_directory("a/../../b"),
            Err(PathOutsideRepo)
        );
        assert_eq!(sanitize_service_directory("a\\..\\b"), Err(PathOutsideRepo));
    }

    #[test]
    fn a_windows_style_service_directory_is_accepted_as_relative() {
        assert_eq!(
            sanitize_service_directory("C:\\x"),
            Ok(Some("C:/x".to_string()))
        );
    }

    #[test]
    fn a_blank_or_dot_only_service_directory_means_the_whole_repo() {
        for raw in ["", "   ", "/", "//", ".", "./.", " /./ ", "\u{FEFF}"] {
            assert_eq!(sanitize_service_directory(raw), Ok(None), "{raw:?}");
        }
    }

    #[test]
    fn only_the_outer_whitespace_is_trimmed() {
        // The seed trims before splitting, so a blank segment inside is a name.
        assert_eq!(
            sanitize_service_directory(" / ./ "),
            Ok(Some(" .".to_string()))
        );
    }

    #[test]
    fn a_service_directory_is_trimmed_like_javascript_trims() {
        assert_eq!(
            sanitize_service_directory("\u{FEFF}\t pkg/api \u{3000}"),
            Ok(Some("pkg/api".to_string()))
        );
        // NEL is not JavaScript whitespace, so it stays part of the name.
        assert_eq!(
            sanitize_service_directory("\u{85}pkg"),
            Ok(Some("\u{85}pkg".to_string()))
        );
    }

    #[test]
    fn a_context_file_name_keeps_only_safe_basename_characters() {
        assert_eq!(
            sanitize_context_file_name("../../etc/pa ss wd"),
            Some("passwd".to_string())
        );
        assert_eq!(
            sanitize_context_file_name("a/b\\c.md"),
            Some("c.md".to_string())
        );
        assert_eq!(
            sanitize_context_file_name("notes_v-1.2.md"),
            Some("notes_v-1.2.md".to_string())
        );
        assert_eq!(
            sanitize_context_file_name("ré\u{0}sumé.md"),
            Some("rsum.md".to_string())
        );
    }

    #[test]
    fn a_context_file_name_that_is_a_dotfile_or_empty_is_rejected() {
        for raw in [
            ".env", "", ".", "..", "dir/", "a/..", "x/.git", "???", " .hidden",
        ] {
            assert_eq!(sanitize_context_file_name(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn reserved_env_names_match_exactly_and_families_ignore_case() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "IFS",
            "npm_config_registry",
            "NPM_CONFIG_REGISTRY",
            "Npm_Config_Cafile",
            "GIT_SSH_COMMAND",
            "Git_Ssh_Command",
            "git_",
        ] {
            assert!(is_reserved_env_name(name), "{name}");
        }
        for name in [
            "home",
            "Path",
            "PORT",
            "PUB_API_URL",
            "GITHUB_TOKEN",
            "npm",
            "é",
        ] {
            assert!(!is_reserved_env_name(name), "{name}");
        }
    }
}
