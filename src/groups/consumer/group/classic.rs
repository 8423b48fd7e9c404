//! Classic members inside a KIP-848 group (Kafka 4.0's online migration):
//! a classic group with members becomes a consumer group when a member of
//! the new protocol joins, and its classic members carry on with JoinGroup,
//! SyncGroup and Heartbeat, which this file translates. The server assigns
//! their partitions like anyone else's; a heartbeat answers
//! REBALANCE_IN_PROGRESS when a member must rejoin to give partitions up or
//! take new ones.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::super::embedded::{self, Subscription};
use super::super::reconcile::{MemberState, Progress};
use super::*;
use crate::groups::state_machine::{ClassicMember, JoinInput};

/// What only a classic member has.
#[derive(Debug, Clone)]
pub(super) struct ClassicState {
    session_timeout_ms: i64,
    /// (name, metadata) from its last JoinGroup.
    protocols: Vec<(String, Bytes)>,
    /// After a JoinGroup, SyncGroup must come within the rebalance timeout.
    pub(super) sync_deadline_ms: Option<i64>,
    /// Told to rejoin: JoinGroup must come within the rebalance timeout.
    pub(super) join_deadline_ms: Option<i64>,
}

impl ClassicState {
    /// The version of the embedded protocol the member speaks.
    fn version(&self) -> i16 {
        self.protocols
            .first()
            .and_then(|(_, m)| embedded::decode_subscription(m))
            .map_or(0, |s| s.version)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassicJoined {
    pub member_id: String,
    /// The member epoch.
    pub generation_id: i32,
    pub protocol_name: String,
}

/// A classic request's error, with the member id JoinGroup answers with
/// (MEMBER_ID_REQUIRED hands one out).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicRefusal {
    pub code: i16,
    pub member_id: String,
}

fn refuse(error: ResponseError, member_id: &str) -> ClassicRefusal {
    ClassicRefusal {
        code: error.code(),
        member_id: member_id.to_string(),
    }
}

/// Partitions by topic name → by topic id, leaving out topics that do not
/// exist.
fn by_id(parts: &[(String, Vec<i32>)], topics: &dyn TopicCatalog) -> Assignment {
    let mut out = Assignment::new();
    for (topic, ps) in parts {
        if let Some((id, _)) = topics.by_name(topic) {
            out.entry(id).or_default().extend(ps.iter().copied());
        }
    }
    out
}

impl ConsumerGroup {
    /// Whether a classic group of this protocol type and these members can
    /// become a consumer group (Kafka's `validateOnlineUpgrade`).
    pub fn can_take_over(protocol_type: Option<&str>, members: &[ClassicMember], max_size: usize) -> bool {
        protocol_type == Some("consumer") && members.len() <= max_size
    }

    /// The consumer group that takes over a classic group: each member keeps
    /// its last assignment as its target, at the group's generation.
    pub fn from_classic(
        group_id: String,
        generation: i32,
        protocol_name: &str,
        members: Vec<ClassicMember>,
        topics: &dyn TopicCatalog,
        now_ms: i64,
    ) -> Result<Self, Refusal> {
        let malformed = || {
            Refusal::new(
                ResponseError::GroupIdNotFound,
                format!(
                    "Cannot upgrade the classic group {group_id} to consumer group because the embedded consumer protocol is malformed."
                ),
            )
        };
        let mut group = ConsumerGroup::starting_at(group_id.clone(), generation);
        for m in members {
            // A group still in its first rebalance has chosen no protocol
            // yet: every protocol of a member carries the same subscription.
            let metadata = m
                .protocols
                .iter()
                .find(|(name, _)| name == protocol_name)
                .or(m.protocols.first().filter(|_| protocol_name.is_empty()))
                .map(|(_, metadata)| metadata.clone())
                .ok_or_else(malformed)?;
            let subscription = embedded::decode_subscription(&metadata).ok_or_else(malformed)?;
            let assigned = by_id(&embedded::decode_assignment(&m.assignment).ok_or_else(malformed)?, topics);
            group.targets.insert(m.member_id.clone(), assigned.clone());
            group.put(Member {
                id: m.member_id,
                instance_id: m.group_instance_id,
                rack_id: subscription.rack_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                topic_names: subscription.topics.into_iter().collect(),
                regex: None,
                assignor: None,
                progress: Progress {
                    state: MemberState::Stable,
                    epoch: generation,
                    assigned,
                    revoking: Assignment::new(),
                },
                previous_epoch: generation,
                left_temporarily: false,
                session_deadline_ms: now_ms.saturating_add(m.session_timeout_ms),
                revoke_deadline_ms: None,
                classic: Some(ClassicState {
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m.protocols,
                    sync_deadline_ms: None,
                    join_deadline_ms: None,
                }),
            });
        }
        group.subscribed = group.resolve(now_ms, topics);
        Ok(group)
    }

    /// What a classic group needs to take this group over (Kafka's online
    /// downgrade), if every member is a classic one and they share a
    /// protocol: the generation (the group epoch), the protocol, and each
    /// member with its assignment in the embedded protocol.
    pub fn classic_handover(&self) -> Option<(i32, String, Vec<ClassicMember>)> {
        let first = self.members.values().next()?;
        if self.members.values().any(|m| m.classic.is_none()) {
            return None;
        }
        let protocol_name = first.classic.as_ref()?.protocols.iter().map(|(name, _)| name).find(|name| {
            self.members
                .values()
                .all(|m| m.classic.as_ref().is_some_and(|c| c.protocols.iter().any(|(n, _)| n == *name)))
        })?;
        let names: BTreeMap<Uuid, &str> = self.subscribed.iter().map(|(name, (id, _))| (*id, name.as_str())).collect();
        let members = self
            .members
            .values()
            .filter_map(|m| {
                let state = m.classic.as_ref()?;
                let partitions: Vec<(String, Vec<i32>)> = m
                    .progress
                    .assigned
                    .iter()
                    .filter_map(|(id, ps)| Some((names.get(id)?.to_string(), ps.iter().copied().collect())))
                    .collect();
                Some(ClassicMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: state.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: state.protocols.clone(),
                    assignment: embedded::encode_assignment(state.version(), &partitions),
                })
            })
            .collect();
        Some((self.epoch, protocol_name.clone(), members))
    }

    /// A classic JoinGroup: the member's subscription comes from its
    /// embedded metadata; it is answered at once with its member epoch as
    /// the generation and no member list (no client-side leader).
    pub fn classic_join(
        &mut self,
        now_ms: i64,
        join: JoinInput,
        new_member_id: String,
        topics: &dyn TopicCatalog,
        timing: Timing,
    ) -> Result<ClassicJoined, ClassicRefusal> {
        let subscription: Option<Subscription> = if join.protocol_type == "consumer" {
            join.protocols.first().and_then(|(_, m)| embedded::decode_subscription(m))
        } else {
            None
        };
        let Some(subscription) = subscription else {
            return Err(refuse(ResponseError::InconsistentGroupProtocol, &join.member_id));
        };
        let existing_static = join.group_instance_id.as_ref().and_then(|i| self.static_members.get(i)).cloned();
        let member_id = match (&existing_static, join.member_id.is_empty()) {
            // A static member rejoining without its id replaces its old
            // incarnation.
            (Some(old), true) => {
                let Some(mut old_member) = self.members.get(old).cloned() else {
                    return Err(refuse(ResponseError::UnknownMemberId, &join.member_id));
                };
                self.remove_member(old);
                if let Some(target) = self.targets.remove(old) {
                    self.targets.insert(new_member_id.clone(), target);
                }
                old_member.id = new_member_id.clone();
                self.put(old_member);
                new_member_id
            }
            (Some(old), false) if *old != join.member_id => {
                return Err(refuse(ResponseError::FencedInstanceId, &join.member_id));
            }
            (None, true) if join.require_known_member_id && join.group_instance_id.is_none() => {
                return Err(refuse(ResponseError::MemberIdRequired, &new_member_id));
            }
            (None, true) => new_member_id,
            // Kafka creates a member for any id here (it keeps no list of
            // the ids it handed out); the group size bounds them.
            (_, false) => join.member_id.clone(),
        };
        let before = self.members.get(&member_id).cloned();
        if before.is_none() && self.members.len() >= timing.max_size {
            return Err(refuse(ResponseError::GroupMaxSizeReached, &member_id));
        }
        let mut member = match &before {
            Some(m) => m.clone(),
            None => {
                let input = HeartbeatInput {
                    member_id: member_id.clone(),
                    instance_id: join.group_instance_id.clone(),
                    ..Default::default()
                };
                self.new_member(now_ms, &input).map_err(|r| ClassicRefusal {
                    code: r.code,
                    member_id: member_id.clone(),
                })?
            }
        };
        member.topic_names = subscription.topics.iter().cloned().collect();
        member.regex = None;
        if subscription.rack_id.is_some() {
            member.rack_id = subscription.rack_id.clone();
        }
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.client_id = join.client_id;
        member.client_host = join.client_host;
        member.left_temporarily = false;
        member.session_deadline_ms = now_ms.saturating_add(join.session_timeout_ms);
        member.classic = Some(ClassicState {
            session_timeout_ms: join.session_timeout_ms,
            protocols: join.protocols.clone(),
            sync_deadline_ms: Some(now_ms.saturating_add(join.rebalance_timeout_ms)),
            join_deadline_ms: None,
        });
        let changed = before
            .as_ref()
            .is_none_or(|b| b.topic_names != member.topic_names || b.regex.is_some());
        self.put(member);
        let owned = by_id(&subscription.owned, topics);
        let (_, updated) = self
            .advance(now_ms, &member_id, changed, Some(&owned), topics)
            .map_err(|r| ClassicRefusal {
                code: r.code,
                member_id: member_id.clone(),
            })?;
        Ok(ClassicJoined {
            member_id,
            generation_id: updated.progress.epoch,
            protocol_name: join.protocols.first().map(|(name, _)| name.clone()).unwrap_or_default(),
        })
    }

    /// The member a classic request names: by instance id when it has one.
    fn classic_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<&Member, i16> {
        let member = match instance_id {
            Some(instance) => {
                let id = self.static_members.get(instance).ok_or(ResponseError::UnknownMemberId.code())?;
                if id != member_id {
                    return Err(ResponseError::FencedInstanceId.code());
                }
                self.members.get(id)
            }
            None => self.members.get(member_id),
        };
        match member {
            Some(m) if m.classic.is_some() => Ok(m),
            _ => Err(ResponseError::UnknownMemberId.code()),
        }
    }

    /// A classic SyncGroup: the member's assigned partitions, in the
    /// embedded protocol.
    pub fn classic_sync(
        &mut self,
        now_ms: i64,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_name: Option<&str>,
    ) -> Result<Bytes, i16> {
        let member = self.classic_member(member_id, instance_id)?;
        if generation != member.progress.epoch {
            return Err(ResponseError::IllegalGeneration.code());
        }
        let Some(state) = member.classic.as_ref() else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        if protocol_name.is_some_and(|p| state.protocols.first().is_none_or(|(name, _)| name != p)) {
            return Err(ResponseError::InconsistentGroupProtocol.code());
        }
        if self.epoch > member.progress.epoch && member.progress.state != MemberState::UnrevokedPartitions {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        let names: BTreeMap<Uuid, &str> = self.subscribed.iter().map(|(name, (id, _))| (*id, name.as_str())).collect();
        let partitions: Vec<(String, Vec<i32>)> = member
            .progress
            .assigned
            .iter()
            .filter_map(|(id, ps)| Some((names.get(id)?.to_string(), ps.iter().copied().collect())))
            .collect();
        let assignment = embedded::encode_assignment(state.version(), &partitions);
        let session_timeout_ms = state.session_timeout_ms;
        if let Some(m) = self.members.get_mut(member_id) {
            m.session_deadline_ms = now_ms.saturating_add(session_timeout_ms);
            if let Some(c) = m.classic.as_mut() {
                c.sync_deadline_ms = None;
            }
        }
        Ok(assignment)
    }

    /// A classic Heartbeat: REBALANCE_IN_PROGRESS when the member must
    /// rejoin (a new group epoch, partitions to give up, or partitions it
    /// waited for now free).
    pub fn classic_heartbeat(&mut self, now_ms: i64, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        let member = match self.classic_member(member_id, instance_id) {
            Ok(m) => m,
            Err(code) => return code,
        };
        if generation != member.progress.epoch {
            return ResponseError::IllegalGeneration.code();
        }
        let waiting = member.progress.state == MemberState::UnreleasedPartitions && {
            let target = self.targets.get(member_id);
            target.is_some_and(|t| {
                t.iter().any(|(topic, ps)| {
                    ps.iter().any(|p| {
                        !member.progress.assigned.get(topic).is_some_and(|a| a.contains(p))
                            && self.holders.get(&(*topic, *p)).is_some_and(|h| h != member_id)
                    })
                })
            })
        };
        let rejoin = member.progress.epoch < self.epoch
            || member.progress.state == MemberState::UnrevokedPartitions
            || (member.progress.state == MemberState::UnreleasedPartitions && !waiting);
        let (rebalance_timeout_ms, session_timeout_ms) = (
            member.rebalance_timeout_ms,
            member.classic.as_ref().map_or(0, |c| c.session_timeout_ms),
        );
        let Some(m) = self.members.get_mut(member_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        m.session_deadline_ms = now_ms.saturating_add(session_timeout_ms);
        if rejoin {
            if let Some(c) = m.classic.as_mut() {
                c.join_deadline_ms.get_or_insert(now_ms.saturating_add(rebalance_timeout_ms));
            }
            return ResponseError::RebalanceInProgress.code();
        }
        0
    }

    /// A classic LeaveGroup for each (member id, instance id).
    pub fn classic_leave(&mut self, members: &[(String, Option<String>)]) -> Vec<i16> {
        members
            .iter()
            .map(|(member_id, instance_id)| {
                let id = match instance_id {
                    Some(instance) => match self.static_members.get(instance) {
                        Some(id) if member_id.is_empty() || id == member_id => id.clone(),
                        Some(_) => return ResponseError::FencedInstanceId.code(),
                        None => return ResponseError::UnknownMemberId.code(),
                    },
                    None => member_id.clone(),
                };
                if !self.members.contains_key(&id) {
                    return ResponseError::UnknownMemberId.code();
                }
                self.remove_member(&id);
                self.targets.remove(&id);
                self.epoch += 1;
                0
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
