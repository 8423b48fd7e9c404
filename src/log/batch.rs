//! The RecordBatch (magic v2) header: the only part of a batch the broker reads.
//!
//! Records travel as the producer encoded them. The broker parses the fixed
//! 61-byte header to validate the batch, assign offsets and find batch
//! boundaries, and never decodes the records themselves on the produce or
//! fetch path.

use bytes::Bytes;

/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s payload: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;

const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was refused. Each maps to one Kafka error code at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is truncated: {have} of {need} bytes")]
    Truncated { have: usize, need: usize },
    #[error("batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch is malformed: {0}")]
    Malformed(&'static str),
}

/// The fields of a v2 batch header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Decodes the header at the start of `buf` without checking the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                have: buf.len(),
                need: HEADER_LEN,
            });
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if header.magic != 2 {
            return Err(BatchError::UnsupportedMagic(header.magic));
        }
        if (header.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Malformed("batch length shorter than its header"));
        }
        Ok(header)
    }

    /// Whole size of the batch on the wire and on disk.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        // Sequences wrap at i32::MAX, as in Kafka.
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// The header of a complete batch whose length and CRC-32C hold.
fn checked(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let need = header.total_len();
    if buf.len() < need {
        return Err(BatchError::Truncated { have: buf.len(), need });
    }
    let computed = crc32c::crc32c(&buf[CRC_START..need]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Validates a complete batch: header, length, structure and CRC-32C.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = checked(buf)?;
    if header.records_count <= 0 {
        return Err(BatchError::Malformed("batch holds no records"));
    }
    if header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::Malformed("last offset delta does not match the record count"));
    }
    Ok(header)
}

/// Validates a batch as a log may hold it: header, length and CRC-32C, but
/// with compaction's gaps allowed (fewer records than offsets, or none: the
/// cleaner keeps an emptied batch to remember its producer's sequence).
/// Recovery, followers and the archive read the log through this.
pub fn validate_stored(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = checked(buf)?;
    if header.records_count < 0 || header.last_offset_delta < 0 || header.records_count > header.last_offset_delta.saturating_add(1) {
        return Err(BatchError::Malformed("record count does not fit the batch's offsets"));
    }
    Ok(header)
}

/// Splits `records` into batches, each checked by `validate`.
fn split_with(records: &Bytes, validate: fn(&[u8]) -> Result<BatchHeader, BatchError>) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < records.len() {
        let header = validate(&records[pos..])?;
        let end = pos + header.total_len();
        out.push((header, records.slice(pos..end)));
        pos = end;
    }
    Ok(out)
}

/// Splits batches read from a log (a leader's, for a follower) into
/// validated batches: as `split_batches`, with compaction's gaps allowed.
pub fn split_stored_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    split_with(records, validate_stored)
}

/// Splits the `records` field of a produce request into validated batches.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let out = split_with(records, validate)?;
    if out.is_empty() {
        return Err(BatchError::Malformed("no record batch in request"));
    }
    Ok(out)
}

/// The 61 header bytes of a batch like `header` holding `payload` (its
/// records, compressed as `header.attributes` says): the batch length and
/// CRC-32C are computed, the other fields are `header`'s.
pub fn header_for(header: &BatchHeader, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..8].copy_from_slice(&header.base_offset.to_be_bytes());
    out[8..12].copy_from_slice(&((HEADER_LEN - LOG_OVERHEAD + payload.len()) as i32).to_be_bytes());
    out[12..16].copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out[16] = 2;
    out[21..23].copy_from_slice(&header.attributes.to_be_bytes());
    out[23..27].copy_from_slice(&header.last_offset_delta.to_be_bytes());
    out[27..35].copy_from_slice(&header.base_timestamp.to_be_bytes());
    out[35..43].copy_from_slice(&header.max_timestamp.to_be_bytes());
    out[43..51].copy_from_slice(&header.producer_id.to_be_bytes());
    out[51..53].copy_from_slice(&header.producer_epoch.to_be_bytes());
    out[53..57].copy_from_slice(&header.base_sequence.to_be_bytes());
    out[57..61].copy_from_slice(&header.records_count.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[CRC_START..]), payload);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// How the leader rewrites a batch's header before appending it.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub base_offset: i64,
    pub leader_epoch: i32,
    /// `Some(now_ms)` for topics with `message.timestamp.type=LogAppendTime`.
    pub log_append_time_ms: Option<i64>,
}

/// Returns the batch's header rewritten by `stamp`. Only the header changes,
/// so the records are written from the producer's buffer without a copy.
pub fn stamp_header(batch: &[u8], stamp: Stamp) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&batch[..HEADER_LEN]);
    header[0..8].copy_from_slice(&stamp.base_offset.to_be_bytes());
    header[12..16].copy_from_slice(&stamp.leader_epoch.to_be_bytes());
    if let Some(now_ms) = stamp.log_append_time_ms {
        let attributes = be_i16(&header, 21) | ATTR_TIMESTAMP_TYPE;
        header[21..23].copy_from_slice(&attributes.to_be_bytes());
        header[35..43].copy_from_slice(&now_ms.to_be_bytes());
        // attributes and maxTimestamp are inside the CRC: recompute it over
        // the new header tail and the unchanged records.
        let mut crc = crc32c::crc32c(&header[CRC_START..HEADER_LEN]);
        crc = crc32c::crc32c_append(crc, &batch[HEADER_LEN..]);
        header[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    header
}

/// Walks the complete batches at the start of `buf`, yielding each header and
/// its byte range. Stops at the first incomplete or invalid header.
pub struct BatchWalker<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchWalker<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
}

impl Iterator for BatchWalker<'_> {
    type Item = (BatchHeader, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let header = BatchHeader::parse(&self.buf[self.pos..]).ok()?;
        let end = self.pos.checked_add(header.total_len())?;
        if end > self.buf.len() {
            return None;
        }
        let range = self.pos..end;
        self.pos = end;
        Some((header, range))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    /// Encodes `n` records as one batch with kafka-protocol's encoder, the
    /// way a client would.
    pub(crate) fn encode_batch(n: usize, compression: Compression, producer_id: i64, seq: i32) -> Bytes {
        let records: Vec<(Option<Bytes>, Option<Bytes>)> = (0..n)
            .map(|i| (Some(Bytes::from(format!("key-{i}"))), Some(Bytes::from(format!("value-{i}")))))
            .collect();
        encode_records(&records, compression, producer_id, seq)
    }

    /// Encodes (key, value) records as one batch, record `i` at timestamp
    /// 1_700_000_000_000 + i, as a client would.
    pub(crate) fn encode_records(
        records: &[(Option<Bytes>, Option<Bytes>)],
        compression: Compression,
        producer_id: i64,
        seq: i32,
    ) -> Bytes {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder batches records whose offset-sequence distance is equal.
                sequence: if producer_id >= 0 {
                    seq.wrapping_add(i as i32)
                } else {
                    i as i32 - 1
                },
                timestamp: 1_700_000_000_000 + i as i64,
                key: key.clone(),
                value: value.clone(),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.freeze()
    }

    #[test]
    fn valid_batch_parses_and_checks_crc() {
        let batch = encode_batch(3, Compression::None, -1, -1);
        let header = validate(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.total_len(), batch.len());
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let batch = encode_batch(3, Compression::None, -1, -1);
        let mut bad = batch.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(validate(&bad), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn truncated_batch_is_refused() {
        let batch = encode_batch(3, Compression::None, -1, -1);
        assert!(matches!(validate(&batch[..batch.len() - 1]), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate(&batch[..10]), Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn stamping_offset_keeps_crc_valid() {
        let batch = encode_batch(2, Compression::None, -1, -1);
        let header = stamp_header(
            &batch,
            Stamp {
                base_offset: 42,
                leader_epoch: 7,
                log_append_time_ms: None,
            },
        );
        let mut stamped = header.to_vec();
        stamped.extend_from_slice(&batch[HEADER_LEN..]);
        let parsed = validate(&stamped).unwrap();
        assert_eq!(parsed.base_offset, 42);
        assert_eq!(parsed.partition_leader_epoch, 7);
    }

    #[test]
    fn stamping_log_append_time_recomputes_crc() {
        let batch = encode_batch(2, Compression::Gzip, -1, -1);
        let header = stamp_header(
            &batch,
            Stamp {
                base_offset: 0,
                leader_epoch: 0,
                log_append_time_ms: Some(123),
            },
        );
        let mut stamped = header.to_vec();
        stamped.extend_from_slice(&batch[HEADER_LEN..]);
        let parsed = validate(&stamped).unwrap();
        assert!(parsed.is_log_append_time());
        assert_eq!(parsed.max_timestamp, 123);
    }

    #[test]
    fn split_finds_every_batch() {
        let a = encode_batch(2, Compression::None, -1, -1);
        let b = encode_batch(5, Compression::Snappy, -1, -1);
        let joined = Bytes::from([a.to_vec(), b.to_vec()].concat());
        let batches = split_batches(&joined).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].0.records_count, 5);
        assert!(split_batches(&Bytes::new()).is_err());
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let batch = encode_batch(3, Compression::None, 5, i32::MAX - 1);
        let header = validate(&batch).unwrap();
        assert_eq!(header.last_sequence(), 0, "MAX-1, MAX, then 0");
    }
}
