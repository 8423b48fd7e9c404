//! A follower's fetcher: one per leader broker, for every partition this
//! broker follows from it. It sends Kafka Fetch requests as a replica
//! (replica_id = this broker), appends the leader's batches unchanged,
//! fsyncs them, and only then fetches again: the next fetch's offset is
//! the acknowledgement the leader counts toward the high watermark.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Partition};
use crate::clock::now_ms;
use crate::config::FlushPolicy;
use crate::kafka_client::Connection;
use crate::log::batch;

/// Fetch v12: replica id in the body, last fetched epoch, diverging epoch.
const FETCH_VERSION: i16 = 12;
/// How long the leader may hold a fetch with nothing new.
const MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 8 * 1024 * 1024;
const RESPONSE_MAX_BYTES: i32 = 16 * 1024 * 1024;

/// Runs until `stop` is cancelled (the partitions or the leader changed).
pub(super) async fn run(
    broker: Arc<Broker>,
    me: i32,
    leader: i32,
    address: String,
    partitions: BTreeMap<(String, i32), i32>,
    stop: CancellationToken,
) {
    tracing::info!(leader, address = %address, partitions = partitions.len(), "following partitions");
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            _ = broker.stopping.cancelled() => return,
            outcome = fetch_loop(&broker, me, &address, &partitions, &mut attempt) => outcome,
        };
        if let Err(e) = outcome {
            tracing::warn!(leader, address = %address, error = %e, attempt, "replica fetch failed; reconnecting");
        }
        let pause = Duration::from_millis(100u64 << attempt.min(4));
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

async fn fetch_loop(
    broker: &Broker,
    me: i32,
    address: &str,
    partitions: &BTreeMap<(String, i32), i32>,
    attempt: &mut u32,
) -> anyhow::Result<()> {
    let bound = RESPONSE_MAX_BYTES as usize + broker.config.max_request_bytes;
    let security = broker.cluster.as_ref().map(|c| c.inter_broker.clone()).unwrap_or_default();
    let mut connection = Connection::connect(address, format!("sediment-replica-{me}"), Duration::from_secs(5), bound, &security).await?;
    let followed: Vec<(Arc<Partition>, i32)> = partitions
        .iter()
        .filter_map(|((topic, index), epoch)| broker.partition(topic, *index).map(|p| (p, *epoch)))
        .collect();
    loop {
        let request = request(me, &followed);
        let timeout = Duration::from_millis(MAX_WAIT_MS as u64) + Duration::from_secs(10);
        let response: FetchResponse = connection.call(ApiKey::Fetch, FETCH_VERSION, &request, timeout).await?;
        *attempt = 0;
        let mut appended = Vec::new();
        let mut refused = false;
        for topic in response.responses {
            for data in topic.partitions {
                let Some((partition, _)) = followed
                    .iter()
                    .find(|(p, _)| p.topic == topic.topic.0.as_str() && p.index == data.partition_index)
                else {
                    continue;
                };
                let epoch = partitions.get(&(partition.topic.clone(), partition.index)).copied().unwrap_or(-1);
                match apply(partition, epoch, data).await {
                    Ok(true) => appended.push(partition.clone()),
                    Ok(false) => {}
                    Err(code) => {
                        refused = true;
                        tracing::debug!(topic = %partition.topic, partition = partition.index, error_code = code, "leader refused a replica fetch");
                    }
                }
            }
        }
        // Durable before the next fetch acknowledges it.
        if broker.config.flush == FlushPolicy::Always {
            for partition in &appended {
                partition.flush(&broker.metrics).await;
            }
        }
        if refused {
            // A leader change under way: the image will restart this fetcher.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn request(me: i32, followed: &[(Arc<Partition>, i32)]) -> FetchRequest {
    let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
    for (partition, epoch) in followed {
        let (log_end, last_epoch) = partition.fetch_position();
        topics.entry(partition.topic.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(partition.index)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(log_end)
                .with_last_fetched_epoch(last_epoch)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Applies one partition's answer: truncation, data, the high watermark.
/// Ok(true) when batches were appended; Err(code) when the leader refused.
async fn apply(partition: &Partition, epoch: i32, data: kafka_protocol::messages::fetch_response::PartitionData) -> Result<bool, i16> {
    let now = now_ms();
    if data.error_code == ResponseError::OffsetOutOfRange.code() && data.log_start_offset >= 0 {
        // Behind the leader's local log start (an empty disk, or far behind):
        // start there; the archive serves what is older.
        if let Err(e) = partition.restart_at(epoch, data.log_start_offset, now) {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "cannot restart the follower log");
        }
        return Ok(false);
    }
    if data.error_code != 0 {
        return Err(data.error_code);
    }
    if data.diverging_epoch.epoch >= 0 {
        match partition.truncate_diverged(epoch, data.diverging_epoch.epoch, data.diverging_epoch.end_offset, now) {
            Ok(end) => {
                tracing::info!(topic = %partition.topic, partition = partition.index, log_end = end, "truncated to the leader's history")
            }
            Err(e) => tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "cannot truncate a diverged log"),
        }
        return Ok(false);
    }
    let mut appended = false;
    if let Some(records) = data.records.filter(|r| !r.is_empty()) {
        // The leader's log as it stores it: compacted batches have gaps.
        match batch::split_stored_batches(&records)
            .map_err(crate::log::LogError::from)
            .and_then(|b| partition.append_replicated(epoch, &b, now))
        {
            Ok(result) => appended = result.is_some_and(|r| r.next_offset > r.base_offset),
            Err(e) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "cannot append the leader's batches");
                return Err(ResponseError::KafkaStorageError.code());
            }
        }
    }
    partition.follow_high_watermark(data.high_watermark);
    Ok(appended)
}
