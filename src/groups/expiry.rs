//! Retention of committed offsets (Kafka's `offsets.retention.minutes`,
//! KIP-211) as pure decisions: time is an argument, and the coordinator's
//! timer applies what these functions return.

use super::offsets::GroupOffsets;

/// What the coordinator knows of a group's members when offsets expire. A
/// group with no entry has no membership state in memory (it only has
/// committed offsets, or the broker restarted since it had members).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Members, or a rebalance, exist: its offsets are in use and never
    /// expire (Kafka expires unsubscribed partitions of a Stable group too;
    /// we do not).
    Active,
    /// Empty, with no member since this time.
    EmptySince(i64),
}

/// The partitions of one group whose committed offsets are expired at
/// `now_ms`. An offset expires once `retention_ms` has passed both since it
/// was committed and since the group became empty. Kafka counts from the
/// group becoming empty alone; also counting from the commit keeps a fresh
/// standalone commit (generation -1) to an empty group from expiring early.
pub fn expired_partitions(offsets: &GroupOffsets, membership: Option<Membership>, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
    let empty_since_ms = match membership {
        Some(Membership::Active) => return Vec::new(),
        Some(Membership::EmptySince(since_ms)) => since_ms,
        None => i64::MIN,
    };
    offsets
        .iter()
        .filter(|(_, committed)| {
            let idle_since_ms = committed.commit_timestamp_ms.max(empty_since_ms);
            now_ms.saturating_sub(idle_since_ms) >= retention_ms
        })
        .map(|((topic, partition), _)| (topic.clone(), *partition))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::offsets::CommittedOffset;

    const DAY_MS: i64 = 24 * 60 * 60 * 1000;
    const RETENTION_MS: i64 = 7 * DAY_MS;

    fn offsets(commits: &[(i32, i64)]) -> GroupOffsets {
        commits
            .iter()
            .map(|&(partition, commit_timestamp_ms)| {
                let value = CommittedOffset {
                    offset: 1,
                    leader_epoch: -1,
                    metadata: None,
                    commit_timestamp_ms,
                };
                (("t".to_string(), partition), value)
            })
            .collect()
    }

    #[test]
    fn offsets_of_a_group_with_members_never_expire() {
        let table = offsets(&[(0, 0)]);
        assert!(expired_partitions(&table, Some(Membership::Active), 100 * DAY_MS, RETENTION_MS).is_empty());
    }

    #[test]
    fn offsets_only_group_expires_each_offset_by_its_commit_time() {
        let table = offsets(&[(0, 0), (1, 2 * DAY_MS)]);
        assert!(expired_partitions(&table, None, RETENTION_MS - 1, RETENTION_MS).is_empty());
        assert_eq!(
            expired_partitions(&table, None, RETENTION_MS, RETENTION_MS),
            vec![("t".to_string(), 0)]
        );
        assert_eq!(expired_partitions(&table, None, 9 * DAY_MS, RETENTION_MS).len(), 2);
    }

    #[test]
    fn empty_group_keeps_its_offsets_for_the_retention_after_its_last_member_left() {
        // Committed on day 0, the last member left on day 5.
        let table = offsets(&[(0, 0)]);
        let empty = Some(Membership::EmptySince(5 * DAY_MS));
        assert!(expired_partitions(&table, empty, 11 * DAY_MS, RETENTION_MS).is_empty());
        assert_eq!(expired_partitions(&table, empty, 12 * DAY_MS, RETENTION_MS).len(), 1);
    }

    #[test]
    fn a_commit_after_the_group_emptied_counts_from_the_commit() {
        let table = offsets(&[(0, 6 * DAY_MS)]);
        let empty = Some(Membership::EmptySince(0));
        assert!(expired_partitions(&table, empty, 12 * DAY_MS, RETENTION_MS).is_empty());
        assert_eq!(expired_partitions(&table, empty, 13 * DAY_MS, RETENTION_MS).len(), 1);
    }
}
