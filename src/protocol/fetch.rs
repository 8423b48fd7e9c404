//! Fetch: batches from the local log as stored, never past the high
//! watermark, with long polling on max.wait.ms / min.bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use super::{encode_response, error_code, RequestContext};
use crate::broker::{Broker, Partition, Topic};
use crate::log::LogError;

const READ_COMMITTED: i8 = 1;

pub(super) async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: FetchRequest) -> Bytes {
    let max_wait = Duration::from_millis((req.max_wait_ms.max(0) as u64).min(broker.config.fetch_max_wait_ms));
    let deadline = tokio::time::Instant::now() + max_wait;
    // Only appends to the partitions this fetch asks for wake it: a long
    // poll on an idle partition costs nothing to producers elsewhere.
    let watched: Vec<Arc<Partition>> = req
        .topics
        .iter()
        .filter_map(|t| broker.topic(t.topic.0.as_str()).map(|topic| (topic, t)))
        .flat_map(|(topic, t)| t.partitions.iter().filter_map(move |p| topic.partition(p.partition)))
        .collect();
    loop {
        // Register for wake-ups before reading, so an append between the
        // read and the wait is not missed.
        let mut wakeups: Vec<_> = watched.iter().map(|p| Box::pin(p.data_arrived())).collect();
        for w in &mut wakeups {
            w.as_mut().enable();
        }
        let (response, bytes, has_error, served) = read_once(broker, &req).await;
        let done = bytes >= req.min_bytes.max(0) as usize || has_error || wakeups.is_empty() || tokio::time::Instant::now() >= deadline;
        if done {
            for (topic, bytes) in served {
                topic.metrics.fetch_bytes.inc_by(bytes as u64);
            }
            return encode_response(ctx, &response);
        }
        tokio::select! {
            _ = futures::future::select_all(wakeups) => {
                broker.metrics.fetch_wakeups.inc();
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One pass over the requested partitions. Also returns the bytes served
/// per topic, counted only if this pass becomes the response.
async fn read_once(broker: &Broker, req: &FetchRequest) -> (FetchResponse, usize, bool, Vec<(Arc<Topic>, usize)>) {
    let mut remaining = (req.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes);
    let mut total = 0usize;
    let mut has_error = false;
    let mut response = FetchResponse::default();
    let mut served = Vec::new();
    for fetch_topic in &req.topics {
        let before = total;
        let name = fetch_topic.topic.0.to_string();
        let topic = broker.topic(&name);
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        for fp in &fetch_topic.partitions {
            let mut pd = PartitionData::default().with_partition_index(fp.partition);
            pd.aborted_transactions = (req.isolation_level == READ_COMMITTED).then(Vec::new);
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                pd.error_code = ResponseError::UnknownTopicOrPartition.code();
                has_error = true;
                partitions.push(pd);
                continue;
            };
            let high_watermark = partition.high_watermark();
            pd.high_watermark = high_watermark;
            pd.last_stable_offset = high_watermark;
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            let read = if limit == 0 && total > 0 {
                Ok(Bytes::new())
            } else {
                read_partition(broker, &partition, fp.fetch_offset, limit.max(1)).await
            };
            pd.log_start_offset = partition.log_start_offset().unwrap_or(-1);
            match read {
                // Only the first data in a response may exceed the limits
                // (KIP-74), so a consumer always progresses.
                Ok(bytes) if total > 0 && bytes.len() > limit => pd.records = Some(Bytes::new()),
                Ok(bytes) => {
                    total += bytes.len();
                    remaining = remaining.saturating_sub(bytes.len());
                    pd.records = Some(bytes);
                }
                Err(e) => {
                    pd.error_code = error_code::log_error(&e);
                    has_error = true;
                    if !matches!(e, crate::log::LogError::OffsetOutOfRange { .. }) {
                        tracing::warn!(topic = %name, partition = fp.partition, error = %e, "fetch read failed");
                    }
                }
            }
            partitions.push(pd);
        }
        if let (Some(t), true) = (&topic, total > before) {
            served.push((t.clone(), total - before));
        }
        response.responses.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    (response, total, has_error, served)
}

/// Reads from the local log, or from the archive below the local log's
/// start: a consumer sees one log either way.
async fn read_partition(broker: &Broker, partition: &Partition, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
    let high_watermark = partition.high_watermark();
    let local_start = partition.lock_log()?.log_start_offset();
    if offset < local_start {
        let manifest = partition.manifest();
        let archived_start = manifest.start_offset().unwrap_or(local_start);
        if offset < archived_start {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: archived_start,
                log_end: high_watermark,
            });
        }
        // An object may hold no rows past `offset` (batches that could not be
        // archived): move on to the next object rather than answer empty.
        let mut next = offset;
        while let Some(object) = manifest.find(next).filter(|o| o.first_offset < local_start) {
            let bytes = broker.archive.read(object, next, max_bytes).await.map_err(|e| {
                tracing::warn!(topic = %partition.topic, partition = partition.index, offset, error = %e, "archive read failed");
                LogError::Io(std::io::Error::other(e.to_string()))
            })?;
            if !bytes.is_empty() {
                return Ok(bytes);
            }
            next = object.last_offset + 1;
        }
        // A gap between the archive and the local log: continue locally.
        return partition.lock_log()?.read(local_start, max_bytes, high_watermark);
    }
    partition.lock_log()?.read(offset, max_bytes, high_watermark)
}
