//! Consumer groups in a cluster, Kafka's way: each group belongs to one
//! partition of the internal, replicated `__consumer_offsets` topic (by the
//! Java hash of its id), and the leader of that partition coordinates it.
//! Every committed-offset change is appended to that partition and
//! acknowledged by its ISR (acks=all) before it is applied, so commits
//! survive the loss of any single broker and need no etcd. A broker that
//! becomes a partition's leader loads its groups from the partition's log
//! before it answers for them (COORDINATOR_LOAD_IN_PROGRESS meanwhile).
//!
//! Records hold the committed-offset changes as JSON lines (the same lines
//! as `meta/offsets.jsonl`), not Kafka's binary schema: tools that decode
//! `__consumer_offsets` themselves do not read them. Their keys name what
//! they change (a group's partition, a group, a transaction's held offset),
//! and the topic is compacted, as Kafka's is: the log keeps every change a
//! new coordinator needs, and nothing expires it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::shards::{append_acknowledged, read_values, Shards};
use crate::archive::records::Row;
use crate::broker::{Broker, Partition};
use crate::clock::now_ms;
use crate::coordination::BoxFuture;
use crate::groups::offsets::{OffsetReplicator, ReplicatedChange};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

pub use super::shards::partition_for;

/// How long a commit waits for the ISR before it fails (retriable).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster's side of group coordination on this broker.
pub struct ClusterOffsets {
    broker: OnceLock<Weak<Broker>>,
    /// Offsets partitions this broker leads, with the leader epoch their
    /// groups were (or are being) loaded at.
    shards: Shards,
}

impl Default for ClusterOffsets {
    fn default() -> Self {
        Self {
            broker: OnceLock::new(),
            shards: Shards::new(OFFSETS_TOPIC),
        }
    }
}

impl ClusterOffsets {
    /// Ties this to the broker (after it is built: the broker holds this).
    pub fn attach(self: &Arc<Self>, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
        broker.groups.offsets.set_replicator(self.clone());
    }

    fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get()?.upgrade()
    }

    /// `None` if this broker coordinates `group` now, else the error a
    /// group request gets: NOT_COORDINATOR (another broker does, or none
    /// yet), COORDINATOR_LOAD_IN_PROGRESS (loading it).
    pub fn group_error(&self, group: &str) -> Option<i16> {
        let Some(broker) = self.broker() else {
            return Some(ResponseError::CoordinatorNotAvailable.code());
        };
        self.shards.owner_epoch(&broker, group).err()
    }

    /// Offsets partitions to load (newly led); the groups of those no
    /// longer led are forgotten. The caller runs `load` for each.
    pub fn reconcile(&self, broker: &Broker) -> Vec<(Arc<Partition>, i32)> {
        let moves = self.shards.reconcile(broker);
        if !moves.lost.is_empty() {
            let count = self.shards.count(broker);
            let lost = moves.lost;
            let forgotten = broker.groups.forget(|g| lost.contains(&partition_for(g, count)));
            tracing::info!(partitions = ?lost, groups = forgotten, "no longer coordinating the groups of these offsets partitions");
        }
        moves.to_load
    }

    /// Loads the groups of an offsets partition this broker now leads from
    /// the partition's log, then answers for them.
    pub async fn load(&self, partition: Arc<Partition>, epoch: i32) {
        let Some(broker) = self.broker() else { return };
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else { return };
        let count = topic.partition_count();
        let index = partition.index;
        let limits = broker.validator.limits(topic.config().log_config().max_message_bytes);
        let lines = match read_values(&partition, limits).await {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(partition = index, error = %e, "cannot read an offsets partition; groups stay unavailable until it is read");
                self.shards.failed(index);
                return;
            }
        };
        let records = lines.len();
        match broker.groups.offsets.reload(move |g| partition_for(g, count) == index, lines).await {
            Ok(_) => {
                self.shards.loaded(index, epoch);
                tracing::info!(
                    partition = index,
                    leader_epoch = epoch,
                    records,
                    "coordinating the groups of an offsets partition"
                );
            }
            Err(e) => {
                tracing::warn!(partition = index, error = %e, "cannot load an offsets partition");
                self.shards.failed(index);
            }
        }
    }
}

impl OffsetReplicator for ClusterOffsets {
    fn owns(&self, group: &str) -> bool {
        self.group_error(group).is_none()
    }

    fn lane(&self, group: &str) -> i32 {
        partition_for(group, self.lanes())
    }

    fn lanes(&self) -> i32 {
        self.broker().map_or(1, |b| self.shards.count(&b))
    }

    fn replicate(&self, changes: Vec<ReplicatedChange>) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let broker = self.broker().ok_or_else(|| std::io::Error::other("the broker is shutting down"))?;
            let mut by_partition: BTreeMap<i32, (Arc<Partition>, Vec<Row>)> = BTreeMap::new();
            let now = now_ms();
            for ReplicatedChange { group, key, line } in changes {
                let partition = self
                    .shards
                    .shard_of(&broker, &group)
                    .ok_or_else(|| std::io::Error::other("no offsets topic"))?;
                let entry = by_partition.entry(partition.index).or_insert_with(|| (partition, Vec::new()));
                let offset = entry.1.len() as i64;
                entry.1.push(Row {
                    offset,
                    timestamp: now,
                    key: Some(Bytes::from(key)),
                    value: Some(Bytes::from(line)),
                    headers: Vec::new(),
                });
            }
            for (_, (partition, rows)) in by_partition {
                append_acknowledged(&partition, &rows, now, REPLICATION_TIMEOUT).await?;
            }
            Ok(())
        })
    }
}
