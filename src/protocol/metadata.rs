//! ApiVersions, Metadata, DescribeCluster and FindCoordinator: what a client
//! asks before anything else. A single node leads every partition and
//! coordinates every group.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, versions, RequestContext};
use crate::broker::{Broker, Topic, TopicError};

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

fn describe_topic(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let me = BrokerId(broker.config.broker_id);
    let partitions = (0..topic.partition_count())
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(me)
                .with_leader_epoch(broker.leader_epoch)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
}

fn topic_error(name: Option<TopicName>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(code)
}

pub(super) async fn handle_metadata(broker: &Arc<Broker>, ctx: &RequestContext, req: MetadataRequest) -> Bytes {
    let (host, port) = broker.config.advertised();
    let me = BrokerId(broker.config.broker_id);
    let mut response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(me)
            .with_host(str_bytes(host))
            .with_port(port)])
        .with_cluster_id(Some(str_bytes(broker.config.cluster.clone())))
        .with_controller_id(me);
    // v0 asks for every topic with an empty list; v1+ with null.
    let all = match &req.topics {
        None => true,
        Some(list) => list.is_empty() && ctx.api_version == 0,
    };
    if all {
        response.topics = broker.topics().iter().map(|t| describe_topic(broker, t)).collect();
        return encode_response(ctx, &response);
    }
    let auto_create = ctx.api_version < 4 || req.allow_auto_topic_creation;
    let requested = req.topics.unwrap_or_default();
    // Every topic this request creates is created in one go: one write of
    // the cluster state, however many there are.
    let created = if auto_create {
        let names: Vec<&str> = requested.iter().filter_map(|t| t.name.as_ref()).map(|n| n.0.as_str()).collect();
        broker.auto_create_topics(&names).await
    } else {
        Default::default()
    };
    for requested in requested {
        let described = match &requested.name {
            None => match broker.topic_by_id(&requested.topic_id) {
                Some(topic) => describe_topic(broker, &topic),
                None => topic_error(None, requested.topic_id, ResponseError::UnknownTopicId.code()),
            },
            Some(name) => {
                let lookup = match created.get(name.0.as_str()) {
                    Some(Ok(topic)) => Ok(topic.clone()),
                    Some(Err(e)) => Err(e.code()),
                    None => crate::broker::validate_topic_name(name.0.as_str())
                        .and_then(|()| broker.topic(name.0.as_str()).ok_or_else(|| TopicError::Unknown(name.0.to_string())))
                        .map_err(|e| e.code()),
                };
                match lookup {
                    Ok(topic) => describe_topic(broker, &topic),
                    Err(code) => topic_error(Some(name.clone()), uuid::Uuid::nil(), code),
                }
            }
        };
        response.topics.push(described);
    }
    encode_response(ctx, &response)
}

pub(super) fn handle_describe_cluster(broker: &Broker, ctx: &RequestContext) -> Bytes {
    let (host, port) = broker.config.advertised();
    let me = BrokerId(broker.config.broker_id);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.config.cluster.clone()))
        .with_controller_id(me)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(me)
            .with_host(str_bytes(host))
            .with_port(port)]);
    encode_response(ctx, &response)
}

const KEY_TYPE_GROUP: i8 = 0;

pub(super) fn handle_find_coordinator(broker: &Broker, ctx: &RequestContext, req: FindCoordinatorRequest) -> Bytes {
    let (host, port) = broker.config.advertised();
    let me = BrokerId(broker.config.broker_id);
    // Transactions are not implemented, so there is no transaction coordinator.
    let code = if req.key_type == KEY_TYPE_GROUP {
        0
    } else {
        ResponseError::InvalidRequest.code()
    };
    let message = (code != 0).then(|| str_bytes("transactions are not supported by this broker"));
    let mut response = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        response.coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(if code == 0 { me } else { BrokerId(-1) })
                    .with_host(str_bytes(if code == 0 { host.clone() } else { String::new() }))
                    .with_port(if code == 0 { port } else { -1 })
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect();
    } else if code == 0 {
        response = response.with_node_id(me).with_host(str_bytes(host)).with_port(port);
    } else {
        response = response
            .with_error_code(code)
            .with_error_message(message)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    encode_response(ctx, &response)
}
