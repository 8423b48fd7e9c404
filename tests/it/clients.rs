//! Real clients produce and consume through the broker and get back exactly
//! what they sent.

use crate::common::{run_python, Broker};
use crate::kafka::{assert_exact, consume_all, create_topic, produce, producer, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_idempotent_acks_all_round_trips_100k_keyed_records_exactly() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "orders", 3, &[]).await;
    let sent: Vec<_> = (0..100_000).map(|i| record(i, 40)).collect();
    let placed = produce(&producer(&bootstrap, &[]), "orders", &sent).await;
    let partitions_used: std::collections::BTreeSet<i32> = placed.iter().map(|p| p.0).collect();
    assert_eq!(partitions_used.len(), 3, "keys spread over all partitions");
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "orders", 3, 100_000, &[]))
        .await
        .unwrap();
    assert_exact(&sent, &placed, &consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_round_trip_with_every_codec() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("compressed-{codec}");
        create_topic(&bootstrap, &topic, 2, &[]).await;
        let sent: Vec<_> = (0..5_000).map(|i| record(i, 200)).collect();
        let placed = produce(&producer(&bootstrap, &[("compression.type", codec)]), &topic, &sent).await;
        let b = bootstrap.clone();
        let t = topic.clone();
        let consumed = tokio::task::spawn_blocking(move || consume_all(&b, &t, 2, 5_000, &[]))
            .await
            .unwrap();
        assert_exact(&sent, &placed, &consumed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_record_round_trips() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "big", 1, &[("max.message.bytes", "4194304")]).await;
    let sent: Vec<_> = (0..3).map(|i| record(i, 1 << 20)).collect();
    let placed = produce(
        &producer(&bootstrap, &[("message.max.bytes", "4194304"), ("batch.size", "4194304")]),
        "big",
        &sent,
    )
    .await;
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "big", 1, 3, &[("fetch.message.max.bytes", "1048576")]))
        .await
        .unwrap();
    assert_exact(&sent, &placed, &consumed);
    assert!(consumed[&0].iter().all(|(_, r)| r.value.as_ref().unwrap().len() == 1 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batch_is_refused_with_message_too_large() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "small", 1, &[("max.message.bytes", "1000")]).await;
    let p = producer(&bootstrap, &[("message.max.bytes", "4194304")]);
    let big = record(0, 5000);
    let err = p
        .send(
            rdkafka::producer::FutureRecord::<[u8], [u8]>::to("small").payload(big.value.as_deref().unwrap()),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.0.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge),
        "{err:?}"
    );
}

#[test]
fn kafka_python_round_trips_keyed_records_and_codecs() {
    let broker = Broker::start("");
    let out = run_python("kafka_python_roundtrip.py", &[&broker.bootstrap(), "100000"]);
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn kcat_round_trips_keyed_records() {
    let broker = Broker::start("");
    let out = run_python("kcat_roundtrip.py", &[&broker.bootstrap(), "100000"]);
    assert!(out.contains("OK"), "{out}");
}
