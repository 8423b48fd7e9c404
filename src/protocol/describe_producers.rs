//! DescribeProducers (61): the idempotent and transactional producers a
//! partition's leader knows, with the start of each one's open transaction
//! (what `kafka-transactions.sh find-hanging` looks for). Needs READ on the
//! topic, as in Kafka.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{encode_response, RequestContext};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub(super) fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeProducersRequest) -> Bytes {
    let mut response = DescribeProducersResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let allowed = ctx.allowed(broker, Operation::Read, ResourceType::Topic, &name);
        let topic = broker.topic(&name);
        let partitions = t
            .partition_indexes
            .iter()
            .map(|index| {
                let result = PartitionResponse::default().with_partition_index(*index);
                let partition = topic.as_ref().and_then(|topic| topic.partition(*index));
                let outcome = match &partition {
                    _ if !allowed => Err(ResponseError::TopicAuthorizationFailed),
                    None => Err(ResponseError::UnknownTopicOrPartition),
                    Some(p) if p.leader_epoch().is_none() => Err(ResponseError::NotLeaderOrFollower),
                    Some(p) => Ok(active_producers(p)),
                };
                match outcome {
                    Ok(producers) => result.with_active_producers(producers),
                    Err(error) => result
                        .with_error_code(error.code())
                        .with_error_message(Some(super::str_bytes(error_message(error)))),
                }
            })
            .collect();
        response
            .topics
            .push(TopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    encode_response(ctx, &response)
}

fn error_message(error: ResponseError) -> &'static str {
    match error {
        ResponseError::TopicAuthorizationFailed => "Topic authorization failed.",
        ResponseError::NotLeaderOrFollower => "This broker does not lead the partition.",
        _ => "This server does not host this topic-partition.",
    }
}

fn active_producers(partition: &crate::broker::Partition) -> Vec<ProducerState> {
    // A short critical section: the table is copied out, then encoded.
    let producers = partition.lock_log().active_producers();
    producers
        .into_iter()
        .map(|(p, open_since)| {
            ProducerState::default()
                .with_producer_id(ProducerId(p.producer_id))
                .with_producer_epoch(p.epoch as i32)
                .with_last_sequence(p.last_sequence)
                .with_last_timestamp(p.last_timestamp)
                // The coordinator's epoch is not kept per partition.
                .with_coordinator_epoch(-1)
                .with_current_txn_start_offset(open_since.unwrap_or(-1))
        })
        .collect()
}
