//! How one member moves toward its target assignment (Kafka's
//! `CurrentAssignmentBuilder`): partitions are revoked before any new ones
//! are given, and a partition is given only once no other member holds it,
//! so two members never own a partition at once. Pure.

use uuid::Uuid;

use super::Assignment;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Holds its target at the target epoch.
    Stable,
    /// Was asked to give up partitions and has not confirmed yet; stays at
    /// its epoch until it does.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still
    /// hold.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

/// A member's side of the reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub state: MemberState,
    pub epoch: i32,
    /// What the member may own now.
    pub assigned: Assignment,
    /// What it must give up before it moves on.
    pub revoking: Assignment,
}

/// The member's next step toward `target` at `target_epoch`. `owned` is
/// what the member said it owns (None when the heartbeat did not say);
/// `held_by_another(topic, partition)` tells whether some other member
/// still holds a partition.
pub fn next(
    current: &Progress,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    held_by_another: impl Fn(Uuid, i32) -> bool,
) -> Progress {
    match current.state {
        MemberState::Stable if current.epoch == target_epoch => current.clone(),
        MemberState::Stable | MemberState::UnreleasedPartitions => {
            compute(current.epoch, &current.assigned, target_epoch, target, owned, held_by_another)
        }
        MemberState::UnrevokedPartitions => {
            if still_owns(owned, &current.revoking) {
                current.clone()
            } else {
                compute(current.epoch + 1, &current.assigned, target_epoch, target, owned, held_by_another)
            }
        }
    }
}

/// Whether the member may still own any of `revoking`; not saying counts
/// as owning.
fn still_owns(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned
        .iter()
        .any(|(topic, ps)| revoking.get(topic).is_some_and(|r| !r.is_disjoint(ps)))
}

fn compute(
    epoch: i32,
    assigned: &Assignment,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    held_by_another: impl Fn(Uuid, i32) -> bool,
) -> Progress {
    let mut keep = Assignment::new();
    let mut revoking = Assignment::new();
    let mut gaining = Assignment::new();
    let mut unreleased = false;
    let topics: std::collections::BTreeSet<Uuid> = target.keys().chain(assigned.keys()).copied().collect();
    for topic in topics {
        let empty = Default::default();
        let wanted = target.get(&topic).unwrap_or(&empty);
        let had = assigned.get(&topic).unwrap_or(&empty);
        let kept: std::collections::BTreeSet<i32> = had.intersection(wanted).copied().collect();
        let lost: std::collections::BTreeSet<i32> = had.difference(&kept).copied().collect();
        let mut new: std::collections::BTreeSet<i32> = wanted.difference(&kept).copied().collect();
        let before = new.len();
        new.retain(|p| !held_by_another(topic, *p));
        unreleased |= new.len() != before;
        if !kept.is_empty() {
            keep.insert(topic, kept);
        }
        if !lost.is_empty() {
            revoking.insert(topic, lost);
        }
        if !new.is_empty() {
            gaining.insert(topic, new);
        }
    }
    if !revoking.is_empty() && still_owns(owned, &revoking) {
        return Progress {
            state: MemberState::UnrevokedPartitions,
            epoch,
            assigned: keep,
            revoking,
        };
    }
    for (topic, ps) in gaining {
        keep.entry(topic).or_default().extend(ps);
    }
    Progress {
        state: if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        epoch: target_epoch,
        assigned: keep,
        revoking: Assignment::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn t() -> Uuid {
        Uuid::from_bytes([7; 16])
    }

    fn parts(ps: &[i32]) -> Assignment {
        if ps.is_empty() {
            return Assignment::new();
        }
        Assignment::from([(t(), ps.iter().copied().collect::<BTreeSet<i32>>())])
    }

    fn stable(epoch: i32, ps: &[i32]) -> Progress {
        Progress {
            state: MemberState::Stable,
            epoch,
            assigned: parts(ps),
            revoking: Assignment::new(),
        }
    }

    #[test]
    fn a_reconciled_member_stays_put() {
        let m = stable(3, &[0, 1]);
        assert_eq!(next(&m, 3, &parts(&[5]), None, |_, _| false), m);
    }

    #[test]
    fn free_partitions_are_given_at_once_at_the_target_epoch() {
        let m = stable(0, &[]);
        let n = next(&m, 1, &parts(&[0, 1]), Some(&parts(&[])), |_, _| false);
        assert_eq!(n, stable(1, &[0, 1]));
    }

    #[test]
    fn partitions_held_by_others_wait_until_released() {
        let m = stable(0, &[]);
        let n = next(&m, 2, &parts(&[0, 1]), Some(&parts(&[])), |_, p| p == 1);
        assert_eq!(
            (n.state, n.epoch, n.assigned.clone()),
            (MemberState::UnreleasedPartitions, 2, parts(&[0]))
        );
        let released = next(&n, 2, &parts(&[0, 1]), Some(&parts(&[0])), |_, _| false);
        assert_eq!(released, stable(2, &[0, 1]));
    }

    #[test]
    fn revocation_comes_first_and_keeps_the_epoch_until_confirmed() {
        let m = stable(1, &[0, 1, 2]);
        let target = parts(&[0, 3]);
        let n = next(&m, 2, &target, Some(&parts(&[0, 1, 2])), |_, _| false);
        assert_eq!(n.state, MemberState::UnrevokedPartitions);
        assert_eq!((n.epoch, n.assigned.clone(), n.revoking.clone()), (1, parts(&[0]), parts(&[1, 2])));
        // Still owns 2: no progress. A heartbeat that does not say, neither.
        assert_eq!(next(&n, 2, &target, Some(&parts(&[0, 2])), |_, _| false), n);
        assert_eq!(next(&n, 2, &target, None, |_, _| false), n);
        // Gave them up: moves to the target epoch and gets 3.
        assert_eq!(next(&n, 2, &target, Some(&parts(&[0])), |_, _| false), stable(2, &[0, 3]));
    }

    #[test]
    fn a_member_that_already_dropped_revoked_partitions_moves_on_at_once() {
        let m = stable(1, &[0, 1]);
        let n = next(&m, 2, &parts(&[0]), Some(&parts(&[0])), |_, _| false);
        assert_eq!(n, stable(2, &[0]));
    }
}
