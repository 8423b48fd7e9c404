//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: topic configs
//! with Kafka's sources, synonyms and documentation; broker configs are
//! described (read-only: they come from the config file).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as AlterConfigsResponseEntry;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::{Broker, ConfigChange};
use crate::security::acl::{Operation, ResourceType};
use crate::topic_config::{built_in_default, catalog, ConfigDef, Kind, CATALOG};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Where a topic config's value comes from: the topic, the broker's
/// `[topic_defaults]`, or the built-in default.
pub(super) fn config_source(broker: &Broker, overrides: &BTreeMap<String, String>, key: &str) -> i8 {
    if overrides.contains_key(key) {
        SOURCE_DYNAMIC_TOPIC
    } else if broker.config.topic_defaults.contains_key(key) {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    }
}

/// The broker-level name of a topic config's default (Kafka's first synonym).
fn broker_name(def: &ConfigDef) -> &'static str {
    def.synonyms.first().copied().unwrap_or(def.name)
}

/// Kafka's synonyms for one topic config, highest precedence first: the
/// topic's override, the broker's default, the built-in default.
fn synonyms(broker: &Broker, overrides: &BTreeMap<String, String>, def: &ConfigDef) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if let Some(value) = overrides.get(def.name) {
        out.push(
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(def.name))
                .with_value(Some(str_bytes(value.as_str())))
                .with_source(SOURCE_DYNAMIC_TOPIC),
        );
    }
    if let Some(value) = broker.config.topic_defaults.get(def.name) {
        out.push(
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(broker_name(def)))
                .with_value(Some(str_bytes(value.as_str())))
                .with_source(SOURCE_STATIC_BROKER),
        );
    }
    out.push(
        DescribeConfigsSynonym::default()
            .with_name(str_bytes(broker_name(def)))
            .with_value(Some(str_bytes(built_in_default(def))))
            .with_source(SOURCE_DEFAULT),
    );
    out
}

/// What a DescribeConfigs request asks for besides values.
#[derive(Clone, Copy)]
struct Detail {
    synonyms: bool,
    documentation: bool,
}

fn describe_topic_configs(
    broker: &Broker,
    name: &str,
    keys: Option<&[String]>,
    detail: Detail,
) -> Result<Vec<DescribeConfigsResourceResult>, i16> {
    let topic = broker.topic(name).ok_or(ResponseError::UnknownTopicOrPartition.code())?;
    let config = topic.config();
    let overrides = topic.overrides();
    Ok(CATALOG
        .iter()
        .filter(|d| keys.is_none_or(|wanted| wanted.iter().any(|w| w == d.name)))
        .map(|d| {
            let mut result = DescribeConfigsResourceResult::default()
                .with_name(str_bytes(d.name))
                .with_value(config.get(d.name).map(str_bytes))
                .with_config_source(config_source(broker, &overrides, d.name))
                .with_config_type(d.kind.code());
            if detail.synonyms {
                result.synonyms = synonyms(broker, &overrides, d);
            }
            if detail.documentation {
                result.documentation = Some(str_bytes(d.doc));
            }
            result
        })
        .collect())
}

fn describe_broker_configs(broker: &Broker, detail: Detail) -> Vec<DescribeConfigsResourceResult> {
    let defaults = broker.config.topic_defaults();
    let mut out: Vec<DescribeConfigsResourceResult> = CATALOG
        .iter()
        .filter(|d| !d.synonyms.is_empty())
        .filter_map(|d| {
            let value = defaults.get(d.name)?;
            let source = if broker.config.topic_defaults.contains_key(d.name) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let mut result = DescribeConfigsResourceResult::default()
                .with_name(str_bytes(broker_name(d)))
                .with_value(Some(str_bytes(value)))
                .with_read_only(true)
                .with_config_type(d.kind.code())
                .with_config_source(source);
            if detail.documentation {
                result.documentation = Some(str_bytes(format!("The default of the topic config {}. {}", d.name, d.doc)));
            }
            Some(result)
        })
        .collect();
    out.push(
        DescribeConfigsResourceResult::default()
            .with_name(str_bytes("auto.create.topics.enable"))
            .with_value(Some(str_bytes(broker.config.auto_create_topics.to_string())))
            .with_read_only(true)
            .with_config_type(Kind::Boolean.code())
            .with_config_source(SOURCE_STATIC_BROKER),
    );
    out
}

pub(super) fn handle_describe_configs(broker: &Broker, ctx: &RequestContext, req: DescribeConfigsRequest) -> Bytes {
    let mut response = DescribeConfigsResponse::default();
    let detail = Detail {
        synonyms: req.include_synonyms,
        documentation: req.include_documentation,
    };
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
            RESOURCE_TOPIC => match describe_topic_configs(broker, resource.resource_name.as_str(), keys.as_deref(), detail) {
                Ok(configs) => result.configs = configs,
                Err(code) => result.error_code = code,
            },
            RESOURCE_BROKER => result.configs = describe_broker_configs(broker, detail),
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

/// The value after APPEND or SUBTRACT on a list config, as Kafka computes
/// it: items appended once, in order; subtracted items removed.
fn apply_list_op(current: &str, items: &str, append: bool) -> String {
    let mut list: Vec<&str> = current.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for item in items.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if append {
            if !list.contains(&item) {
                list.push(item);
            }
        } else {
            list.retain(|i| *i != item);
        }
    }
    list.join(",")
}

/// A config's new value, or `None` to delete its override.
type ConfigEdit = (String, Option<String>);

/// One resource's changes, or Kafka's refusal.
fn incremental_changes(
    broker: &Broker,
    topic: &str,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<Vec<ConfigEdit>, (i16, String)> {
    let invalid = |message: String| (ResponseError::InvalidConfig.code(), message);
    let current = broker.topic(topic).map(|t| t.config());
    let mut changes = Vec::new();
    for c in configs {
        let name = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        match c.config_operation {
            OP_SET => changes.push((name, Some(value.unwrap_or_default()))),
            OP_DELETE => changes.push((name, None)),
            op @ (OP_APPEND | OP_SUBTRACT) => {
                let is_list = catalog::lookup(&name).is_some_and(|d| d.kind == Kind::List);
                if !is_list {
                    let verb = if op == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                    return Err(invalid(format!("Can't {verb} to key {name} because its type is not LIST.")));
                }
                let existing = changes
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == name)
                    .and_then(|(_, v)| v.clone())
                    .or_else(|| current.as_ref().and_then(|c| c.get(&name)))
                    .unwrap_or_default();
                changes.push((name, Some(apply_list_op(&existing, &value.unwrap_or_default(), op == OP_APPEND))));
            }
            op => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("{name}: unknown config operation {op}"),
                ))
            }
        }
    }
    Ok(changes)
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
        let topic = resource.resource_name.as_str();
        let outcome: Result<(), (i16, String)> = if resource.resource_type != RESOURCE_TOPIC {
            Err((
                ResponseError::InvalidRequest.code(),
                "only topic configs can be altered; broker configs come from the config file".into(),
            ))
        } else if !may_alter_configs(broker, ctx, topic) {
            Err((ResponseError::TopicAuthorizationFailed.code(), "Authorization failed.".to_string()))
        } else {
            match incremental_changes(broker, topic, &resource.configs) {
                Err(e) => Err(e),
                Ok(changes) => broker
                    .alter_topic_config(topic, &changes, ConfigChange::Incremental, req.validate_only)
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

/// ListClientMetricsResources (74 v0): client metrics subscriptions
/// (KIP-714) cannot be made here, so there are none to list. Needs
/// DESCRIBE_CONFIGS on the cluster, as in Kafka.
pub(super) fn handle_list_client_metrics_resources(broker: &Broker, ctx: &RequestContext) -> Bytes {
    let mut response = kafka_protocol::messages::ListConfigResourcesResponse::default();
    if !ctx.on_cluster(broker, Operation::DescribeConfigs) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
    }
    encode_response(ctx, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_operations_append_once_and_subtract() {
        assert_eq!(apply_list_op("delete", "compact", true), "delete,compact");
        assert_eq!(apply_list_op("delete,compact", "compact", true), "delete,compact");
        assert_eq!(apply_list_op("delete,compact", "delete", false), "compact");
        assert_eq!(apply_list_op("", "0:1, 1:2", true), "0:1,1:2");
    }
}
