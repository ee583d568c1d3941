//! Opening the pull request (GitHub) or merge request (GitLab) after the final push (seed 4.10).
//!
//! A resumed run opens it again: the provider answers "already exists" and a lookup returns the
//! open one, so the call is idempotent per branch. 5xx, 429 and network errors are retried a
//! few times; everything else is answered at once. The token travels only in the
//! `Authorization` / `PRIVATE-TOKEN` header, and every error text is redacted.

use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use reqwest::{redirect, Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::job::outcome::FailureCause;
use crate::job::Provider;
use crate::redact::{head_chars, Redactor, Secret};

const GITHUB_API: &str = "https://api.github.com";
const HARNESS_USER_AGENT: &str = "executor-harness";
const GITHUB_API_VERSION: &str = "2022-11-28";
/// How much of an error response body the failure text quotes.
const BODY_EXCERPT_CHARS: usize = 300;
const NETWORK_FALLBACK: &str = "API request failed after retries";
const PRIVATE_TOKEN: HeaderName = HeaderName::from_static("private-token");
const GITHUB_VERSION_HEADER: HeaderName = HeaderName::from_static("x-github-api-version");

/// Why the pull or merge request could not be opened. The texts are the seed's (section 3.7).
#[derive(Debug, thiserror::Error)]
pub enum PrError {
    /// `body` is already redacted and cut to its first 300 characters.
    #[error("Failed to open PR (HTTP {status}): {body}")]
    Github { status: u16, body: String },
    #[error("GitHub did not return a PR url")]
    GithubNoUrl,
    /// `body` is already redacted and cut to its first 300 characters.
    #[error("Failed to open merge request (HTTP {status}): {body}")]
    Gitlab { status: u16, body: String },
    #[error("GitLab did not return a merge request url")]
    GitlabNoUrl,
    /// The request never got an answer, after the retries; the text is redacted.
    #[error("{0}")]
    Network(String),
    /// The token holds bytes an HTTP header cannot carry; its value is never quoted.
    #[error("The git token cannot be sent in an HTTP header")]
    InvalidToken,
    #[error("Cannot open a GitLab merge request without the repo clone URL")]
    MissingCloneUrl,
    /// The clone URL itself is not quoted: it may carry credentials.
    #[error("Cannot open a GitLab merge request: the repo clone URL is not a valid URL")]
    InvalidCloneUrl,
    /// The job's token was cancelled (watchdog, shutdown) during a request or a wait.
    #[error("Cancelled while opening the pull request")]
    Cancelled,
}

impl PrError {
    pub fn failure_cause(&self) -> FailureCause {
        match self {
            PrError::Github { .. }
            | PrError::GithubNoUrl
            | PrError::Gitlab { .. }
            | PrError::GitlabNoUrl
            | PrError::Network(_)
            | PrError::InvalidToken => FailureCause::Api,
            PrError::MissingCloneUrl | PrError::InvalidCloneUrl => FailureCause::Agent,
            // Whoever cancelled knows why (a watchdog's cause, a shutdown) and reports that;
            // `agent` is what the seed reports for a plain abort reason.
            PrError::Cancelled => FailureCause::Agent,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self, PrError::Cancelled)
    }
}

/// Everything needed to open the pull or merge request of one job.
#[derive(Debug, Clone, Copy)]
pub struct PrRequest<'a> {
    /// `job.githubApiBase`; `None` means `https://api.github.com`. Kept as given, even `""`.
    pub api_base: Option<&'a str>,
    /// `job.repo.provider`: authoritative when set, else inferred from `clone_url`.
    pub provider: Option<Provider>,
    /// The GitLab API base and project path are derived from it.
    pub clone_url: &'a str,
    pub owner: &'a str,
    pub name: &'a str,
    /// The pushed branch.
    pub head: &'a str,
    /// `repo.baseBranch`.
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub token: &'a Secret,
}

/// Opens the pull request (GitHub) or merge request (GitLab) and returns its web URL, or the
/// URL of the one already open for the branch.
pub async fn open_pull_request(
    client: &Client,
    req: &PrRequest<'_>,
    cancel: &CancellationToken,
) -> Result<String, PrError> {
    open_with_policy(client, req, cancel, &RetryPolicy::SEED).await
}

/// The seed's `inferVcsProvider`: a host (with its port) that is `gitlab.com`, starts with
/// `gitlab.` or contains `.gitlab.` is GitLab; anything else, unparseable input included, is
/// GitHub.
pub fn infer_provider(clone_url: &str) -> Provider {
    let Some(host) = Url::parse(clone_url).ok().and_then(|u| host_with_port(&u)) else {
        return Provider::Github;
    };
    let host = host.to_lowercase();
    if host == "gitlab.com" || host.starts_with("gitlab.") || host.contains(".gitlab.") {
        Provider::Gitlab
    } else {
        Provider::Github
    }
}

/// The client to open pull requests with: the harness user agent, bounded connect and request
/// times, and redirects followed only within the same origin, since a custom header such as
/// GitLab's `PRIVATE-TOKEN` would otherwise be forwarded to another host.
pub fn http_client() -> Client {
    client_builder().build().unwrap_or_else(|err| {
        tracing::warn!(error = %err, "HTTP client settings refused, using the defaults");
        Client::new()
    })
}

fn client_builder() -> reqwest::ClientBuilder {
    Client::builder()
        .user_agent(HARNESS_USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .redirect(redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if same_origin && attempt.previous().len() <= 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
}

/// Retry limits for transient answers (seed `withApiRetry`); tests shorten the base.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: usize,
    /// First backoff; doubled per retry up to `max_backoff`.
    base: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
}

impl RetryPolicy {
    const SEED: RetryPolicy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(500),
        max_backoff: Duration::from_millis(4000),
        max_retry_after: Duration::from_millis(8000),
    };

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_factor(2.0)
            .with_max_delay(self.max_backoff)
            .with_max_times(self.attempts.saturating_sub(1))
    }

    /// The wait before the next attempt: the answer's `Retry-After` when it asks for one,
    /// else the backoff plus up to 25 % jitter.
    fn delay(&self, failed: &Failed, backoff: Duration, now: SystemTime) -> Duration {
        let asked = match failed {
            Failed::Status(resp) => resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, now, self.max_retry_after)),
            Failed::Network(_) => None,
        };
        asked.unwrap_or_else(|| backoff + backoff.mul_f64(0.25 * fastrand::f64()))
    }
}

/// `Retry-After` in delay-seconds or HTTP-date form, capped; zero or past values are ignored.
fn retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if !(secs.is_finite() && secs > 0.0) {
            return None;
        }
        return Duration::try_from_secs_f64(secs.min(cap.as_secs_f64())).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).ok()?;
    (!wait.is_zero()).then(|| wait.min(cap))
}

/// An attempt worth retrying; the last one is handed back as is.
enum Failed {
    Status(Response),
    Network(reqwest::Error),
}

impl Failed {
    fn is_retryable(&self) -> bool {
        match self {
            Failed::Status(_) => true,
            // A request that cannot even be built (an invalid API base) fails the same way on
            // every attempt.
            Failed::Network(err) => !err.is_builder(),
        }
    }
}

fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

async fn open_with_policy(
    client: &Client,
    req: &PrRequest<'_>,
    cancel: &CancellationToken,
    policy: &RetryPolicy,
) -> Result<String, PrError> {
    let redactor = Redactor::patterns_only().with_secret(req.token);
    let provider = req
        .provider
        .unwrap_or_else(|| infer_provider(req.clone_url));
    let open = async {
        match provider {
            Provider::Github => open_github(client, req, &redactor, policy).await,
            Provider::Gitlab => open_gitlab(client, req, &redactor, policy).await,
        }
    };
    // Dropping the request future aborts whatever it waits on: a request, a body, a backoff.
    let url = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(PrError::Cancelled),
        url = open => url?,
    };
    tracing::info!(?provider, url = %url, "pull request open");
    Ok(url)
}

async fn open_github(
    client: &Client,
    req: &PrRequest<'_>,
    redactor: &Redactor,
    policy: &RetryPolicy,
) -> Result<String, PrError> {
    let pulls = format!(
        "{}/repos/{}/{}/pulls",
        github_api_base(req.api_base),
        encode_component(req.owner),
        encode_component(req.name)
    );
    let auth = sensitive_value(&format!("Bearer {}", req.token.expose()))?;
    let headers = |builder: RequestBuilder| {
        builder
            .header(AUTHORIZATION, auth.clone())
            .header(ACCEPT, "application/vnd.github+json")
            .header(USER_AGENT, HARNESS_USER_AGENT)
            .header(GITHUB_VERSION_HEADER, GITHUB_API_VERSION)
    };
    let payload = json!({"title": req.title, "head": req.head, "base": req.base, "body": req.body});
    let resp = send_with_retry(
        || headers(client.post(&pulls)).json(&payload),
        policy,
        redactor,
    )
    .await?;
    let status = resp.status();
    if status.is_success() {
        let body = success_body(resp, redactor).await?;
        return url_field(&body, "html_url").ok_or(PrError::GithubNoUrl);
    }
    let text = resp.text().await.unwrap_or_default();
    if status == StatusCode::UNPROCESSABLE_ENTITY
        && text.to_lowercase().contains("pull request already exists")
    {
        let head = format!("{}:{}", req.owner, req.head);
        let lookup = headers(client.get(&pulls)).query(&[
            ("head", head.as_str()),
            ("base", req.base),
            ("state", "open"),
        ]);
        if let Some(url) = first_listed_url(lookup, "html_url").await {
            return Ok(url);
        }
    }
    Err(PrError::Github {
        status: status.as_u16(),
        body: excerpt(&text, redactor),
    })
}

async fn open_gitlab(
    client: &Client,
    req: &PrRequest<'_>,
    redactor: &Redactor,
    policy: &RetryPolicy,
) -> Result<String, PrError> {
    let (api_base, project) = gitlab_target(req.clone_url)?;
    let merge_requests = format!("{api_base}/projects/{project}/merge_requests");
    let token = sensitive_value(req.token.expose())?;
    let headers = |builder: RequestBuilder| {
        builder
            .header(PRIVATE_TOKEN, token.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, HARNESS_USER_AGENT)
    };
    let payload = json!({
        "source_branch": req.head,
        "target_branch": req.base,
        "title": req.title,
        "description": req.body,
    });
    let resp = send_with_retry(
        || headers(client.post(&merge_requests)).json(&payload),
        policy,
        redactor,
    )
    .await?;
    let status = resp.status();
    if status.is_success() {
        let body = success_body(resp, redactor).await?;
        return url_field(&body, "web_url").ok_or(PrError::GitlabNoUrl);
    }
    let text = resp.text().await.unwrap_or_default();
    let lowered = text.to_lowercase();
    if matches!(status, StatusCode::CONFLICT | StatusCode::BAD_REQUEST)
        && (lowered.contains("already exists") || lowered.contains("open merge request"))
    {
        let lookup = headers(client.get(&merge_requests)).query(&[
            ("source_branch", req.head),
            ("target_branch", req.base),
            ("state", "opened"),
        ]);
        if let Some(url) = first_listed_url(lookup, "web_url").await {
            return Ok(url);
        }
    }
    Err(PrError::Gitlab {
        status: status.as_u16(),
        body: excerpt(&text, redactor),
    })
}

/// Sends with retries on 5xx, 429 and network errors. After the last attempt a transient
/// answer is returned like any other, so the caller quotes its status.
async fn send_with_retry(
    make: impl Fn() -> RequestBuilder,
    policy: &RetryPolicy,
    redactor: &Redactor,
) -> Result<Response, PrError> {
    let make = &make;
    let attempt = move || async move {
        match make().send().await {
            Ok(resp) if is_transient(resp.status()) => Err(Failed::Status(resp)),
            Ok(resp) => Ok(resp),
            Err(err) => Err(Failed::Network(err)),
        }
    };
    let mut retry = 0u32;
    let outcome = attempt
        .retry(policy.backoff())
        .when(Failed::is_retryable)
        .adjust(|failed, next| next.map(|backoff| policy.delay(failed, backoff, SystemTime::now())))
        .notify(|failed, wait| {
            retry += 1;
            match failed {
                Failed::Status(resp) => tracing::warn!(
                    retry,
                    status = resp.status().as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    "transient API answer, retrying"
                ),
                Failed::Network(err) => tracing::warn!(
                    retry,
                    error = %redactor.redact(&error_chain(err)),
                    wait_ms = wait.as_millis() as u64,
                    "API request failed, retrying"
                ),
            }
        })
        .await;
    match outcome {
        Ok(resp) | Err(Failed::Status(resp)) => Ok(resp),
        Err(Failed::Network(err)) => {
            let message = error_chain(&err);
            let message = if message.is_empty() {
                NETWORK_FALLBACK.to_owned()
            } else {
                redactor.redact(&message)
            };
            Err(PrError::Network(message))
        }
    }
}

/// The JSON of a 2xx answer; a body that is not JSON simply has no URL in it.
async fn success_body(resp: Response, redactor: &Redactor) -> Result<Value, PrError> {
    let text = resp
        .text()
        .await
        .map_err(|err| PrError::Network(redactor.redact(&error_chain(&err))))?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The lookup after an "already exists" answer: no retry, and any failure falls through to
/// the caller's error.
async fn first_listed_url(lookup: RequestBuilder, field: &str) -> Option<String> {
    let resp = lookup.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let list: Value = resp.json().await.ok()?;
    url_field(list.as_array()?.first()?, field)
}

fn url_field(body: &Value, field: &str) -> Option<String> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
}

/// Redacted before it is cut, so a token straddling the cut cannot leak in part.
fn excerpt(text: &str, redactor: &Redactor) -> String {
    head_chars(&redactor.redact(text), BODY_EXCERPT_CHARS).to_owned()
}

/// An error with its sources, since reqwest's own text omits the cause ("connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn sensitive_value(value: &str) -> Result<HeaderValue, PrError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| PrError::InvalidToken)?;
    value.set_sensitive(true);
    Ok(value)
}

fn github_api_base(api_base: Option<&str>) -> &str {
    api_base.unwrap_or(GITHUB_API)
}

/// The GitLab REST base (`<scheme>://<host>/api/v4`) and the URL-encoded project path of a
/// clone URL; the whole namespace path is encoded, so subgroups survive.
fn gitlab_target(clone_url: &str) -> Result<(String, String), PrError> {
    if clone_url.trim().is_empty() {
        return Err(PrError::MissingCloneUrl);
    }
    let url = Url::parse(clone_url).map_err(|_| PrError::InvalidCloneUrl)?;
    let host = host_with_port(&url).ok_or(PrError::InvalidCloneUrl)?;
    let path = url.path().trim_start_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    Ok((
        format!("{}://{host}/api/v4", url.scheme()),
        encode_component(path),
    ))
}

/// The URL's host with its port when it is not the scheme's default (JavaScript's `url.host`).
fn host_with_port(url: &Url) -> Option<String> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// JavaScript's `encodeURIComponent`.
fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod stub {
    //! A loopback HTTP/1.1 server that answers from a script and records every request.

    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    #[derive(Debug, Clone)]
    pub struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        mode: Mode,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Mode {
        Answer,
        Hang,
        Close,
    }

    impl Reply {
        pub fn json(status: u16, body: serde_json::Value) -> Self {
            Self::text(status, &body.to_string())
        }

        pub fn text(status: u16, body: &str) -> Self {
            Reply {
                status,
                headers: Vec::new(),
                body: body.to_owned(),
                mode: Mode::Answer,
            }
        }

        /// Never answers.
        pub fn hang() -> Self {
            Reply {
                mode: Mode::Hang,
                ..Self::text(200, "")
            }
        }

        /// Closes the connection without an answer: a network error for the client.
        pub fn close() -> Self {
            Reply {
                mode: Mode::Close,
                ..Self::text(200, "")
            }
        }

        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }
    }

    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: String,
        /// Path and query, as sent.
        pub target: String,
        pub headers: Vec<(String, String)>,
        pub body: String,
        pub at: Instant,
    }

    impl Recorded {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap()
        }
    }

    pub struct Stub {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<Recorded>>>,
        arrivals: mpsc::UnboundedReceiver<Recorded>,
        task: JoinHandle<()>,
    }

    impl Stub {
        /// Answers request n with `script[n]`; the last reply repeats for ever.
        pub async fn start(script: Vec<Reply>) -> Stub {
            assert!(!script.is_empty());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (tx, arrivals) = mpsc::unbounded_channel();
            let recorded = Arc::clone(&requests);
            let task = tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    let (script, recorded, tx) =
                        (script.clone(), Arc::clone(&recorded), tx.clone());
                    tokio::spawn(serve(sock, script, recorded, tx));
                }
            });
            Stub {
                addr,
                requests,
                arrivals,
                task,
            }
        }

        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        pub fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }

        pub async fn next_request(&mut self) -> Recorded {
            self.arrivals.recv().await.unwrap()
        }
    }

    impl Drop for Stub {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve(
        mut sock: TcpStream,
        script: Vec<Reply>,
        recorded: Arc<Mutex<Vec<Recorded>>>,
        tx: mpsc::UnboundedSender<Recorded>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        let request = Recorded {
            method,
            target,
            headers,
            body,
            at: Instant::now(),
        };
        let reply = {
            let mut all = recorded.lock().unwrap();
            all.push(request.clone());
            script[(all.len() - 1).min(script.len() - 1)].clone()
        };
        let _ = tx.send(request);
        match reply.mode {
            Mode::Answer => {}
            Mode::Hang => std::future::pending::<()>().await,
            Mode::Close => return,
        }
        let mut out = format!(
            "HTTP/1.1 {} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&reply.body);
        let _ = sock.write_all(out.as_bytes()).await;
        let _ = sock.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, UNIX_EPOCH};

    use backon::BackoffBuilder;

    use super::stub::{Reply, Stub};
    use super::*;

    const FAST: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(1),
        ..RetryPolicy::SEED
    };

    fn github<'a>(api_base: &'a str, token: &'a Secret) -> PrRequest<'a> {
        PrRequest {
            api_base: Some(api_base),
            provider: None,
            clone_url: "https://github.com/o/r.git",
            owner: "o",
            name: "r",
            head: "feature",
            base: "main",
            title: "T",
            body: "B",
            token,
        }
    }

    /// A client that sends requests for `host` to the stub, so host-based inference runs on
    /// realistic names.
    fn client_resolving(host: &str, stub: &Stub) -> Client {
        client_builder().resolve(host, stub.addr()).build().unwrap()
    }

    async fn open(req: &PrRequest<'_>, policy: &RetryPolicy) -> Result<String, PrError> {
        open_with_policy(&http_client(), req, &CancellationToken::new(), policy).await
    }

    #[test]
    fn detects_gitlab_from_the_clone_url_host_including_self_managed() {
        for url in [
            "https://gitlab.com/group/proj.git",
            "https://gitlab.example.com/group/proj.git",
            "https://code.gitlab.example.com/group/proj.git",
        ] {
            assert_eq!(infer_provider(url), Provider::Gitlab, "{url}");
        }
    }

    #[test]
    fn defaults_to_github_for_enterprise_hosts_and_unparseable_input() {
        for url in [
            "https://github.com/o/r.git",
            "https://github.acme.com/o/r.git",
            "not a url",
            "",
            "https://mygitlab.com/o/r.git",
        ] {
            assert_eq!(infer_provider(url), Provider::Github, "{url}");
        }
    }

    #[test]
    fn derives_the_gitlab_rest_base_from_the_clone_url_host() {
        let (base, _) = gitlab_target("https://gitlab.com/group/proj.git").unwrap();
        assert_eq!(base, "https://gitlab.com/api/v4");
        let (base, _) = gitlab_target("https://gitlab.example.com/group/proj.git").unwrap();
        assert_eq!(base, "https://gitlab.example.com/api/v4");
        let (base, _) = gitlab_target("https://u:p@gitlab.example.com:8443/g/p.git").unwrap();
        assert_eq!(base, "https://gitlab.example.com:8443/api/v4");
    }

    #[test]
    fn url_encodes_the_full_gitlab_namespace_path_so_subgroups_survive() {
        let (_, project) = gitlab_target("https://gitlab.com/group/sub/proj.git").unwrap();
        assert_eq!(project, "group%2Fsub%2Fproj");
        let (_, project) = gitlab_target("https://gitlab.com/group/proj").unwrap();
        assert_eq!(project, "group%2Fproj");
    }

    #[test]
    fn encodes_components_like_javascript() {
        assert_eq!(
            encode_component("a b/c:d~e*'()é"),
            "a%20b%2Fc%3Ad~e*'()%C3%A9"
        );
    }

    #[test]
    fn the_default_github_api_base_is_api_github_com_and_an_empty_one_is_kept() {
        assert_eq!(github_api_base(None), "https://api.github.com");
        assert_eq!(github_api_base(Some("")), "");
    }

    #[tokio::test]
    async fn opens_a_gitlab_merge_request_for_a_gitlab_clone_url() {
        let stub = Stub::start(vec![Reply::json(
            201,
            json!({"web_url": "https://gitlab.example.test/group/proj/-/merge_requests/3"}),
        )])
        .await;
        let token = Secret::new("glpat-x");
        let clone_url = format!(
            "http://gitlab.example.test:{}/group/proj.git",
            stub.addr().port()
        );
        let req = PrRequest {
            clone_url: &clone_url,
            ..github("http://unused.invalid", &token)
        };
        let client = client_resolving("gitlab.example.test", &stub);
        let url = open_pull_request(&client, &req, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            url,
            "https://gitlab.example.test/group/proj/-/merge_requests/3"
        );
        let sent = stub.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(
            sent[0].target,
            "/api/v4/projects/group%2Fproj/merge_requests"
        );
        assert_eq!(sent[0].header("private-token"), Some("glpat-x"));
        assert_eq!(sent[0].header("authorization"), None);
        assert_eq!(sent[0].header("accept"), Some("application/json"));
        assert_eq!(sent[0].header("content-type"), Some("application/json"));
        assert_eq!(sent[0].header("user-agent"), Some("executor-harness"));
        assert_eq!(
            sent[0].json(),
            json!({"source_branch": "feature", "target_branch": "main", "title": "T", "description": "B"})
        );
    }

    #[tokio::test]
    async fn returns_the_existing_merge_request_when_one_already_exists() {
        let stub = Stub::start(vec![
            Reply::json(
                409,
                json!({"message": ["another open merge request already exists"]}),
            ),
            Reply::json(
                200,
                json!([{"web_url": "https://gitlab.example.test/g/p/-/merge_requests/9"}]),
            ),
        ])
        .await;
        let token = Secret::new("glpat-x");
        let clone_url = format!(
            "http://gitlab.example.test:{}/group/proj.git",
            stub.addr().port()
        );
        let req = PrRequest {
            clone_url: &clone_url,
            ..github("http://unused.invalid", &token)
        };
        let client = client_resolving("gitlab.example.test", &stub);
        let url = open_pull_request(&client, &req, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(url, "https://gitlab.example.test/g/p/-/merge_requests/9");
        let sent = stub.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].method, "GET");
        assert_eq!(
            sent[1].target,
            "/api/v4/projects/group%2Fproj/merge_requests?source_branch=feature&target_branch=main&state=opened"
        );
        assert_eq!(sent[1].header("private-token"), Some("glpat-x"));
        assert_eq!(sent[1].header("content-type"), None);
    }

    #[tokio::test]
    async fn a_gitlab_400_naming_an_open_merge_request_is_recovered_too() {
        let stub = Stub::start(vec![
            Reply::json(
                400,
                json!({"message": ["Another open merge request for this branch"]}),
            ),
            Reply::json(200, json!([{"web_url": "https://gl/mr/4"}])),
        ])
        .await;
        let token = Secret::new("glpat-x");
        let clone_url = format!("{}/team/proj.git", stub.url());
        let req = PrRequest {
            clone_url: &clone_url,
            provider: Some(Provider::Gitlab),
            ..github("http://unused.invalid", &token)
        };
        assert_eq!(open(&req, &FAST).await.unwrap(), "https://gl/mr/4");
        assert_eq!(stub.requests().len(), 2);
    }

    #[tokio::test]
    async fn opens_a_github_pull_request_for_a_github_clone_url() {
        let stub = Stub::start(vec![Reply::json(
            201,
            json!({"html_url": "https://github.com/o/r/pull/5"}),
        )])
        .await;
        let token = Secret::new("ghp_x");
        let url = open(&github(&stub.url(), &token), &RetryPolicy::SEED)
            .await
            .unwrap();
        assert_eq!(url, "https://github.com/o/r/pull/5");
        let sent = stub.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(sent[0].target, "/repos/o/r/pulls");
        assert_eq!(sent[0].header("authorization"), Some("Bearer ghp_x"));
        assert_eq!(
            sent[0].header("accept"),
            Some("application/vnd.github+json")
        );
        assert_eq!(sent[0].header("x-github-api-version"), Some("2022-11-28"));
        assert_eq!(sent[0].header("content-type"), Some("application/json"));
        assert_eq!(sent[0].header("user-agent"), Some("executor-harness"));
        assert_eq!(sent[0].header("private-token"), None);
        assert_eq!(
            sent[0].json(),
            json!({"title": "T", "head": "feature", "base": "main", "body": "B"})
        );
    }

    #[tokio::test]
    async fn opens_a_merge_request_when_the_provider_is_set_even_for_a_host_inference_misses() {
        let stub = Stub::start(vec![Reply::json(
            201,
            json!({"web_url": "https://git.acme.test/mr/1"}),
        )])
        .await;
        let token = Secret::new("glpat-x");
        let clone_url = format!("http://git.acme.test:{}/team/proj.git", stub.addr().port());
        assert_eq!(infer_provider(&clone_url), Provider::Github);
        let req = PrRequest {
            clone_url: &clone_url,
            provider: Some(Provider::Gitlab),
            ..github("http://unused.invalid", &token)
        };
        let client = client_resolving("git.acme.test", &stub);
        let url = open_pull_request(&client, &req, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(url, "https://git.acme.test/mr/1");
        let sent = stub.requests();
        assert_eq!(
            sent[0].target,
            "/api/v4/projects/team%2Fproj/merge_requests"
        );
        let host = format!("git.acme.test:{}", stub.addr().port());
        assert_eq!(sent[0].header("host"), Some(host.as_str()));
        assert_eq!(sent[0].header("private-token"), Some("glpat-x"));
    }

    #[tokio::test]
    async fn opens_a_github_pull_request_when_the_provider_is_github_even_for_a_gitlab_host() {
        let stub = Stub::start(vec![Reply::json(
            201,
            json!({"html_url": "https://github.com/o/r/pull/6"}),
        )])
        .await;
        let token = Secret::new("ghp_x");
        let api = stub.url();
        let req = PrRequest {
            clone_url: "https://gitlab.com/o/r.git",
            provider: Some(Provider::Github),
            ..github(&api, &token)
        };
        assert_eq!(
            open(&req, &FAST).await.unwrap(),
            "https://github.com/o/r/pull/6"
        );
        let sent = stub.requests();
        assert_eq!(sent[0].target, "/repos/o/r/pulls");
        assert_eq!(sent[0].header("authorization"), Some("Bearer ghp_x"));
        assert_eq!(sent[0].header("private-token"), None);
    }

    #[tokio::test]
    async fn retries_a_503_after_the_500_ms_backoff_and_then_succeeds() {
        let stub = Stub::start(vec![
            Reply::text(503, "unavailable"),
            Reply::json(201, json!({"html_url": "https://github.com/o/r/pull/11"})),
        ])
        .await;
        let token = Secret::new("ghp_x");
        let url = open(&github(&stub.url(), &token), &RetryPolicy::SEED)
            .await
            .unwrap();
        assert_eq!(url, "https://github.com/o/r/pull/11");
        let sent = stub.requests();
        assert_eq!(sent.len(), 2);
        let gap = sent[1].at - sent[0].at;
        assert!(gap >= Duration::from_millis(500), "{gap:?}");
        assert!(gap < Duration::from_millis(1000), "{gap:?}");
    }

    #[tokio::test]
    async fn honours_a_429_retry_after_in_seconds_before_retrying() {
        let stub = Stub::start(vec![
            Reply::text(429, "slow down").header("retry-after", "1"),
            Reply::json(201, json!({"html_url": "https://github.com/o/r/pull/12"})),
        ])
        .await;
        let token = Secret::new("ghp_x");
        let url = open(&github(&stub.url(), &token), &RetryPolicy::SEED)
            .await
            .unwrap();
        assert_eq!(url, "https://github.com/o/r/pull/12");
        let sent = stub.requests();
        assert_eq!(sent.len(), 2);
        // The backoff alone would have waited at most 625 ms.
        let gap = sent[1].at - sent[0].at;
        assert!(gap >= Duration::from_millis(1000), "{gap:?}");
        assert!(gap < Duration::from_millis(1500), "{gap:?}");
    }

    #[tokio::test]
    async fn fails_with_the_seed_text_and_cause_api_after_three_5xx_answers() {
        let stub = Stub::start(vec![Reply::text(500, "boom")]).await;
        let token = Secret::new("ghp_x");
        let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
        assert_eq!(err.to_string(), "Failed to open PR (HTTP 500): boom");
        assert_eq!(err.failure_cause(), FailureCause::Api);
        assert_eq!(stub.requests().len(), 3);
    }

    #[tokio::test]
    async fn honours_an_http_date_retry_after_before_retrying() {
        // A whole second in the date, so the wait is between 2 and 3 s.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(now.as_secs() + 3);
        let stub = Stub::start(vec![
            Reply::text(503, "busy").header("retry-after", &httpdate::fmt_http_date(at)),
            Reply::json(201, json!({"html_url": "https://github.com/o/r/pull/13"})),
        ])
        .await;
        let token = Secret::new("ghp_x");
        let url = open(&github(&stub.url(), &token), &RetryPolicy::SEED)
            .await
            .unwrap();
        assert_eq!(url, "https://github.com/o/r/pull/13");
        let sent = stub.requests();
        assert_eq!(sent.len(), 2);
        let gap = sent[1].at - sent[0].at;
        assert!(gap >= Duration::from_millis(1900), "{gap:?}");
        assert!(gap < Duration::from_millis(3500), "{gap:?}");
    }

    #[tokio::test]
    async fn does_not_retry_a_422_already_exists_but_returns_the_existing_pull_request() {
        let stub = Stub::start(vec![
            Reply::json(
                422,
                json!({"message": "A pull request already exists for o:feature."}),
            ),
            Reply::json(200, json!([{"html_url": "https://github.com/o/r/pull/13"}])),
        ])
        .await;
        let token = Secret::new("ghp_x");
        let url = open(&github(&stub.url(), &token), &FAST).await.unwrap();
        assert_eq!(url, "https://github.com/o/r/pull/13");
        let sent = stub.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(sent[1].method, "GET");
        assert_eq!(
            sent[1].target,
            "/repos/o/r/pulls?head=o%3Afeature&base=main&state=open"
        );
        assert_eq!(sent[1].header("authorization"), Some("Bearer ghp_x"));
        assert_eq!(
            sent[1].header("accept"),
            Some("application/vnd.github+json")
        );
        assert_eq!(sent[1].header("content-type"), None);
    }

    #[tokio::test]
    async fn an_already_exists_answer_whose_lookup_finds_nothing_reports_the_original_answer() {
        let stub = Stub::start(vec![
            Reply::json(
                422,
                json!({"message": "A pull request already exists for o:feature."}),
            ),
            Reply::json(200, json!([])),
        ])
        .await;
        let token = Secret::new("ghp_x");
        let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Failed to open PR (HTTP 422): {"message":"A pull request already exists for o:feature."}"#
        );
        assert_eq!(err.failure_cause(), FailureCause::Api);
        assert_eq!(stub.requests().len(), 2);
    }

    #[tokio::test]
    async fn cancellation_mid_backoff_ends_the_call_without_further_attempts() {
        let mut stub = Stub::start(vec![Reply::text(503, "unavailable")]).await;
        let token = Secret::new("ghp_x");
        let api = stub.url();
        let cancel = CancellationToken::new();
        let call = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let req = github(&api, &token);
                open_with_policy(&http_client(), &req, &cancel, &RetryPolicy::SEED).await
            })
        };
        stub.next_request().await;
        let cancelled_at = Instant::now();
        cancel.cancel();
        let err = call.await.unwrap().unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        assert!(cancelled_at.elapsed() < Duration::from_millis(400));
        assert_eq!(stub.requests().len(), 1);
    }

    #[tokio::test]
    async fn cancellation_during_a_request_ends_the_call() {
        let mut stub = Stub::start(vec![Reply::hang()]).await;
        let token = Secret::new("ghp_x");
        let api = stub.url();
        let cancel = CancellationToken::new();
        let call = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                open_pull_request(&http_client(), &github(&api, &token), &cancel).await
            })
        };
        stub.next_request().await;
        cancel.cancel();
        assert!(call.await.unwrap().unwrap_err().is_cancelled());
    }

    #[tokio::test]
    async fn an_already_cancelled_job_sends_nothing() {
        let stub = Stub::start(vec![Reply::json(201, json!({"html_url": "u"}))]).await;
        let token = Secret::new("ghp_x");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = open_pull_request(&http_client(), &github(&stub.url(), &token), &cancel)
            .await
            .unwrap_err();
        assert!(err.is_cancelled());
        assert!(stub.requests().is_empty());
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried_and_quotes_the_first_300_chars_of_the_body() {
        let body = "x".repeat(400);
        let stub = Stub::start(vec![Reply::text(404, &body)]).await;
        let token = Secret::new("ghp_x");
        let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Failed to open PR (HTTP 404): {}", "x".repeat(300))
        );
        assert_eq!(stub.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_success_without_a_url_is_an_api_failure() {
        let stub = Stub::start(vec![Reply::json(201, json!({"number": 5}))]).await;
        let token = Secret::new("ghp_x");
        let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
        assert_eq!(err.to_string(), "GitHub did not return a PR url");
        assert_eq!(err.failure_cause(), FailureCause::Api);

        let stub = Stub::start(vec![Reply::text(201, "not json")]).await;
        let clone_url = format!("{}/g/p.git", stub.url());
        let req = PrRequest {
            clone_url: &clone_url,
            provider: Some(Provider::Gitlab),
            ..github("http://unused.invalid", &token)
        };
        let err = open(&req, &FAST).await.unwrap_err();
        assert_eq!(err.to_string(), "GitLab did not return a merge request url");
        assert_eq!(err.failure_cause(), FailureCause::Api);
    }

    #[tokio::test]
    async fn a_gitlab_failure_quotes_the_seed_text() {
        let stub = Stub::start(vec![Reply::json(403, json!({"message": "403 Forbidden"}))]).await;
        let token = Secret::new("glpat-x");
        let clone_url = format!("{}/g/p.git", stub.url());
        let req = PrRequest {
            clone_url: &clone_url,
            provider: Some(Provider::Gitlab),
            ..github("http://unused.invalid", &token)
        };
        let err = open(&req, &FAST).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Failed to open merge request (HTTP 403): {"message":"403 Forbidden"}"#
        );
        assert_eq!(err.failure_cause(), FailureCause::Api);
        assert_eq!(stub.requests().len(), 1);
    }

    #[tokio::test]
    async fn gitlab_without_a_usable_clone_url_is_an_agent_failure() {
        let token = Secret::new("glpat-x");
        for (clone_url, text) in [
            (
                "",
                "Cannot open a GitLab merge request without the repo clone URL",
            ),
            (
                "git@gitlab.com:g/p.git",
                "Cannot open a GitLab merge request: the repo clone URL is not a valid URL",
            ),
        ] {
            let req = PrRequest {
                clone_url,
                provider: Some(Provider::Gitlab),
                ..github("http://unused.invalid", &token)
            };
            let err = open(&req, &FAST).await.unwrap_err();
            assert_eq!(err.to_string(), text);
            assert_eq!(err.failure_cause(), FailureCause::Agent);
        }
    }

    #[tokio::test]
    async fn an_exhausted_network_error_is_an_api_failure_after_three_attempts() {
        let stub = Stub::start(vec![Reply::close()]).await;
        let token = Secret::new("ghp_x");
        let err = open(&github(&stub.url(), &token), &FAST).await.unwrap_err();
        assert!(matches!(err, PrError::Network(_)), "{err:?}");
        assert!(err.to_string().contains(&stub.url()), "{err}");
        assert_eq!(err.failure_cause(), FailureCause::Api);
        assert_eq!(stub.requests().len(), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_api_failure_naming_the_cause() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let token = Secret::new("ghp_x");
        let err = open(&github(&api, &token), &FAST).await.unwrap_err();
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
        assert_eq!(err.failure_cause(), FailureCause::Api);
    }

    #[tokio::test]
    async fn an_empty_api_base_fails_as_an_api_error_without_retrying() {
        let token = Secret::new("ghp_x");
        let started = Instant::now();
        let err = open(&github("", &token), &RetryPolicy::SEED)
            .await
            .unwrap_err();
        assert!(matches!(err, PrError::Network(_)), "{err:?}");
        assert_eq!(err.failure_cause(), FailureCause::Api);
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_not_followed_so_the_token_stays_home() {
        let elsewhere = Stub::start(vec![Reply::json(
            201,
            json!({"web_url": "https://evil/mr"}),
        )])
        .await;
        let location = format!("{}/api/v4/projects/g%2Fp/merge_requests", elsewhere.url());
        let stub = Stub::start(vec![Reply::text(307, "").header("location", &location)]).await;
        let token = Secret::new("glpat-x");
        let clone_url = format!("{}/g/p.git", stub.url());
        let req = PrRequest {
            clone_url: &clone_url,
            provider: Some(Provider::Gitlab),
            ..github("http://unused.invalid", &token)
        };
        let err = open(&req, &FAST).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Failed to open merge request (HTTP 307)"),
            "{err}"
        );
        assert!(elsewhere.requests().is_empty());
    }

    #[tokio::test]
    async fn no_error_text_contains_the_token() {
        let secret = "s3cr3t-token-value";
        let token = Secret::new(secret);
        let echo = format!("bad credentials {secret} (Bearer {secret}, private-token: {secret})");
        let cases = [
            Reply::text(401, &echo),
            Reply::text(500, &echo),
            Reply::text(422, &format!("pull request already exists {secret}")),
            Reply::text(409, &format!("merge request already exists {secret}")),
        ];
        for reply in cases {
            for provider in [Provider::Github, Provider::Gitlab] {
                let stub = Stub::start(vec![reply.clone()]).await;
                let api = stub.url();
                let clone_url = format!("{api}/g/p.git");
                let req = PrRequest {
                    clone_url: &clone_url,
                    provider: Some(provider),
                    ..github(&api, &token)
                };
                let err = open(&req, &FAST).await.unwrap_err();
                let shown = format!("{err} {err:?}");
                assert!(!shown.contains(secret), "{shown}");
                assert!(shown.contains("***"), "{shown}");
            }
        }
        let err = open(&github("http://127.0.0.1:1", &token), &FAST)
            .await
            .unwrap_err();
        assert!(!format!("{err} {err:?}").contains(secret));
    }

    #[test]
    fn the_backoff_doubles_from_500_ms_and_is_capped_at_4_s() {
        let seed: Vec<Duration> = RetryPolicy::SEED.backoff().build().collect();
        assert_eq!(
            seed,
            [Duration::from_millis(500), Duration::from_millis(1000)]
        );
        let longer = RetryPolicy {
            attempts: 7,
            ..RetryPolicy::SEED
        };
        let millis: Vec<u128> = longer.backoff().build().map(|d| d.as_millis()).collect();
        assert_eq!(millis, [500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[tokio::test]
    async fn the_backoff_gets_up_to_25_percent_jitter_when_no_retry_after_is_given() {
        let failed = Failed::Network(
            reqwest::Client::new()
                .get("not a url")
                .send()
                .await
                .unwrap_err(),
        );
        let base = Duration::from_millis(1000);
        let waits: Vec<Duration> = (0..200)
            .map(|_| RetryPolicy::SEED.delay(&failed, base, SystemTime::now()))
            .collect();
        assert!(waits.iter().all(|w| *w >= base && *w <= base.mul_f64(1.25)));
        assert!(waits.iter().any(|w| *w != waits[0]), "no jitter at all");
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date_capped_at_8_s() {
        let now = SystemTime::now();
        let cap = Duration::from_millis(8000);
        assert_eq!(retry_after("1", now, cap), Some(Duration::from_secs(1)));
        assert_eq!(
            retry_after(" 2.5 ", now, cap),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(retry_after("120", now, cap), Some(cap));
        assert_eq!(retry_after("1e300", now, cap), Some(cap));
        let in_five = UNIX_EPOCH + Duration::from_secs(1_000_005);
        let date = httpdate::fmt_http_date(in_five);
        let base = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(retry_after(&date, base, cap), Some(Duration::from_secs(5)));
        let far = httpdate::fmt_http_date(base + Duration::from_secs(600));
        assert_eq!(retry_after(&far, base, cap), Some(cap));
    }

    #[test]
    fn retry_after_ignores_zero_negative_past_and_garbage_values() {
        let base = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cap = Duration::from_millis(8000);
        let past = httpdate::fmt_http_date(base - Duration::from_secs(5));
        for value in ["0", "-3", "NaN", "soon", "", &past] {
            assert_eq!(retry_after(value, base, cap), None, "{value:?}");
        }
    }
}
