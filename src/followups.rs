//! The follow-up sentinel: the coding agent appends JSON lines to `.cat-follow-ups.jsonl` in its
//! working directory; the worker tails it and hands on each complete, valid line as it lands
//! (seed 4.11.5), woken by file-change notifications with a poll as the fallback.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::job::outcome::{FollowUpItem, FollowUpKind};

/// Name of the sentinel file, relative to the agent's working directory.
pub const FOLLOW_UPS_FILENAME: &str = ".cat-follow-ups.jsonl";

/// Longest line kept while waiting for its newline; a longer one is dropped as malformed, so a
/// runaway writer cannot grow the worker's memory.
const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Most bytes read per poll; the rest waits for the next poll.
const READ_CHUNK: u64 = 4 * 1024 * 1024;
const MAX_TITLE_CHARS: usize = 300;

/// What one poll found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub items: Vec<FollowUpItem>,
    /// Complete lines dropped (not JSON, not an object, no usable title).
    pub skipped: u64,
}

/// Tails the sentinel by byte offset, holding back a trailing partial line until its newline.
#[derive(Debug)]
pub struct FollowUpTailer {
    path: PathBuf,
    consumed: u64,
    partial: Vec<u8>,
    /// Set while the rest of an over-long line is being discarded.
    discarding: bool,
    skipped_total: u64,
}

impl FollowUpTailer {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            consumed: 0,
            partial: Vec::new(),
            discarding: false,
            skipped_total: 0,
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Reads what was appended since the last poll. A missing file yields nothing.
    pub fn poll(&mut self) -> io::Result<Poll> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Poll::default()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len <= self.consumed {
            return Ok(Poll::default());
        }
        file.seek(SeekFrom::Start(self.consumed))?;
        let mut fresh = Vec::new();
        file.take(READ_CHUNK).read_to_end(&mut fresh)?;
        self.consumed += fresh.len() as u64;

        let mut poll = Poll::default();
        let mut rest: &[u8] = &fresh;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.discarding {
                self.discarding = false;
                poll.skipped += 1;
                continue;
            }
            let line = if self.partial.is_empty() {
                coerce_line(head)
            } else {
                self.partial.extend_from_slice(head);
                let line = coerce_line(&self.partial);
                self.partial.clear();
                line
            };
            match line {
                Line::Item(item) => poll.items.push(item),
                Line::Blank => {}
                Line::Malformed => poll.skipped += 1,
            }
        }
        if !self.discarding {
            self.partial.extend_from_slice(rest);
            if self.partial.len() > MAX_LINE_BYTES {
                self.partial = Vec::new();
                self.discarding = true;
            }
        }
        self.skipped_total += poll.skipped;
        if poll.skipped > 0 {
            tracing::warn!(
                skipped = poll.skipped,
                skipped_total = self.skipped_total,
                "follow-ups: skipped malformed lines"
            );
        }
        Ok(poll)
    }
}

enum Line {
    Item(FollowUpItem),
    Blank,
    Malformed,
}

/// The seed's coercion: an object with a non-blank string `title` (trimmed, at most 300 chars);
/// `kind` is `question` only when exactly that; `detail` as is; a non-blank `suggestedAction`.
fn coerce_line(raw: &[u8]) -> Line {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Line::Malformed;
    };
    if text.trim().is_empty() {
        return Line::Blank;
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Line::Malformed;
    };
    let title = match obj.get("title").and_then(|t| t.as_str()).map(str::trim) {
        Some(t) if !t.is_empty() => crate::redact::head_chars(t, MAX_TITLE_CHARS).to_owned(),
        _ => return Line::Malformed,
    };
    let kind = match obj.get("kind").and_then(|k| k.as_str()) {
        Some("question") => FollowUpKind::Question,
        _ => FollowUpKind::FollowUp,
    };
    let detail = obj
        .get("detail")
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_owned();
    let suggested_action = obj
        .get("suggestedAction")
        .and_then(|s| s.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Line::Item(FollowUpItem {
        kind,
        title,
        detail,
        suggested_action,
    })
}

/// Watches `dir/FOLLOW_UPS_FILENAME` until `stop` is cancelled, sending each item in file order
/// as soon as its line is complete; after `stop`, one last poll flushes what is left. Returns
/// the number of malformed lines skipped.
pub async fn watch(
    dir: &Path,
    poll_interval: Duration,
    stop: CancellationToken,
    items: mpsc::UnboundedSender<FollowUpItem>,
) -> u64 {
    let path = dir.join(FOLLOW_UPS_FILENAME);
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    // Notifications are an accelerator; when the watcher cannot start, the poll still works.
    let _watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.paths.iter().any(|p| p.ends_with(FOLLOW_UPS_FILENAME)) {
                let _ = wake_tx.try_send(());
            }
        }
    })
    .and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    })
    .map_err(|e| tracing::debug!(error = %e, "follow-ups: file notifications unavailable, polling"))
    .ok();

    let mut tailer = FollowUpTailer::new(path);
    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
            Some(()) = wake_rx.recv() => false,
        };
        // A poll is small (bounded read) and local; running it inline keeps polls serialised.
        match tailer.poll() {
            Ok(poll) => {
                if !poll.items.is_empty() {
                    tracing::info!(count = poll.items.len(), "follow-ups: surfaced items");
                }
                for item in poll.items {
                    let _ = items.send(item);
                }
            }
            Err(e) => tracing::warn!(error = %e, "follow-ups: cannot read the follow-up file"),
        }
        if done {
            return tailer.skipped_total();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn titles(items: &[FollowUpItem]) -> Vec<&str> {
        items.iter().map(|i| i.title.as_str()).collect()
    }

    #[test]
    fn yields_nothing_when_the_file_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = FollowUpTailer::new(dir.path().join(FOLLOW_UPS_FILENAME));
        assert_eq!(t.poll().unwrap(), Poll::default());
    }

    #[test]
    fn surfaces_complete_lines_and_coerces_kind_and_detail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FOLLOW_UPS_FILENAME);
        append(
            &p,
            "{\"kind\":\"follow_up\",\"title\":\"Dedupe util\",\"detail\":\"two copies\"}\n\
             {\"title\":\"No kind defaults to follow_up\"}\n\
             {\"kind\":\"question\",\"title\":\"Which db?\",\"detail\":\"pg or sqlite\",\"suggestedAction\":\"  ask  \"}\n",
        );
        let poll = FollowUpTailer::new(&p).poll().unwrap();
        assert_eq!(
            poll.items,
            vec![
                FollowUpItem {
                    kind: FollowUpKind::FollowUp,
                    title: "Dedupe util".into(),
                    detail: "two copies".into(),
                    suggested_action: None
                },
                FollowUpItem {
                    kind: FollowUpKind::FollowUp,
                    title: "No kind defaults to follow_up".into(),
                    detail: String::new(),
                    suggested_action: None
                },
                FollowUpItem {
                    kind: FollowUpKind::Question,
                    title: "Which db?".into(),
                    detail: "pg or sqlite".into(),
                    suggested_action: Some("ask".into())
                },
            ]
        );
    }

    #[test]
    fn drains_only_new_lines_and_holds_a_partial_trailing_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FOLLOW_UPS_FILENAME);
        let mut t = FollowUpTailer::new(&p);
        append(&p, "{\"title\":\"first\"}\n");
        assert_eq!(titles(&t.poll().unwrap().items), ["first"]);
        assert!(t.poll().unwrap().items.is_empty());
        append(&p, "{\"title\":\"sec");
        assert!(t.poll().unwrap().items.is_empty());
        append(&p, "ond\"}");
        assert!(t.poll().unwrap().items.is_empty());
        append(&p, "\n");
        assert_eq!(titles(&t.poll().unwrap().items), ["second"]);
    }

    #[test]
    fn skips_malformed_and_titleless_lines_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FOLLOW_UPS_FILENAME);
        append(
            &p,
            "not json at all\n{\"detail\":\"no title\"}\n\n[1]\n{\"title\":\"  \"}\n{\"title\":\"ok\"}\n",
        );
        let mut t = FollowUpTailer::new(&p);
        let poll = t.poll().unwrap();
        assert_eq!(titles(&poll.items), ["ok"]);
        assert_eq!(poll.skipped, 4);
        assert_eq!(t.skipped_total(), 4);
    }

    #[test]
    fn a_title_is_trimmed_and_cut_to_300_chars() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FOLLOW_UPS_FILENAME);
        append(&p, &format!("{{\"title\":\"  {}  \"}}\n", "é".repeat(400)));
        let poll = FollowUpTailer::new(&p).poll().unwrap();
        assert_eq!(poll.items[0].title.chars().count(), 300);
    }

    #[test]
    fn an_endless_line_is_dropped_without_growing_memory_and_the_next_line_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FOLLOW_UPS_FILENAME);
        let mut t = FollowUpTailer::new(&p);
        append(&p, &"x".repeat(MAX_LINE_BYTES + 10));
        assert!(t.poll().unwrap().items.is_empty());
        assert!(t.partial.is_empty());
        append(&p, "still the long line\n{\"title\":\"after\"}\n");
        let poll = t.poll().unwrap();
        assert_eq!(titles(&poll.items), ["after"]);
        assert_eq!(poll.skipped, 1);
    }

    #[tokio::test]
    async fn the_watcher_delivers_a_line_without_waiting_for_the_poll_and_flushes_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        // An hour-long poll: only a file notification can deliver the first item in time.
        let task = tokio::spawn({
            let dir = dir.path().to_path_buf();
            let stop = stop.clone();
            async move { watch(&dir, Duration::from_secs(3600), stop, tx).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let p = dir.path().join(FOLLOW_UPS_FILENAME);
        append(&p, "{\"title\":\"live\"}\n");
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("delivered by notification")
            .unwrap();
        assert_eq!(first.title, "live");
        append(&p, "garbage\n{\"title\":\"last\"}\n");
        stop.cancel();
        assert_eq!(task.await.unwrap(), 1);
        let mut rest = Vec::new();
        while let Ok(item) = rx.try_recv() {
            rest.push(item.title);
        }
        assert_eq!(rest, ["last"]);
    }
}
