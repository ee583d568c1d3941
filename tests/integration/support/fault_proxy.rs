//! A TCP fault proxy on `127.0.0.1:0` in front of one upstream (the broker by default), with
//! the faults a network can have: every connection dropped at once, a black hole (bytes stop
//! in both directions, nothing is closed, new connections are accepted and then stall), refused
//! connections, and, for AMQP, the client's settlements (`basic.ack`/`nack`/`reject`) held back
//! so a test can kill a worker between a confirmed result and its ack.
//!
//! Every control takes effect at once, on live connections too. Dropping the proxy stops it
//! and closes every connection it carries.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    blackhole: watch::Sender<bool>,
    hold_settlements: watch::Sender<bool>,
    refuse: AtomicBool,
    /// Bumped by `close_all`: every connection alive at that moment ends.
    generation: watch::Sender<u64>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    live: AtomicUsize,
    held: AtomicUsize,
    held_notify: Notify,
    stop: CancellationToken,
}

impl FaultProxy {
    /// A proxy in front of the broker of [`super::broker::amqp_url`] (`127.0.0.1:5672` by
    /// default).
    pub async fn broker() -> Self {
        let url = url::Url::parse(&super::broker::amqp_url()).expect("AMQP URL");
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(5672);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the broker")
            .next()
            .expect("the broker has an address");
        Self::start(upstream).await
    }

    /// A proxy in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            upstream,
            blackhole: watch::Sender::new(false),
            hold_settlements: watch::Sender::new(false),
            refuse: AtomicBool::new(false),
            generation: watch::Sender::new(0),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            held_notify: Notify::new(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        Self { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker URL of [`super::broker::amqp_url`] with this proxy's address in place of the
    /// broker's.
    pub fn amqp_url(&self) -> String {
        let mut url = url::Url::parse(&super::broker::amqp_url()).expect("AMQP URL");
        url.set_host(Some(&self.addr.ip().to_string()))
            .expect("set host");
        url.set_port(Some(self.addr.port())).expect("set port");
        url.to_string()
    }

    /// Drops every connection the proxy carries now (new ones are served as usual).
    pub fn close_all(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// On: no byte moves in either direction and nothing is closed; new connections are
    /// accepted and stall. Off: everything held moves on (stalled connections reach the
    /// upstream only then).
    pub fn blackhole(&self, on: bool) {
        self.shared.blackhole.send_replace(on);
    }

    /// On: new connections are accepted and reset at once (what a closed port looks like to a
    /// client that retries).
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// On: on each AMQP connection, the client's bytes stop at its first `basic.ack`,
    /// `basic.nack` or `basic.reject` (publisher confirms travel the other way and pass).
    /// Off: whatever was held moves on. A client that closes while held takes its held
    /// settlement with it: the proxy drops the upstream connection without forwarding it.
    pub fn hold_settlements(&self, on: bool) {
        self.shared.hold_settlements.send_replace(on);
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset because `refuse` was on.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Settlements held back so far.
    pub fn held_settlements(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Waits until at least one settlement is held back; false after `within`.
    pub async fn wait_held(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.held_notify.notified();
            if self.held_settlements() > 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.held_settlements() > 0;
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.refuse.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            // A reset, not a clean close: the client sees the connection refused outright.
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        tokio::spawn(serve(client, shared.clone()));
    }
}

struct Live<'a>(&'a Shared);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(client: TcpStream, shared: Arc<Shared>) {
    shared.live.fetch_add(1, Ordering::SeqCst);
    let _live = Live(&shared);
    let mut generation = shared.generation.subscribe();
    generation.borrow_and_update();
    let carry = async {
        // A black hole swallows new connections too: accepted, then nothing until it lifts.
        open(&mut shared.blackhole.subscribe()).await;
        let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        // Either direction failing ends both; a clean end of one lets the other finish.
        let failed = CancellationToken::new();
        tokio::join!(
            pump(client_read, upstream_write, true, &shared, &failed),
            pump(upstream_read, client_write, false, &shared, &failed),
        );
    };
    tokio::select! {
        _ = shared.stop.cancelled() => {}
        _ = generation.changed() => {}
        _ = carry => {}
    }
}

/// Returns once the flag is off.
async fn open(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|on| !*on).await;
}

/// Copies `from` to `to`, honouring the black hole, and (client to upstream only) holding
/// settlements when asked. A client that goes away while one of its settlements is held ends
/// the connection without it: the ack never left the dead process.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    from_client: bool,
    shared: &Shared,
    failed: &CancellationToken,
) {
    let mut blackhole = shared.blackhole.subscribe();
    let mut hold = shared.hold_settlements.subscribe();
    let mut framer = Framer::new(from_client);
    let mut queue: VecDeque<Segment> = VecDeque::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Some(segment) = queue.pop_front() else {
            let read = tokio::select! {
                _ = failed.cancelled() => return,
                read = from.read(&mut buf) => read,
            };
            match read {
                Ok(0) => {
                    let rest = framer.flush();
                    if !rest.is_empty() && !forward(&mut to, &rest, &mut blackhole, failed).await {
                        return;
                    }
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => queue.extend(framer.push(&buf[..n])),
                Err(_) => {
                    failed.cancel();
                    return;
                }
            }
            continue;
        };
        if segment.settlement && *hold.borrow_and_update() {
            shared.held.fetch_add(1, Ordering::SeqCst);
            shared.held_notify.notify_waiters();
            loop {
                tokio::select! {
                    _ = failed.cancelled() => return,
                    _ = open(&mut hold) => break,
                    read = from.read(&mut buf) => match read {
                        Ok(n) if n > 0 => queue.extend(framer.push(&buf[..n])),
                        _ => {
                            failed.cancel();
                            return;
                        }
                    },
                }
            }
        }
        if !forward(&mut to, &segment.bytes, &mut blackhole, failed).await {
            return;
        }
    }
}

/// Writes `bytes` once the black hole is off; false when the connection is done.
async fn forward(
    to: &mut OwnedWriteHalf,
    bytes: &[u8],
    blackhole: &mut watch::Receiver<bool>,
    failed: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = failed.cancelled() => return false,
        _ = open(blackhole) => {}
    }
    let written = tokio::select! {
        _ = failed.cancelled() => return false,
        written = to.write_all(bytes) => written,
    };
    if written.is_err() {
        failed.cancel();
        return false;
    }
    true
}

/// A run of bytes to forward; `settlement` when it is one client settlement frame.
struct Segment {
    bytes: Vec<u8>,
    settlement: bool,
}

/// Splits a client's AMQP 0-9-1 stream into frames (type, channel, size, payload, 0xCE) after
/// its 8-byte protocol header; any other stream, or the broker's side, passes through as is.
struct Framer {
    mode: Mode,
    pending: Vec<u8>,
}

enum Mode {
    /// Not enough bytes yet to tell AMQP from anything else.
    Sniff,
    Header,
    Frames,
    Raw,
}

/// AMQP class `basic` and its client-side settlement methods.
const BASIC: u16 = 60;
const SETTLEMENTS: [u16; 3] = [80 /* ack */, 90 /* reject */, 120 /* nack */];

impl Framer {
    fn new(from_client: bool) -> Self {
        Self {
            mode: if from_client { Mode::Sniff } else { Mode::Raw },
            pending: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) -> Vec<Segment> {
        self.pending.extend_from_slice(data);
        let mut out: Vec<Segment> = Vec::new();
        let mut plain = Vec::new();
        loop {
            match self.mode {
                // Only a stream that could still be AMQP's header waits for more bytes.
                Mode::Sniff if self.pending.len() < 4 && b"AMQP".starts_with(&self.pending) => {
                    break
                }
                Mode::Sniff if self.pending.starts_with(b"AMQP") => self.mode = Mode::Header,
                Mode::Sniff => self.mode = Mode::Raw,
                Mode::Header if self.pending.len() < 8 => break,
                Mode::Header => {
                    plain.extend(self.pending.drain(..8));
                    self.mode = Mode::Frames;
                }
                Mode::Frames => {
                    let Some(size) = self.pending.get(3..7) else {
                        break;
                    };
                    let size = u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize;
                    let total = 7 + size + 1;
                    if self.pending.len() < total {
                        break;
                    }
                    let frame: Vec<u8> = self.pending.drain(..total).collect();
                    if is_settlement(&frame) {
                        if !plain.is_empty() {
                            out.push(Segment {
                                bytes: std::mem::take(&mut plain),
                                settlement: false,
                            });
                        }
                        out.push(Segment {
                            bytes: frame,
                            settlement: true,
                        });
                    } else {
                        plain.extend(frame);
                    }
                }
                Mode::Raw => {
                    plain.append(&mut self.pending);
                    break;
                }
            }
        }
        if !plain.is_empty() {
            out.push(Segment {
                bytes: plain,
                settlement: false,
            });
        }
        out
    }

    /// Whatever is left at the end of the stream (a partial frame).
    fn flush(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

fn is_settlement(frame: &[u8]) -> bool {
    // Method frames (type 1) start their payload with the class and method ids.
    frame.len() >= 11
        && frame[0] == 1
        && u16::from_be_bytes([frame[7], frame[8]]) == BASIC
        && SETTLEMENTS.contains(&u16::from_be_bytes([frame[9], frame[10]]))
}

#[test]
fn the_framer_isolates_a_basic_ack_split_across_reads() {
    let mut f = Framer::new(true);
    let header = b"AMQP\x00\x00\x09\x01".to_vec();
    // A heartbeat frame, then basic.ack on channel 2 (delivery tag 7, multiple false).
    let heartbeat = vec![8, 0, 0, 0, 0, 0, 0, 0xCE];
    let mut ack = vec![1, 0, 2, 0, 0, 0, 13, 0, 60, 0, 80];
    ack.extend(7u64.to_be_bytes());
    ack.extend([0, 0xCE]);
    let mut stream = header.clone();
    stream.extend(&heartbeat);
    stream.extend(&ack);
    let (a, b) = stream.split_at(20);
    let mut segments = f.push(a);
    segments.extend(f.push(b));
    let settled: Vec<&Segment> = segments.iter().filter(|s| s.settlement).collect();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].bytes, ack);
    let plain: Vec<u8> = segments
        .iter()
        .filter(|s| !s.settlement)
        .flat_map(|s| s.bytes.clone())
        .collect();
    assert_eq!(plain, [header, heartbeat].concat());
    assert!(f.flush().is_empty());

    let mut raw = Framer::new(true);
    let out = raw.push(b"GET / HTTP/1.1\r\n");
    assert_eq!(out.len(), 1);
    assert!(!out[0].settlement);
}

#[tokio::test]
async fn the_proxy_forwards_black_holes_drops_and_refuses_on_command() {
    // An echo server upstream.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let proxy = FaultProxy::start(upstream_addr).await;
    let short = Duration::from_millis(300);
    let mut buf = [0u8; 16];

    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    a.write_all(b"one").await.unwrap();
    let n = a.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"one");
    assert_eq!((proxy.connections(), proxy.live()), (1, 1));

    proxy.blackhole(true);
    a.write_all(b"two").await.unwrap();
    assert!(tokio::time::timeout(short, a.read(&mut buf)).await.is_err());
    // A new connection is accepted but goes nowhere either.
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    b.write_all(b"new").await.unwrap();
    assert!(tokio::time::timeout(short, b.read(&mut buf)).await.is_err());
    proxy.blackhole(false);
    let n = a.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"two");
    let n = b.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"new");

    proxy.close_all();
    for sock in [&mut a, &mut b] {
        let ended = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(ended, Ok(0) | Err(_)));
    }

    proxy.refuse(true);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("reset promptly");
    assert!(matches!(ended, Ok(0) | Err(_)));
    assert_eq!(proxy.refused(), 1);
    proxy.refuse(false);
    let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
    d.write_all(b"back").await.unwrap();
    let n = d.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"back");
    assert_eq!(proxy.connections(), 4);
}
