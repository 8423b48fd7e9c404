//! Writing v2 batches: the few places the broker makes a batch rather than
//! storing a producer's (the cleaner's rewritten batches, recompression to
//! a topic's `compression.type`).

use std::io::{self, Write};

use bytes::{BufMut, Bytes};

use super::batch::{header_for, BatchHeader, HEADER_LEN};
use super::records::Record;

/// Kafka's codec ids, as in a batch's attributes.
pub const CODEC_NONE: i16 = 0;
pub const CODEC_GZIP: i16 = 1;
pub const CODEC_SNAPPY: i16 = 2;
pub const CODEC_LZ4: i16 = 3;
pub const CODEC_ZSTD: i16 = 4;

/// xerial's snappy framing, which the Java client writes and every client reads.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const SNAPPY_BLOCK: usize = 32 * 1024;

/// Appends a zig-zag varint, as record fields are encoded.
pub fn put_varint(out: &mut impl BufMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn put_nullable(out: &mut impl BufMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.put_slice(b);
        }
        None => put_varint(out, -1),
    }
}

/// A record's fields, borrowed, as `put_record_fields` writes them.
pub struct RecordFields<'a, H> {
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: H,
}

/// Appends one record, length-prefixed, as a v2 batch holds it. `body` is
/// scratch space, reused across records.
pub fn put_record_fields<'a, H>(out: &mut impl BufMut, body: &mut Vec<u8>, record: RecordFields<'a, H>)
where
    H: ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
{
    body.clear();
    body.push(0); // record attributes: unused
    put_varint(body, record.timestamp_delta);
    put_varint(body, record.offset_delta);
    put_nullable(body, record.key);
    put_nullable(body, record.value);
    put_varint(body, record.headers.len() as i64);
    for (key, value) in record.headers {
        put_nullable(body, Some(key));
        put_nullable(body, value);
    }
    put_varint(out, body.len() as i64);
    out.put_slice(body);
}

type HeaderFields<'a> =
    std::iter::Map<std::slice::Iter<'a, (Bytes, Option<Bytes>)>, fn(&'a (Bytes, Option<Bytes>)) -> (&'a [u8], Option<&'a [u8]>)>;

fn fields_of(record: &Record) -> RecordFields<'_, HeaderFields<'_>> {
    RecordFields {
        timestamp_delta: record.timestamp_delta,
        offset_delta: record.offset_delta as i64,
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        headers: record.headers.iter().map(|(k, v)| (&k[..], v.as_deref())),
    }
}

/// Appends one record, length-prefixed, as a v2 batch holds it.
pub fn put_record(out: &mut Vec<u8>, record: &Record) {
    put_record_fields(out, &mut Vec::new(), fields_of(record));
}

/// Compresses a batch's record bytes with Kafka's codec `codec`. `level`
/// is the codec's own level (`compression.<codec>.level`); `None` is its
/// default.
pub fn compress(codec: i16, data: &[u8], level: Option<i32>) -> io::Result<Vec<u8>> {
    match codec {
        CODEC_NONE => Ok(data.to_vec()),
        CODEC_GZIP => {
            let level = level
                .filter(|l| (1..=9).contains(l))
                .map_or(flate2::Compression::default(), |l| flate2::Compression::new(l as u32));
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            encoder.write_all(data)?;
            encoder.finish()
        }
        CODEC_SNAPPY => {
            let mut out = XERIAL_HEADER.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(SNAPPY_BLOCK) {
                let block = encoder.compress_vec(chunk).map_err(io::Error::other)?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        CODEC_LZ4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(level.unwrap_or(9).clamp(1, 17) as u32)
                .build(Vec::with_capacity(data.len() / 2))?;
            encoder.write_all(data)?;
            let (out, result) = encoder.finish();
            result.map(|()| out)
        }
        CODEC_ZSTD => zstd::stream::encode_all(data, level.unwrap_or(3)),
        other => Err(io::Error::other(format!("unknown compression codec {other}"))),
    }
}

/// A batch like `template` (same base offset, offsets, timestamps, producer
/// and leader epoch) holding `records`, compressed with `codec`. The
/// records keep their offset deltas, so a compacted batch has gaps; its
/// last offset delta is the template's, so the producer's sequence range
/// and the log's offsets stay as they were.
pub fn rebuild_batch(template: &BatchHeader, records: &[Record], codec: i16, level: Option<i32>) -> io::Result<Bytes> {
    // An emptied batch is a bare header, uncompressed, as Kafka writes it:
    // clients do not expect a compressed empty payload.
    let codec = if records.is_empty() { CODEC_NONE } else { codec };
    let mut raw = Vec::new();
    let mut body = Vec::new();
    for record in records {
        put_record_fields(&mut raw, &mut body, fields_of(record));
    }
    let payload = compress(codec, &raw, level)?;
    let header = BatchHeader {
        attributes: (template.attributes & !0x07) | (codec & 0x07),
        records_count: records.len() as i32,
        ..*template
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header_for(&header, &payload));
    out.extend_from_slice(&payload);
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{tests::encode_batch, validate, validate_stored};
    use crate::log::records::{walk, Fields, Limits};
    use kafka_protocol::records::Compression;

    const LIMITS: Limits = Limits {
        max_decoded_bytes: 1 << 20,
    };

    fn records_of(batch: &Bytes) -> Vec<Record> {
        let header = validate_stored(batch).unwrap();
        let mut out = Vec::new();
        walk(batch, &header, LIMITS, Fields::Keep, |r| {
            out.push(r);
            Ok(true)
        })
        .unwrap();
        out
    }

    #[test]
    fn a_rebuilt_batch_reads_back_in_every_codec_with_its_gaps() {
        let original = encode_batch(6, Compression::None, 7, 40);
        let header = validate(&original).unwrap();
        let all = records_of(&original);
        let kept: Vec<Record> = all.iter().filter(|r| r.offset_delta % 2 == 1).cloned().collect();
        for codec in [CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD] {
            let rebuilt = rebuild_batch(&header, &kept, codec, None).unwrap();
            let new_header = validate_stored(&rebuilt).unwrap();
            assert_eq!(new_header.base_offset, header.base_offset);
            assert_eq!(new_header.last_offset(), header.last_offset(), "codec {codec}");
            assert_eq!(new_header.last_sequence(), header.last_sequence());
            assert_eq!(new_header.records_count, 3);
            assert_eq!(crate::log::records::codec_of(&new_header), codec);
            assert_eq!(records_of(&rebuilt), kept, "codec {codec}");
            assert!(validate(&rebuilt).is_err(), "a batch with gaps is not a producer's batch");
        }
        let emptied = rebuild_batch(&header, &[], CODEC_ZSTD, None).unwrap();
        assert_eq!(emptied.len(), HEADER_LEN, "an emptied batch is a bare header");
        assert_eq!(validate_stored(&emptied).unwrap().records_count, 0);
        assert_eq!(crate::log::records::codec_of(&validate_stored(&emptied).unwrap()), CODEC_NONE);
        assert!(records_of(&emptied).is_empty());
    }

    #[test]
    fn a_record_out_of_place_is_refused_even_in_a_stored_batch() {
        let original = encode_batch(3, Compression::None, -1, -1);
        let header = validate(&original).unwrap();
        let mut records = records_of(&original);
        records.swap(0, 2);
        let rebuilt = rebuild_batch(&header, &records, CODEC_NONE, None).unwrap();
        let stored = validate_stored(&rebuilt).unwrap();
        assert!(walk(&rebuilt, &stored, LIMITS, Fields::Skip, |_| Ok(true)).is_err());
    }
}
