//! The cluster's copy in the archive: what etcd holds that a cluster needs
//! back if it loses etcd (topics with their replicas, partition states, the
//! producer-id counter). The controller writes it to `_sediment/etcd/`; a
//! cluster that starts on an empty etcd and finds one restores it. Pure.

use serde::{Deserialize, Serialize};

use super::image::ClusterImage;
use crate::coordination::{PartitionState, TopicRecord, NO_LEADER};

/// How far restored leader epochs jump: past any epoch the lost etcd may
/// have handed out after the copy was taken, so the archive's manifests
/// (fenced by epoch) accept the new leaders.
pub const EPOCH_JUMP: i32 = 1000;

/// How far the restored producer-id counter jumps, for the same reason:
/// ids handed out after the copy was taken are never handed out again.
pub const PRODUCER_ID_JUMP: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCopy {
    /// The etcd revision it was taken at (its version in the archive).
    pub revision: i64,
    pub topics: Vec<TopicRecord>,
    /// (topic id, partition, state).
    pub partitions: Vec<(String, i32, PartitionState)>,
    pub producer_ids_next: i64,
}

impl ClusterCopy {
    pub fn from_image(image: &ClusterImage) -> Self {
        Self {
            revision: image.revision,
            topics: image.topics.values().cloned().collect(),
            partitions: image
                .partitions
                .iter()
                .map(|((topic_id, p), (state, _))| (topic_id.clone(), *p, state.clone()))
                .collect(),
            producer_ids_next: image.producer_ids_next,
        }
    }

    /// The partition states to write into a new etcd: no leader yet (the
    /// controller elects one from the ISR as its members register), and an
    /// epoch past anything the lost etcd could have recorded.
    pub fn restored_states(&self) -> Vec<(String, i32, PartitionState)> {
        self.partitions
            .iter()
            .map(|(topic_id, p, state)| {
                let restored = PartitionState {
                    leader: NO_LEADER,
                    leader_epoch: state.leader_epoch.saturating_add(EPOCH_JUMP),
                    ..state.clone()
                };
                (topic_id.clone(), *p, restored)
            })
            .collect()
    }

    /// The producer-id counter to start from.
    pub fn restored_producer_ids_next(&self) -> i64 {
        self.producer_ids_next.saturating_add(PRODUCER_ID_JUMP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_cluster_starts_leaderless_past_every_old_epoch() {
        let mut image = ClusterImage {
            revision: 42,
            producer_ids_next: 7000,
            ..ClusterImage::default()
        };
        let topic = TopicRecord {
            name: "t".into(),
            id: "id".into(),
            partitions: 1,
            configs: Default::default(),
            assignment: vec![vec![1, 2, 3]],
        };
        image.topics.insert("t".into(), topic.clone());
        let state = PartitionState {
            replicas: vec![1, 2, 3],
            leader: 2,
            leader_epoch: 5,
            isr: vec![2, 3],
        };
        image.partitions.insert(("id".into(), 0), (state, 40));
        let copy = ClusterCopy::from_image(&image);
        let json = serde_json::to_vec(&copy).unwrap();
        let back: ClusterCopy = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, copy);
        assert_eq!(back.topics, vec![topic]);
        let restored = back.restored_states();
        assert_eq!(restored[0].2.leader, NO_LEADER);
        assert_eq!(restored[0].2.leader_epoch, 5 + EPOCH_JUMP);
        assert_eq!(restored[0].2.isr, vec![2, 3], "only the ISR may lead again");
        assert_eq!(back.restored_producer_ids_next(), 7000 + PRODUCER_ID_JUMP);
    }
}
