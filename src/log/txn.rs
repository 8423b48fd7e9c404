//! A partition's view of transactions: which producers have a transaction
//! open here (and from which offset, which bounds the last stable offset),
//! and which transactions were aborted (the aborted-transaction index a
//! read_committed consumer filters with). Pure logic; the log feeds it each
//! batch it appends or replays, and writes the markers it describes.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{header_for, BatchHeader, ATTR_CONTROL, ATTR_TRANSACTIONAL, HEADER_LEN};
use super::encode::{put_record_fields, RecordFields};

/// Control record types (the `type` in a control record's key).
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// One aborted transaction of one producer in this partition: its records
/// lie in `first_offset..last_offset`, and `last_offset` is the abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl AbortedTxn {
    /// Whether a transactional batch of `producer_id` at `offset` belongs
    /// to this aborted transaction.
    pub fn covers(&self, producer_id: i64, offset: i64) -> bool {
        self.producer_id == producer_id && (self.first_offset..self.last_offset).contains(&offset)
    }
}

#[derive(Debug, Default, Clone)]
pub struct PartitionTxns {
    /// Producer id → the first offset of its open transaction here.
    open: HashMap<i64, i64>,
    /// The same, ordered by first offset: its head bounds the LSO.
    open_by_offset: BTreeSet<(i64, i64)>,
    /// Aborted transactions, in the order of their markers.
    aborted: VecDeque<AbortedTxn>,
    /// Markers written since the log was opened: a write verified with a
    /// remote coordinator is appended only if none came meanwhile.
    markers_seen: u64,
}

impl PartitionTxns {
    /// Notes a batch written at `offset` (appended, replicated or replayed).
    /// `marker` is the decision a control batch carries.
    pub fn on_batch(&mut self, header: &BatchHeader, offset: i64, marker: Option<bool>) {
        if !header.is_transactional() {
            return;
        }
        let producer_id = header.producer_id;
        if header.is_control() {
            let Some(commit) = marker else { return };
            self.markers_seen += 1;
            if let Some(first) = self.open.remove(&producer_id) {
                self.open_by_offset.remove(&(first, producer_id));
                if !commit {
                    self.aborted.push_back(AbortedTxn {
                        producer_id,
                        first_offset: first,
                        last_offset: offset,
                    });
                }
            }
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = self.open.entry(producer_id) {
            slot.insert(offset);
            self.open_by_offset.insert((offset, producer_id));
        }
    }

    /// The first offset of the oldest open transaction: the last stable
    /// offset, if it is below the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open_by_offset.first().map(|(offset, _)| *offset)
    }

    /// The first offset of `producer_id`'s open transaction here.
    pub fn open_since(&self, producer_id: i64) -> Option<i64> {
        self.open.get(&producer_id).copied()
    }

    /// How many markers were written here since the log was opened.
    pub fn markers_seen(&self) -> u64 {
        self.markers_seen
    }

    /// Whether `producer_id` has a transaction open here.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The aborted transactions with records in `from..to`, oldest first:
    /// what a read_committed fetch of that range is told.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        // Markers ascend, so everything before the first marker at or past
        // `from` ended before the range.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted.range(start..).filter(|a| a.first_offset < to).copied().collect()
    }

    /// Forgets aborted transactions wholly below `log_start` (their records
    /// are gone from this log).
    pub fn forget_below(&mut self, log_start: i64) {
        while self.aborted.front().is_some_and(|a| a.last_offset < log_start) {
            self.aborted.pop_front();
        }
    }
}

/// A control batch (commit or abort marker) for `producer_id` at `epoch`,
/// as Kafka writes it: transactional and control attributes, no sequence,
/// one record whose key is (version 0, type) and whose value is (version 0,
/// coordinator epoch). Its base offset is set when it is appended.
pub fn encode_marker(producer_id: i64, producer_epoch: i16, commit: bool, coordinator_epoch: i32, timestamp_ms: i64) -> Bytes {
    let mut key = [0u8; 4];
    key[2..4].copy_from_slice(&(if commit { CONTROL_COMMIT } else { CONTROL_ABORT }).to_be_bytes());
    let mut value = [0u8; 6];
    value[2..6].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let mut records = BytesMut::new();
    put_record_fields(
        &mut records,
        &mut Vec::new(),
        RecordFields {
            timestamp_delta: 0,
            offset_delta: 0,
            key: Some(&key),
            value: Some(&value),
            headers: std::iter::empty(),
        },
    );
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: ATTR_TRANSACTIONAL | ATTR_CONTROL,
        last_offset_delta: 0,
        base_timestamp: timestamp_ms,
        max_timestamp: timestamp_ms,
        producer_id,
        producer_epoch,
        base_sequence: -1,
        records_count: 1,
    };
    let mut out = BytesMut::with_capacity(HEADER_LEN + records.len());
    out.put_slice(&header_for(&header, &records));
    out.put_slice(&records);
    out.freeze()
}

/// The decision of a control batch (`true`: commit), read from its first
/// record's key; `None` if it is not a transaction marker. Control batches
/// are never compressed, so the record sits right after the header.
pub fn marker_of(batch: &[u8]) -> Option<bool> {
    let header = BatchHeader::parse(batch).ok()?;
    marker_in(&header, batch.get(HEADER_LEN..)?)
}

/// `marker_of` for a batch given as its header and its record bytes.
pub fn marker_in(header: &BatchHeader, records: &[u8]) -> Option<bool> {
    if !header.is_control() || header.records_count < 1 {
        return None;
    }
    let mut rest = records;
    let _length = read_varint(&mut rest)?;
    let _attributes = take(&mut rest, 1)?;
    let _timestamp_delta = read_varint(&mut rest)?;
    let _offset_delta = read_varint(&mut rest)?;
    let key_len = read_varint(&mut rest)?;
    if key_len < 4 {
        return None;
    }
    let key = take(&mut rest, 4)?;
    match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_COMMIT => Some(true),
        CONTROL_ABORT => Some(false),
        _ => None,
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

fn read_varint(buf: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *take(buf, 1)?.first()?;
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::validate_stored;

    fn data(producer_id: i64) -> BatchHeader {
        BatchHeader {
            attributes: ATTR_TRANSACTIONAL,
            producer_id,
            ..BatchHeader::parse(&encode_marker(producer_id, 0, true, 0, 0)).unwrap()
        }
    }

    fn marker(producer_id: i64) -> BatchHeader {
        BatchHeader::parse(&encode_marker(producer_id, 0, true, 0, 0)).unwrap()
    }

    #[test]
    fn markers_are_valid_control_batches_that_say_their_decision() {
        for commit in [true, false] {
            let bytes = encode_marker(7, 3, commit, 11, 1_000);
            let header = validate_stored(&bytes).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (7, 3, -1));
            assert_eq!(marker_of(&bytes), Some(commit));
        }
        assert_eq!(marker_of(&encode_marker(1, 0, true, 0, 0)[..HEADER_LEN + 3]), None, "truncated");
    }

    #[test]
    fn the_oldest_open_transaction_bounds_stability() {
        let mut txns = PartitionTxns::default();
        assert_eq!(txns.first_unstable_offset(), None);
        txns.on_batch(&data(1), 10, None);
        txns.on_batch(&data(2), 12, None);
        txns.on_batch(&data(1), 14, None);
        assert_eq!(txns.first_unstable_offset(), Some(10));
        txns.on_batch(&marker(1), 15, Some(true));
        assert_eq!(txns.first_unstable_offset(), Some(12));
        assert!(!txns.is_open(1) && txns.is_open(2));
        txns.on_batch(&marker(2), 16, Some(false));
        assert_eq!(txns.first_unstable_offset(), None);
        assert_eq!(
            txns.aborted_in(0, 100),
            vec![AbortedTxn {
                producer_id: 2,
                first_offset: 12,
                last_offset: 16
            }]
        );
    }

    #[test]
    fn a_marker_without_an_open_transaction_changes_nothing() {
        let mut txns = PartitionTxns::default();
        txns.on_batch(&marker(1), 5, Some(false));
        assert!(txns.aborted_in(0, 100).is_empty());
        let plain = BatchHeader { attributes: 0, ..data(3) };
        txns.on_batch(&plain, 6, None);
        assert_eq!(txns.open_count(), 0);
    }

    #[test]
    fn aborted_ranges_are_found_by_overlap_and_forgotten_below_the_start() {
        let mut txns = PartitionTxns::default();
        for (i, pid) in [1i64, 2, 3].into_iter().enumerate() {
            let first = i as i64 * 10;
            txns.on_batch(&data(pid), first, None);
            txns.on_batch(&marker(pid), first + 5, Some(false));
        }
        let pids = |v: Vec<AbortedTxn>| v.into_iter().map(|a| a.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(txns.aborted_in(6, 10)), Vec::<i64>::new());
        assert_eq!(pids(txns.aborted_in(4, 11)), vec![1, 2]);
        assert_eq!(pids(txns.aborted_in(25, 26)), vec![3]);
        txns.forget_below(16);
        assert_eq!(pids(txns.aborted_in(0, 100)), vec![3]);
        assert!(txns.aborted_in(0, 100)[0].covers(3, 20));
        assert!(!txns.aborted_in(0, 100)[0].covers(3, 25), "the marker is not data");
    }
}
