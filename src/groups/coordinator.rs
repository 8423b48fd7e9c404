//! The async shell around `state_machine::Group`: one mutex over all groups,
//! oneshot channels for requests the state machine answers later (JoinGroup,
//! SyncGroup), and one timer task that drives `tick` at each group's next
//! deadline.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, Notify};

use super::offsets::OffsetStore;
use super::state_machine::{Group, JoinInput, JoinOutput, MemberDescription, Reply, SyncInput, SyncOutput};
use crate::clock::now_ms;
use crate::config::Config;
use crate::metrics::{GroupLabels, LagLabels, Metrics};

/// A snapshot of one group for DescribeGroups and ListGroups.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_token: AtomicU64,
    pub offsets: OffsetStore,
    /// Wakes the timer task when a deadline may have moved earlier.
    deadlines_changed: Notify,
    initial_rebalance_delay_ms: i64,
    min_session_timeout_ms: i64,
    max_session_timeout_ms: i64,
    max_size: usize,
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
        })
    }

    fn deliver(&self, replies: Vec<Reply>) {
        if replies.is_empty() {
            return;
        }
        let Ok(mut waiters) = self.waiters.lock() else { return };
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

    /// Runs `f` on the group (created if absent or dead) and delivers the
    /// replies it releases.
    fn with_group<T>(&self, group_id: &str, f: impl FnOnce(&mut Group) -> (T, Vec<Reply>)) -> Option<T> {
        let (out, replies) = {
            let mut groups = self.groups.lock().ok()?;
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id.to_string(), self.initial_rebalance_delay_ms, self.max_size));
            if group.state() == super::state_machine::GroupState::Dead {
                *group = Group::new(group_id.to_string(), self.initial_rebalance_delay_ms, self.max_size);
            }
            f(group)
        };
        self.deliver(replies);
        self.deadlines_changed.notify_one();
        Some(out)
    }

    fn register(&self) -> (u64, oneshot::Receiver<Reply>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.insert(token, tx);
        }
        (token, rx)
    }

    pub async fn join(&self, group_id: &str, input: JoinInput) -> JoinOutput {
        if group_id.is_empty() {
            return join_error(ResponseError::InvalidGroupId.code(), input.member_id);
        }
        if input.session_timeout_ms < self.min_session_timeout_ms || input.session_timeout_ms > self.max_session_timeout_ms {
            return join_error(ResponseError::InvalidSessionTimeout.code(), input.member_id);
        }
        let member_id = input.member_id.clone();
        let new_member_id = format!("{}-{}", input.client_id, uuid::Uuid::new_v4());
        let (token, rx) = self.register();
        let now = now_ms();
        if self
            .with_group(group_id, |g| ((), g.join(now, token, input, new_member_id)))
            .is_none()
        {
            return join_error(ResponseError::CoordinatorNotAvailable.code(), member_id);
        }
        match rx.await {
            Ok(Reply::Join { output, .. }) => output,
            _ => join_error(ResponseError::UnknownServerError.code(), member_id),
        }
    }

    pub async fn sync(&self, group_id: &str, input: SyncInput) -> SyncOutput {
        let (token, rx) = self.register();
        let now = now_ms();
        if self.with_group(group_id, |g| ((), g.sync(now, token, input))).is_none() {
            return sync_error(ResponseError::CoordinatorNotAvailable.code());
        }
        match rx.await {
            Ok(Reply::Sync { output, .. }) => output,
            _ => sync_error(ResponseError::UnknownServerError.code()),
        }
    }

    fn existing<T>(&self, group_id: &str, f: impl FnOnce(&mut Group) -> (T, Vec<Reply>)) -> Option<T> {
        let (out, replies) = {
            let mut groups = self.groups.lock().ok()?;
            f(groups.get_mut(group_id)?)
        };
        self.deliver(replies);
        self.deadlines_changed.notify_one();
        Some(out)
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation_id: i32) -> i16 {
        let now = now_ms();
        self.existing(group_id, |g| (g.heartbeat(now, member_id, instance_id, generation_id), Vec::new()))
            .unwrap_or(ResponseError::UnknownMemberId.code())
    }

    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let now = now_ms();
        self.existing(group_id, |g| g.leave(now, members))
            .unwrap_or_else(|| vec![ResponseError::UnknownMemberId.code(); members.len()])
    }

    /// Checks a commit against the group's membership and generation.
    pub fn validate_commit(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation_id: i32) -> Result<(), i16> {
        let now = now_ms();
        if generation_id < 0 && member_id.is_empty() {
            // A standalone commit (assign() consumers, admin tools) is
            // allowed while the group has no active members.
            return match self.existing(group_id, |g| (g.is_empty(), Vec::new())) {
                Some(false) => Err(ResponseError::UnknownMemberId.code()),
                _ => Ok(()),
            };
        }
        self.existing(group_id, |g| {
            (g.validate_commit(now, member_id, instance_id, generation_id), Vec::new())
        })
        .unwrap_or(Err(ResponseError::UnknownMemberId.code()))
    }

    pub fn describe(&self, group_id: &str) -> GroupSummary {
        let summary = self.groups.lock().ok().and_then(|groups| {
            groups.get(group_id).map(|g| GroupSummary {
                group_id: group_id.to_string(),
                state: g.state().as_str(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                protocol_name: g.protocol_name().unwrap_or_default().to_string(),
                members: g.members(),
            })
        });
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
        })
    }

    pub fn list(&self) -> Vec<GroupSummary> {
        let mut ids: Vec<String> = self.groups.lock().map(|g| g.keys().cloned().collect()).unwrap_or_default();
        ids.extend(self.offsets.groups());
        ids.sort();
        ids.dedup();
        ids.iter().map(|id| self.describe(id)).filter(|s| s.state != "Dead").collect()
    }

    /// DeleteGroups: only groups with no members; their offsets go too.
    pub async fn delete(&self, group_id: &str) -> Result<(), i16> {
        let known = self.offsets.groups().iter().any(|g| g == group_id);
        match self.existing(group_id, |g| (g.delete(), Vec::new())) {
            Some(Err(code)) => return Err(code),
            None if !known => return Err(ResponseError::GroupIdNotFound.code()),
            _ => {}
        }
        if let Ok(mut groups) = self.groups.lock() {
            groups.remove(group_id);
        }
        self.offsets
            .delete_group(group_id)
            .await
            .map_err(|_| ResponseError::KafkaStorageError.code())
    }

    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .lock()
            .ok()
            .and_then(|g| g.get(group_id).map(|g| !g.is_empty()))
            .unwrap_or(false)
    }

    /// Runs `tick` on every group at its next deadline, forever.
    pub async fn run_timers(&self) {
        loop {
            let next = self
                .groups
                .lock()
                .ok()
                .and_then(|groups| groups.values().filter_map(Group::next_deadline).min());
            let now = now_ms();
            let wait = next.map(|deadline| (deadline - now).max(0) as u64).unwrap_or(60_000);
            tokio::select! {
                _ = self.deadlines_changed.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            }
            let now = now_ms();
            let replies: Vec<Reply> = match self.groups.lock() {
                Ok(mut groups) => groups.values_mut().flat_map(|g| g.tick(now)).collect(),
                Err(_) => return,
            };
            self.deliver(replies);
        }
    }

    pub fn update_gauges(&self, metrics: &Metrics, high_watermarks: &HashMap<(String, i32), i64>) {
        metrics.group_lag.clear();
        metrics.group_members.clear();
        for group in self.offsets.groups() {
            for (topic, partition, committed) in self.offsets.group_offsets(&group) {
                if let Some(hw) = high_watermarks.get(&(topic.clone(), partition)) {
                    let labels = LagLabels {
                        group: group.clone(),
                        topic,
                        partition: partition.to_string(),
                    };
                    metrics.group_lag.get_or_create(&labels).set((hw - committed.offset).max(0));
                }
            }
        }
        if let Ok(groups) = self.groups.lock() {
            for (id, g) in groups.iter() {
                metrics
                    .group_members
                    .get_or_create(&GroupLabels { group: id.clone() })
                    .set(g.members().len() as i64);
            }
        }
    }
}
