//! The controller's decisions about one partition, as pure functions of its
//! state and the live brokers: who leads, and who is in sync. Kafka's rules
//! (ZooKeeper-era controller, KIP-966): a leader comes only from the ISR, in
//! replica order; a dead broker leaves the ISR but the ISR never empties, so
//! when every member is dead the partition waits, offline, for one of them;
//! a broker back with another disk is a new replica and leaves every ISR.

use std::collections::BTreeSet;

pub use crate::coordination::{PartitionState, NO_LEADER};

/// The state after brokers came or went (`live` is every registered broker),
/// or `None` when nothing changes.
pub fn reconcile(state: &PartitionState, live: &BTreeSet<i32>) -> Option<PartitionState> {
    let mut next = state.clone();
    let alive_isr: Vec<i32> = state.isr.iter().copied().filter(|r| live.contains(r)).collect();
    // Never empty the ISR: its last members are who may lead again.
    if !alive_isr.is_empty() {
        next.isr = alive_isr;
    }
    let leader_ok = state.leader != NO_LEADER && live.contains(&state.leader) && next.isr.contains(&state.leader);
    if !leader_ok {
        let elected = state
            .replicas
            .iter()
            .copied()
            .find(|r| next.isr.contains(r) && live.contains(r))
            .unwrap_or(NO_LEADER);
        if elected != state.leader {
            next.leader = elected;
            next.leader_epoch = state.leader_epoch + 1;
        }
    }
    (next != *state).then_some(next)
}

/// A broker that registered again with another data dir holds none of what
/// it held: it leaves the ISR even as its last member (the partition then
/// waits offline for an operator), and gives up the leadership.
pub fn fence_new_incarnation(state: &PartitionState, broker: i32) -> Option<PartitionState> {
    if !state.isr.contains(&broker) && state.leader != broker {
        return None;
    }
    let mut next = state.clone();
    next.isr.retain(|r| *r != broker);
    if state.leader == broker {
        next.leader = NO_LEADER;
        next.leader_epoch = state.leader_epoch + 1;
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    fn state(replicas: &[i32], leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_next_in_sync_replica() {
        let s = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        assert_eq!(reconcile(&s, &set(&[1, 2, 3])), None, "all well: nothing to do");
        let next = reconcile(&s, &set(&[2, 3])).unwrap();
        assert_eq!(next, state(&[1, 2, 3], 2, 5, &[2, 3]));
        // A dead follower only leaves the ISR: same leader, same epoch.
        let next = reconcile(&s, &set(&[1, 2])).unwrap();
        assert_eq!(next, state(&[1, 2, 3], 1, 4, &[1, 2]));
    }

    #[test]
    fn the_isr_never_empties_and_an_out_of_sync_replica_never_leads() {
        let s = state(&[1, 2, 3], 1, 4, &[1]);
        // The only in-sync replica dies: offline, ISR kept, 2 and 3 not elected.
        let offline = reconcile(&s, &set(&[2, 3])).unwrap();
        assert_eq!(offline, state(&[1, 2, 3], NO_LEADER, 5, &[1]));
        assert_eq!(reconcile(&offline, &set(&[2, 3])), None, "stays offline");
        // It returns: it leads again, under a new epoch.
        let back = reconcile(&offline, &set(&[1, 2, 3])).unwrap();
        assert_eq!(back, state(&[1, 2, 3], 1, 6, &[1]));
    }

    #[test]
    fn a_new_disk_leaves_every_isr_even_as_the_last_member() {
        let s = state(&[1, 2], 1, 3, &[1]);
        let fenced = fence_new_incarnation(&s, 1).unwrap();
        assert_eq!(fenced, state(&[1, 2], NO_LEADER, 4, &[]));
        assert_eq!(reconcile(&fenced, &set(&[1, 2])), None, "no unclean election");
        assert_eq!(fence_new_incarnation(&state(&[1, 2], 2, 3, &[2]), 1), None, "not in the ISR");
    }

    #[test]
    fn new_partitions_start_with_their_live_replicas() {
        assert_eq!(
            PartitionState::new(vec![3, 1, 2], &set(&[1, 2, 3]), 0),
            state(&[3, 1, 2], 3, 0, &[3, 1, 2])
        );
        assert_eq!(
            PartitionState::new(vec![3, 1, 2], &set(&[1, 2]), 0),
            state(&[3, 1, 2], 1, 0, &[1, 2])
        );
        let none = PartitionState::new(vec![3, 1], &set(&[]), 7);
        assert_eq!(none, state(&[3, 1], NO_LEADER, 7, &[3, 1]));
        assert!(none.is_offline());
        assert_eq!(reconcile(&none, &set(&[1])).unwrap(), state(&[3, 1], 1, 8, &[1]));
    }

    /// Random runs of brokers dying, returning and coming back with new
    /// disks: the rules hold at every step.
    #[test]
    fn invariants_hold_over_random_schedules() {
        let mut rng = crate::seeded::Seeded::new(99);
        let mut next = |m: u64| rng.below(m);
        for _ in 0..2000 {
            let replicas: Vec<i32> = vec![1, 2, 3];
            let mut live = set(&[1, 2, 3]);
            let mut s = PartitionState::new(replicas.clone(), &live, 0);
            let mut fenced_out = false;
            for _ in 0..20 {
                let broker = 1 + next(3) as i32;
                let before = s.clone();
                match next(3) {
                    0 => {
                        live.remove(&broker);
                    }
                    1 => {
                        live.insert(broker);
                    }
                    _ => {
                        live.insert(broker);
                        if let Some(f) = fence_new_incarnation(&s, broker) {
                            s = f;
                            fenced_out |= s.isr.is_empty();
                        }
                    }
                }
                if let Some(r) = reconcile(&s, &live) {
                    s = r;
                }
                let isr: BTreeSet<i32> = s.isr.iter().copied().collect();
                assert!(isr.is_subset(&replicas.iter().copied().collect()), "{s:?}");
                assert!(!s.isr.is_empty() || fenced_out, "ISR emptied without a new disk: {s:?}");
                assert!(s.leader_epoch >= before.leader_epoch, "epoch went back");
                if s.leader != before.leader {
                    assert!(s.leader_epoch > before.leader_epoch, "new leader, same epoch: {before:?} -> {s:?}");
                }
                if s.leader != NO_LEADER {
                    assert!(isr.contains(&s.leader) && live.contains(&s.leader), "{s:?} live {live:?}");
                } else {
                    assert!(!s.isr.iter().any(|r| live.contains(r)), "a live ISR member could lead: {s:?}");
                }
                // Applying the same view twice changes nothing.
                assert_eq!(reconcile(&s, &live), None);
            }
        }
    }
}
