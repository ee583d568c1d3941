//! The endpoint over real sockets: methods, query strings, unknown paths, concurrent scrapes,
//! a client that never sends its request, and the stop.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

struct Running {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: ServeLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, metrics.clone(), limits, stop.clone()));
    Running {
        addr,
        metrics,
        stop,
        task,
    }
}

/// Sends `method path` with `Connection: close` and returns the raw answer.
async fn exchange(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").unwrap().1
}

#[tokio::test]
async fn get_serves_metrics_health_and_readiness_and_a_query_string_is_ignored() {
    let s = start(ServeLimits::default()).await;
    let metrics = exchange(s.addr, "GET", "/metrics?x=1").await;
    assert_eq!(status(&metrics), 200, "{metrics}");
    assert!(body(&metrics).contains("harness_jobs_finished_total"));
    let health = exchange(s.addr, "GET", "/healthz").await;
    assert_eq!(status(&health), 200);
    assert!(body(&health).contains("\"status\":\"ok\""), "{health}");
    assert_eq!(status(&exchange(s.addr, "GET", "/readyz").await), 503);
    s.metrics.set_ready(true);
    let ready = exchange(s.addr, "GET", "/readyz?verbose").await;
    assert_eq!(status(&ready), 200);
    assert!(body(&ready).starts_with("ready"), "{ready}");
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn head_answers_without_a_body_and_other_methods_get_405_with_allow() {
    let s = start(ServeLimits::default()).await;
    let head = exchange(s.addr, "HEAD", "/metrics").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(body(&head), "", "no body for HEAD");
    for method in ["POST", "PUT", "DELETE"] {
        let answer = exchange(s.addr, method, "/metrics").await;
        assert_eq!(status(&answer), 405, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("allow: get, head"),
            "{answer}"
        );
    }
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unknown_path_is_404() {
    let s = start(ServeLimits::default()).await;
    for path in ["/", "/metricsx", "/metrics/", "/nope?metrics"] {
        assert_eq!(status(&exchange(s.addr, "GET", path).await), 404, "{path}");
    }
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn concurrent_scrapes_all_get_the_whole_exposition() {
    let s = start(ServeLimits {
        max_connections: 4,
        ..ServeLimits::default()
    })
    .await;
    let mut scrapes = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let addr = s.addr;
        scrapes.spawn(async move { exchange(addr, "GET", "/metrics").await });
    }
    while let Some(answer) = scrapes.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(status(&answer), 200);
        assert!(body(&answer).contains("harness_build_info"));
    }
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_dropped_and_frees_its_connection() {
    // One connection at a time: the silent client must be cut off for the next to be served.
    let s = start(ServeLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(200),
    })
    .await;
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let served = exchange(s.addr, "GET", "/healthz").await;
    assert_eq!(status(&served), 200);
    let mut rest = Vec::new();
    // The server closed it: EOF (or a reset), not a hang.
    let _ = silent.read_to_end(&mut rest).await;
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn stop_ends_the_server_with_an_idle_keep_alive_connection_open() {
    let s = start(ServeLimits::default()).await;
    let mut sock = TcpStream::connect(s.addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}
