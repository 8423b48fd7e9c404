//! One transactional id's state and Kafka's transaction rules, as pure
//! logic: every transition the coordinator makes is a method here, unit
//! tested without I/O. The coordinator persists the result of each and
//! carries out what it asks for (markers, offset commits).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::groups::offsets::CommittedOffset;

/// Kafka's transaction states (`TransactionState`), as ListTransactions and
/// DescribeTransactions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Why a transactional request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// The producer's epoch is not the current one (a zombie):
    /// PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH for older request versions.
    Fenced,
    /// The producer id is not this transactional id's.
    InvalidProducerIdMapping,
    /// The request does not fit the state (INVALID_TXN_STATE).
    InvalidState,
    /// A commit or abort is still being completed (retriable).
    Concurrent,
    /// The timeout is over `transaction_max_timeout_ms` (or not positive).
    InvalidTimeout,
}

/// An offset committed inside a transaction, applied when it commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

/// What completing a transaction takes: a marker in every partition it
/// wrote to (with the producer's current epoch) and, for a commit, its
/// offsets in their groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub transactional_id: String,
    pub commit: bool,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
    pub offsets: BTreeMap<String, Vec<PendingOffset>>,
}

/// What InitProducerId leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The producer's id and new epoch.
    Ready { producer_id: i64, producer_epoch: i16 },
    /// An open transaction must be aborted first (the epoch is bumped
    /// already, fencing the previous producer); then InitProducerId runs again.
    AbortFirst(Completion),
}

/// What EndTxn leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Write the markers (and offsets), then `complete`.
    Complete(Completion),
    /// A retry of an EndTxn already completed: answer success.
    AlreadyDone,
}

/// One transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the coordinator bumped it on its own (a timeout or
    /// a fencing abort), -1 if none: the producer may still recover from it
    /// with InitProducerId (KIP-360).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn, with the offsets staged for each.
    pub offsets: BTreeMap<String, Vec<PendingOffset>>,
    /// When the open transaction began (its first AddPartitions/AddOffsets).
    pub started_ms: i64,
    pub updated_ms: i64,
}

/// The highest epoch a producer id is used with; past it a new id is issued.
const MAX_EPOCH: i16 = i16::MAX - 1;

impl TxnMetadata {
    /// A transactional id seen for the first time; `init` gives it epoch 0.
    pub fn new(transactional_id: &str, producer_id: i64, now_ms: i64) -> Self {
        Self {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms: 0,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            offsets: BTreeMap::new(),
            started_ms: -1,
            updated_ms: now_ms,
        }
    }

    /// InitProducerId: a new epoch for the producer (a new id once the
    /// epoch is used up), fencing every older one. `expected` is the id and
    /// epoch a producer recovering under KIP-360 says it has.
    pub fn init(
        &mut self,
        expected: Option<(i64, i16)>,
        timeout_ms: i32,
        max_timeout_ms: i32,
        now_ms: i64,
        fresh_producer_id: impl FnOnce() -> i64,
    ) -> Result<InitOutcome, TxnError> {
        if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
            return Err(TxnError::InvalidTimeout);
        }
        if self.state.is_preparing() {
            return Err(TxnError::Concurrent);
        }
        if let Some((producer_id, epoch)) = expected {
            let current =
                producer_id == self.producer_id && (epoch == self.producer_epoch || (epoch == self.last_producer_epoch && epoch >= 0));
            if !current {
                return Err(TxnError::Fenced);
            }
        }
        self.updated_ms = now_ms;
        if self.state == TxnState::Ongoing {
            return Ok(InitOutcome::AbortFirst(self.begin_abort_with_bump()));
        }
        if self.producer_epoch >= MAX_EPOCH {
            self.producer_id = fresh_producer_id();
            self.producer_epoch = 0;
        } else {
            self.producer_epoch += 1;
        }
        self.last_producer_epoch = -1;
        self.timeout_ms = timeout_ms;
        self.state = TxnState::Empty;
        self.partitions.clear();
        self.offsets.clear();
        self.started_ms = -1;
        Ok(InitOutcome::Ready {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
        })
    }

    /// The producer's id and epoch must be the current ones.
    pub fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if producer_epoch != self.producer_epoch {
            return Err(TxnError::Fenced);
        }
        Ok(())
    }

    /// Opens the transaction if it is not open yet.
    fn begin(&mut self, producer_id: i64, producer_epoch: i16, now_ms: i64) -> Result<(), TxnError> {
        self.check_producer(producer_id, producer_epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(TxnError::Concurrent),
            TxnState::Ongoing => {}
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                self.state = TxnState::Ongoing;
                self.partitions.clear();
                self.offsets.clear();
                self.started_ms = now_ms;
            }
        }
        self.updated_ms = now_ms;
        Ok(())
    }

    /// AddPartitionsToTxn. Returns whether anything changed (a retry of a
    /// request already applied changes nothing and needs no write).
    pub fn add_partitions(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<bool, TxnError> {
        let was_ongoing = self.state == TxnState::Ongoing;
        self.begin(producer_id, producer_epoch, now_ms)?;
        let mut changed = !was_ongoing;
        for p in partitions {
            changed |= self.partitions.insert(p.clone());
        }
        Ok(changed)
    }

    /// AddOffsetsToTxn: the group's offsets will commit with the transaction.
    pub fn add_group(&mut self, producer_id: i64, producer_epoch: i16, group: &str, now_ms: i64) -> Result<bool, TxnError> {
        let was_ongoing = self.state == TxnState::Ongoing;
        self.begin(producer_id, producer_epoch, now_ms)?;
        let added = !self.offsets.contains_key(group);
        self.offsets.entry(group.to_string()).or_default();
        Ok(added || !was_ongoing)
    }

    /// TxnOffsetCommit: stages offsets of a group added to the open
    /// transaction (a later offset for the same partition replaces it).
    pub fn stage_offsets(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
        offsets: Vec<PendingOffset>,
        now_ms: i64,
    ) -> Result<(), TxnError> {
        self.check_producer(producer_id, producer_epoch)?;
        if self.state.is_preparing() {
            return Err(TxnError::Concurrent);
        }
        let Some(staged) = self.offsets.get_mut(group).filter(|_| self.state == TxnState::Ongoing) else {
            return Err(TxnError::InvalidState);
        };
        for offset in offsets {
            staged.retain(|o| (o.topic.as_str(), o.partition) != (offset.topic.as_str(), offset.partition));
            staged.push(offset);
        }
        self.updated_ms = now_ms;
        Ok(())
    }

    /// EndTxn: commit or abort the open transaction.
    pub fn end(&mut self, producer_id: i64, producer_epoch: i16, commit: bool, now_ms: i64) -> Result<EndOutcome, TxnError> {
        self.check_producer(producer_id, producer_epoch)?;
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                self.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                self.updated_ms = now_ms;
                self.completion().map(EndOutcome::Complete).ok_or(TxnError::InvalidState)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(EndOutcome::AlreadyDone),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(TxnError::Concurrent),
            _ => Err(TxnError::InvalidState),
        }
    }

    /// Whether the open transaction has outlived its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && now_ms.saturating_sub(self.started_ms) > i64::from(self.timeout_ms)
    }

    /// Aborts the open transaction on the coordinator's own account (a
    /// timeout, or a new producer with the same id), bumping the epoch so
    /// the producer that opened it is fenced.
    pub fn begin_abort_with_bump(&mut self) -> Completion {
        if self.producer_epoch < MAX_EPOCH {
            self.last_producer_epoch = self.producer_epoch;
            self.producer_epoch += 1;
        }
        self.state = TxnState::PrepareAbort;
        Completion {
            transactional_id: self.transactional_id.clone(),
            commit: false,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            partitions: self.partitions.iter().cloned().collect(),
            offsets: BTreeMap::new(),
        }
    }

    /// What completing a prepared transaction takes; `None` unless one is
    /// being prepared (also what a restarted coordinator resumes).
    pub fn completion(&self) -> Option<Completion> {
        let commit = match self.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return None,
        };
        Some(Completion {
            transactional_id: self.transactional_id.clone(),
            commit,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            partitions: self.partitions.iter().cloned().collect(),
            offsets: if commit { self.offsets.clone() } else { BTreeMap::new() },
        })
    }

    /// Every marker is written: the transaction is complete.
    pub fn complete(&mut self, now_ms: i64) {
        self.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        self.partitions.clear();
        self.offsets.clear();
        self.started_ms = -1;
        self.updated_ms = now_ms;
    }

    /// Produce verification (KIP-890 part 1): a transactional batch is
    /// accepted only for a partition added to the producer's open
    /// transaction, so a late write cannot open a transaction that no
    /// marker will ever end.
    pub fn verify_write(&self, producer_id: i64, producer_epoch: i16, topic: &str, partition: i32) -> Result<(), TxnError> {
        self.check_producer(producer_id, producer_epoch)?;
        if self.state != TxnState::Ongoing || !self.partitions.contains(&(topic.to_string(), partition)) {
            return Err(TxnError::InvalidState);
        }
        Ok(())
    }

    /// Whether an idle id may be forgotten (`transactional_id_expiration_ms`).
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        matches!(self.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
            && now_ms.saturating_sub(self.updated_ms) > expiration_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i32 = 900_000;

    fn ready(m: &mut TxnMetadata, expected: Option<(i64, i16)>) -> (i64, i16) {
        match m.init(expected, 60_000, MAX, 0, || 99).unwrap() {
            InitOutcome::Ready {
                producer_id,
                producer_epoch,
            } => (producer_id, producer_epoch),
            other => panic!("{other:?}"),
        }
    }

    fn parts(names: &[(&str, i32)]) -> Vec<(String, i32)> {
        names.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn offset(topic: &str, partition: i32, at: i64) -> PendingOffset {
        PendingOffset {
            topic: topic.into(),
            partition,
            offset: CommittedOffset {
                offset: at,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp_ms: 0,
            },
        }
    }

    #[test]
    fn a_transaction_commits_its_partitions_and_offsets() {
        let mut m = TxnMetadata::new("t", 7, 0);
        assert_eq!(ready(&mut m, None), (7, 0));
        assert_eq!(m.add_partitions(7, 0, &parts(&[("out", 0), ("out", 1)]), 10), Ok(true));
        assert_eq!(
            m.add_partitions(7, 0, &parts(&[("out", 1)]), 11),
            Ok(false),
            "a retry changes nothing"
        );
        assert!(m.verify_write(7, 0, "out", 1).is_ok());
        assert_eq!(m.verify_write(7, 0, "out", 2), Err(TxnError::InvalidState));
        assert_eq!(m.add_group(7, 0, "g", 12), Ok(true));
        m.stage_offsets(7, 0, "g", vec![offset("in", 0, 5)], 13).unwrap();
        m.stage_offsets(7, 0, "g", vec![offset("in", 0, 9)], 14).unwrap();
        let EndOutcome::Complete(done) = m.end(7, 0, true, 15).unwrap() else {
            panic!()
        };
        assert!(done.commit);
        assert_eq!(done.partitions, parts(&[("out", 0), ("out", 1)]));
        assert_eq!(done.offsets["g"], vec![offset("in", 0, 9)], "the latest staged offset wins");
        assert_eq!(m.end(7, 0, true, 16), Err(TxnError::Concurrent), "still completing");
        assert_eq!(m.add_partitions(7, 0, &parts(&[("out", 0)]), 16), Err(TxnError::Concurrent));
        m.complete(17);
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert_eq!(m.end(7, 0, true, 18), Ok(EndOutcome::AlreadyDone), "a retried EndTxn succeeds");
        assert_eq!(m.end(7, 0, false, 18), Err(TxnError::InvalidState));
        assert_eq!(
            m.verify_write(7, 0, "out", 0),
            Err(TxnError::InvalidState),
            "a late write is refused"
        );
    }

    #[test]
    fn an_abort_carries_no_offsets() {
        let mut m = TxnMetadata::new("t", 7, 0);
        ready(&mut m, None);
        m.add_group(7, 0, "g", 1).unwrap();
        m.stage_offsets(7, 0, "g", vec![offset("in", 0, 5)], 2).unwrap();
        let EndOutcome::Complete(done) = m.end(7, 0, false, 3).unwrap() else {
            panic!()
        };
        assert!(!done.commit && done.offsets.is_empty());
    }

    #[test]
    fn a_new_producer_fences_the_old_and_aborts_its_transaction() {
        let mut m = TxnMetadata::new("t", 7, 0);
        ready(&mut m, None);
        m.add_partitions(7, 0, &parts(&[("out", 0)]), 1).unwrap();
        let InitOutcome::AbortFirst(abort) = m.init(None, 60_000, MAX, 2, || 99).unwrap() else {
            panic!()
        };
        assert_eq!((abort.commit, abort.producer_epoch, abort.partitions.len()), (false, 1, 1));
        assert_eq!(m.init(None, 60_000, MAX, 2, || 99), Err(TxnError::Concurrent));
        m.complete(3);
        assert_eq!(ready(&mut m, None), (7, 2));
        // The zombie at epoch 0 is fenced everywhere.
        assert_eq!(m.add_partitions(7, 0, &parts(&[("out", 0)]), 4), Err(TxnError::Fenced));
        assert_eq!(m.end(7, 0, true, 4), Err(TxnError::Fenced));
        assert_eq!(m.verify_write(7, 0, "out", 0), Err(TxnError::Fenced));
        assert_eq!(
            m.add_partitions(8, 2, &parts(&[("out", 0)]), 4),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            m.init(Some((7, 0)), 60_000, MAX, 4, || 99),
            Err(TxnError::Fenced),
            "KIP-360 with a stale epoch"
        );
    }

    #[test]
    fn a_timed_out_transaction_is_aborted_and_its_producer_may_recover() {
        let mut m = TxnMetadata::new("t", 7, 0);
        ready(&mut m, None);
        m.add_partitions(7, 0, &parts(&[("out", 0)]), 1_000).unwrap();
        assert!(!m.timed_out(61_000));
        assert!(m.timed_out(61_001));
        let abort = m.begin_abort_with_bump();
        assert_eq!((abort.producer_epoch, m.last_producer_epoch), (1, 0));
        m.complete(61_002);
        assert_eq!(m.end(7, 0, true, 61_003), Err(TxnError::Fenced));
        // KIP-360: the producer that timed out recovers with its old epoch.
        assert_eq!(ready(&mut m, Some((7, 0))), (7, 2));
        assert_eq!(m.last_producer_epoch, -1);
    }

    #[test]
    fn the_epoch_rolls_over_to_a_new_producer_id_and_timeouts_are_bounded() {
        let mut m = TxnMetadata::new("t", 7, 0);
        m.producer_epoch = MAX_EPOCH;
        assert_eq!(ready(&mut m, None), (99, 0));
        assert_eq!(m.init(None, MAX + 1, MAX, 0, || 1), Err(TxnError::InvalidTimeout));
        assert_eq!(m.init(None, 0, MAX, 0, || 1), Err(TxnError::InvalidTimeout));
    }

    #[test]
    fn offsets_need_their_group_added_and_an_open_transaction() {
        let mut m = TxnMetadata::new("t", 7, 0);
        ready(&mut m, None);
        assert_eq!(m.stage_offsets(7, 0, "g", vec![], 1), Err(TxnError::InvalidState));
        m.add_partitions(7, 0, &parts(&[("out", 0)]), 1).unwrap();
        assert_eq!(m.stage_offsets(7, 0, "g", vec![], 1), Err(TxnError::InvalidState));
        assert_eq!(m.end(7, 1, true, 1), Err(TxnError::Fenced));
    }

    #[test]
    fn only_idle_ids_expire() {
        let mut m = TxnMetadata::new("t", 7, 0);
        ready(&mut m, None);
        assert!(m.expired(1_001, 1_000));
        m.add_partitions(7, 0, &parts(&[("out", 0)]), 0).unwrap();
        assert!(!m.expired(10_000, 1_000));
    }
}
