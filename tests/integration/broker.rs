//! The broker module against the local RabbitMQ: topology, publishing with confirms,
//! consuming and settling, enqueueing and following a job.

use std::time::Duration;

use executor_harness::broker::{
    declare_topology, enqueue_job, server_version, BrokerError, EventFollower, JobConsumer,
    OutgoingMessage, PublishError, Publisher, Settlement,
};
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::support::broker::{
    connect, declare_queue, get_message, message_count, next_message, passive_exchange,
    passive_queue, rabbitmqctl, reply_text, TestBroker,
};

const CONFIRM: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(5);
/// How long a delivery that must not come is waited for.
const QUIET: Duration = Duration::from_millis(300);

fn event<'a>(
    topo: &'a executor_harness::broker::Topology,
    routing_key: &'a str,
    job_id: &'a str,
    message_id: &'a str,
    kind: &'a str,
    body: &'a [u8],
) -> OutgoingMessage<'a> {
    OutgoingMessage {
        exchange: &topo.events_exchange,
        routing_key,
        body,
        message_id,
        correlation_id: job_id,
        kind,
        attempt: 1,
    }
}

fn header<'a>(props: &'a lapin::BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(name)
}

fn text(value: &Option<lapin::types::ShortString>) -> Option<&str> {
    value.as_ref().map(|s| s.as_str())
}

#[tokio::test]
async fn connect_reads_the_broker_version_and_names_the_connection() {
    let name = format!("harness-test-{}", crate::support::broker::unique_prefix());
    let conn = executor_harness::broker::connect(&crate::support::broker::amqp_url(), &name, 7)
        .await
        .unwrap();
    assert_eq!(conn.configuration().heartbeat(), 7);

    let reported = rabbitmqctl(&["-q", "version"]);
    let expected: Vec<u32> = reported
        .trim()
        .split('.')
        .map(|part| part.parse().unwrap())
        .collect();
    let (major, minor, patch) = server_version(&conn).expect("the version was read");
    assert_eq!(vec![major, minor, patch], expected);

    let connections = rabbitmqctl(&["-q", "list_connections", "client_properties"]);
    assert!(
        connections.contains(&name),
        "no connection named {name} in: {connections}"
    );
}

#[tokio::test]
async fn refused_credentials_are_final_and_never_show_the_password() {
    let url = crate::support::broker::amqp_url().replacen("guest:guest@", "guest:n0t-th1s@", 1);
    assert!(
        url.contains("n0t-th1s"),
        "the test URL has no guest credentials: {url}"
    );
    let err = executor_harness::broker::connect(&url, "refused", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Connect { .. }), "{err:?}");
    assert!(!err.can_be_recovered(), "{err:?}");
    assert!(!err.to_string().contains("n0t-th1s"), "{err}");
    assert!(!format!("{err:?}").contains("n0t-th1s"), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_broker_is_worth_retrying() {
    // Port 1 is closed: the connection is refused at once.
    let err = executor_harness::broker::connect("amqp://guest:guest@127.0.0.1:1/%2f", "x", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Connect { .. }), "{err:?}");
    assert!(err.can_be_recovered(), "{err:?}");
}

#[tokio::test]
async fn declaring_the_topology_twice_is_fine_and_every_object_exists() {
    let test = TestBroker::new(|_| {}).await;
    declare_topology(&test.conn, &test.topo).await.unwrap();
    declare_topology(&test.conn, &test.topo).await.unwrap();

    for queue in test.topo.queues() {
        passive_queue(&test.conn, queue)
            .await
            .unwrap_or_else(|e| panic!("queue {queue} is missing: {e}"));
    }
    for exchange in test.topo.exchanges() {
        passive_exchange(&test.conn, exchange)
            .await
            .unwrap_or_else(|e| panic!("exchange {exchange} is missing: {e}"));
    }
}

fn jobs_arguments(topo: &executor_harness::broker::Topology) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(topo.delivery_limit.into()),
    );
    let dead_exchange = LongString::from(topo.dead_exchange.as_str());
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_exchange),
    );
    args
}

#[tokio::test]
async fn the_jobs_queue_is_a_quorum_queue_with_the_delivery_limit_and_dead_letter_exchange() {
    let test = TestBroker::declared(|t| t.delivery_limit = 3).await;
    let jobs = &test.topo.jobs_queue;
    declare_queue(&test.conn, jobs, jobs_arguments(&test.topo))
        .await
        .expect("the expected arguments are equivalent");

    // The broker's equivalence check names whichever argument differs.
    let differing = [
        ("x-queue-type", AMQPValue::LongString("classic".into())),
        ("x-delivery-limit", AMQPValue::LongLongInt(4)),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString("elsewhere".into()),
        ),
    ];
    for (name, value) in differing {
        let mut args = jobs_arguments(&test.topo);
        args.insert(name.into(), value);
        let err = declare_queue(&test.conn, jobs, args).await.unwrap_err();
        let detail = reply_text(&err);
        assert!(detail.contains(name), "{name}: {detail}");
    }
}

#[tokio::test]
async fn the_consumer_timeout_is_declared_only_where_the_broker_honours_it() {
    let test = TestBroker::declared(|t| t.consumer_timeout_ms = Some(3_600_000)).await;
    let honoured = server_version(&test.conn).unwrap() >= (3, 12, 0);

    let listing = rabbitmqctl(&[
        "-q",
        "list_queues",
        "name",
        "arguments",
        "--formatter",
        "json",
    ]);
    let queues: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let jobs = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == test.topo.jobs_queue.as_str())
        .unwrap_or_else(|| panic!("{} is not listed: {listing}", test.topo.jobs_queue));
    // rabbitmqctl lists arguments as [name, type, value] triples.
    let args: std::collections::HashMap<&str, &serde_json::Value> = jobs["arguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|triple| (triple[0].as_str().unwrap(), &triple[2]))
        .collect();
    assert_eq!(
        args.get("x-queue-type").copied(),
        Some(&"quorum".into()),
        "{jobs}"
    );
    assert_eq!(
        args.get("x-delivery-limit").copied(),
        Some(&5.into()),
        "{jobs}"
    );
    assert_eq!(args.contains_key("x-consumer-timeout"), honoured, "{jobs}");
}

#[tokio::test]
async fn a_conflicting_classic_jobs_queue_is_a_declare_conflict_naming_it() {
    let test = TestBroker::new(|_| {}).await;
    // A classic queue cannot even take a delivery limit: only the dead-letter exchange matches.
    let mut classic = FieldTable::default();
    let dead_exchange = LongString::from(test.topo.dead_exchange.as_str());
    classic.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_exchange),
    );
    declare_queue(&test.conn, &test.topo.jobs_queue, classic)
        .await
        .unwrap();

    let err = declare_topology(&test.conn, &test.topo).await.unwrap_err();
    match &err {
        BrokerError::DeclareConflict { object, detail } => {
            assert!(object.contains(&test.topo.jobs_queue), "{object}");
            assert!(detail.contains("x-queue-type"), "{detail}");
        }
        other => panic!("expected a declare conflict, got {other:?}"),
    }
    assert!(!err.can_be_recovered());
    // The conflict closed only its own throwaway channel: the connection still works.
    assert!(test.conn.status().connected());
}

#[tokio::test]
async fn the_progress_queue_drops_its_oldest_message_beyond_its_length_bound() {
    let test = TestBroker::declared(|t| t.progress_max_length = 2).await;
    let publisher = Publisher::open(&test.conn, CONFIRM).await.unwrap();
    for seq in ["1", "2", "3"] {
        let id = format!("j:progress:1:{seq}");
        let msg = event(
            &test.topo,
            "job.progress",
            "j",
            &id,
            "progress",
            seq.as_bytes(),
        );
        publisher.publish(msg).await.unwrap();
    }
    assert_eq!(
        message_count(&test.conn, &test.topo.progress_queue).await,
        2
    );
    let oldest = get_message(&test.conn, &test.topo.progress_queue)
        .await
        .unwrap();
    assert_eq!(oldest.delivery.data, b"2");
}

#[tokio::test]
async fn an_event_lands_in_its_queue_with_every_property_and_header() {
    let test = TestBroker::declared(|_| {}).await;
    let publisher = Publisher::open(&test.conn, CONFIRM).await.unwrap();
    let body = br#"{"jobId":"job-7","state":"done"}"#;
    publisher
        .publish(OutgoingMessage {
            attempt: 2,
            ..event(
                &test.topo,
                "job.result",
                "job-7",
                "job-7:result",
                "result",
                body,
            )
        })
        .await
        .unwrap();
    publisher
        .publish(event(
            &test.topo,
            "job.followup",
            "job-7",
            "job-7:followup:2:1",
            "followup",
            b"{}",
        ))
        .await
        .unwrap();

    let result = get_message(&test.conn, &test.topo.results_queue)
        .await
        .expect("the result reached the results queue");
    let props = &result.delivery.properties;
    assert_eq!(result.delivery.data, body);
    assert_eq!(result.delivery.routing_key.as_str(), "job.result");
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(text(props.content_type()), Some("application/json"));
    assert_eq!(text(props.message_id()), Some("job-7:result"));
    assert_eq!(text(props.correlation_id()), Some("job-7"));
    assert_eq!(text(props.kind()), Some("result"));
    assert_eq!(header(props, "x-attempt"), Some(&AMQPValue::LongInt(2)));

    assert_eq!(message_count(&test.conn, &test.topo.results_queue).await, 0);
    assert_eq!(
        message_count(&test.conn, &test.topo.followups_queue).await,
        1
    );
    assert_eq!(
        message_count(&test.conn, &test.topo.progress_queue).await,
        0
    );
}

#[tokio::test]
async fn a_publish_nothing_is_bound_to_is_unroutable() {
    let test = TestBroker::declared(|_| {}).await;
    let publisher = Publisher::open(&test.conn, CONFIRM).await.unwrap();
    let err = publisher
        .publish(event(
            &test.topo,
            "job.nowhere",
            "j",
            "j:x",
            "result",
            b"{}",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unroutable), "{err:?}");
    assert_eq!(err.reason(), "unroutable");

    // A return leaves the channel open: the next publish goes through.
    publisher
        .publish(event(
            &test.topo,
            "job.result",
            "j",
            "j:result",
            "result",
            b"{}",
        ))
        .await
        .unwrap();
    assert!(publisher.is_open());
}

#[tokio::test]
async fn a_publish_to_a_missing_exchange_reports_the_closed_channel() {
    let test = TestBroker::declared(|_| {}).await;
    let publisher = Publisher::open(&test.conn, CONFIRM).await.unwrap();
    let missing = format!("{}.missing", test.topo.events_exchange);
    let err = publisher
        .publish(OutgoingMessage {
            exchange: &missing,
            ..event(&test.topo, "job.result", "j", "j:result", "result", b"{}")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::ChannelClosed(_)), "{err:?}");
    assert_eq!(err.reason(), "channel_closed");
    assert!(!publisher.is_open());
}

#[tokio::test]
async fn a_publish_whose_confirm_does_not_come_in_time_is_a_confirm_timeout() {
    let test = TestBroker::declared(|_| {}).await;
    // A broker that stops answering (a black-holed connection) confirms nothing; a zero
    // timeout would race a fast broker's confirm.
    let proxy = crate::support::fault_proxy::FaultProxy::broker().await;
    let via_proxy = executor_harness::broker::connect(&proxy.amqp_url(), "confirm-timeout", 10)
        .await
        .unwrap();
    let impatient = Publisher::open(&via_proxy, Duration::from_millis(300))
        .await
        .unwrap();
    proxy.blackhole(true);
    let err = impatient
        .publish(event(
            &test.topo,
            "job.result",
            "j",
            "j:result",
            "result",
            b"{}",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::ConfirmTimeout), "{err:?}");
    assert_eq!(err.reason(), "confirm_timeout");
}

#[tokio::test]
async fn a_publish_abandoned_by_its_caller_leaves_the_publisher_usable() {
    let test = TestBroker::declared(|_| {}).await;
    let publisher = Publisher::open(&test.conn, CONFIRM).await.unwrap();
    let first = event(&test.topo, "job.result", "j1", "j1:result", "result", b"1");
    // Dropped after one poll: normally still waiting for its confirm (on a busy machine the
    // confirm may already be in; the publisher must stay usable either way).
    let _ = futures_lite::future::poll_once(publisher.publish(first)).await;

    let second = event(&test.topo, "job.result", "j2", "j2:result", "result", b"2");
    publisher.publish(second).await.unwrap();
    // The abandoned message had been sent: a timeout says nothing about whether it arrived.
    assert_eq!(message_count(&test.conn, &test.topo.results_queue).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_from_clones_are_each_confirmed() {
    let test = TestBroker::declared(|_| {}).await;
    let publisher = Publisher::open(&test.conn, CONFIRM).await.unwrap();
    let events = test.topo.events_exchange.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40 {
        let publisher = publisher.clone();
        let events = events.clone();
        tasks.spawn(async move {
            let id = format!("j{n}:result");
            let job = format!("j{n}");
            // Every fourth goes nowhere, so returns interleave with plain confirms.
            let key = if n % 4 == 0 {
                "job.nowhere"
            } else {
                "job.result"
            };
            let outcome = publisher
                .publish(OutgoingMessage {
                    exchange: &events,
                    routing_key: key,
                    body: id.as_bytes(),
                    message_id: &id,
                    correlation_id: &job,
                    kind: "result",
                    attempt: 1,
                })
                .await;
            (n, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (n, outcome) = joined.unwrap();
        if n % 4 == 0 {
            assert!(
                matches!(outcome, Err(PublishError::Unroutable)),
                "{n}: {outcome:?}"
            );
        } else {
            outcome.unwrap_or_else(|e| panic!("publish {n} failed: {e}"));
        }
    }
    assert_eq!(
        message_count(&test.conn, &test.topo.results_queue).await,
        30
    );
}

#[tokio::test]
async fn enqueue_job_lands_in_the_jobs_queue_as_a_persistent_message() {
    let test = TestBroker::declared(|_| {}).await;
    let body = br#"{"jobId":"job-e1","mode":"coding"}"#;
    enqueue_job(&test.conn, &test.topo.jobs_queue, body, CONFIRM)
        .await
        .unwrap();

    let job = get_message(&test.conn, &test.topo.jobs_queue)
        .await
        .expect("the job is in the jobs queue");
    assert_eq!(job.delivery.data, body);
    let props = &job.delivery.properties;
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(text(props.content_type()), Some("application/json"));
    assert_eq!(text(props.message_id()), Some("job-e1"));
    assert_eq!(text(props.correlation_id()), Some("job-e1"));
}

#[tokio::test]
async fn enqueue_job_to_a_missing_queue_is_unroutable() {
    let test = TestBroker::new(|_| {}).await;
    let err = enqueue_job(&test.conn, &test.topo.jobs_queue, b"{}", CONFIRM)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unroutable), "{err:?}");
}

#[tokio::test]
async fn the_consumer_holds_at_most_prefetch_unacked_deliveries() {
    let test = TestBroker::declared(|_| {}).await;
    for n in 0..3 {
        let body = format!(r#"{{"jobId":"p{n}"}}"#);
        enqueue_job(&test.conn, &test.topo.jobs_queue, body.as_bytes(), CONFIRM)
            .await
            .unwrap();
    }
    let mut consumer = JobConsumer::open(&test.conn, &test.topo.jobs_queue, 2, "prefetch")
        .await
        .unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    let _second = consumer.next().await.unwrap().unwrap();
    assert!(
        tokio::time::timeout(QUIET, consumer.next()).await.is_err(),
        "a third delivery arrived while two were unacked"
    );

    first.settle(Settlement::Ack).await.unwrap();
    let third = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("the ack made room for the third delivery")
        .unwrap()
        .unwrap();
    assert_eq!(third.body, br#"{"jobId":"p2"}"#);
    assert_eq!(third.attempt, 1);
    assert!(!third.redelivered);
}

#[tokio::test]
async fn a_requeued_job_comes_back_as_attempt_two() {
    let test = TestBroker::declared(|_| {}).await;
    enqueue_job(
        &test.conn,
        &test.topo.jobs_queue,
        b"{\"jobId\":\"r1\"}",
        CONFIRM,
    )
    .await
    .unwrap();
    let mut consumer = JobConsumer::open(&test.conn, &test.topo.jobs_queue, 1, "requeue")
        .await
        .unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    first.settle(Settlement::Requeue).await.unwrap();

    let again = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("the requeued job came back")
        .unwrap()
        .unwrap();
    assert_eq!(again.attempt, 2);
    assert!(again.redelivered);
    assert_eq!(again.body, b"{\"jobId\":\"r1\"}");
    assert_eq!(again.message_id.as_deref(), Some("r1"));
    again.settle(Settlement::Ack).await.unwrap();
}

#[tokio::test]
async fn a_dead_lettered_job_lands_untouched_in_the_dead_queue() {
    let test = TestBroker::declared(|_| {}).await;
    let body = b"not json at all";
    enqueue_job(&test.conn, &test.topo.jobs_queue, body, CONFIRM)
        .await
        .unwrap();
    let mut consumer = JobConsumer::open(&test.conn, &test.topo.jobs_queue, 1, "dead")
        .await
        .unwrap();
    let job = consumer.next().await.unwrap().unwrap();
    job.settle(Settlement::DeadLetter).await.unwrap();

    let dead = next_message(&test.conn, &test.topo.dead_queue, WAIT).await;
    assert_eq!(dead.data, body);
    assert_eq!(*dead.properties.delivery_mode(), Some(2));
    assert_eq!(
        text(dead.properties.content_type()),
        Some("application/json")
    );
    let Some(AMQPValue::FieldArray(deaths)) = header(&dead.properties, "x-death") else {
        panic!("no x-death header: {:?}", dead.properties.headers());
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death is not a list of tables");
    };
    assert_eq!(
        death.inner().get("reason"),
        Some(&AMQPValue::LongString("rejected".into()))
    );
    assert_eq!(message_count(&test.conn, &test.topo.jobs_queue).await, 0);
}

#[tokio::test]
async fn the_broker_dead_letters_a_job_past_its_delivery_limit() {
    let test = TestBroker::declared(|t| t.delivery_limit = 1).await;
    enqueue_job(
        &test.conn,
        &test.topo.jobs_queue,
        b"{\"jobId\":\"poison\"}",
        CONFIRM,
    )
    .await
    .unwrap();
    let mut consumer = JobConsumer::open(&test.conn, &test.topo.jobs_queue, 1, "limit")
        .await
        .unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    first.settle(Settlement::Requeue).await.unwrap();
    let second = consumer.next().await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    second.settle(Settlement::Requeue).await.unwrap();

    let dead = next_message(&test.conn, &test.topo.dead_queue, WAIT).await;
    assert_eq!(dead.data, b"{\"jobId\":\"poison\"}");
    assert!(
        tokio::time::timeout(QUIET, consumer.next()).await.is_err(),
        "the job was delivered a third time"
    );
}

#[tokio::test]
async fn an_ack_on_a_closed_channel_is_an_error_and_the_job_stays_queued() {
    let test = TestBroker::declared(|_| {}).await;
    enqueue_job(
        &test.conn,
        &test.topo.jobs_queue,
        b"{\"jobId\":\"c1\"}",
        CONFIRM,
    )
    .await
    .unwrap();
    let mut consumer = JobConsumer::open(&test.conn, &test.topo.jobs_queue, 1, "closed")
        .await
        .unwrap();
    let job = consumer.next().await.unwrap().unwrap();
    consumer.close().await.unwrap();

    assert!(!job.can_settle());
    let err = job.settle(Settlement::Ack).await.unwrap_err();
    assert!(matches!(err, BrokerError::NotSettled { .. }), "{err:?}");

    let back = next_message(&test.conn, &test.topo.jobs_queue, WAIT).await;
    assert_eq!(back.data, b"{\"jobId\":\"c1\"}");
    assert!(back.redelivered);
}

#[tokio::test]
async fn a_second_settle_of_the_same_delivery_is_an_error() {
    let test = TestBroker::declared(|_| {}).await;
    enqueue_job(&test.conn, &test.topo.jobs_queue, b"{}", CONFIRM)
        .await
        .unwrap();
    let mut consumer = JobConsumer::open(&test.conn, &test.topo.jobs_queue, 1, "twice")
        .await
        .unwrap();
    let job = consumer.next().await.unwrap().unwrap();
    job.settle(Settlement::Ack).await.unwrap();
    let err = job.settle(Settlement::Ack).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::NotSettled { how: "basic.ack" }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_cancelled_consumer_gets_nothing_new_but_can_still_ack() {
    let test = TestBroker::declared(|_| {}).await;
    for n in 0..2 {
        let body = format!(r#"{{"jobId":"k{n}"}}"#);
        enqueue_job(&test.conn, &test.topo.jobs_queue, body.as_bytes(), CONFIRM)
            .await
            .unwrap();
    }
    let mut consumer = JobConsumer::open(&test.conn, &test.topo.jobs_queue, 1, "cancel")
        .await
        .unwrap();
    let job = consumer.next().await.unwrap().unwrap();
    consumer.cancel().await.unwrap();
    assert!(
        tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("the cancelled consumer ended")
            .is_none(),
        "a delivery arrived after the cancel"
    );

    job.settle(Settlement::Ack).await.unwrap();
    assert_eq!(message_count(&test.conn, &test.topo.jobs_queue).await, 1);
}

#[tokio::test]
async fn the_event_follower_sees_only_its_jobs_events() {
    let test = TestBroker::declared(|_| {}).await;
    let mut follower = EventFollower::open(&test.conn, &test.topo.events_exchange, "mine")
        .await
        .unwrap();
    let publisher = Publisher::open(&test.conn, CONFIRM).await.unwrap();
    let other = br#"{"jobId":"theirs","seq":1}"#;
    let progress = br#"{"jobId":"mine","seq":1}"#;
    let result = br#"{"jobId":"mine","state":"done"}"#;
    publisher
        .publish(event(
            &test.topo,
            "job.progress",
            "theirs",
            "theirs:progress:1:1",
            "progress",
            other,
        ))
        .await
        .unwrap();
    publisher
        .publish(event(
            &test.topo,
            "job.progress",
            "mine",
            "mine:progress:1:1",
            "progress",
            progress,
        ))
        .await
        .unwrap();
    publisher
        .publish(event(
            &test.topo,
            "job.result",
            "mine",
            "mine:result",
            "result",
            result,
        ))
        .await
        .unwrap();

    let (kind, body) = tokio::time::timeout(WAIT, follower.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(kind, "progress");
    assert_eq!(body, serde_json::json!({"jobId": "mine", "seq": 1}));
    let (kind, body) = tokio::time::timeout(WAIT, follower.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(kind, "result");
    assert_eq!(body["state"], "done");

    // The follower's queue is a private copy: the backend's queue keeps every event.
    assert_eq!(
        message_count(&test.conn, &test.topo.progress_queue).await,
        2
    );
    assert_eq!(message_count(&test.conn, &test.topo.results_queue).await, 1);

    // Private: another connection cannot even look at it.
    let conn = connect("follower-check").await;
    let locked = passive_queue(&conn, follower.queue()).await.unwrap_err();
    assert!(reply_text(&locked).contains("exclusive"), "{locked}");
}
