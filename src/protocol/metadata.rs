//! ApiVersions, Metadata, DescribeCluster and FindCoordinator: what a client
//! asks before anything else. A single node leads every partition and
//! coordinates every group; a cluster answers from its etcd image.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::ResponseError;

use kafka_protocol::protocol::StrBytes;

use super::{encode_response, str_bytes, versions, RequestContext};
use crate::broker::{Broker, Topic, TopicError};
use crate::cluster::offsets::{partition_for, OFFSETS_TOPIC};
use crate::cluster::transactions::TXN_TOPIC;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = versions::SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

pub(super) fn describe_topic(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let me = BrokerId(broker.config.broker_id);
    // One image and one topic id for all the topic's partitions.
    let image = broker.cluster.as_ref().map(|c| c.image());
    let topic_id = topic.id.to_string();
    let partitions = (0..topic.partition_count())
        .map(|index| {
            let Some(image) = &image else {
                return MetadataResponsePartition::default()
                    .with_partition_index(index)
                    .with_leader_id(me)
                    .with_leader_epoch(broker.leader_epoch)
                    .with_replica_nodes(vec![me])
                    .with_isr_nodes(vec![me]);
            };
            let out = MetadataResponsePartition::default().with_partition_index(index);
            let Some((state, _)) = image.partitions.get(&(topic_id.clone(), index)) else {
                // Recorded, but the controller has not placed it yet.
                return out
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(-1);
            };
            let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
            let offline: Vec<i32> = state.replicas.iter().copied().filter(|r| !image.brokers.contains_key(r)).collect();
            let out = out
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(ids(&state.replicas))
                .with_isr_nodes(ids(&state.isr))
                .with_offline_replicas(ids(&offline));
            if state.is_offline() {
                out.with_error_code(ResponseError::LeaderNotAvailable.code())
            } else {
                out
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(crate::cluster::shards::is_coordinator_topic(&topic.name))
        .with_partitions(partitions)
}

/// (id, host, port) of every live broker on `listener`: this one on a single node.
fn live_brokers(broker: &Broker, listener: &str) -> Vec<(i32, String, i32)> {
    match &broker.cluster {
        None => {
            let (host, port) = broker.config.advertised_on(listener);
            vec![(broker.config.broker_id, host, port)]
        }
        Some(cluster) => cluster
            .live_brokers(listener)
            .into_iter()
            .filter_map(|(id, address)| {
                let (host, port) = address.rsplit_once(':')?;
                Some((id, host.to_string(), port.parse().ok()?))
            })
            .collect(),
    }
}

/// The controller's id (-1 while none is elected); this broker on a single node.
fn controller_id(broker: &Broker) -> BrokerId {
    match &broker.cluster {
        None => BrokerId(broker.config.broker_id),
        Some(cluster) => BrokerId(cluster.image().controller.map_or(-1, |(id, _)| id)),
    }
}

/// Which coordinator a FindCoordinator key asks for.
#[derive(Clone, Copy)]
enum CoordinatorKind {
    Group,
    Transaction,
}

impl CoordinatorKind {
    fn topic(self) -> &'static str {
        match self {
            CoordinatorKind::Group => OFFSETS_TOPIC,
            CoordinatorKind::Transaction => TXN_TOPIC,
        }
    }
}

/// Where a group's or transactional id's coordinator is: this broker on a
/// single node; in a cluster, the leader of the key's partition of
/// `__consumer_offsets` or `__transaction_state` (the topic is created on
/// the first ask, as Kafka does).
async fn coordinator_for(broker: &Broker, kind: CoordinatorKind, key: &str, listener: &str) -> Result<(i32, String, i32), i16> {
    let Some(cluster) = &broker.cluster else {
        let (host, port) = broker.config.advertised_on(listener);
        return Ok((broker.config.broker_id, host, port));
    };
    let not_available = ResponseError::CoordinatorNotAvailable.code();
    let Some(topic) = broker.topic(kind.topic()) else {
        create_coordinator_topic(broker, cluster, kind).await;
        return Err(not_available);
    };
    let image = cluster.image();
    let partition = partition_for(key, topic.partition_count());
    let Some((state, _)) = image.partitions.get(&(topic.id.to_string(), partition)) else {
        return Err(not_available);
    };
    let Some((registration, _)) = image.brokers.get(&state.leader) else {
        return Err(not_available);
    };
    let (host, port) = registration.address_on(listener).rsplit_once(':').ok_or(not_available)?;
    Ok((state.leader, host.to_string(), port.parse().map_err(|_| not_available)?))
}

/// Creates `__consumer_offsets` (`offsets_topic_partitions`, with
/// `offsets_topic_replication_factor` replicas) or `__transaction_state`
/// (`transaction_state_partitions`, `transaction_state_replication_factor`),
/// with as many replicas as are live at most, `min.insync.replicas` 2 when
/// it has two or more, and compacted: records are keyed by what they
/// change, so the latest per key is all a new coordinator needs, and
/// neither time nor local retention removes state. Brokers racing to
/// create it are refused but one, by etcd.
async fn create_coordinator_topic(broker: &Broker, cluster: &crate::cluster::ClusterLink, kind: CoordinatorKind) {
    let live = cluster.live_broker_ids().len().max(1) as i16;
    let config = &broker.config;
    let (partitions, factor) = match kind {
        CoordinatorKind::Group => (config.offsets_topic_partitions, config.offsets_topic_replication_factor),
        CoordinatorKind::Transaction => (config.transaction_state_partitions, config.transaction_state_replication_factor),
    };
    let factor = factor.min(live);
    // A change is acknowledged by two replicas when there are two or more
    // (a min ISR of 2, as Kafka deployments set for these topics).
    let configs = [
        ("min.insync.replicas".to_string(), factor.min(2).to_string()),
        ("cleanup.policy".to_string(), "compact".to_string()),
    ]
    .into();
    let name = kind.topic();
    match broker
        .create_topic(name, partitions, crate::broker::Placement::Factor(factor), configs, false)
        .await
    {
        Ok(_) => tracing::info!(topic = name, partitions, replication_factor = factor, "created a coordinator topic"),
        Err(e) => tracing::debug!(topic = name, error = %e, "did not create a coordinator topic"),
    }
}

fn topic_error(name: Option<TopicName>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(code)
}

/// A topic as Metadata shows it, with its authorized operations when asked.
fn describe_for(broker: &Broker, ctx: &RequestContext, topic: &Topic, with_operations: bool) -> MetadataResponseTopic {
    let described = describe_topic(broker, topic);
    if with_operations {
        let bits = broker
            .security
            .authorized_operations(ctx.requester(), ResourceType::Topic, &topic.name);
        described.with_topic_authorized_operations(bits)
    } else {
        described
    }
}

/// Whether the requester may create `topic` (CREATE on the cluster or on it).
fn may_create(broker: &Broker, ctx: &RequestContext, topic: &str) -> bool {
    ctx.permits(broker, Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
        || ctx.allowed(broker, Operation::Create, ResourceType::Topic, topic)
}

pub(super) async fn handle_metadata(broker: &Arc<Broker>, ctx: &RequestContext, req: MetadataRequest) -> Bytes {
    let brokers = live_brokers(broker, &ctx.listener.name)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.config.cluster.clone())))
        .with_controller_id(controller_id(broker));
    if req.include_cluster_authorized_operations && (8..=10).contains(&ctx.api_version) {
        response.cluster_authorized_operations =
            broker
                .security
                .authorized_operations(ctx.requester(), ResourceType::Cluster, CLUSTER_NAME);
    }
    let with_operations = req.include_topic_authorized_operations;
    // v0 asks for every topic with an empty list; v1+ with null.
    let all = match &req.topics {
        None => true,
        Some(list) => list.is_empty() && ctx.api_version == 0,
    };
    let describable = |name: &str| ctx.permits(broker, Operation::Describe, ResourceType::Topic, name);
    if all {
        // Topics the requester may not describe are left out, as Kafka does.
        response.topics = broker
            .topics()
            .iter()
            .filter(|t| describable(&t.name))
            .map(|t| describe_for(broker, ctx, t, with_operations))
            .collect();
        return encode_response(ctx, &response);
    }
    let auto_create = ctx.api_version < 4 || req.allow_auto_topic_creation;
    let requested = req.topics.unwrap_or_default();
    let denied = ResponseError::TopicAuthorizationFailed.code();
    // Every topic this request creates is created in one go: one write of
    // the cluster state, however many there are. Only topics the requester
    // may describe and create are.
    let created = if auto_create {
        let names: Vec<&str> = requested
            .iter()
            .filter_map(|t| t.name.as_ref())
            .map(|n| n.0.as_str())
            .filter(|n| broker.topic(n).is_none() && describable(n) && may_create(broker, ctx, n))
            .collect();
        broker.auto_create_topics(&names).await
    } else {
        Default::default()
    };
    for requested in requested {
        let described = match &requested.name {
            None => match broker.topic_by_id(&requested.topic_id) {
                Some(topic) if describable(&topic.name) => describe_for(broker, ctx, &topic, with_operations),
                Some(_) => topic_error(None, requested.topic_id, denied),
                None => topic_error(None, requested.topic_id, ResponseError::UnknownTopicId.code()),
            },
            Some(name) if !ctx.allowed(broker, Operation::Describe, ResourceType::Topic, name.0.as_str()) => {
                topic_error(Some(name.clone()), uuid::Uuid::nil(), denied)
            }
            Some(name) if auto_create && broker.topic(name.0.as_str()).is_none() && !created.contains_key(name.0.as_str()) => {
                // It would have been created, but the requester may not.
                let code = match crate::broker::validate_topic_name(name.0.as_str()) {
                    Err(e) => e.code(),
                    Ok(()) if broker.config.auto_create_topics => denied,
                    Ok(()) => ResponseError::UnknownTopicOrPartition.code(),
                };
                topic_error(Some(name.clone()), uuid::Uuid::nil(), code)
            }
            Some(name) => {
                let lookup = match created.get(name.0.as_str()) {
                    Some(Ok(topic)) => Ok(topic.clone()),
                    Some(Err(e)) => Err(e.code()),
                    None => crate::broker::validate_topic_name(name.0.as_str())
                        .and_then(|()| broker.topic(name.0.as_str()).ok_or_else(|| TopicError::Unknown(name.0.to_string())))
                        .map_err(|e| e.code()),
                };
                match lookup {
                    Ok(topic) => describe_for(broker, ctx, &topic, with_operations),
                    Err(code) => topic_error(Some(name.clone()), uuid::Uuid::nil(), code),
                }
            }
        };
        response.topics.push(described);
    }
    encode_response(ctx, &response)
}

pub(super) fn handle_describe_cluster(broker: &Broker, ctx: &RequestContext, req: DescribeClusterRequest) -> Bytes {
    if !ctx.on_cluster(broker, Operation::Describe) {
        let response = DescribeClusterResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("Cluster authorization failed")));
        return encode_response(ctx, &response);
    }
    let brokers = live_brokers(broker, &ctx.listener.name)
        .into_iter()
        .map(|(id, host, port)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
        })
        .collect();
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.config.cluster.clone()))
        .with_controller_id(controller_id(broker))
        .with_brokers(brokers);
    if req.include_cluster_authorized_operations {
        response.cluster_authorized_operations =
            broker
                .security
                .authorized_operations(ctx.requester(), ResourceType::Cluster, CLUSTER_NAME);
    }
    encode_response(ctx, &response)
}

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub(super) async fn handle_find_coordinator(broker: &Broker, ctx: &RequestContext, req: FindCoordinatorRequest) -> Bytes {
    let transaction = req.key_type == KEY_TYPE_TRANSACTION;
    let unsupported = !(req.key_type == KEY_TYPE_GROUP || transaction);
    let keys: Vec<StrBytes> = if ctx.api_version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut found = Vec::with_capacity(keys.len());
    for key in &keys {
        let result = if unsupported {
            Err(ResponseError::InvalidRequest.code())
        } else if transaction && !ctx.allowed(broker, Operation::Describe, ResourceType::TransactionalId, key.as_str()) {
            Err(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else if !transaction && !ctx.allowed(broker, Operation::Describe, ResourceType::Group, key.as_str()) {
            Err(ResponseError::GroupAuthorizationFailed.code())
        } else {
            let kind = if transaction {
                CoordinatorKind::Transaction
            } else {
                CoordinatorKind::Group
            };
            coordinator_for(broker, kind, key.as_str(), &ctx.listener.name).await
        };
        found.push(result);
    }
    let message = |code: i16| {
        Some(str_bytes(if code == ResponseError::InvalidRequest.code() {
            "unknown key type"
        } else if code == ResponseError::GroupAuthorizationFailed.code() {
            "Group authorization failed"
        } else if code == ResponseError::TransactionalIdAuthorizationFailed.code() {
            "Transactional Id authorization failed"
        } else {
            "the coordinator is not available yet; retry"
        }))
    };
    let mut response = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        response.coordinators = keys
            .into_iter()
            .zip(found)
            .map(|(key, result)| match result {
                Ok((id, host, port)) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(host))
                    .with_port(port),
                Err(code) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_host(str_bytes(""))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(message(code)),
            })
            .collect();
    } else {
        response = match found.pop() {
            Some(Ok((id, host, port))) => response.with_node_id(BrokerId(id)).with_host(str_bytes(host)).with_port(port),
            Some(Err(code)) => response
                .with_error_code(code)
                .with_error_message(message(code))
                .with_node_id(BrokerId(-1))
                .with_port(-1),
            None => response.with_error_code(ResponseError::InvalidRequest.code()),
        };
    }
    encode_response(ctx, &response)
}
