//! Transactions in a three-broker cluster, through librdkafka: the
//! coordinator of each transactional id is the leader of its
//! `__transaction_state` partition; markers reach partitions other brokers
//! lead (WriteTxnMarkers), produce is verified with the coordinator
//! (AddPartitionsToTxn v4), and offsets committed in a transaction are held
//! by the group's coordinator until the marker reaches `__consumer_offsets`.
//! The coordinator is SIGKILLed mid-transaction: its successor loads the
//! state from the replicated log and aborts the open transaction at its
//! timeout; committed transactions stay.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::cluster::Cluster;
use crate::common::wait_until;
use crate::kafka;
use crate::transactions::{send_values, transactional_producer, TIMEOUT};

/// The broker id that coordinates `transactional_id`, asked of a live
/// broker, once it is not `not`.
fn transaction_coordinator(cluster: &mut Cluster, transactional_id: &str, not: i32) -> i32 {
    let asked = cluster.brokers.iter_mut().position(|b| b.is_running()).expect("a live broker");
    let request = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![StrBytes::from_string(transactional_id.to_string())]);
    let mut coordinator = -1;
    wait_until("the transaction coordinator is known", 30, || {
        let response: FindCoordinatorResponse = crate::bad_input::call(&cluster.brokers[asked], ApiKey::FindCoordinator, 4, &request);
        let found = &response.coordinators[0];
        coordinator = found.node_id.0;
        found.error_code == 0 && coordinator != not
    });
    coordinator
}

fn values(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    kafka::consume_all(bootstrap, topic, partitions, usize::MAX, &[("isolation.level", isolation)])
        .values()
        .flatten()
        .map(|(_, r)| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn count(values: &[String], prefix: &str) -> usize {
    values.iter().filter(|v| v.starts_with(prefix)).count()
}

/// Reads `input` in group `group` and, for every record, writes one output
/// record, committing the consumed offsets in the same transaction, in
/// transactions of `per_transaction` inputs, until `total` inputs are done.
async fn consume_transform_produce(bootstrap: &str, producer: &FutureProducer, group: &str, total: usize, per_transaction: usize) {
    let consumer: BaseConsumer = kafka::config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&["ctx-in"]).unwrap();
    let mut done = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while done < total {
        assert!(std::time::Instant::now() < deadline, "transformed {done} of {total}");
        producer.begin_transaction().unwrap();
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        let mut outputs = Vec::new();
        while outputs.len() < per_transaction {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let value = format!("out-{}", String::from_utf8_lossy(m.payload().unwrap_or_default()));
                    outputs.push((m.key().map(<[u8]>::to_vec).unwrap_or_default(), value));
                    positions.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => panic!("consume error: {e}"),
                None if !outputs.is_empty() => break,
                None => assert!(std::time::Instant::now() < deadline, "no input arrives"),
            }
        }
        for (key, value) in &outputs {
            producer
                .send(FutureRecord::to("ctx-out").key(key).payload(value), TIMEOUT)
                .await
                .map_err(|(e, _)| e)
                .expect("delivered");
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in &positions {
            offsets.add_partition_offset("ctx-in", *partition, Offset::Offset(*offset)).unwrap();
        }
        let metadata = consumer.group_metadata().expect("group metadata");
        producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).unwrap();
        producer.commit_transaction(TIMEOUT).unwrap();
        done += outputs.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_transactions_survive_a_killed_coordinator() {
    let mut cluster = Cluster::start(
        3,
        "transaction_check_interval_ms = 500\ntransaction_state_partitions = 4\noffsets_topic_partitions = 4\n",
    );
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("ctx-in", 3, &[("min.insync.replicas", "2")]).await;
    cluster.create_topic("ctx-out", 3, &[("min.insync.replicas", "2")]).await;
    let plain = kafka::producer(&bootstrap, &[]);
    let inputs: Vec<_> = (0..300).map(|i| kafka::record(i, 20)).collect();
    kafka::produce(&plain, "ctx-in", &inputs).await;

    // Exactly-once transform: outputs and consumed offsets commit together,
    // across partitions led by all three brokers.
    let transform = transactional_producer(&bootstrap, "ctx-transform", "60000");
    consume_transform_produce(&bootstrap, &transform, "ctx-group", inputs.len(), 40).await;
    assert_eq!(
        kafka::committed_offsets(&bootstrap, "ctx-group", "ctx-in", 3).iter().sum::<i64>(),
        300,
        "the transactions committed the consumed offsets"
    );

    // An aborted transaction and a fenced zombie.
    let aborting = transactional_producer(&bootstrap, "ctx-abort", "60000");
    aborting.begin_transaction().unwrap();
    send_values(&aborting, "ctx-out", "aborted", 30).await;
    aborting.abort_transaction(TIMEOUT).unwrap();
    let zombie = transactional_producer(&bootstrap, "ctx-zombie", "60000");
    zombie.begin_transaction().unwrap();
    send_values(&zombie, "ctx-out", "zombie", 1).await;
    let successor = transactional_producer(&bootstrap, "ctx-zombie", "60000");
    assert!(zombie.commit_transaction(TIMEOUT).is_err(), "the zombie is fenced");
    drop(successor);

    // The coordinator of an open transaction is killed.
    let coordinator = transaction_coordinator(&mut cluster, "ctx-open", -1);
    let open = transactional_producer(&bootstrap, "ctx-open", "6000");
    open.begin_transaction().unwrap();
    send_values(&open, "ctx-out", "open", 50).await;
    cluster.broker(coordinator).kill();
    drop(open);
    let survivors = cluster.live_bootstrap();
    // Another broker takes the id over once the lease of the dead one ends.
    transaction_coordinator(&mut cluster, "ctx-open", coordinator);

    // Records after the open transaction become visible to read_committed
    // consumers once the new coordinator aborts it at its timeout.
    send_values(&kafka::producer(&survivors, &[]), "ctx-out", "after", 30).await;
    let mut committed = Vec::new();
    wait_until("the open transaction is aborted by the new coordinator", 90, || {
        committed = values(&survivors, "ctx-out", 3, "read_committed");
        count(&committed, "after-") == 30
    });
    assert_eq!(
        count(&committed, "out-"),
        300,
        "each input's output exactly once: {}",
        count(&committed, "out-")
    );
    let mut distinct: Vec<_> = committed.iter().filter(|v| v.starts_with("out-")).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 300, "no output twice");
    assert_eq!(
        count(&committed, "aborted-") + count(&committed, "open-") + count(&committed, "zombie-"),
        0
    );
    let uncommitted = values(&survivors, "ctx-out", 3, "read_uncommitted");
    assert_eq!(
        count(&uncommitted, "aborted-"),
        30,
        "aborted records are there for read_uncommitted"
    );
    assert_eq!(count(&uncommitted, "open-"), 50);

    // A transaction through the new coordinator commits.
    let again = transactional_producer(&survivors, "ctx-open", "60000");
    again.begin_transaction().unwrap();
    send_values(&again, "ctx-out", "again", 1).await;
    again.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(count(&values(&survivors, "ctx-out", 3, "read_committed"), "again-"), 1);
}
