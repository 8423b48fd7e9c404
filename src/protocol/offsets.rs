//! ListOffsets (earliest, latest, max timestamp, by timestamp),
//! OffsetForLeaderEpoch, and InitProducerId for idempotent producers.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProducerId,
};
use kafka_protocol::ResponseError;

use super::{encode_response, error_code, RequestContext};
use crate::broker::{Broker, Partition};
use crate::log::records::Limits;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(super) async fn handle_list_offsets(broker: &Broker, ctx: &RequestContext, req: ListOffsetsRequest) -> Bytes {
    let mut response = ListOffsetsResponse::default();
    for topic in req.topics {
        let found = broker.topic(topic.name.0.as_str());
        let allowed = ctx.allowed(broker, Operation::Describe, ResourceType::Topic, topic.name.0.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            if !allowed {
                partitions.push(out.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let Some(partition) = found.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                partitions.push(out.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            // Only the leader answers, at the epoch the client knows (KIP-320).
            let leader_epoch = match partition.lead_at(p.current_leader_epoch) {
                Ok(epoch) => epoch,
                Err(refusal) => {
                    partitions.push(out.with_error_code(refusal.code()));
                    continue;
                }
            };
            let limits = found
                .as_ref()
                .map(|t| broker.validator.limits(t.config().log_config().max_message_bytes))
                .unwrap_or(broker.validator.limits(0));
            let read_committed = req.isolation_level == 1;
            let out = match list_one(broker, &partition, p.timestamp, limits, read_committed).await {
                Ok((offset, timestamp)) => out.with_offset(not_deleted(&partition, offset)).with_timestamp(timestamp),
                Err(code) => out.with_error_code(code),
            };
            // leader_epoch exists from v4 on; the codec refuses it below.
            partitions.push(if ctx.api_version >= 4 {
                out.with_leader_epoch(leader_epoch)
            } else {
                out
            });
        }
        response.topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    encode_response(ctx, &response)
}

/// A found offset below the start DeleteRecords set moves up to that start
/// (the record found there may be older than asked: the search does not
/// skip deleted records).
fn not_deleted(partition: &Partition, offset: i64) -> i64 {
    match partition.manifest().log_start_offset {
        Some(start) if offset >= 0 && offset < start => start,
        _ => offset,
    }
}

/// (offset, timestamp) for one partition and ListOffsets timestamp.
async fn list_one(broker: &Broker, partition: &Partition, timestamp: i64, limits: Limits, read_committed: bool) -> Result<(i64, i64), i16> {
    // read_committed consumers see the log up to the last stable offset.
    let high_watermark = if read_committed {
        partition.last_stable_offset()
    } else {
        partition.high_watermark()
    };
    let found = |r: Result<Option<(i64, i64)>, crate::log::LogError>| match r {
        Ok(Some((offset, ts))) if offset < high_watermark => Ok((offset, ts)),
        Ok(_) => Ok((-1, -1)),
        Err(e) => Err(error_code::log_error(&e)),
    };
    match timestamp {
        LATEST => Ok((high_watermark, -1)),
        EARLIEST => partition.log_start_offset().map(|o| (o, -1)).map_err(|e| error_code::log_error(&e)),
        MAX_TIMESTAMP => {
            let local = partition.max_timestamp(limits).await;
            let archived = partition.manifest().objects.iter().map(|o| o.max_timestamp).max();
            match (found(local)?, archived) {
                ((-1, _), Some(ts)) => archived_offset_for(broker, partition, ts).await,
                ((o, local_ts), Some(ts)) if ts > local_ts => {
                    archived_offset_for(broker, partition, ts)
                        .await
                        .map(|r| if r.0 < 0 { (o, local_ts) } else { r })
                }
                (local, _) => Ok(local),
            }
        }
        ts if ts < 0 => Err(ResponseError::InvalidRequest.code()),
        ts => {
            // The archive holds the older records: look there first.
            let archived = archived_offset_for(broker, partition, ts).await?;
            if archived.0 >= 0 {
                return Ok(archived);
            }
            found(partition.offset_for_timestamp(ts, limits).await)
        }
    }
}

/// The first archived record with a timestamp >= `timestamp`, or (-1, -1).
async fn archived_offset_for(broker: &Broker, partition: &Partition, timestamp: i64) -> Result<(i64, i64), i16> {
    let manifest = partition.manifest();
    let local_start = partition.lock_log().log_start_offset();
    for object in manifest
        .objects
        .iter()
        .filter(|o| o.max_timestamp >= timestamp && o.first_offset < local_start)
    {
        match broker.archive.offset_for_timestamp(object, timestamp).await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "archive read failed");
                return Err(ResponseError::KafkaStorageError.code());
            }
        }
    }
    Ok((-1, -1))
}

pub(super) async fn handle_init_producer_id(broker: &Arc<Broker>, ctx: &RequestContext, req: InitProducerIdRequest) -> Bytes {
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(transactional_id) = req.transactional_id.clone() {
        return super::transactions::handle_init(broker, ctx, req, transactional_id.0.as_str()).await;
    }
    // Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    let may_write = ctx.permits(broker, Operation::IdempotentWrite, ResourceType::Cluster, CLUSTER_NAME)
        || broker
            .topics()
            .iter()
            .any(|t| ctx.permits(broker, Operation::Write, ResourceType::Topic, &t.name));
    if !may_write {
        ctx.on_cluster(broker, Operation::IdempotentWrite);
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return encode_response(ctx, &response);
    }
    // KIP-360: an idempotent producer may ask to bump its own epoch.
    if req.producer_id.0 >= 0
        && req.producer_epoch >= 0
        && req.producer_epoch < i16::MAX - 1
        && broker.issued_producer_id(req.producer_id.0).await
    {
        response.producer_id = req.producer_id;
        response.producer_epoch = req.producer_epoch + 1;
        return encode_response(ctx, &response);
    }
    match broker.next_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => {
            tracing::warn!(error = %e, "producer id allocation failed");
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    encode_response(ctx, &response)
}

/// OffsetForLeaderEpoch (API 23): where each asked epoch ended in the
/// leader's log (KIP-101; clients validate their position after a leader
/// change with it, KIP-320).
pub(super) fn handle_offset_for_leader_epoch(broker: &Broker, ctx: &RequestContext, req: OffsetForLeaderEpochRequest) -> Bytes {
    let mut response = OffsetForLeaderEpochResponse::default();
    // A follower (replica_id >= 0) needs CLUSTER_ACTION; a consumer DESCRIBE.
    let replica = req.replica_id.0 >= 0;
    let cluster_action = replica && ctx.on_cluster(broker, Operation::ClusterAction);
    for topic in req.topics {
        let found = broker.topic(topic.topic.0.as_str());
        let allowed = if replica {
            cluster_action
        } else {
            ctx.allowed(broker, Operation::Describe, ResourceType::Topic, topic.topic.0.as_str())
        };
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let out = EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1);
                if !allowed {
                    return out.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                }
                let Some(partition) = found.as_ref().and_then(|t| t.partition(p.partition)) else {
                    return out.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                match partition.end_offset_for_epoch(p.current_leader_epoch, p.leader_epoch) {
                    Ok((epoch, end)) => out.with_leader_epoch(epoch).with_end_offset(end),
                    Err(e) => out.with_error_code(e.code()),
                }
            })
            .collect();
        response.topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions),
        );
    }
    encode_response(ctx, &response)
}
