//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions.

use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::configs::config_source;
use super::throttle::{mutation_refused, Mutations};
use super::{encode_response, str_bytes, RequestContext};
use crate::broker::{Broker, Placement, TopicError};
use crate::topic_config::keys;

pub(super) async fn handle_create_topics(broker: &Arc<Broker>, ctx: &RequestContext, req: CreateTopicsRequest) -> Bytes {
    let mut response = CreateTopicsResponse::default();
    let mutations = Mutations::new(broker, ctx, ctx.api_version >= 6);
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let may_create = ctx.permits(broker, Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
            || ctx.allowed(broker, Operation::Create, ResourceType::Topic, &name);
        if !may_create {
            result.error_code = ResponseError::TopicAuthorizationFailed.code();
            result.error_message = Some(str_bytes("Authorization failed."));
            response.topics.push(result);
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut null_values = Vec::new();
        for c in &t.configs {
            match &c.value {
                Some(value) => configs.insert(c.name.to_string(), value.to_string()),
                None => {
                    null_values.push(c.name.to_string());
                    None
                }
            };
        }
        if !null_values.is_empty() {
            result.error_code = ResponseError::InvalidConfig.code();
            result.error_message = Some(str_bytes(format!(
                "Null value not supported for topic configs: {}",
                null_values.join(",")
            )));
            response.topics.push(result);
            continue;
        }
        let placement = if t.assignments.is_empty() {
            Placement::Factor(t.replication_factor)
        } else {
            let mut manual: Vec<(i32, Vec<i32>)> = t
                .assignments
                .iter()
                .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                .collect();
            manual.sort_by_key(|(p, _)| *p);
            Placement::Manual(manual.into_iter().map(|(_, replicas)| replicas).collect())
        };
        // Partitions must be numbered 0..n without a gap.
        let numbered = t.assignments.is_empty() || {
            let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
            indexes.sort_unstable();
            indexes.iter().enumerate().all(|(i, p)| *p == i as i32)
        };
        // The replicas each partition gets, for the response.
        let factor = match (&placement, &broker.cluster) {
            (Placement::Manual(m), Some(_)) => m.first().map_or(1, |r| r.len() as i16),
            (Placement::Factor(-1), Some(c)) => broker
                .config
                .default_replication_factor
                .min(c.live_broker_ids().len().max(1) as i16),
            (Placement::Factor(f), Some(_)) => *f,
            (_, None) => 1,
        };
        if !mutations.admit() {
            (result.error_code, result.error_message) = mutation_refused();
            response.topics.push(result);
            continue;
        }
        let outcome = if !numbered {
            Err(TopicError::InvalidReplicaAssignment(
                "partitions must be numbered from 0 without a gap".into(),
            ))
        } else {
            let partitions = match (t.assignments.len(), t.num_partitions) {
                (0, -1) => broker.config.default_partitions,
                (0, n) => n,
                (n, _) => n as i32,
            };
            broker
                .create_topic(&name, partitions, placement, configs, req.validate_only)
                .await
                .map(|topic| (topic, partitions))
        };
        match outcome {
            Ok((topic, partitions)) => {
                if !req.validate_only {
                    mutations.record(partitions);
                }
                let config = topic.config();
                let overrides = topic.overrides();
                result.topic_id = topic.id;
                result.num_partitions = partitions;
                result.replication_factor = factor;
                result.configs = Some(
                    keys()
                        .map(|k| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(k))
                                .with_value(config.get(k).map(str_bytes))
                                .with_config_source(config_source(broker, &overrides, k))
                        })
                        .collect(),
                );
            }
            Err(e) => {
                result.error_code = e.code();
                result.error_message = Some(str_bytes(e.to_string()));
            }
        }
        response.topics.push(result);
    }
    response.throttle_time_ms = mutations.throttle_ms();
    encode_response(ctx, &response)
}

pub(super) async fn handle_delete_topics(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteTopicsRequest) -> Bytes {
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).collect();
    targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut response = DeleteTopicsResponse::default();
    let mutations = Mutations::new(broker, ctx, ctx.api_version >= 5);
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => Some(n.0.to_string()),
            None => broker.topic_by_id(&id).map(|t| t.name.clone()),
        };
        let mut result = DeletableTopicResult::default().with_name(name.clone()).with_topic_id(id);
        match resolved {
            None => result.error_code = ResponseError::UnknownTopicId.code(),
            Some(n) if !ctx.allowed(broker, Operation::Delete, ResourceType::Topic, &n) => {
                result.error_code = ResponseError::TopicAuthorizationFailed.code();
                result.name = Some(TopicName(str_bytes(n)));
            }
            Some(n) if !mutations.admit() => {
                (result.error_code, result.error_message) = mutation_refused();
                result.name = Some(TopicName(str_bytes(n)));
            }
            Some(n) => {
                let partitions = broker.topic(&n).map(|topic| {
                    result.topic_id = topic.id;
                    topic.partition_count()
                });
                match broker.delete_topic(&n).await {
                    Ok(()) => mutations.record(partitions.unwrap_or(0)),
                    Err(e) => {
                        result.error_code = e.code();
                        result.error_message = Some(str_bytes(e.to_string()));
                    }
                }
                result.name = Some(TopicName(str_bytes(n)));
            }
        }
        response.responses.push(result);
    }
    response.throttle_time_ms = mutations.throttle_ms();
    encode_response(ctx, &response)
}

pub(super) async fn handle_create_partitions(broker: &Arc<Broker>, ctx: &RequestContext, req: CreatePartitionsRequest) -> Bytes {
    let mut response = CreatePartitionsResponse::default();
    let mutations = Mutations::new(broker, ctx, ctx.api_version >= 3);
    for t in req.topics {
        let mut result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let before = broker.topic(t.name.0.as_str()).map_or(0, |topic| topic.partition_count());
        if !ctx.allowed(broker, Operation::Alter, ResourceType::Topic, t.name.0.as_str()) {
            result.error_code = ResponseError::TopicAuthorizationFailed.code();
            result.error_message = Some(str_bytes("Authorization failed."));
        } else if !mutations.admit() {
            (result.error_code, result.error_message) = mutation_refused();
        } else {
            match broker.create_partitions(t.name.0.as_str(), t.count, req.validate_only).await {
                Ok(()) if !req.validate_only => mutations.record(t.count - before),
                Ok(()) => {}
                Err(e) => {
                    result.error_code = e.code();
                    result.error_message = Some(str_bytes(e.to_string()));
                }
            }
        }
        response.results.push(result);
    }
    response.throttle_time_ms = mutations.throttle_ms();
    encode_response(ctx, &response)
}
