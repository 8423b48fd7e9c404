//! What the controller should write, given the cluster as etcd holds it:
//! states for partitions that have none yet, and the `decide` rules applied
//! to every other partition. Pure.

use std::collections::BTreeSet;

use super::decide::{reconcile, PartitionState};
use crate::coordination::etcd::image::ClusterImage;
use crate::coordination::etcd::PartitionWrite;

/// The writes that bring every partition in line with the live brokers.
pub fn plan(image: &ClusterImage) -> Vec<PartitionWrite> {
    let live: BTreeSet<i32> = image.brokers.keys().copied().collect();
    let mut writes = Vec::new();
    for topic in image.topics.values() {
        for (index, replicas) in topic.assignment.iter().enumerate() {
            let Ok(partition) = i32::try_from(index) else { break };
            let at = (topic.id.clone(), partition);
            let (state, expected_mod_revision) = match image.partitions.get(&at) {
                Some((current, revision)) => match reconcile(current, &live) {
                    Some(next) => (next, *revision),
                    None => continue,
                },
                None => (PartitionState::new(replicas.clone(), &live, 0), 0),
            };
            writes.push(PartitionWrite {
                topic_id: topic.id.clone(),
                partition,
                state,
                expected_mod_revision,
            });
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::etcd::Registration;
    use crate::coordination::TopicRecord;

    fn image(live: &[i32]) -> ClusterImage {
        let mut image = ClusterImage::default();
        for id in live {
            let reg = Registration {
                broker_id: *id,
                advertised: String::new(),
                http: String::new(),
                dir_id: String::new(),
            };
            image.brokers.insert(*id, (reg, 1));
        }
        image.topics.insert(
            "t".into(),
            TopicRecord {
                name: "t".into(),
                id: "id-t".into(),
                partitions: 2,
                configs: Default::default(),
                assignment: vec![vec![1, 2], vec![2, 1]],
            },
        );
        image
    }

    #[test]
    fn new_partitions_are_created_and_then_left_alone() {
        let mut img = image(&[1, 2]);
        let writes = plan(&img);
        assert_eq!(writes.len(), 2);
        assert_eq!((writes[0].state.leader, writes[0].expected_mod_revision), (1, 0));
        assert_eq!(writes[1].state.leader, 2);
        for w in writes {
            img.partitions.insert((w.topic_id, w.partition), (w.state, 5));
        }
        assert!(plan(&img).is_empty(), "nothing to do once written");
        // Broker 1 goes: partition 0 gets a new leader, partition 1 a smaller ISR.
        img.brokers.remove(&1);
        let writes = plan(&img);
        assert_eq!(writes.len(), 2);
        assert_eq!(
            (
                writes[0].state.leader,
                writes[0].state.leader_epoch,
                writes[0].expected_mod_revision
            ),
            (2, 1, 5)
        );
        assert_eq!((writes[1].state.leader, writes[1].state.isr.clone()), (2, vec![2]));
    }
}
