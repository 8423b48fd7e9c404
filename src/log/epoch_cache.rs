//! The leader epoch cache (KIP-101): for each leader epoch, the first offset
//! written under it. It answers "where did epoch E end?", which is how a
//! follower finds where its log diverged from the leader's (OffsetForLeaderEpoch,
//! and Fetch's DivergingEpoch, KIP-279 / KAFKA-10554), and it is cut back with
//! the log. Pure; the partition log persists it.

/// Kafka's answer for an epoch older than anything the log holds.
pub const UNDEFINED: (i32, i64) = (-1, -1);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `offset` (the first batch appended
    /// under it). Older or equal epochs are ignored; an entry at or past
    /// `offset` is replaced, as its records no longer exist.
    pub fn assign(&mut self, epoch: i32, offset: i64) {
        if self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return;
        }
        self.entries.retain(|(_, start)| *start < offset);
        self.entries.push((epoch, offset));
    }

    /// Where `epoch` ended: the largest epoch not above it and the start of
    /// the epoch after that (or `log_end` for the latest). For an epoch
    /// older than every entry (its records went to the archive, or never
    /// existed here), Kafka's answer: that epoch, ending where the first
    /// entry starts. UNDEFINED only for an empty cache.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        let Some(first) = self.entries.first() else {
            return UNDEFINED;
        };
        let Some(index) = self.entries.iter().rposition(|(e, _)| *e <= epoch) else {
            return (epoch, first.1);
        };
        let found = self.entries[index].0;
        let end = self.entries.get(index + 1).map_or(log_end, |next| next.1);
        (found, end)
    }

    /// The log was truncated to end at `offset`: epochs that start there or
    /// later are gone.
    pub fn truncate_from_end(&mut self, offset: i64) {
        self.entries.retain(|(_, start)| *start < offset);
    }

    /// The log now starts at `offset`: entries wholly before it go, and the
    /// one it falls in starts there.
    pub fn truncate_from_start(&mut self, offset: i64) {
        let keep_from = self.entries.iter().rposition(|(_, start)| *start <= offset);
        if let Some(index) = keep_from {
            self.entries.drain(..index);
            self.entries[0].1 = self.entries[0].1.max(offset);
        }
    }
}

/// A follower's check against the leader's cache (Fetch v12+): having last
/// fetched under `last_fetched_epoch`, at `fetch_offset`, it diverged if the
/// leader's history of that epoch ends earlier or under another epoch. The
/// answer is where to truncate to: (epoch, end offset).
pub fn diverging(leader: &EpochCache, leader_log_end: i64, last_fetched_epoch: i32, fetch_offset: i64) -> Option<(i32, i64)> {
    let (epoch, end) = leader.end_offset_for(last_fetched_epoch, leader_log_end);
    (epoch != last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for (e, o) in entries {
            c.assign(*e, *o);
        }
        c
    }

    #[test]
    fn end_offsets_are_the_next_epochs_start_or_the_log_end() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(c.end_offset_for(1, 40), (1, 10));
        assert_eq!(c.end_offset_for(2, 40), (1, 10), "epoch 2 never wrote: epoch 1's end");
        assert_eq!(c.end_offset_for(4, 40), (4, 40));
        assert_eq!(c.end_offset_for(9, 40), (4, 40));
        assert_eq!(c.end_offset_for(0, 40), (0, 0), "older than the log: it ended where the log starts");
        assert_eq!(EpochCache::default().end_offset_for(3, 40), UNDEFINED);
        // A leader whose older epochs are archived: a follower that last
        // fetched under one of them, at the leader's local start, agrees.
        let archived = cache(&[(5, 9998)]);
        assert_eq!(diverging(&archived, 10_000, 2, 9998), None);
        assert_eq!(diverging(&archived, 10_000, 2, 10_050), Some((2, 9998)), "past it: truncate to it");
    }

    #[test]
    fn truncation_cuts_the_cache_with_the_log() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        c.truncate_from_end(25);
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        c.truncate_from_start(12);
        assert_eq!(c.entries(), &[(3, 12)]);
        c.assign(2, 30);
        assert_eq!(c.entries(), &[(3, 12)], "an older epoch is ignored");
        c.assign(5, 12);
        assert_eq!(c.entries(), &[(5, 12)], "an entry whose records were replaced goes");
    }

    /// KIP-279's double failover: a leader writes under epoch 1 and is
    /// replaced twice; each follower's divergence check brings it back to a
    /// prefix of the new leader's log.
    #[test]
    fn a_follower_truncates_to_the_common_prefix_after_failovers() {
        // Leader A: epoch 1 wrote 0..10; B led epoch 2 from 8 (it had only 0..8).
        let a = cache(&[(1, 0)]);
        let b = cache(&[(1, 0), (2, 8)]);
        // A comes back as a follower of B, last fetched under epoch 1, at 10.
        assert_eq!(diverging(&b, 20, 1, 10), Some((1, 8)), "truncate A to 8");
        // After truncating to 8 and fetching epoch 2's data, A agrees.
        let mut a2 = a.clone();
        a2.truncate_from_end(8);
        a2.assign(2, 8);
        assert_eq!(diverging(&b, 20, 2, 20), None);
        // A follower that never saw epoch 2 but is below its start agrees too.
        assert_eq!(diverging(&b, 20, 1, 5), None);
    }

    /// Random histories: a leader's cache built over random epochs and
    /// truncations stays strictly increasing, and its answers stay within
    /// the log.
    #[test]
    fn random_histories_keep_the_cache_ordered() {
        let mut rng = crate::seeded::Seeded::new(11);
        let mut next = |m: u64| rng.below(m);
        for _ in 0..2000 {
            let mut c = EpochCache::default();
            let (mut epoch, mut end, mut start) = (0i32, 0i64, 0i64);
            for _ in 0..30 {
                match next(4) {
                    0 => {
                        epoch += 1 + next(2) as i32;
                        c.assign(epoch, end);
                        end += next(10) as i64;
                    }
                    1 => end += next(10) as i64,
                    2 => {
                        end = start + next((end - start + 1).max(1) as u64) as i64;
                        c.truncate_from_end(end);
                    }
                    _ => {
                        start += next((end - start + 1).max(1) as u64) as i64;
                        c.truncate_from_start(start);
                    }
                }
                let e = c.entries();
                assert!(e.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1), "{e:?}");
                assert!(e.iter().all(|(_, s)| *s >= start && *s <= end), "{e:?} within [{start}, {end}]");
                for (ep, _) in e {
                    let (found, at) = c.end_offset_for(*ep, end);
                    assert_eq!(found, *ep);
                    assert!(at <= end, "{e:?}: epoch {ep} ends at {at}, past the log end {end}");
                }
            }
        }
    }
}
