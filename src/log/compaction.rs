//! The log cleaner of compacted topics (`cleanup.policy=compact`): keeps
//! the latest record of every key and drops the older ones, with offsets
//! preserved (the log gets gaps, never new offsets).
//!
//! A pass works as Kafka's does. The *dirty* part of the log (from the
//! cleaner checkpoint up to the first segment it may not clean yet) is read
//! once to map each key's digest to its latest offset. Then every cleanable
//! segment, clean or dirty, is rewritten without the records the map
//! supersedes. A tombstone (a null value) is kept until it has been through
//! one pass and its segment is older than `delete.retention.ms`, so that a
//! consumer that read the key earlier also sees its deletion.
//!
//! Crash safety: a segment is rewritten into `<segment>.cleaned`, fsynced,
//! and renamed over the original, so each segment file is whole, old or new,
//! at any instant; leftovers are removed when the log opens. Nothing is
//! merged across segments, so no crash can leave two files holding one
//! offset.
//!
//! Bounds: the map holds at most `capacity` keys (16-byte SHA-256 digests:
//! an attacker choosing keys cannot make two collide); a pass whose dirty
//! part has more keys cleans up to where the map filled, and the next pass
//! goes on from there.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::BatchHeader;
use super::encode;
use super::records::{self, codec_of, Limits, Record};
use super::segment::Segment;
use super::LogError;

/// Suffix of a segment being rewritten.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// The partition directory's file holding the cleaner checkpoint.
pub const CHECKPOINT_FILE: &str = "cleaner-checkpoint";

/// What the cleaner obeys, from the topic's configs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// Digests are uniformly distributed already: hash them as they are.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A key's identity in the map: the first 16 bytes of its SHA-256.
pub fn key_digest(key: &[u8]) -> u128 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest.as_ref()[..16]);
    u128::from_be_bytes(first)
}

/// Each key's latest offset in the part of the log that was mapped.
#[derive(Debug)]
pub struct OffsetMap {
    latest: HashMap<u128, i64, BuildHasherDefault<Passthrough>>,
    capacity: usize,
    /// Offsets below this were mapped (those from `start`): the map
    /// decides only for records below it.
    end: i64,
}

impl OffsetMap {
    pub fn new(capacity: usize, start: i64) -> Self {
        Self {
            latest: HashMap::default(),
            capacity: capacity.max(1),
            end: start,
        }
    }

    /// Maps `offset` as the newest of its key. False when the map is full
    /// and the key is new: the map then ends before `offset`.
    pub fn put(&mut self, digest: u128, offset: i64) -> bool {
        if self.latest.len() >= self.capacity && !self.latest.contains_key(&digest) {
            return false;
        }
        self.latest.insert(digest, offset);
        self.end = offset + 1;
        true
    }

    /// Ends the map at `end` (everything below it was mapped).
    pub fn close(&mut self, end: i64) {
        self.end = self.end.max(end);
    }

    pub fn end(&self) -> i64 {
        self.end
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Whether the record at `offset` stays: not superseded by a later
    /// record of its key, and not a tombstone whose time is up. Records
    /// past the map stay (a later pass decides), as do those of keys it
    /// does not know (from the clean part, never superseded since).
    pub fn keeps(&self, key: Option<&[u8]>, offset: i64, tombstone: bool, tombstone_expired: bool) -> bool {
        if offset >= self.end {
            return true;
        }
        // Kafka refuses keyless records on a compacted topic; any written
        // before the topic became compacted cannot be kept per key.
        let Some(key) = key else { return false };
        match self.latest.get(&key_digest(key)) {
            Some(&latest) if latest > offset => false,
            _ => !(tombstone && tombstone_expired),
        }
    }
}

/// A sealed segment as the cleaner sees it, taken under the partition lock.
#[derive(Debug, Clone)]
pub struct SegmentToClean {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub size: u64,
    pub next_offset: i64,
    pub last_append_ms: i64,
}

/// One pass over a partition, planned under its lock and run without it.
#[derive(Debug, Clone)]
pub struct CleaningPlan {
    /// Every segment from the log start to the first one not cleanable.
    pub segments: Vec<SegmentToClean>,
    /// Where the dirty part starts (the checkpoint).
    pub dirty_from: i64,
    pub config: CompactionConfig,
    pub now_ms: i64,
    pub limits: Limits,
    pub map_capacity: usize,
    /// Aborted transactions in these segments: their records are removed
    /// and never shadow a committed record of the same key.
    pub aborted: Vec<super::txn::AbortedTxn>,
}

impl CleaningPlan {
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional() && !header.is_control() && self.aborted.iter().any(|a| a.covers(header.producer_id, header.base_offset))
    }
}

/// Whether a pass is due, given the sizes of the cleanable segments: the
/// dirty share is at least `min.cleanable.dirty.ratio`, or the oldest dirty
/// record has waited `max.compaction.lag.ms`.
pub fn pass_due(segments: &[SegmentToClean], dirty_from: i64, config: &CompactionConfig, now_ms: i64) -> bool {
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let dirty: Vec<&SegmentToClean> = segments.iter().filter(|s| s.next_offset > dirty_from && s.size > 0).collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    if dirty_bytes == 0 || total == 0 {
        return false;
    }
    let ratio = dirty_bytes as f64 / total as f64;
    let overdue = dirty
        .first()
        .is_some_and(|s| now_ms.saturating_sub(s.last_append_ms) >= config.max_compaction_lag_ms);
    ratio >= config.min_cleanable_dirty_ratio || overdue
}

/// A segment rewritten by a pass, waiting to be renamed over the original.
pub struct CleanedSegment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub cleaned_path: PathBuf,
    pub size_before: u64,
    pub size_after: u64,
    /// The rewritten file, opened and indexed off the lock (sealed).
    pub opened: Segment,
}

impl std::fmt::Debug for CleanedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanedSegment")
            .field("base_offset", &self.base_offset)
            .field("path", &self.path)
            .field("size_before", &self.size_before)
            .field("size_after", &self.size_after)
            .finish()
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassOutcome {
    pub cleaned: Vec<CleanedSegment>,
    /// The new checkpoint: the dirty part now starts here.
    pub cleaned_to: i64,
    pub records_read: u64,
    pub records_removed: u64,
    pub bytes_read: u64,
}

/// A pass's figures, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassSummary {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_read: u64,
    pub bytes_saved: u64,
}

impl PassOutcome {
    pub fn summary(&self) -> PassSummary {
        PassSummary {
            segments_rewritten: self.cleaned.len(),
            records_removed: self.records_removed,
            bytes_read: self.bytes_read,
            bytes_saved: self.cleaned.iter().map(|c| c.size_before.saturating_sub(c.size_after)).sum(),
        }
    }
}

/// The batches of one segment file, in order, read whole.
fn for_each_batch(segment: &SegmentToClean, mut visit: impl FnMut(BatchHeader, Bytes) -> Result<bool, LogError>) -> Result<(), LogError> {
    let mut failed = None;
    super::segment::walk_headers(&segment.file, 0, segment.size, |header, position| {
        let len = header.total_len() as u64;
        if position + len > segment.size {
            return Ok(false);
        }
        let mut buf = vec![0u8; len as usize];
        segment.file.read_exact_at(&mut buf, position)?;
        visit(*header, Bytes::from(buf)).or_else(|e| {
            failed = Some(e);
            Ok(false)
        })
    })?;
    failed.map_or(Ok(()), Err)
}

/// Reads the dirty part into an offset map.
fn build_map(plan: &CleaningPlan, outcome: &mut PassOutcome) -> Result<OffsetMap, LogError> {
    let mut map = OffsetMap::new(plan.map_capacity, plan.dirty_from);
    let mut full = false;
    for segment in plan.segments.iter().filter(|s| s.next_offset > plan.dirty_from) {
        for_each_batch(segment, |header, bytes| {
            outcome.bytes_read += bytes.len() as u64;
            if header.is_control() || header.last_offset() < plan.dirty_from || plan.is_aborted(&header) {
                return Ok(true);
            }
            for record in records::collect(&bytes, &header, plan.limits)? {
                let offset = header.base_offset + record.offset_delta as i64;
                if offset < plan.dirty_from {
                    continue;
                }
                outcome.records_read += 1;
                if let Some(key) = &record.key {
                    if !map.put(key_digest(key), offset) {
                        full = true;
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })?;
        if full {
            return Ok(map);
        }
        map.close(segment.next_offset);
    }
    Ok(map)
}

/// Runs one pass: maps the dirty part, then writes each segment it changes
/// into `<segment>.cleaned` (fsynced). Blocking. The caller renames the
/// results over the originals under the partition lock
/// (`PartitionLog::install_cleaned`).
pub fn run_pass(plan: &CleaningPlan) -> Result<PassOutcome, LogError> {
    // A pass that fails part-way leaves no rewritten file behind.
    let result = run_pass_inner(plan);
    if result.is_err() {
        for segment in &plan.segments {
            let _ = std::fs::remove_file(cleaned_path_of(&segment.path));
        }
    }
    result
}

fn run_pass_inner(plan: &CleaningPlan) -> Result<PassOutcome, LogError> {
    let mut outcome = PassOutcome::default();
    let map = build_map(plan, &mut outcome)?;
    outcome.cleaned_to = map.end();
    let horizon = plan.now_ms.saturating_sub(plan.config.delete_retention_ms);
    for segment in plan.segments.iter().filter(|s| s.base_offset < map.end()) {
        // A tombstone goes once it has been through a pass (it is in the
        // clean part) and its segment is older than delete.retention.ms.
        let tombstones_expire = segment.next_offset <= plan.dirty_from && segment.last_append_ms < horizon;
        if let Some(cleaned) = clean_segment(plan, segment, &map, tombstones_expire, &mut outcome)? {
            outcome.cleaned.push(cleaned);
        }
    }
    Ok(outcome)
}

/// Rewrites one segment without what `map` supersedes; `None` when nothing
/// in it goes.
fn clean_segment(
    plan: &CleaningPlan,
    segment: &SegmentToClean,
    map: &OffsetMap,
    tombstones_expire: bool,
    outcome: &mut PassOutcome,
) -> Result<Option<CleanedSegment>, LogError> {
    let limits = plan.limits;
    // Each producer's last batch here stays, emptied if need be, so the
    // producer's sequence survives a restart that replays this segment.
    let mut last_batch_of: HashMap<i64, i64> = HashMap::new();
    super::segment::walk_headers(&segment.file, 0, segment.size, |header, _| {
        if header.producer_id >= 0 {
            last_batch_of.insert(header.producer_id, header.base_offset);
        }
        Ok(true)
    })?;
    let cleaned_path = cleaned_path_of(&segment.path);
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(&cleaned_path)?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut written = 0u64;
    let mut removed = 0u64;
    for_each_batch(segment, |header, bytes| {
        if header.is_control() {
            out.write_all(&bytes)?;
            written += bytes.len() as u64;
            return Ok(true);
        }
        let records = records::collect(&bytes, &header, limits)?;
        let before = records.len();
        let aborted = plan.is_aborted(&header);
        let kept: Vec<Record> = records
            .into_iter()
            .filter(|r| {
                let offset = header.base_offset + r.offset_delta as i64;
                !aborted && map.keeps(r.key.as_deref(), offset, r.value.is_none(), tombstones_expire)
            })
            .collect();
        removed += (before - kept.len()) as u64;
        let rewritten = if kept.len() == before {
            bytes
        } else if kept.is_empty() && last_batch_of.get(&header.producer_id) != Some(&header.base_offset) {
            return Ok(true);
        } else {
            encode::rebuild_batch(&header, &kept, codec_of(&header), None)?
        };
        out.write_all(&rewritten)?;
        written += rewritten.len() as u64;
        Ok(true)
    })?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    if removed == 0 {
        drop(file);
        std::fs::remove_file(&cleaned_path)?;
        return Ok(None);
    }
    file.sync_all()?;
    // Time retention and tombstone expiry go by the segment's age: keep it.
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_millis(segment.last_append_ms.max(0) as u64);
    file.set_modified(mtime)?;
    drop(file);
    // Indexed here, on the blocking pool, so that installing it under the
    // partition lock is a rename.
    let (mut opened, _) = Segment::open(&cleaned_path, segment.base_offset, false, segment.last_append_ms)?;
    opened.seal();
    outcome.records_removed += removed;
    Ok(Some(CleanedSegment {
        base_offset: segment.base_offset,
        path: segment.path.clone(),
        cleaned_path,
        size_before: segment.size,
        size_after: written,
        opened,
    }))
}

pub fn cleaned_path_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(CLEANED_SUFFIX);
    PathBuf::from(name)
}

/// The checkpoint in `dir`, 0 if none (the whole log is dirty: a pass
/// redoes work, never loses any).
pub fn read_checkpoint(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(CHECKPOINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes the checkpoint atomically (temporary file, fsync, rename).
pub fn write_checkpoint(dir: &Path, offset: i64) -> std::io::Result<()> {
    let temp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(offset.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(CHECKPOINT_FILE))?;
    super::sync_dir(dir)
}

/// Removes what a crashed pass left behind.
pub fn remove_leftovers(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(CLEANED_SUFFIX) || name == format!("{CHECKPOINT_FILE}.tmp") {
            tracing::info!(dir = %dir.display(), file = %name, "removing what an interrupted cleaning left");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Takes any bytes as a compacted partition's sealed segment, runs a
/// cleaning pass, and asserts what the cleaner promises: no panic; a pass
/// that fails leaves the log as it was; after a pass, every record served
/// was served before at the same offset, offsets ascend, every batch is a
/// valid stored batch, and each key's latest record is still there. The
/// `log_cleaning` fuzz target and the unit tests drive it.
#[cfg(any(test, feature = "fuzzing"))]
pub fn check_cleaning_of(segment_bytes: &[u8]) {
    use super::{LogConfig, PartitionLog};
    let Ok(dir) = super::tempfile_dir() else { return };
    if std::fs::write(super::segment::segment_path(dir.path(), 0), segment_bytes).is_err() {
        return;
    }
    let config = LogConfig {
        delete_policy: false,
        compaction: Some(CompactionConfig {
            min_cleanable_dirty_ratio: 0.0,
            delete_retention_ms: 0,
            ..CompactionConfig::default()
        }),
        ..LogConfig::default()
    };
    let Ok((mut log, _)) = PartitionLog::open(dir.path(), config, 0) else {
        return;
    };
    if log.roll(0).is_err() {
        return;
    }
    let limits = Limits {
        max_decoded_bytes: 1 << 20,
    };
    let before = served_records(&log, limits);
    // Twice: the second pass drops tombstones the first left in the clean part.
    for _ in 0..2 {
        // Long after every append: no lag holds a segment back.
        let Some(plan) = log.plan_cleaning(i64::MAX / 2, log.next_offset(), limits, 64) else {
            return;
        };
        let outcome = match run_pass(&plan) {
            Ok(outcome) => outcome,
            Err(_) => {
                let _ = remove_leftovers(dir.path());
                assert_eq!(served_records(&log, limits), before, "a failed pass changes nothing");
                return;
            }
        };
        assert!(log.install_cleaned(outcome).is_ok(), "installing a pass succeeds");
        let after = served_records(&log, limits);
        let Some(before) = &before else { return };
        let after = after.unwrap_or_else(|| panic!("a cleaned log decodes"));
        let mut latest: HashMap<Vec<u8>, (i64, bool)> = HashMap::new();
        for (offset, key, tombstone) in before {
            if let Some(key) = key {
                latest.insert(key.clone(), (*offset, *tombstone));
            }
        }
        let mut last = -1;
        for record in &after {
            assert!(record.0 > last, "offsets ascend");
            last = record.0;
            assert!(before.contains(record), "a served record was there before");
        }
        for (key, (offset, tombstone)) in latest {
            if !tombstone {
                assert!(after.contains(&(offset, Some(key), false)), "each key's latest record stays");
            }
        }
    }
}

/// (offset, key, is a tombstone) of every record a consumer reads from the
/// start; `None` if a served batch does not decode.
#[cfg(any(test, feature = "fuzzing"))]
#[allow(clippy::type_complexity)]
fn served_records(log: &super::PartitionLog, limits: Limits) -> Option<Vec<(i64, Option<Vec<u8>>, bool)>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.next_offset() {
        let bytes = log.read(offset, 1 << 20, log.next_offset()).ok()?;
        if bytes.is_empty() {
            break;
        }
        for (header, range) in super::batch::BatchWalker::new(&bytes) {
            let batch = bytes.slice(range);
            super::batch::validate_stored(&batch).ok()?;
            records::walk(&batch, &header, limits, records::Fields::Keep, |r| {
                let at = header.base_offset + r.offset_delta as i64;
                if at >= offset {
                    out.push((at, r.key.map(|k| k.to_vec()), r.value.is_none()));
                }
                Ok(true)
            })
            .ok()?;
            offset = header.last_offset() + 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_keeps_only_each_keys_latest_record() {
        let mut map = OffsetMap::new(10, 0);
        assert!(map.put(key_digest(b"a"), 0));
        assert!(map.put(key_digest(b"b"), 1));
        assert!(map.put(key_digest(b"a"), 2));
        map.close(3);
        assert!(!map.keeps(Some(b"a"), 0, false, false), "superseded");
        assert!(map.keeps(Some(b"b"), 1, false, false));
        assert!(map.keeps(Some(b"a"), 2, false, false));
        assert!(map.keeps(Some(b"a"), 3, false, false), "past the map: a later pass decides");
        assert!(map.keeps(Some(b"c"), 1, true, false), "a fresh tombstone stays");
        assert!(!map.keeps(Some(b"c"), 1, true, true), "an expired tombstone goes");
        assert!(!map.keeps(None, 1, false, false), "keyless records cannot be compacted");
    }

    #[test]
    fn a_full_map_ends_before_the_first_key_it_cannot_hold() {
        let mut map = OffsetMap::new(2, 100);
        assert_eq!(map.end(), 100);
        assert!(map.put(key_digest(b"a"), 100));
        assert!(map.put(key_digest(b"b"), 101));
        assert!(map.put(key_digest(b"a"), 102), "a known key still fits");
        assert!(!map.put(key_digest(b"c"), 103));
        assert_eq!(map.end(), 103);
        assert!(map.keeps(Some(b"c"), 103, false, false));
    }

    fn segment(base: i64, next: i64, size: u64, last_append_ms: i64) -> SegmentToClean {
        SegmentToClean {
            base_offset: base,
            path: PathBuf::from(format!("/nonexistent/{base}.log")),
            file: Arc::new(File::open("/dev/null").unwrap()),
            size,
            next_offset: next,
            last_append_ms,
        }
    }

    #[test]
    fn a_pass_is_due_by_dirty_ratio_or_by_max_lag() {
        let config = CompactionConfig::default();
        let segments = vec![segment(0, 100, 1000, 0), segment(100, 200, 1000, 0)];
        assert!(pass_due(&segments, 0, &config, 10), "all dirty");
        assert!(pass_due(&segments, 100, &config, 10), "half dirty meets 0.5");
        assert!(!pass_due(&segments, 200, &config, 10), "nothing dirty");
        let strict = CompactionConfig {
            min_cleanable_dirty_ratio: 0.9,
            max_compaction_lag_ms: 1000,
            ..config
        };
        assert!(!pass_due(&segments, 100, &strict, 10));
        assert!(pass_due(&segments, 100, &strict, 5000), "overdue by max.compaction.lag.ms");
    }
}

/// The cleaner against a real log on disk: what a consumer reads after a
/// pass, crash leftovers, producers, and what the pass may not touch.
#[cfg(test)]
mod log_tests {
    use super::*;
    use crate::log::batch::tests::encode_records;
    use crate::log::batch::{self, BatchWalker};
    use crate::log::{LogConfig, PartitionLog};
    use kafka_protocol::records::Compression;

    const LIMITS: Limits = Limits {
        max_decoded_bytes: 1 << 20,
    };

    /// One batch of (key, value) records; a None value is a tombstone.
    fn keyed_batch(records: &[(&str, Option<&str>)], compression: Compression, producer_id: i64, seq: i32) -> (BatchHeader, Bytes) {
        let records: Vec<(Option<Bytes>, Option<Bytes>)> = records
            .iter()
            .map(|(k, v)| (Some(Bytes::from(k.to_string())), v.map(|v| Bytes::from(v.to_string()))))
            .collect();
        let bytes = encode_records(&records, compression, producer_id, seq);
        (batch::validate(&bytes).unwrap(), bytes)
    }

    fn compacted_config() -> LogConfig {
        LogConfig {
            segment_bytes: 1 << 20,
            delete_policy: false,
            // Clean whenever anything is dirty; `pass_due` has its own test.
            compaction: Some(CompactionConfig {
                min_cleanable_dirty_ratio: 0.0,
                ..CompactionConfig::default()
            }),
            ..LogConfig::default()
        }
    }

    /// Every (offset, key, value) a consumer reading from the start sees.
    fn read_all(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.next_offset() {
            let bytes = log.read(offset, 1 << 20, log.next_offset()).unwrap();
            if bytes.is_empty() {
                break;
            }
            for (header, range) in BatchWalker::new(&bytes) {
                if header.is_control() {
                    // Consumers skip markers.
                    offset = header.last_offset() + 1;
                    continue;
                }
                let batch_bytes = bytes.slice(range);
                let stored = batch::validate_stored(&batch_bytes).unwrap();
                records::walk(&batch_bytes, &stored, LIMITS, records::Fields::Keep, |r| {
                    let at = header.base_offset + r.offset_delta as i64;
                    if at >= offset {
                        let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
                        out.push((at, text(r.key).unwrap_or_default(), text(r.value)));
                    }
                    Ok(true)
                })
                .unwrap();
                offset = header.last_offset() + 1;
            }
        }
        out
    }

    /// Appends a batch and seals the segment (each batch its own segment).
    fn append_sealed(log: &mut PartitionLog, batch: (BatchHeader, Bytes), now_ms: i64) {
        log.append(&[batch], 0, now_ms).unwrap();
        log.roll(now_ms).unwrap();
    }

    fn pass(log: &mut PartitionLog, now_ms: i64) -> Option<PassSummary> {
        let plan = log.plan_cleaning(now_ms, log.next_offset(), LIMITS, 1000)?;
        let outcome = run_pass(&plan).unwrap();
        let summary = outcome.summary();
        let (checkpoint, _) = log.install_cleaned(outcome).unwrap();
        write_checkpoint(log.dir(), checkpoint).unwrap();
        Some(summary)
    }

    #[test]
    fn aborted_records_are_removed_and_never_shadow_committed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        append_sealed(&mut log, keyed_batch(&[("a", Some("a1"))], Compression::None, -1, -1), 0);
        let transactional = |(mut header, bytes): (BatchHeader, Bytes)| {
            header.attributes |= batch::ATTR_TRANSACTIONAL;
            let mut out = batch::header_for(&header, &bytes[batch::HEADER_LEN..]).to_vec();
            out.extend_from_slice(&bytes[batch::HEADER_LEN..]);
            let out = Bytes::from(out);
            (batch::validate(&out).unwrap(), out)
        };
        // Producer 9 writes a2 and aborts; producer 8 writes b1 and commits.
        log.append(&[transactional(keyed_batch(&[("a", Some("a2"))], Compression::None, 9, 0))], 0, 0)
            .unwrap();
        log.append(&[transactional(keyed_batch(&[("b", Some("b1"))], Compression::Lz4, 8, 0))], 0, 0)
            .unwrap();
        let marker = |producer_id, commit| crate::log::Marker {
            producer_id,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 0,
        };
        log.append_marker(marker(9, false), 0, 0).unwrap();
        log.append_marker(marker(8, true), 0, 0).unwrap();
        log.roll(0).unwrap();
        pass(&mut log, 1000).expect("a pass is due");
        let seen: Vec<(i64, String, Option<String>)> = read_all(&log);
        assert_eq!(
            seen,
            vec![(0, "a".into(), Some("a1".into())), (2, "b".into(), Some("b1".into()))],
            "a2 was aborted: a1 stays the latest value of a"
        );
        assert_eq!(log.aborted_in(0, 10).len(), 1, "the markers stay");
        assert_eq!(log.last_stable_offset(100), 100);
    }

    #[test]
    fn a_pass_keeps_each_keys_latest_record_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        append_sealed(
            &mut log,
            keyed_batch(
                &[("a", Some("a1")), ("b", Some("b1")), ("c", Some("c1"))],
                Compression::None,
                -1,
                -1,
            ),
            0,
        );
        append_sealed(
            &mut log,
            keyed_batch(&[("a", Some("a2")), ("c", None)], Compression::Zstd, -1, -1),
            0,
        );
        append_sealed(&mut log, keyed_batch(&[("b", Some("b2"))], Compression::Gzip, -1, -1), 0);
        let size_before = log.size_bytes();
        let outcome = pass(&mut log, 1000).expect("a pass is due");
        assert_eq!(outcome.records_removed, 3, "a1, b1 and c1 are superseded");
        assert!(log.size_bytes() < size_before);
        let seen = read_all(&log);
        assert_eq!(
            seen,
            vec![
                (3, "a".into(), Some("a2".into())),
                (4, "c".into(), None),
                (5, "b".into(), Some("b2".into())),
            ],
            "offsets are preserved and the fresh tombstone stays"
        );
        assert_eq!(log.log_start_offset(), 0, "compaction never moves the log start");
        assert!(pass(&mut log, 1000).is_none(), "nothing is dirty now");

        // A new segment makes the log dirty again; once delete.retention.ms
        // has passed, the tombstone (now in the clean part) goes too.
        append_sealed(&mut log, keyed_batch(&[("a", Some("a3"))], Compression::None, -1, -1), 0);
        let day = CompactionConfig::default().delete_retention_ms;
        pass(&mut log, day + 10).expect("a pass is due");
        let seen = read_all(&log);
        assert_eq!(seen, vec![(5, "b".into(), Some("b2".into())), (6, "a".into(), Some("a3".into()))]);

        // Reopened (a restart), the log reads the same and the checkpoint holds.
        let cleaned_to = log.cleaned_to();
        drop(log);
        let (log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        assert_eq!(read_all(&log), seen);
        assert_eq!(log.cleaned_to(), cleaned_to);
    }

    #[test]
    fn a_follower_copies_a_compacted_log_with_its_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let (mut leader, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        append_sealed(
            &mut leader,
            keyed_batch(&[("a", Some("1")), ("b", Some("1"))], Compression::Snappy, 4, 0),
            0,
        );
        append_sealed(
            &mut leader,
            keyed_batch(&[("a", Some("2")), ("b", Some("2"))], Compression::None, 4, 2),
            0,
        );
        append_sealed(&mut leader, keyed_batch(&[("c", Some("3"))], Compression::None, -1, -1), 0);
        pass(&mut leader, 1000).unwrap();
        let bytes = leader.read(0, 1 << 20, leader.next_offset()).unwrap();
        let mut all = bytes.to_vec();
        let mut offset = 0;
        for (header, _) in BatchWalker::new(&bytes) {
            offset = header.last_offset() + 1;
        }
        while offset < leader.next_offset() {
            let more = leader.read(offset, 1 << 20, leader.next_offset()).unwrap();
            let Some((last, _)) = BatchWalker::new(&more).last() else { break };
            offset = last.last_offset() + 1;
            all.extend_from_slice(&more);
        }
        let batches = batch::split_stored_batches(&Bytes::from(all)).unwrap();
        assert!(
            batch::split_batches(&Bytes::from(bytes.to_vec())).is_err(),
            "a producer's rules would refuse them"
        );
        let follower_dir = tempfile::tempdir().unwrap();
        let (mut follower, _) = PartitionLog::open(follower_dir.path(), compacted_config(), 0).unwrap();
        follower.append_replicated(&batches, 0).unwrap();
        assert_eq!(follower.next_offset(), leader.next_offset());
        assert_eq!(read_all(&follower), read_all(&leader));
        assert_eq!(read_all(&follower).len(), 3);
        // The copies sit in the follower's active segment, which recovery
        // checks batch by batch: a restart keeps them all.
        drop(follower);
        let (follower, report) = PartitionLog::open(follower_dir.path(), compacted_config(), 0).unwrap();
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(read_all(&follower), read_all(&leader));
    }

    #[test]
    fn an_interrupted_pass_leaves_the_log_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        append_sealed(
            &mut log,
            keyed_batch(&[("a", Some("a1")), ("b", Some("b1"))], Compression::None, -1, -1),
            0,
        );
        append_sealed(&mut log, keyed_batch(&[("a", Some("a2"))], Compression::None, -1, -1), 0);
        let before = read_all(&log);
        // The pass writes its files, then the process dies before renaming.
        let plan = log.plan_cleaning(1000, log.next_offset(), LIMITS, 1000).unwrap();
        let outcome = run_pass(&plan).unwrap();
        assert!(!outcome.cleaned.is_empty());
        assert!(outcome.cleaned.iter().all(|c| c.cleaned_path.exists()));
        drop(log);
        let (log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        assert!(outcome.cleaned.iter().all(|c| !c.cleaned_path.exists()), "leftovers are removed");
        assert_eq!(read_all(&log), before, "nothing was lost");
    }

    #[test]
    fn an_idempotent_producer_keeps_its_sequence_across_cleaning_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        append_sealed(
            &mut log,
            keyed_batch(&[("a", Some("1")), ("a", Some("2"))], Compression::None, 9, 0),
            0,
        );
        append_sealed(&mut log, keyed_batch(&[("a", Some("3"))], Compression::None, 9, 2), 0);
        pass(&mut log, 1000).unwrap();
        assert_eq!(read_all(&log), vec![(2, "a".into(), Some("3".into()))]);
        drop(log);
        let (mut log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        // A retry of the last batch is still recognised, and the next one appends.
        let retry = log
            .append(&[keyed_batch(&[("a", Some("3"))], Compression::None, 9, 2)], 0, 0)
            .unwrap();
        assert_eq!(retry.base_offset, 2, "a duplicate is acknowledged at its offset");
        let next = log
            .append(&[keyed_batch(&[("b", Some("4"))], Compression::None, 9, 3)], 0, 0)
            .unwrap();
        assert_eq!(next.base_offset, 3);
        let gap = log.append(&[keyed_batch(&[("b", Some("5"))], Compression::None, 9, 7)], 0, 0);
        assert!(gap.is_err(), "a sequence gap is still refused");
    }

    #[test]
    fn segments_still_being_written_or_under_the_lag_are_not_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            compaction: Some(CompactionConfig {
                min_compaction_lag_ms: 500,
                min_cleanable_dirty_ratio: 0.0,
                ..CompactionConfig::default()
            }),
            ..compacted_config()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), config, 0).unwrap();
        append_sealed(&mut log, keyed_batch(&[("a", Some("1"))], Compression::None, -1, -1), 0);
        log.append(&[keyed_batch(&[("a", Some("2"))], Compression::None, -1, -1)], 0, 0)
            .unwrap();
        assert!(log.plan_cleaning(1000, log.next_offset(), LIMITS, 1000).is_some());
        assert!(
            log.plan_cleaning(100, log.next_offset(), LIMITS, 1000).is_none(),
            "younger than min.compaction.lag.ms"
        );
        assert!(log.plan_cleaning(1000, 0, LIMITS, 1000).is_none(), "not archived yet");
        // The active segment is never cleaned: a is superseded only there.
        let outcome = pass(&mut log, 1000);
        assert!(outcome.is_none_or(|o| o.records_removed == 0));
        assert_eq!(read_all(&log).len(), 2);
    }

    #[test]
    fn the_fuzz_check_holds_for_a_real_log_and_for_garbage() {
        let mut segment = Vec::new();
        for (i, compression) in [Compression::None, Compression::Zstd, Compression::Snappy].into_iter().enumerate() {
            let (_, mut b) = keyed_batch(&[("a", Some("1")), ("b", None), ("a", Some("2"))], compression, -1, -1);
            let mut bytes = b.to_vec();
            bytes[..8].copy_from_slice(&(i as i64 * 3).to_be_bytes());
            // The base offset is outside the CRC: the batch stays valid.
            b = Bytes::from(bytes);
            segment.extend_from_slice(&b);
        }
        check_cleaning_of(&segment);
        check_cleaning_of(&segment[..segment.len() - 7]);
        check_cleaning_of(b"not a segment at all");
        check_cleaning_of(&[]);
    }

    #[test]
    fn a_small_map_cleans_in_several_passes_and_reaches_the_same_result() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), compacted_config(), 0).unwrap();
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        for round in 0..3 {
            let values: Vec<String> = keys.iter().map(|k| format!("{k}-{round}")).collect();
            let records: Vec<(&str, Option<&str>)> = keys.iter().zip(&values).map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect();
            append_sealed(&mut log, keyed_batch(&records, Compression::Lz4, -1, -1), 0);
        }
        let mut passes = 0;
        loop {
            let Some(plan) = log.plan_cleaning(1000, log.next_offset(), LIMITS, 7) else {
                break;
            };
            let outcome = run_pass(&plan).unwrap();
            log.install_cleaned(outcome).unwrap();
            passes += 1;
            assert!(passes < 20, "each pass makes progress");
        }
        assert!(passes > 1);
        let seen = read_all(&log);
        assert_eq!(seen.len(), 20);
        assert!(seen.iter().all(|(_, k, v)| v.as_deref() == Some(format!("{k}-2").as_str())));
    }
}
