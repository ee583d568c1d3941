//! A real smart-HTTP git server for tests: `git http-backend` (CGI) behind a small HTTP/1.1
//! front on `127.0.0.1:0`, serving a directory of bare repositories.
//!
//! Every request needs HTTP Basic auth whose password is the one expected token (any user
//! name). A missing or wrong credential gets `401` with `WWW-Authenticate: Basic`. Every
//! `Authorization` header seen is recorded, so a test can prove a client did not loop on a bad
//! token. Each response closes its connection (the client reconnects), request bodies may be
//! chunked, and the server stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One `Authorization` header the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    pub username: String,
    pub accepted: bool,
}

type Hook = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    root: PathBuf,
    token: String,
    attempts: Mutex<Vec<AuthAttempt>>,
    anonymous: Mutex<usize>,
    before_upload_pack: Mutex<Option<Hook>>,
    stop: AtomicBool,
}

/// The running server. Dropping it stops the accept loop and joins it.
pub struct GitHttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GitHttpServer {
    /// Serves the bare repositories under `root` (`<root>/<name>.git`), accepting `token`.
    pub fn start(root: &Path, token: &str) -> Self {
        Self::start_on("127.0.0.1", root, token)
    }

    /// As [`GitHttpServer::start`], on another loopback address (`127.0.0.2` stands in for a
    /// host the job's token must never reach).
    pub fn start_on(ip: &str, root: &Path, token: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            token: token.to_owned(),
            attempts: Mutex::new(Vec::new()),
            anonymous: Mutex::new(0),
            before_upload_pack: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn_shared = Arc::clone(&accept_shared);
                std::thread::spawn(move || {
                    // A broken connection only fails that request; the client reports it.
                    let _ = serve(stream, &conn_shared);
                });
            }
        });
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The clone URL of `<root>/<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    /// Every `Authorization` header seen, in order.
    pub fn attempts(&self) -> Vec<AuthAttempt> {
        self.shared.attempts.lock().expect("attempts lock").clone()
    }

    /// Every request that reached the server, with a credential or without.
    pub fn requests(&self) -> usize {
        self.attempts().len() + self.anonymous_requests()
    }

    /// How many requests carried a wrong credential.
    pub fn bad_attempts(&self) -> usize {
        self.attempts().iter().filter(|a| !a.accepted).count()
    }

    /// How many requests carried the right token.
    pub fn accepted_attempts(&self) -> usize {
        self.attempts().iter().filter(|a| a.accepted).count()
    }

    /// How many requests came without any `Authorization` header.
    pub fn anonymous_requests(&self) -> usize {
        *self.shared.anonymous.lock().expect("anonymous lock")
    }

    /// Runs `hook` on each authenticated fetch pack request (`POST .../git-upload-pack`) before
    /// it is answered: a test can cancel a clone at a known point of the transfer.
    pub fn before_upload_pack(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.shared.before_upload_pack.lock().expect("hook lock") = Some(Arc::new(hook));
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the loop sees the stop flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader, &mut writer)? else {
        return Ok(());
    };

    let username = match request.header("authorization").map(parse_basic) {
        None => {
            *shared.anonymous.lock().expect("anonymous lock") += 1;
            return write_unauthorized(&mut writer);
        }
        Some(None) => {
            record(shared, String::new(), false);
            return write_unauthorized(&mut writer);
        }
        Some(Some((user, password))) => {
            let accepted = password == shared.token;
            record(shared, user.clone(), accepted);
            if !accepted {
                return write_unauthorized(&mut writer);
            }
            user
        }
    };

    if request.method == "POST" && request.path.ends_with("/git-upload-pack") {
        let hook = shared.before_upload_pack.lock().expect("hook lock").clone();
        if let Some(hook) = hook {
            hook();
        }
    }
    let response = run_backend(shared, &request, &username)?;
    writer.write_all(&response)?;
    writer.flush()
}

fn record(shared: &Shared, username: String, accepted: bool) {
    shared
        .attempts
        .lock()
        .expect("attempts lock")
        .push(AuthAttempt { username, accepted });
}

fn write_unauthorized(writer: &mut TcpStream) -> std::io::Result<()> {
    let body = b"authentication required\n";
    write!(
        writer,
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    writer.write_all(body)?;
    writer.flush()
}

/// Reads one request; `None` when the peer closed before sending one (the drop wake-up).
fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };

    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut request = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
    };

    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        request.body = read_chunked(reader)?;
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| std::io::Error::other("bad content-length"))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(Some(request))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_hex = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// Runs `git http-backend` for one request and turns its CGI answer into an HTTP response.
fn run_backend(shared: &Shared, request: &Request, username: &str) -> std::io::Result<Vec<u8>> {
    let mut command = Command::new(http_backend());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("REMOTE_ADDR", "127.0.0.1")
        // http-backend serves receive-pack only to an authenticated user.
        .env(
            "REMOTE_USER",
            if username.is_empty() { "git" } else { username },
        )
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(content_type) = request.header("content-type") {
        command.env("CONTENT_TYPE", content_type);
    }
    if let Some(encoding) = request.header("content-encoding") {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = request.header("git-protocol") {
        command.env("GIT_PROTOCOL", protocol);
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = request.body.clone();
    // Written from another thread so a backend that answers before reading all input cannot
    // deadlock against a full pipe.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output()?;
    let _ = feeder.join();
    Ok(cgi_to_http(&output.stdout))
}

fn http_backend() -> PathBuf {
    let default = PathBuf::from("/usr/lib/git-core/git-http-backend");
    if default.exists() {
        return default;
    }
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git --exec-path");
    PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-http-backend")
}

fn cgi_to_http(cgi: &[u8]) -> Vec<u8> {
    let (head, body) = match find(cgi, b"\r\n\r\n") {
        Some(i) => (&cgi[..i], &cgi[i + 4..]),
        None => match find(cgi, b"\n\n") {
            Some(i) => (&cgi[..i], &cgi[i + 2..]),
            None => (&cgi[..0], cgi),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut status = "200 OK".to_owned();
    let mut headers = String::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("status") {
            status = value.trim().to_owned();
        } else {
            headers.push_str(&format!("{}: {}\r\n", name.trim(), value.trim()));
        }
    }
    let mut response = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `Basic <base64(user:password)>` to `(user, password)`; `None` when malformed.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = input.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[test]
fn base64_decoding_of_basic_credentials_round_trips() {
    assert_eq!(
        parse_basic("Basic eC1hY2Nlc3MtdG9rZW46czNjcmV0"),
        Some(("x-access-token".to_owned(), "s3cret".to_owned()))
    );
    assert_eq!(parse_basic("Bearer abc"), None);
}
