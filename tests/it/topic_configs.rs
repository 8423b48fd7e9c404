//! Topic configs as Kafka 4.0 has them: every one round-trips through the
//! admin APIs with Kafka's validation (kafka-python), and those Sediment
//! applies change what it stores (librdkafka).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

use crate::common::{run_python, Broker};
use crate::kafka::{assert_exact, consume_all, create_topic, produce, producer, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kafka_topic_config_round_trips_and_invalid_values_get_kafkas_message() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    let out = tokio::task::spawn_blocking(move || run_python("kafka_python_topic_configs.py", &[&bootstrap]))
        .await
        .unwrap();
    assert!(out.contains("OK 34 configs"), "{out}");
}

/// The codec of the first batch in the partition's first segment file.
fn stored_codec(broker: &Broker, topic: &str) -> i16 {
    let dir = broker.partition_dir(topic, 0);
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .min()
        .unwrap();
    let bytes = std::fs::read(segment).unwrap();
    assert!(bytes.len() > 61, "the segment holds a batch");
    i16::from_be_bytes([bytes[21], bytes[22]]) & 0x07
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_type_recompresses_and_timestamp_bounds_refuse_records() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();

    // compression.type=zstd: an uncompressed producer's batches are stored
    // as zstd, and read back exactly.
    create_topic(
        &bootstrap,
        "stored-zstd",
        1,
        &[("compression.type", "zstd"), ("compression.zstd.level", "7")],
    )
    .await;
    let sent: Vec<_> = (0..2000).map(|i| record(i, 100)).collect();
    let placed = produce(&producer(&bootstrap, &[("compression.type", "none")]), "stored-zstd", &sent).await;
    assert_eq!(stored_codec(&broker, "stored-zstd"), 4, "stored as zstd");
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "stored-zstd", 1, 2000, &[]))
        .await
        .unwrap();
    assert_exact(&sent, &placed, &consumed);
    // compression.type=producer (the default) keeps the producer's codec.
    create_topic(&bootstrap, "as-sent", 1, &[]).await;
    produce(&producer(&bootstrap, &[("compression.type", "lz4")]), "as-sent", &sent[..100]).await;
    assert_eq!(stored_codec(&broker, "as-sent"), 3, "kept as lz4");

    // message.timestamp.after.max.ms defaults to an hour, as in Kafka 4.0.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    create_topic(&bootstrap, "timely", 1, &[("message.timestamp.before.max.ms", "86400000")]).await;
    let p = producer(&bootstrap, &[("message.timeout.ms", "10000")]);
    let at = |ts: i64| FutureRecord::<[u8], [u8]>::to("timely").key(b"k").payload(b"v").timestamp(ts);
    for (what, ts) in [("two hours ahead", now + 7_200_000), ("two days old", now - 172_800_000)] {
        match p.send(at(ts), Duration::from_secs(10)).await {
            Err((KafkaError::MessageProduction(code), _)) => assert_eq!(code, RDKafkaErrorCode::InvalidTimestamp, "{what}"),
            other => panic!("a record {what} must get INVALID_TIMESTAMP, got {other:?}"),
        }
    }
    let p = producer(&bootstrap, &[]);
    assert!(
        p.send(at(now - 3_600_000), Duration::from_secs(10)).await.is_ok(),
        "an hour old is within a day"
    );
    // LogAppendTime topics ignore the producer's timestamps.
    create_topic(&bootstrap, "stamped", 1, &[("message.timestamp.type", "LogAppendTime")]).await;
    let old = FutureRecord::<[u8], [u8]>::to("stamped").payload(b"v").timestamp(1_000);
    assert!(p.send(old, Duration::from_secs(10)).await.is_ok());
}
