//! A loopback mock of three model APIs (OpenAI chat completions, the Anthropic Messages API and
//! the OpenAI Responses API), scripted step by step, so the real agent CLIs can be driven
//! offline.
//!
//! ```ignore
//! let mock = ModelMock::start(vec![
//!     Step::tool_call("write", json!({"path": "hello.txt", "content": "hi\n"})),
//!     Step::text("Done."),
//! ])
//! .await;
//! // point the agent at mock.base_url(), run it, then:
//! assert_eq!(mock.chat_requests()[0].header("authorization"), Some("Bearer t0ken"));
//! ```
//!
//! - `POST /v1/chat/completions`: with `"stream": true` an SSE stream of
//!   `chat.completion.chunk` objects (role, content or `tool_calls` deltas, a chunk with the
//!   `finish_reason`, a usage chunk, then `data: [DONE]`); otherwise one `chat.completion`.
//! - `POST /v1/messages` (Anthropic): with `"stream": true` the named SSE events
//!   `message_start`, per content block `content_block_start` / `content_block_delta` (text or
//!   `input_json_delta`) / `content_block_stop`, `message_delta` (`stop_reason`, usage),
//!   `message_stop`; otherwise one `message`. See [`anthropic`].
//! - `POST /v1/responses` (OpenAI Responses): with `"stream": true` the named SSE events
//!   `response.created`, per output item `response.output_item.added` / deltas /
//!   `response.output_item.done` (`function_call` or `message`), `response.completed` with
//!   usage; otherwise one `response`. See [`responses`].
//! - `GET /v1/models`: a list holding [`MODEL_ID`].
//! - Anything else: 404 with an OpenAI-style error body.
//!
//! Every API serves the same script. The step served is the number of assistant turns already in
//! the request's transcript: the first call (no assistant turn yet) gets step 0, the call after
//! the first tool round gets step 1, and so on. For chat completions and Messages a turn is an
//! `assistant` message; for Responses it is a run of consecutive model-output items
//! (`function_call`s, assistant `message`s, `reasoning`) in `input`. A retried request carries
//! the same transcript, so it gets the same step again; the response never depends on how many
//! requests came before. Past the end of the script the mock answers [`EXHAUSTED_TEXT`] as a
//! final text, so a run that asks for more than was scripted ends rather than hangs (and `step`
//! is `None` in its record). A [`Step::Fail`] answers in the error format of the API asked.
//!
//! The HTTP/1.1 server is deliberately small: one request per connection (every response says
//! `Connection: close`), bodies by `Content-Length` or chunked, responses chunked. Dropping the
//! [`ModelMock`] stops the listener and every open connection.

mod anthropic;
mod responses;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The model id listed by `GET /v1/models`; requests may name any model, it is echoed back.
pub const MODEL_ID: &str = "mock-model";

/// The final text served once the script is exhausted.
pub const EXHAUSTED_TEXT: &str = "mock script exhausted";

/// Request heads and bodies past these sizes are refused, so a confused client cannot make the
/// mock buffer without bound.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// One scripted model turn.
#[derive(Debug, Clone)]
pub enum Step {
    /// An assistant turn made only of tool calls (several = parallel calls in one turn);
    /// `finish_reason: "tool_calls"`.
    ToolCalls(Vec<ToolCall>),
    /// A final assistant text; `finish_reason: "stop"`.
    Text(String),
    /// An HTTP error with an OpenAI-style error body, e.g. 401 or 500. Because the step is chosen
    /// by the transcript, every retry of this turn fails the same way.
    Fail { status: u16, message: String },
}

impl Step {
    /// A turn with a single tool call.
    pub fn tool_call(name: &str, arguments: Value) -> Step {
        Step::ToolCalls(vec![ToolCall::new(name, arguments)])
    }

    /// A final text turn.
    pub fn text(text: &str) -> Step {
        Step::Text(text.to_owned())
    }

    /// A failing turn.
    pub fn fail(status: u16, message: &str) -> Step {
        Step::Fail {
            status,
            message: message.to_owned(),
        }
    }
}

/// A tool call the mock asks the agent to make.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    /// Sent as a JSON string in `function.arguments`, as the real API does.
    pub arguments: Value,
}

impl ToolCall {
    pub fn new(name: &str, arguments: Value) -> ToolCall {
        ToolCall {
            name: name.to_owned(),
            arguments,
        }
    }
}

/// One request the mock received, recorded before it was answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target without its query string.
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `Value::Null` when empty or not JSON.
    pub body: Value,
    /// Which model API the request called, `None` for any other route.
    pub api: Option<Api>,
    /// For model API calls: the index of the step served, `None` past the end of the script.
    pub step: Option<usize>,
    /// The tokens the response reported, `None` for an error answer or another route.
    pub usage: Option<Served>,
}

/// The tokens one response reported, by class: `fresh + cache_read + cache_write` is the
/// whole prompt. Deterministic, like a real tokenizer's: the prompt is a quarter of the
/// request's JSON length; every call writes an eighth of it to the cache, and every call after
/// the first reads half of it from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Served {
    pub fresh: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
}

impl Served {
    /// `writes`: whether the API reports cache writes (the Responses API does not).
    fn new(prompt: usize, turn: usize, output: usize, writes: bool) -> Self {
        let cache_read = if turn > 0 { prompt / 2 } else { 0 };
        let cache_write = if writes { prompt / 8 } else { 0 };
        Self {
            fresh: (prompt - cache_read - cache_write) as u64,
            cache_read: cache_read as u64,
            cache_write: cache_write as u64,
            output: output as u64,
        }
    }

    /// The whole prompt.
    pub fn prompt(&self) -> u64 {
        self.fresh + self.cache_read + self.cache_write
    }

    /// The sum of several responses.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Served>) -> Served {
        all.into_iter().fold(Served::default(), |a, b| Served {
            fresh: a.fresh + b.fresh,
            cache_read: a.cache_read + b.cache_read,
            cache_write: a.cache_write + b.cache_write,
            output: a.output + b.output,
        })
    }
}

/// The model APIs the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `POST /v1/responses` (OpenAI Responses).
    Responses,
}

impl Api {
    fn of(method: &str, path: &str) -> Option<Api> {
        if method != "POST" {
            return None;
        }
        match path {
            "/v1/chat/completions" | "/chat/completions" => Some(Api::ChatCompletions),
            "/v1/messages" | "/messages" => Some(Api::Messages),
            "/v1/responses" | "/responses" => Some(Api::Responses),
            _ => None,
        }
    }
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a chat-completions call.
    pub fn is_chat(&self) -> bool {
        self.api == Some(Api::ChatCompletions)
    }

    /// The `model` the request named.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the request asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }
}

/// A running mock; stops when dropped.
pub struct ModelMock {
    addr: SocketAddr,
    shared: Arc<Shared>,
    count_rx: watch::Receiver<usize>,
    accept_task: JoinHandle<()>,
}

struct Shared {
    steps: Vec<Step>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// The number of recorded requests, so tests can wait for one instead of sleeping.
    count_tx: watch::Sender<usize>,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // A panicking connection task must not hide the requests from the test's assertions.
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, request: RecordedRequest) -> usize {
        let mut requests = self.requests();
        requests.push(request);
        let seq = requests.len();
        self.count_tx.send_replace(seq);
        seq
    }
}

impl ModelMock {
    /// Binds `127.0.0.1:0` and starts serving the script. Must be called inside a tokio runtime.
    pub async fn start(steps: Vec<Step>) -> ModelMock {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the model mock on loopback");
        let addr = listener.local_addr().expect("model mock local address");
        let (count_tx, count_rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            steps,
            requests: Mutex::new(Vec::new()),
            count_tx,
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        ModelMock {
            addr,
            shared,
            count_rx,
            accept_task,
        }
    }

    /// `http://127.0.0.1:<port>/v1`, the base URL an OpenAI client expects.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:<port>`, the base URL an Anthropic client expects (it adds `/v1`).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// Only the chat-completions requests, in arrival order.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.api_requests(Api::ChatCompletions)
    }

    /// The tokens every answered request to `api` reported, in arrival order.
    pub fn served(&self, api: Api) -> Vec<Served> {
        self.api_requests(api)
            .iter()
            .filter_map(|r| r.usage)
            .collect()
    }

    /// Only the requests to `api`, in arrival order.
    pub fn api_requests(&self, api: Api) -> Vec<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.api == Some(api))
            .cloned()
            .collect()
    }

    /// Resolves once at least `n` requests (of any kind) have been recorded.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut rx = self.count_rx.clone();
        // The sender lives in `shared`, which `self` keeps alive, so this cannot fail.
        let _ = rx.wait_for(|count| *count >= n).await;
    }
}

impl Drop for ModelMock {
    fn drop(&mut self) {
        // The accept task owns the listener and the JoinSet of connections; aborting it drops
        // both, which aborts every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Transient accept errors (e.g. EMFILE) must not end the mock mid-test.
                Err(_) => tokio::task::yield_now().await,
            },
            // Reap finished connections so the set does not grow over a long test.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A parsed HTTP request.
struct Request {
    method: String,
    path: String,
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

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let response = match read_request(&mut reader).await {
        Ok(Some(request)) => respond(request, &shared),
        // The client closed before sending a request (e.g. a connection-pool probe).
        Ok(None) => return,
        Err(message) => Response::error(400, &message),
    };
    // A client that went away mid-response is not the mock's problem.
    let _ = write_response(&mut write_half, response).await;
    let _ = write_half.shutdown().await;
}

async fn read_request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<Option<Request>, String> {
    let mut head_bytes = 0usize;
    let mut request_line = String::new();
    loop {
        request_line.clear();
        let n = read_line(reader, &mut request_line, &mut head_bytes).await?;
        if n == 0 {
            return Ok(None);
        }
        // RFC 9112 §2.2: a server should ignore empty lines before the request line.
        if !request_line.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m.to_owned(), t.to_owned()),
        _ => return Err(format!("malformed request line {:?}", request_line.trim())),
    };
    let path = target.split('?').next().unwrap_or_default().to_owned();

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if read_line(reader, &mut line, &mut head_bytes).await? == 0 {
            return Err("connection closed inside the request head".to_owned());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line {line:?}"));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }

    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    request.body = if chunked {
        read_chunked_body(reader).await?
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad content-length {length:?}"))?;
        if length > MAX_BODY_BYTES {
            return Err(format!("body of {length} bytes is too large"));
        }
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        body
    } else {
        Vec::new()
    };
    Ok(Some(request))
}

async fn read_line(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut String,
    head_bytes: &mut usize,
) -> Result<usize, String> {
    let n = reader
        .read_line(line)
        .await
        .map_err(|e| format!("reading the request head: {e}"))?;
    *head_bytes += n;
    if *head_bytes > MAX_HEAD_BYTES {
        return Err("request head too large".to_owned());
    }
    Ok(n)
}

async fn read_chunked_body(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut head_bytes = 0usize;
    loop {
        let mut size_line = String::new();
        if read_line(reader, &mut size_line, &mut head_bytes).await? == 0 {
            return Err("connection closed inside a chunked body".to_owned());
        }
        let size_hex = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let mut trailer = String::new();
                let n = read_line(reader, &mut trailer, &mut head_bytes).await?;
                if n == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err("chunked body too large".to_owned());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .await
            .map_err(|e| format!("reading a chunk: {e}"))?;
        let mut crlf = [0u8; 2];
        reader
            .read_exact(&mut crlf)
            .await
            .map_err(|e| format!("reading a chunk end: {e}"))?;
    }
}

/// What to send back: either one JSON document or a list of SSE events.
enum Response {
    Json { status: u16, body: Value },
    Sse { events: Vec<String> },
}

impl Response {
    fn error(status: u16, message: &str) -> Response {
        Response::Json {
            status,
            body: openai_error_body(message),
        }
    }
}

fn respond(request: Request, shared: &Shared) -> Response {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let api = Api::of(&request.method, &request.path);
    let mut record = RecordedRequest {
        method: request.method,
        path: request.path,
        headers: request.headers,
        body,
        api,
        step: None,
        usage: None,
    };

    let Some(api) = api else {
        if record.method == "GET" && matches!(record.path.as_str(), "/v1/models" | "/models") {
            shared.record(record);
            return Response::Json {
                status: 200,
                body: json!({
                    "object": "list",
                    "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "mock"}]
                }),
            };
        }
        let message = format!("no route for {} {}", record.method, record.path);
        shared.record(record);
        return Response::error(404, &message);
    };

    let turn = match api {
        Api::ChatCompletions => record
            .body
            .get("messages")
            .and_then(Value::as_array)
            .map(|messages| count_role(messages, "assistant")),
        Api::Messages => anthropic::turn(&record.body),
        Api::Responses => responses::turn(&record.body),
    };
    let Some(turn) = turn else {
        shared.record(record);
        return Response::error(400, "the body must be JSON with a transcript");
    };
    let step = shared.steps.get(turn).cloned();
    record.step = step.as_ref().map(|_| turn);
    let model = record.model().unwrap_or(MODEL_ID).to_owned();
    let stream = record.is_stream();
    // Input tokens are a deterministic function of the request, like a real tokenizer's.
    let input_tokens = record.body.to_string().len() / 4;
    let step = step.unwrap_or_else(|| Step::text(EXHAUSTED_TEXT));
    let served = Served::new(
        input_tokens,
        turn,
        output_tokens(&step),
        api != Api::Responses,
    );
    if !matches!(step, Step::Fail { .. }) {
        record.usage = Some(served);
    }
    let seq = shared.record(record);
    if let Step::Fail { status, message } = &step {
        let body = match api {
            Api::Messages => anthropic::error_body(*status, message),
            Api::ChatCompletions | Api::Responses => openai_error_body(message),
        };
        return Response::Json {
            status: *status,
            body,
        };
    }
    let turn = Turn {
        seq,
        model,
        turn,
        served,
    };
    match (api, stream) {
        (Api::ChatCompletions, true) => Response::Sse {
            events: turn.chat_chunks(&step),
        },
        (Api::ChatCompletions, false) => Response::Json {
            status: 200,
            body: turn.chat_whole(&step),
        },
        (Api::Messages, true) => Response::Sse {
            events: anthropic::events(&turn, &step),
        },
        (Api::Messages, false) => Response::Json {
            status: 200,
            body: anthropic::whole(&turn, &step),
        },
        (Api::Responses, true) => Response::Sse {
            events: responses::events(&turn, &step),
        },
        (Api::Responses, false) => Response::Json {
            status: 200,
            body: responses::whole(&turn, &step),
        },
    }
}

fn count_role(messages: &[Value], role: &str) -> usize {
    messages
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some(role))
        .count()
}

fn openai_error_body(message: &str) -> Value {
    json!({"error": {"message": message, "type": "mock_error", "param": null, "code": null}})
}

/// One SSE event with a name, as the Anthropic and Responses streams send them.
fn named_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The output tokens a step costs: a deterministic function of what it says.
fn output_tokens(step: &Step) -> usize {
    let output_chars: usize = match step {
        Step::ToolCalls(calls) => calls
            .iter()
            .map(|c| c.name.len() + c.arguments.to_string().len())
            .sum(),
        Step::Text(text) => text.len(),
        Step::Fail { .. } => 0,
    };
    output_chars / 4 + 1
}

/// The fixed parts of one model turn, whatever the API.
pub(super) struct Turn {
    /// The request's sequence number, for unique response ids.
    seq: usize,
    model: String,
    turn: usize,
    served: Served,
}

impl Turn {
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-mock-{}", self.seq)
    }

    fn tool_call_id(&self, index: usize) -> String {
        // Unique across turns, and the same on a retry of the same turn.
        format!("call_mock_{}_{}", self.turn, index)
    }

    /// Chat completions' usage: `prompt_tokens` is the whole prompt, of which
    /// `cached_tokens` were read and `cache_write_tokens` written (as OpenRouter reports it).
    fn usage(&self) -> Value {
        let s = self.served;
        json!({
            "prompt_tokens": s.prompt(),
            "completion_tokens": s.output,
            "total_tokens": s.prompt() + s.output,
            "prompt_tokens_details": {"cached_tokens": s.cache_read, "cache_write_tokens": s.cache_write},
            "completion_tokens_details": {"reasoning_tokens": 0}
        })
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": choices,
        })
    }

    fn delta(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        self.chunk(json!([{"index": 0, "delta": delta, "finish_reason": finish_reason}]))
    }

    /// The streamed form: every piece split in two, so clients must accumulate deltas.
    fn chat_chunks(&self, step: &Step) -> Vec<String> {
        let mut chunks = vec![self.delta(json!({"role": "assistant", "content": ""}), None)];
        let finish_reason = match step {
            Step::ToolCalls(calls) => {
                for (index, call) in calls.iter().enumerate() {
                    let arguments = call.arguments.to_string();
                    let (first, rest) = split_in_two(&arguments);
                    chunks.push(self.delta(
                        json!({"tool_calls": [{
                            "index": index,
                            "id": self.tool_call_id(index),
                            "type": "function",
                            "function": {"name": call.name, "arguments": first}
                        }]}),
                        None,
                    ));
                    chunks.push(self.delta(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": rest}}]}),
                        None,
                    ));
                }
                "tool_calls"
            }
            Step::Text(text) => {
                let (first, rest) = split_in_two(text);
                chunks.push(self.delta(json!({"content": first}), None));
                chunks.push(self.delta(json!({"content": rest}), None));
                "stop"
            }
            Step::Fail { .. } => "stop",
        };
        chunks.push(self.delta(json!({}), Some(finish_reason)));
        let mut usage_chunk = self.chunk(json!([]));
        usage_chunk["usage"] = self.usage();
        chunks.push(usage_chunk);

        let mut events: Vec<String> = chunks
            .iter()
            .map(|chunk| format!("data: {chunk}\n\n"))
            .collect();
        events.push("data: [DONE]\n\n".to_owned());
        events
    }

    /// The non-streamed form.
    fn chat_whole(&self, step: &Step) -> Value {
        let (message, finish_reason) = match step {
            Step::ToolCalls(calls) => {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(index, call)| {
                        json!({
                            "id": self.tool_call_id(index),
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments.to_string()}
                        })
                    })
                    .collect();
                (
                    json!({"role": "assistant", "content": null, "tool_calls": tool_calls}),
                    "tool_calls",
                )
            }
            Step::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
            Step::Fail { .. } => (json!({"role": "assistant", "content": ""}), "stop"),
        };
        json!({
            "id": self.id("chatcmpl"),
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": self.usage(),
        })
    }
}

/// Splits at a char boundary near the middle.
pub(super) fn split_in_two(s: &str) -> (&str, &str) {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    s.split_at(mid)
}

async fn write_response(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    response: Response,
) -> std::io::Result<()> {
    match response {
        Response::Json { status, body } => {
            let body = body.to_string();
            let head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                reason_phrase(status),
                body.len()
            );
            writer.write_all(head.as_bytes()).await?;
            writer.write_all(body.as_bytes()).await?;
        }
        Response::Sse { events } => {
            writer
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                )
                .await?;
            // One HTTP chunk per event, flushed, so the client sees a real stream.
            for event in events {
                writer
                    .write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
                    .await?;
                writer.flush().await?;
            }
            writer.write_all(b"0\r\n\r\n").await?;
        }
    }
    writer.flush().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    //! The mock's own contract, checked with a raw HTTP/1.1 client so no client library's
    //! leniency hides a framing mistake.

    use super::*;

    /// Sends one raw request and returns (status, headers, decoded body).
    async fn send(mock: &ModelMock, raw: String) -> (u16, Vec<(String, String)>, String) {
        let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status.parse().unwrap(), headers, body)
    }

    fn dechunk(mut rest: &str) -> String {
        let mut out = String::new();
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                return out;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
    }

    fn post(path: &str, body: &Value) -> String {
        let body = body.to_string();
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Named SSE events as (event name, data).
    fn named_events(body: &str) -> Vec<(String, Value)> {
        body.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str(), "the data names its event");
                (name, data)
            })
            .collect()
    }

    fn post_chat(body: &Value) -> String {
        let body = body.to_string();
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-123\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn sse_chunks(body: &str) -> Vec<Value> {
        assert!(body.ends_with("data: [DONE]\n\n"), "no [DONE] in {body:?}");
        body.split("\n\n")
            .filter(|e| !e.is_empty() && *e != "data: [DONE]")
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    fn chat_body(assistant_turns: usize, stream: bool) -> Value {
        let mut messages = vec![json!({"role": "user", "content": "go"})];
        for i in 0..assistant_turns {
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": []}));
            messages
                .push(json!({"role": "tool", "tool_call_id": format!("c{i}"), "content": "ok"}));
        }
        json!({"model": "m-1", "stream": stream, "messages": messages})
    }

    #[tokio::test]
    async fn a_streamed_tool_call_step_arrives_as_split_deltas_then_finish_then_usage() {
        let args = json!({"path": "hello.txt", "content": "héllo\n"});
        let mock = ModelMock::start(vec![Step::tool_call("write", args.clone())]).await;

        let (status, headers, body) = send(&mock, post_chat(&chat_body(0, true))).await;

        assert_eq!(status, 200);
        assert!(headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == "text/event-stream"));
        let chunks = sse_chunks(&body);
        assert!(chunks.iter().all(|c| c["model"] == "m-1"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 2, "name chunk then arguments chunk");
        assert_eq!(calls[0][0]["id"], "call_mock_0_0");
        assert_eq!(calls[0][0]["function"]["name"], "write");
        let joined: String = calls
            .iter()
            .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), args);
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn the_step_served_is_the_number_of_assistant_messages_even_on_a_retry() {
        let mock = ModelMock::start(vec![
            Step::tool_call("bash", json!({"command": "true"})),
            Step::text("all done"),
        ])
        .await;

        // The second turn, asked twice (a retry), then the first turn again.
        for body in [chat_body(1, true), chat_body(1, true), chat_body(0, true)] {
            send(&mock, post_chat(&body)).await;
        }
        let (_, _, body) = send(&mock, post_chat(&chat_body(1, true))).await;

        let text: String = sse_chunks(&body)
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "all done");
        let finish = &sse_chunks(&body)[3];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let steps: Vec<Option<usize>> = mock.requests().iter().map(|r| r.step).collect();
        assert_eq!(steps, [Some(1), Some(1), Some(0), Some(1)]);
    }

    #[tokio::test]
    async fn requests_are_recorded_with_their_headers_and_parsed_body() {
        let mock = ModelMock::start(vec![Step::text("hi")]).await;

        send(&mock, post_chat(&chat_body(0, true))).await;

        let requests = mock.chat_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].header("Authorization"), Some("Bearer tok-123"));
        assert_eq!(requests[0].model(), Some("m-1"));
        assert!(requests[0].is_stream());
        assert_eq!(requests[0].body["messages"][0]["content"], "go");
    }

    #[tokio::test]
    async fn a_chunked_request_body_is_decoded() {
        let mock = ModelMock::start(vec![Step::text("hi")]).await;
        let body = chat_body(0, false).to_string();
        let (a, b) = body.split_at(10);
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );

        let (status, _, _) = send(&mock, raw).await;

        assert_eq!(status, 200);
        assert_eq!(mock.chat_requests()[0].body, chat_body(0, false));
    }

    #[tokio::test]
    async fn a_non_streamed_request_gets_one_completion_with_whole_tool_calls() {
        let mock = ModelMock::start(vec![Step::ToolCalls(vec![
            ToolCall::new("read", json!({"path": "a"})),
            ToolCall::new("read", json!({"path": "b"})),
        ])])
        .await;

        let (status, _, body) = send(&mock, post_chat(&chat_body(0, false))).await;

        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        let calls = &body["choices"][0]["message"]["tool_calls"];
        assert_eq!(calls[1]["id"], "call_mock_0_1");
        assert_eq!(calls[1]["function"]["arguments"], r#"{"path":"b"}"#);
    }

    #[tokio::test]
    async fn a_fail_step_answers_its_status_with_an_openai_error_body() {
        let mock = ModelMock::start(vec![Step::fail(401, "bad token")]).await;

        let (status, _, body) = send(&mock, post_chat(&chat_body(0, true))).await;

        assert_eq!(status, 401);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["message"], "bad token");
    }

    #[tokio::test]
    async fn past_the_end_of_the_script_the_mock_stops_the_run_with_a_text() {
        let mock = ModelMock::start(vec![]).await;

        let (_, _, body) = send(&mock, post_chat(&chat_body(0, false))).await;

        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], EXHAUSTED_TEXT);
        assert_eq!(mock.chat_requests()[0].step, None);
    }

    #[tokio::test]
    async fn models_are_listed_and_unknown_routes_are_404() {
        let mock = ModelMock::start(vec![]).await;

        let (status, _, body) =
            send(&mock, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["data"][0]["id"], MODEL_ID);

        let (status, _, _) = send(&mock, "GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
        assert_eq!(status, 404);
        mock.wait_for_requests(2).await;
        assert_eq!(mock.requests()[1].path, "/v1/nope");
    }

    #[tokio::test]
    async fn a_dropped_mock_refuses_connections() {
        let mock = ModelMock::start(vec![]).await;
        let addr = mock.addr();

        drop(mock);
        // The abort takes effect when the runtime next polls the accept task.
        tokio::task::yield_now().await;

        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_streamed_messages_step_sends_anthropic_events_with_the_tool_input_split() {
        let args = json!({"file_path": "/r/hello.txt", "content": "héllo\n"});
        let mock = ModelMock::start(vec![
            Step::text("first"),
            Step::tool_call("Write", args.clone()),
        ])
        .await;
        let body = json!({"model": "m-2", "stream": true, "max_tokens": 100, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "text", "text": "first"}]},
            {"role": "user", "content": "again"},
        ]});

        let (status, headers, text) = send(&mock, post("/v1/messages", &body)).await;

        assert_eq!(status, 200);
        assert!(headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == "text/event-stream"));
        let events = named_events(&text);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let start = &events[0].1["message"];
        assert_eq!(
            (&start["role"], &start["model"]),
            (&json!("assistant"), &json!("m-2"))
        );
        assert!(start["usage"]["input_tokens"].as_u64().unwrap() > 0);
        let block = &events[2].1["content_block"];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "Write");
        assert_eq!(block["id"], "toolu_mock_1_0");
        let input: String = events[3..5]
            .iter()
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&input).unwrap(), args);
        let delta = &events[6].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
        let recorded = &mock.api_requests(Api::Messages)[0];
        assert_eq!(recorded.step, Some(1));
    }

    #[tokio::test]
    async fn a_messages_text_step_and_a_failure_use_the_anthropic_shapes() {
        let mock =
            ModelMock::start(vec![Step::text("all done"), Step::fail(401, "bad token")]).await;
        let first = json!({"model": "m", "messages": [{"role": "user", "content": "go"}]});
        let (status, _, text) = send(&mock, post("/v1/messages", &first)).await;
        assert_eq!(status, 200);
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(message["type"], "message");
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": "all done"}])
        );
        assert_eq!(message["stop_reason"], "end_turn");

        let second = json!({"model": "m", "stream": true, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "all done"},
            {"role": "user", "content": "more"},
        ]});
        let (status, _, text) = send(&mock, post("/v1/messages", &second)).await;
        assert_eq!(status, 401);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            error,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "bad token"}})
        );
    }

    #[tokio::test]
    async fn a_streamed_responses_step_sends_numbered_events_ending_in_completed_with_usage() {
        let mock = ModelMock::start(vec![Step::text("héllo wörld")]).await;
        let body = json!({"model": "m-3", "stream": true, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}
        ]});

        let (status, _, text) = send(&mock, post("/v1/responses", &body)).await;

        assert_eq!(status, 200);
        let events = named_events(&text);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (i, (_, data)) in events.iter().enumerate() {
            assert_eq!(data["sequence_number"], i);
        }
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, "héllo wörld");
        let done = &events[8].1["item"];
        assert_eq!(
            (&done["type"], &done["role"]),
            (&json!("message"), &json!("assistant"))
        );
        let completed = &events[9].1["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["model"], "m-3");
        assert_eq!(completed["output"][0], *done);
        let usage = &completed["usage"];
        assert!(usage["input_tokens"].as_u64().unwrap() > 0);
        assert!(usage["output_tokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn a_responses_turn_is_a_run_of_model_output_items_so_parallel_calls_count_once() {
        let mock = ModelMock::start(vec![
            Step::ToolCalls(vec![
                ToolCall::new("exec_command", json!({"cmd": "a"})),
                ToolCall::new("exec_command", json!({"cmd": "b"})),
            ]),
            Step::tool_call("exec_command", json!({"cmd": "c"})),
            Step::text("done"),
        ])
        .await;
        let call = |id: &str| json!({"type": "function_call", "call_id": id, "name": "exec_command", "arguments": "{}"});
        let output =
            |id: &str| json!({"type": "function_call_output", "call_id": id, "output": "ok"});
        let body = json!({"model": "m", "input": [
            {"role": "user", "content": "go"},
            call("c1"), call("c2"), output("c1"), output("c2"),
            {"type": "reasoning", "summary": []}, call("c3"), output("c3"),
        ]});

        let (status, _, text) = send(&mock, post("/v1/responses", &body)).await;

        assert_eq!(status, 200);
        let response: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(response["output"][0]["content"][0]["text"], "done");
        assert_eq!(mock.api_requests(Api::Responses)[0].step, Some(2));

        // The first turn's two calls, in one response, with ids unique per turn and index.
        let first = json!({"model": "m", "input": "go"});
        let (_, _, text) = send(&mock, post("/v1/responses", &first)).await;
        let response: Value = serde_json::from_str(&text).unwrap();
        let ids: Vec<&str> = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["call_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["call_mock_0_0", "call_mock_0_1"]);
        assert_eq!(response["output"][1]["arguments"], r#"{"cmd":"b"}"#);
    }
}
