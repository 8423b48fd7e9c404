//! A partition as the broker serves it: the log behind a mutex, the high
//! watermark, and group commit (one fsync covers every batch appended while
//! the previous fsync ran).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::sync::{watch, Notify};

use crate::archive::manifest::Manifest;
use crate::config::FlushPolicy;
use crate::log::batch::BatchHeader;
use crate::log::records::Limits;
use crate::log::txn::AbortedTxn;
use crate::log::{AppendResult, LogError, Marker, PartitionLog};
use crate::metrics::Metrics;

pub use super::replica::{AckError, ProduceRefusal, Role};

/// Time a produce waited for its acknowledgement: for the local fsync, and
/// beyond it for the in-sync replicas.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckWaits {
    pub local: std::time::Duration,
    pub replication: std::time::Duration,
}

/// What produce waiters watch: how far the log is durable here and
/// committed (the high watermark), or why they must stop waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// Everything below is fsynced on this broker (acks=1).
    pub durable_offset: i64,
    /// Everything below is held by the ISR (acks=all).
    pub high_watermark: i64,
    pub failed: Option<String>,
    /// Grows with every change of this broker's role: a waiter from an
    /// earlier term lost its leadership (NOT_LEADER_OR_FOLLOWER).
    pub term: u64,
    /// The ISR is at least `min.insync.replicas`.
    pub enough_in_sync: bool,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// This broker's role. Taken before `log` when both are needed.
    pub(super) role: Mutex<Role>,
    log: Mutex<PartitionLog>,
    /// Offset below which records are committed and may be read by consumers.
    high_watermark: AtomicI64,
    pub(super) durability: watch::Sender<Durability>,
    flush_needed: Notify,
    closed: AtomicBool,
    flush_policy: FlushPolicy,
    /// Wakes the long-polling fetches of this partition when its high
    /// watermark moves; fetches of other partitions sleep on.
    data_arrived: Notify,
    /// Wakes followers' fetches on every append, before the fsync, so the
    /// leader's flush and the followers' copies overlap.
    pub(super) appended: Notify,
    /// The newest archive manifest this broker knows for the partition.
    manifest: RwLock<Arc<Manifest>>,
}

impl Partition {
    /// A partition with the given role (a single node leads every
    /// partition: `Role::single_node`).
    pub fn new(topic: String, index: i32, log: PartitionLog, flush_policy: FlushPolicy, role: Role) -> Arc<Self> {
        let end = log.next_offset();
        let enough_in_sync = role.enough_in_sync();
        let (durability, _) = watch::channel(Durability {
            durable_offset: end,
            high_watermark: end,
            failed: None,
            term: 0,
            enough_in_sync,
        });
        Arc::new(Self {
            topic,
            index,
            role: Mutex::new(role),
            log: Mutex::new(log),
            // `PartitionLog::open` fsyncs what it recovers, so all of it is durable.
            high_watermark: AtomicI64::new(end),
            durability,
            flush_needed: Notify::new(),
            closed: AtomicBool::new(false),
            flush_policy,
            data_arrived: Notify::new(),
            appended: Notify::new(),
            manifest: RwLock::new(Arc::new(Manifest::default())),
        })
    }

    pub fn lock_log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock()
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.read().clone()
    }

    pub fn set_manifest(&self, manifest: Manifest) {
        *self.manifest.write() = Arc::new(manifest);
    }

    /// The first offset a consumer can read: in the archive if it holds
    /// anything, else in the local log.
    pub fn log_start_offset(&self) -> Result<i64, LogError> {
        let local = self.lock_log().log_start_offset();
        Ok(self.start_seen_by_consumers(local))
    }

    /// The start consumers see, given the local log's start.
    /// Never below the start DeleteRecords set.
    pub fn start_seen_by_consumers(&self, local_start: i64) -> i64 {
        let manifest = self.manifest();
        let start = manifest.start_offset().map_or(local_start, |archived| archived.min(local_start));
        manifest.log_start_offset.map_or(start, |deleted_below| start.max(deleted_below))
    }

    /// Deletes the files of segments already taken out of a log, on a
    /// blocking thread; returns the bytes freed.
    pub async fn delete_segment_files(segments: Vec<crate::log::segment::Segment>) -> Result<u64, String> {
        tokio::task::spawn_blocking(move || crate::log::delete_segments(segments))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Fetch from the local log: planned under the lock, read on a blocking
    /// thread without it, so a cold read never holds up producers or an
    /// async worker. Never past `upper_bound` (the high watermark).
    pub async fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        let mut from = offset;
        loop {
            let Some(read) = self.lock_log().plan_read(from, upper_bound)? else {
                return Ok(Bytes::new());
            };
            let next = read.next_offset;
            let bytes = tokio::task::spawn_blocking(move || read.read(offset, max_bytes, upper_bound))
                .await
                .map_err(|e| LogError::Io(std::io::Error::other(format!("read task failed: {e}"))))??;
            // Nothing here (a gap left by recovery): go on in the next segment.
            if !bytes.is_empty() || next <= from {
                return Ok(Bytes::from(bytes));
            }
            from = next;
        }
    }

    /// ListOffsets by timestamp in the local log: planned under the lock,
    /// read and decoded on a blocking thread without it.
    pub async fn offset_for_timestamp(&self, timestamp: i64, limits: Limits) -> Result<Option<(i64, i64)>, LogError> {
        let search = self.lock_log().timestamp_search(timestamp);
        tokio::task::spawn_blocking(move || search.run(limits))
            .await
            .map_err(|e| LogError::Io(std::io::Error::other(format!("timestamp search failed: {e}"))))?
    }

    /// The local log's largest timestamp with the first offset carrying it
    /// (ListOffsets -3, KIP-734): (offset, timestamp).
    pub async fn max_timestamp(&self, limits: Limits) -> Result<Option<(i64, i64)>, LogError> {
        let Some(max) = self.lock_log().max_timestamp() else {
            return Ok(None);
        };
        self.offset_for_timestamp(max, limits).await
    }

    /// Completes once the high watermark moves after this is enabled
    /// (`Notified::enable`): a long poll registers before it reads.
    pub fn data_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.data_arrived.notified()
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Appends as the leader, stamping the batches with its leader epoch,
    /// and, under the `always` policy, asks the flusher for an fsync. The
    /// caller acknowledges after `wait_acknowledged` with the returned term.
    pub fn append(&self, batches: &[(BatchHeader, Bytes)], now_ms: i64) -> Result<(AppendResult, u64), ProduceRefusal> {
        self.append_verified(batches, now_ms, |_| Ok(()))
    }

    /// `append`, if `verify` passes under the log lock. Transaction markers
    /// take the same lock, so a write verified against an open transaction
    /// lands before that transaction's marker, never after it.
    pub fn append_verified(
        &self,
        batches: &[(BatchHeader, Bytes)],
        now_ms: i64,
        verify: impl FnOnce(&PartitionLog) -> Result<(), ProduceRefusal>,
    ) -> Result<(AppendResult, u64), ProduceRefusal> {
        self.leader_append(|log, epoch| {
            verify(log)?;
            Ok(log.append(batches, epoch, now_ms)?)
        })
    }

    /// Appends a transaction marker as the leader; acknowledged like a
    /// produce (`wait_acknowledged` with the returned term).
    pub fn append_marker(&self, marker: Marker, now_ms: i64) -> Result<(AppendResult, u64), ProduceRefusal> {
        self.leader_append(|log, epoch| Ok(log.append_marker(marker, epoch, now_ms)?))
    }

    /// The last stable offset: read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.lock_log().last_stable_offset(high_watermark)
    }

    /// The aborted transactions with records in `from..to`.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.lock_log().aborted_in(from, to)
    }

    fn leader_append(
        &self,
        append: impl FnOnce(&mut PartitionLog, i32) -> Result<AppendResult, ProduceRefusal>,
    ) -> Result<(AppendResult, u64), ProduceRefusal> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Io(std::io::Error::other("partition is closed (topic deleted)")).into());
        }
        if let Some(e) = &self.durability.borrow().failed {
            return Err(LogError::Io(std::io::Error::other(format!(
                "partition storage failed earlier ({e}); restart the broker"
            )))
            .into());
        }
        let role = self.role.lock();
        let Role::Leader { epoch, .. } = &*role else {
            return Err(ProduceRefusal::NotLeader);
        };
        // Read under the role lock, which role changes hold while they move it.
        let term = self.durability.borrow().term;
        let result = append(&mut self.lock_log(), *epoch)?;
        drop(role);
        self.appended.notify_waiters();
        match self.flush_policy {
            FlushPolicy::Always => self.flush_needed.notify_one(),
            FlushPolicy::Interval => self.on_local_durable(result.next_offset),
        }
        Ok((result, term))
    }

    /// This broker holds everything below `offset` on disk: as the leader,
    /// that may move the high watermark.
    pub(super) fn on_local_durable(&self, offset: i64) {
        let high_watermark = match &mut *self.role.lock() {
            Role::Leader { state, .. } => {
                state.on_leader_durable(offset);
                Some(state.high_watermark())
            }
            _ => None,
        };
        self.durability.send_if_modified(|d| {
            let moved = offset > d.durable_offset;
            d.durable_offset = d.durable_offset.max(offset);
            moved
        });
        if let Some(high_watermark) = high_watermark {
            self.publish_high_watermark(high_watermark);
        }
    }

    /// Moves the high watermark forward (never back) and wakes consumers'
    /// long polls and acks=all waiters.
    pub(super) fn publish_high_watermark(&self, offset: i64) {
        let previous = self.high_watermark.fetch_max(offset, Ordering::AcqRel);
        if offset > previous {
            self.data_arrived.notify_waiters();
        }
        self.durability.send_if_modified(|d| {
            if offset > d.high_watermark {
                d.high_watermark = offset;
                return true;
            }
            false
        });
    }

    /// Waits until the append that ended at `offset`, made in `term`, may be
    /// acknowledged: durable here (acks=1) or committed by the ISR (acks=all).
    /// Adds the time it waited for each to `waited`.
    pub async fn wait_acknowledged(&self, offset: i64, term: u64, acks_all: bool, waited: &mut AckWaits) -> Result<(), AckError> {
        if self.flush_policy == FlushPolicy::Interval && !acks_all {
            return Ok(());
        }
        let reached = |d: &Durability| if acks_all { d.high_watermark } else { d.durable_offset } >= offset;
        let ended = |d: &Durability| d.failed.is_some() || d.term != term || (acks_all && !d.enough_in_sync);
        let closed = |_| AckError::Storage("partition closed".to_string());
        let mut rx = self.durability.subscribe();
        let started = tokio::time::Instant::now();
        // The local fsync first, then the ISR: timed apart for the
        // slow-request log.
        rx.wait_for(|d| d.durable_offset >= offset || reached(d) || ended(d))
            .await
            .map_err(closed)?;
        let durable_here = tokio::time::Instant::now();
        waited.local += durable_here - started;
        let state = rx.wait_for(|d| reached(d) || ended(d)).await.map_err(closed)?;
        waited.replication += durable_here.elapsed();
        if reached(&state) {
            return Ok(());
        }
        if let Some(e) = &state.failed {
            return Err(AckError::Storage(e.clone()));
        }
        if state.term != term {
            return Err(AckError::NotLeader);
        }
        Err(AckError::NotEnoughReplicasAfterAppend)
    }

    /// fsyncs what was appended since the last flush.
    pub async fn flush(&self, metrics: &Metrics) {
        if self.durability.borrow().failed.is_some() {
            // After a failed fsync the page cache may have dropped dirty
            // pages and a retry can falsely succeed ("fsyncgate"): never
            // advance the high watermark again until a restart recovers.
            return;
        }
        let unflushed = self.lock_log().take_unflushed();
        if unflushed.is_empty() {
            return;
        }
        let target = unflushed.durable_offset;
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || unflushed.sync()).await;
        metrics.fsync_duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(())) => self.on_local_durable(target),
            Ok(Err(e)) => self.fail(format!("fsync failed: {e}")),
            Err(e) => self.fail(format!("fsync task failed: {e}")),
        }
    }

    fn fail(&self, message: String) {
        // An fsync error leaves the page cache in an unknown state: stop
        // acknowledging anything more on this partition.
        tracing::error!(topic = %self.topic, partition = self.index, error = %message, "log flush failed");
        self.durability.send_modify(|d| d.failed = Some(message));
    }

    /// Runs group commit until the partition is closed.
    pub async fn run_flusher(self: Arc<Self>, metrics: Arc<Metrics>) {
        loop {
            self.flush_needed.notified().await;
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            self.flush(&metrics).await;
        }
    }

    /// Stops the flusher and fails produce requests still waiting on this
    /// partition (its topic is being deleted).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.durability.send_modify(|d| {
            d.failed.get_or_insert_with(|| "topic deleted".to_string());
        });
        self.flush_needed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;

    /// A panic while a lock is held (a bug) must not make later readers see
    /// defaults: an empty manifest would make Fetch answer OFFSET_OUT_OF_RANGE
    /// for archived offsets, and a failed log lock would refuse produce.
    #[test]
    fn a_panic_under_a_lock_leaves_the_state_readable() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        let partition = Partition::new("t".into(), 0, log, FlushPolicy::Interval, Role::single_node(0, 1, 0));
        partition.set_manifest(Manifest::for_topic("the-topic-id"));
        let p = partition.clone();
        let panicked = std::thread::spawn(move || {
            let _manifest = p.manifest.write();
            let _log = p.lock_log();
            panic!("a bug while both locks are held");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(partition.manifest().topic_id, "the-topic-id");
        assert_eq!(partition.lock_log().next_offset(), 0);
    }
}
