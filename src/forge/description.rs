//! The pull request's title and body as the agent wrote them in `.cat-pr-description.md`
//! (seed-later 3.1, 3.2): scrubbed of secrets, the engine's managed markers removed, a lone
//! leading `# ` heading taken as the title, both capped, then made inert (no mention, no
//! reference, no closing keyword reaches the host).

use std::sync::LazyLock;

use regex::Regex;

use super::markdown::{inert_inline, inert_markdown};
use crate::redact::Redactor;

/// The file the agent writes, at the checkout root or in its service directory.
pub const DESCRIPTION_FILE: &str = ".cat-pr-description.md";
/// The most of the file that is read: far above the body cap, far below what could hurt.
pub const DESCRIPTION_READ_BYTES: u64 = 256 * 1024;
/// Caps on what reaches the host, in characters; the body leaves room under GitHub's 65,536
/// for the report the engine adds to it.
const TITLE_CHARS: usize = 160;
const BODY_CHARS: usize = 15_000;
const TRUNCATED: &str =
    "\n\n_Truncated by the platform: the description exceeded the size budget._";

/// The markers of the region the engine manages in a PR body; an agent must not forge them.
pub const MANAGED_START: &str = "<!-- cat-factory:verification-report:start -->";
pub const MANAGED_END: &str = "<!-- cat-factory:verification-report:end -->";
static MANAGED_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<!--\s*cat-factory:verification-report:(?:start|end)\s*-->").expect("static regex")
});
static H1: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^#\s+\S").expect("static regex"));
static FENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^ {0,3}(`{3,}|~{3,})").expect("static regex"));

/// What the agent's description gives the PR; each part wins over the job's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrDescription {
    pub title: Option<String>,
    pub body: Option<String>,
}

/// Reads the agent's description text. `title_from_heading` is false when the repository has
/// a PR template (the body is the filled template; the PR keeps the dispatch title).
pub fn parse_description(
    raw: &str,
    title_from_heading: bool,
    redactor: &Redactor,
) -> Option<PrDescription> {
    // Prose redaction: a secret's value or shape goes, `token: handling changed` stays.
    let text = redactor.redact_prose(raw);
    let text = MANAGED_MARKER.replace_all(&text, "");
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let (title, body) = match title_from_heading.then(|| split_title(text)).flatten() {
        Some((title, body)) => (Some(title), body),
        None => (None, text.to_owned()),
    };
    let title = title
        .map(|t| cap_title(t.trim()))
        .filter(|t| !t.is_empty())
        .map(|t| inert_inline(&t));
    let body = Some(body.trim())
        .filter(|b| !b.is_empty())
        .map(|b| inert_markdown(&cap_body(b)));
    (title.is_some() || body.is_some()).then_some(PrDescription { title, body })
}

/// The title and the rest, when the text has exactly one `# ` heading outside code and it is
/// the first line.
fn split_title(text: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut in_fence: Option<char> = None;
    let mut h1s = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(m) = FENCE.captures(line).and_then(|c| c.get(1)) {
            let c = m.as_str().chars().next();
            in_fence = match in_fence {
                None => c,
                Some(open) if Some(open) == c => None,
                open => open,
            };
            continue;
        }
        if in_fence.is_none() && H1.is_match(line) {
            h1s.push(i);
        }
    }
    if h1s != [0] {
        return None;
    }
    let title = lines[0].trim_start_matches('#').trim().to_owned();
    Some((title, lines[1..].join("\n")))
}

/// At most 160 characters: 159 and an ellipsis, cut at a space when one is late enough.
fn cap_title(title: &str) -> String {
    if title.chars().count() <= TITLE_CHARS {
        return title.to_owned();
    }
    let head: String = title.chars().take(TITLE_CHARS - 1).collect();
    let cut = match head.rfind(' ') {
        Some(i) if head[..i].chars().count() > 96 => &head[..i],
        _ => &head,
    };
    format!("{}…", cut.trim_end())
}

fn cap_body(body: &str) -> String {
    if body.chars().count() <= BODY_CHARS {
        return body.to_owned();
    }
    let head: String = body.chars().take(BODY_CHARS).collect();
    format!("{}{TRUNCATED}", head.trim_end())
}

/// The new body of a PR being refreshed, carrying the engine's managed region of the body it
/// replaces (seed-later 3.6).
pub fn preserve_managed(existing: &str, new_body: &str) -> String {
    let Some(start) = existing.find(MANAGED_START) else {
        return new_body.to_owned();
    };
    let Some(end) = existing[start..].find(MANAGED_END) else {
        return new_body.to_owned();
    };
    let region = &existing[start..start + end + MANAGED_END.len()];
    format!("{}\n\n{region}\n", new_body.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Secret;

    fn redactor() -> Redactor {
        Redactor::patterns_only().with_secret(&Secret::new("sess-secret-value-1"))
    }

    #[test]
    fn a_lone_leading_heading_is_the_title_and_the_rest_the_body() {
        let d = parse_description(
            "# Add @team greeting\n\nCloses #4. Key sess-secret-value-1.\n<!-- cat-factory:verification-report:start -->",
            true,
            &redactor(),
        )
        .unwrap();
        assert_eq!(d.title.as_deref(), Some("Add &#64;team greeting"));
        assert_eq!(d.body.as_deref(), Some("Closes &#35;4. Key ***."));
    }

    #[test]
    fn several_headings_a_late_one_or_a_template_keep_the_dispatch_title() {
        let two = "# Problem\nx\n# Decisions\ny";
        assert_eq!(
            parse_description(two, true, &redactor()).unwrap().title,
            None
        );
        let late = "intro\n# Title";
        assert_eq!(
            parse_description(late, true, &redactor()).unwrap().title,
            None
        );
        let fenced = "# Title\n```\n# not a heading\n```";
        let d = parse_description(fenced, true, &redactor()).unwrap();
        assert_eq!(d.title.as_deref(), Some("Title"));
        let templated = parse_description("# Title\nbody", false, &redactor()).unwrap();
        assert_eq!(templated.title, None);
        assert_eq!(templated.body.as_deref(), Some("# Title\nbody"));
        assert_eq!(
            parse_description(
                "  \n<!-- cat-factory:verification-report:end -->",
                true,
                &redactor()
            ),
            None
        );
    }

    #[test]
    fn title_and_body_are_capped_before_they_are_escaped() {
        let long = format!("# {}\nbody", "word ".repeat(60));
        let title = parse_description(&long, true, &redactor())
            .unwrap()
            .title
            .unwrap();
        assert!(title.ends_with("word…"), "{title}");
        assert!(title.chars().count() <= 160);
        let body = "@".repeat(20_000);
        let capped = parse_description(&body, true, &redactor())
            .unwrap()
            .body
            .unwrap();
        assert!(capped.ends_with("size budget._"));
        assert!(
            capped.starts_with("@@@"),
            "only @ before a letter or digit is a mention"
        );
    }

    #[test]
    fn a_refreshed_body_keeps_the_engines_region() {
        let old = format!("old text\n{MANAGED_START}\nreport\n{MANAGED_END}\ntrailer");
        assert_eq!(
            preserve_managed(&old, "new text\n"),
            format!("new text\n\n{MANAGED_START}\nreport\n{MANAGED_END}\n")
        );
        assert_eq!(preserve_managed("no region", "new"), "new");
    }
}
