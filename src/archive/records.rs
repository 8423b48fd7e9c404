//! Record-level codec for the archive: a v2 batch into rows (through the
//! streaming, bounded walker of `log::records`), rows back into a v2 batch.
//! Hand-written because the archive must keep every field exactly, and
//! kafka-protocol's record type folds duplicate header keys into one (an
//! `IndexMap`) and refuses non-UTF-8 header keys.

use bytes::{BufMut, Bytes, BytesMut};

use crate::log::batch::{header_for, BatchHeader, HEADER_LEN};
use crate::log::encode::{self, RecordFields};
use crate::log::records::{self, Fields};
pub use crate::log::records::{Limits, RecordError};

/// One Kafka record as the archive stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Decodes every record of one complete v2 batch, appending to `rows`,
/// streaming and within `limits` (see `log::records`).
pub fn decode_batch(batch: &Bytes, limits: Limits, rows: &mut Vec<Row>) -> Result<(), RecordError> {
    let header = crate::log::batch::validate_stored(batch)?;
    for_each_row(batch, &header, limits, |row| {
        rows.push(row);
        Ok(true)
    })
}

/// Hands each record of one complete batch to `visit` as a row, one at a
/// time, until it returns false.
pub fn for_each_row(
    batch: &Bytes,
    header: &BatchHeader,
    limits: Limits,
    mut visit: impl FnMut(Row) -> Result<bool, RecordError>,
) -> Result<(), RecordError> {
    records::walk(batch, header, limits, Fields::Keep, |r| {
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp + r.timestamp_delta
        };
        visit(Row {
            offset: header.base_offset + r.offset_delta as i64,
            timestamp,
            key: r.key,
            value: r.value,
            // Kafka header keys are UTF-8 strings; a client that sent other
            // bytes gets them back with U+FFFD replacements.
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                .collect(),
        })
    })
}

/// Builds uncompressed v2 batches record by record, from borrowed fields:
/// the archive read path encodes straight from Arrow arrays without
/// materialising rows.
pub struct BatchBuilder {
    records: BytesMut,
    body: Vec<u8>,
    base_offset: i64,
    base_timestamp: i64,
    last_offset: i64,
    max_timestamp: i64,
    count: i32,
    leader_epoch: i32,
}

impl BatchBuilder {
    pub fn new(leader_epoch: i32) -> Self {
        Self {
            records: BytesMut::new(),
            body: Vec::with_capacity(256),
            base_offset: 0,
            base_timestamp: 0,
            last_offset: 0,
            max_timestamp: 0,
            count: 0,
            leader_epoch,
        }
    }

    /// Bytes the batch would take now.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends one record; offsets must ascend.
    pub fn push<'a>(
        &mut self,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) {
        if self.count == 0 {
            self.base_offset = offset;
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.last_offset = offset;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.count += 1;
        encode::put_record_fields(
            &mut self.records,
            &mut self.body,
            RecordFields {
                timestamp_delta: timestamp - self.base_timestamp,
                offset_delta: offset - self.base_offset,
                key,
                value,
                headers: headers.map(|(k, v)| (k.as_bytes(), v)),
            },
        );
    }

    /// Appends the finished batch to `out` and starts a new one.
    pub fn finish_into(&mut self, out: &mut BytesMut) {
        if self.count == 0 {
            return;
        }
        let header = BatchHeader {
            base_offset: self.base_offset,
            batch_length: 0, // computed by header_for
            partition_leader_epoch: self.leader_epoch,
            magic: 2,
            crc: 0,
            attributes: 0, // no compression, create time
            last_offset_delta: (self.last_offset - self.base_offset) as i32,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: self.count,
        };
        out.reserve(HEADER_LEN + self.records.len());
        out.put_slice(&header_for(&header, &self.records));
        out.put_slice(&self.records);
        self.records.clear();
        self.count = 0;
    }
}

/// Encodes rows (ascending offsets) as one uncompressed v2 batch that a
/// client decodes into exactly these records.
pub fn encode_batch(rows: &[Row], leader_epoch: i32) -> Bytes {
    let mut builder = BatchBuilder::new(leader_epoch);
    for r in rows {
        builder.push(
            r.offset,
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
        );
    }
    let mut out = BytesMut::new();
    builder.finish_into(&mut out);
    out.freeze()
}

/// The header of a batch at the start of `batch`, for callers that only
/// need offsets.
pub fn header_of(batch: &[u8]) -> Option<BatchHeader> {
    BatchHeader::parse(batch).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::encode_batch as client_batch;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    const LIMITS: Limits = Limits {
        max_decoded_bytes: 1 << 20,
    };

    fn rows(n: i64) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                offset: 100 + i,
                timestamp: 1_700_000_000_000 + i * 3,
                key: if i % 3 == 0 { None } else { Some(Bytes::from(format!("k{i}"))) },
                value: Some(Bytes::from(vec![b'v'; i as usize])),
                headers: vec![
                    ("dup".into(), Some(Bytes::from_static(b"1"))),
                    ("dup".into(), None),
                    ("x".into(), Some(Bytes::new())),
                ],
            })
            .collect()
    }

    #[test]
    fn rows_round_trip_through_a_batch_duplicate_headers_included() {
        let original = rows(50);
        let batch = encode_batch(&original, 3);
        crate::log::batch::validate(&batch).unwrap();
        let mut decoded = Vec::new();
        decode_batch(&batch, LIMITS, &mut decoded).unwrap();
        assert_eq!(decoded, original);
    }

    #[test]
    fn kafka_protocol_decodes_what_we_encode() {
        let original = rows(5);
        let mut batch = encode_batch(&original, 0);
        let decoded = RecordBatchDecoder::decode(&mut batch).unwrap();
        assert_eq!(decoded.records.len(), 5);
        assert_eq!(decoded.records[4].offset, 104);
        assert_eq!(decoded.records[4].timestamp, 1_700_000_000_012);
        assert_eq!(decoded.records[0].key, None);
    }

    #[test]
    fn every_codec_a_client_uses_decodes() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = client_batch(20, codec, -1, -1);
            let mut decoded = Vec::new();
            decode_batch(&batch, LIMITS, &mut decoded).unwrap();
            assert_eq!(decoded.len(), 20, "{codec:?}");
            assert_eq!(decoded[7].key.as_deref(), Some(&b"key-7"[..]));
            assert_eq!(decoded[7].value.as_deref(), Some(&b"value-7"[..]));
            assert_eq!(decoded[7].timestamp, 1_700_000_000_007);
            assert_eq!(decoded[7].offset, 7);
        }
    }

    #[test]
    fn garbage_records_are_errors() {
        let mut batch = encode_batch(&rows(3), 0).to_vec();
        // Claim more records than the payload holds, and fix the CRC.
        batch[57..61].copy_from_slice(&9i32.to_be_bytes());
        batch[23..27].copy_from_slice(&8i32.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_batch(&Bytes::from(batch), LIMITS, &mut Vec::new()).is_err());
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        // Timestamp deltas are varlongs at both ends of their range.
        let mut original = rows(2);
        original[0].timestamp = 0;
        original[1].timestamp = i64::MAX / 2;
        let mut decoded = Vec::new();
        decode_batch(&encode_batch(&original, 0), LIMITS, &mut decoded).unwrap();
        assert_eq!(decoded, original);
    }
}
