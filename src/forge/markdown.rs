//! Agent-written text made inert before a code host renders it (seed-later 3.3): no mention
//! (`@name`), no issue or merge-request reference (`#12`, `!12`), no closing keyword in front
//! of an issue URL. Each match keeps its text and has its first character written as an HTML
//! entity, which renders the same and links nothing. Code (fenced blocks, inline spans) is
//! left alone. Applied to what the agent wrote, never to the job's own title and body.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a host would link, on one line of prose: a mention, an issue or MR number, or a
/// closing keyword before an issue / MR URL.
static LINKABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)@[A-Za-z0-9]|#[0-9]|![0-9]|\b(?:close[sd]?|closing|fix(?:e[sd])?|fixing|resolve[sd]?|resolving|implement(?:s|ed)?|implementing)\s*:?\s*https?://\S*/(?:issues|-/issues|merge_requests|pull)/[0-9]+",
    )
    .expect("static regex")
});

/// A fence line: up to three spaces, three or more backticks or tildes, the info string.
static FENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^ {0,3}(`{3,}|~{3,})(.*)$").expect("static regex"));

/// A body: line endings made `\n`, prose lines made inert, fenced blocks untouched, and a fence
/// still open at the end closed.
pub fn inert_markdown(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out: Vec<String> = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for line in text.split('\n') {
        match (open, fence(line)) {
            (None, Some((c, len, _))) => {
                open = Some((c, len));
                out.push(line.to_owned());
            }
            (Some((c, len)), Some((c2, len2, info)))
                if c == c2 && len2 >= len && info.is_empty() =>
            {
                open = None;
                out.push(line.to_owned());
            }
            (Some(_), _) => out.push(line.to_owned()),
            (None, None) => out.push(inert_line(line)),
        }
    }
    let mut body = out.join("\n");
    if let Some((c, len)) = open {
        body.push('\n');
        body.extend(std::iter::repeat_n(c, len));
    }
    body
}

/// A title: whitespace runs made one space, then made inert like a prose line.
pub fn inert_inline(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    inert_line(&collapsed)
}

/// The fence character, its run length and the trimmed info string, when `line` is a fence.
fn fence(line: &str) -> Option<(char, usize, &str)> {
    let caps = FENCE.captures(line)?;
    let run = caps.get(1)?.as_str();
    let info = caps.get(2).map_or("", |m| m.as_str()).trim();
    let c = run.chars().next()?;
    // A backtick fence's info string may not hold a backtick (CommonMark).
    if c == '`' && info.contains('`') {
        return None;
    }
    Some((c, run.len(), info))
}

/// One prose line, outside its inline code spans (a backtick run up to the next run of the
/// same length).
fn inert_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let run = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + run..];
        let closer = find_run(after, run);
        out.push_str(&escape(&rest[..start]));
        match closer {
            Some(end) => {
                let span_end = start + run + end + run;
                out.push_str(&rest[start..span_end]);
                rest = &rest[span_end..];
            }
            None => {
                // No closer: the backticks are literal text.
                out.push_str(&rest[start..start + run]);
                rest = after;
            }
        }
    }
    out.push_str(&escape(rest));
    out
}

/// The offset in `s` of a run of exactly `n` backticks.
fn find_run(s: &str, n: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let len = bytes[i..].iter().take_while(|&&b| b == b'`').count();
            if len == n {
                return Some(i);
            }
            i += len;
        } else {
            i += 1;
        }
    }
    None
}

fn escape(prose: &str) -> String {
    LINKABLE
        .replace_all(prose, |caps: &Captures<'_>| {
            let whole = &caps[0];
            let mut chars = whole.chars();
            let first = chars.next().map_or(0, u32::from);
            format!("&#{first};{}", chars.as_str())
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_references_and_closing_keywords_link_nothing() {
        assert_eq!(
            inert_markdown("Thanks @octocat, see #12 and !3.\nThis closes https://github.com/a/b/issues/42"),
            "Thanks &#64;octocat, see &#35;12 and &#33;3.\nThis &#99;loses https://github.com/a/b/issues/42"
        );
        assert_eq!(
            inert_markdown(
                "Fixes: https://gitlab.com/g/p/-/issues/7 and RESOLVED https://x.io/o/r/pull/1"
            ),
            "&#70;ixes: https://gitlab.com/g/p/-/issues/7 and &#82;ESOLVED https://x.io/o/r/pull/1"
        );
        assert_eq!(
            inert_markdown("a@ b # 1 closes #1"),
            "a@ b # 1 closes &#35;1"
        );
    }

    #[test]
    fn code_is_left_as_written_and_an_open_fence_is_closed() {
        let text = "run `@x #1` now\n```sh\necho @root #1\n```\n~~~~\n@in ~~~ fence\n";
        assert_eq!(
            inert_markdown(text),
            "run `@x #1` now\n```sh\necho @root #1\n```\n~~~~\n@in ~~~ fence\n\n~~~~"
        );
        assert_eq!(inert_markdown("a\r\nb\r@c"), "a\nb\n&#64;c");
        assert_eq!(inert_markdown("`` @a ` `` @b"), "`` @a ` `` &#64;b");
        assert_eq!(inert_markdown("lone ` @a"), "lone ` &#64;a");
    }

    #[test]
    fn a_title_is_one_line_and_inert() {
        assert_eq!(
            inert_inline("  Fix  #12\n for @team "),
            "Fix &#35;12 for &#64;team"
        );
    }
}
