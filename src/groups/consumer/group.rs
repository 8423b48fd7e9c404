//! One KIP-848 consumer group, modelled on Kafka's `ConsumerGroup` and the
//! heartbeat path of its `GroupMetadataManager`. Pure: time and the topics
//! that exist come in as arguments.
//!
//! Every heartbeat does three steps:
//! 1. update the member; a new member, a changed subscription or assignor,
//!    or a change in the subscribed topics' partitions bumps the group
//!    epoch;
//! 2. if the group epoch is past the target assignment's, the assignor
//!    computes a new target for every member;
//! 3. the member moves toward its target (`reconcile`): revoke first, then
//!    take partitions no one else holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::assignor::{self, AssignorName, MemberSpec};
use super::reconcile::{self, MemberState, Progress};
use super::Assignment;

/// Longest subscription regex accepted, and the compiled size allowed: a
/// client must not make the coordinator build a huge automaton.
pub const REGEX_MAX_LEN: usize = 1_000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Most topic names one member may subscribe to: each member's list is kept
/// for as long as it is in the group, so its size must not be the client's
/// to choose up to the request size (Kafka has no such bound).
pub const SUBSCRIBED_TOPICS_MAX: usize = 10_000;

pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// The topics that exist, as the heartbeat sees them.
pub trait TopicCatalog: Sync {
    /// Topic id and partition count.
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic name (for regex subscriptions).
    fn names(&self) -> Vec<String>;
}

#[derive(Debug, Clone, Default)]
pub struct HeartbeatInput {
    pub api_version: i16,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// None: unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// None: unchanged; "" drops the regex.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns; None: not said.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatOutput {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed or the member sent a full request.
    pub assignment: Option<Assignment>,
}

/// An error with Kafka's code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code: error.code(),
            message: message.into(),
        }
    }
}

fn invalid(message: &str) -> Refusal {
    Refusal::new(ResponseError::InvalidRequest, message)
}

/// Kafka's request checks (`throwIfConsumerGroupHeartbeatRequestIsInvalid`
/// of Kafka 4.0, where v1 members make their own ids).
pub fn validate(group_id: &str, input: &HeartbeatInput) -> Result<(), Refusal> {
    let empty = |s: &Option<String>| s.as_deref().is_some_and(|s| s.trim().is_empty());
    if group_id.trim().is_empty() {
        return Err(invalid("GroupId can't be empty."));
    }
    if empty(&input.instance_id) {
        return Err(invalid("InstanceId can't be empty."));
    }
    if empty(&input.rack_id) {
        return Err(invalid("RackId can't be empty."));
    }
    if input.api_version >= 1 && input.member_id.trim().is_empty() {
        return Err(invalid("MemberId can't be empty."));
    }
    match input.member_epoch {
        e if e > 0 || e == LEAVE_EPOCH => {
            if input.member_id.trim().is_empty() {
                return Err(invalid("MemberId can't be empty."));
            }
        }
        0 => {
            if input.rebalance_timeout_ms == -1 {
                return Err(invalid("RebalanceTimeoutMs must be provided in first request."));
            }
            if input.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return Err(invalid("TopicPartitions must be empty when (re-)joining."));
            }
            let names = input.subscribed_topic_names.as_ref().is_some_and(|n| !n.is_empty());
            let regex = input.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty());
            if !names && !regex {
                return Err(invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                ));
            }
        }
        STATIC_LEAVE_EPOCH => {
            if input.member_id.trim().is_empty() {
                return Err(invalid("MemberId can't be empty."));
            }
            if input.instance_id.is_none() {
                return Err(invalid("InstanceId can't be null."));
            }
        }
        _ => return Err(invalid("MemberEpoch is invalid.")),
    }
    if input
        .subscribed_topic_names
        .as_ref()
        .is_some_and(|n| n.len() > SUBSCRIBED_TOPICS_MAX)
    {
        return Err(invalid(&format!(
            "SubscribedTopicNames holds more than {SUBSCRIBED_TOPICS_MAX} topics."
        )));
    }
    if let Some(name) = &input.server_assignor {
        if AssignorName::parse(name).is_none() {
            let all: Vec<&str> = AssignorName::ALL.iter().map(|a| a.as_str()).collect();
            return Err(Refusal::new(
                ResponseError::UnsupportedAssignor,
                format!("ServerAssignor {name} is not supported. Supported assignors: {}.", all.join(", ")),
            ));
        }
    }
    if let Some(regex) = &input.subscribed_topic_regex {
        compile(regex)?;
    }
    Ok(())
}

/// How long a group's regex matches are reused before the topics are
/// scanned again: a heartbeat does not walk every topic name, and a new
/// topic reaches a regex group within this long (Kafka refreshes on
/// metadata changes and at most every 10 s by default).
pub const REGEX_REFRESH_MS: i64 = 1_000;

/// A compiled subscription regex; equal when the sources are.
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    re: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The topic names the group's regexes matched, and when.
#[derive(Debug, Clone)]
struct RegexMatches {
    at_ms: i64,
    sources: BTreeSet<String>,
    names: BTreeSet<String>,
}

/// A subscription regex, matched against whole topic names (Java's
/// `Pattern.matches`, as Kafka does with RE2J).
fn compile(regex: &str) -> Result<regex::Regex, Refusal> {
    let refuse = |why: String| {
        Refusal::new(
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {why}."),
        )
    };
    if regex.len() > REGEX_MAX_LEN {
        return Err(refuse(format!("longer than {REGEX_MAX_LEN} bytes")));
    }
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| refuse(e.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's spelling in ListGroups, DescribeGroups and
    /// ConsumerGroupDescribe.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i64,
    topic_names: BTreeSet<String>,
    regex: Option<Pattern>,
    assignor: Option<AssignorName>,
    progress: Progress,
    previous_epoch: i32,
    /// Left with epoch -2 (a static member restarting): keeps its
    /// partitions until its session ends or its instance comes back.
    left_temporarily: bool,
    session_deadline_ms: i64,
    /// Set while it has partitions to give up.
    revoke_deadline_ms: Option<i64>,
    /// A member of the classic protocol (JoinGroup, SyncGroup, Heartbeat)
    /// inside this group.
    classic: Option<classic::ClassicState>,
}

impl Member {
    /// When the member is removed unless it hears from it: its session,
    /// revocation, or (classic) join and sync deadlines.
    fn next_deadline(&self) -> i64 {
        let classic = self.classic.as_ref();
        [
            Some(self.session_deadline_ms),
            self.revoke_deadline_ms,
            classic.and_then(|c| c.sync_deadline_ms),
            classic.and_then(|c| c.join_deadline_ms),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.session_deadline_ms)
    }
}

/// One member for ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub topic_names: Vec<String>,
    pub regex: Option<String>,
    pub assignment: Assignment,
    pub target: Assignment,
    /// Uses the classic protocol (JoinGroup/SyncGroup).
    pub classic: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub state: ConsumerGroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<MemberView>,
}

/// Session and heartbeat timing (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i32,
    pub max_size: usize,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    group_id: String,
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    targets: BTreeMap<String, Assignment>,
    /// Who holds each partition (assigned or still revoking).
    holders: HashMap<(Uuid, i32), String>,
    static_members: HashMap<String, String>,
    /// The subscribed topics that exist: name → (id, partitions).
    subscribed: BTreeMap<String, (Uuid, i32)>,
    regex_matches: Option<RegexMatches>,
    /// How many members subscribe to each topic name: a heartbeat reads the
    /// group's names from here, not from every member.
    topic_refs: BTreeMap<String, usize>,
}

impl ConsumerGroup {
    pub fn new(group_id: String) -> Self {
        Self::starting_at(group_id, 0)
    }

    /// A group taking over from a classic group of `generation`: epochs
    /// continue from it, as in Kafka's conversion.
    pub fn starting_at(group_id: String, epoch: i32) -> Self {
        Self {
            group_id,
            epoch,
            assignment_epoch: epoch,
            members: BTreeMap::new(),
            targets: BTreeMap::new(),
            holders: HashMap::new(),
            static_members: HashMap::new(),
            subscribed: BTreeMap::new(),
            regex_matches: None,
            topic_refs: BTreeMap::new(),
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn group_epoch(&self) -> i32 {
        self.epoch
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.progress.epoch != self.assignment_epoch || m.progress.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Topic names any member subscribes to, by name or regex (for
    /// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        // `subscribed` is refreshed by heartbeats only; members may have
        // left since.
        self.subscribed
            .keys()
            .filter(|name| {
                self.members
                    .values()
                    .any(|m| m.topic_names.contains(*name) || m.regex.as_ref().is_some_and(|p| p.re.is_match(name)))
            })
            .cloned()
            .collect()
    }

    /// The assignor most members ask for, else the default.
    fn assignor(&self) -> AssignorName {
        let mut counts: BTreeMap<AssignorName, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.assignor {
                *counts.entry(a).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(a, n)| (*n, std::cmp::Reverse(*a)))
            .map_or(AssignorName::ALL[0], |(a, _)| a)
    }

    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        input: HeartbeatInput,
        topics: &dyn TopicCatalog,
        timing: Timing,
    ) -> Result<HeartbeatOutput, Refusal> {
        match input.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => return self.leave(&input),
            _ => {}
        }
        let joining = input.member_epoch == 0;
        let known = self.members.contains_key(&input.member_id);
        if joining && !known && self.members.len() >= timing.max_size && !self.replaces_static(&input) {
            return Err(Refusal::new(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    timing.max_size
                ),
            ));
        }
        let (before, mut member) = match self.members.get(&input.member_id) {
            Some(existing) => {
                if let Some(instance) = &input.instance_id {
                    if existing.instance_id.as_deref() != Some(instance) {
                        return Err(Refusal::new(
                            ResponseError::FencedInstanceId,
                            format!(
                                "Static member {} of instance {instance} is fenced by another member id.",
                                input.member_id
                            ),
                        ));
                    }
                }
                if !joining {
                    check_epoch(existing, input.member_epoch, input.owned.as_ref())?;
                }
                (Some(existing.clone()), existing.clone())
            }
            None if !joining => {
                return Err(Refusal::new(
                    ResponseError::UnknownMemberId,
                    format!("Member {} is not a member of group {}.", input.member_id, self.group_id),
                ))
            }
            None => (None, self.new_member(now_ms, &input)?),
        };
        member.left_temporarily = false;
        if input.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = input.rebalance_timeout_ms as i64;
        }
        if let Some(names) = &input.subscribed_topic_names {
            member.topic_names = names.iter().cloned().collect();
        }
        // Full heartbeats repeat the regex: compile it only when it changed.
        if let Some(regex) = input
            .subscribed_topic_regex
            .as_ref()
            .filter(|r| member.regex.as_ref().map(|p| &p.source) != Some(*r))
        {
            // `validate` compiled it already.
            member.regex = compile(regex)
                .ok()
                .filter(|_| !regex.is_empty())
                .map(|re| Pattern { source: regex.clone(), re });
        }
        if let Some(name) = &input.server_assignor {
            member.assignor = AssignorName::parse(name);
        }
        if input.rack_id.is_some() {
            member.rack_id = input.rack_id.clone();
        }
        member.client_id = input.client_id.clone();
        member.client_host = input.client_host.clone();
        member.session_deadline_ms = now_ms.saturating_add(timing.session_timeout_ms);
        let subscription_changed = before
            .as_ref()
            .is_none_or(|b| b.topic_names != member.topic_names || b.regex != member.regex || b.assignor != member.assignor);
        member.classic = None;
        let id = member.id.clone();
        self.put(member);
        let (member, updated) = self.advance(now_ms, &id, subscription_changed, input.owned.as_ref(), topics)?;
        let changed = updated.progress.assigned != member.progress.assigned;
        // Kafka 4.0's "full request" (sent after errors, with every field):
        // it gets the assignment even when unchanged.
        let full = joining
            || (input.rebalance_timeout_ms != -1
                && (input.subscribed_topic_names.is_some() || input.subscribed_topic_regex.is_some())
                && input.owned.is_some());
        Ok(HeartbeatOutput {
            member_id: updated.id.clone(),
            member_epoch: updated.progress.epoch,
            heartbeat_interval_ms: timing.heartbeat_interval_ms,
            assignment: (full || changed || before.is_none()).then(|| updated.progress.assigned.clone()),
        })
    }

    /// A heartbeat's (or a classic join's) three steps for a member already
    /// stored with its new subscription: bump the group epoch if needed,
    /// compute a new target if needed, and move the member one step toward
    /// its target. Returns the member before and after the step.
    fn advance(
        &mut self,
        now_ms: i64,
        member_id: &str,
        subscription_changed: bool,
        owned: Option<&Assignment>,
        topics: &dyn TopicCatalog,
    ) -> Result<(Member, Member), Refusal> {
        // 1. The group epoch.
        let metadata = self.resolve(now_ms, topics);
        if subscription_changed || metadata != self.subscribed {
            self.subscribed = metadata;
            self.epoch += 1;
        }
        // 2. The target assignment.
        if self.epoch > self.assignment_epoch {
            self.compute_targets();
        }
        // 3. This member's next step.
        let Some(member) = self.members.get(member_id).cloned() else {
            return Err(Refusal::new(ResponseError::UnknownServerError, "member vanished"));
        };
        let empty = Assignment::new();
        let target = self.targets.get(&member.id).unwrap_or(&empty);
        let holders = &self.holders;
        let own_id = member.id.clone();
        let progress = reconcile::next(&member.progress, self.assignment_epoch, target, owned, |t, p| {
            holders.get(&(t, p)).is_some_and(|h| *h != own_id)
        });
        let mut updated = member.clone();
        if progress.epoch != updated.progress.epoch {
            updated.previous_epoch = updated.progress.epoch;
        }
        // Classic members have join and sync deadlines instead.
        updated.revoke_deadline_ms = match progress.state {
            MemberState::UnrevokedPartitions if member.classic.is_none() => Some(
                member
                    .revoke_deadline_ms
                    .filter(|_| member.progress.state == MemberState::UnrevokedPartitions)
                    .unwrap_or(now_ms.saturating_add(updated.rebalance_timeout_ms)),
            ),
            _ => None,
        };
        updated.progress = progress;
        self.put(updated.clone());
        Ok((member, updated))
    }

    /// Whether `input` is a static member coming back in place of its
    /// previous incarnation (which does not add to the group's size).
    fn replaces_static(&self, input: &HeartbeatInput) -> bool {
        input
            .instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i))
            .and_then(|id| self.members.get(id))
            .is_some_and(|m| m.left_temporarily)
    }

    fn new_member(&mut self, now_ms: i64, input: &HeartbeatInput) -> Result<Member, Refusal> {
        let fresh = Member {
            id: if input.member_id.is_empty() {
                Uuid::new_v4().to_string()
            } else {
                input.member_id.clone()
            },
            instance_id: input.instance_id.clone(),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            topic_names: BTreeSet::new(),
            regex: None,
            assignor: None,
            progress: Progress {
                state: MemberState::Stable,
                epoch: 0,
                assigned: Assignment::new(),
                revoking: Assignment::new(),
            },
            previous_epoch: 0,
            left_temporarily: false,
            session_deadline_ms: now_ms,
            revoke_deadline_ms: None,
            classic: None,
        };
        let Some(instance) = &input.instance_id else { return Ok(fresh) };
        let Some(old_id) = self.static_members.get(instance).cloned() else {
            return Ok(fresh);
        };
        let Some(old) = self.members.get(&old_id).cloned() else {
            return Ok(fresh);
        };
        if !old.left_temporarily {
            return Err(Refusal::new(
                ResponseError::UnreleasedInstanceId,
                format!("Static member {old_id} with instance id {instance} is present in the consumer group."),
            ));
        }
        // The restarted instance takes over its partitions and target.
        self.remove_member(&old_id);
        if let Some(target) = self.targets.remove(&old_id) {
            self.targets.insert(fresh.id.clone(), target);
        }
        Ok(Member {
            id: fresh.id,
            progress: Progress { epoch: 0, ..old.progress },
            previous_epoch: 0,
            left_temporarily: false,
            revoke_deadline_ms: None,
            ..old
        })
    }

    fn leave(&mut self, input: &HeartbeatInput) -> Result<HeartbeatOutput, Refusal> {
        let Some(member) = self.members.get_mut(&input.member_id) else {
            return Err(Refusal::new(
                ResponseError::UnknownMemberId,
                format!("Member {} is not a member of group {}.", input.member_id, self.group_id),
            ));
        };
        if input.member_epoch == STATIC_LEAVE_EPOCH {
            // Kept, with its partitions, for the instance to come back.
            member.left_temporarily = true;
        } else {
            let id = member.id.clone();
            self.remove_member(&id);
            self.targets.remove(&id);
            self.epoch += 1;
        }
        Ok(HeartbeatOutput {
            member_id: input.member_id.clone(),
            member_epoch: input.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Stores `member`, keeping the holder and static-member indexes true.
    fn put(&mut self, member: Member) {
        self.release(&member.id);
        for (topic, ps) in member.progress.assigned.iter().chain(&member.progress.revoking) {
            for p in ps {
                self.holders.insert((*topic, *p), member.id.clone());
            }
        }
        for name in &member.topic_names {
            match self.topic_refs.get_mut(name) {
                Some(count) => *count += 1,
                None => {
                    self.topic_refs.insert(name.clone(), 1);
                }
            }
        }
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), member.id.clone());
        }
        self.members.insert(member.id.clone(), member);
    }

    fn release(&mut self, member_id: &str) {
        let Some(old) = self.members.get(member_id) else { return };
        for name in &old.topic_names {
            if let Some(count) = self.topic_refs.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    self.topic_refs.remove(name);
                }
            }
        }
        for (topic, ps) in old.progress.assigned.iter().chain(&old.progress.revoking) {
            for p in ps {
                if self.holders.get(&(*topic, *p)).is_some_and(|h| h == member_id) {
                    self.holders.remove(&(*topic, *p));
                }
            }
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        self.release(member_id);
        if let Some(old) = self.members.remove(member_id) {
            if let Some(instance) = old.instance_id {
                if self.static_members.get(&instance).is_some_and(|id| id == member_id) {
                    self.static_members.remove(&instance);
                }
            }
        }
    }

    /// Every subscribed topic that exists, by name and by regex.
    fn resolve(&mut self, now_ms: i64, topics: &dyn TopicCatalog) -> BTreeMap<String, (Uuid, i32)> {
        let mut names: BTreeSet<String> = self.regex_matches(now_ms, topics);
        names.extend(self.topic_refs.keys().cloned());
        names.into_iter().filter_map(|n| topics.by_name(&n).map(|v| (n, v))).collect()
    }

    /// The topic names the members' regexes match, scanned again when the
    /// regexes change or after [`REGEX_REFRESH_MS`].
    fn regex_matches(&mut self, now_ms: i64, topics: &dyn TopicCatalog) -> BTreeSet<String> {
        let mut patterns: BTreeMap<&str, &regex::Regex> = BTreeMap::new();
        for p in self.members.values().filter_map(|m| m.regex.as_ref()) {
            patterns.insert(&p.source, &p.re);
        }
        if patterns.is_empty() {
            self.regex_matches = None;
            return BTreeSet::new();
        }
        let sources: BTreeSet<String> = patterns.keys().map(|s| s.to_string()).collect();
        let fresh = self
            .regex_matches
            .as_ref()
            .is_some_and(|m| m.sources == sources && (m.at_ms..m.at_ms.saturating_add(REGEX_REFRESH_MS)).contains(&now_ms));
        if !fresh {
            let names = topics
                .names()
                .into_iter()
                .filter(|t| patterns.values().any(|re| re.is_match(t)))
                .collect();
            self.regex_matches = Some(RegexMatches {
                at_ms: now_ms,
                sources,
                names,
            });
        }
        self.regex_matches.as_ref().map(|m| m.names.clone()).unwrap_or_default()
    }

    fn compute_targets(&mut self) {
        let matched = self.regex_matches.as_ref().map(|m| &m.names);
        let member_topics: Vec<BTreeSet<Uuid>> = self
            .members
            .values()
            .map(|m| {
                let mut ids: BTreeSet<Uuid> = m.topic_names.iter().filter_map(|n| self.subscribed.get(n).map(|v| v.0)).collect();
                if let (Some(p), Some(matched)) = (&m.regex, matched) {
                    ids.extend(
                        matched
                            .iter()
                            .filter(|n| p.re.is_match(n))
                            .filter_map(|n| self.subscribed.get(n).map(|v| v.0)),
                    );
                }
                ids
            })
            .collect();
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .values()
            .zip(member_topics)
            .map(|(m, topics)| MemberSpec {
                member_id: &m.id,
                instance_id: m.instance_id.as_deref(),
                topics,
                previous: self.targets.get(&m.id),
            })
            .collect();
        let partitions: BTreeMap<Uuid, i32> = self.subscribed.values().copied().collect();
        let targets = assignor::assign(self.assignor(), &specs, &partitions);
        self.targets = targets;
        self.assignment_epoch = self.epoch;
    }

    /// Removes members whose session ended or who kept partitions past
    /// their rebalance timeout. Returns the ids removed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.next_deadline() <= now_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id);
            self.targets.remove(id);
        }
        if !expired.is_empty() {
            self.epoch += 1;
        }
        expired
    }

    pub fn next_deadline(&self) -> Option<i64> {
        self.members.values().map(Member::next_deadline).min()
    }

    /// Kafka's rules for OffsetCommit to a consumer group: a commit without
    /// a member (epoch < 0) only while the group has none; a member's
    /// commit needs OffsetCommit v9+ and its current epoch.
    pub fn validate_commit(&self, member_id: &str, epoch: i32, api_version: i16, transactional: bool) -> Result<(), Refusal> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.member(member_id)?;
        if member.classic.is_none() && !transactional && api_version < 9 {
            return Err(Refusal::new(
                ResponseError::UnsupportedVersion,
                "OffsetCommit version 9 or above must be used by members using the modern group protocol",
            ));
        }
        check_member_epoch(member, epoch)
    }

    /// OffsetFetch v9 with a member: its current epoch.
    pub fn validate_fetch(&self, member_id: Option<&str>, epoch: i32) -> Result<(), Refusal> {
        match member_id {
            None if epoch < 0 => Ok(()),
            _ => check_member_epoch(self.member(member_id.unwrap_or_default())?, epoch),
        }
    }

    fn member(&self, member_id: &str) -> Result<&Member, Refusal> {
        self.members.get(member_id).ok_or_else(|| {
            Refusal::new(
                ResponseError::UnknownMemberId,
                format!("Member {member_id} is not a member of group {}.", self.group_id),
            )
        })
    }

    pub fn describe(&self) -> GroupView {
        GroupView {
            state: self.state(),
            group_epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor().as_str(),
            members: self
                .members
                .values()
                .map(|m| MemberView {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.progress.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    topic_names: m.topic_names.iter().cloned().collect(),
                    regex: m.regex.as_ref().map(|p| p.source.clone()),
                    assignment: m.progress.assigned.clone(),
                    target: self.targets.get(&m.id).cloned().unwrap_or_default(),
                    classic: m.classic.is_some(),
                })
                .collect(),
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl ConsumerGroup {
    /// The group's invariants, for tests and the `consumer_group` fuzz
    /// target: no partition is held (assigned or revoking) by two members,
    /// the holder index says exactly that, and the static index names
    /// members that have that instance id.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held: HashMap<(Uuid, i32), String> = HashMap::new();
        for m in self.members.values() {
            for (topic, ps) in m.progress.assigned.iter().chain(&m.progress.revoking) {
                for p in ps {
                    if let Some(other) = held.insert((*topic, *p), m.id.clone()) {
                        return Err(format!("{topic}/{p} held by {other} and {}", m.id));
                    }
                }
            }
        }
        if held != self.holders {
            return Err(format!("holder index {:?} but members hold {held:?}", self.holders));
        }
        let mut refs: BTreeMap<String, usize> = BTreeMap::new();
        for name in self.members.values().flat_map(|m| m.topic_names.iter()) {
            *refs.entry(name.clone()).or_default() += 1;
        }
        if refs != self.topic_refs {
            return Err(format!("topic counts {:?} but members subscribe {refs:?}", self.topic_refs));
        }
        for (instance, id) in &self.static_members {
            if self.members.get(id).and_then(|m| m.instance_id.as_deref()) != Some(instance.as_str()) {
                return Err(format!("static index names {id} for {instance}"));
            }
        }
        Ok(())
    }
}

/// A commit's or offset fetch's epoch must be the member's current one:
/// STALE_MEMBER_EPOCH for a member of the new protocol, ILLEGAL_GENERATION
/// for a classic member (whose generation is its member epoch), as in
/// Kafka's `ConsumerGroup.validateMemberEpoch`.
fn check_member_epoch(member: &Member, received: i32) -> Result<(), Refusal> {
    let expected = member.progress.epoch;
    if received == expected {
        return Ok(());
    }
    Err(if member.classic.is_some() {
        Refusal::new(
            ResponseError::IllegalGeneration,
            format!("The received generation id {received} does not match the expected member epoch {expected}."),
        )
    } else {
        Refusal::new(
            ResponseError::StaleMemberEpoch,
            format!("The received member epoch {received} does not match the expected member epoch {expected}."),
        )
    })
}

/// A heartbeat's epoch must be the member's, or its previous one when the
/// answer that moved it on may have been lost (and it owns no more than
/// it is assigned).
fn check_epoch(member: &Member, received: i32, owned: Option<&Assignment>) -> Result<(), Refusal> {
    let current = member.progress.epoch;
    let fenced = |side: &str| {
        Refusal::new(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a {side} member epoch ({received}) than the one known by the group coordinator ({current}). The member must abandon all its partitions and rejoin."
            ),
        )
    };
    if received > current {
        return Err(fenced("greater"));
    }
    if received < current {
        let subset = owned.is_some_and(|owned| {
            owned
                .iter()
                .all(|(t, ps)| member.progress.assigned.get(t).is_some_and(|a| ps.is_subset(a)))
        });
        if received != member.previous_epoch || !subset {
            return Err(fenced("smaller"));
        }
    }
    Ok(())
}

mod classic;
pub use classic::{ClassicJoined, ClassicRefusal};

#[cfg(test)]
mod tests;
