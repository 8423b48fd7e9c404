//! OffsetFetch: one group per request up to v7, a batch of groups from v8,
//! and from v9 a KIP-848 member's id and epoch, checked against its group
//! (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID) as Kafka does.

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::groups::group_error;
use super::{encode_response, str_bytes, RequestContext};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

/// One partition's answer, before it takes the shape of a version.
struct PartitionOffset {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    error_code: i16,
}

/// A `PartitionOffset` as the response type `$ty` of a version (v0–7 and
/// v8+ have the same fields in different types).
macro_rules! wire_partition {
    ($ty:ty, $p:expr) => {{
        let p = $p;
        <$ty>::default()
            .with_partition_index(p.partition)
            .with_committed_offset(p.offset)
            .with_committed_leader_epoch(p.leader_epoch)
            .with_metadata(p.metadata.map(str_bytes))
            .with_error_code(p.error_code)
    }};
}

/// One group's answer: its error (authorization, coordinator, member) and
/// its offsets by topic.
struct GroupOffsets {
    error_code: i16,
    topics: Vec<(TopicName, Vec<PartitionOffset>)>,
}

/// The committed offsets of `group_id`: of the named topics' partitions, or
/// (None) every one the requester may describe.
fn fetch_group(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    member: (Option<&str>, i32),
) -> GroupOffsets {
    let not_here = group_error(broker, ctx, group_id, Operation::Describe)
        .or_else(|| broker.groups.validate_offset_fetch(group_id, member.0, member.1).err());
    let entry = |topic: &str, partition: i32| {
        let committed = if not_here.is_some() {
            None
        } else {
            broker.groups.offsets.fetch(group_id, topic, partition)
        };
        PartitionOffset {
            partition,
            offset: committed.as_ref().map_or(-1, |c| c.offset),
            leader_epoch: committed.as_ref().map_or(-1, |c| c.leader_epoch),
            metadata: Some(committed.and_then(|c| c.metadata).unwrap_or_default()),
            error_code: not_here.unwrap_or(0),
        }
    };
    let topics = match topics {
        Some(named) => named
            .into_iter()
            .map(|(name, partitions)| {
                let denied = not_here.is_none() && !ctx.allowed(broker, Operation::Describe, ResourceType::Topic, name.0.as_str());
                let offsets = partitions
                    .iter()
                    .map(|p| {
                        if denied {
                            PartitionOffset {
                                partition: *p,
                                offset: -1,
                                leader_epoch: -1,
                                metadata: None,
                                error_code: ResponseError::TopicAuthorizationFailed.code(),
                            }
                        } else {
                            entry(name.0.as_str(), *p)
                        }
                    })
                    .collect();
                (name, offsets)
            })
            .collect(),
        None => {
            let all = if not_here.is_some() {
                Vec::new()
            } else {
                broker.groups.offsets.group_offsets(group_id)
            };
            let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionOffset>> = Default::default();
            // Offsets of topics the requester may not describe are left out.
            for (topic, partition, _) in all {
                if ctx.permits(broker, Operation::Describe, ResourceType::Topic, &topic) {
                    let e = entry(&topic, partition);
                    by_topic.entry(topic).or_default().push(e);
                }
            }
            by_topic.into_iter().map(|(t, ps)| (TopicName(str_bytes(t)), ps)).collect()
        }
    };
    GroupOffsets {
        error_code: not_here.unwrap_or(0),
        topics,
    }
}

pub(super) fn handle(broker: &Broker, ctx: &RequestContext, req: OffsetFetchRequest) -> Bytes {
    if ctx.api_version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g
                    .topics
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
                let member = (g.member_id.as_ref().map(|m| m.as_str()), g.member_epoch);
                let fetched = fetch_group(broker, ctx, g.group_id.0.as_str(), topics, member);
                // A group's error leaves its topics out, as in Kafka.
                let topics = if fetched.error_code == 0 { fetched.topics } else { Vec::new() };
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(fetched.error_code)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(ps.into_iter().map(|p| wire_partition!(OffsetFetchResponsePartitions, p)).collect())
                            })
                            .collect(),
                    )
            })
            .collect();
        return encode_response(ctx, &OffsetFetchResponse::default().with_groups(groups));
    }
    let topics = req
        .topics
        .as_ref()
        .map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
    let fetched = fetch_group(broker, ctx, req.group_id.0.as_str(), topics, (None, -1));
    let response = OffsetFetchResponse::default()
        // v2+ read the top-level code; v0-1 each partition's.
        .with_error_code(fetched.error_code)
        .with_topics(
            fetched
                .topics
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(ps.into_iter().map(|p| wire_partition!(OffsetFetchResponsePartition, p)).collect())
                })
                .collect(),
        );
    encode_response(ctx, &response)
}
