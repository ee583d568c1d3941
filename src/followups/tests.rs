use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::*;

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

/// A working directory and the sentinel's path in it.
fn work_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FOLLOW_UPS_FILENAME);
    (dir, path)
}

fn tailer(dir: &tempfile::TempDir) -> FollowUpTailer {
    FollowUpTailer::open(dir.path()).unwrap()
}

/// Polls on a thread of its own: a poll that blocks fails the test instead of hanging it.
fn poll_within_seconds(mut t: FollowUpTailer) -> (FollowUpTailer, Poll) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let poll = t.poll();
        let _ = tx.send((t, poll));
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the poll returned (it must never wait on the file)")
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Valid follow-up lines in a file outside the working directory.
fn host_file() -> (tempfile::TempDir, PathBuf) {
    let outside = tempfile::tempdir().unwrap();
    let host = outside.path().join("host.jsonl");
    append(&host, "{\"title\":\"host line\"}\n");
    (outside, host)
}

/// Every warning logged while `f` runs.
fn warnings_during(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = buf.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[test]
fn yields_nothing_when_the_file_does_not_exist_yet() {
    let (dir, _) = work_dir();
    assert_eq!(tailer(&dir).poll(), Poll::default());
}

#[test]
fn surfaces_complete_lines_and_coerces_kind_and_detail() {
    let (dir, p) = work_dir();
    append(
        &p,
        "{\"kind\":\"follow_up\",\"title\":\"Dedupe util\",\"detail\":\"two copies\"}\n\
         {\"title\":\"No kind defaults to follow_up\"}\n\
         {\"kind\":\"question\",\"title\":\"Which db?\",\"detail\":\"pg or sqlite\",\"suggestedAction\":\"  ask  \"}\n",
    );
    let poll = tailer(&dir).poll();
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
    let (dir, p) = work_dir();
    let mut t = tailer(&dir);
    append(&p, "{\"title\":\"first\"}\n");
    assert_eq!(titles(&t.poll().items), ["first"]);
    assert!(t.poll().items.is_empty());
    append(&p, "{\"title\":\"sec");
    assert!(t.poll().items.is_empty());
    append(&p, "ond\"}");
    assert!(t.poll().items.is_empty());
    append(&p, "\n");
    assert_eq!(titles(&t.poll().items), ["second"]);
}

#[test]
fn skips_malformed_and_titleless_lines_and_counts_them() {
    let (dir, p) = work_dir();
    append(
        &p,
        "not json at all\n{\"detail\":\"no title\"}\n\n[1]\n{\"title\":\"  \"}\n{\"title\":\"ok\"}\n",
    );
    let mut t = tailer(&dir);
    let poll = t.poll();
    assert_eq!(titles(&poll.items), ["ok"]);
    assert_eq!(poll.skipped, 4);
    assert_eq!(t.skipped_total(), 4);
}

#[test]
fn a_title_is_trimmed_and_cut_to_300_chars() {
    let (dir, p) = work_dir();
    append(&p, &format!("{{\"title\":\"  {}  \"}}\n", "é".repeat(400)));
    let poll = tailer(&dir).poll();
    assert_eq!(poll.items[0].title.chars().count(), 300);
}

#[test]
fn a_detail_and_a_suggested_action_are_cut_to_the_cap_on_a_char_boundary() {
    let (dir, p) = work_dir();
    let long = "é".repeat(MAX_DETAIL_CHARS + 50);
    append(
        &p,
        &format!("{{\"title\":\"t\",\"detail\":\"{long}\",\"suggestedAction\":\"{long}\"}}\n"),
    );
    let item = &tailer(&dir).poll().items[0];
    assert_eq!(item.detail, "é".repeat(MAX_DETAIL_CHARS));
    assert_eq!(
        item.suggested_action.as_deref(),
        Some("é".repeat(MAX_DETAIL_CHARS).as_str())
    );
}

#[test]
fn an_endless_line_is_dropped_without_growing_memory_and_the_next_line_still_counts() {
    let (dir, p) = work_dir();
    let mut t = tailer(&dir);
    append(&p, &"x".repeat(MAX_LINE_BYTES + 10));
    assert!(t.poll().items.is_empty());
    assert!(t.partial.is_empty());
    append(&p, "still the long line\n{\"title\":\"after\"}\n");
    let poll = t.poll();
    assert_eq!(titles(&poll.items), ["after"]);
    assert_eq!(poll.skipped, 1);
}

#[test]
fn a_fifo_at_the_path_is_skipped_without_waiting_for_a_writer() {
    let (dir, p) = work_dir();
    mkfifo(&p);
    let (t, poll) = poll_within_seconds(tailer(&dir));
    assert_eq!(poll, Poll::default());
    assert_eq!(t.problem.as_deref(), Some("the follow-up file is a FIFO"));
}

#[test]
fn a_symlink_to_a_fifo_is_skipped_without_waiting_for_a_writer() {
    let (dir, p) = work_dir();
    let outside = tempfile::tempdir().unwrap();
    let fifo = outside.path().join("fifo");
    mkfifo(&fifo);
    std::os::unix::fs::symlink(&fifo, &p).unwrap();
    let (_, poll) = poll_within_seconds(tailer(&dir));
    assert_eq!(poll, Poll::default());
}

#[test]
fn a_symlink_to_a_regular_file_outside_publishes_none_of_its_lines() {
    let (dir, p) = work_dir();
    let (_outside, host) = host_file();
    std::os::unix::fs::symlink(&host, &p).unwrap();
    let (t, poll) = poll_within_seconds(tailer(&dir));
    assert_eq!(poll, Poll::default());
    assert_eq!(
        t.problem.as_deref(),
        Some("the follow-up file is a symbolic link")
    );
}

#[test]
fn a_directory_at_the_path_is_skipped_with_one_warning_not_one_per_poll() {
    let (dir, p) = work_dir();
    std::fs::create_dir(&p).unwrap();
    let mut t = tailer(&dir);
    let logs = warnings_during(|| {
        for _ in 0..5 {
            assert_eq!(t.poll(), Poll::default());
        }
    });
    assert_eq!(
        logs.matches("the follow-up file is a directory").count(),
        1,
        "{logs}"
    );
}

#[test]
fn a_regular_file_that_replaces_a_refused_one_is_read() {
    let (dir, p) = work_dir();
    mkfifo(&p);
    let (mut t, _) = poll_within_seconds(tailer(&dir));
    std::fs::remove_file(&p).unwrap();
    append(&p, "{\"title\":\"regular now\"}\n");
    assert_eq!(titles(&t.poll().items), ["regular now"]);
    assert_eq!(t.problem, None);
}

#[test]
fn the_directory_is_held_so_its_path_swapped_for_a_symlink_cannot_redirect_the_reads() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut t = FollowUpTailer::open(&work).unwrap();
    // The agent moves its directory away and puts a link to a host directory in its place.
    std::fs::rename(&work, root.path().join("moved")).unwrap();
    let (outside, host) = host_file();
    std::fs::rename(&host, outside.path().join(FOLLOW_UPS_FILENAME)).unwrap();
    std::os::unix::fs::symlink(outside.path(), &work).unwrap();
    assert_eq!(t.poll(), Poll::default());
    append(
        &root.path().join("moved").join(FOLLOW_UPS_FILENAME),
        "{\"title\":\"from the held directory\"}\n",
    );
    assert_eq!(titles(&t.poll().items), ["from the held directory"]);
}

/// `count` lines of just under `MAX_LINE_BYTES` each, titled `item 1`, `item 2`...
fn write_big_lines(path: &Path, from: usize, count: usize) {
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    );
    let detail = "d".repeat(MAX_LINE_BYTES - 100);
    for i in from..from + count {
        writeln!(f, "{{\"title\":\"item {i}\",\"detail\":\"{detail}\"}}").unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn after_stop_polls_read_no_further_than_the_length_at_the_stop() {
    let (dir, p) = work_dir();
    let mut t = tailer(&dir);
    // More than one chunk: the flush takes several polls.
    write_big_lines(&p, 1, 6);
    t.stop();
    let first = t.poll();
    assert!(first.more);
    // A writer left behind keeps appending after the stop.
    append(&p, "{\"title\":\"late\"}\n");
    let mut got: Vec<String> = first.items.into_iter().map(|i| i.title).collect();
    loop {
        let poll = t.poll();
        got.extend(poll.items.into_iter().map(|i| i.title));
        if !poll.more {
            break;
        }
    }
    let expected: Vec<String> = (1..=6).map(|i| format!("item {i}")).collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_after_300_lines_of_a_mebibyte_hands_on_all_300_in_order() {
    let (dir, p) = work_dir();
    write_big_lines(&p, 1, 300);
    let (tx, mut rx) = mpsc::channel(ITEM_BUFFER);
    let stop = CancellationToken::new();
    stop.cancel();
    let task = tokio::spawn({
        let dir = dir.path().to_path_buf();
        async move { watch(&dir, Duration::from_secs(3600), stop, tx).await }
    });
    let mut got = Vec::new();
    while let Some(item) = rx.recv().await {
        assert_eq!(item.detail.chars().count(), MAX_DETAIL_CHARS);
        got.push(item.title);
    }
    assert_eq!(task.await.unwrap(), 0);
    let expected: Vec<String> = (1..=300).map(|i| format!("item {i}")).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn the_watcher_delivers_a_line_without_waiting_for_the_poll_and_flushes_on_stop() {
    let (dir, p) = work_dir();
    let (tx, mut rx) = mpsc::channel(ITEM_BUFFER);
    let stop = CancellationToken::new();
    // An hour-long poll: only a file notification can deliver the first item in time.
    let task = tokio::spawn({
        let dir = dir.path().to_path_buf();
        let stop = stop.clone();
        async move { watch(&dir, Duration::from_secs(3600), stop, tx).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
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
