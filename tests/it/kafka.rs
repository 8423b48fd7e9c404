//! librdkafka (through the rdkafka crate) helpers for the integration tests.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("broker.address.family", "v4");
    config
}

pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().unwrap();
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    let results = admin.create_topics(&[new_topic], &AdminOptions::new()).await.unwrap();
    for r in results {
        r.unwrap();
    }
}

/// A record the tests produce and expect back, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

pub fn record(i: usize, value_len: usize) -> TestRecord {
    let mut value = format!("value-{i}-").into_bytes();
    value.resize(value_len.max(value.len()), b'x');
    TestRecord {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(value),
        headers: vec![("index".to_string(), Some(i.to_string().into_bytes())), ("empty".to_string(), None)],
        timestamp: 1_700_000_000_000 + i as i64,
    }
}

/// `r` as librdkafka sends it.
pub fn future_record<'a>(topic: &'a str, r: &'a TestRecord) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).timestamp(r.timestamp).headers(headers);
    if let Some(k) = &r.key {
        fr = fr.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        fr = fr.payload(v.as_slice());
    }
    fr
}

/// Produces `records` (in order) and returns where each landed.
pub async fn produce(producer: &FutureProducer, topic: &str, records: &[TestRecord]) -> Vec<(i32, i64)> {
    let mut futures = Vec::with_capacity(records.len());
    for r in records {
        let mut fr = future_record(topic, r);
        loop {
            match producer.send_result(fr) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((_, back)) => {
                    fr = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    let mut placed = Vec::with_capacity(futures.len());
    for f in futures {
        let delivery = f.await.unwrap().map_err(|(e, _)| e).unwrap();
        placed.push((delivery.partition, delivery.offset));
    }
    placed
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = config(bootstrap);
    // Two minutes, not librdkafka's five: a stalled broker fails a test
    // sooner than the suite's bound. Tests may set their own.
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

/// Reads every partition of `topic` from the beginning until `expected`
/// records arrived (or the deadline passes; with `usize::MAX`, until every
/// partition's end was reached). Returns them per partition,
/// in offset order, with their offsets.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    extra: &[(&str, &str)],
) -> BTreeMap<i32, Vec<(i64, TestRecord)>> {
    let mut c = config(bootstrap);
    c.set("group.id", format!("verify-{}", uuid_like()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "true");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<(i64, TestRecord)>> = BTreeMap::new();
    let mut count = 0;
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count < expected && Instant::now() < deadline && !(expected == usize::MAX && at_end.len() == partitions as usize) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                    .unwrap_or_default();
                let r = TestRecord {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                };
                at_end.remove(&m.partition());
                out.entry(m.partition()).or_default().push((m.offset(), r));
                count += 1;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            // A connection to a broker that is gone (a test killed it, and
            // Metadata still lists it until its lease ends): librdkafka
            // reports it and carries on with the others.
            Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure | rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Checks that `consumed` holds exactly `sent` (placed as `placed`), each
/// once, in send order within each partition.
pub fn assert_exact(sent: &[TestRecord], placed: &[(i32, i64)], consumed: &BTreeMap<i32, Vec<(i64, TestRecord)>>) {
    let total: usize = consumed.values().map(Vec::len).sum();
    assert_eq!(total, sent.len(), "record count");
    let mut by_position: HashMap<(i32, i64), &TestRecord> = HashMap::new();
    for (partition, records) in consumed {
        let mut last = -1;
        for (offset, r) in records {
            assert!(*offset > last, "offsets ascend in partition {partition}");
            last = *offset;
            assert!(by_position.insert((*partition, *offset), r).is_none(), "offset {offset} seen twice");
        }
    }
    for (i, (r, pos)) in sent.iter().zip(placed).enumerate() {
        let got = by_position.get(pos).unwrap_or_else(|| panic!("record {i} at {pos:?} missing"));
        assert_eq!(*got, r, "record {i} at {pos:?}");
    }
}

/// Commits `offsets` (partition, offset) of `topic` for `group`, as a
/// consumer outside the group's generation does (admin tools, assign()).
pub fn commit_offsets(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    use rdkafka::consumer::CommitMode;
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// The committed offsets of `group` for partitions 0..`partitions` (-1: none).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = config(bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    committed.elements().iter().map(|e| e.offset().to_raw().unwrap_or(-1)).collect()
}
