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
//! `__consumer_offsets` themselves do not read them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use crate::archive::records::{decode_batch, encode_batch, Row};
use crate::broker::{Broker, Partition};
use crate::clock::now_ms;
use crate::coordination::BoxFuture;
use crate::groups::offsets::OffsetReplicator;
use crate::log::batch;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a commit waits for the ISR before it fails (retriable).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka's group placement: `Utils.abs(groupId.hashCode) % partitions`,
/// with Java's String hash over UTF-16 code units.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading(i32),
    Loaded(i32),
}

/// The cluster's side of group coordination on this broker.
#[derive(Default)]
pub struct ClusterOffsets {
    broker: OnceLock<Weak<Broker>>,
    /// Offsets partitions this broker leads, with the leader epoch their
    /// groups were (or are being) loaded at.
    loads: Mutex<HashMap<i32, Load>>,
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

    /// The group's offsets partition, if the topic exists here.
    fn partition_of(broker: &Broker, group: &str) -> Option<Arc<Partition>> {
        let topic = broker.topic(OFFSETS_TOPIC)?;
        topic.partition(partition_for(group, topic.partition_count()))
    }

    /// `None` if this broker coordinates `group` now, else the error a
    /// group request gets: NOT_COORDINATOR (another broker does, or none
    /// yet), COORDINATOR_LOAD_IN_PROGRESS (loading it).
    pub fn group_error(&self, group: &str) -> Option<i16> {
        let Some(broker) = self.broker() else {
            return Some(ResponseError::CoordinatorNotAvailable.code());
        };
        let Some(partition) = Self::partition_of(&broker, group) else {
            return Some(ResponseError::CoordinatorNotAvailable.code());
        };
        let Some(epoch) = partition.leader_epoch() else {
            return Some(ResponseError::NotCoordinator.code());
        };
        match self.loads.lock().get(&partition.index) {
            Some(Load::Loaded(e)) if *e == epoch => None,
            Some(Load::Loading(e)) if *e == epoch => Some(ResponseError::CoordinatorLoadInProgress.code()),
            _ => Some(ResponseError::CoordinatorLoadInProgress.code()),
        }
    }

    /// Offsets partitions to load (newly led) and groups to forget (no
    /// longer led), given what this broker leads now. Marks the loads as
    /// started; the caller runs `load` for each.
    pub fn reconcile(&self, broker: &Broker) -> Vec<(Arc<Partition>, i32)> {
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            return Vec::new();
        };
        let count = topic.partition_count();
        let mut loads = self.loads.lock();
        let mut to_load = Vec::new();
        let mut lost = Vec::new();
        for partition in topic.partitions() {
            let led = partition.leader_epoch();
            let current = loads.get(&partition.index).copied();
            match (led, current) {
                (Some(epoch), Some(Load::Loading(e) | Load::Loaded(e))) if e == epoch => {}
                (Some(epoch), _) => {
                    loads.insert(partition.index, Load::Loading(epoch));
                    to_load.push((partition.clone(), epoch));
                }
                (None, Some(_)) => {
                    loads.remove(&partition.index);
                    lost.push(partition.index);
                }
                (None, None) => {}
            }
        }
        drop(loads);
        if !lost.is_empty() {
            let forgotten = broker.groups.forget(|g| lost.contains(&partition_for(g, count)));
            tracing::info!(partitions = ?lost, groups = forgotten, "no longer coordinating the groups of these offsets partitions");
        }
        to_load
    }

    /// Loads the groups of an offsets partition this broker now leads from
    /// the partition's log, then answers for them.
    pub async fn load(&self, partition: Arc<Partition>, epoch: i32) {
        let Some(broker) = self.broker() else { return };
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else { return };
        let count = topic.partition_count();
        let index = partition.index;
        let limits = broker.validator.limits(topic.config().log_config().max_message_bytes);
        let lines = match read_lines(&partition, limits).await {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(partition = index, error = %e, "cannot read an offsets partition; groups stay unavailable until it is read");
                self.loads.lock().remove(&index);
                return;
            }
        };
        let records = lines.len();
        match broker.groups.offsets.reload(move |g| partition_for(g, count) == index, lines).await {
            Ok(_) => {
                let mut loads = self.loads.lock();
                if loads.get(&index) == Some(&Load::Loading(epoch)) {
                    loads.insert(index, Load::Loaded(epoch));
                }
                tracing::info!(
                    partition = index,
                    leader_epoch = epoch,
                    records,
                    "coordinating the groups of an offsets partition"
                );
            }
            Err(e) => {
                tracing::warn!(partition = index, error = %e, "cannot load an offsets partition");
                self.loads.lock().remove(&index);
            }
        }
    }
}

/// Every record value in the partition's local log, in order.
async fn read_lines(partition: &Partition, limits: crate::log::records::Limits) -> Result<Vec<Bytes>, crate::log::LogError> {
    let (start, end) = {
        let log = partition.lock_log();
        (log.log_start_offset(), log.next_offset())
    };
    let mut lines = Vec::new();
    let mut offset = start;
    while offset < end {
        let bytes = partition.read(offset, 1 << 20, end).await?;
        if bytes.is_empty() {
            break;
        }
        let mut rows = Vec::new();
        for batch in batch::split_batches(&bytes)? {
            offset = batch.0.last_offset() + 1;
            decode_batch(&batch.1, limits, &mut rows)?;
        }
        lines.extend(rows.into_iter().filter_map(|r| r.value));
    }
    Ok(lines)
}

impl OffsetReplicator for ClusterOffsets {
    fn owns(&self, group: &str) -> bool {
        self.group_error(group).is_none()
    }

    fn lane(&self, group: &str) -> i32 {
        partition_for(group, self.lanes())
    }

    fn lanes(&self) -> i32 {
        self.broker()
            .and_then(|b| b.topic(OFFSETS_TOPIC))
            .map_or(1, |t| t.partition_count().max(1))
    }

    fn replicate(&self, lines: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let broker = self.broker().ok_or_else(|| std::io::Error::other("the broker is shutting down"))?;
            let mut by_partition: BTreeMap<i32, (Arc<Partition>, Vec<Row>)> = BTreeMap::new();
            let now = now_ms();
            for (group, line) in lines {
                let partition = Self::partition_of(&broker, &group).ok_or_else(|| std::io::Error::other("no offsets topic"))?;
                let entry = by_partition.entry(partition.index).or_insert_with(|| (partition, Vec::new()));
                let offset = entry.1.len() as i64;
                entry.1.push(Row {
                    offset,
                    timestamp: now,
                    key: Some(Bytes::from(group.into_bytes())),
                    value: Some(Bytes::from(line)),
                    headers: Vec::new(),
                });
            }
            for (_, (partition, rows)) in by_partition {
                let encoded = encode_batch(&rows, 0);
                let batches = batch::split_batches(&encoded).map_err(std::io::Error::other)?;
                let (appended, term) = partition.append(&batches, now).map_err(|e| std::io::Error::other(e.to_string()))?;
                let acked = tokio::time::timeout(REPLICATION_TIMEOUT, partition.wait_acknowledged(appended.next_offset, term, true)).await;
                match acked {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                    Err(_) => return Err(std::io::Error::other("the offsets partition's ISR did not acknowledge in time")),
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_partitions_as_in_kafka() {
        // Java: Math.abs("my-group".hashCode()) % 50 and friends, computed
        // with Kafka's Utils.abs (x & 0x7fffffff).
        assert_eq!("".encode_utf16().count(), 0);
        assert_eq!(partition_for("", 50), 0);
        // "a".hashCode() == 97
        assert_eq!(partition_for("a", 50), 97 % 50);
        // "ab".hashCode() == 97 * 31 + 98 == 3105
        assert_eq!(partition_for("ab", 50), 3105 % 50);
        // A hash that overflows i32 and is negative: masked, not negated.
        let long = "a-consumer-group-with-a-long-name";
        let hash = long.encode_utf16().fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
        assert_eq!(partition_for(long, 16), (hash & 0x7fff_ffff) % 16);
        for n in 1..64 {
            assert!((0..n).contains(&partition_for("any", n)));
        }
    }
}
