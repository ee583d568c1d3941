//! The broker side of `scripts/bench.sh`: publishes jobs and reports when each was published
//! and when each of its events arrived, as wall-clock times the benchmark can compare with the
//! agent's own timestamps.
//!
//! Reads `AMQP_URL`; declares the worker's topology (so the jobs queue exists before the worker
//! does); binds a private queue to the events exchange. Then, for each line on stdin (a job
//! file's path) it publishes that job (persistent, confirmed, as `enqueue`), and prints one JSON
//! line per happening on stdout: `{"ev":"ready"}`, `{"ev":"published","id","t","confirmed"}`,
//! `{"ev":"<type>","id","t"}` per event (with `"body"` for results and follow-ups), times in
//! seconds since the epoch. Ends at the end of stdin.
//!
//! ```sh
//! cargo build --release --example bench_probe
//! ```

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use executor_harness::broker;
use executor_harness::config::Config;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One line per call, whole: the reader splits on newlines.
fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL")?;
    let config = Config::default();
    let topo = executor_harness::worker::topology(&config);
    let conn = broker::connect(&url, "bench probe", 30).await?;
    broker::declare_topology(&conn, &topo).await?;

    let channel = conn.create_channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?
        .name()
        .clone();
    channel
        .queue_bind(
            queue.clone(),
            topo.events_exchange.as_str().into(),
            "job.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue,
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let t = now();
            let props = &delivery.properties;
            let id = props
                .correlation_id()
                .as_ref()
                .map_or_else(String::new, |s| s.to_string());
            let kind = delivery.routing_key.to_string();
            let mut line = json!({"ev": kind, "id": id, "t": t});
            // Progress is the bulk of the traffic and needs only its arrival time.
            if kind != "job.progress" {
                line["body"] = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
            }
            emit(&line);
        }
        emit(&json!({"ev": "consumer-ended", "t": now()}));
    });
    emit(&json!({"ev": "ready", "t": now()}));

    let confirm = Duration::from_millis(config.amqp.confirm_timeout_ms);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(path) = lines.next_line().await? {
        let path = path.trim();
        if path.is_empty() {
            continue;
        }
        let body = std::fs::read(path)?;
        let id = serde_json::from_slice::<Value>(&body)?["jobId"].clone();
        let t = now();
        broker::enqueue_job(&conn, &topo.jobs_queue, &body, confirm).await?;
        emit(&json!({"ev": "published", "id": id, "t": t, "confirmed": now()}));
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
