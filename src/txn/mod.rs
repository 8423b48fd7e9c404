//! The transaction coordinator: every transactional id's state (pure rules
//! in `state`), persisted as JSON lines in `meta/transactions.jsonl` before a
//! request is answered, and the completion of each transaction: a commit or
//! abort marker in every partition it wrote to, and its offsets in their
//! groups. A transaction whose completion was cut short (a crash, a failed
//! marker write) is completed again by the timer loop, which also aborts
//! transactions past their timeout and forgets idle ids.

pub mod state;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use self::state::{Completion, EndOutcome, InitOutcome, PendingOffset, TxnError, TxnMetadata};
use crate::coordination::BoxFuture;
use crate::groups::offsets::CommittedOffset;
use crate::line_file::LineFile;
use crate::log::Marker;

/// The coordinator's bounds and timers (see docs/configuration.md).
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// Kafka's `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// Kafka's `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
    /// Transactional ids kept at once; a new id past it is refused.
    pub max_ids: usize,
    /// How often timeouts, unfinished completions and expiry are checked.
    pub check_interval_ms: u64,
}

/// What completing a transaction needs from the broker.
pub trait TxnSink: Send + Sync {
    /// Appends the marker to each partition (through its leader) and waits
    /// until their ISRs hold it. A partition that no longer exists needs no
    /// marker.
    fn write_markers<'a>(&'a self, partitions: &'a [(String, i32)], marker: Marker) -> BoxFuture<'a, Result<(), String>>;
    /// Commits a transaction's offsets in their group.
    fn commit_offsets(&self, group: &str, offsets: Vec<(String, i32, CommittedOffset)>) -> BoxFuture<'_, Result<(), String>>;
    /// A producer id never issued before.
    fn fresh_producer_id(&self) -> BoxFuture<'_, Result<i64, String>>;
    /// A transaction was completed (for the metrics).
    fn completed(&self, commit: bool);
}

/// Why a coordinator request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorError {
    Txn(TxnError),
    /// The id is not known (a request other than InitProducerId).
    UnknownId,
    /// `max_ids` transactional ids are kept already.
    Full,
    /// The state could not be persisted, or an id could not be issued.
    Unavailable(String),
    /// In a cluster: another broker coordinates the id (NOT_COORDINATOR),
    /// or this one is loading it (COORDINATOR_LOAD_IN_PROGRESS); the code.
    NotHere(i16),
}

/// Where a cluster makes transaction state durable before it is applied:
/// the id's partition of the replicated `__transaction_state` topic
/// (`cluster::transactions`). The table then holds the ids of the
/// partitions this broker leads, loaded from their logs.
pub trait TxnReplicator: Send + Sync {
    /// The coordinator epoch (the shard's leader epoch) if this broker
    /// coordinates the id now, else the error code a request gets.
    fn owner_epoch(&self, transactional_id: &str) -> Result<i32, i16>;
    /// Makes the line durable on the ISR of the id's partition.
    fn replicate(&self, transactional_id: &str, line: Vec<u8>) -> BoxFuture<'_, std::io::Result<()>>;
}

impl From<TxnError> for CoordinatorError {
    fn from(e: TxnError) -> Self {
        CoordinatorError::Txn(e)
    }
}

/// One line of the transactions file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Put { txn: TxnMetadata },
    Remove { transactional_id: String },
}

type Table = HashMap<String, TxnMetadata>;

impl Line {
    fn id(&self) -> &str {
        match self {
            Line::Put { txn } => &txn.transactional_id,
            Line::Remove { transactional_id } => transactional_id,
        }
    }

    /// The change the line records, made to `table`.
    fn apply_to(self, table: &mut Table) {
        match self {
            Line::Put { txn } => {
                table.insert(txn.transactional_id.clone(), txn);
            }
            Line::Remove { transactional_id } => {
                table.remove(&transactional_id);
            }
        }
    }
}

pub struct TxnCoordinator {
    config: TxnConfig,
    table: Arc<Mutex<Table>>,
    file: Arc<Mutex<LineFile>>,
    /// One turn per transactional id: its requests change it one at a time,
    /// from the decision through persistence and completion.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// A cluster's replicated log of changes; unset on a single node.
    replicator: std::sync::OnceLock<Arc<dyn TxnReplicator>>,
}

fn compact(table: &Table) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for txn in table.values() {
        serde_json::to_writer(&mut out, &Line::Put { txn: txn.clone() }).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    Ok(out)
}

impl TxnCoordinator {
    /// Loads `meta/transactions.jsonl`; a torn last line (never answered)
    /// is skipped.
    pub fn open(meta_dir: &Path, config: TxnConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(meta_dir)?;
        let path = meta_dir.join("transactions.jsonl");
        let mut table = Table::new();
        crate::line_file::read_lines(&path, "transactions.jsonl", |line: Line| line.apply_to(&mut table))?;
        let file = LineFile::rewrite_and_open(&path, &compact(&table)?)?;
        Ok(Self {
            config,
            table: Arc::new(Mutex::new(table)),
            file: Arc::new(Mutex::new(file)),
            turns: Mutex::new(HashMap::new()),
            replicator: std::sync::OnceLock::new(),
        })
    }

    /// In a cluster: changes replicate through `replicator`, and the table
    /// holds only the ids this broker coordinates (see `reload`).
    pub fn set_replicator(&self, replicator: Arc<dyn TxnReplicator>) {
        if self.replicator.set(replicator).is_ok() {
            // What a single node left in the file is not this cluster's.
            self.table.lock().clear();
        }
    }

    /// The coordinator epoch if this broker coordinates the id now (0 on a
    /// single node), else `NotHere` with the code to answer.
    pub fn here(&self, transactional_id: &str) -> Result<i32, CoordinatorError> {
        match self.replicator.get() {
            None => Ok(0),
            Some(r) => r.owner_epoch(transactional_id).map_err(CoordinatorError::NotHere),
        }
    }

    /// A coordinator taking over a shard: forgets the ids `belongs` selects
    /// and applies `lines` (the shard's replicated changes, in order). A
    /// line that does not parse is skipped with a warning. Returns the ids
    /// loaded.
    pub fn reload(&self, belongs: impl Fn(&str) -> bool, lines: &[bytes::Bytes]) -> usize {
        let mut loaded = Table::new();
        for line in lines {
            match serde_json::from_slice::<Line>(line) {
                Ok(line) if belongs(line.id()) => line.apply_to(&mut loaded),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable transaction state record"),
            }
        }
        let count = loaded.len();
        let mut table = self.table.lock();
        table.retain(|id, _| !belongs(id));
        table.extend(loaded);
        count
    }

    /// A coordinator losing shards: forgets the ids `belongs` selects.
    /// Returns how many.
    pub fn forget(&self, belongs: impl Fn(&str) -> bool) -> usize {
        let mut table = self.table.lock();
        let before = table.len();
        table.retain(|id, _| !belongs(id));
        let forgotten = before - table.len();
        drop(table);
        self.turns.lock().retain(|id, _| !belongs(id));
        forgotten
    }

    fn turn(&self, transactional_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.turns.lock().entry(transactional_id.to_string()).or_default().clone()
    }

    /// The id's turn if the id is known: requests naming unknown ids
    /// (any string a client sends) must not leave turns behind.
    fn known_turn(&self, transactional_id: &str) -> Result<Arc<tokio::sync::Mutex<()>>, CoordinatorError> {
        self.here(transactional_id)?;
        if !self.table.lock().contains_key(transactional_id) {
            return Err(CoordinatorError::UnknownId);
        }
        Ok(self.turn(transactional_id))
    }

    fn get(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.table.lock().get(transactional_id).cloned()
    }

    /// Appends the line durably, then applies it to the table, in a blocking
    /// thread that runs to the end even if the caller goes away.
    async fn persist(&self, line: Line) -> Result<(), CoordinatorError> {
        if let Some(replicator) = self.replicator.get() {
            let bytes = serde_json::to_vec(&line).map_err(|e| CoordinatorError::Unavailable(e.to_string()))?;
            replicator.replicate(line.id(), bytes).await.map_err(|e| {
                tracing::warn!(transactional_id = %line.id(), error = %e, "cannot replicate transaction state");
                CoordinatorError::Unavailable(e.to_string())
            })?;
            line.apply_to(&mut self.table.lock());
            return Ok(());
        }
        let file = self.file.clone();
        let table = self.table.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = file.lock();
            let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            file.append(&bytes)?;
            let mut table = table.lock();
            line.apply_to(&mut table);
            if file.needs_compaction() {
                let compacted = compact(&table);
                drop(table);
                if let Err(e) = compacted.and_then(|bytes| file.rewrite(&bytes)) {
                    tracing::warn!(error = %e, "cannot compact the transactions file");
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| CoordinatorError::Unavailable(e.to_string()))?
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot persist transaction state");
            CoordinatorError::Unavailable(e.to_string())
        })
    }

    async fn put(&self, txn: &TxnMetadata) -> Result<(), CoordinatorError> {
        self.persist(Line::Put { txn: txn.clone() }).await
    }

    /// InitProducerId for a transactional id: its producer id and a new
    /// epoch, after aborting any transaction the previous producer left open.
    pub async fn init_producer_id(
        &self,
        sink: &dyn TxnSink,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<(i64, i16), CoordinatorError> {
        self.here(transactional_id)?;
        {
            let table = self.table.lock();
            if !table.contains_key(transactional_id) && table.len() >= self.config.max_ids {
                return Err(CoordinatorError::Full);
            }
        }
        let turn = self.turn(transactional_id);
        let _turn = turn.lock().await;
        let mut txn = match self.get(transactional_id) {
            Some(txn) => txn,
            None => {
                if self.table.lock().len() >= self.config.max_ids {
                    return Err(CoordinatorError::Full);
                }
                let producer_id = sink.fresh_producer_id().await.map_err(CoordinatorError::Unavailable)?;
                TxnMetadata::new(transactional_id, producer_id, now_ms)
            }
        };
        // A producer id for the rare epoch rollover, drawn only then.
        let rollover_id = if txn.producer_epoch >= i16::MAX - 2 {
            Some(sink.fresh_producer_id().await.map_err(CoordinatorError::Unavailable)?)
        } else {
            None
        };
        let mut fresh = rollover_id;
        loop {
            let fallback = txn.producer_id;
            match txn.init(expected, timeout_ms, self.config.max_timeout_ms, now_ms, || {
                fresh.take().unwrap_or(fallback)
            })? {
                InitOutcome::Ready {
                    producer_id,
                    producer_epoch,
                } => {
                    self.put(&txn).await?;
                    tracing::debug!(transactional_id, producer_id, producer_epoch, "transactional producer initialized");
                    return Ok((producer_id, producer_epoch));
                }
                InitOutcome::AbortFirst(completion) => {
                    tracing::info!(transactional_id, "a new producer fences the previous one: aborting its transaction");
                    self.put(&txn).await?;
                    self.carry_out(sink, &completion).await.map_err(CoordinatorError::Unavailable)?;
                    txn.complete(now_ms);
                    self.put(&txn).await?;
                }
            }
        }
    }

    /// Runs `change` on the id's state under its turn and persists the
    /// result if `change` says it changed.
    async fn change<T>(
        &self,
        transactional_id: &str,
        change: impl FnOnce(&mut TxnMetadata) -> Result<(T, bool), TxnError>,
    ) -> Result<T, CoordinatorError> {
        let turn = self.known_turn(transactional_id)?;
        let _turn = turn.lock().await;
        let mut txn = self.get(transactional_id).ok_or(CoordinatorError::UnknownId)?;
        let (out, changed) = change(&mut txn)?;
        if changed {
            self.put(&txn).await?;
        }
        Ok(out)
    }

    /// AddPartitionsToTxn.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        self.change(transactional_id, |txn| {
            Ok(((), txn.add_partitions(producer_id, producer_epoch, partitions, now_ms)?))
        })
        .await
    }

    /// AddOffsetsToTxn. In a cluster, `offsets_partition` is the group's
    /// `__consumer_offsets` partition: the transaction's marker there
    /// commits the offsets its coordinator holds.
    pub async fn add_group(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
        offsets_partition: Option<(String, i32)>,
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        self.change(transactional_id, |txn| {
            let mut changed = txn.add_group(producer_id, producer_epoch, group, now_ms)?;
            if let Some(partition) = offsets_partition {
                changed |= txn.add_partitions(producer_id, producer_epoch, &[partition], now_ms)?;
            }
            Ok(((), changed))
        })
        .await
    }

    /// TxnOffsetCommit: the offsets commit with the transaction.
    pub async fn stage_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
        offsets: Vec<PendingOffset>,
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        self.change(transactional_id, |txn| {
            txn.stage_offsets(producer_id, producer_epoch, group, offsets, now_ms)?;
            Ok(((), true))
        })
        .await
    }

    /// EndTxn: writes the markers (and commits the offsets) before it
    /// answers. If that fails the state stays prepared, the timer loop
    /// completes it, and the client's retry gets CONCURRENT_TRANSACTIONS
    /// until then.
    pub async fn end(
        &self,
        sink: &dyn TxnSink,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        let turn = self.known_turn(transactional_id)?;
        let _turn = turn.lock().await;
        let mut txn = self.get(transactional_id).ok_or(CoordinatorError::UnknownId)?;
        let completion = match txn.end(producer_id, producer_epoch, commit, now_ms)? {
            EndOutcome::AlreadyDone => return Ok(()),
            EndOutcome::Complete(completion) => completion,
        };
        self.put(&txn).await?;
        if let Err(e) = self.carry_out(sink, &completion).await {
            tracing::warn!(transactional_id, commit, error = %e, "cannot complete a transaction yet; it will be retried");
            return Err(CoordinatorError::Txn(TxnError::Concurrent));
        }
        txn.complete(now_ms);
        self.put(&txn).await
    }

    /// Writes every marker (side by side), then, for a commit, the offsets.
    async fn carry_out(&self, sink: &dyn TxnSink, completion: &Completion) -> Result<(), String> {
        let coordinator_epoch = self.here(&completion.transactional_id).map_err(|e| format!("{e:?}"))?;
        let marker = Marker {
            producer_id: completion.producer_id,
            producer_epoch: completion.producer_epoch,
            commit: completion.commit,
            coordinator_epoch,
        };
        sink.write_markers(&completion.partitions, marker).await?;
        for (group, offsets) in completion.offsets.iter().filter(|(_, o)| !o.is_empty()) {
            let offsets = offsets.iter().map(|o| (o.topic.clone(), o.partition, o.offset.clone())).collect();
            sink.commit_offsets(group, offsets).await?;
        }
        sink.completed(completion.commit);
        tracing::debug!(
            transactional_id = %completion.transactional_id,
            commit = completion.commit,
            partitions = completion.partitions.len(),
            "transaction completed"
        );
        Ok(())
    }

    /// Produce verification: the partition must be in the producer's open
    /// transaction.
    pub fn verify_write(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), CoordinatorError> {
        self.here(transactional_id)?;
        let table = self.table.lock();
        let txn = table.get(transactional_id).ok_or(CoordinatorError::UnknownId)?;
        Ok(txn.verify_write(producer_id, producer_epoch, topic, partition)?)
    }

    /// One round of the timer loop: aborts timed-out transactions (fencing
    /// their producers), completes prepared ones, forgets expired ids.
    /// Returns how many transactions it aborted for their timeout.
    pub async fn check(&self, sink: &dyn TxnSink, now_ms: i64) -> usize {
        let ids: Vec<String> = self.table.lock().keys().cloned().collect();
        let mut timed_out = 0;
        for id in ids {
            if self.here(&id).is_err() {
                continue;
            }
            let turn = self.turn(&id);
            let _turn = turn.lock().await;
            let Some(mut txn) = self.get(&id) else { continue };
            let completion = if txn.timed_out(now_ms) {
                tracing::info!(transactional_id = %id, timeout_ms = txn.timeout_ms, "aborting a transaction past its timeout");
                let completion = txn.begin_abort_with_bump();
                if self.put(&txn).await.is_err() {
                    continue;
                }
                timed_out += 1;
                completion
            } else if let Some(completion) = txn.completion() {
                completion
            } else {
                if txn.expired(now_ms, self.config.id_expiration_ms)
                    && self
                        .persist(Line::Remove {
                            transactional_id: id.clone(),
                        })
                        .await
                        .is_ok()
                {
                    self.turns.lock().remove(&id);
                }
                continue;
            };
            match self.carry_out(sink, &completion).await {
                Ok(()) => {
                    txn.complete(now_ms);
                    let _ = self.put(&txn).await;
                }
                Err(e) => tracing::warn!(transactional_id = %id, error = %e, "cannot complete a transaction yet; will retry"),
            }
        }
        timed_out
    }

    /// The timer loop, every `check_interval_ms`.
    pub async fn run_timers(&self, sink: &dyn TxnSink, timed_out: impl Fn(usize)) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.config.check_interval_ms.max(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            timed_out(self.check(sink, crate::clock::now_ms()).await);
        }
    }

    /// One id's state (DescribeTransactions).
    pub fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.get(transactional_id)
    }

    /// Every id's state (ListTransactions).
    pub fn list(&self) -> Vec<TxnMetadata> {
        self.table.lock().values().cloned().collect()
    }

    /// Transactional ids kept, for the gauge.
    pub fn id_count(&self) -> usize {
        self.table.lock().len()
    }

    /// Transactions open now, for the gauge.
    pub fn open_count(&self) -> usize {
        self.table.lock().values().filter(|t| t.state == state::TxnState::Ongoing).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    /// Records what the coordinator asks for; marker writes fail while
    /// `down` is set.
    #[derive(Default)]
    struct Recorder {
        down: AtomicBool,
        next_id: AtomicI64,
        markers: Mutex<Vec<(String, i32, Marker)>>,
        offsets: Mutex<Vec<(String, GroupOffsets)>>,
    }

    type GroupOffsets = Vec<(String, i32, CommittedOffset)>;

    impl TxnSink for Recorder {
        fn write_markers<'a>(&'a self, partitions: &'a [(String, i32)], marker: Marker) -> BoxFuture<'a, Result<(), String>> {
            let result = if self.down.load(Ordering::SeqCst) {
                Err("partition unavailable".to_string())
            } else {
                let mut markers = self.markers.lock();
                markers.extend(partitions.iter().map(|(topic, partition)| (topic.clone(), *partition, marker)));
                Ok(())
            };
            Box::pin(async move { result })
        }
        fn commit_offsets(&self, group: &str, offsets: Vec<(String, i32, CommittedOffset)>) -> BoxFuture<'_, Result<(), String>> {
            self.offsets.lock().push((group.to_string(), offsets));
            Box::pin(async { Ok(()) })
        }
        fn fresh_producer_id(&self) -> BoxFuture<'_, Result<i64, String>> {
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(id) })
        }
        fn completed(&self, _commit: bool) {}
    }

    fn config() -> TxnConfig {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 1_000_000,
            max_ids: 2,
            check_interval_ms: 10,
        }
    }

    #[tokio::test]
    async fn a_commit_cut_short_is_completed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Recorder::default();
        let coordinator = TxnCoordinator::open(dir.path(), config()).unwrap();
        let (pid, epoch) = coordinator.init_producer_id(&sink, "t", 60_000, None, 0).await.unwrap();
        let parts = vec![("out".to_string(), 0), ("out".to_string(), 1)];
        coordinator.add_partitions("t", pid, epoch, &parts, 1).await.unwrap();
        coordinator.add_group("t", pid, epoch, "g", None, 2).await.unwrap();
        let staged = PendingOffset {
            topic: "in".into(),
            partition: 0,
            offset: CommittedOffset {
                offset: 42,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp_ms: 3,
            },
        };
        coordinator.stage_offsets("t", pid, epoch, "g", vec![staged], 3).await.unwrap();
        sink.down.store(true, Ordering::SeqCst);
        assert_eq!(
            coordinator.end(&sink, "t", pid, epoch, true, 4).await,
            Err(CoordinatorError::Txn(TxnError::Concurrent)),
            "markers cannot be written: the client retries"
        );
        drop(coordinator);

        // A restart finds the commit prepared and completes it.
        let coordinator = TxnCoordinator::open(dir.path(), config()).unwrap();
        assert_eq!(coordinator.describe("t").unwrap().state, state::TxnState::PrepareCommit);
        sink.down.store(false, Ordering::SeqCst);
        coordinator.check(&sink, 5).await;
        assert_eq!(coordinator.describe("t").unwrap().state, state::TxnState::CompleteCommit);
        let markers = sink.markers.lock().clone();
        assert_eq!(markers.len(), 2);
        assert!(markers
            .iter()
            .all(|(_, _, m)| m.commit && m.producer_id == pid && m.producer_epoch == epoch));
        assert_eq!(sink.offsets.lock()[0].1[0].2.offset, 42, "the staged offset is committed");
        // The client's retried EndTxn now succeeds.
        assert_eq!(coordinator.end(&sink, "t", pid, epoch, true, 6).await, Ok(()));
    }

    #[tokio::test]
    async fn timeouts_abort_and_fence_and_new_ids_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Recorder::default();
        let coordinator = TxnCoordinator::open(dir.path(), config()).unwrap();
        let (pid, epoch) = coordinator.init_producer_id(&sink, "t", 1_000, None, 0).await.unwrap();
        coordinator.add_partitions("t", pid, epoch, &[("out".into(), 0)], 0).await.unwrap();
        assert_eq!(coordinator.check(&sink, 500).await, 0);
        assert_eq!(coordinator.check(&sink, 1_001).await, 1, "past its timeout");
        let marker = sink.markers.lock()[0].2;
        assert!(!marker.commit && marker.producer_epoch == epoch + 1, "{marker:?}");
        assert_eq!(
            coordinator.end(&sink, "t", pid, epoch, true, 1_002).await,
            Err(CoordinatorError::Txn(TxnError::Fenced))
        );
        assert!(coordinator.verify_write("t", pid, epoch, "out", 0).is_err());
        coordinator.init_producer_id(&sink, "u", 1_000, None, 0).await.unwrap();
        assert_eq!(
            coordinator.init_producer_id(&sink, "v", 1_000, None, 0).await,
            Err(CoordinatorError::Full),
            "transaction_max_count"
        );
        // Idle ids expire and make room.
        coordinator.check(&sink, 5_000_000).await;
        assert_eq!(coordinator.id_count(), 0);
        assert!(coordinator.init_producer_id(&sink, "v", 1_000, None, 0).await.is_ok());
        // Unknown ids leave nothing behind.
        for i in 0..100 {
            let id = format!("unknown-{i}");
            assert_eq!(
                coordinator.add_group(&id, 1, 0, "g", None, 0).await,
                Err(CoordinatorError::UnknownId)
            );
            assert_eq!(coordinator.end(&sink, &id, 1, 0, true, 0).await, Err(CoordinatorError::UnknownId));
        }
        assert_eq!(coordinator.turns.lock().len(), 1);
    }

    /// A cluster's replicator: owns every id but `elsewhere`, at
    /// coordinator epoch 4, and keeps the lines it replicates.
    #[derive(Default)]
    struct Shard {
        lines: Mutex<Vec<bytes::Bytes>>,
    }

    impl TxnReplicator for Shard {
        fn owner_epoch(&self, transactional_id: &str) -> Result<i32, i16> {
            if transactional_id == "elsewhere" {
                Err(kafka_protocol::ResponseError::NotCoordinator.code())
            } else {
                Ok(4)
            }
        }
        fn replicate(&self, _transactional_id: &str, line: Vec<u8>) -> BoxFuture<'_, std::io::Result<()>> {
            self.lines.lock().push(bytes::Bytes::from(line));
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_new_coordinator_loads_the_replicated_state_and_completes_a_prepared_commit() {
        let sink = Recorder::default();
        let dir = tempfile::tempdir().unwrap();
        let coordinator = TxnCoordinator::open(dir.path(), config()).unwrap();
        let shard = Arc::new(Shard::default());
        coordinator.set_replicator(shard.clone());
        let not_here = CoordinatorError::NotHere(kafka_protocol::ResponseError::NotCoordinator.code());
        assert_eq!(
            coordinator.init_producer_id(&sink, "elsewhere", 1_000, None, 0).await,
            Err(not_here.clone())
        );
        let (pid, epoch) = coordinator.init_producer_id(&sink, "t", 60_000, None, 0).await.unwrap();
        let partitions = [("out".to_string(), 0), ("__consumer_offsets".to_string(), 3)];
        coordinator.add_partitions("t", pid, epoch, &partitions[..1], 1).await.unwrap();
        coordinator
            .add_group("t", pid, epoch, "g", Some(partitions[1].clone()), 2)
            .await
            .unwrap();
        assert_eq!(coordinator.verify_write("elsewhere", pid, epoch, "out", 0), Err(not_here));
        sink.down.store(true, Ordering::SeqCst);
        assert!(
            coordinator.end(&sink, "t", pid, epoch, true, 3).await.is_err(),
            "markers cannot be written yet"
        );
        assert!(
            std::fs::read_to_string(dir.path().join("transactions.jsonl")).unwrap().is_empty(),
            "nothing in the single node's file"
        );

        // Another broker leads the shard: it loads the replicated lines and
        // its timer completes the commit, with its coordinator epoch.
        let other_dir = tempfile::tempdir().unwrap();
        let successor = TxnCoordinator::open(other_dir.path(), config()).unwrap();
        successor.set_replicator(Arc::new(Shard::default()));
        let lines = shard.lines.lock().clone();
        assert_eq!(successor.reload(|id| id == "t", &lines), 1);
        assert_eq!(successor.describe("t").unwrap().state, state::TxnState::PrepareCommit);
        sink.down.store(false, Ordering::SeqCst);
        successor.check(&sink, 4).await;
        assert_eq!(successor.describe("t").unwrap().state, state::TxnState::CompleteCommit);
        let markers = sink.markers.lock().clone();
        let mut marked: Vec<_> = markers.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        marked.sort();
        let mut expected = partitions.to_vec();
        expected.sort();
        assert_eq!(marked, expected, "the data partition and the group's offsets partition");
        assert!(markers.iter().all(|(_, _, m)| m.commit && m.coordinator_epoch == 4));
        // Losing the shard forgets its ids.
        assert_eq!(successor.forget(|id| id == "t"), 1);
        assert!(successor.describe("t").is_none());
    }
}
