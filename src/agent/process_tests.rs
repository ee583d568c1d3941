use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;

/// Collects lines and reports each one on a channel.
struct Lines {
    lines: Vec<String>,
    overlong: usize,
    chunks: usize,
    tx: mpsc::UnboundedSender<String>,
    stop_on: Option<&'static str>,
}

impl Lines {
    fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Self {
            lines: Vec::new(),
            overlong: 0,
            chunks: 0,
            tx,
            stop_on: None,
        };
        (s, rx)
    }
}

impl OutputSink for Lines {
    fn on_chunk(&mut self) {
        self.chunks += 1;
    }
    fn on_stdout_line(&mut self, line: &[u8], _at_close: bool) -> ControlFlow<String> {
        let line = String::from_utf8_lossy(line).into_owned();
        let _ = self.tx.send(line.clone());
        let stop = self.stop_on.is_some_and(|s| s == line);
        self.lines.push(line);
        if stop {
            ControlFlow::Break("enough".into())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn on_overlong_line(&mut self) {
        self.overlong += 1;
    }
}

fn script(dir: &Path, body: &str) -> Command {
    let path = dir.join("agent.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(path).current_dir(dir);
    cmd
}

fn limits(grace_ms: u64) -> Limits {
    Limits {
        kill_grace: Duration::from_millis(grace_ms),
        ..Limits::default()
    }
}

/// A process is gone once it no longer exists or is a zombie nobody reaped yet.
pub(crate) fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

pub(crate) async fn wait_gone(pid: i32) -> bool {
    for _ in 0..200 {
        if is_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn read_pid(path: &PathBuf) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn feeds_stdin_and_frames_stdout_including_an_unterminated_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "read first; echo \"got $first\"; printf 'partial'; echo oops >&2",
    );
    let (mut sink, _rx) = Lines::new();
    let done = supervise(
        cmd,
        b"hello\n".to_vec(),
        limits(5000),
        &CancellationToken::new(),
        &mut sink,
    )
    .await
    .unwrap();
    assert!(matches!(done.ending, Ending::Exited(s) if s.success()));
    assert_eq!(sink.lines, ["got hello", "partial"]);
    assert_eq!(done.stderr_tail, "oops\n");
    assert!(done.stdout_tail.ends_with("partial"));
    assert!(sink.chunks >= 2, "stdout and stderr chunks both count");
}

#[tokio::test]
async fn cancelling_escalates_to_sigkill_for_a_group_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let cmd = script(
        dir.path(),
        &format!(
            "trap '' TERM; sh -c \"trap '' TERM; sleep 1000\" & echo $! > {}; echo started; wait",
            pidfile.display()
        ),
    );
    let (mut sink, mut rx) = Lines::new();
    let cancel = CancellationToken::new();
    let run = supervise(cmd, Vec::new(), limits(100), &cancel, &mut sink);
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => panic!("ended before cancel"),
        line = rx.recv() => assert_eq!(line.as_deref(), Some("started")),
    }
    let grandchild = read_pid(&pidfile);
    cancel.cancel();
    let done = run.await.unwrap();
    assert_eq!(done.ending, Ending::Cancelled);
    assert!(
        wait_gone(grandchild).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn dropping_the_future_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let cmd = script(
        dir.path(),
        &format!(
            "sleep 1000 & echo $! > {}; echo started; wait",
            pidfile.display()
        ),
    );
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let (mut sink, mut rx) = Lines::new();
        let cancel = CancellationToken::new();
        let run = supervise(cmd, Vec::new(), limits(5000), &cancel, &mut sink);
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => panic!("ended on its own"),
            _ = rx.recv() => {}
        }
        let _ = started_tx.send(());
        run.await
    });
    started_rx.await.unwrap();
    let grandchild = read_pid(&pidfile);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        wait_gone(grandchild).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn a_sink_can_stop_the_process_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "while :; do echo tick; sleep 0.01; done");
    let (mut sink, _rx) = Lines::new();
    sink.stop_on = Some("tick");
    let done = supervise(
        cmd,
        Vec::new(),
        limits(5000),
        &CancellationToken::new(),
        &mut sink,
    )
    .await
    .unwrap();
    assert_eq!(done.ending, Ending::Stopped("enough".into()));
}

#[tokio::test]
async fn a_non_zero_exit_is_reported_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "echo bad >&2; exit 3");
    let (mut sink, _rx) = Lines::new();
    let done = supervise(
        cmd,
        Vec::new(),
        limits(5000),
        &CancellationToken::new(),
        &mut sink,
    )
    .await
    .unwrap();
    assert!(matches!(done.ending, Ending::Exited(s) if s.code() == Some(3)));
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let (mut sink, _rx) = Lines::new();
    let err = supervise(
        Command::new("/nonexistent/agent"),
        Vec::new(),
        limits(5000),
        &CancellationToken::new(),
        &mut sink,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SuperviseError::Spawn(_)));
}

fn frames(framer: &mut LineFramer, chunks: &[&[u8]], finish: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut emit = |f: Frame<'_>| {
        out.push(match f {
            Frame::Line(l) => String::from_utf8_lossy(l).into_owned(),
            Frame::Overlong => "<overlong>".into(),
        })
    };
    for c in chunks {
        framer.push(c, &mut emit);
    }
    if finish {
        framer.finish(&mut emit);
    }
    out
}

#[test]
fn the_framer_joins_lines_split_across_chunks() {
    let mut f = LineFramer::new(100);
    assert_eq!(
        frames(&mut f, &[b"ab", b"c\nde", b"f\n\ng", b"h"], true),
        ["abc", "def", "", "gh"]
    );
}

#[test]
fn the_framer_skips_overlong_lines_without_buffering_them() {
    let mut f = LineFramer::new(4);
    let out = frames(&mut f, &[b"ok\n12345", b"6789", b"0\nfine\n"], false);
    assert_eq!(out, ["ok", "<overlong>", "fine"]);
    assert!(f.buf.capacity() <= 16, "the long line was not kept");
    let mut f = LineFramer::new(4);
    assert_eq!(frames(&mut f, &[b"toolong\n"], false), ["<overlong>"]);
    let mut f = LineFramer::new(4);
    assert_eq!(frames(&mut f, &[b"abcdefgh"], true), ["<overlong>"]);
}

#[test]
fn the_byte_tail_keeps_only_the_end() {
    let mut t = ByteTail::new(4);
    for _ in 0..1000 {
        t.push(b"0123456789");
    }
    assert!(t.buf.len() <= 1024 + 10);
    assert_eq!(t.into_string(), "6789");
}
