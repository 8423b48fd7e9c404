//! DeleteRecords with librdkafka against a broker archiving to a real S3
//! server: the log start moves for every reader, survives a restart, and
//! the archive follows (objects wholly below the start leave the bucket).

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, FetchResponse};
use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::archive::{archive_config, read_bucket_with_pyarrow, wait_for_tiering};
use crate::bad_input::{call, fetch_request};
use crate::common::Broker;
use crate::kafka::{config, consume_all, create_topic, produce, producer, record};
use crate::s3::S3Server;

/// DeleteRecords through librdkafka: per partition, the new low watermark
/// or the error.
async fn delete_records(bootstrap: &str, topic: &str, partition: i32, offset: Offset) -> Result<i64, RDKafkaErrorCode> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, offset).unwrap();
    let result = admin.delete_records(&list, &AdminOptions::new()).await.unwrap();
    let element = result.elements_for_topic(topic).into_iter().next().unwrap();
    match element.error() {
        Ok(()) => Ok(element.offset().to_raw().unwrap()),
        Err(rdkafka::error::KafkaError::OffsetFetch(code)) => Err(code),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn low_watermark(bootstrap: &str, topic: &str) -> (i64, i64) {
    let consumer: BaseConsumer = config(bootstrap).create().unwrap();
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_for_every_reader_and_the_archive_follows() {
    let s3 = S3Server::start();
    let mut broker = Broker::start_with_env(&archive_config("trim"), &s3.env());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "trim", 1, &[]).await;
    let records: Vec<_> = (0..20_000).map(|i| record(i, 40)).collect();
    produce(&producer(&bootstrap, &[]), "trim", &records).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 20_000.0));

    const START: i64 = 12_345;
    assert_eq!(delete_records(&bootstrap, "trim", 0, Offset::Offset(START)).await, Ok(START));
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(low_watermark(&b, "trim"), (START, 20_000));
        // A consumer from the beginning starts at the new start.
        let consumed = consume_all(&b, "trim", 1, 20_000 - START as usize, &[]);
        let offsets: Vec<i64> = consumed[&0].iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (START..20_000).collect::<Vec<_>>());
        for (offset, r) in &consumed[&0] {
            assert_eq!(r, &records[*offset as usize]);
        }
    })
    .await
    .unwrap();
    // Below the start is out of range, whether archived or local.
    let below: FetchResponse = call(&broker, ApiKey::Fetch, 12, &fetch_request("trim", 100, 0, 1 << 20));
    let answer = &below.responses[0].partitions[0];
    assert_eq!(answer.error_code, ResponseError::OffsetOutOfRange.code());
    assert_eq!(answer.log_start_offset, START);
    // The bucket no longer holds the objects wholly below the start; the
    // one that straddles it stays whole (docs/archive-format.md).
    let rows = tokio::task::block_in_place(|| read_bucket_with_pyarrow(&s3, "trim", "trim"));
    let lowest = rows.keys().map(|(_, o)| *o).min().unwrap();
    assert!(lowest > 0 && lowest <= START, "lowest archived offset {lowest}");
    assert!((START..20_000).all(|o| rows.contains_key(&(0, o))));

    // The start is durable: the local log still begins below it.
    broker.restart();
    let b = bootstrap.clone();
    let after_restart = tokio::task::spawn_blocking(move || low_watermark(&b, "trim")).await.unwrap();
    assert_eq!(after_restart, (START, 20_000));

    // Kafka's refusals.
    let past_end = delete_records(&bootstrap, "trim", 0, Offset::Offset(20_001)).await;
    assert_eq!(past_end, Err(RDKafkaErrorCode::OffsetOutOfRange));
    let backwards = delete_records(&bootstrap, "trim", 0, Offset::Offset(10)).await;
    assert_eq!(backwards, Ok(START), "the start never moves back");
    create_topic(&bootstrap, "table", 1, &[("cleanup.policy", "compact")]).await;
    let compacted = delete_records(&bootstrap, "table", 0, Offset::End).await;
    assert_eq!(compacted, Err(RDKafkaErrorCode::PolicyViolation));

    // Offset::End (-1) deletes up to the high watermark; the log goes on.
    assert_eq!(delete_records(&bootstrap, "trim", 0, Offset::End).await, Ok(20_000));
    let more: Vec<_> = (20_000..20_010).map(|i| record(i, 40)).collect();
    produce(&producer(&bootstrap, &[]), "trim", &more).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(low_watermark(&b, "trim"), (20_000, 20_010));
        let consumed = consume_all(&b, "trim", 1, 10, &[]);
        assert_eq!(consumed[&0].first().map(|(o, _)| *o), Some(20_000));
    })
    .await
    .unwrap();
}
