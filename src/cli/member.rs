//! `consume --group`: a member of a KIP-848 consumer group. The broker's
//! coordinator assigns the partitions (ConsumerGroupHeartbeat); this holds
//! what the member owns and says what an answer changes. Pure: the consumer
//! sends the requests and acts on the changes.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::CliError;

/// ConsumerGroupHeartbeat v1 (Kafka 4.0): the member picks its own id.
pub const HEARTBEAT_VERSION: i16 = 1;

/// How long the coordinator waits for a member to give partitions up.
const REBALANCE_TIMEOUT_MS: i32 = 30_000;

/// The member epoch that leaves the group.
const LEAVE_EPOCH: i32 = -1;

/// One topic's membership in a group.
#[derive(Debug)]
pub struct Member {
    pub group: String,
    /// Chosen by the member (KIP-1082), kept across rejoins.
    pub id: String,
    /// 0 until the coordinator has taken the member in.
    pub epoch: i32,
    topic: String,
    topic_id: Uuid,
    /// The partitions of `topic` the member owns.
    pub owned: BTreeSet<i32>,
    /// How often the coordinator wants a heartbeat.
    pub interval: Duration,
    /// Whether an assignment has come since joining.
    pub assigned: bool,
}

/// What an answer changes in the partitions owned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// To start reading, from the group's committed offsets.
    pub added: BTreeSet<i32>,
    /// To stop reading, their positions committed first.
    pub revoked: BTreeSet<i32>,
    /// To stop reading without committing: the member was fenced, and its
    /// commits would be refused.
    pub lost: BTreeSet<i32>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.revoked.is_empty() && self.lost.is_empty()
    }
}

/// What to do after a heartbeat's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Go on; the owned partitions changed as said.
    Go(Change),
    /// The coordinator moved or is loading: find it again and retry.
    Rediscover,
}

impl Member {
    pub fn new(group: &str, topic: &str, topic_id: Uuid, id: String) -> Self {
        Self {
            group: group.to_string(),
            id,
            epoch: 0,
            topic: topic.to_string(),
            topic_id,
            owned: BTreeSet::new(),
            interval: Duration::from_secs(1),
            assigned: false,
        }
    }

    /// A full heartbeat: the subscription and the partitions owned.
    pub fn heartbeat(&self) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_member_id(StrBytes::from_string(self.id.clone()))
            .with_member_epoch(self.epoch)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_string(self.topic.clone()))]))
            .with_topic_partitions(Some(if self.owned.is_empty() {
                Vec::new()
            } else {
                vec![TopicPartitions::default()
                    .with_topic_id(self.topic_id)
                    .with_partitions(self.owned.iter().copied().collect())]
            }))
    }

    /// The heartbeat that leaves the group, handing its partitions on.
    pub fn leave(&self) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_member_id(StrBytes::from_string(self.id.clone()))
            .with_member_epoch(LEAVE_EPOCH)
    }

    /// Takes in a heartbeat's answer.
    pub fn apply(&mut self, answer: &ConsumerGroupHeartbeatResponse) -> Result<Next, CliError> {
        match ResponseError::try_from_code(answer.error_code) {
            None => {}
            // Fenced or forgotten: its partitions are no longer its own.
            // Kafka's consumers rejoin at epoch 0 with the same id.
            Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => {
                self.epoch = 0;
                self.assigned = false;
                let lost = std::mem::take(&mut self.owned);
                return Ok(Next::Go(Change { lost, ..Change::default() }));
            }
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable | ResponseError::CoordinatorLoadInProgress) => {
                return Ok(Next::Rediscover)
            }
            Some(_) => {
                let message = answer.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
                return Err(CliError::kafka(
                    answer.error_code,
                    format!("group {} refused the member: {message}", self.group),
                ));
            }
        }
        if let Some(id) = answer.member_id.as_ref().filter(|id| !id.is_empty()) {
            self.id = id.to_string();
        }
        self.epoch = answer.member_epoch;
        if answer.heartbeat_interval_ms > 0 {
            self.interval = Duration::from_millis(answer.heartbeat_interval_ms as u64);
        }
        let Some(assignment) = &answer.assignment else {
            return Ok(Next::Go(Change::default()));
        };
        self.assigned = true;
        let target: BTreeSet<i32> = assignment
            .topic_partitions
            .iter()
            .filter(|tp| tp.topic_id == self.topic_id)
            .flat_map(|tp| tp.partitions.iter().copied())
            .collect();
        let change = Change {
            added: target.difference(&self.owned).copied().collect(),
            revoked: self.owned.difference(&target).copied().collect(),
            lost: BTreeSet::new(),
        };
        self.owned = target;
        Ok(Next::Go(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions as Assigned};

    fn answer(epoch: i32, partitions: Option<Vec<i32>>, topic: Uuid) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse::default()
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(5000)
            .with_assignment(
                partitions.map(|p| {
                    Assignment::default().with_topic_partitions(vec![Assigned::default().with_topic_id(topic).with_partitions(p)])
                }),
            )
    }

    fn set(p: &[i32]) -> BTreeSet<i32> {
        p.iter().copied().collect()
    }

    #[test]
    fn assignments_add_and_revoke_and_the_heartbeat_reports_what_is_owned() {
        let topic = Uuid::from_u128(7);
        let mut member = Member::new("g", "t", topic, "m-1".into());
        let join = member.heartbeat();
        assert_eq!((join.member_epoch, join.topic_partitions.as_ref().map(Vec::len)), (0, Some(0)));
        assert_eq!(join.subscribed_topic_names.as_ref().map(Vec::len), Some(1));

        let first = member.apply(&answer(1, Some(vec![0, 1, 2, 3]), topic)).unwrap();
        assert_eq!(
            first,
            Next::Go(Change {
                added: set(&[0, 1, 2, 3]),
                ..Change::default()
            })
        );
        assert_eq!((member.epoch, member.interval, member.assigned), (1, Duration::from_secs(5), true));
        // No assignment in an answer: nothing changes.
        assert_eq!(member.apply(&answer(1, None, topic)).unwrap(), Next::Go(Change::default()));
        // Another member came: two partitions move to it.
        let second = member.apply(&answer(2, Some(vec![0, 2]), topic)).unwrap();
        assert_eq!(
            second,
            Next::Go(Change {
                revoked: set(&[1, 3]),
                ..Change::default()
            })
        );
        let beat = member.heartbeat();
        assert_eq!(beat.member_epoch, 2);
        assert_eq!(beat.topic_partitions.unwrap()[0].partitions, vec![0, 2]);
        // Another topic's partitions are not this member's concern.
        let other = member.apply(&answer(3, Some(vec![9]), Uuid::from_u128(8))).unwrap();
        assert_eq!(
            other,
            Next::Go(Change {
                revoked: set(&[0, 2]),
                ..Change::default()
            })
        );
        assert_eq!(member.leave().member_epoch, LEAVE_EPOCH);
    }

    #[test]
    fn a_fenced_member_loses_its_partitions_and_rejoins_while_a_refusal_ends_it() {
        let topic = Uuid::from_u128(7);
        let mut member = Member::new("g", "t", topic, "m-1".into());
        member.apply(&answer(4, Some(vec![1, 2]), topic)).unwrap();
        let fenced = ConsumerGroupHeartbeatResponse::default().with_error_code(ResponseError::FencedMemberEpoch.code());
        assert_eq!(
            member.apply(&fenced).unwrap(),
            Next::Go(Change {
                lost: set(&[1, 2]),
                ..Change::default()
            })
        );
        assert_eq!((member.epoch, member.owned.len(), member.id.as_str()), (0, 0, "m-1"));
        let moved = ConsumerGroupHeartbeatResponse::default().with_error_code(ResponseError::NotCoordinator.code());
        assert_eq!(member.apply(&moved).unwrap(), Next::Rediscover);
        let denied = ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str("no")));
        assert_eq!(member.apply(&denied).unwrap_err().exit_code(), super::super::exit::REFUSED);
    }
}
