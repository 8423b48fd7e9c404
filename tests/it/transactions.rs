//! Transactions with real clients: kafka-python's consume-transform-produce
//! loop killed mid-transaction and restarted, aborts, a fenced zombie, and
//! read_committed against read_uncommitted consumers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::common::{metric, run_python, wait_until, Broker};
use crate::kafka::{self, TestRecord};

const SCRIPT: &str = "kafka_python_transactions.py";

/// Runs the transform phase until it is mid-transaction, then SIGKILLs it.
/// Returns how many outputs the killed transaction had sent.
fn transform_until_killed(bootstrap: &str) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(SCRIPT);
    let mut child = Command::new("python3")
        .arg(path)
        .args([bootstrap, "transform", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("piped");
    let mut sent = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("readable output");
        if let Some(count) = line.strip_prefix("MID-TRANSACTION ") {
            sent = Some(count.trim().parse().expect("a count"));
            break;
        }
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    sent.expect("the transform reached the middle of a transaction before it was killed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_consume_transform_produce_survives_a_killed_client_and_fences_zombies() {
    let broker = Broker::start("transaction_check_interval_ms = 500\n");
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        run_python(SCRIPT, &[&bootstrap, "setup"]);
        let killed_outputs = transform_until_killed(&bootstrap);
        // The restarted producer fences the killed one and aborts its
        // transaction; the group resumes from the committed offsets.
        let out = run_python(SCRIPT, &[&bootstrap, "transform"]);
        assert!(out.contains("OK transform"), "{out}");
        let out = run_python(SCRIPT, &[&bootstrap, "extras"]);
        assert!(out.contains("OK extras"), "{out}");
        let out = run_python(SCRIPT, &[&bootstrap, "verify", &killed_outputs.to_string()]);
        assert!(out.contains("OK verify"), "{out}");
    })
    .await
    .unwrap();
}

fn values(consumed: &std::collections::BTreeMap<i32, Vec<(i64, TestRecord)>>) -> Vec<String> {
    consumed
        .values()
        .flatten()
        .map(|(_, r)| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

pub(crate) fn transactional_producer(bootstrap: &str, id: &str, timeout_ms: &str) -> FutureProducer {
    let producer = kafka::producer(
        bootstrap,
        &[
            ("transactional.id", id),
            ("transaction.timeout.ms", timeout_ms),
            ("message.timeout.ms", timeout_ms),
        ],
    );
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    producer
}

pub(crate) async fn send_values(producer: &FutureProducer, topic: &str, prefix: &str, count: usize) {
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        let key = i.to_string();
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&value), TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// (partition, first offset) of every open transaction DescribeProducers
/// reports on `topic`.
fn open_transactions(broker: &Broker, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{ApiKey, DescribeProducersRequest, DescribeProducersResponse, TopicName};
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.to_string())))
        .with_partition_indexes((0..partitions).collect())]);
    let response: DescribeProducersResponse = crate::bad_input::call(broker, ApiKey::DescribeProducers, 0, &request);
    let mut open = Vec::new();
    for p in &response.topics[0].partitions {
        assert_eq!(p.error_code, 0, "{p:?}");
        for producer in &p.active_producers {
            assert!(producer.producer_id.0 >= 0 && producer.producer_epoch >= 0, "{producer:?}");
            if producer.current_txn_start_offset >= 0 {
                open.push((p.partition_index, producer.current_txn_start_offset));
            }
        }
    }
    open
}

pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
const READ_COMMITTED: &[(&str, &str)] = &[("isolation.level", "read_committed")];
const READ_UNCOMMITTED: &[(&str, &str)] = &[("isolation.level", "read_uncommitted")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_transactions_commit_abort_and_fence_a_zombie() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    kafka::create_topic(&bootstrap, "ltx", 3, &[]).await;

    let producer = transactional_producer(&bootstrap, "l-1", "60000");
    producer.begin_transaction().unwrap();
    send_values(&producer, "ltx", "committed", 300).await;
    producer.commit_transaction(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send_values(&producer, "ltx", "aborted", 50).await;
    producer.abort_transaction(TIMEOUT).unwrap();

    // A producer stops mid-transaction (its records delivered, no commit);
    // its successor with the same id fences it and aborts its transaction.
    let zombie = transactional_producer(&bootstrap, "l-2", "60000");
    zombie.begin_transaction().unwrap();
    send_values(&zombie, "ltx", "zombie", 40).await;
    // DescribeProducers shows the open transaction where it started (what
    // kafka-transactions.sh find-hanging looks for).
    let open = open_transactions(&broker, "ltx", 3);
    assert!(!open.is_empty() && open.iter().all(|(_, start)| *start >= 0), "{open:?}");
    let successor = transactional_producer(&bootstrap, "l-2", "60000");
    successor.begin_transaction().unwrap();
    send_values(&successor, "ltx", "successor", 10).await;
    successor.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(open_transactions(&broker, "ltx", 3), vec![], "no transaction is left open");
    let fenced = zombie.commit_transaction(TIMEOUT).expect_err("the zombie is fenced");
    let fenced = fenced.rdkafka_error_code().unwrap_or(rdkafka::types::RDKafkaErrorCode::Unknown);
    assert!(
        matches!(
            fenced,
            rdkafka::types::RDKafkaErrorCode::ProducerFenced | rdkafka::types::RDKafkaErrorCode::Fenced
        ),
        "{fenced:?}"
    );

    let committed = values(&kafka::consume_all(&bootstrap, "ltx", 3, usize::MAX, READ_COMMITTED));
    let count = |vs: &[String], prefix: &str| vs.iter().filter(|v| v.starts_with(prefix)).count();
    assert_eq!(count(&committed, "committed-"), 300);
    assert_eq!(count(&committed, "successor-"), 10);
    assert_eq!(
        count(&committed, "aborted-") + count(&committed, "zombie-"),
        0,
        "aborted records are invisible"
    );
    let uncommitted = values(&kafka::consume_all(&bootstrap, "ltx", 3, usize::MAX, READ_UNCOMMITTED));
    assert_eq!(count(&uncommitted, "aborted-"), 50);
    assert_eq!(count(&uncommitted, "zombie-"), 40);
    assert!(metric(&broker, "sediment_transactions_committed_total") >= 2.0);
    assert!(metric(&broker, "sediment_transactions_aborted_total") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_transaction_keeps_committed_ones_and_times_the_open_one_out() {
    let mut broker = Broker::start("transaction_check_interval_ms = 500\n");
    let bootstrap = broker.bootstrap();
    kafka::create_topic(&bootstrap, "ktx", 2, &[]).await;
    let producer = transactional_producer(&bootstrap, "k-1", "4000");
    producer.begin_transaction().unwrap();
    send_values(&producer, "ktx", "committed", 100).await;
    producer.commit_transaction(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send_values(&producer, "ktx", "open", 50).await;
    broker.kill(); // SIGKILL, mid-transaction
    drop(producer);
    broker.start_again();
    let bootstrap = broker.bootstrap();

    // Records after the open transaction become visible to read_committed
    // consumers once the coordinator aborts it at its timeout.
    let plain = kafka::producer(&bootstrap, &[]);
    send_values(&plain, "ktx", "after", 10).await;
    let mut committed = Vec::new();
    wait_until("the open transaction is aborted at its timeout", 60, || {
        committed = values(&kafka::consume_all(&bootstrap, "ktx", 2, usize::MAX, READ_COMMITTED));
        committed.iter().filter(|v| v.starts_with("after-")).count() == 10
    });
    let count = |vs: &[String], prefix: &str| vs.iter().filter(|v| v.starts_with(prefix)).count();
    assert_eq!(count(&committed, "committed-"), 100, "the committed transaction survived the kill");
    assert_eq!(count(&committed, "open-"), 0);
    let uncommitted = values(&kafka::consume_all(&bootstrap, "ktx", 2, usize::MAX, READ_UNCOMMITTED));
    assert_eq!(count(&uncommitted, "open-"), 50, "the aborted records were durable");
    assert!(metric(&broker, "sediment_transactions_timed_out_total") >= 1.0);
}
