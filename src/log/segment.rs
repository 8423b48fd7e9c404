//! One segment file of a partition log: batches appended back to back, with
//! sparse offset and time indexes kept in memory.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_LEN};

/// Bytes between two sparse index entries (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
/// Batches up to this size are written with their header in one syscall.
const SMALL_BATCH_BYTES: usize = 16 * 1024;
/// Chunk size of the sequential recovery scan.
const SCAN_CHUNK: usize = 1 << 20;

pub fn segment_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

/// Parses a segment file name back into its base offset.
pub fn parse_segment_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: i64,
    pub position: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp: i64,
    pub offset: i64,
}

/// What recovery found in a segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub batches: u64,
    pub valid_bytes: u64,
    /// Bytes past the last valid batch that were cut off.
    pub truncated_bytes: u64,
}

pub struct Segment {
    pub base_offset: i64,
    path: PathBuf,
    /// The open file while this is the active segment. `None` once sealed:
    /// a sealed segment opens its file for each read and closes it after,
    /// so an idle segment holds no file descriptor.
    file: Option<Arc<File>>,
    size: u64,
    /// One past the last offset held; `base_offset` when empty.
    next_offset: i64,
    max_timestamp: i64,
    offset_index: Vec<IndexEntry>,
    time_index: Vec<TimeIndexEntry>,
    /// (leader epoch, first offset written under it), as the batch headers
    /// say: the log's part of the leader epoch cache.
    epochs: Vec<(i32, i64)>,
    bytes_since_index: u64,
    /// Wall-clock time of the first append, for `segment.ms` and retention.
    pub first_append_ms: Option<i64>,
    /// Wall-clock time of the last append, for time retention.
    pub last_append_ms: i64,
    /// Reused buffer for writing small batches in one syscall.
    scratch: Vec<u8>,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> std::io::Result<Self> {
        let path = segment_path(dir, base_offset);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        Ok(Self::from_file(path, file, base_offset, now_ms))
    }

    fn from_file(path: PathBuf, file: File, base_offset: i64, now_ms: i64) -> Self {
        Self {
            base_offset,
            path,
            file: Some(Arc::new(file)),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            epochs: Vec::new(),
            bytes_since_index: 0,
            first_append_ms: None,
            last_append_ms: now_ms,
            scratch: Vec::new(),
        }
    }

    /// Opens an existing segment and rebuilds its indexes. With
    /// `validate_all`, every batch's CRC is checked and a torn or corrupt
    /// tail is truncated; otherwise only headers are read (sealed segments:
    /// their data was fsynced before the high watermark passed it under the
    /// default flush policy, so only a torn end is looked for).
    pub fn open(path: &Path, base_offset: i64, validate_all: bool, mtime_ms: i64) -> std::io::Result<(Self, ScanReport)> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let file_len = file.metadata()?.len();
        let mut segment = Self::from_file(path.to_path_buf(), file, base_offset, mtime_ms);
        let file = segment.reader()?;
        let mut report = if validate_all {
            segment.scan_validating(&file, file_len)?
        } else {
            segment.scan_headers(&file, file_len)?
        };
        if report.valid_bytes < file_len {
            report.truncated_bytes = file_len - report.valid_bytes;
            file.set_len(report.valid_bytes)?;
            file.sync_all()?;
        }
        if segment.size > 0 {
            segment.first_append_ms = Some(mtime_ms);
        }
        Ok((segment, report))
    }

    fn accept_scanned(&mut self, header: &BatchHeader, position: u64) -> bool {
        if header.base_offset < self.next_offset || header.last_offset_delta < 0 {
            return false;
        }
        self.note_batch(header, position);
        true
    }

    fn scan_validating(&mut self, file: &File, file_len: u64) -> std::io::Result<ScanReport> {
        let mut report = ScanReport::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_start: u64 = 0; // file position of buf[0]
        let mut pos: u64 = 0;
        loop {
            let rel = (pos - buf_start) as usize;
            let need = match BatchHeader::parse(&buf[rel..]) {
                Ok(h) => h.total_len(),
                Err(batch::BatchError::Truncated { .. }) => HEADER_LEN,
                Err(_) => break,
            };
            if buf.len() - rel < need {
                if pos + need as u64 > file_len {
                    break;
                }
                // Refill from `pos`, at least one whole batch.
                let want = need.max(SCAN_CHUNK).min((file_len - pos) as usize);
                buf.resize(want, 0);
                file.read_exact_at(&mut buf, pos)?;
                buf_start = pos;
                continue;
            }
            // As the log may hold it: a follower's active segment holds a
            // compacted leader's batches, gaps and all.
            match batch::validate_stored(&buf[rel..rel + need]) {
                Ok(header) if self.accept_scanned(&header, pos) => {
                    pos += need as u64;
                    report.batches += 1;
                }
                _ => break,
            }
        }
        report.valid_bytes = pos;
        Ok(report)
    }

    fn scan_headers(&mut self, file: &File, file_len: u64) -> std::io::Result<ScanReport> {
        let mut report = ScanReport::default();
        let mut pos: u64 = 0;
        let mut header_buf = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= file_len {
            file.read_exact_at(&mut header_buf, pos)?;
            let Ok(header) = BatchHeader::parse(&header_buf) else { break };
            let end = pos + header.total_len() as u64;
            if end > file_len || !self.accept_scanned(&header, pos) {
                break;
            }
            pos = end;
            report.batches += 1;
        }
        report.valid_bytes = pos;
        Ok(report)
    }

    /// Updates size, offsets and the sparse indexes for a batch at `position`.
    fn note_batch(&mut self, header: &BatchHeader, position: u64) {
        let len = header.total_len() as u64;
        if self.offset_index.is_empty() || self.bytes_since_index >= INDEX_INTERVAL_BYTES {
            self.offset_index.push(IndexEntry {
                offset: header.base_offset,
                position,
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.time_index.push(TimeIndexEntry {
                timestamp: header.max_timestamp,
                offset: header.base_offset,
            });
        }
        if self.epochs.last().is_none_or(|(epoch, _)| header.partition_leader_epoch > *epoch) {
            self.epochs.push((header.partition_leader_epoch, header.base_offset));
        }
        self.size = position + len;
        self.next_offset = header.last_offset() + 1;
    }

    /// (leader epoch, first offset) for each epoch that wrote batches here.
    pub fn epochs(&self) -> &[(i32, i64)] {
        &self.epochs
    }

    /// Cuts the segment back so it ends before `offset`, at a batch
    /// boundary (a batch holding `offset` goes whole), and rebuilds its
    /// indexes. Only the active segment is truncated: the caller drops
    /// sealed segments wholly past the cut.
    pub fn truncate_to(&mut self, offset: i64) -> std::io::Result<()> {
        let Some(file) = self.file.clone() else {
            return Err(std::io::Error::other(format!("segment {} is sealed", self.path.display())));
        };
        let position = skip_batches_below(&file, self.lookup_position(offset), self.size, offset)?;
        let cut = position.min(self.size);
        file.set_len(cut)?;
        file.sync_all()?;
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_index.clear();
        self.time_index.clear();
        self.epochs.clear();
        self.bytes_since_index = 0;
        self.scan_headers(&file, cut)?;
        Ok(())
    }

    /// Appends one batch: its rewritten header, then its records as sent.
    /// On a write error the file is cut back so no partial batch remains.
    pub fn append(&mut self, header_bytes: &[u8; HEADER_LEN], records: &[u8], now_ms: i64) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Err(std::io::Error::other(format!("segment {} is sealed", self.path.display())));
        };
        let position = self.size;
        let result = if records.len() <= SMALL_BATCH_BYTES {
            // One syscall for small batches: copying a few KiB is cheaper
            // than a second write.
            self.scratch.clear();
            self.scratch.extend_from_slice(header_bytes);
            self.scratch.extend_from_slice(records);
            file.write_all_at(&self.scratch, position)
        } else {
            file.write_all_at(header_bytes, position)
                .and_then(|()| file.write_all_at(records, position + HEADER_LEN as u64))
        };
        if let Err(e) = result {
            let _ = file.set_len(position);
            return Err(e);
        }
        let header = BatchHeader::parse(header_bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.note_batch(&header, position);
        self.first_append_ms.get_or_insert(now_ms);
        self.last_append_ms = now_ms;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The open file of the active segment; `None` once sealed.
    pub fn file(&self) -> Option<Arc<File>> {
        self.file.clone()
    }

    /// Seals the segment: no more appends, and its file is closed (once
    /// the flusher has dropped its handle, if it holds one). Reads open the
    /// file again for as long as they need it.
    pub fn seal(&mut self) {
        self.file = None;
        self.scratch = Vec::new();
    }

    /// A handle to read through: the active segment's own file, or a sealed
    /// segment's file opened read-only for the caller (closed when dropped).
    pub fn reader(&self) -> std::io::Result<Arc<File>> {
        match &self.file {
            Some(file) => Ok(file.clone()),
            None => File::open(&self.path).map(Arc::new),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sealed segment, once its file was renamed to `path` (the
    /// cleaner opens a rewritten file off the lock, then renames it into
    /// place under it).
    pub fn renamed(mut self, path: PathBuf) -> Self {
        self.seal();
        self.path = path;
        self
    }

    /// File position from which to scan for `offset`: the last sparse index
    /// entry at or below it.
    pub fn lookup_position(&self, offset: i64) -> u64 {
        let idx = self.offset_index.partition_point(|e| e.offset <= offset);
        if idx == 0 {
            0
        } else {
            self.offset_index[idx - 1].position
        }
    }

    /// First offset whose batch could hold a timestamp >= `timestamp`.
    pub fn lookup_time(&self, timestamp: i64) -> Option<i64> {
        self.time_index.iter().find(|e| e.timestamp >= timestamp).map(|e| e.offset)
    }

    /// Where a read of `offset` starts, with a handle on the file: cheap, so
    /// it can be taken under the partition lock, and the read done without it.
    pub fn plan_read(&self, offset: i64) -> std::io::Result<SegmentRead> {
        Ok(SegmentRead {
            file: self.reader()?,
            position: self.lookup_position(offset),
            size: self.size,
            next_offset: self.next_offset,
        })
    }

    /// Reads the batches that hold offsets from `offset` on (see `SegmentRead::read`).
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> std::io::Result<Vec<u8>> {
        self.plan_read(offset)?.read(offset, max_bytes, upper_bound)
    }

    pub fn delete(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// Walks the batch headers of a segment file from `position` (a batch
/// boundary) while a whole header lies below `size`, reading headers only,
/// and hands each with its position to `visit` until it returns false.
/// Returns the position of the batch it stopped at (`size` or past: none).
pub fn walk_headers(
    file: &File,
    mut position: u64,
    size: u64,
    mut visit: impl FnMut(&BatchHeader, u64) -> std::io::Result<bool>,
) -> std::io::Result<u64> {
    let mut header_buf = [0u8; HEADER_LEN];
    while position + HEADER_LEN as u64 <= size {
        file.read_exact_at(&mut header_buf, position)?;
        let header = BatchHeader::parse(&header_buf).map_err(|e| std::io::Error::other(e.to_string()))?;
        if !visit(&header, position)? {
            break;
        }
        position += header.total_len() as u64;
    }
    Ok(position)
}

/// From `position` (a batch boundary), the position of the first batch
/// that holds `offset` or a later one, reading headers only; `size` if none.
fn skip_batches_below(file: &File, position: u64, size: u64, offset: i64) -> std::io::Result<u64> {
    walk_headers(file, position, size, |header, _| Ok(header.last_offset() < offset))
}

/// A read of one segment as it stood when planned: appends only add bytes
/// past `size`, and an open handle keeps a deleted file readable, so the
/// read needs no lock.
pub struct SegmentRead {
    file: Arc<File>,
    /// Where the offset index says to start.
    position: u64,
    size: u64,
    /// The segment's end: where a read that finds nothing here goes on.
    pub next_offset: i64,
}

impl SegmentRead {
    /// Reads the batches that hold offsets from `offset` on, stopping before
    /// any batch at or past `upper_bound`, within `max_bytes` (but always the
    /// whole first batch, so a consumer can make progress on a large one).
    /// Blocking.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> std::io::Result<Vec<u8>> {
        let file = &self.file;
        let position = skip_batches_below(file, self.position, self.size, offset)?;
        if position >= self.size {
            return Ok(Vec::new());
        }
        let available = (self.size - position) as usize;
        let mut want = max_bytes.min(available).max(HEADER_LEN.min(available));
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, position)?;
        // Make sure the first batch is whole even if larger than max_bytes.
        if let Ok(first) = BatchHeader::parse(&buf) {
            let first_len = first.total_len().min(available);
            if first_len > want {
                want = first_len;
                buf.resize(want, 0);
                file.read_exact_at(&mut buf, position)?;
            }
        }
        let mut end = 0;
        for (header, range) in batch::BatchWalker::new(&buf) {
            if header.base_offset >= upper_bound {
                break;
            }
            end = range.end;
        }
        buf.truncate(end);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::encode_batch;
    use crate::log::batch::{stamp_header, Stamp};
    use kafka_protocol::records::Compression;

    fn append_n(segment: &mut Segment, offset: i64, n: usize) -> i64 {
        let batch = encode_batch(n, Compression::None, -1, -1);
        let header = stamp_header(
            &batch,
            Stamp {
                base_offset: offset,
                leader_epoch: 0,
                log_append_time_ms: None,
            },
        );
        segment.append(&header, &batch[HEADER_LEN..], 0).unwrap();
        offset + n as i64
    }

    #[test]
    fn segment_names_round_trip() {
        let path = segment_path(Path::new("/x"), 42);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(42));
        assert_eq!(parse_segment_name("abc.log"), None);
        assert_eq!(parse_segment_name("00000000000000000042.index"), None);
    }

    #[test]
    fn read_returns_whole_batches_from_offset_below_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        let mut next = 0;
        for _ in 0..10 {
            next = append_n(&mut segment, next, 3);
        }
        let bytes = segment.read(7, 1 << 20, i64::MAX).unwrap();
        let first = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(first.base_offset, 6);
        let all: Vec<_> = batch::BatchWalker::new(&bytes).collect();
        assert_eq!(all.len(), 8);
        let bounded = segment.read(0, 1 << 20, 9).unwrap();
        assert_eq!(batch::BatchWalker::new(&bounded).count(), 3);
        let tiny = segment.read(0, 10, i64::MAX).unwrap();
        assert_eq!(batch::BatchWalker::new(&tiny).count(), 1, "first batch is returned whole");
    }

    #[test]
    fn recovery_truncates_torn_and_garbled_tails() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        let mut next = 0;
        for _ in 0..5 {
            next = append_n(&mut segment, next, 2);
        }
        let good_len = segment.size();
        let path = segment.path().to_path_buf();
        drop(segment);
        // A torn write: half a batch at the end.
        let batch = encode_batch(2, Compression::None, -1, -1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&batch[..batch.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let (segment, report) = Segment::open(&path, 0, true, 0).unwrap();
        assert_eq!(report.batches, 5);
        assert_eq!(segment.size(), good_len);
        assert_eq!(segment.next_offset(), 10);
        drop(segment);
        // A garbled last batch: flip a byte inside its records.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let (segment, report) = Segment::open(&path, 0, true, 0).unwrap();
        assert_eq!(report.batches, 4);
        assert_eq!(segment.next_offset(), 8);
        assert!(report.truncated_bytes > 0);
    }

    #[test]
    fn header_scan_rebuilds_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 100, 0).unwrap();
        let mut next = 100;
        for _ in 0..50 {
            next = append_n(&mut segment, next, 4);
        }
        let path = segment.path().to_path_buf();
        drop(segment);
        let (segment, report) = Segment::open(&path, 100, false, 0).unwrap();
        assert_eq!(report.batches, 50);
        assert_eq!(segment.next_offset(), 300);
        assert!(segment.lookup_position(299) > 0);
    }
}
