//! The coordination seam: cluster metadata that must outlive any one broker
//! (topics, producer-id blocks, broker starts). One trait, two
//! implementations: `embedded` (a file under the data dir, single node) and,
//! later, etcd for a cluster. Everything above this seam is the same code.

pub mod embedded;
pub mod etcd;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::security::state::{SecurityChange, SecurityState};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A topic as the cluster records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    /// Kafka topic id (UUID), fixed at creation.
    pub id: String,
    pub partitions: i32,
    /// Topic config overrides with Kafka's keys.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Replicas of each partition, in preference order (a cluster); empty on
    /// a single node, whose one broker holds everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignment: Vec<Vec<i32>>,
}

/// No leader: the partition is offline.
pub const NO_LEADER: i32 = -1;

/// A partition as the controller records it (`/<c>/partitions/<topic-id>/<p>`);
/// the rules that change it are `controller::decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// In preference order: the first live ISR member leads.
    pub replicas: Vec<i32>,
    pub leader: i32,
    /// Grows with every change of leader (and on going offline), so a
    /// deposed leader and its batches are told apart.
    pub leader_epoch: i32,
    /// In sync replicas, in replica order.
    pub isr: Vec<i32>,
}

impl PartitionState {
    /// A new partition: every live replica is in sync (it is empty), and the
    /// first live one leads. With none live it starts offline, its ISR the
    /// replicas, so the first to register leads.
    pub fn new(replicas: Vec<i32>, live: &BTreeSet<i32>, leader_epoch: i32) -> Self {
        let in_sync: Vec<i32> = replicas.iter().copied().filter(|r| live.contains(r)).collect();
        let isr = if in_sync.is_empty() { replicas.clone() } else { in_sync };
        let leader = isr.iter().copied().find(|r| live.contains(r)).unwrap_or(NO_LEADER);
        Self {
            replicas,
            leader,
            leader_epoch,
            isr,
        }
    }

    pub fn is_offline(&self) -> bool {
        self.leader == NO_LEADER
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("coordination storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("coordination state is corrupt: {0}")]
    Corrupt(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} changed meanwhile (through another broker); retry")]
    Conflict(String),
}

pub trait Coordinator: Send + Sync {
    /// Every topic, as of now.
    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicRecord>, CoordinationError>>;
    /// Creates or replaces a topic record; durable when it returns.
    fn put_topic(&self, topic: TopicRecord) -> BoxFuture<'_, Result<(), CoordinationError>> {
        self.put_topics(vec![topic])
    }
    /// Creates or replaces several topic records in one durable change:
    /// all of them are recorded, or none.
    fn put_topics(&self, topics: Vec<TopicRecord>) -> BoxFuture<'_, Result<(), CoordinationError>>;
    /// Records new topics, refusing (`TopicExists`) if a name is taken: two
    /// brokers creating the same topic at once must not both succeed. etcd
    /// records them in transactions of 64 (its bound on operations), each
    /// all or none. A single node serialises creations itself.
    fn create_topics(&self, topics: Vec<TopicRecord>) -> BoxFuture<'_, Result<(), CoordinationError>> {
        self.put_topics(topics)
    }
    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<(), CoordinationError>>;
    /// Replaces `expected` with `topic`, refusing (`Conflict`) if the
    /// record changed meanwhile (another broker's change in a cluster). A
    /// single node serialises changes itself and just writes.
    fn update_topic(&self, expected: TopicRecord, topic: TopicRecord) -> BoxFuture<'_, Result<(), CoordinationError>> {
        let _ = expected;
        self.put_topic(topic)
    }
    /// Deletes the topic if its record is still `expected` (`Conflict`
    /// otherwise: it changed, or was deleted and created again).
    fn delete_topic_if(&self, expected: TopicRecord) -> BoxFuture<'_, Result<(), CoordinationError>> {
        self.delete_topic(expected.name)
    }
    /// Reserves `count` producer ids; returns the first. Never hands out an
    /// id twice, across restarts.
    fn allocate_producer_ids(&self, count: i64) -> BoxFuture<'_, Result<i64, CoordinationError>>;
    /// Registers this broker's start and returns its epoch: a number larger
    /// than any earlier start's. Single node: it is the partitions' leader
    /// epoch, so batches written before a restart are told apart.
    fn register_start(&self, broker_id: i32) -> BoxFuture<'_, Result<i32, CoordinationError>>;
    /// ACLs and SCRAM credentials, with a version that grows with every change.
    fn security(&self) -> BoxFuture<'_, Result<(u64, SecurityState), CoordinationError>>;
    /// Applies a change of ACLs or credentials durably; returns the state
    /// after it, with its version.
    fn change_security(&self, change: SecurityChange) -> BoxFuture<'_, Result<(u64, SecurityState), CoordinationError>>;
    /// The whole state with a version that grows with every change, for a
    /// copy in the archive (single node: how a broker on an empty disk finds
    /// its topics again). `None` where the store is durable by itself (etcd).
    fn snapshot(&self) -> Option<(u64, Vec<u8>)> {
        None
    }
}
