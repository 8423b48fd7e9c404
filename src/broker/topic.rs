//! A topic as the broker serves it, and what can go wrong with topics.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;

use super::Partition;
use crate::coordination::CoordinationError;
use crate::metrics::{Metrics, TopicLabels};
use crate::topic_config::{InvalidConfig, TopicConfig};

/// Kafka's limit on topic name length.
const TOPIC_NAME_MAX: usize = 249;

pub struct Topic {
    pub name: String,
    pub id: uuid::Uuid,
    pub(super) config: RwLock<(Arc<TopicConfig>, BTreeMap<String, String>)>,
    pub(super) partitions: RwLock<Vec<Arc<Partition>>>,
    /// This topic's counters, resolved once so the data path does not look
    /// labels up per request.
    pub metrics: TopicMetrics,
}

pub struct TopicMetrics {
    pub produce_bytes: Counter,
    pub produce_records: Counter,
    pub fetch_bytes: Counter,
}

impl Topic {
    pub(super) fn new(name: &str, id: uuid::Uuid, config: TopicConfig, overrides: BTreeMap<String, String>, metrics: &Metrics) -> Self {
        let labels = TopicLabels { topic: name.to_string() };
        Self {
            name: name.to_string(),
            id,
            config: RwLock::new((Arc::new(config), overrides)),
            partitions: RwLock::new(Vec::new()),
            metrics: TopicMetrics {
                produce_bytes: metrics.bytes_in.get_or_create_owned(&labels),
                produce_records: metrics.records_in.get_or_create_owned(&labels),
                fetch_bytes: metrics.bytes_out.get_or_create_owned(&labels),
            },
        }
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().clone()
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read();
        usize::try_from(index).ok().and_then(|i| partitions.get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.read().len() as i32
    }

    /// The topic's configs: shared, so the produce path takes no copy.
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config.read().0.clone()
    }

    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.config.read().1.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("invalid topic name {0:?}: use 1 to 249 of [a-zA-Z0-9._-], not '.' or '..'")]
    InvalidName(String),
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    #[error("unknown topic {0}")]
    Unknown(String),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("replication factor {0} is not possible on this single-node broker (use 1 or -1)")]
    InvalidReplicationFactor(i16),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// Kafka's own wording, as clients and tools expect it.
    #[error("{0}")]
    InvalidConfig(#[from] InvalidConfig),
    #[error("{0}")]
    Coordination(#[from] CoordinationError),
    #[error("storage error: {0}")]
    Storage(String),
}

impl TopicError {
    pub fn code(&self) -> i16 {
        match self {
            TopicError::InvalidName(_) => ResponseError::InvalidTopicException.code(),
            TopicError::AlreadyExists(_) | TopicError::Coordination(CoordinationError::TopicExists(_)) => {
                ResponseError::TopicAlreadyExists.code()
            }
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition.code(),
            TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
            TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor.code(),
            TopicError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment.code(),
            TopicError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
            TopicError::Coordination(_) | TopicError::Storage(_) => ResponseError::KafkaStorageError.code(),
        }
    }
}

/// How a config change applies to a topic's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// IncrementalAlterConfigs: set or delete the named keys, keep the rest.
    Incremental,
    /// AlterConfigs: the given keys become the whole set of overrides.
    Replace,
}

pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= TOPIC_NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TopicError::InvalidName(name.to_string()))
    }
}
