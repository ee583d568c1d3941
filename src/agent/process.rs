//! Supervision of one agent process: its own process group, stdin fed and closed, stdout and
//! stderr drained concurrently with bounded memory, and the whole group killed (TERM, grace,
//! KILL) when the run is cancelled, stopped from inside, or its future is dropped.

use std::io;
use std::ops::ControlFlow;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

/// How long stdout and stderr may stay open after the leader exited and its group was killed
/// (a process that left the group could hold them forever).
const EXIT_DRAIN: Duration = Duration::from_secs(2);

/// Bounds on what supervision keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// SIGTERM to the group, then this long, then SIGKILL.
    pub kill_grace: Duration,
    /// A stdout line longer than this is skipped (reported as overlong) rather than buffered.
    pub max_line_bytes: usize,
    /// Bytes of the end of stdout kept for the caller.
    pub stdout_tail_bytes: usize,
    /// Bytes of the end of stderr kept for the caller.
    pub stderr_tail_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            kill_grace: Duration::from_secs(5),
            max_line_bytes: 8 * 1024 * 1024,
            stdout_tail_bytes: 8 * 1024,
            stderr_tail_bytes: 32 * 1024,
        }
    }
}

/// What the supervisor hands the runner while the process runs.
pub trait OutputSink {
    /// Any stdout or stderr chunk arrived.
    fn on_chunk(&mut self);
    /// One complete stdout line, without its `\n`. `at_close` marks an unterminated last line
    /// seen once stdout closed. `Break(reason)` stops the process (ignored at close).
    fn on_stdout_line(&mut self, line: &[u8], at_close: bool) -> ControlFlow<String>;
    /// A stdout line longer than [`Limits::max_line_bytes`] was skipped.
    fn on_overlong_line(&mut self);
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited on its own.
    Exited(ExitStatus),
    /// The cancel token fired and the group was killed.
    Cancelled,
    /// The sink asked to stop it, for this reason, and the group was killed.
    Stopped(String),
}

/// A finished process: how it ended and the ends of its output.
#[derive(Debug)]
pub struct Finished {
    pub ending: Ending,
    /// The last [`Limits::stdout_tail_bytes`] of stdout, lossily decoded.
    pub stdout_tail: String,
    /// The last [`Limits::stderr_tail_bytes`] of stderr, lossily decoded.
    pub stderr_tail: String,
    /// How many bytes stdout carried in all.
    pub stdout_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("spawn failed: {0}")]
    Spawn(#[source] io::Error),
    #[error("waiting for the process failed: {0}")]
    Wait(#[source] io::Error),
}

/// Spawns `cmd` in a new process group, writes `stdin` to it and closes it, and supervises it
/// until it exits (and its output is drained), `cancel` fires, or the sink stops it.
///
/// Dropping the returned future kills the whole group.
pub async fn supervise(
    mut cmd: Command,
    stdin: Vec<u8>,
    limits: Limits,
    cancel: &CancellationToken,
    sink: &mut (dyn OutputSink + Send),
) -> Result<Finished, SuperviseError> {
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(SuperviseError::Spawn)?;
    // The leader's pid is the group id; it stays valid while any member lives.
    let mut guard = GroupGuard::new(child.id().and_then(|p| i32::try_from(p).ok()));

    let stdin_pipe = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let feed_stdin = async move {
        if let Some(mut pipe) = stdin_pipe {
            // A child that exits without reading gives EPIPE: not our concern.
            let _ = pipe.write_all(&stdin).await;
            let _ = pipe.shutdown().await;
        }
    };
    tokio::pin!(feed_stdin);

    let mut out_buf = vec![0u8; 64 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    let mut framer = LineFramer::new(limits.max_line_bytes);
    let mut stdout_tail = ByteTail::new(limits.stdout_tail_bytes);
    let mut stderr_tail = ByteTail::new(limits.stderr_tail_bytes);

    let mut stdin_done = false;
    let mut status: Option<ExitStatus> = None;
    let mut stop: Option<Ending> = None;
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;

    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        let mut requested: Option<String> = None;
        tokio::select! {
            _ = &mut feed_stdin, if !stdin_done => stdin_done = true,
            r = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match r {
                Ok(0) | Err(_) => {
                    stdout = None;
                    framer.finish(&mut |frame| match frame {
                        Frame::Line(line) => { let _ = sink.on_stdout_line(line, true); }
                        Frame::Overlong => sink.on_overlong_line(),
                    });
                }
                Ok(n) => {
                    sink.on_chunk();
                    stdout_tail.push(&out_buf[..n]);
                    framer.push(&out_buf[..n], &mut |frame| match frame {
                        Frame::Line(line) => {
                            if let ControlFlow::Break(reason) = sink.on_stdout_line(line, false) {
                                requested.get_or_insert(reason);
                            }
                        }
                        Frame::Overlong => sink.on_overlong_line(),
                    });
                }
            },
            r = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match r {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => {
                    sink.on_chunk();
                    stderr_tail.push(&err_buf[..n]);
                }
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s.map_err(SuperviseError::Wait)?);
                // Whatever the agent left running in its group dies with it.
                guard.signal(libc::SIGKILL);
                kill_at = None;
                drain_until = Some(Instant::now() + EXIT_DRAIN);
            }
            _ = cancel.cancelled(), if stop.is_none() => {
                stop = Some(Ending::Cancelled);
                if status.is_some() {
                    break;
                }
                guard.signal(libc::SIGTERM);
                kill_at = Some(Instant::now() + limits.kill_grace);
            }
            _ = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                tracing::warn!(
                    grace_ms = limits.kill_grace.as_millis() as u64,
                    "agent process ignored SIGTERM, escalating to SIGKILL"
                );
                guard.signal(libc::SIGKILL);
                kill_at = None;
            }
            _ = sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                tracing::warn!("agent output still open after exit; stopped reading it");
                break;
            }
        }
        if let Some(reason) = requested {
            if stop.is_none() && status.is_none() {
                stop = Some(Ending::Stopped(reason));
                guard.signal(libc::SIGTERM);
                kill_at = Some(Instant::now() + limits.kill_grace);
            }
        }
    }
    if stdout.is_some() {
        // Reading stopped early (drain timeout or cancel after exit): still hand over the
        // unterminated last line.
        framer.finish(&mut |frame| match frame {
            Frame::Line(line) => {
                let _ = sink.on_stdout_line(line, true);
            }
            Frame::Overlong => sink.on_overlong_line(),
        });
    }

    let ending = match (stop, status) {
        (Some(stop), _) => stop,
        (None, Some(status)) => Ending::Exited(status),
        // The loop only ends with a status or a stop.
        (None, None) => Ending::Cancelled,
    };
    if status.is_some() {
        // The group was killed at exit; don't signal a recycled id later.
        guard.disarm();
    }
    Ok(Finished {
        ending,
        stdout_bytes: stdout_tail.seen(),
        stdout_tail: stdout_tail.into_string(),
        stderr_tail: stderr_tail.into_string(),
    })
}

async fn read_some<R: AsyncReadExt + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Every agent process group alive in this process: a forced exit (a second SIGTERM) skips
/// every destructor, so it kills these itself rather than leave agents orphaned.
static LIVE_GROUPS: std::sync::Mutex<std::collections::BTreeSet<i32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// SIGKILLs every agent process group still alive; for the forced exit only.
pub fn kill_all_agent_groups() {
    let groups = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    for pgid in groups.iter() {
        crate::sys::kill_group(*pgid, libc::SIGKILL);
    }
}

/// Signals the agent's process group; SIGKILLs it on drop unless disarmed.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn new(pgid: Option<i32>) -> Self {
        if let Some(p) = pgid {
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(p);
        }
        Self(pgid)
    }

    fn forget(&self) {
        if let Some(p) = self.0 {
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&p);
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pgid) = self.0 {
            crate::sys::kill_group(pgid, sig);
        }
    }

    fn disarm(&mut self) {
        self.forget();
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        self.forget();
    }
}

/// One framed piece of stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Line(&'a [u8]),
    Overlong,
}

/// Splits a byte stream on `\n`, holding a partial line across chunks, and skips (instead of
/// buffering) lines longer than the limit.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max: usize,
    /// Inside an overlong line: drop bytes until its newline.
    discarding: bool,
}

impl LineFramer {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: max_line_bytes,
            discarding: false,
        }
    }

    pub fn push(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(Frame<'_>)) {
        while !chunk.is_empty() {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if self.discarding {
                        self.discarding = false;
                        emit(Frame::Overlong);
                    } else if self.buf.len() + i > self.max {
                        self.buf.clear();
                        emit(Frame::Overlong);
                    } else if self.buf.is_empty() {
                        emit(Frame::Line(&chunk[..i]));
                    } else {
                        self.buf.extend_from_slice(&chunk[..i]);
                        emit(Frame::Line(&self.buf));
                        self.buf.clear();
                    }
                    chunk = &chunk[i + 1..];
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + chunk.len() > self.max {
                            self.buf = Vec::new();
                            self.discarding = true;
                        } else {
                            self.buf.extend_from_slice(chunk);
                        }
                    }
                    chunk = &[];
                }
            }
        }
    }

    /// The stream closed: emit what is left of an unterminated last line.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Frame<'_>)) {
        if self.discarding {
            self.discarding = false;
            emit(Frame::Overlong);
        } else if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            emit(Frame::Line(&rest));
        }
    }
}

/// The last `cap` bytes of a stream, with amortised trimming.
#[derive(Debug)]
pub struct ByteTail {
    buf: Vec<u8>,
    cap: usize,
    seen: u64,
}

impl ByteTail {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            seen: 0,
        }
    }

    /// Every byte pushed so far, kept or not.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cap.saturating_mul(2).max(1024) {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
        }
    }

    pub fn into_string(self) -> String {
        let start = self.buf.len().saturating_sub(self.cap);
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
pub(crate) mod tests;
