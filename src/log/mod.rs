//! The local partition log: segments of record batches as producers sent
//! them, offset assignment, idempotent-producer checks, reads by offset and
//! timestamp, rolling, retention and crash recovery.
//!
//! This module does file I/O but no async and no locking: `broker::partition`
//! wraps a `PartitionLog` in a mutex and adds durability (group commit) and
//! waiting.

pub mod batch;
pub mod compaction;
pub mod encode;
pub mod epoch_cache;
pub mod producer_state;
pub mod records;
pub mod segment;
pub mod txn;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use self::batch::{BatchError, BatchHeader, Stamp, HEADER_LEN};
use self::epoch_cache::EpochCache;
use self::producer_state::{ProducerStateTable, SequenceCheck};
use self::segment::{ScanReport, Segment};
use self::txn::PartitionTxns;

/// The topic configs the log itself obeys.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    /// How long / how much archived data stays on local disk (-1: no limit).
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    /// `cleanup.policy` includes `delete`: retention.ms/bytes remove segments.
    pub delete_policy: bool,
    /// `cleanup.policy` includes `compact`: the cleaner keeps each key's latest record.
    pub compaction: Option<compaction::CompactionConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            log_append_time: false,
            local_retention_ms: 3_600_000,
            local_retention_bytes: -1,
            delete_policy: true,
            compaction: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    #[error("{0}")]
    Records(#[from] records::RecordError),
    #[error("batch of {size} bytes exceeds max.message.bytes={max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("producer epoch is older than the current one")]
    InvalidProducerEpoch,
    #[error("out of order sequence number")]
    OutOfOrderSequence,
    #[error("a client cannot produce control batches")]
    ControlBatchFromClient,
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
}

/// A transaction marker to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Result of appending the batches of one produce partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    /// One past the last offset written: the offset that must be durable
    /// before the append can be acknowledged.
    pub next_offset: i64,
    pub log_append_time_ms: Option<i64>,
    pub records: i64,
    pub log_start_offset: i64,
}

/// What opening a log found, for logs and metrics.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub segments: usize,
    pub batches: u64,
    pub truncated_bytes: u64,
}

/// A segment's bytes as they stood when a search was planned: appends only
/// add past `end`, so reading up to it needs no lock.
pub struct SegmentRange {
    /// The active segment's file; `None` for a sealed segment, which the
    /// search opens by `path` when it gets there.
    file: Option<Arc<File>>,
    path: PathBuf,
    position: u64,
    end: u64,
}

impl SegmentRange {
    /// The file to read, or `None` if retention deleted the segment since
    /// the search was planned (its records are gone, so there is nothing
    /// in it to find).
    fn open(&self) -> std::io::Result<Option<Arc<File>>> {
        if let Some(file) = &self.file {
            return Ok(Some(file.clone()));
        }
        match File::open(&self.path) {
            Ok(file) => Ok(Some(Arc::new(file))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// ListOffsets by timestamp, planned under the partition lock.
pub struct TimestampSearch {
    timestamp: i64,
    ranges: Vec<SegmentRange>,
}

impl TimestampSearch {
    /// The first record with a timestamp >= the target: (offset, timestamp).
    /// Blocking: reads the segments and decodes at most one batch at a
    /// time, within `limits`.
    pub fn run(&self, limits: records::Limits) -> Result<Option<(i64, i64)>, LogError> {
        let timestamp = self.timestamp;
        let mut header_buf = [0u8; HEADER_LEN];
        for range in &self.ranges {
            let Some(file) = range.open()? else { continue };
            let mut position = range.position;
            while position + HEADER_LEN as u64 <= range.end {
                std::os::unix::fs::FileExt::read_exact_at(&*file, &mut header_buf, position)?;
                let header = BatchHeader::parse(&header_buf)?;
                let len = header.total_len() as u64;
                if position + len > range.end {
                    break;
                }
                let at = position;
                position += len;
                if header.max_timestamp < timestamp {
                    continue;
                }
                if header.is_log_append_time() {
                    return Ok(Some((header.base_offset, header.max_timestamp)));
                }
                let mut batch = vec![0u8; len as usize];
                std::os::unix::fs::FileExt::read_exact_at(&*file, &mut batch, at)?;
                let mut found = None;
                records::walk(&Bytes::from(batch), &header, limits, records::Fields::Skip, |r| {
                    let ts = header.base_timestamp + r.timestamp_delta;
                    if ts >= timestamp {
                        found = Some((header.base_offset + r.offset_delta as i64, ts));
                        return Ok(false);
                    }
                    Ok(true)
                })?;
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }
}

pub struct PartitionLog {
    dir: PathBuf,
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    config: LogConfig,
    producers: ProducerStateTable,
    /// Files written since the last flush (sealed segments and the active
    /// one). A sealed segment's file stays open until the flusher has
    /// synced and dropped it.
    unflushed: Vec<Arc<File>>,
    /// A segment was created since the last flush: its name becomes durable
    /// with the next flush's directory fsync, not on the produce path.
    dir_unsynced: bool,
    /// Leader epochs and where each starts. Built from the batch headers
    /// when the log opens (they are scanned anyway), so it can never
    /// disagree with the log, and kept up by appends and truncation.
    epochs: EpochCache,
    /// The cleaner's checkpoint: offsets below it were cleaned (compacted
    /// topics only).
    cleaned_to: i64,
    /// Open and aborted transactions (rebuilt from the segments at open).
    txns: PartitionTxns,
}

/// Created in a partition's directory when its first transactional batch
/// is appended: only such logs are walked for transactions at open.
const TRANSACTIONAL_FLAG: &str = "transactional";

/// What a flush must make durable for everything appended so far.
pub struct Unflushed {
    /// The log's directory, when a segment was created in it since the last flush.
    pub dir: Option<PathBuf>,
    pub files: Vec<Arc<File>>,
    /// The offset that is durable once `dir` and `files` are synced.
    pub durable_offset: i64,
}

impl Unflushed {
    pub fn is_empty(&self) -> bool {
        self.dir.is_none() && self.files.is_empty()
    }

    /// Blocking: fsyncs the directory, then the files.
    pub fn sync(&self) -> std::io::Result<()> {
        if let Some(dir) = &self.dir {
            sync_dir(dir)?;
        }
        self.files.iter().try_for_each(|f| f.sync_data())
    }
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash: the last
    /// segment's batches are all CRC-checked and a torn tail is truncated.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<(Self, RecoveryReport), LogError> {
        std::fs::create_dir_all(dir)?;
        compaction::remove_leftovers(dir)?;
        let mut bases: Vec<i64> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(base) = entry.file_name().to_str().and_then(segment::parse_segment_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut report = RecoveryReport::default();
        let mut segments = BTreeMap::new();
        let mut producers = ProducerStateTable::default();
        let last_index = bases.len().saturating_sub(1);
        for (i, base) in bases.iter().enumerate() {
            let path = segment::segment_path(dir, *base);
            let mtime_ms = std::fs::metadata(&path)?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(now_ms, |d| d.as_millis() as i64);
            let (mut segment, scan): (Segment, ScanReport) = Segment::open(&path, *base, i == last_index, mtime_ms)?;
            if scan.truncated_bytes > 0 {
                tracing::warn!(dir = %dir.display(), segment = base, truncated_bytes = scan.truncated_bytes, "recovery truncated an invalid segment tail");
            }
            report.batches += scan.batches;
            report.truncated_bytes += scan.truncated_bytes;
            if i + 2 >= bases.len() {
                // Producer state from the newest segments is enough to
                // recognise retries of recent batches.
                replay_producers(&segment, &mut producers, now_ms)?;
            }
            // What a crashed process left in the page cache becomes
            // readable now, so make it durable first; clean files sync in
            // microseconds.
            if let Some(file) = segment.file() {
                file.sync_data()?;
            }
            if i != last_index {
                // Only the active segment keeps its file open.
                segment.seal();
            }
            segments.insert(*base, segment);
        }
        if segments.is_empty() {
            let segment = Segment::create(dir, 0, now_ms)?;
            if let Some(file) = segment.file() {
                file.sync_data()?;
            }
            segments.insert(0, segment);
        }
        // The partition directory, the topic directory and `topics/` may all
        // be new: make each name durable.
        sync_dir(dir)?;
        for ancestor in dir.ancestors().skip(1).take(2) {
            sync_dir(ancestor)?;
        }
        report.segments = segments.len();
        let next_offset = segments.values().next_back().map_or(0, Segment::next_offset);
        let mut epochs = EpochCache::default();
        for (epoch, start) in segments.values().flat_map(|s| s.epochs().iter().copied()) {
            epochs.assign(epoch, start);
        }
        let mut log = Self {
            dir: dir.to_path_buf(),
            segments,
            next_offset,
            config,
            producers,
            unflushed: Vec::new(),
            dir_unsynced: false,
            epochs,
            cleaned_to: compaction::read_checkpoint(dir),
            txns: PartitionTxns::default(),
        };
        log.rebuild_txns(now_ms)?;
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Bounds the idempotent-producer state (see `ProducerLimits`).
    pub fn set_producer_limits(&mut self, limits: producer_state::ProducerLimits) {
        self.producers.set_limits(limits);
    }

    /// Forgets producers past `producer_id_expiration_ms`; returns how many.
    pub fn expire_producers(&mut self, now_ms: i64) -> usize {
        self.producers.expire(now_ms)
    }

    pub fn producer_count(&self) -> usize {
        self.producers.producer_count()
    }

    /// The producers with state here, each with the first offset of its
    /// open transaction (DescribeProducers).
    pub fn active_producers(&self) -> Vec<(producer_state::ActiveProducer, Option<i64>)> {
        self.producers
            .active()
            .into_iter()
            .map(|p| (p, self.txns.open_since(p.producer_id)))
            .collect()
    }

    /// The log end offset: the next offset to be assigned.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.segments.values().next().map_or(0, |s| s.base_offset)
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&mut self) -> &mut Segment {
        // `open` always leaves at least one segment and nothing removes the last.
        #[allow(clippy::expect_used)]
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// Validates and appends the batches of one produce request partition.
    pub fn append(&mut self, batches: &[(BatchHeader, Bytes)], leader_epoch: i32, now_ms: i64) -> Result<AppendResult, LogError> {
        for (header, bytes) in batches {
            if bytes.len() > self.config.max_message_bytes {
                return Err(LogError::MessageTooLarge {
                    size: bytes.len(),
                    max: self.config.max_message_bytes,
                });
            }
            if header.is_control() {
                return Err(LogError::ControlBatchFromClient);
            }
        }
        // Retries are judged on the first batch, as one request holds one
        // producer's in-order batches.
        if let Some((first, _)) = batches.first() {
            match self.producers.check(first) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { base_offset } => {
                    return Ok(AppendResult {
                        base_offset,
                        next_offset: self.next_offset,
                        log_append_time_ms: None,
                        records: 0,
                        log_start_offset: self.log_start_offset(),
                    });
                }
                SequenceCheck::StaleEpoch => return Err(LogError::InvalidProducerEpoch),
                SequenceCheck::OutOfOrder => return Err(LogError::OutOfOrderSequence),
            }
        }
        if batches.iter().any(|(h, _)| h.is_transactional()) {
            self.flag_transactional()?;
        }
        let log_append_time_ms = self.config.log_append_time.then_some(now_ms);
        let base_offset = self.next_offset;
        let mut records = 0;
        for (header, bytes) in batches {
            self.maybe_roll(bytes.len() as u64, now_ms)?;
            let offset = self.next_offset;
            let stamped = batch::stamp_header(
                bytes,
                Stamp {
                    base_offset: offset,
                    leader_epoch,
                    log_append_time_ms,
                },
            );
            self.write_batch(header, offset, leader_epoch, &stamped, &bytes[HEADER_LEN..], now_ms)?;
            records += header.records_count as i64;
        }
        Ok(AppendResult {
            base_offset,
            next_offset: self.next_offset,
            log_append_time_ms,
            records,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// Writes one batch at `offset` into the active segment and notes it in
    /// the producer state, the epoch cache and the files to flush.
    fn write_batch(
        &mut self,
        header: &BatchHeader,
        offset: i64,
        leader_epoch: i32,
        header_bytes: &[u8; HEADER_LEN],
        records: &[u8],
        now_ms: i64,
    ) -> Result<(), LogError> {
        let marker = txn::marker_in(header, records);
        let active = self.active();
        active.append(header_bytes, records, now_ms)?;
        let file = active.file();
        self.next_offset = offset + header.last_offset_delta as i64 + 1;
        self.producers.record(header, offset, now_ms);
        self.txns.on_batch(header, offset, marker);
        self.epochs.assign(leader_epoch, offset);
        if let Some(file) = file {
            if !self.unflushed.iter().any(|f| Arc::ptr_eq(f, &file)) {
                self.unflushed.push(file);
            }
        }
        Ok(())
    }

    /// A follower's append: the leader's batches as they are (offsets,
    /// leader epochs, CRCs), which must continue this log exactly. A batch
    /// the log already holds (a fetch answered twice) is skipped.
    pub fn append_replicated(&mut self, batches: &[(BatchHeader, Bytes)], now_ms: i64) -> Result<AppendResult, LogError> {
        let base_offset = self.next_offset;
        let mut records = 0;
        for (header, bytes) in batches {
            if header.last_offset() < self.next_offset {
                continue;
            }
            // A compacted leader's log has gaps; it never overlaps.
            if header.base_offset < self.next_offset {
                return Err(LogError::Io(std::io::Error::other(format!(
                    "replicated batch at offset {} does not continue the log at {}",
                    header.base_offset, self.next_offset
                ))));
            }
            batch::validate_stored(bytes)?;
            if header.is_transactional() {
                self.flag_transactional()?;
            }
            self.maybe_roll(bytes.len() as u64, now_ms)?;
            let mut header_bytes = [0u8; HEADER_LEN];
            header_bytes.copy_from_slice(&bytes[..HEADER_LEN]);
            self.write_batch(
                header,
                header.base_offset,
                header.partition_leader_epoch,
                &header_bytes,
                &bytes[HEADER_LEN..],
                now_ms,
            )?;
            records += header.records_count as i64;
        }
        Ok(AppendResult {
            base_offset,
            next_offset: self.next_offset,
            log_append_time_ms: None,
            records,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// The leader epoch cache (KIP-101).
    pub fn epochs(&self) -> &EpochCache {
        &self.epochs
    }

    /// A new leadership at `epoch` begins at the log end (Kafka writes the
    /// entry before the first batch, so a follower asking about an epoch
    /// the leader wrote nothing under gets a precise answer).
    pub fn begin_epoch(&mut self, epoch: i32) {
        self.epochs.assign(epoch, self.next_offset);
    }

    /// Cuts the log back to end before `offset` (a follower's divergent
    /// tail, KIP-101/279): later segments go, the one holding `offset` is
    /// cut at a batch boundary, and the epoch cache and producer state are
    /// rebuilt for what remains. Returns the new log end.
    pub fn truncate_to(&mut self, offset: i64, now_ms: i64) -> Result<i64, LogError> {
        if offset >= self.next_offset {
            return Ok(self.next_offset);
        }
        let start = self.log_start_offset();
        if offset <= start {
            // Nothing below `offset` is kept: start over empty there.
            self.reset_to(offset.max(0), now_ms)?;
            return Ok(self.next_offset);
        }
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(base, _)| *base).collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete()?;
            }
        }
        // The segment now last may be sealed: reopen it for writing.
        if let Some((&base, last)) = self.segments.iter().next_back() {
            if last.file().is_none() {
                let path = last.path().to_path_buf();
                let mtime = last.last_append_ms;
                let (reopened, _) = Segment::open(&path, base, false, mtime)?;
                self.segments.insert(base, reopened);
            }
        }
        self.unflushed.clear();
        self.active().truncate_to(offset)?;
        sync_dir(&self.dir)?;
        self.next_offset = self.segments.values().next_back().map_or(offset, Segment::next_offset);
        self.epochs.truncate_from_end(self.next_offset);
        self.cleaned_to = self.cleaned_to.min(self.next_offset);
        self.rebuild_producers(now_ms)?;
        self.rebuild_txns(now_ms)?;
        tracing::warn!(dir = %self.dir.display(), log_end = self.next_offset, "truncated a divergent log tail");
        Ok(self.next_offset)
    }

    /// Drops every segment and starts empty at `offset`.
    fn reset_to(&mut self, offset: i64, now_ms: i64) -> Result<(), LogError> {
        for (_, segment) in std::mem::take(&mut self.segments) {
            segment.delete()?;
        }
        self.unflushed.clear();
        self.segments.insert(offset, Segment::create(&self.dir, offset, now_ms)?);
        sync_dir(&self.dir)?;
        self.next_offset = offset;
        self.epochs = EpochCache::default();
        self.cleaned_to = self.cleaned_to.min(offset);
        // Producer state read from the dropped segments describes batches
        // the log no longer holds: a producer's next batch would look like
        // a gap. Its producers are unknown again, as Kafka treats them.
        let limits = self.producers.limits();
        self.producers = ProducerStateTable::default();
        self.producers.set_limits(limits);
        self.txns = PartitionTxns::default();
        Ok(())
    }

    /// Marks this log as holding transactions, once: a file create and a
    /// directory fsync, the first time only.
    fn flag_transactional(&mut self) -> Result<(), LogError> {
        let flag = self.dir.join(TRANSACTIONAL_FLAG);
        if !flag.exists() {
            File::create(&flag)?;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Open and aborted transactions from every local segment's headers
    /// (and each marker's record), if this log ever held a transactional
    /// batch. The producers' epochs are taken from the markers too.
    fn rebuild_txns(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.txns = PartitionTxns::default();
        if !self.dir.join(TRANSACTIONAL_FLAG).exists() {
            return Ok(());
        }
        for segment in self.segments.values() {
            let file = segment.reader()?;
            let mut marker_buf = Vec::new();
            segment::walk_headers(&file, 0, segment.size(), |header, position| {
                let mut marker = None;
                if header.is_control() && header.is_transactional() {
                    // A marker is one small record; an unreadable one is
                    // treated as no marker rather than failing the open.
                    marker_buf.resize(header.total_len().min(4096), 0);
                    if std::os::unix::fs::FileExt::read_exact_at(&*file, &mut marker_buf, position).is_ok() {
                        marker = txn::marker_of(&marker_buf);
                    }
                    self.producers.record_marker(header, now_ms);
                }
                self.txns.on_batch(header, header.base_offset, marker);
                Ok(true)
            })?;
        }
        self.txns.forget_below(self.log_start_offset());
        Ok(())
    }

    /// Writes a transaction marker (commit or abort) for `producer_id` at
    /// `producer_epoch`: the producer's transaction here is over, and a
    /// newer epoch fences the producer's older ones.
    pub fn append_marker(&mut self, marker: Marker, leader_epoch: i32, now_ms: i64) -> Result<AppendResult, LogError> {
        self.flag_transactional()?;
        let bytes = txn::encode_marker(
            marker.producer_id,
            marker.producer_epoch,
            marker.commit,
            marker.coordinator_epoch,
            now_ms,
        );
        let header = BatchHeader::parse(&bytes)?;
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        let offset = self.next_offset;
        let stamped = batch::stamp_header(
            &bytes,
            Stamp {
                base_offset: offset,
                leader_epoch,
                log_append_time_ms: None,
            },
        );
        self.write_batch(&header, offset, leader_epoch, &stamped, &bytes[HEADER_LEN..], now_ms)?;
        self.producers.record_marker(&header, now_ms);
        Ok(AppendResult {
            base_offset: offset,
            next_offset: self.next_offset,
            log_append_time_ms: None,
            records: 0,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// The last stable offset: the high watermark, or the first offset of
    /// the oldest open transaction if that is lower (read_committed reads
    /// stop there).
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.txns.first_unstable_offset().map_or(high_watermark, |o| o.min(high_watermark))
    }

    /// The aborted transactions with records in `from..to`.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<txn::AbortedTxn> {
        self.txns.aborted_in(from, to)
    }

    /// Whether `producer_id` has a transaction open in this partition.
    pub fn has_open_txn(&self, producer_id: i64) -> bool {
        self.txns.is_open(producer_id)
    }

    /// How many transaction markers this log has written since it opened.
    pub fn markers_seen(&self) -> u64 {
        self.txns.markers_seen()
    }

    /// Producer state from the newest two segments, as at open.
    fn rebuild_producers(&mut self, now_ms: i64) -> Result<(), LogError> {
        let mut producers = ProducerStateTable::default();
        producers.set_limits(self.producers.limits());
        for segment in self.segments.values().rev().take(2).collect::<Vec<_>>().into_iter().rev() {
            replay_producers(segment, &mut producers, now_ms)?;
        }
        self.producers = producers;
        Ok(())
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> Result<(), LogError> {
        let segment_bytes = self.config.segment_bytes;
        let segment_ms = self.config.segment_ms;
        let active = self.active();
        let full = active.size() + incoming > segment_bytes;
        let old = active.first_append_ms.is_some_and(|t| now_ms - t >= segment_ms);
        if !active.is_empty() && (full || old) {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment if it has data and is older than `segment.ms`.
    /// Called by the maintenance timer so idle partitions roll too.
    pub fn roll_if_expired(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let segment_ms = self.config.segment_ms;
        let active = self.active();
        if !active.is_empty() && active.first_append_ms.is_some_and(|t| now_ms - t >= segment_ms) {
            self.roll(now_ms)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        let base = self.next_offset;
        // Only the file is created under the partition lock; the directory
        // fsync that makes its name durable waits for the next flush, which
        // runs on the blocking pool before anything in it is acknowledged.
        let segment = Segment::create(&self.dir, base, now_ms)?;
        self.dir_unsynced = true;
        tracing::debug!(dir = %self.dir.display(), base_offset = base, "rolled segment");
        // Its unflushed writes are in `unflushed`, which keeps the file
        // open until they are synced.
        self.active().seal();
        self.segments.insert(base, segment);
        Ok(())
    }

    /// Takes the files that need an fsync for everything appended so far to
    /// be durable, with the offset that will then be durable.
    pub fn take_unflushed(&mut self) -> Unflushed {
        Unflushed {
            dir: std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone()),
            files: std::mem::take(&mut self.unflushed),
            durable_offset: self.next_offset,
        }
    }

    /// Reads batches from `offset`, never past `upper_bound` (the high
    /// watermark), within `max_bytes` (at least one whole batch). Blocking,
    /// and under whatever lock guards the log: the broker plans under its
    /// lock (`plan_read`) and reads without it instead.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        let mut from = offset;
        while let Some(read) = self.plan_read(from, upper_bound)? {
            let bytes = read.read(offset, max_bytes, upper_bound)?;
            if !bytes.is_empty() || read.next_offset <= from {
                return Ok(Bytes::from(bytes));
            }
            from = read.next_offset;
        }
        Ok(Bytes::new())
    }

    /// The segment a read of `offset` starts in, with where to start: `None`
    /// when there is nothing below `upper_bound` to read. Cheap (no data is
    /// read), for the partition lock. A read that finds nothing in the
    /// segment (a gap left by recovery) plans again from its `next_offset`.
    pub fn plan_read(&self, offset: i64, upper_bound: i64) -> Result<Option<segment::SegmentRead>, LogError> {
        let log_start = self.log_start_offset();
        if offset < log_start || offset > self.next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end: self.next_offset,
            });
        }
        if offset >= upper_bound {
            return Ok(None);
        }
        let segment = self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
            .map(|(_, s)| s)
            .find(|s| s.next_offset() > offset);
        Ok(segment.map(|s| s.plan_read(offset)).transpose()?)
    }

    /// Where ListOffsets by `timestamp` must look: the byte ranges of the
    /// segments that may hold it. Cheap, so it can be taken under the
    /// partition lock; `TimestampSearch::run` then reads and decodes on a
    /// blocking thread, without the lock.
    pub fn timestamp_search(&self, timestamp: i64) -> TimestampSearch {
        let ranges = self
            .segments
            .values()
            .filter(|s| s.max_timestamp() >= timestamp)
            .filter_map(|s| {
                let start = s.lookup_time(timestamp)?;
                Some(SegmentRange {
                    file: s.file(),
                    path: s.path().to_path_buf(),
                    position: s.lookup_position(start),
                    end: s.size(),
                })
            })
            .collect();
        TimestampSearch { timestamp, ranges }
    }

    /// The largest timestamp in the log, if any record has one.
    pub fn max_timestamp(&self) -> Option<i64> {
        let max = self.segments.values().map(Segment::max_timestamp).max().unwrap_or(-1);
        (max >= 0).then_some(max)
    }

    /// The sealed segments (every one but the active), oldest first.
    pub fn sealed_segments(&self) -> Vec<crate::archive::SealedSegment> {
        let count = self.segments.len().saturating_sub(1);
        self.segments
            .values()
            .take(count)
            .map(|s| crate::archive::SealedSegment {
                path: s.path().to_path_buf(),
                base_offset: s.base_offset,
                next_offset: s.next_offset(),
                size_bytes: s.size(),
                aborted: self.txns.aborted_in(s.base_offset, s.next_offset()),
            })
            .collect()
    }

    /// Bytes at offsets >= `offset` (the part not yet archived).
    pub fn bytes_from(&self, offset: i64) -> (u64, usize) {
        let mut bytes = 0;
        let mut segments = 0;
        for s in self.segments.values().filter(|s| s.next_offset() > offset && !s.is_empty()) {
            bytes += s.size();
            segments += 1;
        }
        (bytes, segments)
    }

    /// Deletes sealed segments wholly below `archived_end` (they are in the
    /// archive) that `keep` does not want kept: local retention, and
    /// eviction under the disk budget. Returns them, out of the log: the
    /// caller deletes their files (`delete_segments`) without the lock.
    pub fn delete_archived(&mut self, archived_end: i64, mut keep: impl FnMut(&Segment, u64) -> bool) -> Vec<Segment> {
        let mut removed = Vec::new();
        let mut remaining = self.size_bytes();
        while self.segments.len() > 1 {
            let Some((&base, oldest)) = self.segments.iter().next() else {
                break;
            };
            if oldest.next_offset() > archived_end || keep(oldest, remaining) {
                break;
            }
            if let Some(segment) = self.segments.remove(&base) {
                remaining -= segment.size();
                tracing::info!(dir = %self.dir.display(), base_offset = base, "removed a local segment that is in the archive");
                removed.push(segment);
            }
        }
        self.epochs.truncate_from_start(self.log_start_offset());
        self.txns.forget_below(self.log_start_offset());
        removed
    }

    /// Makes the next offset at least `offset`: a log restored on an empty
    /// disk continues after what the archive holds.
    pub fn advance_to(&mut self, offset: i64, now_ms: i64) -> Result<(), LogError> {
        if offset <= self.next_offset {
            return Ok(());
        }
        // Everything this log holds is below `offset`, so the archive holds
        // it too (a stale disk, or an empty one): drop it, so reads below
        // `offset` go to the archive and never to an older local copy.
        for old in self.segments.values().filter(|s| !s.is_empty()) {
            tracing::warn!(dir = %self.dir.display(), base_offset = old.base_offset, archived_end = offset, "dropping a local segment the archive already covers");
        }
        self.reset_to(offset, now_ms)
    }

    /// Removes sealed segments past `retention.ms` / `retention.bytes` and
    /// returns them: the caller deletes their files (`delete_segments`)
    /// without the lock.
    /// Time retention removes expired segments whether archived or not;
    /// size retention only removes segments below `archived_end` (the
    /// archive's own `retention.bytes` bounds the rest), so the archive is
    /// never left with a gap by it.
    pub fn apply_retention(&mut self, now_ms: i64, archived_end: i64) -> Vec<Segment> {
        let mut removed = Vec::new();
        if !self.config.delete_policy {
            return removed;
        }
        let mut total = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let Some((&base, oldest)) = self.segments.iter().next() else {
                break;
            };
            let by_time = self.config.retention_ms >= 0 && now_ms - oldest.last_append_ms > self.config.retention_ms;
            let by_size = self.config.retention_bytes >= 0
                && total - oldest.size() as i64 >= self.config.retention_bytes
                && oldest.next_offset() <= archived_end;
            if !(by_time || by_size) {
                break;
            }
            if let Some(segment) = self.segments.remove(&base) {
                total -= segment.size() as i64;
                tracing::info!(dir = %self.dir.display(), base_offset = base, by_time, by_size, "retention deleted segment");
                removed.push(segment);
            }
        }
        self.epochs.truncate_from_start(self.log_start_offset());
        self.txns.forget_below(self.log_start_offset());
        removed
    }
}

impl PartitionLog {
    /// A cleaning pass over this compacted log, if one is due: the sealed
    /// segments wholly below `cleanable_below` (what the archive holds: the
    /// archive keeps every version) and older than `min.compaction.lag.ms`.
    /// Cheap, for the partition lock; `compaction::run_pass` does the work
    /// without it.
    pub fn plan_cleaning(
        &self,
        now_ms: i64,
        cleanable_below: i64,
        limits: records::Limits,
        map_capacity: usize,
    ) -> Option<compaction::CleaningPlan> {
        let config = self.config.compaction?;
        let sealed = self.segments.len().saturating_sub(1);
        let mut segments = Vec::new();
        for segment in self.segments.values().take(sealed) {
            if segment.next_offset() > cleanable_below || now_ms.saturating_sub(segment.last_append_ms) < config.min_compaction_lag_ms {
                break;
            }
            let file = segment.reader().ok()?;
            segments.push(compaction::SegmentToClean {
                base_offset: segment.base_offset,
                path: segment.path().to_path_buf(),
                file,
                size: segment.size(),
                next_offset: segment.next_offset(),
                last_append_ms: segment.last_append_ms,
            });
        }
        if !compaction::pass_due(&segments, self.cleaned_to, &config, now_ms) {
            return None;
        }
        let cleanable_end = segments.last().map_or(0, |s| s.next_offset);
        Some(compaction::CleaningPlan {
            aborted: self.txns.aborted_in(self.log_start_offset(), cleanable_end),
            segments,
            dirty_from: self.cleaned_to,
            config,
            now_ms,
            limits,
            map_capacity,
        })
    }

    /// Renames a pass's rewritten segments over the originals that are
    /// still as the pass read them (retention may have removed some), and
    /// moves the checkpoint. Returns the checkpoint to persist
    /// (`compaction::write_checkpoint`, after the directory is synced),
    /// which the caller does without the lock, and the replaced segment
    /// files, open: their blocks are freed when these are dropped, which
    /// the caller does after releasing the partition lock (freeing a large
    /// file can take milliseconds; appends must not wait for it).
    pub fn install_cleaned(&mut self, outcome: compaction::PassOutcome) -> Result<(i64, Vec<std::fs::File>), LogError> {
        let mut retired = Vec::new();
        for cleaned in outcome.cleaned {
            let current = self.segments.get(&cleaned.base_offset);
            let unchanged = current.is_some_and(|s| s.path() == cleaned.path && s.size() == cleaned.size_before && s.file().is_none());
            if !unchanged {
                // An unused rewrite: no reader has it, and removing it is
                // as cheap as holding it.
                retired.extend(std::fs::File::open(&cleaned.cleaned_path).ok());
                std::fs::remove_file(&cleaned.cleaned_path)?;
                continue;
            }
            retired.extend(std::fs::File::open(&cleaned.path).ok());
            std::fs::rename(&cleaned.cleaned_path, &cleaned.path)?;
            self.segments.insert(cleaned.base_offset, cleaned.opened.renamed(cleaned.path));
        }
        self.cleaned_to = self.cleaned_to.max(outcome.cleaned_to);
        Ok((self.cleaned_to, retired))
    }

    /// Offsets below this have been through a cleaning pass.
    pub fn cleaned_to(&self) -> i64 {
        self.cleaned_to
    }
}

fn replay_producers(segment: &Segment, producers: &mut ProducerStateTable, now_ms: i64) -> Result<(), LogError> {
    let file = segment.reader()?;
    segment::walk_headers(&file, 0, segment.size(), |header, _| {
        producers.record(header, header.base_offset, now_ms);
        Ok(true)
    })?;
    Ok(())
}

/// Recovers a log whose only segment holds `segment_bytes`, then reads it
/// all back, asserting what recovery promises: no panic, a valid prefix kept,
/// every batch served CRC-valid with ascending offsets. The `log_recovery`
/// fuzz target and the unit tests drive it.
#[cfg(any(test, feature = "fuzzing"))]
pub fn check_recovery_of(segment_bytes: &[u8]) {
    let Ok(dir) = tempfile_dir() else { return };
    let path = segment::segment_path(dir.path(), 0);
    // As a log that once held transactions: recovery also rebuilds its
    // open and aborted transactions from the markers.
    if std::fs::write(&path, segment_bytes).is_err() || std::fs::write(dir.path().join(TRANSACTIONAL_FLAG), b"").is_err() {
        return;
    }
    let Ok((log, _)) = PartitionLog::open(dir.path(), LogConfig::default(), 0) else {
        return;
    };
    let kept = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as usize;
    assert!(
        kept <= segment_bytes.len() && segment_bytes[..kept] == std::fs::read(&path).unwrap_or_default()[..],
        "recovery keeps a prefix"
    );
    let mut offset = log.log_start_offset();
    while offset < log.next_offset() {
        let Ok(bytes) = log.read(offset, 1 << 20, log.next_offset()) else {
            panic!("read within the log failed")
        };
        if bytes.is_empty() {
            break;
        }
        for (header, range) in batch::BatchWalker::new(&bytes) {
            assert!(batch::validate_stored(&bytes[range]).is_ok(), "served batches are valid");
            assert!(header.last_offset() >= offset, "offsets ascend");
            offset = header.last_offset() + 1;
        }
    }
}

/// A scratch directory for `check_recovery_of`.
#[cfg(any(test, feature = "fuzzing"))]
fn tempfile_dir() -> std::io::Result<ScratchDir> {
    let path = std::env::temp_dir().join(format!(
        "sediment-recovery-{}-{}",
        std::process::id(),
        SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&path)?;
    Ok(ScratchDir(path))
}

#[cfg(any(test, feature = "fuzzing"))]
static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(any(test, feature = "fuzzing"))]
struct ScratchDir(PathBuf);

#[cfg(any(test, feature = "fuzzing"))]
impl ScratchDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deletes the files of segments removed from a log; returns the bytes
/// freed. Blocking: an unlink of a large file can take a while, so it runs
/// without the partition lock. A crash before it leaves the files, and the
/// next start's retention removes them again.
pub fn delete_segments(segments: Vec<Segment>) -> std::io::Result<u64> {
    let mut freed = 0;
    for segment in segments {
        freed += segment.size();
        segment.delete()?;
    }
    Ok(freed)
}

/// fsyncs a directory so a created or removed file name is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::header_for;
    use crate::log::batch::tests::encode_batch;
    use kafka_protocol::records::Compression;

    fn batches(n: usize, producer_id: i64, seq: i32) -> Vec<(BatchHeader, Bytes)> {
        batch::split_batches(&encode_batch(n, Compression::None, producer_id, seq)).unwrap()
    }

    /// `n` records from `producer_id` at `seq`, in a transactional batch.
    fn txn_batches(n: usize, producer_id: i64, seq: i32) -> Vec<(BatchHeader, Bytes)> {
        let plain = encode_batch(n, Compression::None, producer_id, seq);
        let mut header = BatchHeader::parse(&plain).unwrap();
        header.attributes |= batch::ATTR_TRANSACTIONAL;
        let mut bytes = header_for(&header, &plain[HEADER_LEN..]).to_vec();
        bytes.extend_from_slice(&plain[HEADER_LEN..]);
        batch::split_batches(&Bytes::from(bytes)).unwrap()
    }

    fn marker(producer_id: i64, producer_epoch: i16, commit: bool) -> Marker {
        Marker {
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch: 0,
        }
    }

    #[test]
    fn transactions_bound_the_stable_offset_and_aborts_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        log.append(&batches(2, -1, -1), 0, 0).unwrap(); // 0..2
        log.append(&txn_batches(3, 1, 0), 0, 0).unwrap(); // 2..5, producer 1
        log.append(&txn_batches(2, 2, 0), 0, 0).unwrap(); // 5..7, producer 2
        assert_eq!(log.last_stable_offset(7), 2);
        assert_eq!(log.last_stable_offset(1), 1, "never past the high watermark");
        log.append_marker(marker(1, 0, false), 0, 0).unwrap(); // 7: abort 1
        assert_eq!(log.last_stable_offset(8), 5);
        log.append_marker(marker(2, 0, true), 0, 0).unwrap(); // 8: commit 2
        assert_eq!(log.last_stable_offset(9), 9);
        log.append(&txn_batches(1, 2, 2), 0, 0).unwrap(); // 9: producer 2 again
        let aborted = log.aborted_in(0, 10);
        assert_eq!(aborted.len(), 1);
        assert!(aborted[0].covers(1, 2) && aborted[0].covers(1, 4) && !aborted[0].covers(2, 5));
        drop(log);

        let (mut log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.aborted_in(0, 10), aborted, "the aborted index is rebuilt from the log");
        assert_eq!(log.last_stable_offset(10), 9, "producer 2's open transaction is found again");
        // The abort's epoch is remembered: an older epoch is fenced.
        log.append_marker(marker(2, 1, false), 0, 0).unwrap();
        assert!(matches!(
            log.append(&txn_batches(1, 2, 3), 0, 0),
            Err(LogError::InvalidProducerEpoch)
        ));
        drop(log);
        let (mut log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert!(matches!(
            log.append(&txn_batches(1, 2, 3), 0, 0),
            Err(LogError::InvalidProducerEpoch)
        ));
        assert_eq!(log.last_stable_offset(100), 100, "the abort closed the transaction");
        // Clients cannot write markers themselves.
        let forged = batch::split_batches(&txn::encode_marker(5, 0, true, 0, 0)).unwrap();
        assert!(matches!(log.append(&forged, 0, 0), Err(LogError::ControlBatchFromClient)));
    }

    #[test]
    fn a_follower_tracks_the_leaders_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let (mut leader, _) = PartitionLog::open(&dir.path().join("l"), LogConfig::default(), 0).unwrap();
        let (mut follower, _) = PartitionLog::open(&dir.path().join("f"), LogConfig::default(), 0).unwrap();
        leader.append(&txn_batches(2, 4, 0), 0, 0).unwrap();
        leader.append_marker(marker(4, 0, false), 0, 0).unwrap();
        leader.append(&txn_batches(1, 4, 2), 0, 0).unwrap();
        replicate(&leader, &mut follower, 0);
        assert_eq!(follower.aborted_in(0, 100), leader.aborted_in(0, 100));
        assert_eq!(follower.last_stable_offset(100), 3);
    }

    /// A log in `dir` holding `appends` batches of 3 records.
    fn filled_log(dir: &Path, config: LogConfig, appends: usize) -> PartitionLog {
        let (mut log, _) = PartitionLog::open(dir, config, 0).unwrap();
        for _ in 0..appends {
            log.append(&batches(3, -1, -1), 0, 0).unwrap();
        }
        log
    }

    #[test]
    fn offsets_are_assigned_contiguously_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
        for i in 0..20 {
            let r = log.append(&batches(3, -1, -1), 0, 0).unwrap();
            assert_eq!(r.base_offset, i * 3);
        }
        assert!(log.segment_count() > 1, "small segment.bytes rolls");
        drop(log);
        let (log, report) = PartitionLog::open(dir.path(), config, 0).unwrap();
        assert_eq!(log.next_offset(), 60);
        assert_eq!(report.batches, 20);
        let bytes = log.read(31, 1 << 20, 60).unwrap();
        assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 30);
    }

    /// Every batch of `log` from offset 0, as stored.
    fn stored_batches(log: &PartitionLog) -> Vec<Bytes> {
        let mut all = Vec::new();
        let mut from = log.log_start_offset();
        while from < log.next_offset() {
            let bytes = log.read(from, usize::MAX / 2, i64::MAX).unwrap();
            for (header, range) in batch::BatchWalker::new(&bytes) {
                from = header.last_offset() + 1;
                all.push(bytes.slice(range));
            }
        }
        all
    }

    #[test]
    fn a_follower_stores_the_leaders_batches_unchanged_and_skips_repeats() {
        let leader_dir = tempfile::tempdir().unwrap();
        let follower_dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        };
        let (mut leader, _) = PartitionLog::open(leader_dir.path(), config.clone(), 0).unwrap();
        for epoch in [3, 3, 5, 5, 5, 8] {
            leader.append(&batches(3, -1, -1), epoch, 0).unwrap();
        }
        let split: Vec<(BatchHeader, Bytes)> = stored_batches(&leader)
            .into_iter()
            .map(|b| (BatchHeader::parse(&b).unwrap(), b))
            .collect();
        let (mut follower, _) = PartitionLog::open(follower_dir.path(), config.clone(), 0).unwrap();
        follower.append_replicated(&split[..4], 0).unwrap();
        // The same fetch answered again, then the rest.
        let result = follower.append_replicated(&split, 0).unwrap();
        assert_eq!((result.base_offset, result.next_offset), (12, 18));
        assert_eq!(
            stored_batches(&follower),
            stored_batches(&leader),
            "offsets, epochs and CRCs as the leader wrote them"
        );
        assert_eq!(follower.epochs().entries(), &[(3, 0), (5, 6), (8, 15)]);
        // A gap is refused rather than stored.
        let (mut other, _) = PartitionLog::open(tempfile::tempdir().unwrap().path(), config.clone(), 0).unwrap();
        assert!(other.append_replicated(&split[2..], 0).is_err());
        drop(follower);
        let (follower, _) = PartitionLog::open(follower_dir.path(), config, 0).unwrap();
        assert_eq!(
            follower.epochs().entries(),
            &[(3, 0), (5, 6), (8, 15)],
            "rebuilt from the batch headers"
        );
    }

    /// Copies into `follower` the leader's batches from `from` on, as a
    /// follower's fetch does.
    fn replicate(leader: &PartitionLog, follower: &mut PartitionLog, from: i64) {
        let shipped: Vec<(BatchHeader, Bytes)> = stored_batches(leader)
            .into_iter()
            .map(|b| (BatchHeader::parse(&b).unwrap(), b))
            .filter(|(h, _)| h.base_offset >= from)
            .collect();
        follower.append_replicated(&shipped, 0).unwrap();
    }

    /// A follower's divergence check against `leader` and the truncation it
    /// leads to (KIP-279's rule), as `Partition::truncate_diverged` does.
    fn reconcile(leader: &PartitionLog, follower: &mut PartitionLog) {
        let last_epoch = follower.epochs().latest_epoch().unwrap_or(-1);
        let fetch_offset = follower.next_offset();
        if let Some((epoch, leader_end)) = epoch_cache::diverging(leader.epochs(), leader.next_offset(), last_epoch, fetch_offset) {
            let (own_epoch, own_end) = follower.epochs().end_offset_for(epoch, follower.next_offset());
            let cut = if own_epoch == epoch { own_end.min(leader_end) } else { leader_end };
            follower.truncate_to(cut, 0).unwrap();
        }
        replicate(leader, follower, follower.next_offset());
    }

    /// KIP-101's two scenarios with real logs: no acknowledged record is
    /// lost to a high-watermark truncation, and replicas that diverged end
    /// with the same batches.
    #[test]
    fn kip101_scenarios_end_with_identical_logs() {
        // Scenario 1: A leads epoch 0 and writes m1, m2; B copies both and
        // restarts. A goes; B leads epoch 1. A returns as B's follower.
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, _) = PartitionLog::open(a_dir.path(), LogConfig::default(), 0).unwrap();
        let (mut b, _) = PartitionLog::open(b_dir.path(), LogConfig::default(), 0).unwrap();
        a.append(&batches(1, -1, -1), 0, 0).unwrap();
        a.append(&batches(1, -1, -1), 0, 0).unwrap();
        replicate(&a, &mut b, 0);
        drop(b);
        let (mut b, _) = PartitionLog::open(b_dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(b.next_offset(), 2, "a restart truncates nothing (no high-watermark truncation)");
        b.begin_epoch(1);
        reconcile(&b, &mut a);
        assert_eq!(a.next_offset(), 2, "m2 survives on both");
        assert_eq!(stored_batches(&a), stored_batches(&b));

        // Scenario 2: A leads epoch 0 and writes m1, m2; B has only m1. Both
        // go; B returns first, leads epoch 1 and writes m3 at offset 1. A
        // returns as B's follower: m2 goes, m3 comes.
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, _) = PartitionLog::open(a_dir.path(), LogConfig::default(), 0).unwrap();
        let (mut b, _) = PartitionLog::open(b_dir.path(), LogConfig::default(), 0).unwrap();
        a.append(&batches(1, -1, -1), 0, 0).unwrap();
        replicate(&a, &mut b, 0);
        a.append(&batches(2, -1, -1), 0, 0).unwrap();
        b.begin_epoch(1);
        b.append(&batches(3, -1, -1), 1, 0).unwrap();
        reconcile(&b, &mut a);
        assert_eq!(stored_batches(&a), stored_batches(&b), "the same batches: offsets, epochs, CRCs");
        assert_eq!(a.epochs().entries(), &[(0, 0), (1, 1)]);
        assert_eq!(a.next_offset(), 4);
    }

    /// Random histories of leader appends (growing epochs, small segments),
    /// follower appends and truncations: the log stays a prefix of what was
    /// written, cut at batch boundaries; its epoch cache is what the batch
    /// headers say (a reopen rebuilds the same); offsets stay contiguous.
    #[test]
    fn random_appends_and_truncations_keep_the_log_a_consistent_prefix() {
        let mut rng = crate::seeded::Seeded::new(7);
        for _ in 0..60 {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig {
                segment_bytes: 300 + rng.below(600),
                ..LogConfig::default()
            };
            let (mut log, _) = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
            // The model: every batch's (base offset, epoch, bytes) still in the log.
            let mut model: Vec<(i64, i32, Bytes)> = Vec::new();
            let mut epoch = 0;
            for _ in 0..40 {
                match rng.below(5) {
                    0 => {
                        epoch += 1 + rng.below(3) as i32;
                        log.begin_epoch(epoch);
                    }
                    1 => {
                        let end = log.next_offset();
                        let cut = if end == 0 { 0 } else { rng.below(end as u64 + 1) as i64 };
                        let new_end = log.truncate_to(cut, 0).unwrap();
                        model.retain(|(base, _, _)| *base < new_end);
                        let expected = model.last().map_or(0, |(_, _, b)| BatchHeader::parse(b).unwrap().last_offset() + 1);
                        assert!(new_end <= cut.max(0) || cut >= end, "cut at {cut} left the log ending at {new_end}");
                        assert_eq!(new_end, expected, "the cut lands on a batch boundary");
                    }
                    _ => {
                        let n = 1 + rng.below(4) as usize;
                        let appended = log.append(&batches(n, -1, -1), epoch, 0).unwrap();
                        let stored = stored_batches(&log);
                        let last = stored.last().unwrap().clone();
                        assert_eq!(BatchHeader::parse(&last).unwrap().base_offset, appended.base_offset);
                        model.push((appended.base_offset, epoch, last));
                    }
                }
                let stored = stored_batches(&log);
                assert_eq!(stored, model.iter().map(|(_, _, b)| b.clone()).collect::<Vec<_>>());
                let mut next = 0;
                for (base, _, b) in &model {
                    assert_eq!(*base, next, "offsets stay contiguous");
                    next = BatchHeader::parse(b).unwrap().last_offset() + 1;
                }
                assert_eq!(log.next_offset(), next);
                // The cache holds each written epoch's first batch.
                let mut from_headers = EpochCache::default();
                for (base, e, _) in &model {
                    from_headers.assign(*e, *base);
                }
                let written: Vec<(i32, i64)> = log
                    .epochs()
                    .entries()
                    .iter()
                    .copied()
                    .filter(|(e, _)| model.iter().any(|(_, me, _)| me == e))
                    .collect();
                assert_eq!(written, from_headers.entries());
            }
            drop(log);
            let (reopened, _) = PartitionLog::open(dir.path(), config, 0).unwrap();
            assert_eq!(
                stored_batches(&reopened),
                model.iter().map(|(_, _, b)| b.clone()).collect::<Vec<_>>()
            );
            let mut from_headers = EpochCache::default();
            for (base, e, _) in &model {
                from_headers.assign(*e, *base);
            }
            assert_eq!(reopened.epochs(), &from_headers, "a reopen rebuilds the cache from the headers");
        }
    }

    #[test]
    fn truncation_cuts_at_a_batch_boundary_and_rebuilds_epochs_and_producers() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), config.clone(), 0).unwrap();
        for (i, epoch) in [1, 1, 1, 2, 2, 2, 2, 4, 4, 4].into_iter().enumerate() {
            log.append(&batches(3, 9, i as i32 * 3), epoch, 0).unwrap();
        }
        assert!(log.segment_count() > 2);
        let before = stored_batches(&log);
        // Offset 13 is inside the batch at 12: that batch goes whole.
        assert_eq!(log.truncate_to(13, 0).unwrap(), 12);
        assert_eq!(log.next_offset(), 12);
        assert_eq!(stored_batches(&log), before[..4].to_vec());
        assert_eq!(log.epochs().entries(), &[(1, 0), (2, 9)]);
        // Producer state is back at the cut: the batch at 12 (sequence 12)
        // is new again, not a duplicate, and appends continue at 12.
        let again = log.append(&batches(3, 9, 12), 6, 0).unwrap();
        assert_eq!((again.base_offset, again.records), (12, 3));
        assert_eq!(log.epochs().entries(), &[(1, 0), (2, 9), (6, 12)]);
        drop(log);
        let (mut log, _) = PartitionLog::open(dir.path(), config, 0).unwrap();
        assert_eq!(log.next_offset(), 15, "the cut and the append after it survive a reopen");
        // Cutting below the start leaves an empty log there.
        assert_eq!(log.truncate_to(0, 0).unwrap(), 0);
        assert!(log.epochs().entries().is_empty());
        assert_eq!(log.append(&batches(3, -1, -1), 7, 0).unwrap().base_offset, 0);
    }

    #[test]
    fn a_roll_leaves_the_directory_fsync_to_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), config, 0).unwrap();
        log.append(&batches(3, -1, -1), 0, 0).unwrap();
        let first = log.take_unflushed();
        assert!(first.dir.is_none(), "no segment was created");
        assert_eq!((first.files.len(), first.durable_offset), (1, 3));
        while log.segment_count() == 1 {
            log.append(&batches(3, -1, -1), 0, 0).unwrap();
        }
        let rolled = log.take_unflushed();
        assert_eq!(rolled.dir.as_deref(), Some(dir.path()), "the new name is synced by the flush");
        assert_eq!(rolled.files.len(), 2, "the sealed segment's tail and the new one");
        rolled.sync().unwrap();
        assert!(log.take_unflushed().is_empty());
    }

    #[test]
    fn a_planned_read_needs_no_lock_and_survives_appends_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let mut log = filled_log(dir.path(), config, 10);
        let planned = log.plan_read(0, 30).unwrap().unwrap();
        let tail = log.plan_read(27, 30).unwrap().unwrap();
        // After the plan: more appends, and the planned segment removed.
        for _ in 0..10 {
            log.append(&batches(3, -1, -1), 0, 0).unwrap();
        }
        assert!(delete_segments(log.delete_archived(30, |_, _| false)).unwrap() > 0);
        let bytes = planned.read(0, 1 << 20, 30).unwrap();
        assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 0, "a removed file stays readable");
        let bytes = tail.read(27, 1 << 20, i64::MAX).unwrap();
        let batches: Vec<_> = batch::BatchWalker::new(&bytes).map(|(h, _)| h.base_offset).collect();
        assert_eq!(batches, vec![27], "what was planned, not what came after");
        assert!(log.plan_read(30, 30).unwrap().is_none(), "nothing at the upper bound");
        assert!(matches!(log.plan_read(0, 60), Err(LogError::OffsetOutOfRange { .. })));
    }

    #[test]
    fn idempotent_retry_is_not_appended_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        let first = log.append(&batches(2, 9, 0), 0, 0).unwrap();
        let retry = log.append(&batches(2, 9, 0), 0, 0).unwrap();
        assert_eq!(retry.base_offset, first.base_offset);
        assert_eq!(log.next_offset(), 2);
        assert!(matches!(log.append(&batches(2, 9, 5), 0, 0), Err(LogError::OutOfOrderSequence)));
        drop(log);
        // Producer state is rebuilt from the log on restart.
        let (mut log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.append(&batches(2, 9, 0), 0, 0).unwrap().base_offset, 0);
        assert_eq!(log.append(&batches(1, 9, 2), 0, 0).unwrap().base_offset, 2);
    }

    #[test]
    fn read_out_of_range_and_at_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        log.append(&batches(5, -1, -1), 0, 0).unwrap();
        assert!(log.read(5, 100, 5).unwrap().is_empty());
        assert!(matches!(log.read(6, 100, 5), Err(LogError::OffsetOutOfRange { .. })));
        assert!(log.read(0, 100, 0).unwrap().is_empty(), "nothing past the high watermark");
    }

    #[test]
    fn too_large_batch_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            max_message_bytes: 100,
            ..LogConfig::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), config, 0).unwrap();
        assert!(matches!(
            log.append(&batches(20, -1, -1), 0, 0),
            Err(LogError::MessageTooLarge { .. })
        ));
        assert_eq!(log.next_offset(), 0);
    }

    #[test]
    fn retention_by_size_keeps_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 300,
            retention_bytes: 600,
            ..LogConfig::default()
        };
        let mut log = filled_log(dir.path(), config, 30);
        assert_eq!(log.apply_retention(0, 0).len(), 0, "nothing archived: size retention waits");
        let removed = log.apply_retention(0, i64::MAX);
        let deleted = removed.len();
        delete_segments(removed).unwrap();
        assert!(deleted > 0);
        assert!(log.size_bytes() <= 600 + 300);
        assert!(log.log_start_offset() > 0);
        assert!(matches!(log.read(0, 100, 90), Err(LogError::OffsetOutOfRange { .. })));
    }

    #[test]
    fn recovery_of_damaged_segments_keeps_a_valid_prefix() {
        // Valid batches, then every kind of damage at every position.
        let mut good = Vec::new();
        for (i, codec) in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
        .into_iter()
        .enumerate()
        {
            let b = encode_batch(3 + i, codec, -1, -1);
            let stamped = batch::stamp_header(
                &b,
                Stamp {
                    base_offset: (i * 10) as i64,
                    leader_epoch: 0,
                    log_append_time_ms: None,
                },
            );
            good.extend_from_slice(&stamped);
            good.extend_from_slice(&b[HEADER_LEN..]);
        }
        check_recovery_of(&good);
        let mut seed: u64 = 42;
        for cut in (0..good.len()).step_by(7) {
            check_recovery_of(&good[..cut]);
            let mut flipped = good.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            flipped[cut] ^= (seed >> 56) as u8 | 1;
            check_recovery_of(&flipped);
        }
        check_recovery_of(&[0u8; 200]);
        check_recovery_of(&[0xffu8; 200]);
    }

    #[test]
    fn only_archived_segments_are_removed_and_advance_skips_archived_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let mut log = filled_log(dir.path(), config, 10);
        let sealed = log.sealed_segments();
        assert!(sealed.len() >= 3);
        let archived_end = sealed[1].next_offset;
        let freed = delete_segments(log.delete_archived(archived_end, |_, _| false)).unwrap();
        assert!(freed > 0);
        assert_eq!(
            log.log_start_offset(),
            archived_end,
            "segments wholly below the archived end went, no more"
        );
        assert!(log.delete_archived(archived_end, |_, _| false).is_empty());
        // A fresh log continues after what the archive holds.
        let fresh = tempfile::tempdir().unwrap();
        let (mut restored, _) = PartitionLog::open(fresh.path(), LogConfig::default(), 0).unwrap();
        restored.advance_to(1000, 0).unwrap();
        assert_eq!(restored.next_offset(), 1000);
        assert_eq!(restored.append(&batches(2, -1, -1), 0, 0).unwrap().base_offset, 1000);
        assert_eq!(restored.segment_count(), 1, "the empty first segment was replaced");
        // A stale disk whose log ends before the archive: its segments go.
        let mut stale = log;
        stale.advance_to(10_000, 0).unwrap();
        assert_eq!(stale.segment_count(), 1);
        assert_eq!(stale.log_start_offset(), 10_000);
        assert!(
            matches!(stale.read(5, 100, 10_000), Err(LogError::OffsetOutOfRange { .. })),
            "older offsets are the archive's to serve"
        );
        // Its producers' state went with its segments: an idempotent
        // producer's next batch (far past what the disk held) is not a gap.
        let dir = tempfile::tempdir().unwrap();
        let (mut behind, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        behind.append(&batches(3, 42, 0), 0, 0).unwrap();
        behind.advance_to(500, 0).unwrap();
        let later = behind.append(&batches(3, 42, 300), 1, 0).unwrap();
        assert_eq!((later.base_offset, later.records), (500, 3));
    }

    /// File descriptors this process holds on files under `dir` (other
    /// tests run in parallel, so count only ours).
    fn open_fds_under(dir: &Path) -> usize {
        let dir = dir.canonicalize().unwrap();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|target| target.starts_with(&dir))
            .count()
    }

    #[test]
    fn sealed_segments_hold_no_file_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let mut log = filled_log(dir.path(), config.clone(), 60);
        assert!(log.segment_count() >= 20, "{} segments", log.segment_count());
        // The flusher keeps what it has to sync open until it has synced it.
        let unflushed = log.take_unflushed();
        assert_eq!(unflushed.durable_offset, 180);
        assert_eq!(unflushed.files.len(), log.segment_count());
        drop(unflushed);
        assert_eq!(open_fds_under(dir.path()), 1, "only the active segment is open");
        // Sealed segments are still read, and reads close what they open.
        let bytes = log.read(0, 1 << 20, 180).unwrap();
        assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 0);
        let limits = records::Limits {
            max_decoded_bytes: 1 << 20,
        };
        let search = log.timestamp_search(1_700_000_000_001);
        assert_eq!(search.run(limits).unwrap(), Some((1, 1_700_000_000_001)));
        drop(search);
        assert_eq!(open_fds_under(dir.path()), 1);
        drop(log);
        let (mut log, _) = PartitionLog::open(dir.path(), config, 0).unwrap();
        assert_eq!(open_fds_under(dir.path()), 1, "reopening opens only the active segment");
        let bytes = log.read(31, 1 << 20, 180).unwrap();
        assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 30);
        assert_eq!(log.append(&batches(3, -1, -1), 0, 0).unwrap().base_offset, 180);
    }

    #[test]
    fn offset_for_timestamp_finds_first_record_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        log.append(&batches(10, -1, -1), 0, 0).unwrap(); // timestamps base+0..9
        let limits = records::Limits {
            max_decoded_bytes: 1 << 20,
        };
        let found = log.timestamp_search(1_700_000_000_004).run(limits).unwrap();
        assert_eq!(found, Some((4, 1_700_000_000_004)));
        assert_eq!(log.timestamp_search(1_800_000_000_000).run(limits).unwrap(), None);
        assert_eq!(log.max_timestamp(), Some(1_700_000_000_009));
    }
}
