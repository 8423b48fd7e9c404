//! A partition leader's view of its followers, as pure logic: how far each
//! has fetched, who is in sync, and the high watermark. Kafka's rules:
//!
//! - A follower's fetch offset acknowledges everything below it (it fetches
//!   again only after appending and fsyncing what it got).
//! - The high watermark is the least log end over the in-sync replicas,
//!   never moves back, and moves only while at least `min.insync.replicas`
//!   are in sync (KIP-966).
//! - ISR changes (KIP-497): a follower that caught up to the high watermark
//!   joins the ISR the leader acts on at once, and the change is then
//!   recorded; one that fell behind for `replica.lag.time.max.ms` leaves only
//!   once its removal is recorded. So the ISR acted on always contains the
//!   recorded one, and a leader that cannot record anything (cut off from
//!   etcd) can never count an acknowledgement it did not get.
//!
//! No I/O and no clock: times come in as arguments.

use std::collections::{BTreeMap, BTreeSet};

/// What the leader knows of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Everything below this is on the replica, durably.
    log_end: i64,
    /// When it last fetched from (or past) the leader's log end.
    caught_up_ms: i64,
}

/// An ISR change the leader asks to record (a compare-and-swap on the
/// partition's state in etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrProposal {
    Expand(BTreeSet<i32>),
    Shrink(BTreeSet<i32>),
}

/// The partition's settings the leader applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `min.insync.replicas`.
    pub min_insync: usize,
    /// `replica.lag.time.max.ms`.
    pub lag_max_ms: i64,
}

#[derive(Debug, Clone)]
pub struct LeaderState {
    leader: i32,
    min_insync: usize,
    lag_max_ms: i64,
    /// The ISR as recorded in etcd.
    recorded: BTreeSet<i32>,
    /// Followers that joined before their expansion is recorded.
    joining: BTreeSet<i32>,
    followers: BTreeMap<i32, Progress>,
    /// The leader's own durable log end.
    log_end: i64,
    high_watermark: i64,
}

impl LeaderState {
    /// A new leadership: the recorded ISR, the leader's durable log end, the
    /// high watermark it starts from, and the time followers are counted as
    /// caught up from (each gets a full lag period to fetch).
    pub fn new(leader: i32, replicas: &[i32], recorded_isr: &[i32], log_end: i64, high_watermark: i64, rules: Rules, now_ms: i64) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != leader)
            .map(|r| {
                (
                    *r,
                    Progress {
                        log_end: 0,
                        caught_up_ms: now_ms,
                    },
                )
            })
            .collect();
        let mut recorded: BTreeSet<i32> = recorded_isr.iter().copied().collect();
        recorded.insert(leader);
        Self {
            leader,
            min_insync: rules.min_insync.max(1),
            lag_max_ms: rules.lag_max_ms,
            recorded,
            joining: BTreeSet::new(),
            followers,
            log_end,
            high_watermark: high_watermark.min(log_end),
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The ISR the leader acts on: the recorded one and those joining.
    pub fn isr(&self) -> BTreeSet<i32> {
        self.recorded.union(&self.joining).copied().collect()
    }

    pub fn recorded_isr(&self) -> &BTreeSet<i32> {
        &self.recorded
    }

    /// Whether acks=all may be accepted now (else NOT_ENOUGH_REPLICAS).
    pub fn enough_in_sync(&self) -> bool {
        self.isr().len() >= self.min_insync
    }

    /// The leader fsynced up to `log_end`.
    pub fn on_leader_durable(&mut self, log_end: i64) {
        self.log_end = self.log_end.max(log_end);
        self.advance();
    }

    /// A follower fetched from `fetch_offset`: it holds everything below.
    /// `leader_appended` is the leader's log end, fsynced or not: followers
    /// copy what the leader has appended while the leader fsyncs it, so a
    /// follower may hold more than the leader's durable end, and that
    /// counts (the watermark still waits for the leader's own fsync).
    /// Returns an expansion to record if it just caught up.
    pub fn on_follower_fetch(&mut self, follower: i32, fetch_offset: i64, leader_appended: i64, now_ms: i64) -> Option<IsrProposal> {
        let leader_end = self.log_end;
        let appended = leader_appended.max(leader_end);
        let progress = self.followers.get_mut(&follower)?;
        // A fetch offset past the leader's end is a confused follower; it
        // acknowledges no more than the leader has.
        progress.log_end = progress.log_end.max(fetch_offset.min(appended));
        if progress.log_end >= leader_end {
            progress.caught_up_ms = now_ms;
        }
        let caught_up_to_hw = progress.log_end >= self.high_watermark;
        let mut proposal = None;
        if caught_up_to_hw && !self.isr().contains(&follower) {
            self.joining.insert(follower);
            proposal = Some(IsrProposal::Expand(self.isr()));
        }
        self.advance();
        proposal
    }

    /// Followers in the ISR that have not caught up for the lag time: a
    /// shrink to record. They still count until it is recorded.
    pub fn lagging(&self, now_ms: i64) -> Option<IsrProposal> {
        let lagging: Vec<i32> = self
            .isr()
            .into_iter()
            .filter(|r| *r != self.leader)
            .filter(|r| self.followers.get(r).is_some_and(|p| now_ms - p.caught_up_ms > self.lag_max_ms))
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let mut shrunk = self.isr();
        for r in lagging {
            shrunk.remove(&r);
        }
        Some(IsrProposal::Shrink(shrunk))
    }

    /// The partition's settings changed (AlterConfigs).
    pub fn set_rules(&mut self, rules: Rules) {
        self.min_insync = rules.min_insync.max(1);
        self.lag_max_ms = rules.lag_max_ms;
        self.advance();
    }

    /// etcd recorded `isr` (an expansion or a shrink this leader asked for).
    pub fn on_recorded(&mut self, isr: &[i32]) {
        self.recorded = isr.iter().copied().collect();
        self.recorded.insert(self.leader);
        self.joining.retain(|r| !self.recorded.contains(r));
        self.advance();
    }

    fn advance(&mut self) {
        let isr = self.isr();
        if isr.len() < self.min_insync {
            return;
        }
        let least = isr
            .iter()
            .map(|r| {
                if *r == self.leader {
                    self.log_end
                } else {
                    self.followers.get(r).map_or(i64::MIN, |p| p.log_end)
                }
            })
            .min()
            .unwrap_or(self.log_end);
        self.high_watermark = self.high_watermark.max(least.min(self.log_end));
    }

    /// Each follower with how far it is known to hold the log.
    pub fn followers(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.followers.iter().map(|(id, p)| (*id, p.log_end))
    }

    /// How far `replica` is known to hold the log (the leader: its own end).
    pub fn log_end_of(&self, replica: i32) -> Option<i64> {
        if replica == self.leader {
            return Some(self.log_end);
        }
        self.followers.get(&replica).map(|p| p.log_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min_insync: usize, lag_max_ms: i64) -> Rules {
        Rules { min_insync, lag_max_ms }
    }

    fn leader(min_insync: usize) -> LeaderState {
        LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, rules(min_insync, 1000), 0)
    }

    #[test]
    fn the_high_watermark_is_the_least_log_end_of_the_isr() {
        let mut s = leader(2);
        s.on_leader_durable(10);
        assert_eq!(s.high_watermark(), 0, "no follower has anything");
        s.on_follower_fetch(2, 10, 10, 1);
        assert_eq!(s.high_watermark(), 0, "replica 3 is in sync and has nothing");
        s.on_follower_fetch(3, 4, 10, 1);
        assert_eq!(s.high_watermark(), 4);
        s.on_follower_fetch(3, 10, 10, 2);
        assert_eq!(s.high_watermark(), 10);
    }

    /// Followers copy what the leader appended while the leader fsyncs it:
    /// a follower's fetch past the leader's durable end counts, so the
    /// watermark moves as soon as the leader's own fsync lands, without
    /// waiting for the followers' next fetches (which a follower with
    /// nothing new to read would send only after its long poll, 500 ms).
    #[test]
    fn followers_ahead_of_the_leaders_fsync_count_once_it_lands() {
        let mut s = leader(2);
        s.on_follower_fetch(2, 10, 10, 1);
        s.on_follower_fetch(3, 10, 10, 1);
        assert_eq!(s.high_watermark(), 0, "the leader has not fsynced yet");
        s.on_leader_durable(10);
        assert_eq!(s.high_watermark(), 10);
        // Never more than the leader has appended.
        s.on_follower_fetch(2, 50, 12, 2);
        assert_eq!(s.log_end_of(2), Some(12));
    }

    #[test]
    fn a_lagging_follower_holds_the_watermark_until_its_removal_is_recorded() {
        let mut s = leader(2);
        s.on_leader_durable(10);
        s.on_follower_fetch(2, 10, 10, 500);
        assert_eq!(s.lagging(900), None);
        assert_eq!(s.lagging(1500), Some(IsrProposal::Shrink([1, 2].into())));
        assert_eq!(s.high_watermark(), 0, "replica 3 still counts");
        s.on_recorded(&[1, 2]);
        assert_eq!(s.high_watermark(), 10);
    }

    #[test]
    fn below_min_insync_nothing_is_acknowledged() {
        let mut s = LeaderState::new(1, &[1, 2, 3], &[1], 0, 0, rules(2, 1000), 0);
        assert!(!s.enough_in_sync());
        s.on_leader_durable(10);
        assert_eq!(s.high_watermark(), 0, "the leader alone is not enough");
        // Replica 2 catches up to the watermark: it joins at once.
        assert_eq!(s.on_follower_fetch(2, 0, 10, 1), Some(IsrProposal::Expand([1, 2].into())));
        assert!(s.enough_in_sync());
        s.on_follower_fetch(2, 10, 10, 2);
        assert_eq!(s.high_watermark(), 10);
    }

    /// Random schedules of appends, fetches, time, and recorded ISR changes:
    /// the watermark never moves back, never passes what an in-sync replica
    /// holds, moves only with enough replicas in sync, and the ISR acted on
    /// always contains the recorded one.
    #[test]
    fn invariants_hold_over_random_schedules() {
        let mut rng = crate::seeded::Seeded::new(5);
        let mut next = |m: u64| rng.below(m);
        let (mut advanced, mut shrunk) = (0, 0);
        for _ in 0..1000 {
            let min_insync = 1 + next(3) as usize;
            let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, rules(min_insync, 50), 0);
            let mut now = 0;
            // The leader's log end, appended but maybe not fsynced yet.
            let mut appended = 0;
            let mut pending: Option<IsrProposal> = None;
            for _ in 0..60 {
                let before = s.high_watermark();
                now += next(20) as i64;
                match next(6) {
                    0 => {
                        let durable = s.log_end_of(1).unwrap_or(0);
                        s.on_leader_durable(durable + next((appended - durable + 1).max(1) as u64) as i64);
                    }
                    1 | 2 => {
                        let follower = 2 + next(2) as i32;
                        let have = s.log_end_of(follower).unwrap_or(0);
                        // Sometimes a confused follower asks past the end.
                        let offset = have + next((appended - have + 3).max(1) as u64) as i64;
                        if let Some(p) = s.on_follower_fetch(follower, offset, appended, now) {
                            pending = Some(p);
                        }
                    }
                    5 => appended += next(5) as i64,
                    3 => {
                        if let Some(p) = s.lagging(now) {
                            pending = Some(p);
                        }
                    }
                    _ => {
                        // etcd records the last proposal (or the leader is cut off and nothing is recorded).
                        if let Some(IsrProposal::Expand(isr) | IsrProposal::Shrink(isr)) = pending.take() {
                            if next(2) == 0 {
                                s.on_recorded(&isr.into_iter().collect::<Vec<_>>());
                            }
                        }
                    }
                }
                let hw = s.high_watermark();
                assert!(hw >= before, "the watermark moved back");
                assert!(hw <= s.log_end_of(1).unwrap_or(0), "past the leader's durable end");
                for r in [2, 3] {
                    assert!(s.log_end_of(r).unwrap_or(0) <= appended, "a follower counted past the leader's log");
                }
                if hw > before {
                    assert!(s.isr().len() >= min_insync, "moved with too few in sync");
                    advanced += 1;
                }
                shrunk += usize::from(s.recorded_isr().len() < 3);
                assert!(s.recorded_isr().is_subset(&s.isr()), "acted-on ISR lost a recorded member");
                for r in s.isr() {
                    let held = s.log_end_of(r).unwrap_or(0);
                    assert!(held >= hw, "in-sync replica {r} lacks acknowledged records: {s:?}");
                }
            }
        }
        assert!(
            advanced > 1000 && shrunk > 1000,
            "the schedules exercise the rules: {advanced} advances, {shrunk} steps shrunk"
        );
    }
}
