//! What a commit changes, decided without I/O: the table's current
//! manifests (the live file paths in each) against the files the archive's
//! partition manifests hold now. The archive is the truth; the table follows
//! it, so any committer (a racing broker, a repair) converges on it.

use std::collections::{BTreeSet, HashSet};

/// What becomes of one of the current snapshot's manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestAction {
    /// Listed again as it is (nothing in it changed).
    Keep,
    /// Written again: the live entries at these positions as deleted, the
    /// others as existing.
    Rewrite { deleted: BTreeSet<usize> },
    /// Left out: nothing in it is live any more.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One per current manifest, in order.
    pub manifests: Vec<ManifestAction>,
    /// Files the table gains: their positions in `desired`, in order.
    pub added: Vec<usize>,
    /// Rewrite everything into one manifest per Kafka partition, because
    /// the snapshot would otherwise list too many manifests.
    pub merge: bool,
}

impl Plan {
    /// True when the table already holds exactly the archive's files. (A
    /// manifest with nothing live left is dropped by the next commit; it
    /// needs none of its own.)
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && !self.manifests.iter().any(|a| matches!(a, ManifestAction::Rewrite { .. }))
    }

    pub fn deleted_count(&self) -> usize {
        self.manifests
            .iter()
            .map(|a| match a {
                ManifestAction::Rewrite { deleted } => deleted.len(),
                _ => 0,
            })
            .sum()
    }
}

/// The plan that makes the table's live files equal `desired`.
///
/// `current[i]` is the live paths of manifest `i`. A path live in two
/// manifests (a table written wrongly) stays live in the first only.
/// `merge_at`: merge when the snapshot would list more manifests than this.
pub fn plan(current: &[Vec<String>], desired: &[String], merge_at: usize) -> Plan {
    let wanted: HashSet<&str> = desired.iter().map(String::as_str).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut manifests = Vec::with_capacity(current.len());
    for live in current {
        let mut deleted = BTreeSet::new();
        for (position, path) in live.iter().enumerate() {
            if !(wanted.contains(path.as_str()) && seen.insert(path.as_str())) {
                deleted.insert(position);
            }
        }
        // A manifest whose files all left is still written once, with them
        // as deleted, so the snapshot records the deletion; the next commit
        // drops it.
        manifests.push(if !deleted.is_empty() {
            ManifestAction::Rewrite { deleted }
        } else if live.is_empty() {
            ManifestAction::Drop
        } else {
            ManifestAction::Keep
        });
    }
    let added: Vec<usize> = {
        let mut unique = HashSet::new();
        desired
            .iter()
            .enumerate()
            .filter(|(_, p)| !seen.contains(p.as_str()) && unique.insert(p.as_str()))
            .map(|(i, _)| i)
            .collect()
    };
    let listed = manifests.iter().filter(|a| **a != ManifestAction::Drop).count() + usize::from(!added.is_empty());
    let merge = listed > merge_at.max(1);
    Plan { manifests, added, merge }
}

/// Which snapshots to expire: beyond the newest `min_keep`, those older
/// than `max_age_ms` or past the newest `max_count`. Never the current one.
/// `snapshots` are `(id, timestamp_ms)` in any order.
pub fn expired_snapshots(
    snapshots: &[(i64, i64)],
    current: Option<i64>,
    now_ms: i64,
    max_age_ms: i64,
    min_keep: usize,
    max_count: usize,
) -> Vec<i64> {
    let mut newest_first = snapshots.to_vec();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let keep_at_least = min_keep.max(1);
    newest_first
        .iter()
        .enumerate()
        .filter(|(rank, (id, ts))| {
            Some(*id) != current
                && *rank >= keep_at_least
                && (*rank >= max_count.max(keep_at_least) || now_ms.saturating_sub(*ts) > max_age_ms)
        })
        .map(|(_, (id, _))| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded::Seeded;

    fn paths(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The live files after applying `plan` to `current`.
    fn apply(current: &[Vec<String>], desired: &[String], plan: &Plan) -> BTreeSet<String> {
        let mut live = BTreeSet::new();
        for (files, action) in current.iter().zip(&plan.manifests) {
            match action {
                ManifestAction::Keep => live.extend(files.iter().cloned()),
                ManifestAction::Rewrite { deleted } => live.extend(
                    files
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !deleted.contains(i))
                        .map(|(_, f)| f.clone()),
                ),
                ManifestAction::Drop => {}
            }
        }
        live.extend(plan.added.iter().map(|&i| desired[i].clone()));
        live
    }

    #[test]
    fn appends_keep_old_manifests_and_deletes_rewrite_only_theirs() {
        let current = vec![paths(&["a", "b"]), paths(&["c"])];
        let append = plan(&current, &paths(&["a", "b", "c", "d"]), 16);
        assert_eq!(append.manifests, vec![ManifestAction::Keep, ManifestAction::Keep]);
        assert_eq!(append.added, vec![3], "d");
        assert!(!append.merge && !append.is_empty());

        let retention = plan(&current, &paths(&["b", "c"]), 16);
        assert_eq!(
            retention.manifests,
            vec![
                ManifestAction::Rewrite {
                    deleted: BTreeSet::from([0])
                },
                ManifestAction::Keep
            ]
        );
        assert!(retention.added.is_empty());
        assert_eq!(retention.deleted_count(), 1);

        assert!(plan(&current, &paths(&["a", "b", "c"]), 16).is_empty());
        let emptied = plan(&[Vec::new()], &[], 16);
        assert_eq!(emptied.manifests, vec![ManifestAction::Drop]);
    }

    #[test]
    fn too_many_manifests_merge() {
        let current: Vec<Vec<String>> = (0..4).map(|i| vec![format!("f{i}")]).collect();
        let desired: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
        assert!(!plan(&current, &desired, 5).merge);
        assert!(plan(&current, &desired, 4).merge);
    }

    #[test]
    fn any_table_converges_on_the_archive_in_one_commit() {
        let mut rng = Seeded::new(12);
        for _ in 0..2_000 {
            let universe = 1 + rng.below(12);
            let name = |rng: &mut Seeded| format!("f{}", rng.below(universe));
            let current: Vec<Vec<String>> = (0..rng.below(5))
                .map(|_| (0..rng.below(4)).map(|_| name(&mut rng)).collect())
                .collect();
            let desired: Vec<String> = (0..rng.below(8)).map(|_| name(&mut rng)).collect();
            let p = plan(&current, &desired, 1 + rng.below(6) as usize);
            let want: BTreeSet<String> = desired.iter().cloned().collect();
            assert_eq!(apply(&current, &desired, &p), want, "{current:?} -> {desired:?}: {p:?}");
            // Nothing is added that was already live, and a second commit
            // from the result has nothing to do.
            let after: Vec<Vec<String>> = vec![apply(&current, &desired, &p).into_iter().collect()];
            assert!(plan(&after, &desired, 16).is_empty());
        }
    }

    #[test]
    fn expiry_keeps_the_newest_and_the_current_snapshot() {
        let snaps: Vec<(i64, i64)> = (1..=10).map(|i| (i, i * 1000)).collect();
        // By age: older than 5 s at t = 10 s.
        let mut by_age = expired_snapshots(&snaps, Some(10), 10_000, 5_000, 1, 100);
        by_age.sort();
        assert_eq!(by_age, vec![1, 2, 3, 4]);
        // By count.
        let mut by_count = expired_snapshots(&snaps, Some(10), 10_000, i64::MAX, 1, 3);
        by_count.sort();
        assert_eq!(by_count, (1..=7).collect::<Vec<_>>());
        // min_keep wins over age, and the current snapshot never goes.
        assert!(expired_snapshots(&snaps, Some(1), 1_000_000, 0, 10, 100).is_empty());
        assert!(!expired_snapshots(&snaps, Some(1), 1_000_000, 0, 1, 100).contains(&1));
    }
}
