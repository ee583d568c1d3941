//! Retries: which answers are retried, how long each wait is (backoff, jitter, `Retry-After`)
//! and what is reported once the attempts run out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::BackoffBuilder;
use serde_json::json;

use super::{github, open, FAST};
use crate::forge::retry::RetryPolicy;
use crate::forge::PrError;
use crate::http_retry::{retry_after, Failed};
use crate::http_stub::{Reply, Stub};
use crate::job::outcome::FailureCause;
use crate::redact::Secret;

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
