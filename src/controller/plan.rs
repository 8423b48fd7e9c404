//! What the controller should write, given the cluster as etcd holds it:
//! states for partitions that have none yet, and the `decide` rules applied
//! to every other partition. Pure.

use std::collections::BTreeSet;

use super::decide::{fence_new_incarnation, reconcile, PartitionState};
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
                Some((current, revision)) => {
                    // A member back on an empty disk since this state was
                    // written holds none of it: out of the ISR, even as its
                    // last member (no unclean election), before a leader is
                    // chosen.
                    let mut fenced = current.clone();
                    for member in &current.isr {
                        let fresh = image
                            .brokers
                            .get(member)
                            .is_some_and(|(registration, epoch)| registration.empty_disk && *epoch > *revision);
                        if fresh {
                            fenced = fence_new_incarnation(&fenced, *member).unwrap_or(fenced);
                        }
                    }
                    let next = reconcile(&fenced, &live).unwrap_or(fenced);
                    if next == *current {
                        continue;
                    }
                    (next, *revision)
                }
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

/// Partition states left by deleted topics: (topic id, partition, the
/// mod_revision a fenced delete compares).
pub fn stale(image: &ClusterImage) -> Vec<(String, i32, i64)> {
    let live_topics: BTreeSet<&str> = image.topics.values().map(|t| t.id.as_str()).collect();
    image
        .partitions
        .iter()
        .filter(|((topic_id, _), _)| !live_topics.contains(topic_id.as_str()))
        .map(|((topic_id, partition), (_, revision))| (topic_id.clone(), *partition, *revision))
        .collect()
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
                empty_disk: false,
                listeners: Default::default(),
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

    #[test]
    fn a_broker_back_on_an_empty_disk_leaves_isrs_written_before_it_came() {
        let mut img = image(&[1, 2]);
        for w in plan(&img) {
            img.partitions.insert((w.topic_id, w.partition), (w.state, 5));
        }
        // Broker 2 returns (epoch 9, after the states' revision 5) with an
        // empty disk, before the controller saw it go.
        img.brokers.get_mut(&2).unwrap().0.empty_disk = true;
        img.brokers.get_mut(&2).unwrap().1 = 9;
        let writes = plan(&img);
        assert_eq!(writes.len(), 2);
        assert_eq!((writes[0].state.leader, writes[0].state.isr.clone()), (1, vec![1]));
        // It led partition 1: broker 1 takes over, under a new epoch.
        let p1 = &writes[1].state;
        assert_eq!((p1.leader, p1.isr.clone()), (1, vec![1]));
        assert!(p1.leader_epoch > 0);
        for w in writes {
            img.partitions.insert((w.topic_id, w.partition), (w.state, 12));
        }
        assert!(plan(&img).is_empty(), "fenced once");
        // The leader adds it back once caught up (a later revision): it stays.
        img.partitions.get_mut(&("id-t".to_string(), 0)).unwrap().0.isr = vec![1, 2];
        img.partitions.get_mut(&("id-t".to_string(), 0)).unwrap().1 = 20;
        assert!(plan(&img).is_empty());
    }

    #[test]
    fn states_of_deleted_topics_are_stale() {
        let mut img = image(&[1, 2]);
        for w in plan(&img) {
            img.partitions.insert((w.topic_id, w.partition), (w.state, 5));
        }
        assert!(stale(&img).is_empty());
        img.topics.clear();
        assert_eq!(stale(&img), vec![("id-t".to_string(), 0, 5), ("id-t".to_string(), 1, 5)]);
        assert!(plan(&img).is_empty());
    }
}
