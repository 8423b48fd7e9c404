//! `consume --group G`: the consumer as a member of G (KIP-848). It
//! heartbeats to G's coordinator, reads the partitions it is assigned from
//! G's committed offsets (`--from` where G has none), commits what it
//! printed, gives revoked partitions up after committing them, and leaves
//! the group when it stops. `member.rs` holds the membership's rules.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::client::{Client, Position};
use super::member::{Member, Next, HEARTBEAT_VERSION};
use super::CliError;

/// How often a member commits while it reads.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How soon to look for a coordinator that moved or is loading.
const REDISCOVER_AFTER: Duration = Duration::from_millis(200);

pub struct GroupReader {
    member: Member,
    coordinator: i32,
    /// What was last committed, per owned partition.
    committed: BTreeMap<i32, i64>,
    last_commit: Instant,
    next_heartbeat: Instant,
}

impl GroupReader {
    /// Finds the group's coordinator; the first heartbeat joins.
    pub async fn new(client: &mut Client, group: &str, topic: &str) -> Result<Self, CliError> {
        let metadata = client.metadata(Some(vec![topic.to_string()])).await?;
        let topic_id = metadata
            .topics
            .first()
            .map(|t| t.topic_id)
            .filter(|id| !id.is_nil())
            .ok_or_else(|| CliError::Invalid(format!("the broker gave no topic id for {topic}; --group needs one")))?;
        let coordinator = client.group_coordinator(group).await?;
        let id = uuid::Uuid::new_v4().to_string();
        Ok(Self {
            member: Member::new(group, topic, topic_id, id),
            coordinator,
            committed: BTreeMap::new(),
            last_commit: Instant::now(),
            next_heartbeat: Instant::now(),
        })
    }

    /// Whether the coordinator has assigned partitions (perhaps none) yet.
    pub fn assigned(&self) -> bool {
        self.member.assigned
    }

    pub fn heartbeat_due(&self) -> bool {
        Instant::now() >= self.next_heartbeat
    }

    pub fn commit_due(&self) -> bool {
        self.last_commit.elapsed() >= COMMIT_INTERVAL
    }

    /// Heartbeats, and applies what the answer changes to `positions`:
    /// revoked partitions are committed and dropped, added ones start from
    /// the group's committed offsets or `start`.
    pub async fn heartbeat(
        &mut self,
        client: &mut Client,
        topic: &str,
        start: Position,
        positions: &mut BTreeMap<i32, i64>,
    ) -> Result<(), CliError> {
        let sent = client
            .call(
                Some(self.coordinator),
                ApiKey::ConsumerGroupHeartbeat,
                HEARTBEAT_VERSION,
                &self.member.heartbeat(),
            )
            .await;
        let next = match sent {
            Ok(answer) => {
                let answer: ConsumerGroupHeartbeatResponse = answer;
                self.member.apply(&answer)?
            }
            // The coordinator went away: another broker takes it over.
            Err(CliError::Unreachable(_)) => Next::Rediscover,
            Err(e) => return Err(e),
        };
        let change = match next {
            Next::Rediscover => {
                self.coordinator = client.group_coordinator(&self.member.group).await?;
                self.next_heartbeat = Instant::now() + REDISCOVER_AFTER;
                return Ok(());
            }
            Next::Go(change) => change,
        };
        if !change.revoked.is_empty() {
            let revoked: BTreeMap<i32, i64> = positions
                .iter()
                .filter(|(p, _)| change.revoked.contains(p))
                .map(|(p, o)| (*p, *o))
                .collect();
            self.commit_positions(client, topic, &revoked).await?;
        }
        for partition in change.revoked.iter().chain(&change.lost) {
            positions.remove(partition);
            self.committed.remove(partition);
        }
        if !change.added.is_empty() {
            self.start(client, topic, &change.added, start, positions).await?;
        }
        // A change is acknowledged at once, so the coordinator can hand
        // revoked partitions on without waiting a whole interval.
        self.next_heartbeat = Instant::now() + if change.is_empty() { self.member.interval } else { Duration::ZERO };
        Ok(())
    }

    /// Positions for newly assigned partitions: the group's committed
    /// offsets, or `start` where it has none.
    async fn start(
        &mut self,
        client: &mut Client,
        topic: &str,
        added: &BTreeSet<i32>,
        start: Position,
        positions: &mut BTreeMap<i32, i64>,
    ) -> Result<(), CliError> {
        let committed = super::group::committed_offsets(client, self.coordinator, &self.member.group).await?;
        let keys: Vec<(String, i32)> = added.iter().map(|p| (topic.to_string(), *p)).collect();
        let located = client.locate(&keys, start).await?;
        for key in keys {
            let position = match committed.get(&key) {
                Some(offset) => {
                    self.committed.insert(key.1, *offset);
                    *offset
                }
                None => {
                    let at = located.get(&key).copied().unwrap_or_default();
                    start.resolve(at.start.unwrap_or(0), at.end.unwrap_or(0), at.at_time)
                }
            };
            positions.insert(key.1, position);
        }
        Ok(())
    }

    /// Commits the positions that moved since the last commit.
    pub async fn commit(&mut self, client: &mut Client, topic: &str, positions: &BTreeMap<i32, i64>) -> Result<(), CliError> {
        self.last_commit = Instant::now();
        self.commit_positions(client, topic, positions).await
    }

    async fn commit_positions(&mut self, client: &mut Client, topic: &str, positions: &BTreeMap<i32, i64>) -> Result<(), CliError> {
        let moved: Vec<(i32, i64)> = positions
            .iter()
            .filter(|(p, offset)| self.committed.get(p) != Some(offset))
            .map(|(p, offset)| (*p, *offset))
            .collect();
        if moved.is_empty() || self.member.epoch <= 0 {
            return Ok(());
        }
        let member = Some((self.member.id.as_str(), self.member.epoch));
        match super::group::commit_offsets(client, self.coordinator, &self.member.group, topic, &moved, member).await {
            Ok(()) => {
                self.committed.extend(moved);
                Ok(())
            }
            // A rebalance moved the member's epoch: the next heartbeat
            // brings the new one, and the next commit these positions.
            Err(CliError::Kafka { code, .. }) if rebalancing(code) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Commits what was printed and leaves the group, handing its
    /// partitions on at once.
    pub async fn finish(&mut self, client: &mut Client, topic: &str, positions: &BTreeMap<i32, i64>) -> Result<(), CliError> {
        if self.member.epoch <= 0 {
            return Ok(());
        }
        let committed = self.commit(client, topic, positions).await;
        let left: Result<ConsumerGroupHeartbeatResponse, CliError> = client
            .call(
                Some(self.coordinator),
                ApiKey::ConsumerGroupHeartbeat,
                HEARTBEAT_VERSION,
                &self.member.leave(),
            )
            .await;
        // Not leaving is not a failure: the session times out.
        if let Err(e) = left {
            tracing::warn!(error = ?e, "could not leave the group; it notices at the session timeout");
        }
        committed
    }
}

/// Commit refusals that a rebalance explains, retried once it settles.
fn rebalancing(code: i16) -> bool {
    [
        ResponseError::StaleMemberEpoch,
        ResponseError::FencedMemberEpoch,
        ResponseError::UnknownMemberId,
        ResponseError::RebalanceInProgress,
    ]
    .iter()
    .any(|e| e.code() == code)
}
