//! Kafka's classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, and the membership side of OffsetCommit) as a deterministic
//! state machine, modelled on Kafka's `GroupCoordinator`.
//!
//! Nothing here blocks, reads a clock or does I/O: time comes in as `now_ms`
//! and requests that Kafka parks in its purgatories (a JoinGroup waiting for
//! the rest of the group, a SyncGroup waiting for the leader's assignment)
//! are identified by a `token` the caller allocates. Every method returns the
//! replies it can give now, possibly to tokens parked by earlier calls; the
//! async shell delivers them and calls [`Group::tick`] at
//! [`Group::next_deadline`] to let timeouts fire.
//!
//! Group life cycle (Kafka's names):
//! `Empty` → (a member joins) → `PreparingRebalance` → (everyone rejoined, or
//! the rebalance timeout passed) → `CompletingRebalance` → (the leader's
//! SyncGroup) → `Stable`; joins, leaves and session expiries send the group
//! back to `PreparingRebalance`, and losing the last member makes it `Empty`.
//! `Dead` is terminal (DeleteGroups).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

const NONE: i16 = 0;
const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();
const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
const INVALID_SESSION_TIMEOUT: i16 = ResponseError::InvalidSessionTimeout.code();
const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();
const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
const GROUP_MAX_SIZE_REACHED: i16 = ResponseError::GroupMaxSizeReached.code();
const FENCED_INSTANCE_ID: i16 = ResponseError::FencedInstanceId.code();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's spelling, as reported by DescribeGroups and ListGroups.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinInput {
    /// "" for a new member.
    pub member_id: String,
    /// Static membership (KIP-345).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    /// e.g. "consumer".
    pub protocol_type: String,
    /// (name, metadata) in the member's preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// True for JoinGroup v4+: a new dynamic member first gets
    /// MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutput {
    pub error_code: i16,
    /// -1 on error.
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Non-empty only in the leader's response; metadata is for the chosen
    /// protocol.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone)]
pub struct SyncInput {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member_id, assignment); only the leader sends them.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutput {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join { token: u64, output: JoinOutput },
    Sync { token: u64, output: SyncOutput },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A classic member as a KIP-848 group takes it over (online upgrade).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    /// (name, metadata) in the member's preference order.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// Last join, sync, heartbeat or commit (or answer to a parked request).
    last_heard_ms: i64,
    /// Token of a JoinGroup parked until the join phase completes.
    awaiting_join: Option<u64>,
    /// Token of a SyncGroup parked until the leader's assignment arrives.
    awaiting_sync: Option<u64>,
}

impl Member {
    fn new(now_ms: i64, member_id: String, input: JoinInput) -> Self {
        let mut member = Member {
            member_id,
            group_instance_id: input.group_instance_id.clone(),
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heard_ms: now_ms,
            awaiting_join: None,
            awaiting_sync: None,
        };
        member.update(now_ms, input);
        member
    }

    /// Takes the client-supplied settings of a (re)join.
    fn update(&mut self, now_ms: i64, input: JoinInput) {
        self.client_id = input.client_id;
        self.client_host = input.client_host;
        self.session_timeout_ms = input.session_timeout_ms;
        // JoinGroup v0 has no rebalance timeout; Kafka uses the session
        // timeout for it.
        self.rebalance_timeout_ms = if input.rebalance_timeout_ms > 0 {
            input.rebalance_timeout_ms
        } else {
            input.session_timeout_ms
        };
        self.protocols = input.protocols;
        self.last_heard_ms = now_ms;
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(name, _)| name == p))
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// When the session expires. Members with a parked join or sync are
    /// waiting on the group, not the other way round, so they don't expire
    /// (Kafka bounds those waits with the rebalance timeout instead).
    fn session_deadline(&self) -> Option<i64> {
        if self.awaiting_join.is_some() || self.awaiting_sync.is_some() {
            None
        } else {
            Some(self.last_heard_ms.saturating_add(self.session_timeout_ms))
        }
    }
}

/// Kafka's InitialDelayedJoin: the first rebalance of an empty group waits
/// `initial_rebalance_delay_ms`, and again (up to the rebalance timeout in
/// total) as long as new members keep arriving, so a fleet of consumers
/// starting together lands in one generation.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining_ms: i64,
    new_member_added: bool,
}

/// The join phase of a rebalance (only while PreparingRebalance).
#[derive(Debug, Clone, Copy)]
struct JoinPhase {
    deadline_ms: i64,
    initial: Option<InitialDelay>,
}

fn join_error(token: u64, error_code: i16, member_id: &str) -> Reply {
    Reply::Join {
        token,
        output: JoinOutput {
            error_code,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        },
    }
}

fn sync_error(token: u64, error_code: i16) -> Reply {
    Reply::Sync {
        token,
        output: SyncOutput {
            error_code,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        },
    }
}

#[derive(Debug)]
pub struct Group {
    group_id: String,
    initial_rebalance_delay_ms: i64,
    max_size: usize,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// In the order they joined the group.
    members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, with when they expire.
    pending_members: HashMap<String, i64>,
    join_phase: Option<JoinPhase>,
}

impl Group {
    /// `initial_rebalance_delay_ms`: Kafka's group.initial.rebalance.delay.ms,
    /// applied when the first member joins an Empty group; `max_size`:
    /// group.max.size.
    pub fn new(group_id: String, initial_rebalance_delay_ms: i64, max_size: usize) -> Self {
        Group {
            group_id,
            initial_rebalance_delay_ms,
            max_size,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending_members: HashMap::new(),
            join_phase: None,
        }
    }

    /// A classic group taking over the classic members of a KIP-848 group
    /// (Kafka 4.0's online downgrade, once the last member of the new
    /// protocol has left): Stable at `generation` with each member's last
    /// assignment, then at once preparing a rebalance, which the members
    /// join as classic members do (their heartbeats are told to rejoin).
    pub fn from_members(
        group_id: String,
        initial_rebalance_delay_ms: i64,
        max_size: usize,
        generation: i32,
        protocol_name: String,
        members: Vec<ClassicMember>,
        now_ms: i64,
    ) -> (Self, Vec<Reply>) {
        let mut group = Group::new(group_id, initial_rebalance_delay_ms, max_size);
        group.generation_id = generation;
        group.protocol_type = Some("consumer".to_string());
        group.protocol_name = Some(protocol_name);
        group.members = members
            .into_iter()
            .map(|m| Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: m.protocols,
                assignment: m.assignment,
                last_heard_ms: now_ms,
                awaiting_join: None,
                awaiting_sync: None,
            })
            .collect();
        group.leader = group.members.first().map(|m| m.member_id.clone());
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        let mut replies = Vec::new();
        group.rebalance(now_ms, &mut replies);
        (group, replies)
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Every member with all it joined with, for the conversion to a
    /// KIP-848 group.
    pub fn classic_members(&self) -> Vec<ClassicMember> {
        self.members
            .iter()
            .map(|m| ClassicMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: m.protocols.clone(),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    /// Metadata is each member's metadata for the chosen protocol (empty if
    /// none is chosen yet).
    pub fn members(&self) -> Vec<MemberDescription> {
        let protocol = self.protocol_name.as_deref();
        self.members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(protocol),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    /// No members (ids handed out with MEMBER_ID_REQUIRED don't count).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Nothing in the group is alive: no members, no member ids handed out
    /// with MEMBER_ID_REQUIRED, no join phase (or the group is Dead). Only
    /// committed offsets can make such a group worth keeping, so the shell
    /// drops an idle group that has none.
    pub fn is_idle(&self) -> bool {
        match self.state {
            GroupState::Dead => true,
            GroupState::Empty => self.members.is_empty() && self.pending_members.is_empty() && self.join_phase.is_none(),
            _ => false,
        }
    }

    /// A JoinGroup. It may be answered now (a reply with this token in the
    /// returned Vec) or later, from the Vec of a later call; the Vec may also
    /// answer other parked tokens. `new_member_id` is used only if this join
    /// creates a member.
    pub fn join(&mut self, now_ms: i64, token: u64, input: JoinInput, new_member_id: String) -> Vec<Reply> {
        let mut replies = Vec::new();
        if let Err(code) = self.validate_join(&input) {
            replies.push(join_error(token, code, &input.member_id));
        } else if input.member_id.is_empty() {
            self.join_without_id(now_ms, token, input, new_member_id, &mut replies);
        } else {
            self.join_with_id(now_ms, token, input, &mut replies);
        }
        replies
    }

    /// A SyncGroup: answered now in Stable (or on error), parked in
    /// CompletingRebalance until the leader's assignment arrives.
    pub fn sync(&mut self, now_ms: i64, token: u64, input: SyncInput) -> Vec<Reply> {
        let mut replies = Vec::new();
        let idx = match self.validate_sync(&input) {
            Ok(idx) => idx,
            Err(code) => {
                replies.push(sync_error(token, code));
                return replies;
            }
        };
        self.members[idx].last_heard_ms = now_ms;
        match self.state {
            GroupState::Stable => {
                let assignment = self.members[idx].assignment.clone();
                replies.push(self.sync_success(token, assignment));
            }
            GroupState::CompletingRebalance => {
                let member = &mut self.members[idx];
                if let Some(older) = member.awaiting_sync.replace(token) {
                    replies.push(sync_error(older, REBALANCE_IN_PROGRESS));
                }
                if self.leader.as_deref() == Some(input.member_id.as_str()) {
                    self.apply_assignment(now_ms, input.assignments, &mut replies);
                }
            }
            GroupState::PreparingRebalance => replies.push(sync_error(token, REBALANCE_IN_PROGRESS)),
            // Unreachable: these states have no members to validate.
            GroupState::Empty | GroupState::Dead => replies.push(sync_error(token, UNKNOWN_MEMBER_ID)),
        }
        replies
    }

    /// Returns the error code, and refreshes the member's session.
    pub fn heartbeat(&mut self, now_ms: i64, member_id: &str, group_instance_id: Option<&str>, generation_id: i32) -> i16 {
        let idx = match self.validate_current_member(member_id, group_instance_id) {
            Ok(idx) => idx,
            Err(code) => return code,
        };
        if generation_id != self.generation_id {
            return ILLEGAL_GENERATION;
        }
        self.members[idx].last_heard_ms = now_ms;
        match self.state {
            // Tells the member to rejoin.
            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
            // Clients heartbeat between their join and sync responses too.
            GroupState::CompletingRebalance | GroupState::Stable => NONE,
            GroupState::Empty | GroupState::Dead => UNKNOWN_MEMBER_ID,
        }
    }

    /// One result code per leaving member (in order), plus replies released
    /// by the resulting rebalance. A member is identified by member_id, or by
    /// group_instance_id alone when member_id is "" (KIP-345 batch leave).
    pub fn leave(&mut self, now_ms: i64, members: &[(String, Option<String>)]) -> (Vec<i16>, Vec<Reply>) {
        let mut replies = Vec::new();
        let codes = members
            .iter()
            .map(|(member_id, instance)| self.leave_one(now_ms, member_id, instance.as_deref(), &mut replies))
            .collect();
        (codes, replies)
    }

    /// Time passes: expires pending ids and silent members, and finishes a
    /// join phase whose deadline passed, answering parked requests.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Reply> {
        let mut replies = Vec::new();
        if self.state == GroupState::Dead {
            return replies;
        }
        let pending_before = self.pending_members.len();
        self.pending_members.retain(|_, expires_ms| *expires_ms > now_ms);
        if self.pending_members.len() != pending_before {
            // The join phase may have been waiting only for them.
            self.try_complete_join(now_ms, &mut replies);
        }
        while let Some(idx) = self
            .members
            .iter()
            .position(|m| m.session_deadline().is_some_and(|deadline| deadline <= now_ms))
        {
            self.remove_member_and_rebalance(now_ms, idx, &mut replies);
        }
        if self.state == GroupState::PreparingRebalance && self.join_phase.is_some_and(|phase| phase.deadline_ms <= now_ms) {
            self.join_deadline_passed(now_ms, &mut replies);
        }
        replies
    }

    /// The earliest `now_ms` at which [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        if self.state == GroupState::Dead {
            return None;
        }
        let join_phase = match self.state {
            GroupState::PreparingRebalance => self.join_phase.map(|phase| phase.deadline_ms),
            _ => None,
        };
        join_phase
            .into_iter()
            .chain(self.members.iter().filter_map(Member::session_deadline))
            .chain(self.pending_members.values().copied())
            .min()
    }

    /// Validates an OffsetCommit's membership fields; a valid member commit
    /// refreshes the member's session.
    pub fn validate_commit(
        &mut self,
        now_ms: i64,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if generation_id < 0 && member_id.is_empty() && group_instance_id.is_none() {
            // A client that only uses the group to store offsets: fine
            // unless real members own the partitions.
            return if self.members.is_empty() { Ok(()) } else { Err(UNKNOWN_MEMBER_ID) };
        }
        let idx = self.validate_current_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(ILLEGAL_GENERATION);
        }
        // Like Kafka, commits during PreparingRebalance are allowed: eager
        // consumers commit in onPartitionsRevoked before rejoining, still in
        // the current generation. In CompletingRebalance the member already
        // saw the next generation but not its assignment.
        if self.state == GroupState::CompletingRebalance {
            return Err(REBALANCE_IN_PROGRESS);
        }
        self.members[idx].last_heard_ms = now_ms;
        Ok(())
    }

    /// This broker stops coordinating the group (its offsets partition
    /// moved): every parked JoinGroup and SyncGroup is answered with
    /// `error_code` (NOT_COORDINATOR), so members find the new coordinator.
    pub fn abandon(&mut self, error_code: i16) -> Vec<Reply> {
        let mut replies = Vec::new();
        for member in &mut self.members {
            if let Some(token) = member.awaiting_join.take() {
                replies.push(join_error(token, error_code, &member.member_id));
            }
            if let Some(token) = member.awaiting_sync.take() {
                replies.push(sync_error(token, error_code));
            }
        }
        self.state = GroupState::Dead;
        replies
    }

    /// Marks the group Dead (DeleteGroups): only an Empty group can go.
    pub fn delete(&mut self) -> Result<(), i16> {
        match self.state {
            GroupState::Empty => {
                self.state = GroupState::Dead;
                self.pending_members.clear();
                self.join_phase = None;
                Ok(())
            }
            GroupState::Dead => Err(GROUP_ID_NOT_FOUND),
            _ => Err(NON_EMPTY_GROUP),
        }
    }

    // ---- lookups and validation ----

    fn member_index(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.member_id == member_id)
    }

    fn static_member_index(&self, group_instance_id: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.group_instance_id.as_deref() == Some(group_instance_id))
    }

    /// Kafka's validateCurrentMember: with an instance id, it must map to
    /// this member id (another id means this client was replaced: fenced);
    /// without one, the member id must exist.
    fn validate_current_member(&self, member_id: &str, group_instance_id: Option<&str>) -> Result<usize, i16> {
        match group_instance_id {
            Some(instance) => match self.static_member_index(instance) {
                Some(idx) if self.members[idx].member_id == member_id => Ok(idx),
                Some(_) => Err(FENCED_INSTANCE_ID),
                None => Err(UNKNOWN_MEMBER_ID),
            },
            None => self.member_index(member_id).ok_or(UNKNOWN_MEMBER_ID),
        }
    }

    /// Counts ids handed out with MEMBER_ID_REQUIRED: they are about to join.
    fn is_full(&self) -> bool {
        self.members.len() + self.pending_members.len() >= self.max_size
    }

    fn validate_join(&self, input: &JoinInput) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            // The shell replaces dead groups; the client retries.
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if input.protocol_type.is_empty() || input.protocols.is_empty() {
            return Err(INCONSISTENT_GROUP_PROTOCOL);
        }
        if input.session_timeout_ms <= 0 {
            return Err(INVALID_SESSION_TIMEOUT);
        }
        if self.members.is_empty() {
            return Ok(());
        }
        if self.protocol_type.as_deref() != Some(input.protocol_type.as_str()) {
            return Err(INCONSISTENT_GROUP_PROTOCOL);
        }
        // The joiner's own current protocols are about to be replaced, so
        // only the others must share one of its protocols. (Kafka counts the
        // old ones too, which rejects a lone member switching assignor.)
        let joiner = if input.member_id.is_empty() {
            input
                .group_instance_id
                .as_deref()
                .and_then(|instance| self.static_member_index(instance))
        } else {
            self.member_index(&input.member_id)
        };
        let supported = input.protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .enumerate()
                .filter(|(idx, _)| Some(*idx) != joiner)
                .all(|(_, m)| m.supports(name))
        });
        if supported {
            Ok(())
        } else {
            Err(INCONSISTENT_GROUP_PROTOCOL)
        }
    }

    fn validate_sync(&self, input: &SyncInput) -> Result<usize, i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        let idx = self.validate_current_member(&input.member_id, input.group_instance_id.as_deref())?;
        if input.generation_id != self.generation_id {
            return Err(ILLEGAL_GENERATION);
        }
        let mismatch = |given: &Option<String>, ours: &Option<String>| given.is_some() && given != ours;
        if mismatch(&input.protocol_type, &self.protocol_type) || mismatch(&input.protocol_name, &self.protocol_name) {
            return Err(INCONSISTENT_GROUP_PROTOCOL);
        }
        Ok(idx)
    }

    // ---- join ----

    /// A join with member_id "": a static member coming back, or a new
    /// member.
    fn join_without_id(&mut self, now_ms: i64, token: u64, input: JoinInput, new_member_id: String, replies: &mut Vec<Reply>) {
        if let Some(instance) = input.group_instance_id.as_deref() {
            if let Some(idx) = self.static_member_index(instance) {
                self.replace_static_member(now_ms, token, idx, input, new_member_id, replies);
                return;
            }
        } else if input.require_known_member_id {
            // JoinGroup v4+: hand out the id first, so a client that times
            // out and retries doesn't leave a ghost member behind (KIP-394).
            // Static members skip this: their instance id already names them.
            if self.is_full() {
                replies.push(join_error(token, GROUP_MAX_SIZE_REACHED, ""));
                return;
            }
            let expires_ms = now_ms.saturating_add(input.session_timeout_ms);
            self.pending_members.insert(new_member_id.clone(), expires_ms);
            replies.push(join_error(token, MEMBER_ID_REQUIRED, &new_member_id));
            return;
        }
        if self.is_full() {
            replies.push(join_error(token, GROUP_MAX_SIZE_REACHED, ""));
            return;
        }
        self.add_member_and_rebalance(now_ms, token, input, new_member_id, replies);
    }

    /// A join naming its member id: a pending id completing its join, or a
    /// known member rejoining.
    fn join_with_id(&mut self, now_ms: i64, token: u64, input: JoinInput, replies: &mut Vec<Reply>) {
        let member_id = input.member_id.clone();
        let by_instance = input
            .group_instance_id
            .as_deref()
            .map(|instance| self.static_member_index(instance));
        if let Some(Some(idx)) = by_instance {
            if self.members[idx].member_id != member_id {
                // Another client took over this instance id.
                replies.push(join_error(token, FENCED_INSTANCE_ID, &member_id));
                return;
            }
        }
        if self.pending_members.remove(&member_id).is_some() {
            // No longer pending, so is_full() doesn't count it twice.
            if self.is_full() {
                replies.push(join_error(token, GROUP_MAX_SIZE_REACHED, ""));
                return;
            }
            self.add_member_and_rebalance(now_ms, token, input, member_id, replies);
            return;
        }
        let Some(idx) = self.member_index(&member_id) else {
            // The client resets its id and joins as a new member.
            replies.push(join_error(token, UNKNOWN_MEMBER_ID, &member_id));
            return;
        };
        if matches!(by_instance, Some(None)) {
            // A static member claiming an instance id we don't know.
            replies.push(join_error(token, UNKNOWN_MEMBER_ID, &member_id));
            return;
        }
        let unchanged = self.members[idx].protocols == input.protocols;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        self.members[idx].update(now_ms, input);
        match self.state {
            // Same metadata: the member probably lost its join response, so
            // give it the current generation again.
            GroupState::CompletingRebalance if unchanged => replies.push(Reply::Join {
                token,
                output: self.join_success(&member_id),
            }),
            // A follower with nothing new needs no rebalance; the leader
            // always gets one, as it rejoins to react to changes the member
            // metadata doesn't show (e.g. new partitions).
            GroupState::Stable if unchanged && !is_leader => replies.push(Reply::Join {
                token,
                output: self.join_success(&member_id),
            }),
            GroupState::PreparingRebalance | GroupState::CompletingRebalance | GroupState::Stable => {
                self.park_join(idx, token, replies);
                self.rebalance(now_ms, replies);
            }
            // Unreachable: these states have no members.
            GroupState::Empty | GroupState::Dead => replies.push(join_error(token, UNKNOWN_MEMBER_ID, &member_id)),
        }
    }

    /// A static member restarted (KIP-345): it takes over its old entry under
    /// a new member id, fencing the old id, and keeps its assignment.
    fn replace_static_member(
        &mut self,
        now_ms: i64,
        token: u64,
        idx: usize,
        input: JoinInput,
        new_member_id: String,
        replies: &mut Vec<Reply>,
    ) {
        let member = &mut self.members[idx];
        let old_member_id = std::mem::replace(&mut member.member_id, new_member_id.clone());
        // Whatever the old incarnation still waits for, it won't get.
        if let Some(older) = member.awaiting_join.take() {
            replies.push(join_error(older, FENCED_INSTANCE_ID, &old_member_id));
        }
        if let Some(older) = member.awaiting_sync.take() {
            replies.push(sync_error(older, FENCED_INSTANCE_ID));
        }
        let unchanged = member.protocols == input.protocols;
        member.update(now_ms, input);
        if self.leader.as_deref() == Some(old_member_id.as_str()) {
            self.leader = Some(new_member_id.clone());
        }
        match self.state {
            // The point of static membership: no rebalance. The member
            // syncs with the current generation and gets its old assignment.
            // (If it was the leader it now gets the member list; its
            // SyncGroup's assignments are ignored in Stable.)
            GroupState::Stable if unchanged => replies.push(Reply::Join {
                token,
                output: self.join_success(&new_member_id),
            }),
            // In CompletingRebalance the leader may be assigning to the old
            // id, so start over; in PreparingRebalance just wait.
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::PreparingRebalance => {
                self.park_join(idx, token, replies);
                self.rebalance(now_ms, replies);
            }
            // Unreachable: these states have no members.
            GroupState::Empty | GroupState::Dead => replies.push(join_error(token, UNKNOWN_MEMBER_ID, &new_member_id)),
        }
    }

    fn add_member_and_rebalance(&mut self, now_ms: i64, token: u64, input: JoinInput, member_id: String, replies: &mut Vec<Reply>) {
        if self.members.is_empty() {
            self.protocol_type = Some(input.protocol_type.clone());
        }
        if let Some(initial) = self.join_phase.as_mut().and_then(|phase| phase.initial.as_mut()) {
            initial.new_member_added = true;
        }
        let mut member = Member::new(now_ms, member_id, input);
        member.awaiting_join = Some(token);
        self.members.push(member);
        self.rebalance(now_ms, replies);
    }

    /// Parks a join; a member only has one join outstanding, so an older one
    /// (a client retry) is told to rejoin.
    fn park_join(&mut self, idx: usize, token: u64, replies: &mut Vec<Reply>) {
        let member = &mut self.members[idx];
        if let Some(older) = member.awaiting_join.replace(token) {
            replies.push(join_error(older, REBALANCE_IN_PROGRESS, &member.member_id));
        }
    }

    fn join_success(&self, member_id: &str) -> JoinOutput {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol_name.as_deref();
        let members = if is_leader {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutput {
            error_code: NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    // ---- rebalance ----

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.iter().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
    }

    /// Kafka's maybePrepareRebalance followed by a completion check.
    fn rebalance(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        if matches!(self.state, GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance) {
            self.prepare_rebalance(now_ms, replies);
        }
        self.try_complete_join(now_ms, replies);
    }

    fn prepare_rebalance(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being computed is for a generation that won't
            // happen: send the waiting members back to rejoin.
            for member in &mut self.members {
                member.assignment = Bytes::new();
                if let Some(token) = member.awaiting_sync.take() {
                    member.last_heard_ms = now_ms;
                    replies.push(sync_error(token, REBALANCE_IN_PROGRESS));
                }
            }
        }
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        let delay_ms = self.initial_rebalance_delay_ms;
        self.join_phase = Some(if self.state == GroupState::Empty && delay_ms > 0 {
            JoinPhase {
                deadline_ms: now_ms.saturating_add(delay_ms),
                initial: Some(InitialDelay {
                    remaining_ms: (rebalance_timeout_ms - delay_ms).max(0),
                    new_member_added: false,
                }),
            }
        } else {
            JoinPhase {
                deadline_ms: now_ms.saturating_add(rebalance_timeout_ms),
                initial: None,
            }
        });
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase once every member (and every pending id)
    /// has rejoined; during the initial delay only the timer completes it.
    fn try_complete_join(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let in_initial_delay = self.join_phase.is_some_and(|phase| phase.initial.is_some());
        let ready = self.members.is_empty()
            || (!in_initial_delay && self.pending_members.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some()));
        if ready {
            self.complete_join(now_ms, replies);
        }
    }

    fn join_deadline_passed(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        let Some(phase) = self.join_phase else {
            return;
        };
        if let Some(initial) = phase.initial {
            if initial.new_member_added && initial.remaining_ms > 0 {
                let delay_ms = self.initial_rebalance_delay_ms.min(initial.remaining_ms);
                self.join_phase = Some(JoinPhase {
                    deadline_ms: now_ms.saturating_add(delay_ms),
                    initial: Some(InitialDelay {
                        remaining_ms: initial.remaining_ms - delay_ms,
                        new_member_added: false,
                    }),
                });
                return;
            }
        }
        // Dynamic members that did not rejoin in time are gone. Static ones
        // stay (as in Kafka): a restarting static member keeps its place
        // until its session expires.
        let mut idx = 0;
        while idx < self.members.len() {
            let member = &self.members[idx];
            if member.awaiting_join.is_none() && member.group_instance_id.is_none() {
                self.detach_member(idx, replies);
            } else {
                idx += 1;
            }
        }
        if !self.members.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_none()) {
            // Nobody rejoined, so nobody could lead: wait another round
            // (sessions expiring will empty the group if nobody comes).
            self.join_phase = Some(JoinPhase {
                deadline_ms: now_ms.saturating_add(self.rebalance_timeout_ms()),
                initial: None,
            });
            return;
        }
        self.complete_join(now_ms, replies);
    }

    /// Ends the join phase: next generation, protocol and leader, and every
    /// parked join gets its answer.
    fn complete_join(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        self.join_phase = None;
        // Kafka bumps the generation even when the group ends up empty.
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.state = GroupState::Empty;
            return;
        }
        self.protocol_name = self.select_protocol();
        // The leader computes the assignment from the member list in its
        // join response, so it must be a member that rejoined.
        let leader_rejoined = self
            .leader
            .as_deref()
            .and_then(|leader| self.member_index(leader))
            .is_some_and(|idx| self.members[idx].awaiting_join.is_some());
        if !leader_rejoined {
            self.leader = self.members.iter().find(|m| m.awaiting_join.is_some()).map(|m| m.member_id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let mut joined = Vec::new();
        for member in &mut self.members {
            if let Some(token) = member.awaiting_join.take() {
                // The session restarts once the member has its answer.
                member.last_heard_ms = now_ms;
                joined.push((token, member.member_id.clone()));
            }
        }
        for (token, member_id) in joined {
            replies.push(Reply::Join {
                token,
                output: self.join_success(&member_id),
            });
        }
    }

    /// Kafka's selectProtocol: among the protocols every member supports,
    /// each member votes for its most preferred; most votes wins. Ties go to
    /// the earliest in the first member's preference list (deterministic).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in &self.members {
            if let Some((name, _)) = member.protocols.iter().find(|(name, _)| candidates.contains(&name.as_str())) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for candidate in candidates {
            let count = votes.get(candidate).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((candidate, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    // ---- sync ----

    fn sync_success(&self, token: u64, assignment: Bytes) -> Reply {
        Reply::Sync {
            token,
            output: SyncOutput {
                error_code: NONE,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                assignment,
            },
        }
    }

    /// The leader's SyncGroup: store the assignment (members it left out get
    /// an empty one), go Stable and release every parked sync.
    fn apply_assignment(&mut self, now_ms: i64, assignments: Vec<(String, Bytes)>, replies: &mut Vec<Reply>) {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        self.state = GroupState::Stable;
        let mut synced = Vec::new();
        for member in &mut self.members {
            member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
            if let Some(token) = member.awaiting_sync.take() {
                member.last_heard_ms = now_ms;
                synced.push((token, member.assignment.clone()));
            }
        }
        for (token, assignment) in synced {
            replies.push(self.sync_success(token, assignment));
        }
    }

    // ---- leave and removal ----

    fn leave_one(&mut self, now_ms: i64, member_id: &str, group_instance_id: Option<&str>, replies: &mut Vec<Reply>) -> i16 {
        if self.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if member_id.is_empty() {
            // Administrative removal by instance id (KIP-345).
            let Some(idx) = group_instance_id.and_then(|instance| self.static_member_index(instance)) else {
                return UNKNOWN_MEMBER_ID;
            };
            self.remove_member_and_rebalance(now_ms, idx, replies);
            return NONE;
        }
        if self.pending_members.remove(member_id).is_some() {
            self.try_complete_join(now_ms, replies);
            return NONE;
        }
        match self.validate_current_member(member_id, group_instance_id) {
            Ok(idx) => {
                self.remove_member_and_rebalance(now_ms, idx, replies);
                NONE
            }
            Err(code) => code,
        }
    }

    /// Takes a member out, answering whatever it had parked with
    /// UNKNOWN_MEMBER_ID (so a still-running client joins afresh).
    fn detach_member(&mut self, idx: usize, replies: &mut Vec<Reply>) {
        let member = self.members.remove(idx);
        if let Some(token) = member.awaiting_join {
            replies.push(join_error(token, UNKNOWN_MEMBER_ID, &member.member_id));
        }
        if let Some(token) = member.awaiting_sync {
            replies.push(sync_error(token, UNKNOWN_MEMBER_ID));
        }
        if self.leader.as_deref() == Some(member.member_id.as_str()) {
            // A new one is chosen when the join phase completes.
            self.leader = None;
        }
    }

    fn remove_member_and_rebalance(&mut self, now_ms: i64, idx: usize, replies: &mut Vec<Reply>) {
        self.detach_member(idx, replies);
        if self.state != GroupState::Empty && self.state != GroupState::Dead {
            self.rebalance(now_ms, replies);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: i64 = 10_000;
    const REBALANCE: i64 = 30_000;

    fn input(member_id: &str, protocols: &[(&str, &str)]) -> JoinInput {
        JoinInput {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".to_string(),
            protocols: protocols
                .iter()
                .map(|(name, metadata)| (name.to_string(), Bytes::from(metadata.to_string())))
                .collect(),
            require_known_member_id: false,
        }
    }

    fn range(member_id: &str) -> JoinInput {
        input(member_id, &[("range", "meta")])
    }

    fn static_input(member_id: &str, instance: &str) -> JoinInput {
        JoinInput {
            group_instance_id: Some(instance.to_string()),
            ..range(member_id)
        }
    }

    fn sync_input(member_id: &str, generation_id: i32, assignments: &[(&str, &str)]) -> SyncInput {
        SyncInput {
            member_id: member_id.to_string(),
            group_instance_id: None,
            generation_id,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some("range".to_string()),
            assignments: assignments
                .iter()
                .map(|(member, assignment)| (member.to_string(), Bytes::from(assignment.to_string())))
                .collect(),
        }
    }

    fn join_reply(replies: &[Reply], token: u64) -> Option<JoinOutput> {
        replies.iter().find_map(|reply| match reply {
            Reply::Join { token: t, output } if *t == token => Some(output.clone()),
            _ => None,
        })
    }

    fn sync_reply(replies: &[Reply], token: u64) -> Option<SyncOutput> {
        replies.iter().find_map(|reply| match reply {
            Reply::Sync { token: t, output } if *t == token => Some(output.clone()),
            _ => None,
        })
    }

    fn group() -> Group {
        Group::new("g".to_string(), 0, 100)
    }

    /// Two dynamic members "a" (leader) and "b", synced, Stable in
    /// generation 1, assignments "A" and "B".
    fn stable_pair() -> Group {
        let mut g = group();
        g.join(0, 1, range(""), "a".to_string());
        // "a" alone completed generation 1; "b" joining starts generation 2.
        g.sync(0, 2, sync_input("a", 1, &[("a", "A")]));
        g.join(0, 3, range(""), "b".to_string());
        g.join(0, 4, range("a"), String::new());
        g.sync(0, 5, sync_input("b", 2, &[]));
        g.sync(0, 6, sync_input("a", 2, &[("a", "A"), ("b", "B")]));
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.generation_id(), 2);
        g
    }

    #[test]
    fn state_names_are_kafkas() {
        assert_eq!(GroupState::PreparingRebalance.as_str(), "PreparingRebalance");
        assert_eq!(GroupState::CompletingRebalance.as_str(), "CompletingRebalance");
        assert_eq!(GroupState::Empty.as_str(), "Empty");
        assert_eq!(GroupState::Stable.as_str(), "Stable");
        assert_eq!(GroupState::Dead.as_str(), "Dead");
    }

    #[test]
    fn new_member_gets_member_id_required_first() {
        let mut g = group();
        let first = JoinInput {
            require_known_member_id: true,
            ..range("")
        };
        let out = join_reply(&g.join(0, 1, first, "c-1".to_string()), 1).unwrap();
        assert_eq!(out.error_code, MEMBER_ID_REQUIRED);
        assert_eq!(out.member_id, "c-1");
        assert_eq!(out.generation_id, -1);
        assert!(g.is_empty());
        assert_eq!(g.state(), GroupState::Empty);

        let again = JoinInput {
            require_known_member_id: true,
            ..range("c-1")
        };
        let out = join_reply(&g.join(1, 2, again, "unused".to_string()), 2).unwrap();
        assert_eq!(out.error_code, NONE);
        assert_eq!(out.member_id, "c-1");
        assert_eq!(out.leader, "c-1");
        assert_eq!(out.generation_id, 1);
        assert_eq!(g.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn group_is_idle_only_once_pending_ids_and_members_are_gone() {
        let mut g = group();
        assert!(g.is_idle(), "a new group");
        let first = JoinInput {
            require_known_member_id: true,
            ..range("")
        };
        let session_timeout_ms = first.session_timeout_ms;
        g.join(0, 1, first, "c-1".to_string());
        assert!(!g.is_idle(), "an id handed out with MEMBER_ID_REQUIRED may come back");
        g.tick(session_timeout_ms + 1);
        assert!(g.is_idle(), "the id expired unused");

        let mut g = stable_pair();
        assert!(!g.is_idle());
        let (_, _) = g.leave(0, &[("a".to_string(), None), ("b".to_string(), None)]);
        assert_eq!(g.state(), GroupState::Empty);
        assert!(g.is_idle(), "the last member left");
    }

    #[test]
    fn two_members_join_and_leader_gets_member_list() {
        let mut g = Group::new("g".to_string(), 3_000, 100);
        assert!(g.join(0, 1, input("", &[("range", "ma")]), "a".to_string()).is_empty());
        assert!(g.join(100, 2, input("", &[("range", "mb")]), "b".to_string()).is_empty());
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        // The initial delay was extended because "b" arrived during it.
        assert!(g.tick(3_000).is_empty());
        let replies = g.tick(6_000);
        let leader = join_reply(&replies, 1).unwrap();
        let follower = join_reply(&replies, 2).unwrap();
        assert_eq!(leader.error_code, NONE);
        assert_eq!(leader.generation_id, 1);
        assert_eq!(leader.leader, "a");
        assert_eq!(leader.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(leader.protocol_name.as_deref(), Some("range"));
        assert_eq!(
            leader.members,
            vec![
                JoinedMember {
                    member_id: "a".into(),
                    group_instance_id: None,
                    metadata: Bytes::from("ma")
                },
                JoinedMember {
                    member_id: "b".into(),
                    group_instance_id: None,
                    metadata: Bytes::from("mb")
                },
            ]
        );
        assert_eq!(follower.leader, "a");
        assert_eq!(follower.member_id, "b");
        assert!(follower.members.is_empty());
        assert_eq!(g.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn initial_delay_completes_alone_when_nobody_else_joins() {
        let mut g = Group::new("g".to_string(), 3_000, 100);
        assert!(g.join(0, 1, range(""), "a".to_string()).is_empty());
        assert_eq!(g.next_deadline(), Some(3_000));
        assert!(g.tick(2_999).is_empty());
        let out = join_reply(&g.tick(3_000), 1).unwrap();
        assert_eq!((out.error_code, out.generation_id), (NONE, 1));
    }

    #[test]
    fn sync_waits_for_leader_assignment() {
        let mut g = group();
        g.join(0, 1, range(""), "a".to_string());
        g.sync(0, 2, sync_input("a", 1, &[("a", "A")]));
        g.join(0, 3, range(""), "b".to_string());
        let replies = g.join(0, 4, range("a"), String::new());
        assert_eq!(join_reply(&replies, 3).unwrap().generation_id, 2);

        assert!(g.sync(1, 5, sync_input("b", 2, &[])).is_empty(), "follower waits for the leader");
        let replies = g.sync(2, 6, sync_input("a", 2, &[("a", "A"), ("b", "B")]));
        assert_eq!(sync_reply(&replies, 5).unwrap().assignment, Bytes::from("B"));
        let leader = sync_reply(&replies, 6).unwrap();
        assert_eq!(leader.error_code, NONE);
        assert_eq!(leader.assignment, Bytes::from("A"));
        assert_eq!(leader.protocol_name.as_deref(), Some("range"));
        assert_eq!(g.state(), GroupState::Stable);

        // In Stable a sync is answered at once with the stored assignment.
        let replies = g.sync(3, 7, sync_input("b", 2, &[]));
        assert_eq!(sync_reply(&replies, 7).unwrap().assignment, Bytes::from("B"));
    }

    #[test]
    fn members_missing_from_leader_assignment_get_empty_assignment() {
        let mut g = group();
        g.join(0, 1, range(""), "a".to_string());
        g.sync(0, 2, sync_input("a", 1, &[]));
        g.join(0, 3, range(""), "b".to_string());
        g.join(0, 4, range("a"), String::new());
        g.sync(0, 5, sync_input("b", 2, &[]));
        let replies = g.sync(0, 6, sync_input("a", 2, &[("a", "A")]));
        assert_eq!(sync_reply(&replies, 5).unwrap().assignment, Bytes::new());
        let described = g.members();
        assert_eq!(described[1].assignment, Bytes::new());
        assert_eq!(described[0].assignment, Bytes::from("A"));
    }

    #[test]
    fn sync_errors_for_unknown_member_wrong_generation_protocol_and_rebalance() {
        let mut g = stable_pair();
        let code = |replies: Vec<Reply>| sync_reply(&replies, 9).unwrap().error_code;
        assert_eq!(code(g.sync(0, 9, sync_input("x", 2, &[]))), UNKNOWN_MEMBER_ID);
        assert_eq!(code(g.sync(0, 9, sync_input("b", 1, &[]))), ILLEGAL_GENERATION);
        let other_protocol = SyncInput {
            protocol_name: Some("roundrobin".into()),
            ..sync_input("b", 2, &[])
        };
        assert_eq!(code(g.sync(0, 9, other_protocol)), INCONSISTENT_GROUP_PROTOCOL);
        let no_protocol = SyncInput {
            protocol_type: None,
            protocol_name: None,
            ..sync_input("b", 2, &[])
        };
        assert_eq!(code(g.sync(0, 9, no_protocol)), NONE);
        g.join(0, 10, range("a"), String::new());
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(code(g.sync(0, 9, sync_input("b", 2, &[]))), REBALANCE_IN_PROGRESS);
    }

    #[test]
    fn protocol_chosen_is_common_to_all_members() {
        let mut g = group();
        g.join(0, 1, input("", &[("roundrobin", "r"), ("range", "a")]), "a".to_string());
        assert_eq!(g.protocol_name(), Some("roundrobin"), "alone, a gets its first choice");
        g.sync(
            0,
            2,
            SyncInput {
                protocol_name: None,
                ..sync_input("a", 1, &[])
            },
        );
        assert_eq!(g.state(), GroupState::Stable);
        g.join(0, 3, input("", &[("sticky", "s"), ("range", "b")]), "b".to_string());
        let replies = g.join(0, 4, input("a", &[("roundrobin", "r"), ("range", "a")]), String::new());
        let leader = join_reply(&replies, 4).unwrap();
        assert_eq!(leader.protocol_name.as_deref(), Some("range"));
        let metadata: Vec<Bytes> = leader.members.iter().map(|m| m.metadata.clone()).collect();
        assert_eq!(metadata, vec![Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(g.members()[1].metadata, Bytes::from("b"));
    }

    #[test]
    fn protocol_with_most_first_choice_votes_wins() {
        let mut g = Group::new("g".to_string(), 1_000, 100);
        g.join(0, 1, input("", &[("range", ""), ("sticky", "")]), "a".to_string());
        g.join(0, 2, input("", &[("sticky", ""), ("range", "")]), "b".to_string());
        g.join(0, 3, input("", &[("sticky", ""), ("range", "")]), "c".to_string());
        g.tick(1_000);
        let replies = g.tick(2_000);
        assert_eq!(join_reply(&replies, 1).unwrap().protocol_name.as_deref(), Some("sticky"));
        assert_eq!(g.protocol_name(), Some("sticky"));
    }

    #[test]
    fn incompatible_joins_are_inconsistent_group_protocol() {
        let mut g = group();
        let code = |replies: Vec<Reply>| join_reply(&replies, 9).unwrap().error_code;
        assert_eq!(code(g.join(0, 9, input("", &[]), "x".into())), INCONSISTENT_GROUP_PROTOCOL);
        let untyped = JoinInput {
            protocol_type: String::new(),
            ..range("")
        };
        assert_eq!(code(g.join(0, 9, untyped, "x".into())), INCONSISTENT_GROUP_PROTOCOL);
        g.join(0, 1, range(""), "a".to_string());
        let connect = JoinInput {
            protocol_type: "connect".into(),
            ..range("")
        };
        assert_eq!(code(g.join(0, 9, connect, "x".into())), INCONSISTENT_GROUP_PROTOCOL);
        let disjoint = input("", &[("roundrobin", "")]);
        assert_eq!(code(g.join(0, 9, disjoint, "x".into())), INCONSISTENT_GROUP_PROTOCOL);
        // A lone member may switch protocols: only the others must agree.
        let switched = input("a", &[("roundrobin", "")]);
        assert_eq!(code(g.join(0, 9, switched, String::new())), NONE);
        assert_eq!(g.protocol_name(), Some("roundrobin"));
    }

    #[test]
    fn invalid_session_timeout_is_rejected() {
        let mut g = group();
        let bad = JoinInput {
            session_timeout_ms: 0,
            ..range("")
        };
        let out = join_reply(&g.join(0, 1, bad, "a".into()), 1).unwrap();
        assert_eq!(out.error_code, INVALID_SESSION_TIMEOUT);
    }

    #[test]
    fn unknown_member_id_join_is_rejected() {
        let mut g = group();
        let out = join_reply(&g.join(0, 1, range("ghost"), "a".into()), 1).unwrap();
        assert_eq!(out.error_code, UNKNOWN_MEMBER_ID);
        assert_eq!(out.member_id, "ghost");
        assert!(g.is_empty());
    }

    #[test]
    fn group_max_size_rejects_new_members() {
        let mut g = Group::new("g".to_string(), 0, 2);
        g.join(0, 1, range(""), "a".to_string());
        let pending = JoinInput {
            require_known_member_id: true,
            ..range("")
        };
        assert_eq!(
            join_reply(&g.join(0, 2, pending.clone(), "b".into()), 2).unwrap().error_code,
            MEMBER_ID_REQUIRED
        );
        // "b" holds the second slot while pending.
        let out = join_reply(&g.join(0, 3, pending, "c".into()), 3).unwrap();
        assert_eq!(out.error_code, GROUP_MAX_SIZE_REACHED);
        let out = join_reply(&g.join(0, 4, range(""), "d".into()), 4).unwrap();
        assert_eq!(out.error_code, GROUP_MAX_SIZE_REACHED);
        // The pending member itself still gets in.
        g.join(0, 5, range("b"), String::new());
        assert_eq!(g.members().len(), 2);
    }

    #[test]
    fn follower_rejoin_with_same_metadata_in_stable_keeps_generation() {
        let mut g = stable_pair();
        let out = join_reply(&g.join(5, 1, range("b"), String::new()), 1).unwrap();
        assert_eq!((out.error_code, out.generation_id, out.leader.as_str()), (NONE, 2, "a"));
        assert!(out.members.is_empty());
        assert_eq!(g.state(), GroupState::Stable);
    }

    #[test]
    fn leader_rejoin_or_changed_metadata_in_stable_rebalances() {
        let mut g = stable_pair();
        assert!(g.join(5, 1, range("a"), String::new()).is_empty());
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let replies = g.join(6, 2, range("b"), String::new());
        assert_eq!(join_reply(&replies, 1).unwrap().generation_id, 3);
        assert_eq!(join_reply(&replies, 2).unwrap().generation_id, 3);

        let mut g = stable_pair();
        assert!(g.join(5, 1, input("b", &[("range", "new topics")]), String::new()).is_empty());
        assert_eq!(g.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn rejoin_with_same_metadata_in_completing_rebalance_gets_current_generation() {
        let mut g = group();
        g.join(0, 1, range(""), "a".to_string());
        let out = join_reply(&g.join(1, 2, range("a"), String::new()), 2).unwrap();
        assert_eq!(out.generation_id, 1);
        assert_eq!(out.members.len(), 1, "the leader gets the member list again");
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        assert_eq!(g.generation_id(), 1);
    }

    #[test]
    fn rebalance_answers_held_syncs_with_rebalance_in_progress() {
        let mut g = group();
        g.join(0, 1, range(""), "a".to_string());
        g.sync(0, 2, sync_input("a", 1, &[]));
        g.join(0, 3, range(""), "b".to_string());
        g.join(0, 4, range("a"), String::new());
        assert!(g.sync(0, 5, sync_input("b", 2, &[])).is_empty());
        // A third member arrives before the leader synced.
        let replies = g.join(1, 6, range(""), "c".to_string());
        assert_eq!(sync_reply(&replies, 5).unwrap().error_code, REBALANCE_IN_PROGRESS);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn duplicate_join_answers_older_request_with_rebalance_in_progress() {
        let mut g = stable_pair();
        assert!(g.join(1, 1, range("a"), String::new()).is_empty());
        let replies = g.join(2, 2, range("a"), String::new());
        assert_eq!(join_reply(&replies, 1).unwrap().error_code, REBALANCE_IN_PROGRESS);
        assert!(join_reply(&replies, 2).is_none());
        let replies = g.join(3, 3, range("b"), String::new());
        assert_eq!(join_reply(&replies, 2).unwrap().generation_id, 3);
    }

    #[test]
    fn static_member_rejoin_keeps_assignment_without_rebalance() {
        let mut g = group();
        g.join(0, 1, static_input("", "host-a"), "a1".to_string());
        g.sync(0, 2, sync_input("a1", 1, &[("a1", "A")]));
        g.join(0, 3, static_input("", "host-b"), "b1".to_string());
        g.join(0, 4, static_input("a1", "host-a"), String::new());
        g.sync(0, 5, sync_input("b1", 2, &[]));
        g.sync(0, 6, sync_input("a1", 2, &[("a1", "A"), ("b1", "B")]));

        // host-b restarts: a new member id, no rebalance, same assignment.
        let out = join_reply(&g.join(100, 7, static_input("", "host-b"), "b2".to_string()), 7).unwrap();
        assert_eq!((out.error_code, out.generation_id, out.member_id.as_str()), (NONE, 2, "b2"));
        assert_eq!(out.leader, "a1");
        assert!(out.members.is_empty());
        assert_eq!(g.state(), GroupState::Stable);
        let sync = SyncInput {
            group_instance_id: Some("host-b".into()),
            ..sync_input("b2", 2, &[])
        };
        assert_eq!(sync_reply(&g.sync(101, 8, sync), 8).unwrap().assignment, Bytes::from("B"));
    }

    #[test]
    fn static_leader_rejoin_becomes_leader_and_gets_member_list() {
        let mut g = group();
        g.join(0, 1, static_input("", "host-a"), "a1".to_string());
        g.sync(0, 2, sync_input("a1", 1, &[("a1", "A")]));
        let out = join_reply(&g.join(5, 3, static_input("", "host-a"), "a2".to_string()), 3).unwrap();
        assert_eq!(out.leader, "a2");
        assert_eq!(out.members.len(), 1);
        assert_eq!(out.members[0].group_instance_id.as_deref(), Some("host-a"));
        assert_eq!(g.leader(), Some("a2"));
        // Its assignment in a Stable group is not replaced by a new one.
        let sync = sync_input("a2", 1, &[("a2", "other")]);
        assert_eq!(sync_reply(&g.sync(6, 4, sync), 4).unwrap().assignment, Bytes::from("A"));
    }

    #[test]
    fn replaced_static_member_id_is_fenced() {
        let mut g = group();
        g.join(0, 1, static_input("", "host-a"), "a1".to_string());
        g.sync(0, 2, sync_input("a1", 1, &[]));
        g.join(1, 3, static_input("", "host-a"), "a2".to_string());
        assert_eq!(g.heartbeat(2, "a1", Some("host-a"), 1), FENCED_INSTANCE_ID);
        assert_eq!(g.heartbeat(2, "a1", None, 1), UNKNOWN_MEMBER_ID);
        assert_eq!(g.heartbeat(2, "a2", Some("host-a"), 1), NONE);
        let out = join_reply(&g.join(2, 4, static_input("a1", "host-a"), String::new()), 4).unwrap();
        assert_eq!(out.error_code, FENCED_INSTANCE_ID);
        let sync = SyncInput {
            group_instance_id: Some("host-a".into()),
            ..sync_input("a1", 1, &[])
        };
        assert_eq!(sync_reply(&g.sync(2, 5, sync), 5).unwrap().error_code, FENCED_INSTANCE_ID);
        assert_eq!(g.validate_commit(2, "a1", Some("host-a"), 1), Err(FENCED_INSTANCE_ID));
        assert_eq!(g.leave(2, &[("a1".into(), Some("host-a".into()))]).0, vec![FENCED_INSTANCE_ID]);
    }

    #[test]
    fn static_member_with_changed_protocols_triggers_rebalance() {
        let mut g = group();
        g.join(0, 1, static_input("", "host-a"), "a1".to_string());
        g.sync(0, 2, sync_input("a1", 1, &[]));
        let changed = JoinInput {
            protocols: vec![("range".into(), Bytes::from("v2"))],
            ..static_input("", "host-a")
        };
        let out = join_reply(&g.join(1, 3, changed, "a2".to_string()), 3).unwrap();
        assert_eq!((out.generation_id, out.member_id.as_str()), (2, "a2"));
        assert_eq!(g.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn static_replacement_fences_parked_join_of_old_id() {
        let mut g = stable_pair();
        g.join(0, 1, static_input("", "host-c"), "c1".to_string());
        g.join(0, 2, range("a"), String::new());
        // "b" hasn't rejoined yet; host-c restarts while its join is parked.
        let replies = g.join(1, 3, static_input("", "host-c"), "c2".to_string());
        assert_eq!(join_reply(&replies, 1).unwrap().error_code, FENCED_INSTANCE_ID);
        let replies = g.join(2, 4, range("b"), String::new());
        let out = join_reply(&replies, 3).unwrap();
        assert_eq!((out.error_code, out.member_id.as_str()), (NONE, "c2"));
    }

    #[test]
    fn heartbeat_error_codes_follow_state() {
        let mut g = stable_pair();
        assert_eq!(g.heartbeat(1, "b", None, 2), NONE);
        assert_eq!(g.heartbeat(1, "x", None, 2), UNKNOWN_MEMBER_ID);
        assert_eq!(g.heartbeat(1, "b", None, 1), ILLEGAL_GENERATION);
        assert_eq!(g.heartbeat(1, "b", Some("unknown-instance"), 2), UNKNOWN_MEMBER_ID);
        g.join(2, 1, range("a"), String::new());
        assert_eq!(g.heartbeat(3, "b", None, 2), REBALANCE_IN_PROGRESS);
        // The REBALANCE_IN_PROGRESS heartbeat refreshed b's session.
        assert_eq!(g.next_deadline(), Some(3 + SESSION).min(Some(2 + REBALANCE)));
        g.join(4, 2, range("b"), String::new());
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        assert_eq!(g.heartbeat(5, "b", None, 3), NONE);

        let mut empty = group();
        assert_eq!(empty.heartbeat(0, "b", None, 0), UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn leave_of_last_member_empties_group() {
        let mut g = group();
        g.join(0, 1, range(""), "a".to_string());
        g.sync(0, 2, sync_input("a", 1, &[("a", "A")]));
        let (codes, replies) = g.leave(1, &[("a".into(), None)]);
        assert_eq!(codes, vec![NONE]);
        assert!(replies.is_empty());
        assert_eq!(g.state(), GroupState::Empty);
        assert!(g.is_empty());
        assert_eq!(g.generation_id(), 2, "Kafka bumps the generation on the way to Empty");
        assert_eq!(g.leader(), None);
        assert_eq!(g.protocol_name(), None);
        assert_eq!(g.next_deadline(), None);
    }

    #[test]
    fn leave_rebalances_and_can_complete_parked_joins() {
        let mut g = stable_pair();
        assert!(g.join(1, 1, range("a"), String::new()).is_empty());
        // "b" leaves instead of rejoining: "a" is the only member, all joined.
        let (codes, replies) = g.leave(2, &[("b".into(), None)]);
        assert_eq!(codes, vec![NONE]);
        let out = join_reply(&replies, 1).unwrap();
        assert_eq!((out.generation_id, out.members.len()), (3, 1));

        let mut g = stable_pair();
        let (codes, _) = g.leave(1, &[("b".into(), None)]);
        assert_eq!(codes, vec![NONE]);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(2, "a", None, 2), REBALANCE_IN_PROGRESS);
    }

    #[test]
    fn leave_by_instance_id_and_unknown_members() {
        let mut g = group();
        g.join(0, 1, static_input("", "host-a"), "a1".to_string());
        let pending = JoinInput {
            require_known_member_id: true,
            ..range("")
        };
        g.join(0, 2, pending, "p".to_string());
        let (codes, _) = g.leave(
            1,
            &[
                ("".into(), Some("host-a".into())),
                ("ghost".into(), None),
                ("".into(), None),
                ("p".into(), None),
            ],
        );
        assert_eq!(codes, vec![NONE, UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID, NONE]);
        assert_eq!(g.state(), GroupState::Empty);
        assert_eq!(g.next_deadline(), None, "the pending id is gone too");
    }

    #[test]
    fn leave_answers_the_leavers_parked_join() {
        let mut g = stable_pair();
        g.join(1, 1, range("a"), String::new());
        g.join(1, 2, range(""), "c".to_string());
        let (_, replies) = g.leave(2, &[("c".into(), None)]);
        assert_eq!(join_reply(&replies, 2).unwrap().error_code, UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn session_timeout_removes_member_and_rebalances() {
        let mut g = stable_pair();
        assert_eq!(g.next_deadline(), Some(SESSION));
        g.heartbeat(5_000, "a", None, 2);
        assert!(g.tick(SESSION - 1).is_empty());
        assert_eq!(g.tick(SESSION), vec![]);
        assert_eq!(g.members().len(), 1, "b expired");
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let out = join_reply(&g.join(SESSION + 1, 1, range("a"), String::new()), 1).unwrap();
        assert_eq!((out.generation_id, out.members.len()), (3, 1));
    }

    #[test]
    fn parked_members_do_not_expire_but_expire_after_their_answer() {
        let mut g = stable_pair();
        g.join(1_000, 1, range("a"), String::new());
        g.heartbeat(9_000, "b", None, 2);
        // "a" waits in join well past its session timeout: still there.
        assert!(g.tick(15_000).is_empty());
        assert_eq!(g.members().len(), 2);
        let replies = g.join(15_000, 2, range("b"), String::new());
        assert_eq!(join_reply(&replies, 1).unwrap().generation_id, 3);
        // Sessions restart from the join response.
        assert_eq!(g.next_deadline(), Some(15_000 + SESSION));
        g.tick(15_000 + SESSION);
        assert_eq!(g.state(), GroupState::Empty);
    }

    #[test]
    fn pending_member_expires_after_session_timeout() {
        let mut g = stable_pair();
        g.heartbeat(1_000, "a", None, 2);
        g.heartbeat(1_000, "b", None, 2);
        let pending = JoinInput {
            require_known_member_id: true,
            ..range("")
        };
        g.join(500, 1, pending, "p".to_string());
        // The leader rejoins, then "b": the join phase still waits for "p".
        g.join(600, 2, range("a"), String::new());
        assert!(g.join(700, 3, range("b"), String::new()).is_empty());
        assert_eq!(g.next_deadline(), Some(500 + SESSION));
        let replies = g.tick(500 + SESSION);
        assert_eq!(join_reply(&replies, 2).unwrap().generation_id, 3);
        let out = join_reply(&g.join(600 + SESSION, 4, range("p"), String::new()), 4).unwrap();
        assert_eq!(out.error_code, UNKNOWN_MEMBER_ID, "its id was forgotten");
    }

    #[test]
    fn rebalance_timeout_drops_members_that_did_not_rejoin() {
        let mut g = stable_pair();
        g.join(1_000, 2, input("b", &[("range", "changed")]), String::new());
        // "a" (the leader) keeps heartbeating but never rejoins.
        for t in (2_000..31_000).step_by(5_000) {
            g.heartbeat(t, "a", None, 2);
        }
        assert_eq!(g.next_deadline(), Some(1_000 + REBALANCE));
        let replies = g.tick(1_000 + REBALANCE);
        let out = join_reply(&replies, 2).unwrap();
        assert_eq!((out.generation_id, out.leader.as_str(), out.members.len()), (3, "b", 1));
        assert_eq!(g.members().len(), 1);
        assert_eq!(g.heartbeat(31_001, "a", None, 3), UNKNOWN_MEMBER_ID);
    }

    /// Static "a" and dynamic "b", both with 100 s sessions, Stable in
    /// generation 2 at time 0.
    fn stable_static_and_dynamic() -> Group {
        let long = |join: JoinInput| JoinInput {
            session_timeout_ms: 100_000,
            ..join
        };
        let mut g = group();
        g.join(0, 1, long(static_input("", "host-a")), "a".to_string());
        g.sync(0, 2, sync_input("a", 1, &[]));
        g.join(0, 3, long(range("")), "b".to_string());
        g.join(0, 4, long(static_input("a", "host-a")), String::new());
        g.sync(0, 5, sync_input("b", 2, &[]));
        g.sync(0, 6, sync_input("a", 2, &[]));
        assert_eq!(g.state(), GroupState::Stable);
        g
    }

    #[test]
    fn static_member_that_did_not_rejoin_is_kept_until_its_session_expires() {
        let mut g = stable_static_and_dynamic();
        let changed = JoinInput {
            session_timeout_ms: 100_000,
            ..input("b", &[("range", "v2")])
        };
        g.join(1_000, 7, changed, String::new());
        let replies = g.tick(1_000 + REBALANCE);
        let out = join_reply(&replies, 7).unwrap();
        assert_eq!(
            (out.generation_id, out.leader.as_str()),
            (3, "b"),
            "the leader must be a member that rejoined"
        );
        assert_eq!(out.members.len(), 2, "the absent static member is still assigned");
        assert!(g.tick(99_999).is_empty());
        assert_eq!(g.members().len(), 2);
        g.tick(100_000);
        assert_eq!(g.members().len(), 1, "a's session (last heard at 0) expired");
        assert_eq!(g.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn join_phase_is_extended_when_nobody_rejoined() {
        let mut g = stable_static_and_dynamic();
        let (codes, _) = g.leave(1_000, &[("b".into(), None)]);
        assert_eq!(codes, vec![NONE]);
        // Only static "a" remains and it doesn't rejoin: there is no one to
        // lead a new generation, so the group waits another round.
        assert!(g.tick(1_000 + REBALANCE).is_empty());
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.generation_id(), 2);
        assert_eq!(g.next_deadline(), Some(1_000 + 2 * REBALANCE));
        let out = join_reply(&g.join(40_000, 1, static_input("a", "host-a"), String::new()), 1).unwrap();
        assert_eq!((out.error_code, out.generation_id), (NONE, 3));
    }

    #[test]
    fn stale_generation_commit_is_rejected() {
        let mut g = stable_pair();
        assert_eq!(g.validate_commit(1, "b", None, 1), Err(ILLEGAL_GENERATION));
        assert_eq!(g.validate_commit(1, "x", None, 2), Err(UNKNOWN_MEMBER_ID));
        assert_eq!(
            g.validate_commit(1, "", None, -1),
            Err(UNKNOWN_MEMBER_ID),
            "members own the offsets"
        );
        assert_eq!(g.validate_commit(1, "b", None, 2), Ok(()));
        // A valid commit refreshes the session.
        g.heartbeat(1, "a", None, 2);
        assert_eq!(g.next_deadline(), Some(1 + SESSION));
    }

    #[test]
    fn commit_during_rebalance_follows_kafka() {
        let mut g = stable_pair();
        g.join(1, 1, range("a"), String::new());
        // PreparingRebalance: the current generation may still commit.
        assert_eq!(g.validate_commit(2, "b", None, 2), Ok(()));
        g.join(3, 2, range("b"), String::new());
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        assert_eq!(g.validate_commit(4, "b", None, 3), Err(REBALANCE_IN_PROGRESS));
    }

    #[test]
    fn simple_commit_is_allowed_on_a_memberless_group() {
        let mut g = group();
        assert_eq!(g.validate_commit(0, "", None, -1), Ok(()));
        assert_eq!(g.validate_commit(0, "a", None, -1), Err(UNKNOWN_MEMBER_ID));
    }

    #[test]
    fn delete_requires_an_empty_group_and_dead_groups_refuse_joins() {
        let mut g = stable_pair();
        assert_eq!(g.delete(), Err(NON_EMPTY_GROUP));
        g.leave(1, &[("a".into(), None), ("b".into(), None)]);
        assert_eq!(g.delete(), Ok(()));
        assert_eq!(g.state(), GroupState::Dead);
        assert_eq!(g.delete(), Err(GROUP_ID_NOT_FOUND));
        let out = join_reply(&g.join(2, 1, range(""), "c".into()), 1).unwrap();
        assert_eq!(out.error_code, COORDINATOR_NOT_AVAILABLE);
        assert_eq!(g.validate_commit(2, "", None, -1), Err(COORDINATOR_NOT_AVAILABLE));
        assert_eq!(g.next_deadline(), None);
        assert!(g.tick(1_000_000).is_empty());
    }

    #[test]
    fn describe_reports_members_and_chosen_protocol_metadata() {
        let g = stable_pair();
        assert_eq!(g.group_id(), "g");
        assert_eq!(g.protocol_type(), Some("consumer"));
        assert_eq!(g.leader(), Some("a"));
        let described = g.members();
        assert_eq!(described.len(), 2);
        assert_eq!(
            described[1],
            MemberDescription {
                member_id: "b".into(),
                group_instance_id: None,
                client_id: "client".into(),
                client_host: "/127.0.0.1".into(),
                metadata: Bytes::from("meta"),
                assignment: Bytes::from("B"),
            }
        );
    }
}
