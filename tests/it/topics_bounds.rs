//! Topic creation stays bounded and atomic: a topic that runs out of file
//! descriptors leaves nothing behind (no record, no directory, no open
//! files), and one Metadata request auto-creating thousands of topics writes
//! the cluster state once, not once per topic.

use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::bad_input::{connect, read_response, request};
use crate::common::{metric, Broker};
use crate::kafka::{assert_exact, config, consume_all, produce, producer, record};

/// The broker's open-file limit in the first test: room for its own files,
/// sockets and a few small topics, not for `HUGE_PARTITIONS` partitions
/// (each holds its active segment open).
const NOFILE: &str = "--nofile=256:256";
const GIB: u64 = 1 << 30;
const HUGE_PARTITIONS: i32 = 1_000;
/// Topics one Metadata request asks for in the second test.
const AUTO_CREATED: usize = 2_000;

/// Topic names the broker lists in a Metadata response for all topics.
async fn listed_topics(bootstrap: &str) -> Vec<(String, usize)> {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config(&bootstrap).create().unwrap();
        let metadata = client.fetch_metadata(None, Duration::from_secs(30)).unwrap();
        metadata
            .topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect()
    })
    .await
    .unwrap()
}

/// Topic directories under the data dir whose name starts with `topic.`.
fn topic_dirs(broker: &Broker, topic: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(broker.data_dir.join("topics")) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{topic}.")))
        .count()
}

async fn produce_and_consume(bootstrap: &str, topic: &str, partitions: i32) {
    let sent: Vec<_> = (0..200).map(|i| record(i, 50)).collect();
    let placed = produce(&producer(bootstrap, &[]), topic, &sent).await;
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, &t, partitions, 200, &[]))
        .await
        .unwrap();
    assert_exact(&sent, &placed, &consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_runs_out_of_file_descriptors_leaves_nothing_behind() {
    let mut broker = Broker::start_with_prlimit("", GIB, &[NOFILE]);
    let bootstrap = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> = config(&bootstrap).create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));

    // More partitions than descriptors: an error comes back, not a crash.
    let huge = NewTopic::new("huge", HUGE_PARTITIONS, TopicReplication::Fixed(1));
    let results = admin.create_topics(&[huge], &opts).await.unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::KafkaStorageError,
        "{}",
        broker.log()
    );
    assert!(broker.is_running());
    assert!(
        !listed_topics(&bootstrap).await.iter().any(|(name, _)| name == "huge"),
        "the failed topic is not listed"
    );
    assert_eq!(topic_dirs(&broker, "huge"), 0, "the failed topic's directory is removed");
    let metrics = crate::common::http_get(&broker.http("/metrics")).unwrap();
    assert!(!metrics.contains("topic=\"huge\""), "no metric series for the failed topic");

    // Its descriptors were released: a small topic can be created and used.
    let small = NewTopic::new("small", 3, TopicReplication::Fixed(1));
    let results = admin.create_topics(&[small], &opts).await.unwrap();
    assert!(results[0].is_ok(), "{:?}\n{}", results[0], broker.log());
    produce_and_consume(&bootstrap, "small", 3).await;

    // Growing a topic past the limit fails the same way and leaves the
    // topic as it was; a small growth then works.
    let grown = admin
        .create_partitions(&[NewPartitions::new("small", HUGE_PARTITIONS as usize)], &opts)
        .await
        .unwrap();
    assert_eq!(grown[0].as_ref().unwrap_err().1, RDKafkaErrorCode::KafkaStorageError);
    assert!(listed_topics(&bootstrap).await.contains(&("small".to_string(), 3)));
    let grown = admin.create_partitions(&[NewPartitions::new("small", 4)], &opts).await.unwrap();
    assert!(grown[0].is_ok(), "{:?}\n{}", grown[0], broker.log());

    // The broker starts again on the same data dir under the same limit,
    // and serves the small topic.
    drop(admin);
    broker.restart();
    let bootstrap = broker.bootstrap();
    let topics = listed_topics(&bootstrap).await;
    assert!(topics.contains(&("small".to_string(), 4)), "{topics:?}");
    assert!(!topics.iter().any(|(name, _)| name == "huge"));
    // What was produced before the restart is still there, and more can
    // be produced.
    let more: Vec<_> = (200..300).map(|i| record(i, 50)).collect();
    produce(&producer(&bootstrap, &[]), "small", &more).await;
    let b = bootstrap.clone();
    let kept = tokio::task::spawn_blocking(move || consume_all(&b, "small", 4, 300, &[]))
        .await
        .unwrap();
    assert_eq!(kept.values().map(Vec::len).sum::<usize>(), 300);
}

/// The cluster state's version: it grows by one with every durable write.
fn cluster_state_version(broker: &Broker) -> u64 {
    let text = std::fs::read_to_string(broker.data_dir.join("meta/cluster.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_metadata_request_auto_creating_thousands_of_topics_writes_the_state_once() {
    let mut broker = Broker::start_limited("", GIB);
    let writes_before = metric(&broker, "sediment_coordination_writes_total");
    let version_before = cluster_state_version(&broker);
    let names: Vec<String> = (0..AUTO_CREATED).map(|i| format!("auto-{i:05}")).collect();
    let version = 9;
    let req = MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.clone())))))
            .collect(),
    ));
    let mut s = connect(&broker);
    // Creating thousands of partitions takes a while; nothing here is timed.
    s.set_read_timeout(None).unwrap();
    std::io::Write::write_all(&mut s, &request(ApiKey::Metadata, version, &req)).unwrap();
    let mut body = read_response(&mut s);
    ResponseHeader::decode(&mut body, ApiKey::Metadata.response_header_version(version)).unwrap();
    let response = MetadataResponse::decode(&mut body, version).unwrap();
    assert_eq!(response.topics.len(), AUTO_CREATED);
    for topic in &response.topics {
        assert_eq!(topic.error_code, 0, "{:?}", topic.name);
        assert_eq!(topic.partitions.len(), 1);
    }

    let versions = cluster_state_version(&broker) - version_before;
    assert!((1..=3).contains(&versions), "the cluster state changed {versions} times");
    let writes = metric(&broker, "sediment_coordination_writes_total") - writes_before;
    assert!((1.0..=3.0).contains(&writes), "{writes} cluster state writes");
    let listed = listed_topics(&broker.bootstrap()).await;
    assert_eq!(listed.iter().filter(|(n, _)| n.starts_with("auto-")).count(), AUTO_CREATED);

    // They are recorded: a restart serves them all, and a produce and
    // consume on one of them works.
    broker.restart();
    let listed = listed_topics(&broker.bootstrap()).await;
    assert_eq!(listed.iter().filter(|(n, _)| n.starts_with("auto-")).count(), AUTO_CREATED);
    produce_and_consume(&broker.bootstrap(), "auto-01234", 1).await;
}
