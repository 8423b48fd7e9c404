//! What etcd holds for one cluster, as of one revision: the live brokers
//! with their epochs and the topics. Built from a range read, then kept
//! current by applying watch events in order. Pure, so every event kind is
//! tested without etcd.

use std::collections::BTreeMap;

use super::{Keys, Registration};
use crate::coordination::{PartitionState, TopicRecord};
use crate::quota::QuotaSetting;
use crate::security::acl::AclBinding;
use crate::security::state::{ScramEntry, SecurityState};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterImage {
    /// The etcd revision this image reflects.
    pub revision: i64,
    /// Live brokers, with their broker epoch (their registration's create_revision).
    pub brokers: BTreeMap<i32, (Registration, i64)>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// The controller's broker id and epoch (its key's create_revision).
    pub controller: Option<(i32, i64)>,
    /// Partition states by (topic id, partition), with their mod_revision:
    /// what a fenced write compares.
    pub partitions: BTreeMap<(String, i32), (PartitionState, i64)>,
    /// The first producer id not handed out yet.
    pub producer_ids_next: i64,
    /// ACLs and SCRAM credentials by key.
    pub acls: BTreeMap<String, AclBinding>,
    pub scram: BTreeMap<String, ScramEntry>,
    /// Client quotas by key (one per entity and kind).
    pub quotas: BTreeMap<String, QuotaSetting>,
}

/// One change to a key of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<'a> {
    pub key: &'a str,
    /// `None` for a deletion (or a lease expiry).
    pub value: Option<&'a [u8]>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl ClusterImage {
    /// Applies one change; a value that does not parse is skipped with a
    /// warning rather than stopping the image (one bad key must not blind
    /// the broker to the rest).
    pub fn apply(&mut self, keys: &Keys, change: &Change<'_>) {
        self.revision = self.revision.max(change.mod_revision);
        if let Some(id) = change.key.strip_prefix(&keys.brokers()) {
            let Ok(id) = id.parse::<i32>() else { return };
            let epoch = change.create_revision;
            upsert(&mut self.brokers, id, change, "broker registration", |r: Registration| (r, epoch));
        } else if change.key == keys.controller() {
            self.controller = match change.value.map(serde_json::from_slice::<i32>) {
                Some(Ok(id)) => Some((id, change.create_revision)),
                Some(Err(e)) => {
                    tracing::warn!(key = change.key, error = %e, "skipping a controller key that does not parse");
                    None
                }
                None => None,
            };
        } else if let Some(rest) = change.key.strip_prefix(&keys.partitions()) {
            let Some((topic_id, partition)) = rest.rsplit_once('/') else {
                return;
            };
            let Ok(partition) = partition.parse::<i32>() else { return };
            let revision = change.mod_revision;
            let at = (topic_id.to_string(), partition);
            upsert(&mut self.partitions, at, change, "partition state", |s: PartitionState| {
                (s, revision)
            });
        } else if change.key.starts_with(&keys.acls()) {
            upsert(&mut self.acls, change.key.to_string(), change, "ACL", |a: AclBinding| a);
        } else if change.key.starts_with(&keys.quotas()) {
            upsert(
                &mut self.quotas,
                change.key.to_string(),
                change,
                "client quota",
                |q: QuotaSetting| q,
            );
        } else if change.key.starts_with(&keys.scram_all()) {
            upsert(
                &mut self.scram,
                change.key.to_string(),
                change,
                "SCRAM credential",
                |e: ScramEntry| e,
            );
        } else if let Some(name) = change.key.strip_prefix(&keys.topics()) {
            upsert(&mut self.topics, name.to_string(), change, "topic record", |t: TopicRecord| t);
        } else if change.key == keys.producer_ids() {
            #[derive(serde::Deserialize)]
            struct Counter {
                next: i64,
            }
            if let Some(Ok(counter)) = change.value.map(serde_json::from_slice::<Counter>) {
                self.producer_ids_next = self.producer_ids_next.max(counter.next);
            }
        }
    }
}

impl ClusterImage {
    /// The ACLs and credentials this image holds.
    pub fn security(&self) -> SecurityState {
        let mut state = SecurityState::default();
        state.acls.extend(self.acls.values().cloned());
        for entry in self.scram.values() {
            state
                .scram
                .entry(entry.user.clone())
                .or_default()
                .insert(entry.mechanism, entry.credential.clone());
        }
        for setting in self.quotas.values() {
            state.quotas.set(setting);
        }
        state
    }
}

/// Puts the parsed value of `change` at `key` (through `make`), or removes
/// `key` for a deletion; a value that does not parse is skipped with a WARN.
fn upsert<K: Ord, T: for<'de> serde::Deserialize<'de>, V>(
    map: &mut BTreeMap<K, V>,
    key: K,
    change: &Change<'_>,
    what: &str,
    make: impl FnOnce(T) -> V,
) {
    match change.value.map(serde_json::from_slice::<T>) {
        Some(Ok(value)) => {
            map.insert(key, make(value));
        }
        Some(Err(e)) => tracing::warn!(key = change.key, error = %e, "skipping a {what} that does not parse"),
        None => {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(key: &'a str, value: Option<&'a [u8]>, create_revision: i64, mod_revision: i64) -> Change<'a> {
        Change {
            key,
            value,
            create_revision,
            mod_revision,
        }
    }

    fn reg(id: i32) -> Registration {
        Registration {
            broker_id: id,
            advertised: format!("h{id}:9092"),
            http: format!("h{id}:9644"),
            dir_id: format!("d{id}"),
            empty_disk: false,
            listeners: Default::default(),
        }
    }

    #[test]
    fn puts_and_deletes_of_every_kind_land_in_the_image() {
        let keys = Keys::new("c");
        let mut image = ClusterImage::default();
        let b1 = serde_json::to_vec(&reg(1)).unwrap();
        image.apply(&keys, &change("/c/brokers/1", Some(&b1), 5, 5));
        let topic = TopicRecord {
            name: "t".into(),
            id: "x".into(),
            partitions: 2,
            configs: Default::default(),
            assignment: Vec::new(),
        };
        let t = serde_json::to_vec(&topic).unwrap();
        image.apply(&keys, &change("/c/topics/t", Some(&t), 6, 6));
        assert_eq!(image.brokers[&1], (reg(1), 5));
        assert_eq!(image.topics["t"], topic);
        assert_eq!(image.revision, 6);
        image.apply(&keys, &change("/c/brokers/1", None, 0, 9));
        image.apply(&keys, &change("/c/topics/t", None, 0, 10));
        assert!(image.brokers.is_empty() && image.topics.is_empty());
        assert_eq!(image.revision, 10);
    }

    #[test]
    fn the_controller_and_partition_states_land_in_the_image() {
        let keys = Keys::new("c");
        let mut image = ClusterImage::default();
        image.apply(&keys, &change("/c/controller", Some(b"2"), 11, 11));
        assert_eq!(image.controller, Some((2, 11)));
        let state = PartitionState {
            replicas: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
            isr: vec![1, 2],
        };
        let v = serde_json::to_vec(&state).unwrap();
        image.apply(&keys, &change("/c/partitions/id-t/3", Some(&v), 12, 14));
        assert_eq!(image.partitions[&("id-t".to_string(), 3)], (state, 14));
        image.apply(&keys, &change("/c/controller", None, 0, 15));
        image.apply(&keys, &change("/c/partitions/id-t/3", None, 0, 16));
        assert_eq!(image.controller, None);
        assert!(image.partitions.is_empty());
    }

    #[test]
    fn other_keys_and_bad_values_are_skipped() {
        let keys = Keys::new("c");
        let mut image = ClusterImage::default();
        image.apply(&keys, &change("/c/brokers/x", Some(b"{}"), 1, 1));
        image.apply(&keys, &change("/c/brokers/2", Some(b"not json"), 2, 2));
        image.apply(&keys, &change("/c/producer-ids", Some(b"{\"next\":1}"), 3, 3));
        image.apply(&keys, &change("/other/brokers/1", Some(b"{}"), 4, 4));
        assert!(image.brokers.is_empty() && image.topics.is_empty());
    }
}
