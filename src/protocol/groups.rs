//! Consumer-group APIs (classic protocol) and committed offsets.

use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::groups::coordinator::CommitFrom;
use crate::groups::offsets::CommittedOffset;
use crate::groups::state_machine::{JoinInput, SyncInput};

/// In a cluster, a group's requests go to the leader of its offsets
/// partition: elsewhere they get NOT_COORDINATOR (or
/// COORDINATOR_LOAD_IN_PROGRESS while it loads), and the client asks
/// FindCoordinator again.
fn coordinator_error(broker: &Broker, group: &str) -> Option<i16> {
    broker.cluster.as_ref()?.offsets.group_error(group)
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// GROUP_AUTHORIZATION_FAILED when the requester may not do `operation`
/// on the group, else the coordinator's error, if any.
pub(super) fn group_error(broker: &Broker, ctx: &RequestContext, group: &str, operation: Operation) -> Option<i16> {
    if !ctx.allowed(broker, operation, ResourceType::Group, group) {
        return Some(ResponseError::GroupAuthorizationFailed.code());
    }
    coordinator_error(broker, group)
}

/// Most bytes of protocol names and metadata one JoinGroup member may
/// bring, and of one member's assignment in a SyncGroup: a member's are kept
/// while it is in the group. Kafka has no such check, but writes a group's
/// whole metadata as one record of `__consumer_offsets`, whose 1 MiB
/// message limit fails a rebalance of a group that holds more.
pub const MEMBER_METADATA_MAX_BYTES: usize = 1 << 20;

/// A copy of `bytes`: what a group keeps must not hold the whole request
/// frame it was sliced from.
fn owned(bytes: &Bytes) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

pub(super) async fn handle_join(broker: &Arc<Broker>, ctx: &RequestContext, req: JoinGroupRequest) -> Bytes {
    let metadata_bytes: usize = req.protocols.iter().map(|p| p.name.len() + p.metadata.len()).sum();
    if metadata_bytes > MEMBER_METADATA_MAX_BYTES {
        let response = JoinGroupResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_generation_id(-1)
            .with_protocol_name(Some(str_bytes("")))
            .with_member_id(req.member_id.clone());
        return encode_response(ctx, &response);
    }
    let input = JoinInput {
        member_id: req.member_id.to_string(),
        group_instance_id: opt_string(&req.group_instance_id),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms as i64,
        // v0 had no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if ctx.api_version == 0 {
            req.session_timeout_ms as i64
        } else {
            req.rebalance_timeout_ms as i64
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), owned(&p.metadata))).collect(),
        require_known_member_id: ctx.api_version >= 4,
    };
    if let Some(code) = group_error(broker, ctx, req.group_id.0.as_str(), Operation::Read) {
        let response = JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_protocol_name(Some(str_bytes("")))
            .with_member_id(req.member_id.clone());
        return encode_response(ctx, &response);
    }
    let out = broker
        .groups
        .join(
            req.group_id.0.as_str(),
            input,
            &super::consumer_groups::BrokerTopics { broker, ctx },
        )
        .await;
    let response = JoinGroupResponse::default()
        .with_error_code(out.error_code)
        .with_generation_id(out.generation_id)
        // v7+ carries the protocol type; older versions need a non-null name.
        .with_protocol_type(out.protocol_type.map(str_bytes))
        .with_protocol_name(Some(str_bytes(out.protocol_name.unwrap_or_default())))
        .with_leader(str_bytes(out.leader))
        .with_member_id(str_bytes(out.member_id))
        .with_members(
            out.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    encode_response(ctx, &response)
}

pub(super) async fn handle_sync(broker: &Arc<Broker>, ctx: &RequestContext, req: SyncGroupRequest) -> Bytes {
    if req.assignments.iter().any(|a| a.assignment.len() > MEMBER_METADATA_MAX_BYTES) {
        return encode_response(
            ctx,
            &SyncGroupResponse::default().with_error_code(ResponseError::InvalidRequest.code()),
        );
    }
    let input = SyncInput {
        member_id: req.member_id.to_string(),
        group_instance_id: opt_string(&req.group_instance_id),
        generation_id: req.generation_id,
        protocol_type: opt_string(&req.protocol_type),
        protocol_name: opt_string(&req.protocol_name),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), owned(&a.assignment)))
            .collect(),
    };
    if let Some(code) = group_error(broker, ctx, req.group_id.0.as_str(), Operation::Read) {
        return encode_response(ctx, &SyncGroupResponse::default().with_error_code(code));
    }
    let out = broker.groups.sync(req.group_id.0.as_str(), input).await;
    let response = SyncGroupResponse::default()
        .with_error_code(out.error_code)
        .with_protocol_type(out.protocol_type.map(str_bytes))
        .with_protocol_name(out.protocol_name.map(str_bytes))
        .with_assignment(out.assignment);
    encode_response(ctx, &response)
}

pub(super) fn handle_heartbeat(broker: &Broker, ctx: &RequestContext, req: HeartbeatRequest) -> Bytes {
    if let Some(code) = group_error(broker, ctx, req.group_id.0.as_str(), Operation::Read) {
        return encode_response(ctx, &HeartbeatResponse::default().with_error_code(code));
    }
    let code = broker.groups.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        req.generation_id,
    );
    encode_response(ctx, &HeartbeatResponse::default().with_error_code(code))
}

pub(super) fn handle_leave(broker: &Broker, ctx: &RequestContext, req: LeaveGroupRequest) -> Bytes {
    if let Some(code) = group_error(broker, ctx, req.group_id.0.as_str(), Operation::Read) {
        return encode_response(ctx, &LeaveGroupResponse::default().with_error_code(code));
    }
    // v0-2 leave one member by id; v3+ a batch of identities.
    let members: Vec<(String, Option<String>)> = if ctx.api_version < 3 {
        vec![(req.member_id.to_string(), None)]
    } else {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id)))
            .collect()
    };
    let codes = broker.groups.leave(req.group_id.0.as_str(), &members);
    let mut response = LeaveGroupResponse::default();
    if ctx.api_version < 3 {
        response.error_code = codes.first().copied().unwrap_or(0);
    } else {
        response.members = members
            .into_iter()
            .zip(codes)
            .map(|((id, instance), code)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(id))
                    .with_group_instance_id(instance.map(str_bytes))
                    .with_error_code(code)
            })
            .collect();
    }
    encode_response(ctx, &response)
}

pub(super) async fn handle_offset_commit(broker: &Arc<Broker>, ctx: &RequestContext, req: OffsetCommitRequest) -> Bytes {
    let group_id = req.group_id.0.to_string();
    let check = match group_error(broker, ctx, &group_id, Operation::Read) {
        Some(code) => Err(code),
        None => Ok(()),
    };
    let check = check.and_then(|()| {
        broker.groups.validate_commit(
            &group_id,
            &CommitFrom {
                member_id: req.member_id.as_str(),
                instance_id: req.group_instance_id.as_ref().map(|s| s.as_str()),
                generation_id: req.generation_id_or_member_epoch,
                api_version: ctx.api_version,
                transactional: false,
            },
        )
    });
    let now = now_ms();
    let metadata_max_bytes = broker.groups.offset_metadata_max_bytes();
    let mut to_store = Vec::new();
    let mut response = OffsetCommitResponse::default();
    for topic in &req.topics {
        let known = broker.topic(topic.name.0.as_str());
        let readable = check.is_err() || ctx.allowed(broker, Operation::Read, ResourceType::Topic, topic.name.0.as_str());
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let code = match (&check, &known) {
                (Err(code), _) => *code,
                (Ok(()), _) if !readable => ResponseError::TopicAuthorizationFailed.code(),
                (Ok(()), None) => ResponseError::UnknownTopicOrPartition.code(),
                (Ok(()), Some(t)) if t.partition(p.partition_index).is_none() => ResponseError::UnknownTopicOrPartition.code(),
                // Kafka's offset.metadata.max.bytes (Kafka counts UTF-16 units,
                // we count bytes): an unbounded string would be kept in
                // memory and in meta/offsets.jsonl.
                (Ok(()), Some(_)) if p.committed_metadata.as_ref().is_some_and(|m| m.len() > metadata_max_bytes) => {
                    ResponseError::OffsetMetadataTooLarge.code()
                }
                (Ok(()), Some(_)) => {
                    let value = CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: opt_string(&p.committed_metadata),
                        commit_timestamp_ms: now,
                    };
                    to_store.push((topic.name.0.to_string(), p.partition_index, value));
                    0
                }
            };
            partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        response.topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    if !to_store.is_empty() {
        if let Err(e) = broker.groups.offsets.commit(&group_id, to_store).await {
            tracing::error!(group = %group_id, error = %e, "offset commit failed to persist");
            for topic in &mut response.topics {
                for p in &mut topic.partitions {
                    if p.error_code == 0 {
                        p.error_code = ResponseError::CoordinatorNotAvailable.code();
                    }
                }
            }
        }
    }
    encode_response(ctx, &response)
}

pub(super) fn handle_list_groups(broker: &Broker, ctx: &RequestContext, req: ListGroupsRequest) -> Bytes {
    let filter: Vec<String> = req.states_filter.iter().map(|s| s.to_string().to_ascii_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_string().to_ascii_lowercase()).collect();
    let see_all = ctx.permits(broker, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME);
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| filter.is_empty() || filter.contains(&g.state.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .filter(|g| coordinator_error(broker, &g.group_id).is_none())
        // Kafka: all groups with DESCRIBE on the cluster, else those the
        // requester may describe.
        .filter(|g| see_all || ctx.permits(broker, Operation::Describe, ResourceType::Group, &g.group_id))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_group_state(str_bytes(g.state))
                .with_group_type(str_bytes(g.group_type))
        })
        .collect();
    encode_response(ctx, &ListGroupsResponse::default().with_groups(groups))
}

pub(super) fn handle_describe_groups(broker: &Broker, ctx: &RequestContext, req: DescribeGroupsRequest) -> Bytes {
    let groups = req
        .groups
        .iter()
        .map(|id| {
            if let Some(code) = group_error(broker, ctx, id.0.as_str(), Operation::Describe) {
                return DescribedGroup::default().with_group_id(id.clone()).with_error_code(code);
            }
            let g = broker.groups.describe(id.0.as_str());
            if g.group_type == "consumer" {
                // Not a classic group: Kafka answers Dead (ConsumerGroupDescribe
                // describes it).
                return DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(str_bytes("Dead"));
            }
            DescribedGroup::default()
                .with_group_id(id.clone())
                .with_group_state(str_bytes(g.state))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_protocol_data(str_bytes(g.protocol_name))
                .with_members(
                    g.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                .with_client_id(str_bytes(m.client_id))
                                .with_client_host(str_bytes(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    encode_response(ctx, &DescribeGroupsResponse::default().with_groups(groups))
}

pub(super) async fn handle_delete_groups(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteGroupsRequest) -> Bytes {
    let mut response = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let code = match group_error(broker, ctx, id.0.as_str(), Operation::Delete) {
            Some(code) => code,
            None => broker.groups.delete(id.0.as_str()).await.err().unwrap_or(0),
        };
        response
            .results
            .push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    encode_response(ctx, &response)
}

pub(super) async fn handle_offset_delete(broker: &Arc<Broker>, ctx: &RequestContext, req: OffsetDeleteRequest) -> Bytes {
    let group_id = req.group_id.0.to_string();
    let mut response = OffsetDeleteResponse::default();
    if let Some(code) = group_error(broker, ctx, &group_id, Operation::Delete) {
        response.error_code = code;
        return encode_response(ctx, &response);
    }
    let group = broker.groups.describe(&group_id);
    if group.state == "Dead" {
        response.error_code = ResponseError::GroupIdNotFound.code();
        return encode_response(ctx, &response);
    }
    // Kafka's rules: an empty group loses any offsets; a consumer group
    // with members keeps those of the topics it subscribes to
    // (GROUP_SUBSCRIBED_TO_TOPIC); any other group with members refuses.
    let subscribed = if let Some(topics) = group.subscribed_topics {
        // A KIP-848 group: the topics its members subscribe to now.
        Some(topics.into_iter().collect())
    } else if group.members.is_empty() {
        Some(std::collections::HashSet::new())
    } else if group.protocol_type == "consumer" {
        subscribed_topics(&group.members)
    } else {
        response.error_code = ResponseError::NonEmptyGroup.code();
        return encode_response(ctx, &response);
    };
    let mut doomed = Vec::new();
    for t in &req.topics {
        let topic = t.name.0.as_str();
        let readable = ctx.allowed(broker, Operation::Read, ResourceType::Topic, topic);
        // Unknown subscriptions (undecodable metadata) count as subscribed.
        let in_use = subscribed.as_ref().is_none_or(|topics| topics.contains(topic));
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let out = OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index);
                if !readable {
                    return out.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                }
                if in_use {
                    return out.with_error_code(ResponseError::GroupSubscribedToTopic.code());
                }
                doomed.push((topic.to_string(), p.partition_index));
                out
            })
            .collect();
        response.topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    if let Err(e) = broker.groups.offsets.delete(&group_id, doomed).await {
        tracing::error!(group = %group_id, error = %e, "offset delete failed to persist");
        response.error_code = ResponseError::CoordinatorNotAvailable.code();
    }
    encode_response(ctx, &response)
}

/// The topics a consumer group's members subscribe to, from their
/// ConsumerProtocolSubscription metadata; `None` if any member's does not
/// decode.
fn subscribed_topics(members: &[crate::groups::state_machine::MemberDescription]) -> Option<std::collections::HashSet<String>> {
    let mut topics = std::collections::HashSet::new();
    for member in members {
        topics.extend(crate::groups::consumer::embedded::decode_subscription(&member.metadata)?.topics);
    }
    Some(topics)
}
