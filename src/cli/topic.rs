//! `sediment topic create|list|describe|delete|alter-config|add-partitions`.
//! Topic changes go to the controller, as Kafka's admin client sends them
//! (the bootstrap broker while the cluster names none).

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::client::{Client, EARLIEST, LATEST};
use super::output::{ids, table};
use super::{print, CliError, Globals};

/// Kafka's resource type for a topic (DescribeConfigs, IncrementalAlterConfigs).
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs' source for a config left at its default.
const DEFAULT_CONFIG: i8 = 5;

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (-1: the broker's default).
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replicas of each partition (-1: the broker's default).
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replicas: i16,
        /// A topic config, KEY=VALUE (repeatable).
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Check the request and create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics.
    List {
        /// Include internal topics (__consumer_offsets, __transaction_state).
        #[arg(short, long)]
        internal: bool,
    },
    /// Describe topics: partitions, leaders, replicas, offsets and configs.
    Describe {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set or remove topic configs.
    AlterConfig {
        name: String,
        /// Set KEY=VALUE (repeatable).
        #[arg(short, long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove KEY, back to its default (repeatable).
        #[arg(short, long, value_name = "KEY")]
        delete: Vec<String>,
        /// Check the change and apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Add partitions to a topic.
    AddPartitions {
        name: String,
        /// How many partitions to add.
        #[arg(short, long)]
        num: i32,
        /// Check the change and apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// `KEY=VALUE` pairs, in order; a malformed one is a usage error.
pub fn key_values(pairs: &[String]) -> Result<Vec<(String, String)>, CliError> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(CliError::Invalid(format!("'{pair}' is not KEY=VALUE"))),
        })
        .collect()
}

/// A refused request's error, with the broker's message when it gave one.
fn refused(code: i16, what: String, message: Option<&StrBytes>) -> CliError {
    match message.map(|m| m.to_string()).filter(|m| !m.is_empty()) {
        Some(message) => CliError::kafka(code, format!("{what}: {message}")),
        None => CliError::kafka(code, what),
    }
}

pub async fn run(globals: &Globals, command: TopicCommand) -> Result<(), CliError> {
    let mut client = Client::connect(globals).await?;
    let timeout_ms = i32::try_from(globals.timeout_ms).unwrap_or(i32::MAX);
    match command {
        TopicCommand::Create {
            name: topic,
            partitions,
            replicas,
            configs,
            dry_run,
        } => {
            let configs = key_values(&configs)?;
            let request = CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name(&topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replicas)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(str_bytes(k))
                                    .with_value(Some(str_bytes(v)))
                            })
                            .collect(),
                    )])
                .with_timeout_ms(timeout_ms)
                .with_validate_only(dry_run);
            let controller = client.controller();
            let response: CreateTopicsResponse = client.call(controller, ApiKey::CreateTopics, 7, &request).await?;
            let result = response
                .topics
                .first()
                .ok_or_else(|| CliError::Invalid("the broker answered for no topic".to_string()))?;
            if result.error_code != 0 {
                return Err(refused(
                    result.error_code,
                    format!("cannot create topic {topic}"),
                    result.error_message.as_ref(),
                ));
            }
            let verb = if dry_run { "would create" } else { "created" };
            print(
                globals.format,
                || {
                    format!(
                        "{verb} topic {topic}: {} partitions, {} replicas\n",
                        result.num_partitions, result.replication_factor
                    )
                },
                || {
                    json!({
                        "topic": topic,
                        "topic_id": result.topic_id.to_string(),
                        "partitions": result.num_partitions,
                        "replication_factor": result.replication_factor,
                        "dry_run": dry_run,
                    })
                },
            );
        }
        TopicCommand::List { internal } => {
            let metadata = client.metadata(None).await?;
            let mut topics: Vec<&MetadataResponseTopic> = metadata.topics.iter().filter(|t| internal || !t.is_internal).collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            let summary = |t: &MetadataResponseTopic| {
                (
                    t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                    t.partitions.len(),
                    t.partitions.iter().map(|p| p.replica_nodes.len()).max().unwrap_or(0),
                )
            };
            print(
                globals.format,
                || {
                    let rows: Vec<Vec<String>> = topics
                        .iter()
                        .map(|t| {
                            let (n, partitions, replicas) = summary(t);
                            vec![n, partitions.to_string(), replicas.to_string()]
                        })
                        .collect();
                    table(&["NAME", "PARTITIONS", "REPLICAS"], &rows)
                },
                || {
                    json!(topics
                        .iter()
                        .map(|t| {
                            let (n, partitions, replicas) = summary(t);
                            json!({"topic": n, "partitions": partitions, "replication_factor": replicas, "internal": t.is_internal})
                        })
                        .collect::<Vec<_>>())
                },
            );
        }
        TopicCommand::Describe { names } => {
            let described = describe(&mut client, &names).await?;
            print(
                globals.format,
                || described.iter().map(Described::text).collect::<Vec<_>>().join("\n"),
                || json!(described.iter().map(Described::json).collect::<Vec<_>>()),
            );
        }
        TopicCommand::Delete { names } => {
            let request = DeleteTopicsRequest::default()
                .with_topics(names.iter().map(|n| DeleteTopicState::default().with_name(Some(name(n)))).collect())
                .with_timeout_ms(timeout_ms);
            let controller = client.controller();
            let response: DeleteTopicsResponse = client.call(controller, ApiKey::DeleteTopics, 6, &request).await?;
            let mut first_error = None;
            let mut deleted = Vec::new();
            for result in &response.responses {
                let topic = result.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                if result.error_code == 0 {
                    deleted.push(topic);
                } else if first_error.is_none() {
                    first_error = Some(refused(
                        result.error_code,
                        format!("cannot delete topic {topic}"),
                        result.error_message.as_ref(),
                    ));
                }
            }
            print(
                globals.format,
                || deleted.iter().map(|t| format!("deleted topic {t}\n")).collect(),
                || json!({"deleted": deleted}),
            );
            if let Some(error) = first_error {
                return Err(error);
            }
        }
        TopicCommand::AlterConfig {
            name: topic,
            set,
            delete,
            dry_run,
        } => {
            let set = key_values(&set)?;
            if set.is_empty() && delete.is_empty() {
                return Err(CliError::Invalid(
                    "nothing to change: give --set KEY=VALUE or --delete KEY".to_string(),
                ));
            }
            let configs = set
                .iter()
                .map(|(k, v)| {
                    AlterableConfig::default()
                        .with_name(str_bytes(k))
                        .with_config_operation(0)
                        .with_value(Some(str_bytes(v)))
                })
                .chain(
                    delete
                        .iter()
                        .map(|k| AlterableConfig::default().with_name(str_bytes(k)).with_config_operation(1)),
                )
                .collect();
            let request = IncrementalAlterConfigsRequest::default()
                .with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(str_bytes(&topic))
                    .with_configs(configs)])
                .with_validate_only(dry_run);
            let response: IncrementalAlterConfigsResponse = client.call(None, ApiKey::IncrementalAlterConfigs, 1, &request).await?;
            if let Some(result) = response.responses.iter().find(|r| r.error_code != 0) {
                return Err(refused(
                    result.error_code,
                    format!("cannot change the configs of topic {topic}"),
                    result.error_message.as_ref(),
                ));
            }
            let verb = if dry_run { "would change" } else { "changed" };
            print(
                globals.format,
                || format!("{verb} {} configs of topic {topic}\n", set.len() + delete.len()),
                || json!({"topic": topic, "set": set.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>(), "deleted": delete, "dry_run": dry_run}),
            );
        }
        TopicCommand::AddPartitions { name: topic, num, dry_run } => {
            if num < 1 {
                return Err(CliError::Invalid("--num must be at least 1".to_string()));
            }
            let existing = client.partitions_of(&topic).await?;
            let count = i32::try_from(existing.len()).unwrap_or(i32::MAX).saturating_add(num);
            let request = CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default().with_name(name(&topic)).with_count(count)])
                .with_timeout_ms(timeout_ms)
                .with_validate_only(dry_run);
            let controller = client.controller();
            let response: CreatePartitionsResponse = client.call(controller, ApiKey::CreatePartitions, 3, &request).await?;
            if let Some(result) = response.results.iter().find(|r| r.error_code != 0) {
                return Err(refused(
                    result.error_code,
                    format!("cannot add partitions to topic {topic}"),
                    result.error_message.as_ref(),
                ));
            }
            let verb = if dry_run { "would have" } else { "now has" };
            print(
                globals.format,
                || format!("topic {topic} {verb} {count} partitions\n"),
                || json!({"topic": topic, "partitions": count, "dry_run": dry_run}),
            );
        }
    }
    Ok(())
}

/// One partition as `topic describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    /// Log start and high watermark (-1 when the leader did not say).
    pub log_start: i64,
    pub high_watermark: i64,
}

/// One topic as `topic describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub topic: String,
    pub topic_id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionView>,
    /// (name, value, source) of every config; source is DescribeConfigs'.
    pub configs: Vec<(String, Option<String>, i8)>,
}

impl Described {
    fn text(&self) -> String {
        let mut out = format!(
            "topic {}  id {}  partitions {}{}\n",
            self.topic,
            self.topic_id,
            self.partitions.len(),
            if self.internal { "  internal" } else { "" }
        );
        let rows: Vec<Vec<String>> = self
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.partition.to_string(),
                    p.leader.to_string(),
                    p.leader_epoch.to_string(),
                    ids(&p.replicas),
                    ids(&p.isr),
                    ids(&p.offline),
                    p.log_start.to_string(),
                    p.high_watermark.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "OFFLINE",
                "LOG-START",
                "HIGH-WATERMARK",
            ],
            &rows,
        ));
        let set: Vec<Vec<String>> = self
            .configs
            .iter()
            .filter(|(_, _, source)| *source != DEFAULT_CONFIG)
            .map(|(k, v, _)| vec![k.clone(), v.clone().unwrap_or_else(|| "(sensitive)".to_string())])
            .collect();
        if !set.is_empty() {
            out.push('\n');
            out.push_str(&table(&["CONFIG", "VALUE"], &set));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "topic": self.topic,
            "topic_id": self.topic_id,
            "internal": self.internal,
            "partitions": self.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline_replicas": p.offline,
                "log_start_offset": p.log_start,
                "high_watermark": p.high_watermark,
            })).collect::<Vec<_>>(),
            "configs": self.configs.iter().map(|(k, v, source)| (k.clone(), json!({"value": v, "default": *source == DEFAULT_CONFIG}))).collect::<BTreeMap<_, _>>(),
        })
    }
}

/// Metadata, offsets from each partition's leader, and configs.
async fn describe(client: &mut Client, names: &[String]) -> Result<Vec<Described>, CliError> {
    let metadata = client.metadata(Some(names.to_vec())).await?;
    let mut described = Vec::new();
    for topic in &metadata.topics {
        let name = topic.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if topic.error_code != 0 {
            return Err(CliError::kafka(topic.error_code, format!("topic {name}")));
        }
        let mut partitions: Vec<PartitionView> = topic
            .partitions
            .iter()
            .map(|p| PartitionView {
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                log_start: -1,
                high_watermark: -1,
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        // Earliest and latest from each leader; a leader that cannot be
        // reached leaves -1.
        let keys: Vec<(String, i32)> = partitions.iter().map(|p| (name.clone(), p.partition)).collect();
        let starts = client.list_offsets(&keys, EARLIEST).await?;
        let ends = client.list_offsets(&keys, LATEST).await?;
        for view in &mut partitions {
            let key = (name.clone(), view.partition);
            view.log_start = starts.get(&key).copied().unwrap_or(-1);
            view.high_watermark = ends.get(&key).copied().unwrap_or(-1);
        }
        let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(name.clone()))
            .with_configuration_keys(None)]);
        let response: DescribeConfigsResponse = client.call(None, ApiKey::DescribeConfigs, 4, &request).await?;
        let mut configs = Vec::new();
        for result in &response.results {
            if result.error_code != 0 {
                return Err(refused(
                    result.error_code,
                    format!("cannot describe the configs of topic {name}"),
                    result.error_message.as_ref(),
                ));
            }
            configs.extend(
                result
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()), c.config_source)),
            );
        }
        configs.sort();
        described.push(Described {
            topic: name,
            topic_id: topic.topic_id.to_string(),
            internal: topic.is_internal,
            partitions,
            configs,
        });
    }
    Ok(described)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_need_a_key_and_an_equals_sign() {
        assert_eq!(
            key_values(&["retention.ms=1000".into(), "a=b=c".into(), "empty=".into()]).unwrap(),
            vec![
                ("retention.ms".into(), "1000".into()),
                ("a".into(), "b=c".into()),
                ("empty".into(), String::new())
            ]
        );
        assert!(matches!(key_values(&["novalue".into()]), Err(CliError::Invalid(_))));
        assert!(matches!(key_values(&["=v".into()]), Err(CliError::Invalid(_))));
    }

    #[test]
    fn a_description_shows_partitions_and_only_the_configs_set() {
        let described = Described {
            topic: "orders".into(),
            topic_id: "id".into(),
            internal: false,
            partitions: vec![PartitionView {
                partition: 0,
                leader: 1,
                leader_epoch: 3,
                replicas: vec![1, 2],
                isr: vec![1],
                offline: vec![],
                log_start: 0,
                high_watermark: 42,
            }],
            configs: vec![
                ("cleanup.policy".into(), Some("delete".into()), DEFAULT_CONFIG),
                ("retention.ms".into(), Some("1000".into()), 1),
            ],
        };
        let text = described.text();
        assert!(text.contains("0          1       3      1,2       1"), "{text}");
        assert!(text.contains("retention.ms  1000") && !text.contains("cleanup.policy"), "{text}");
        let json = described.json();
        assert_eq!(json["partitions"][0]["high_watermark"], 42);
        assert_eq!(json["configs"]["cleanup.policy"]["default"], true);
    }
}
