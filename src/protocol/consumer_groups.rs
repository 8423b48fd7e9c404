//! The KIP-848 consumer group APIs: ConsumerGroupHeartbeat (68) and
//! ConsumerGroupDescribe (69). The group logic is
//! `groups::consumer::group`; this file translates the wire and checks
//! ACLs (READ on the group to heartbeat, DESCRIBE to describe, as Kafka).

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment as WireAssignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::Broker;
use crate::groups::consumer::group::{validate, HeartbeatInput, Refusal, TopicCatalog};
use crate::groups::consumer::Assignment;
use crate::security::acl::{Operation, ResourceType};

/// The broker's topics as the requester may see them: a regex matches only
/// topics it may DESCRIBE (Kafka 4.0, KAFKA-18813), so an assignment never
/// tells a member of a topic it could not list. Topics being deleted are
/// left out by `Broker::topic` already.
pub(super) struct BrokerTopics<'a> {
    pub(super) broker: &'a Broker,
    pub(super) ctx: &'a RequestContext,
}

impl TopicCatalog for BrokerTopics<'_> {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.broker.topic(name).map(|t| (t.id, t.partition_count()))
    }

    fn names(&self) -> Vec<String> {
        self.broker
            .topics()
            .iter()
            .filter(|t| self.ctx.permits(self.broker, Operation::Describe, ResourceType::Topic, &t.name))
            .map(|t| t.name.clone())
            .collect()
    }
}

fn refusal(ctx: &RequestContext, r: Refusal) -> Bytes {
    let response = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.code)
        .with_error_message(Some(str_bytes(r.message)))
        .with_member_epoch(-1);
    encode_response(ctx, &response)
}

pub(super) fn handle_heartbeat(broker: &Broker, ctx: &RequestContext, req: ConsumerGroupHeartbeatRequest) -> Bytes {
    let group_id = req.group_id.0.to_string();
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut owned = Assignment::new();
        for tp in tps {
            owned.entry(tp.topic_id).or_default().extend(tp.partitions.iter().copied());
        }
        owned
    });
    let input = HeartbeatInput {
        api_version: ctx.api_version,
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
    };
    if let Err(r) = validate(&group_id, &input) {
        return refusal(ctx, r);
    }
    if !ctx.allowed(broker, Operation::Read, ResourceType::Group, &group_id) {
        return refusal(
            ctx,
            Refusal::new(ResponseError::GroupAuthorizationFailed, "Not authorized to read the group."),
        );
    }
    if let Some(code) = broker.cluster.as_ref().and_then(|c| c.offsets.group_error(&group_id)) {
        return refusal(
            ctx,
            Refusal {
                code,
                message: "This broker does not coordinate the group.".into(),
            },
        );
    }
    // Kafka also needs DESCRIBE on each subscribed topic; a member gets
    // TOPIC_AUTHORIZATION_FAILED for names it may not see.
    if let Some(names) = &input.subscribed_topic_names {
        let denied: BTreeSet<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !ctx.allowed(broker, Operation::Describe, ResourceType::Topic, n))
            .collect();
        if !denied.is_empty() {
            let list: Vec<&str> = denied.into_iter().collect();
            return refusal(
                ctx,
                Refusal::new(
                    ResponseError::TopicAuthorizationFailed,
                    format!("Not authorized to describe topics: {}.", list.join(", ")),
                ),
            );
        }
    }
    match broker.groups.consumer_heartbeat(&group_id, input, &BrokerTopics { broker, ctx }) {
        Ok(out) => {
            let assignment = out.assignment.map(|a| {
                WireAssignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(topic_id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            });
            let response = ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(out.member_id)))
                .with_member_epoch(out.member_epoch)
                .with_heartbeat_interval_ms(out.heartbeat_interval_ms)
                .with_assignment(assignment);
            encode_response(ctx, &response)
        }
        Err(r) => refusal(ctx, r),
    }
}

pub(super) fn handle_describe(broker: &Broker, ctx: &RequestContext, req: ConsumerGroupDescribeRequest) -> Bytes {
    let name_of = |id: &Uuid| broker.topic_by_id(id).map(|t| t.name.clone());
    let wire = |a: Assignment| {
        describe::Assignment::default().with_topic_partitions(
            a.into_iter()
                .filter_map(|(id, ps)| {
                    Some(
                        describe::TopicPartitions::default()
                            .with_topic_id(id)
                            .with_topic_name(TopicName(str_bytes(name_of(&id)?)))
                            .with_partitions(ps.into_iter().collect()),
                    )
                })
                .collect(),
        )
    };
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            let group_id = id.0.as_str();
            let failed = |code: i16, message: String| {
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
            };
            if !ctx.allowed(broker, Operation::Describe, ResourceType::Group, group_id) {
                return failed(
                    ResponseError::GroupAuthorizationFailed.code(),
                    "Not authorized to describe the group.".into(),
                );
            }
            if let Some(code) = broker.cluster.as_ref().and_then(|c| c.offsets.group_error(group_id)) {
                return failed(code, "This broker does not coordinate the group.".into());
            }
            let view = match broker.groups.consumer_describe(group_id) {
                Ok(view) => view,
                Err(r) => return failed(r.code, r.message),
            };
            // Kafka's rule: a group whose assignments name a topic the
            // requester may not describe is not described.
            let hidden = view
                .members
                .iter()
                .flat_map(|m| m.assignment.keys().chain(m.target.keys()))
                .any(|id| name_of(id).is_some_and(|name| !ctx.permits(broker, Operation::Describe, ResourceType::Topic, &name)));
            if hidden {
                return failed(
                    ResponseError::TopicAuthorizationFailed.code(),
                    "The group has assigned topic partitions that the client is not authorized to describe.".into(),
                );
            }
            let operations = if req.include_authorized_operations {
                broker
                    .security
                    .authorized_operations(ctx.requester(), ResourceType::Group, group_id)
            } else {
                i32::MIN
            };
            DescribedGroup::default()
                .with_group_id(id.clone())
                .with_group_state(str_bytes(view.state.as_str()))
                .with_group_epoch(view.group_epoch)
                .with_assignment_epoch(view.assignment_epoch)
                .with_assignor_name(str_bytes(view.assignor))
                .with_authorized_operations(operations)
                .with_members(
                    view.members
                        .into_iter()
                        .map(|m| {
                            describe::Member::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_instance_id(m.instance_id.map(str_bytes))
                                .with_rack_id(m.rack_id.map(str_bytes))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(str_bytes(m.client_id))
                                .with_client_host(str_bytes(m.client_host))
                                .with_subscribed_topic_names(m.topic_names.into_iter().map(|n| TopicName(str_bytes(n))).collect())
                                .with_subscribed_topic_regex(m.regex.map(str_bytes))
                                .with_assignment(wire(m.assignment))
                                .with_target_assignment(wire(m.target))
                                // 0: a classic member in a consumer group;
                                // 1: a member of the consumer protocol.
                                .with_member_type(if m.classic { 0 } else { 1 })
                        })
                        .collect(),
                )
        })
        .collect();
    encode_response(ctx, &ConsumerGroupDescribeResponse::default().with_groups(groups))
}
