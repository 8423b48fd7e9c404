//! The async shell around `state_machine::Group`: one mutex over all groups,
//! oneshot channels for requests the state machine answers later (JoinGroup,
//! SyncGroup), and one timer task that drives `tick` at each group's next
//! deadline and expires committed offsets.
//!
//! Groups are bounded: only a JoinGroup with no member id creates one (as in
//! Kafka; SyncGroup, Heartbeat, LeaveGroup and OffsetFetch never do), at most
//! `group_max_count` exist, and a group is dropped as soon as it is idle (see
//! [`Group::is_idle`]) and has no committed offsets, which retention removes
//! in time.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, Notify};

use super::consumer::group::{ConsumerGroup, GroupView, HeartbeatInput, HeartbeatOutput, Refusal, Timing, TopicCatalog};
use super::expiry::Membership;
use super::offsets::OffsetStore;
use super::state_machine::{Group, GroupState, JoinInput, JoinOutput, MemberDescription, Reply, SyncInput, SyncOutput};
use crate::clock::now_ms;
use crate::config::Config;
use crate::metrics::{GroupLabels, GroupProtocolLabels, LagLabels, Metrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// At most this many groups get a `consumer_group_members` series, and at
/// most [`GROUP_LAG_SERIES_MAX`] `consumer_group_lag` series are exported:
/// without a cap a scrape grows with every group and partition a client
/// invents. Groups are taken in name order; what is left out is counted in
/// `consumer_group_series_omitted`.
pub const GROUP_MEMBERS_SERIES_MAX: usize = 1_000;
pub const GROUP_LAG_SERIES_MAX: usize = 10_000;

/// A group id is either a classic group or a KIP-848 consumer group, never
/// both: an empty group of one kind becomes the other when a member of the
/// other protocol joins (Kafka's offline migration; committed offsets are
/// the group's and stay).
enum Kind {
    Classic(Group),
    Consumer(ConsumerGroup),
}

/// A group's state machine, and since when it has been Empty (the state
/// machine has no use for that time; offset retention does).
struct GroupSlot {
    kind: Kind,
    empty_since_ms: Option<i64>,
    /// The generation (classic) or group epoch (KIP-848) last counted in
    /// `consumer_group_rebalances`.
    counted_epoch: i32,
}

impl GroupSlot {
    fn classic(group: Group, now_ms: i64) -> Self {
        Self::new(Kind::Classic(group), now_ms)
    }

    fn new(kind: Kind, now_ms: i64) -> Self {
        let mut slot = Self {
            kind,
            empty_since_ms: Some(now_ms),
            counted_epoch: 0,
        };
        slot.counted_epoch = slot.epoch();
        slot.note_state(now_ms);
        slot
    }

    /// The classic generation or the KIP-848 group epoch.
    fn epoch(&self) -> i32 {
        match &self.kind {
            Kind::Classic(g) => g.generation_id(),
            Kind::Consumer(c) => c.group_epoch(),
        }
    }

    /// Adds the rebalances since the last count to `counter`.
    fn count_rebalances(&mut self, counter: &Family<GroupProtocolLabels, Counter>) {
        let epoch = self.epoch();
        if epoch > self.counted_epoch {
            let protocol = match self.kind {
                Kind::Classic(_) => "classic",
                Kind::Consumer(_) => "consumer",
            };
            counter
                .get_or_create(&GroupProtocolLabels { protocol })
                .inc_by((epoch - self.counted_epoch) as u64);
        }
        self.counted_epoch = epoch;
    }

    /// Keeps `empty_since_ms` in step with the group's state after a change.
    fn note_state(&mut self, now_ms: i64) {
        let empty = match &self.kind {
            Kind::Classic(g) => g.state() == GroupState::Empty,
            Kind::Consumer(c) => c.is_empty(),
        };
        if empty {
            self.empty_since_ms.get_or_insert(now_ms);
        } else {
            self.empty_since_ms = None;
        }
    }

    fn membership(&self) -> Membership {
        match self.empty_since_ms {
            Some(since_ms) => Membership::EmptySince(since_ms),
            None => Membership::Active,
        }
    }

    /// Nothing alive in it: only committed offsets can keep it.
    fn is_idle(&self) -> bool {
        match &self.kind {
            Kind::Classic(g) => g.is_idle(),
            Kind::Consumer(c) => c.is_empty(),
        }
    }

    /// No members (a group that may be deleted or change protocol).
    fn has_no_members(&self) -> bool {
        match &self.kind {
            Kind::Classic(g) => g.is_empty() && matches!(g.state(), GroupState::Empty | GroupState::Dead),
            Kind::Consumer(c) => c.is_empty(),
        }
    }

    fn member_count(&self) -> usize {
        match &self.kind {
            Kind::Classic(g) => g.members().len(),
            Kind::Consumer(c) => c.member_count(),
        }
    }

    fn next_deadline(&self) -> Option<i64> {
        match &self.kind {
            Kind::Classic(g) => g.next_deadline(),
            Kind::Consumer(c) => c.next_deadline(),
        }
    }

    fn classic_mut(&mut self) -> Option<&mut Group> {
        match &mut self.kind {
            Kind::Classic(g) => Some(g),
            Kind::Consumer(_) => None,
        }
    }
}

/// Who commits: OffsetCommit's or TxnOffsetCommit's member fields.
#[derive(Debug, Clone, Copy)]
pub struct CommitFrom<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation_id: i32,
    pub api_version: i16,
    pub transactional: bool,
}

/// A snapshot of one group for DescribeGroups and ListGroups.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
    /// "classic" or "consumer" (KIP-848), as ListGroups v5 reports it.
    pub group_type: &'static str,
    /// A consumer group's subscribed topics (its members' metadata is not
    /// the classic kind).
    pub subscribed_topics: Option<std::collections::BTreeSet<String>>,
}

pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, GroupSlot>>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_token: AtomicU64,
    pub offsets: OffsetStore,
    /// Wakes the timer task when a deadline may have moved earlier.
    deadlines_changed: Notify,
    initial_rebalance_delay_ms: i64,
    min_session_timeout_ms: i64,
    max_session_timeout_ms: i64,
    max_size: usize,
    max_count: usize,
    offsets_retention_ms: i64,
    offsets_retention_check_interval_ms: i64,
    offset_metadata_max_bytes: usize,
    consumer_timing: Timing,
    /// `consumer_group_rebalances`; a private family until
    /// [`Self::report_rebalances_to`] shares the registered one.
    rebalances: Family<GroupProtocolLabels, Counter>,
}

fn join_error(code: i16, member_id: String) -> JoinOutput {
    JoinOutput {
        error_code: code,
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id,
        members: Vec::new(),
    }
}

fn sync_error(code: i16) -> SyncOutput {
    SyncOutput {
        error_code: code,
        protocol_type: None,
        protocol_name: None,
        assignment: Default::default(),
    }
}

impl GroupCoordinator {
    pub fn open(meta_dir: &Path, config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            groups: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            offsets: OffsetStore::open(meta_dir)?,
            deadlines_changed: Notify::new(),
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            max_size: config.group_max_size,
            max_count: config.group_max_count,
            offsets_retention_ms: (config.offsets_retention_minutes as i64).saturating_mul(60_000),
            offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms.min(i64::MAX as u64) as i64,
            offset_metadata_max_bytes: config.offset_metadata_max_bytes,
            consumer_timing: Timing {
                session_timeout_ms: config.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
                max_size: config.group_max_size,
            },
            rebalances: Family::default(),
        })
    }

    /// Counts rebalances in the broker's registered metric.
    pub fn report_rebalances_to(&mut self, counter: Family<GroupProtocolLabels, Counter>) {
        self.rebalances = counter;
    }

    fn deliver(&self, replies: Vec<Reply>) {
        if replies.is_empty() {
            return;
        }
        let mut waiters = self.waiters.lock();
        for reply in replies {
            let token = match &reply {
                Reply::Join { token, .. } | Reply::Sync { token, .. } => *token,
            };
            if let Some(tx) = waiters.remove(&token) {
                // The client may have gone; nothing to do then.
                let _ = tx.send(reply);
            }
        }
    }

    /// Kafka's offset.metadata.max.bytes.
    pub fn offset_metadata_max_bytes(&self) -> usize {
        self.offset_metadata_max_bytes
    }

    /// Kafka's online downgrade: a KIP-848 group left with only classic
    /// members (the last member of the new protocol left or timed out)
    /// becomes a classic group again, which they rejoin.
    fn maybe_hand_back(&self, group_id: &str, slot: &mut GroupSlot, now_ms: i64) {
        let Kind::Consumer(consumer) = &slot.kind else { return };
        let Some((generation, protocol_name, members)) = consumer.classic_handover() else {
            return;
        };
        let count = members.len();
        let (group, replies) = Group::from_members(
            group_id.to_string(),
            self.initial_rebalance_delay_ms,
            self.max_size,
            generation,
            protocol_name,
            members,
            now_ms,
        );
        slot.kind = Kind::Classic(group);
        slot.counted_epoch = slot.epoch();
        tracing::info!(group = %group_id, members = count, "consumer group with only classic members becomes a classic group (KIP-848 online downgrade)");
        self.deliver(replies);
    }

    /// Drops the group if nothing keeps it: idle, and no committed offsets.
    fn settle(&self, groups: &mut HashMap<String, GroupSlot>, group_id: &str, now_ms: i64) {
        let Some(slot) = groups.get_mut(group_id) else { return };
        self.maybe_hand_back(group_id, slot, now_ms);
        slot.note_state(now_ms);
        slot.count_rebalances(&self.rebalances);
        if slot.is_idle() && !self.offsets.has_group(group_id) {
            groups.remove(group_id);
        }
    }

    /// [`Self::settle`] for every group.
    fn settle_all(&self, groups: &mut HashMap<String, GroupSlot>, now_ms: i64) {
        groups.retain(|group_id, slot| {
            self.maybe_hand_back(group_id, slot, now_ms);
            slot.note_state(now_ms);
            slot.count_rebalances(&self.rebalances);
            // Kept while anything is alive in it, or it has offsets.
            !slot.is_idle() || self.offsets.has_group(group_id)
        });
    }

    /// Runs a JoinGroup's `f` on the group, creating the group only for a
    /// join without a member id (Kafka's rule: a member id names a member of
    /// an existing group) and only below `group_max_count`. Delivers the
    /// replies `f` releases.
    fn join_group<T>(&self, group_id: &str, now_ms: i64, creates: bool, f: impl FnOnce(&mut Group) -> (T, Vec<Reply>)) -> Result<T, i16> {
        let (out, replies) = {
            let mut groups = self.groups.lock();
            let new_slot = || {
                GroupSlot::classic(
                    Group::new(group_id.to_string(), self.initial_rebalance_delay_ms, self.max_size),
                    now_ms,
                )
            };
            match groups.get(group_id) {
                Some(slot) if matches!(&slot.kind, Kind::Classic(g) if g.state() == GroupState::Dead) => {
                    // Deleted while this join was on its way: a new group
                    // under the same id.
                    groups.insert(group_id.to_string(), new_slot());
                }
                Some(slot) if matches!(slot.kind, Kind::Consumer(_)) => {
                    if !slot.has_no_members() {
                        // Classic members cannot join a KIP-848 group with
                        // members (Kafka 4.0 can; see compatibility.md).
                        return Err(ResponseError::InconsistentGroupProtocol.code());
                    }
                    groups.insert(group_id.to_string(), new_slot());
                }
                Some(_) => {}
                None if !creates => return Err(ResponseError::UnknownMemberId.code()),
                None if groups.len() >= self.max_count => {
                    // Retriable: the client finds the coordinator again and
                    // retries with backoff, while idle groups free slots.
                    return Err(ResponseError::CoordinatorNotAvailable.code());
                }
                None => {
                    groups.insert(group_id.to_string(), new_slot());
                }
            }
            let Some(group) = groups.get_mut(group_id).and_then(|slot| slot.classic_mut()) else {
                return Err(ResponseError::CoordinatorNotAvailable.code());
            };
            let result = f(group);
            self.settle(&mut groups, group_id, now_ms);
            result
        };
        self.deliver(replies);
        self.deadlines_changed.notify_one();
        Ok(out)
    }

    /// Stops coordinating the groups `belongs` selects (their offsets
    /// partition moved to another broker): their membership is dropped and
    /// parked joins and syncs are told NOT_COORDINATOR.
    pub fn forget(&self, belongs: impl Fn(&str) -> bool) -> usize {
        let mut replies = Vec::new();
        let mut forgotten = 0;
        self.groups.lock().retain(|group_id, slot| {
            if !belongs(group_id) {
                return true;
            }
            if let Some(group) = slot.classic_mut() {
                replies.extend(group.abandon(ResponseError::NotCoordinator.code()));
            }
            forgotten += 1;
            false
        });
        self.deliver(replies);
        forgotten
    }

    /// Forgets a waiter whose request was answered without the group.
    fn unregister(&self, token: u64) {
        self.waiters.lock().remove(&token);
    }

    fn register(&self) -> (u64, oneshot::Receiver<Reply>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(token, tx);
        (token, rx)
    }

    pub async fn join(&self, group_id: &str, input: JoinInput, topics: &dyn TopicCatalog) -> JoinOutput {
        if group_id.is_empty() {
            return join_error(ResponseError::InvalidGroupId.code(), input.member_id);
        }
        if input.session_timeout_ms < self.min_session_timeout_ms || input.session_timeout_ms > self.max_session_timeout_ms {
            return join_error(ResponseError::InvalidSessionTimeout.code(), input.member_id);
        }
        let member_id = input.member_id.clone();
        let new_member_id = format!("{}-{}", input.client_id, uuid::Uuid::new_v4());
        let now = now_ms();
        let timing = self.consumer_timing;
        let join = input.clone();
        let id = new_member_id.clone();
        if let Some(result) = self.consumer_with_members(group_id, now, |c| c.classic_join(now, join, id, topics, timing)) {
            // A classic member of a KIP-848 group: answered at once, with no
            // client-side leader (the coordinator assigns).
            return match result {
                Ok(joined) => JoinOutput {
                    error_code: 0,
                    generation_id: joined.generation_id,
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some(joined.protocol_name),
                    leader: String::new(),
                    member_id: joined.member_id,
                    members: Vec::new(),
                },
                Err(refusal) => join_error(refusal.code, refusal.member_id),
            };
        }
        let (token, rx) = self.register();
        let creates = input.member_id.is_empty();
        if let Err(code) = self.join_group(group_id, now, creates, |g| ((), g.join(now, token, input, new_member_id))) {
            self.unregister(token);
            return join_error(code, member_id);
        }
        match rx.await {
            Ok(Reply::Join { output, .. }) => output,
            _ => join_error(ResponseError::UnknownServerError.code(), member_id),
        }
    }

    pub async fn sync(&self, group_id: &str, input: SyncInput) -> SyncOutput {
        let now = now_ms();
        let classic_member = |c: &mut ConsumerGroup| {
            c.classic_sync(
                now,
                &input.member_id,
                input.group_instance_id.as_deref(),
                input.generation_id,
                input.protocol_name.as_deref(),
            )
        };
        if let Some(result) = self.consumer_with_members(group_id, now, classic_member) {
            return match result {
                Ok(assignment) => SyncOutput {
                    error_code: 0,
                    protocol_type: input.protocol_type.clone(),
                    protocol_name: input.protocol_name.clone(),
                    assignment,
                },
                Err(code) => sync_error(code),
            };
        }
        let (token, rx) = self.register();
        if self.existing(group_id, |g| ((), g.sync(now, token, input))).is_none() {
            // Kafka's answer for a group that does not exist; creating it
            // would let any client fill memory with group ids.
            self.unregister(token);
            return sync_error(ResponseError::UnknownMemberId.code());
        }
        match rx.await {
            Ok(Reply::Sync { output, .. }) => output,
            _ => sync_error(ResponseError::UnknownServerError.code()),
        }
    }

    /// Runs `f` on the group if it is a KIP-848 group with members (where
    /// classic requests go to its classic members), settling it afterwards.
    fn consumer_with_members<T>(&self, group_id: &str, now_ms: i64, f: impl FnOnce(&mut ConsumerGroup) -> T) -> Option<T> {
        let out = {
            let mut groups = self.groups.lock();
            let Some(Kind::Consumer(group)) = groups.get_mut(group_id).map(|slot| &mut slot.kind) else {
                return None;
            };
            if group.is_empty() {
                return None;
            }
            let out = f(group);
            self.settle(&mut groups, group_id, now_ms);
            out
        };
        self.deadlines_changed.notify_one();
        Some(out)
    }

    /// Runs `f` on the group if it exists (never creating it) and delivers
    /// the replies it releases.
    fn existing<T>(&self, group_id: &str, f: impl FnOnce(&mut Group) -> (T, Vec<Reply>)) -> Option<T> {
        let (out, replies) = {
            let mut groups = self.groups.lock();
            let result = f(groups.get_mut(group_id)?.classic_mut()?);
            self.settle(&mut groups, group_id, now_ms());
            result
        };
        self.deliver(replies);
        self.deadlines_changed.notify_one();
        Some(out)
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation_id: i32) -> i16 {
        let now = now_ms();
        if let Some(code) = self.consumer_with_members(group_id, now, |c| c.classic_heartbeat(now, member_id, instance_id, generation_id)) {
            return code;
        }
        self.existing(group_id, |g| (g.heartbeat(now, member_id, instance_id, generation_id), Vec::new()))
            .unwrap_or(ResponseError::UnknownMemberId.code())
    }

    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let now = now_ms();
        if let Some(codes) = self.consumer_with_members(group_id, now, |c| c.classic_leave(members)) {
            return codes;
        }
        self.existing(group_id, |g| g.leave(now, members))
            .unwrap_or_else(|| vec![ResponseError::UnknownMemberId.code(); members.len()])
    }

    /// Checks a commit against the group's membership and generation (a
    /// classic group) or member epoch (a consumer group, where
    /// `api_version` is OffsetCommit's and `transactional` marks
    /// TxnOffsetCommit).
    pub fn validate_commit(&self, group_id: &str, commit: &CommitFrom<'_>) -> Result<(), i16> {
        let now = now_ms();
        let mut groups = self.groups.lock();
        match groups.get_mut(group_id).map(|slot| &mut slot.kind) {
            Some(Kind::Consumer(c)) => c
                .validate_commit(commit.member_id, commit.generation_id, commit.api_version, commit.transactional)
                .map_err(|r| r.code),
            // A standalone commit (assign() consumers, admin tools) is
            // allowed while the group has no active members.
            Some(Kind::Classic(g)) if commit.generation_id < 0 && commit.member_id.is_empty() => {
                if g.is_empty() {
                    Ok(())
                } else {
                    Err(ResponseError::UnknownMemberId.code())
                }
            }
            Some(Kind::Classic(g)) => g.validate_commit(now, commit.member_id, commit.instance_id, commit.generation_id),
            None if commit.generation_id < 0 && commit.member_id.is_empty() => {
                if !self.offsets.has_group(group_id) && self.offsets.group_count() >= self.max_count {
                    // The same bound as JoinGroup's, for groups that only
                    // store offsets.
                    Err(ResponseError::CoordinatorNotAvailable.code())
                } else {
                    Ok(())
                }
            }
            None => Err(ResponseError::UnknownMemberId.code()),
        }
    }

    /// OffsetFetch v9's member check: only a consumer group's member
    /// carries an epoch to check.
    pub fn validate_offset_fetch(&self, group_id: &str, member_id: Option<&str>, member_epoch: i32) -> Result<(), i16> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        match self.groups.lock().get(group_id).map(|slot| &slot.kind) {
            Some(Kind::Consumer(c)) => c.validate_fetch(member_id, member_epoch).map_err(|r| r.code),
            Some(Kind::Classic(_)) => Ok(()),
            None => Err(ResponseError::UnknownMemberId.code()),
        }
    }

    /// A KIP-848 ConsumerGroupHeartbeat. Only a join (epoch 0) creates the
    /// group, and only below `group_max_count`; an empty classic group of
    /// the same id becomes a consumer group, keeping its offsets.
    pub fn consumer_heartbeat(&self, group_id: &str, input: HeartbeatInput, topics: &dyn TopicCatalog) -> Result<HeartbeatOutput, Refusal> {
        let now = now_ms();
        let out = {
            let mut groups = self.groups.lock();
            let joining = input.member_epoch == 0;
            let not_found = || Refusal::new(ResponseError::GroupIdNotFound, format!("Group {group_id} not found."));
            let unknown_member = || {
                Refusal::new(
                    ResponseError::UnknownMemberId,
                    format!(
                        "Member {} is not a member of group {group_id}; rejoin with epoch 0.",
                        input.member_id
                    ),
                )
            };
            let total = groups.len();
            match groups.get(group_id) {
                Some(slot) if matches!(slot.kind, Kind::Classic(_)) => {
                    let not_consumer =
                        || Refusal::new(ResponseError::GroupIdNotFound, format!("Group {group_id} is not a consumer group."));
                    if !joining {
                        return Err(unknown_member());
                    }
                    let converted = if slot.has_no_members() {
                        tracing::info!(group = %group_id, "empty classic group becomes a consumer group (KIP-848)");
                        ConsumerGroup::new(group_id.to_string())
                    } else {
                        let Some(mut slot) = groups.remove(group_id) else {
                            return Err(not_consumer());
                        };
                        match self.take_over(group_id, &mut slot, topics, now) {
                            Ok(group) => group,
                            Err(refusal) => {
                                groups.insert(group_id.to_string(), slot);
                                return Err(refusal);
                            }
                        }
                    };
                    groups.insert(group_id.to_string(), GroupSlot::new(Kind::Consumer(converted), now));
                }
                Some(_) => {}
                // Membership lives in memory: after a restart or a move of
                // the coordinator, a member's heartbeat finds no group. Kafka
                // (which never loses a group) says GROUP_ID_NOT_FOUND;
                // librdkafka rejoins only on UNKNOWN_MEMBER_ID or
                // FENCED_MEMBER_EPOCH.
                None if !joining => return Err(unknown_member()),
                None if total >= self.max_count => {
                    return Err(Refusal::new(
                        ResponseError::CoordinatorNotAvailable,
                        "The coordinator holds group_max_count groups.",
                    ))
                }
                None => {
                    groups.insert(
                        group_id.to_string(),
                        GroupSlot::new(Kind::Consumer(ConsumerGroup::new(group_id.to_string())), now),
                    );
                }
            }
            let Some(Kind::Consumer(group)) = groups.get_mut(group_id).map(|slot| &mut slot.kind) else {
                return Err(not_found());
            };
            let out = group.heartbeat(now, input, topics, self.consumer_timing);
            self.settle(&mut groups, group_id, now);
            out
        };
        self.deadlines_changed.notify_one();
        out
    }

    /// Kafka's online upgrade: a classic group of the consumer protocol with
    /// members becomes a consumer group whose members carry on as classic
    /// members. Parked joins and syncs are told REBALANCE_IN_PROGRESS and
    /// rejoin the new group.
    fn take_over(&self, group_id: &str, slot: &mut GroupSlot, topics: &dyn TopicCatalog, now_ms: i64) -> Result<ConsumerGroup, Refusal> {
        let Kind::Classic(classic) = &mut slot.kind else {
            return Err(Refusal::new(
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} is not a classic group."),
            ));
        };
        let members = classic.classic_members();
        if !ConsumerGroup::can_take_over(classic.protocol_type(), &members, self.consumer_timing.max_size) {
            return Err(Refusal::new(
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group."),
            ));
        }
        let protocol_name = classic.protocol_name().unwrap_or_default().to_string();
        let group = ConsumerGroup::from_classic(
            group_id.to_string(),
            classic.generation_id(),
            &protocol_name,
            members,
            topics,
            now_ms,
        )?;
        let parked = classic.abandon(ResponseError::RebalanceInProgress.code());
        self.deliver(parked);
        tracing::info!(group = %group_id, members = group.member_count(), "classic group becomes a consumer group with its members (KIP-848 online upgrade)");
        Ok(group)
    }

    /// ConsumerGroupDescribe: the group, or GROUP_ID_NOT_FOUND with Kafka's
    /// message.
    pub fn consumer_describe(&self, group_id: &str) -> Result<GroupView, Refusal> {
        match self.groups.lock().get(group_id).map(|slot| &slot.kind) {
            Some(Kind::Consumer(c)) => Ok(c.describe()),
            Some(Kind::Classic(_)) => Err(Refusal::new(
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group."),
            )),
            None => Err(Refusal::new(ResponseError::GroupIdNotFound, format!("Group {group_id} not found."))),
        }
    }

    pub fn describe(&self, group_id: &str) -> GroupSummary {
        let summary = {
            let groups = self.groups.lock();
            groups.get(group_id).map(|slot| match &slot.kind {
                Kind::Classic(g) => GroupSummary {
                    group_id: group_id.to_string(),
                    state: g.state().as_str(),
                    protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                    protocol_name: g.protocol_name().unwrap_or_default().to_string(),
                    members: g.members(),
                    group_type: "classic",
                    subscribed_topics: None,
                },
                Kind::Consumer(c) => GroupSummary {
                    group_id: group_id.to_string(),
                    state: c.state().as_str(),
                    protocol_type: "consumer".to_string(),
                    protocol_name: String::new(),
                    members: Vec::new(),
                    group_type: "consumer",
                    subscribed_topics: Some(c.subscribed_topics()),
                },
            })
        };
        summary.unwrap_or_else(|| GroupSummary {
            group_id: group_id.to_string(),
            // A group known only by its committed offsets is Empty; an
            // unknown one is Dead, as Kafka reports them.
            state: if self.offsets.groups().iter().any(|g| g == group_id) {
                "Empty"
            } else {
                "Dead"
            },
            protocol_type: String::new(),
            protocol_name: String::new(),
            members: Vec::new(),
            group_type: "classic",
            subscribed_topics: None,
        })
    }

    pub fn list(&self) -> Vec<GroupSummary> {
        let mut ids: Vec<String> = self.groups.lock().keys().cloned().collect();
        ids.extend(self.offsets.groups());
        ids.sort();
        ids.dedup();
        ids.iter().map(|id| self.describe(id)).filter(|s| s.state != "Dead").collect()
    }

    /// DeleteGroups: only groups with no members; their offsets go too.
    pub async fn delete(&self, group_id: &str) -> Result<(), i16> {
        let known = self.offsets.groups().iter().any(|g| g == group_id);
        let consumer_members = match self.groups.lock().get(group_id).map(|slot| &slot.kind) {
            Some(Kind::Consumer(c)) => Some(!c.is_empty()),
            _ => None,
        };
        match consumer_members {
            Some(true) => return Err(ResponseError::NonEmptyGroup.code()),
            Some(false) => {}
            None => match self.existing(group_id, |g| (g.delete(), Vec::new())) {
                Some(Err(code)) => return Err(code),
                None if !known => return Err(ResponseError::GroupIdNotFound.code()),
                _ => {}
            },
        }
        self.groups.lock().remove(group_id);
        self.offsets
            .delete_group(group_id)
            .await
            .map_err(|_| ResponseError::KafkaStorageError.code())
    }

    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups.lock().get(group_id).is_some_and(|slot| slot.member_count() > 0)
    }

    /// Runs `tick` on every group at its next deadline, and offset expiry
    /// every `offsets_retention_check_interval_ms`, forever.
    pub async fn run_timers(&self) {
        let mut next_expiry_ms = now_ms().saturating_add(self.offsets_retention_check_interval_ms);
        loop {
            let next_group_deadline = self.groups.lock().values().filter_map(|slot| slot.next_deadline()).min();
            let next = next_group_deadline.map_or(next_expiry_ms, |deadline| deadline.min(next_expiry_ms));
            let wait = next.saturating_sub(now_ms()).max(0) as u64;
            tokio::select! {
                _ = self.deadlines_changed.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            }
            let now = now_ms();
            let replies: Vec<Reply> = {
                let mut groups = self.groups.lock();
                let mut replies = Vec::new();
                for (group_id, slot) in groups.iter_mut() {
                    match &mut slot.kind {
                        Kind::Classic(g) => replies.extend(g.tick(now)),
                        Kind::Consumer(c) => {
                            let expired = c.tick(now);
                            if !expired.is_empty() {
                                tracing::info!(group = %group_id, members = ?expired, "consumer group members removed: session or rebalance timeout");
                            }
                        }
                    }
                }
                self.settle_all(&mut groups, now);
                replies
            };
            self.deliver(replies);
            if now >= next_expiry_ms {
                if let Err(e) = self.expire_offsets(now).await {
                    tracing::warn!(error = %e, "cannot expire committed offsets; retrying at the next check");
                }
                next_expiry_ms = now.saturating_add(self.offsets_retention_check_interval_ms);
            }
        }
    }

    /// Deletes the committed offsets that retention has expired at `now_ms`
    /// and drops the groups left with nothing. Membership is read first and
    /// the offsets decided afterwards: a group that gains its first member
    /// in between is judged as it was (empty), as Kafka's periodic cleanup
    /// also may.
    pub async fn expire_offsets(&self, now_ms: i64) -> std::io::Result<()> {
        let membership: HashMap<String, Membership> = self
            .groups
            .lock()
            .iter()
            .map(|(id, slot)| (id.clone(), slot.membership()))
            .collect();
        let emptied = self.offsets.expire(now_ms, self.offsets_retention_ms, membership).await?;
        if !emptied.is_empty() {
            tracing::info!(groups = emptied.len(), "committed offsets expired; groups without members removed");
        }
        self.settle_all(&mut self.groups.lock(), now_ms);
        Ok(())
    }

    /// Groups known to the coordinator: with membership state or with
    /// committed offsets.
    pub fn group_count(&self) -> usize {
        let mut ids: std::collections::HashSet<String> = self.offsets.groups().into_iter().collect();
        ids.extend(self.groups.lock().keys().cloned());
        ids.len()
    }

    /// Rebuilds the group series from the live groups, so a removed group's
    /// series go at the next scrape, and caps them (see
    /// [`GROUP_MEMBERS_SERIES_MAX`]).
    pub fn update_gauges(&self, metrics: &Metrics, high_watermarks: &HashMap<(String, i32), i64>) {
        metrics.group_lag.clear();
        metrics.group_members.clear();
        let mut omitted = 0usize;
        let mut lag_series = 0usize;
        let mut offset_groups = self.offsets.groups();
        offset_groups.sort();
        for group in offset_groups {
            for (topic, partition, committed) in self.offsets.group_offsets(&group) {
                if let Some(hw) = high_watermarks.get(&(topic.clone(), partition)) {
                    if lag_series >= GROUP_LAG_SERIES_MAX {
                        omitted += 1;
                        continue;
                    }
                    lag_series += 1;
                    let labels = LagLabels {
                        group: group.clone(),
                        topic,
                        partition: partition.to_string(),
                    };
                    metrics.group_lag.get_or_create(&labels).set((hw - committed.offset).max(0));
                }
            }
        }
        let groups = self.groups.lock();
        let mut ids: Vec<&String> = groups.keys().collect();
        ids.sort();
        omitted += ids.len().saturating_sub(GROUP_MEMBERS_SERIES_MAX);
        for id in ids.into_iter().take(GROUP_MEMBERS_SERIES_MAX) {
            if let Some(slot) = groups.get(id) {
                metrics
                    .group_members
                    .get_or_create(&GroupLabels { group: id.clone() })
                    .set(slot.member_count() as i64);
            }
        }
        drop(groups);
        metrics.consumer_groups.set(self.group_count() as i64);
        metrics.group_series_omitted.set(omitted as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::groups::offsets::CommittedOffset;

    const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();

    struct NoTopics;

    impl TopicCatalog for NoTopics {
        fn by_name(&self, _: &str) -> Option<(uuid::Uuid, i32)> {
            None
        }

        fn names(&self) -> Vec<String> {
            Vec::new()
        }
    }

    fn coordinator(dir: &Path, config: Config) -> Arc<GroupCoordinator> {
        Arc::new(GroupCoordinator::open(dir, &config).unwrap())
    }

    fn config() -> Config {
        Config {
            group_min_session_timeout_ms: 10,
            group_max_count: 3,
            ..Config::default()
        }
    }

    /// A JoinGroup v4+ with no member id: answered at once.
    fn new_member(session_timeout_ms: i64) -> JoinInput {
        JoinInput {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms,
            rebalance_timeout_ms: session_timeout_ms,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: true,
        }
    }

    fn stranger_sync() -> SyncInput {
        SyncInput {
            member_id: "nobody".into(),
            group_instance_id: None,
            generation_id: 1,
            protocol_type: None,
            protocol_name: None,
            assignments: Vec::new(),
        }
    }

    #[tokio::test]
    async fn requests_for_unknown_groups_do_not_create_them() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path(), config());
        assert_eq!(
            groups.sync("s", stranger_sync()).await.error_code,
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(groups.heartbeat("h", "nobody", None, 1), ResponseError::UnknownMemberId.code());
        assert_eq!(
            groups.leave("l", &[("nobody".into(), None)]),
            vec![ResponseError::UnknownMemberId.code()]
        );
        let rejoin = JoinInput {
            member_id: "stale".into(),
            ..new_member(1000)
        };
        assert_eq!(
            groups.join("j", rejoin, &NoTopics).await.error_code,
            ResponseError::UnknownMemberId.code()
        );
        assert!(groups.list().is_empty());
        assert_eq!(groups.group_count(), 0);
        assert_eq!(groups.describe("s").state, "Dead");
    }

    /// After a restart the group is gone: a member's heartbeat must make it
    /// rejoin (UNKNOWN_MEMBER_ID; librdkafka ignores GROUP_ID_NOT_FOUND) and
    /// must not create the group.
    #[tokio::test]
    async fn a_heartbeat_to_a_lost_consumer_group_asks_the_member_to_rejoin() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path(), config());
        let input = HeartbeatInput {
            api_version: 1,
            member_id: "m".into(),
            member_epoch: 5,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let refused = groups.consumer_heartbeat("g", input.clone(), &NoTopics).unwrap_err();
        assert_eq!(refused.code, ResponseError::UnknownMemberId.code());
        assert_eq!(groups.group_count(), 0);
        // The same for a classic group that took the id meanwhile.
        assert_eq!(groups.join("g", new_member(60_000), &NoTopics).await.error_code, MEMBER_ID_REQUIRED);
        let refused = groups.consumer_heartbeat("g", input, &NoTopics).unwrap_err();
        assert_eq!(refused.code, ResponseError::UnknownMemberId.code());
    }

    #[tokio::test]
    async fn a_join_past_group_max_count_is_coordinator_not_available() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path(), config());
        for id in ["a", "b", "c"] {
            assert_eq!(groups.join(id, new_member(60_000), &NoTopics).await.error_code, MEMBER_ID_REQUIRED);
        }
        assert_eq!(
            groups.join("d", new_member(60_000), &NoTopics).await.error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        // Existing groups still take joins.
        assert_eq!(groups.join("a", new_member(60_000), &NoTopics).await.error_code, MEMBER_ID_REQUIRED);
        assert_eq!(groups.group_count(), 3);
    }

    #[tokio::test]
    async fn a_group_without_offsets_goes_once_its_unused_member_ids_expire() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path(), config());
        let timers = groups.clone();
        let timer_task = tokio::spawn(async move { timers.run_timers().await });
        for id in ["a", "b", "c"] {
            assert_eq!(groups.join(id, new_member(50), &NoTopics).await.error_code, MEMBER_ID_REQUIRED);
        }
        assert_eq!(groups.list().len(), 3);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(groups.group_count(), 0);
        assert_eq!(
            groups.join("d", new_member(50), &NoTopics).await.error_code,
            MEMBER_ID_REQUIRED,
            "the slots are free again"
        );
        timer_task.abort();
    }

    #[tokio::test]
    async fn expired_offsets_take_their_empty_group_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path(), config());
        let committed = |commit_timestamp_ms| CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms,
        };
        let retention_ms = 7 * 24 * 60 * 60 * 1000;
        groups.offsets.commit("old", vec![("t".into(), 0, committed(0))]).await.unwrap();
        groups
            .offsets
            .commit("recent", vec![("t".into(), 0, committed(retention_ms))])
            .await
            .unwrap();
        assert_eq!(groups.list().len(), 2);
        groups.expire_offsets(retention_ms + 1).await.unwrap();
        assert_eq!(groups.describe("old").state, "Dead");
        assert_eq!(groups.describe("recent").state, "Empty");
        assert_eq!(groups.group_count(), 1);
    }

    fn standalone() -> CommitFrom<'static> {
        CommitFrom {
            member_id: "",
            instance_id: None,
            generation_id: -1,
            api_version: 8,
            transactional: false,
        }
    }

    #[tokio::test]
    async fn standalone_commits_for_new_groups_stop_at_group_max_count() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path(), config());
        for id in ["a", "b", "c"] {
            assert_eq!(groups.validate_commit(id, &standalone()), Ok(()));
            groups
                .offsets
                .commit(
                    id,
                    vec![(
                        "t".into(),
                        0,
                        CommittedOffset {
                            offset: 1,
                            leader_epoch: -1,
                            metadata: None,
                            commit_timestamp_ms: 0,
                        },
                    )],
                )
                .await
                .unwrap();
        }
        assert_eq!(
            groups.validate_commit("d", &standalone()),
            Err(ResponseError::CoordinatorNotAvailable.code())
        );
        assert_eq!(groups.validate_commit("a", &standalone()), Ok(()), "known groups still commit");
    }
}
