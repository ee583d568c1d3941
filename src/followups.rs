//! The follow-up sentinel: the coding agent appends JSON lines to `.cat-follow-ups.jsonl` in its
//! working directory; the worker tails it and hands on each complete, valid line as it lands
//! (seed 4.11.5), woken by file-change notifications with a poll as the fallback.
//!
//! The file belongs to the agent and the repository, strangers both, so it is read with limits:
//!
//! - only as a regular file, opened by name in the directory the watcher started in
//!   (`sentinel`): a symlink, FIFO, directory or device at that path is skipped, with one
//!   warning;
//! - each poll runs on the blocking pool; one that has not returned after [`POLL_TIMEOUT`]
//!   stops the watcher, and no runtime thread ever waits on the file;
//! - a line longer than [`MAX_LINE_BYTES`] (1 MiB) is dropped; a title is cut to
//!   [`MAX_TITLE_CHARS`] (300) chars, a detail and a suggested action to [`MAX_DETAIL_CHARS`]
//!   (16 Ki) chars, each on a char boundary;
//! - at stop the file is read to the length it had then, and no further, so a writer left
//!   behind cannot keep the flush going;
//! - the watcher hands items on through a channel of [`ITEM_BUFFER`] and waits when it is full.

mod sentinel;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::sentinel::{Sentinel, WorkDir};
use crate::job::outcome::{FollowUpItem, FollowUpKind};
use crate::redact::head_chars;

/// Name of the sentinel file, relative to the agent's working directory.
pub const FOLLOW_UPS_FILENAME: &str = ".cat-follow-ups.jsonl";

/// Longest line kept while waiting for its newline; a longer one is dropped as malformed, so a
/// runaway writer cannot grow the worker's memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
pub const MAX_TITLE_CHARS: usize = 300;
/// Cap of a detail and of a suggested action: a follow-up is a note, not a payload.
pub const MAX_DETAIL_CHARS: usize = 16 * 1024;
/// Longest a poll may take. Reading a regular file returns at once; a file system that stops
/// answering must not hold the flow that waits for the watcher.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// Items waiting for their consumer; past that the watcher stops reading until there is room.
pub const ITEM_BUFFER: usize = 64;
/// Most bytes read per poll; a poll that leaves more is followed by another at once.
const READ_CHUNK: u64 = 4 * 1024 * 1024;

/// What one poll found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub items: Vec<FollowUpItem>,
    /// Complete lines dropped (not JSON, not an object, no usable title).
    pub skipped: u64,
    /// Bytes were left for the next poll (more than one chunk was waiting).
    pub more: bool,
}

/// Tails the sentinel by byte offset, holding back a trailing partial line until its newline.
#[derive(Debug)]
pub struct FollowUpTailer {
    dir: WorkDir,
    consumed: u64,
    /// Set by `stop`; from then on the file is read to `end` at most, once the next poll set it.
    stopping: bool,
    end: Option<u64>,
    partial: Vec<u8>,
    /// Set while the rest of an over-long line is being discarded.
    discarding: bool,
    skipped_total: u64,
    /// Why the last poll could not read the file; warned about only when it changes.
    problem: Option<String>,
}

impl FollowUpTailer {
    /// Tails the sentinel in `dir`, which is opened now and held open.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: WorkDir::open(dir)?,
            consumed: 0,
            stopping: false,
            end: None,
            partial: Vec::new(),
            discarding: false,
            skipped_total: 0,
            problem: None,
        })
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// From the next poll on, reads no further than the length the file has then.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Reads at most one chunk of what was appended since the last poll. A missing file yields
    /// nothing, and so does one that cannot or must not be read (with one warning).
    pub fn poll(&mut self) -> Poll {
        let (mut file, len) = match self.dir.open_sentinel() {
            Ok(Sentinel::File(file, len)) => (file, len),
            Ok(Sentinel::Missing) => return Poll::default(),
            Ok(Sentinel::Refused(what)) => {
                self.trouble(format!("the follow-up file is {what}"));
                return Poll::default();
            }
            Err(e) => {
                self.trouble(format!("cannot open the follow-up file: {e}"));
                return Poll::default();
            }
        };
        if self.stopping && self.end.is_none() {
            self.end = Some(len);
        }
        let limit = self.end.map_or(len, |end| end.min(len));
        if limit <= self.consumed {
            return Poll::default();
        }
        let mut fresh = Vec::new();
        let read = file.seek(SeekFrom::Start(self.consumed)).and_then(|_| {
            file.take((limit - self.consumed).min(READ_CHUNK))
                .read_to_end(&mut fresh)
        });
        if let Err(e) = read {
            self.trouble(format!("cannot read the follow-up file: {e}"));
            return Poll::default();
        }
        self.problem = None;
        self.consumed += fresh.len() as u64;
        let mut poll = self.take_lines(&fresh);
        poll.more = !fresh.is_empty() && self.consumed < limit;
        poll
    }

    fn trouble(&mut self, reason: String) {
        if self.problem.as_deref() != Some(reason.as_str()) {
            tracing::warn!(reason = %reason, "follow-ups: the follow-up file is skipped");
            self.problem = Some(reason);
        }
    }

    /// Splits fresh bytes into complete lines, keeping a trailing partial one for later.
    fn take_lines(&mut self, fresh: &[u8]) -> Poll {
        let mut poll = Poll::default();
        let mut rest = fresh;
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
        poll
    }
}

enum Line {
    Item(FollowUpItem),
    Blank,
    Malformed,
}

/// The seed's coercion: an object with a non-blank string `title` (trimmed, at most 300 chars);
/// `kind` is `question` only when exactly that; `detail` as is; a non-blank `suggestedAction`.
/// Unlike the seed, detail and suggested action are cut to `MAX_DETAIL_CHARS`.
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
        Some(t) if !t.is_empty() => head_chars(t, MAX_TITLE_CHARS).to_owned(),
        _ => return Line::Malformed,
    };
    let kind = match obj.get("kind").and_then(|k| k.as_str()) {
        Some("question") => FollowUpKind::Question,
        _ => FollowUpKind::FollowUp,
    };
    let detail = obj
        .get("detail")
        .and_then(|d| d.as_str())
        .map(|d| head_chars(d, MAX_DETAIL_CHARS).to_owned())
        .unwrap_or_default();
    let suggested_action = obj
        .get("suggestedAction")
        .and_then(|s| s.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| head_chars(s, MAX_DETAIL_CHARS).to_owned());
    Line::Item(FollowUpItem {
        kind,
        title,
        detail,
        suggested_action,
    })
}

/// Watches `dir/FOLLOW_UPS_FILENAME` until `stop` is cancelled, sending each item in file order
/// as soon as its line is complete; after `stop`, the file is read to the end it has then.
/// Returns the number of malformed lines skipped.
pub async fn watch(
    dir: &Path,
    poll_interval: Duration,
    stop: CancellationToken,
    items: mpsc::Sender<FollowUpItem>,
) -> u64 {
    let mut tailer = match FollowUpTailer::open(dir) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "follow-ups: cannot open the working directory, not watching");
            return 0;
        }
    };
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

    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut skipped = 0;
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                Some(()) = wake_rx.recv() => {}
            }
        } else if stop.is_cancelled() {
            break;
        }
        let Some(polled) = poll_once(tailer, &items, &mut skipped).await else {
            return skipped;
        };
        (tailer, more) = polled;
    }
    tailer.stop();
    loop {
        match poll_once(tailer, &items, &mut skipped).await {
            Some((t, true)) => tailer = t,
            _ => return skipped,
        }
    }
}

/// One poll on the blocking pool, bounded by `POLL_TIMEOUT`, and its items handed on in order.
/// Gives the tailer back with whether bytes were left unread; `None` ends the watch.
async fn poll_once(
    tailer: FollowUpTailer,
    items: &mpsc::Sender<FollowUpItem>,
    skipped: &mut u64,
) -> Option<(FollowUpTailer, bool)> {
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || {
        let mut tailer = tailer;
        let poll = span.in_scope(|| tailer.poll());
        (tailer, poll)
    });
    let (tailer, poll) = match tokio::time::timeout(POLL_TIMEOUT, task).await {
        Ok(Ok(polled)) => polled,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "follow-ups: a poll failed, no longer watching");
            return None;
        }
        // The stuck thread keeps the tailer; the runtime and the job go on without it.
        Err(_) => {
            tracing::warn!(
                timeout_ms = POLL_TIMEOUT.as_millis() as u64,
                "follow-ups: reading the follow-up file did not return, no longer watching"
            );
            return None;
        }
    };
    *skipped += poll.skipped;
    if !poll.items.is_empty() {
        tracing::info!(count = poll.items.len(), "follow-ups: surfaced items");
    }
    for item in poll.items {
        // Waits while the consumer is behind; an error means nobody listens any more.
        items.send(item).await.ok()?;
    }
    Some((tailer, poll.more))
}
