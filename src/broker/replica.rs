//! A partition's replication role on this broker: leader (with the
//! followers' progress and the high watermark, `replication::state`),
//! follower of another broker, or neither. A single node leads every
//! partition with itself as the whole ISR.

use bytes::Bytes;

use super::partition::Partition;
use crate::log::batch::BatchHeader;
use crate::log::epoch_cache;
use crate::log::{AppendResult, LogError};
use crate::replication::state::{IsrProposal, LeaderState, Rules};

pub enum Role {
    Leader {
        epoch: i32,
        state: LeaderState,
    },
    Follower {
        epoch: i32,
        leader: i32,
    },
    /// Not a replica here, or no decision from the controller yet.
    Inactive,
}

impl Role {
    /// A single node: it leads at its start epoch and is its own ISR.
    pub fn single_node(broker_id: i32, epoch: i32, log_end: i64) -> Self {
        let rules = Rules {
            min_insync: 1,
            lag_max_ms: i64::MAX,
        };
        Role::Leader {
            epoch,
            state: LeaderState::new(broker_id, &[broker_id], &[broker_id], log_end, log_end, rules, 0),
        }
    }

    pub(super) fn enough_in_sync(&self) -> bool {
        match self {
            Role::Leader { state, .. } => state.enough_in_sync(),
            _ => false,
        }
    }
}

/// Why a produce is refused before anything is appended.
#[derive(Debug, thiserror::Error)]
pub enum ProduceRefusal {
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error(transparent)]
    Log(#[from] LogError),
    /// Refused before the append with this Kafka error code (a
    /// transactional write the coordinator does not expect).
    #[error("{message}")]
    Refused { code: i16, message: String },
}

/// Why an appended batch is not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("{0}")]
    Storage(String),
    #[error("leadership moved before the batch was committed")]
    NotLeader,
    #[error("the ISR fell below min.insync.replicas after the append")]
    NotEnoughReplicasAfterAppend,
}

/// What a leader tells a follower's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaFetch {
    /// Read from the fetch offset up to `log_end`.
    Read {
        log_end: i64,
        high_watermark: i64,
        proposal_pending: bool,
        /// This fetch moved the high watermark: answer now, even with no
        /// data, so the follower learns it (a new leader starts from it).
        high_watermark_moved: bool,
    },
    /// The follower's log diverged: truncate to (epoch, end offset).
    Diverging { epoch: i32, end_offset: i64, high_watermark: i64 },
}

/// Refusals of a follower's fetch (and of OffsetForLeaderEpoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaFetchError {
    NotLeader,
    /// The follower's epoch is older than the leader's (FENCED_LEADER_EPOCH).
    Fenced,
    /// The follower's epoch is newer: this broker has not seen it yet.
    UnknownEpoch,
}

impl ReplicaFetchError {
    pub fn code(self) -> i16 {
        use kafka_protocol::ResponseError;
        match self {
            ReplicaFetchError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
            ReplicaFetchError::Fenced => ResponseError::FencedLeaderEpoch.code(),
            ReplicaFetchError::UnknownEpoch => ResponseError::UnknownLeaderEpoch.code(),
        }
    }
}

/// KIP-320: a request's view of the leader epoch (`current`, -1 for none)
/// against the leader's own.
fn check_epoch(current: i32, leader: i32) -> Result<(), ReplicaFetchError> {
    if current >= 0 && current < leader {
        return Err(ReplicaFetchError::Fenced);
    }
    if current > leader {
        return Err(ReplicaFetchError::UnknownEpoch);
    }
    Ok(())
}

impl Partition {
    /// The leader epoch, if this broker leads the partition at the epoch a
    /// client believes in (`current_epoch`, -1 for none): what consumers'
    /// Fetch and ListOffsets are served under.
    pub fn lead_at(&self, current_epoch: i32) -> Result<i32, ReplicaFetchError> {
        match &*self.role.lock() {
            Role::Leader { epoch, .. } => check_epoch(current_epoch, *epoch).map(|()| *epoch),
            _ => Err(ReplicaFetchError::NotLeader),
        }
    }

    /// Completes after the next append as leader (`Notified::enable` first).
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// The leader epoch when this broker leads, else `None`.
    pub fn leader_epoch(&self) -> Option<i32> {
        match &*self.role.lock() {
            Role::Leader { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// The epoch of this broker's role (leader or follower), if any.
    pub fn known_epoch(&self) -> Option<i32> {
        match &*self.role.lock() {
            Role::Leader { epoch, .. } | Role::Follower { epoch, .. } => Some(*epoch),
            Role::Inactive => None,
        }
    }

    /// Whether acks=all may be taken now (else NOT_ENOUGH_REPLICAS).
    pub fn enough_in_sync(&self) -> bool {
        self.role.lock().enough_in_sync()
    }

    /// As the leader: each follower and how many records it is behind the
    /// leader's log end.
    pub fn follower_lags(&self) -> Vec<(i32, i64)> {
        let role = self.role.lock();
        let Role::Leader { state, .. } = &*role else {
            return Vec::new();
        };
        let end = self.lock_log().next_offset();
        state.followers().map(|(id, held)| (id, (end - held).max(0))).collect()
    }

    /// The ISR the leader acts on (the recorded one and followers joining).
    pub fn leader_isr(&self) -> Option<Vec<i32>> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => Some(state.isr().into_iter().collect()),
            _ => None,
        }
    }

    /// Becomes (or stays) the leader at `epoch` with the ISR etcd recorded.
    /// A new leadership starts from this broker's durable log end, notes the
    /// epoch in the epoch cache and gives every follower a full lag period.
    pub fn become_leader(&self, me: i32, epoch: i32, replicas: &[i32], isr: &[i32], rules: Rules, now_ms: i64) {
        let mut role = self.role.lock();
        if let Role::Leader { epoch: current, state } = &mut *role {
            if *current == epoch {
                state.set_rules(rules);
                drop(role);
                self.isr_recorded(epoch, isr);
                return;
            }
        }
        let (log_end, durable) = {
            let mut log = self.lock_log();
            log.begin_epoch(epoch);
            (log.next_offset(), self.durability.borrow().durable_offset)
        };
        let high_watermark = self.high_watermark();
        let state = LeaderState::new(me, replicas, isr, durable.min(log_end), high_watermark, rules, now_ms);
        let enough = state.enough_in_sync();
        *role = Role::Leader { epoch, state };
        // The term moves with the role, under its lock: an append sees the
        // role and the term of the same leadership.
        self.durability.send_modify(|d| {
            d.term += 1;
            d.enough_in_sync = enough;
        });
        drop(role);
        tracing::info!(topic = %self.topic, partition = self.index, epoch, log_end, high_watermark, "leading partition");
    }

    /// Follows `leader` at `epoch`: produce waiters of an earlier leadership
    /// here fail with NOT_LEADER_OR_FOLLOWER.
    pub fn become_follower(&self, epoch: i32, leader: i32) {
        let mut role = self.role.lock();
        if matches!(&*role, Role::Follower { epoch: e, leader: l } if *e == epoch && *l == leader) {
            return;
        }
        let was_leader = matches!(&*role, Role::Leader { .. });
        *role = Role::Follower { epoch, leader };
        self.durability.send_modify(|d| {
            d.term += 1;
            d.enough_in_sync = false;
        });
        drop(role);
        if was_leader {
            tracing::info!(topic = %self.topic, partition = self.index, epoch, leader, "no longer leading partition");
        }
    }

    /// Neither leads nor follows (not a replica, or the partition is offline).
    pub fn become_inactive(&self) {
        let mut role = self.role.lock();
        if matches!(&*role, Role::Inactive) {
            return;
        }
        *role = Role::Inactive;
        self.durability.send_modify(|d| {
            d.term += 1;
            d.enough_in_sync = false;
        });
        drop(role);
    }

    /// A follower's fetch at `fetch_offset`, having last fetched under
    /// `last_fetched_epoch` (-1: none), while it believes the leader epoch is
    /// `current_epoch` (-1: unknown). Counts the fetch offset as its
    /// acknowledgement and may propose an ISR expansion.
    pub fn on_replica_fetch(
        &self,
        replica: i32,
        current_epoch: i32,
        last_fetched_epoch: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<(ReplicaFetch, Option<IsrProposal>), ReplicaFetchError> {
        let mut role = self.role.lock();
        let Role::Leader { epoch, state } = &mut *role else {
            return Err(ReplicaFetchError::NotLeader);
        };
        check_epoch(current_epoch, *epoch)?;
        let log = self.lock_log();
        let log_end = log.next_offset();
        if last_fetched_epoch >= 0 {
            if let Some((epoch, end_offset)) = epoch_cache::diverging(log.epochs(), log_end, last_fetched_epoch, fetch_offset) {
                return Ok((
                    ReplicaFetch::Diverging {
                        epoch,
                        end_offset,
                        high_watermark: state.high_watermark(),
                    },
                    None,
                ));
            }
        }
        drop(log);
        let before = state.high_watermark();
        let proposal = state.on_follower_fetch(replica, fetch_offset, log_end, now_ms);
        let high_watermark = state.high_watermark();
        drop(role);
        self.publish_high_watermark(high_watermark);
        Ok((
            ReplicaFetch::Read {
                log_end,
                high_watermark,
                proposal_pending: proposal.is_some(),
                high_watermark_moved: high_watermark > before,
            },
            proposal,
        ))
    }

    /// OffsetForLeaderEpoch (KIP-101/320): where `epoch` ended in this
    /// leader's log, checked against the asker's `current_epoch` (-1: none).
    pub fn end_offset_for_epoch(&self, current_epoch: i32, epoch: i32) -> Result<(i32, i64), ReplicaFetchError> {
        let role = self.role.lock();
        let Role::Leader { epoch: leader_epoch, .. } = &*role else {
            return Err(ReplicaFetchError::NotLeader);
        };
        check_epoch(current_epoch, *leader_epoch)?;
        let log = self.lock_log();
        Ok(log.epochs().end_offset_for(epoch, log.next_offset()))
    }

    /// ISR members that fell behind for the lag time: a shrink to record.
    pub fn lagging_replicas(&self, now_ms: i64) -> Option<IsrProposal> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => state.lagging(now_ms),
            _ => None,
        }
    }

    /// etcd recorded `isr` for this leadership.
    pub fn isr_recorded(&self, epoch: i32, isr: &[i32]) {
        let mut role = self.role.lock();
        let Role::Leader { epoch: current, state } = &mut *role else {
            return;
        };
        if *current != epoch {
            return;
        }
        state.on_recorded(isr);
        let (enough, high_watermark) = (state.enough_in_sync(), state.high_watermark());
        drop(role);
        self.durability
            .send_if_modified(|d| std::mem::replace(&mut d.enough_in_sync, enough) != enough);
        self.publish_high_watermark(high_watermark);
    }

    /// A follower appends the leader's batches as they are, if it still
    /// follows at `epoch`: a fetch answered by a leader this broker no
    /// longer follows (it leads now, or follows another) changes nothing.
    pub fn append_replicated(&self, epoch: i32, batches: &[(BatchHeader, Bytes)], now_ms: i64) -> Result<Option<AppendResult>, LogError> {
        let Some(role) = self.following_at(epoch) else {
            return Ok(None);
        };
        let result = self.lock_log().append_replicated(batches, now_ms)?;
        drop(role);
        Ok(Some(result))
    }

    /// The role, locked, if this broker follows the partition at `epoch`:
    /// what the follower's changes to its log hold while they run.
    fn following_at(&self, epoch: i32) -> Option<parking_lot::MutexGuard<'_, Role>> {
        let role = self.role.lock();
        matches!(&*role, Role::Follower { epoch: e, .. } if *e == epoch).then_some(role)
    }

    /// A follower learns the leader's high watermark: it holds no more than
    /// its own log, so it takes the smaller.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        let end = self.lock_log().next_offset();
        self.publish_high_watermark(leader_high_watermark.min(end));
    }

    /// The follower's state for its next fetch: (log end, last epoch).
    pub fn fetch_position(&self) -> (i64, i32) {
        let log = self.lock_log();
        (log.next_offset(), log.epochs().latest_epoch().unwrap_or(-1))
    }

    /// A follower behind the leader's local log start begins its log there.
    pub fn restart_at(&self, epoch: i32, offset: i64, now_ms: i64) -> Result<(), LogError> {
        let Some(role) = self.following_at(epoch) else {
            return Ok(());
        };
        self.lock_log().advance_to(offset, now_ms)?;
        drop(role);
        tracing::info!(topic = %self.topic, partition = self.index, offset, "follower log starts at the leader's local log start");
        Ok(())
    }

    /// Truncates a diverged follower log (KIP-279): to the leader's end of
    /// `epoch`, or the follower's own end of that epoch if earlier.
    pub fn truncate_diverged(&self, following_epoch: i32, epoch: i32, leader_end_offset: i64, now_ms: i64) -> Result<i64, LogError> {
        let Some(role) = self.following_at(following_epoch) else {
            return Ok(self.lock_log().next_offset());
        };
        let mut log = self.lock_log();
        let (own_epoch, own_end) = log.epochs().end_offset_for(epoch, log.next_offset());
        let cut = if own_epoch == epoch {
            own_end.min(leader_end_offset)
        } else {
            leader_end_offset
        };
        let end = log.truncate_to(cut.max(0), now_ms)?;
        drop(log);
        drop(role);
        self.durability.send_modify(|d| d.durable_offset = d.durable_offset.min(end));
        Ok(end)
    }
}
