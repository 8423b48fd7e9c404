//! DeleteRecords (21): the partition's leader moves its log start up
//! (crate::broker::delete_records). Needs DELETE on the topic.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::{encode_response, RequestContext};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub(super) async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteRecordsRequest) -> Bytes {
    let mut response = DeleteRecordsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let allowed = ctx.allowed(broker, Operation::Delete, ResourceType::Topic, &name);
        let topic = broker.topic(&name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let partition = topic.as_ref().and_then(|topic| topic.partition(p.partition_index));
            let outcome = match (&topic, partition) {
                _ if !allowed => Err(ResponseError::TopicAuthorizationFailed),
                (Some(topic), Some(partition)) => broker.delete_records(topic, &partition, p.offset).await,
                _ => Err(ResponseError::UnknownTopicOrPartition),
            };
            partitions.push(match outcome {
                Ok(start) => result.with_low_watermark(start),
                Err(e) => result.with_error_code(e.code()),
            });
        }
        response
            .topics
            .push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    encode_response(ctx, &response)
}
