//! Coordinator shards: the partitions of an internal, replicated topic
//! (`__consumer_offsets`, `__transaction_state`) whose leaders coordinate
//! the keys (groups, transactional ids) that hash to them. This tracks
//! which of them this broker leads and has loaded, at which leader epoch;
//! the state itself is loaded by the owner (`offsets`, `transactions`).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use crate::archive::records::{decode_batch, encode_batch, Row};
use crate::broker::{Broker, Partition};
use crate::log::batch;
use std::sync::Arc;

/// Kafka's placement of a key on a coordinator topic:
/// `Utils.abs(key.hashCode) % partitions`, with Java's String hash over
/// UTF-16 code units.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = key
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

/// Whether `topic` is one of the internal topics coordinators keep their
/// state in.
pub fn is_coordinator_topic(topic: &str) -> bool {
    topic == super::offsets::OFFSETS_TOPIC || topic == super::transactions::TXN_TOPIC
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading(i32),
    Loaded(i32),
}

/// What changed in this broker's shards since the last look.
pub struct Moves {
    /// Newly led shards (with their leader epoch) to load.
    pub to_load: Vec<(Arc<Partition>, i32)>,
    /// Shards no longer led, whose keys to forget.
    pub lost: Vec<i32>,
}

/// The shards of one coordinator topic this broker leads.
pub struct Shards {
    topic: &'static str,
    loads: Mutex<HashMap<i32, Load>>,
}

impl Shards {
    pub fn new(topic: &'static str) -> Self {
        Self {
            topic,
            loads: Mutex::new(HashMap::new()),
        }
    }

    pub fn topic(&self) -> &'static str {
        self.topic
    }

    /// The key's shard, if the topic exists here.
    pub fn shard_of(&self, broker: &Broker, key: &str) -> Option<Arc<Partition>> {
        let topic = broker.topic(self.topic)?;
        topic.partition(partition_for(key, topic.partition_count()))
    }

    /// How many shards the topic has (1 before it exists).
    pub fn count(&self, broker: &Broker) -> i32 {
        broker.topic(self.topic).map_or(1, |t| t.partition_count().max(1))
    }

    /// The shard's leader epoch if this broker coordinates `key` now, else
    /// the error a coordinator request gets: COORDINATOR_NOT_AVAILABLE (no
    /// topic yet), NOT_COORDINATOR (another broker leads the shard, or
    /// none), COORDINATOR_LOAD_IN_PROGRESS (loading it).
    pub fn owner_epoch(&self, broker: &Broker, key: &str) -> Result<i32, i16> {
        let Some(partition) = self.shard_of(broker, key) else {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        };
        let Some(epoch) = partition.leader_epoch() else {
            return Err(ResponseError::NotCoordinator.code());
        };
        match self.loads.lock().get(&partition.index) {
            Some(Load::Loaded(e)) if *e == epoch => Ok(epoch),
            _ => Err(ResponseError::CoordinatorLoadInProgress.code()),
        }
    }

    /// Compares what this broker leads now with what it loaded: marks the
    /// newly led shards as loading (the caller loads each, then calls
    /// `loaded`) and forgets the lost ones.
    pub fn reconcile(&self, broker: &Broker) -> Moves {
        let mut moves = Moves {
            to_load: Vec::new(),
            lost: Vec::new(),
        };
        let Some(topic) = broker.topic(self.topic) else {
            return moves;
        };
        let mut loads = self.loads.lock();
        for partition in topic.partitions() {
            let led = partition.leader_epoch();
            let current = loads.get(&partition.index).copied();
            match (led, current) {
                (Some(epoch), Some(Load::Loading(e) | Load::Loaded(e))) if e == epoch => {}
                (Some(epoch), _) => {
                    loads.insert(partition.index, Load::Loading(epoch));
                    moves.to_load.push((partition.clone(), epoch));
                }
                (None, Some(_)) => {
                    loads.remove(&partition.index);
                    moves.lost.push(partition.index);
                }
                (None, None) => {}
            }
        }
        moves
    }

    /// The shard's state is loaded at `epoch`: it answers from now on,
    /// unless it moved again meanwhile.
    pub fn loaded(&self, index: i32, epoch: i32) {
        let mut loads = self.loads.lock();
        if loads.get(&index) == Some(&Load::Loading(epoch)) {
            loads.insert(index, Load::Loaded(epoch));
        }
    }

    /// Loading failed: the next reconcile tries again.
    pub fn failed(&self, index: i32) {
        self.loads.lock().remove(&index);
    }
}

/// Every record value in the partition's local log, in order.
pub async fn read_values(partition: &Partition, limits: crate::log::records::Limits) -> Result<Vec<Bytes>, crate::log::LogError> {
    let (start, end) = {
        let log = partition.lock_log();
        (log.log_start_offset(), log.next_offset())
    };
    let mut values = Vec::new();
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
        values.extend(rows.into_iter().filter_map(|r| r.value));
    }
    Ok(values)
}

/// Appends the rows to the partition this broker leads, as one batch, and
/// waits until its ISR holds them (acks=all), at most `timeout`.
pub async fn append_acknowledged(partition: &Partition, rows: &[Row], now_ms: i64, timeout: std::time::Duration) -> std::io::Result<()> {
    let encoded = encode_batch(rows, 0);
    let batches = batch::split_batches(&encoded).map_err(std::io::Error::other)?;
    let (appended, term) = partition
        .append(&batches, now_ms)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    match tokio::time::timeout(
        timeout,
        partition.wait_acknowledged(appended.next_offset, term, true, &mut Default::default()),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
        Err(_) => Err(std::io::Error::other(format!(
            "{}-{}: the ISR did not acknowledge in time",
            partition.topic, partition.index
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_partitions_as_in_kafka() {
        // Java: Math.abs("my-group".hashCode()) % 50 and friends, computed
        // with Kafka's Utils.abs (x & 0x7fffffff).
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
