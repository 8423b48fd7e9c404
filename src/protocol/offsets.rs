//! ListOffsets (earliest, latest, max timestamp, by timestamp) and
//! InitProducerId for idempotent producers.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{encode_response, error_code, RequestContext};
use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(super) fn handle_list_offsets(broker: &Broker, ctx: &RequestContext, req: ListOffsetsRequest) -> Bytes {
    let mut response = ListOffsetsResponse::default();
    for topic in req.topics {
        let found = broker.topic(topic.name.0.as_str());
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                let Some(partition) = found.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                    return out.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                let high_watermark = partition.high_watermark();
                let log = match partition.lock_log() {
                    Ok(log) => log,
                    Err(e) => return out.with_error_code(error_code::log_error(&e)),
                };
                let (offset, timestamp) = match p.timestamp {
                    LATEST => (high_watermark, -1),
                    EARLIEST => (log.log_start_offset(), -1),
                    MAX_TIMESTAMP => match log.max_timestamp() {
                        Ok(Some((ts, offset))) if offset < high_watermark => (offset, ts),
                        Ok(_) => (-1, -1),
                        Err(e) => return out.with_error_code(error_code::log_error(&e)),
                    },
                    ts if ts < 0 => return out.with_error_code(ResponseError::InvalidRequest.code()),
                    ts => match log.offset_for_timestamp(ts) {
                        Ok(Some((offset, found_ts))) if offset < high_watermark => (offset, found_ts),
                        Ok(_) => (-1, -1),
                        Err(e) => return out.with_error_code(error_code::log_error(&e)),
                    },
                };
                let out = out.with_offset(offset).with_timestamp(timestamp);
                // leader_epoch exists from v4 on; the codec refuses it below.
                if ctx.api_version >= 4 {
                    out.with_leader_epoch(broker.leader_epoch)
                } else {
                    out
                }
            })
            .collect();
        response.topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    encode_response(ctx, &response)
}

pub(super) async fn handle_init_producer_id(broker: &Arc<Broker>, ctx: &RequestContext, req: InitProducerIdRequest) -> Bytes {
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        // Transactions are not implemented (docs/compatibility.md).
        response.error_code = ResponseError::UnsupportedVersion.code();
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
