//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs and IncrementalAlterConfigs.

use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as AlterConfigsResponseEntry;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::{Broker, ConfigChange, Placement, TopicError};
use crate::topic_config::KEYS;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => TYPE_LIST,
        "message.timestamp.type" => TYPE_STRING,
        "min.insync.replicas" | "max.message.bytes" | "segment.bytes" => TYPE_INT,
        _ => TYPE_LONG,
    }
}

fn config_source(broker: &Broker, overrides: &BTreeMap<String, String>, key: &str) -> i8 {
    if overrides.contains_key(key) {
        SOURCE_DYNAMIC_TOPIC
    } else if broker.config.topic_defaults.contains_key(key) {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    }
}

pub(super) async fn handle_create_topics(broker: &Arc<Broker>, ctx: &RequestContext, req: CreateTopicsRequest) -> Bytes {
    let mut response = CreateTopicsResponse::default();
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
        for c in &t.configs {
            if let Some(value) = &c.value {
                configs.insert(c.name.to_string(), value.to_string());
            }
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
                let config = topic.config();
                let overrides = topic.overrides();
                result.topic_id = topic.id;
                result.num_partitions = partitions;
                result.replication_factor = factor;
                result.configs = Some(
                    KEYS.iter()
                        .map(|k| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(*k))
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
    encode_response(ctx, &response)
}

pub(super) async fn handle_delete_topics(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteTopicsRequest) -> Bytes {
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).collect();
    targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut response = DeleteTopicsResponse::default();
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
            Some(n) => {
                if let Some(topic) = broker.topic(&n) {
                    result.topic_id = topic.id;
                }
                if let Err(e) = broker.delete_topic(&n).await {
                    result.error_code = e.code();
                    result.error_message = Some(str_bytes(e.to_string()));
                }
                result.name = Some(TopicName(str_bytes(n)));
            }
        }
        response.responses.push(result);
    }
    encode_response(ctx, &response)
}

pub(super) async fn handle_create_partitions(broker: &Arc<Broker>, ctx: &RequestContext, req: CreatePartitionsRequest) -> Bytes {
    let mut response = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !ctx.allowed(broker, Operation::Alter, ResourceType::Topic, t.name.0.as_str()) {
            result.error_code = ResponseError::TopicAuthorizationFailed.code();
            result.error_message = Some(str_bytes("Authorization failed."));
        } else if let Err(e) = broker.create_partitions(t.name.0.as_str(), t.count, req.validate_only).await {
            result.error_code = e.code();
            result.error_message = Some(str_bytes(e.to_string()));
        }
        response.results.push(result);
    }
    encode_response(ctx, &response)
}

fn describe_topic_configs(broker: &Broker, name: &str, keys: Option<&[String]>) -> Result<Vec<DescribeConfigsResourceResult>, i16> {
    let topic = broker.topic(name).ok_or(ResponseError::UnknownTopicOrPartition.code())?;
    let config = topic.config();
    let overrides = topic.overrides();
    Ok(KEYS
        .iter()
        .filter(|k| keys.is_none_or(|wanted| wanted.iter().any(|w| w == *k)))
        .map(|k| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(*k))
                .with_value(config.get(k).map(str_bytes))
                .with_config_source(config_source(broker, &overrides, k))
                .with_config_type(config_type(k))
        })
        .collect())
}

/// Kafka's broker-level name for the default of a topic config.
fn broker_config_name(topic_key: &str) -> &'static str {
    match topic_key {
        "cleanup.policy" => "log.cleanup.policy",
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "local.retention.ms" => "log.local.retention.ms",
        "local.retention.bytes" => "log.local.retention.bytes",
        "min.insync.replicas" => "min.insync.replicas",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.type" => "log.message.timestamp.type",
        _ => "unknown",
    }
}

fn describe_broker_configs(broker: &Broker) -> Vec<DescribeConfigsResourceResult> {
    let defaults = broker.config.topic_defaults();
    let mut out: Vec<DescribeConfigsResourceResult> = KEYS
        .iter()
        .filter_map(|k| {
            let value = defaults.get(k)?;
            let source = if broker.config.topic_defaults.contains_key(*k) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            Some(
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(broker_config_name(k)))
                    .with_value(Some(str_bytes(value)))
                    .with_read_only(true)
                    .with_config_source(source),
            )
        })
        .collect();
    out.push(
        DescribeConfigsResourceResult::default()
            .with_name(str_bytes("auto.create.topics.enable"))
            .with_value(Some(str_bytes(broker.config.auto_create_topics.to_string())))
            .with_read_only(true)
            .with_config_source(SOURCE_STATIC_BROKER),
    );
    out
}

pub(super) fn handle_describe_configs(broker: &Broker, ctx: &RequestContext, req: DescribeConfigsRequest) -> Bytes {
    let mut response = DescribeConfigsResponse::default();
    for resource in req.resources {
        let keys: Option<Vec<String>> = resource
            .configuration_keys
            .as_ref()
            .map(|ks| ks.iter().map(|k| k.to_string()).collect());
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        match resource.resource_type {
            RESOURCE_TOPIC
                if !ctx.allowed(
                    broker,
                    Operation::DescribeConfigs,
                    ResourceType::Topic,
                    resource.resource_name.as_str(),
                ) =>
            {
                result.error_code = ResponseError::TopicAuthorizationFailed.code();
            }
            RESOURCE_BROKER if !ctx.on_cluster(broker, Operation::DescribeConfigs) => {
                result.error_code = ResponseError::ClusterAuthorizationFailed.code();
            }
            RESOURCE_TOPIC => match describe_topic_configs(broker, resource.resource_name.as_str(), keys.as_deref()) {
                Ok(configs) => result.configs = configs,
                Err(code) => result.error_code = code,
            },
            RESOURCE_BROKER => result.configs = describe_broker_configs(broker),
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(str_bytes(format!("resource type {other} is not supported")));
            }
        }
        response.results.push(result);
    }
    encode_response(ctx, &response)
}

/// AlterConfigs (the older, non-incremental API): the given configs become
/// the topic's whole set of overrides, as in Kafka.
pub(super) async fn handle_alter_configs(broker: &Arc<Broker>, ctx: &RequestContext, req: AlterConfigsRequest) -> Bytes {
    let mut response = AlterConfigsResponse::default();
    for resource in req.resources {
        let mut result = AlterConfigsResponseEntry::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let outcome = match (resource.resource_type, broker.topic(resource.resource_name.as_str())) {
            (RESOURCE_TOPIC, _) if !may_alter_configs(broker, ctx, resource.resource_name.as_str()) => {
                Err((ResponseError::TopicAuthorizationFailed.code(), "Authorization failed.".to_string()))
            }
            (RESOURCE_TOPIC, Some(topic)) => {
                let wanted: BTreeMap<String, Option<String>> = resource
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                let changes: Vec<(String, Option<String>)> = wanted.into_iter().collect();
                broker
                    .alter_topic_config(&topic.name, &changes, ConfigChange::Replace, req.validate_only)
                    .await
                    .map_err(|e| (e.code(), e.to_string()))
            }
            (RESOURCE_TOPIC, None) => Err((
                ResponseError::UnknownTopicOrPartition.code(),
                format!("unknown topic {}", resource.resource_name.as_str()),
            )),
            _ => Err((
                ResponseError::InvalidRequest.code(),
                "only topic configs can be altered; broker configs come from the config file".into(),
            )),
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(str_bytes(message));
        }
        response.responses.push(result);
    }
    encode_response(ctx, &response)
}

fn may_alter_configs(broker: &Broker, ctx: &RequestContext, topic: &str) -> bool {
    ctx.allowed(broker, Operation::AlterConfigs, ResourceType::Topic, topic)
}

pub(super) async fn handle_incremental_alter_configs(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> Bytes {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in req.resources {
        let mut result = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let outcome: Result<(), (i16, String)> = if resource.resource_type != RESOURCE_TOPIC {
            Err((
                ResponseError::InvalidRequest.code(),
                "only topic configs can be altered; broker configs come from the config file".into(),
            ))
        } else if !may_alter_configs(broker, ctx, resource.resource_name.as_str()) {
            Err((ResponseError::TopicAuthorizationFailed.code(), "Authorization failed.".to_string()))
        } else {
            let mut changes = Vec::new();
            let mut bad = None;
            for c in &resource.configs {
                match c.config_operation {
                    OP_SET => changes.push((
                        c.name.to_string(),
                        Some(c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()),
                    )),
                    OP_DELETE => changes.push((c.name.to_string(), None)),
                    op => bad = Some(format!("{}: operation {op} applies only to list configs", c.name.as_str())),
                }
            }
            match bad {
                Some(message) => Err((ResponseError::InvalidConfig.code(), message)),
                None => broker
                    .alter_topic_config(
                        resource.resource_name.as_str(),
                        &changes,
                        ConfigChange::Incremental,
                        req.validate_only,
                    )
                    .await
                    .map_err(|e| (e.code(), e.to_string())),
            }
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(str_bytes(message));
        }
        response.responses.push(result);
    }
    encode_response(ctx, &response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_config::TopicConfig;

    #[test]
    fn every_topic_key_has_a_type() {
        for key in KEYS {
            assert!(TopicConfig::default().get(key).is_some());
            assert!(matches!(config_type(key), TYPE_STRING | TYPE_INT | TYPE_LONG | TYPE_LIST));
            assert_ne!(broker_config_name(key), "unknown");
        }
    }
}
