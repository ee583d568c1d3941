//! Broker helpers: a connection to the local RabbitMQ, unique names per test, a guard that
//! deletes a test's queues and exchanges, and ways to read what landed in a queue.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use executor_harness::broker::{self, BrokerConnection, Topology};
use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};

/// The broker the tests run against (`AMQP_URL` overrides it).
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// `t<pid>_<nanos>_<counter>`: unique across tests, test runs and parallel test binaries.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}_{}_{}", std::process::id(), nanos, n)
}

/// A connection through the product's `connect`. Without a broker there is no point in
/// running the rest: the first test to find none says how to start one and ends the run,
/// instead of every test panicking with a connection error.
pub async fn connect(name: &str) -> BrokerConnection {
    match broker::connect(&amqp_url(), name, 10).await {
        Ok(conn) => conn,
        Err(e) => {
            let message = format!(
                "\nThe integration tests need RabbitMQ at {} and could not connect: {e}.\n\
                 Run the suite with `scripts/test.sh`, which installs and starts it, or start \
                 it yourself (`rabbitmq-server -detached`), or set AMQP_URL to another broker.\n",
                url::Url::parse(&amqp_url()).map_or_else(
                    |_| "AMQP_URL".to_owned(),
                    |u| format!(
                        "{}:{}",
                        u.host_str().unwrap_or("?"),
                        u.port().unwrap_or(5672)
                    )
                )
            );
            // Straight to the process's stderr: the test harness captures `eprintln!`.
            use std::io::Write;
            let _ = std::io::stderr().write_all(message.as_bytes());
            std::process::exit(2);
        }
    }
}

/// Deletes the queues and exchanges it was told about when dropped, passing test or failing
/// one, on a connection of its own.
#[derive(Default)]
pub struct Cleanup {
    queues: Mutex<Vec<String>>,
    exchanges: Mutex<Vec<String>>,
}

impl Cleanup {
    pub fn queue(&self, name: &str) {
        self.queues.lock().unwrap().push(name.to_owned());
    }

    pub fn exchange(&self, name: &str) {
        self.exchanges.lock().unwrap().push(name.to_owned());
    }

    pub fn topology(&self, topo: &Topology) {
        topo.queues().iter().for_each(|q| self.queue(q));
        topo.exchanges().iter().for_each(|e| self.exchange(e));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queues = std::mem::take(self.queues.get_mut().unwrap());
        let exchanges = std::mem::take(self.exchanges.get_mut().unwrap());
        // Drop cannot await, and the test's runtime may be the one being dropped: a thread
        // with its own runtime does the deleting.
        let deleting = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(conn) = broker::connect(&amqp_url(), "test-cleanup", 10).await else {
                    return;
                };
                for queue in queues {
                    // A fresh channel each: deleting a missing object can close a channel.
                    if let Ok(channel) = conn.create_channel().await {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                for exchange in exchanges {
                    if let Ok(channel) = conn.create_channel().await {
                        let _ = channel
                            .exchange_delete(
                                exchange.as_str().into(),
                                ExchangeDeleteOptions::default(),
                            )
                            .await;
                    }
                }
                let _ = conn.close(200, "cleaned up".into()).await;
            });
        });
        let _ = deleting.join();
    }
}

/// A connection plus a uniquely named topology that is deleted at the end of the test.
pub struct TestBroker {
    pub conn: BrokerConnection,
    pub topo: Topology,
    /// Deletes the topology when the test ends, passed or failed.
    _cleanup: Cleanup,
}

impl TestBroker {
    /// A topology named `<unique prefix>.*`, adjusted by `tweak`, not declared yet.
    pub async fn new(tweak: impl FnOnce(&mut Topology)) -> Self {
        let mut topo = Topology::with_prefix(&unique_prefix());
        tweak(&mut topo);
        let cleanup = Cleanup::default();
        cleanup.topology(&topo);
        Self {
            conn: connect("integration-test").await,
            topo,
            _cleanup: cleanup,
        }
    }

    /// As [`TestBroker::new`], with the topology declared.
    pub async fn declared(tweak: impl FnOnce(&mut Topology)) -> Self {
        let test = Self::new(tweak).await;
        broker::declare_topology(&test.conn, &test.topo)
            .await
            .unwrap();
        test
    }
}

/// Takes one message off `queue` (basic.get with auto-ack), if there is one.
pub async fn get_message(conn: &Connection, queue: &str) -> Option<BasicGetMessage> {
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
}

/// Waits up to `within` for the next message on `queue` (for messages the broker moves
/// asynchronously, such as dead-lettered ones) and takes it off the queue.
pub async fn next_message(conn: &Connection, queue: &str, within: Duration) -> Delivery {
    let channel = conn.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    tokio::time::timeout(within, consumer.next())
        .await
        .unwrap_or_else(|_| panic!("no message on {queue} within {within:?}"))
        .expect("the consumer ended")
        .unwrap()
}

/// The number of ready messages in `queue` (a passive declare, which also proves it exists).
pub async fn message_count(conn: &Connection, queue: &str) -> u32 {
    passive_queue(conn, queue).await.unwrap().message_count()
}

/// A passive queue declare: Ok when the queue exists.
pub async fn passive_queue(conn: &Connection, queue: &str) -> lapin::Result<lapin::Queue> {
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// A passive exchange declare: Ok when the exchange exists.
pub async fn passive_exchange(conn: &Connection, exchange: &str) -> lapin::Result<()> {
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares `queue` directly (not through the product), with `args`, on a fresh channel.
pub async fn declare_queue(
    conn: &Connection,
    queue: &str,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
}

/// Runs `rabbitmqctl` (the tests run as root beside the broker) and returns its stdout.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The broker's reply text of a failed declare.
pub fn reply_text(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        other => panic!("not a protocol error: {other:?}"),
    }
}
