//! Record-level decoding of v2 batches: streaming and bounded.
//!
//! A batch's header says how many records it holds and how they are
//! compressed, but only its records say what they are. Kafka validates every
//! batch on produce with a streaming record iterator; so does Sediment, with
//! this module, so that nothing it cannot decode later is ever acknowledged.
//! The same walker feeds the uploader and ListOffsets by timestamp.
//!
//! Bounds: a batch may decode to at most `Limits::max_decoded_bytes` (the
//! decompressed size, counted as the codec produces it, so a bomb is stopped
//! after that many bytes, not after it has been inflated). Validation skips
//! keys and values without keeping them; only a caller that asks for a
//! record's fields holds one record at a time. A codec never allocates more
//! than its own bounded window: zstd's window is capped, and a snappy block
//! must be able to hold what it claims.

use std::io::{self, BufRead, BufReader, Read};

use bytes::{Buf, BufMut as _, Bytes, BytesMut};

use super::batch::{BatchError, BatchHeader, HEADER_LEN};

/// Largest zstd window accepted, as a power of two (16 MiB). Clients
/// compress a batch at a time, so their windows are far smaller.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
/// Snappy expands at most about 21x (a 64-byte copy costs 3 bytes); a block
/// claiming more than this ratio of its size is malformed, and refusing it
/// keeps the allocation for the block bounded by its input.
const SNAPPY_MAX_RATIO: usize = 32;
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// How far a batch may be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes of the records of one batch.
    pub max_decoded_bytes: u64,
}

/// Why a batch's records were refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
    #[error("batch at offset {offset} decodes to more than {limit} bytes")]
    TooLarge { offset: i64, limit: u64 },
    #[error("cannot decompress batch at offset {offset}: {message}")]
    Decompress { offset: i64, message: String },
    /// The records' framing does not parse (Kafka: CORRUPT_MESSAGE).
    #[error("malformed record in batch at offset {offset}: {what}")]
    Malformed { offset: i64, what: &'static str },
    /// The records parse but break a rule of the format (Kafka: INVALID_RECORD).
    #[error("invalid record in batch at offset {offset}: {what}")]
    Invalid { offset: i64, what: String },
    /// A CreateTime timestamp outside the topic's bounds (Kafka: INVALID_TIMESTAMP).
    #[error("timestamp {timestamp} of a record in batch at offset {offset} is out of range for the topic")]
    Timestamp { offset: i64, timestamp: i64 },
    /// The broker could not check the batch (a failed validation task, or
    /// shutdown): not the client's fault (Kafka: UNKNOWN_SERVER_ERROR).
    #[error("batch validation failed in the broker: {0}")]
    Internal(String),
}

/// One record, with its fields when the caller asked for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// What the walker does with keys, values and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Check their framing and skip them (produce validation, timestamps).
    Skip,
    /// Hand them to the visitor (the uploader).
    Keep,
}

/// The compression codec in a batch's attributes.
pub fn codec_of(header: &BatchHeader) -> i16 {
    header.attributes & 0x07
}

/// Checks every record of one complete, CRC-valid batch: the count the
/// header claims, offset deltas 0, 1, 2, ..., and each record's framing,
/// for every codec, within `limits`. Keys and values are not kept.
pub fn validate(batch: &Bytes, header: &BatchHeader, limits: Limits) -> Result<(), RecordError> {
    walk_checked(batch, header, limits, Fields::Skip, Deltas::Contiguous, |_| Ok(true))
}

/// What a topic asks of each produced record beyond the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordRules {
    /// A compacted topic: every record needs a key (Kafka: INVALID_RECORD),
    /// so the cleaner can tell which is the latest.
    pub keyed: bool,
    /// CreateTime bounds (`message.timestamp.before/after.max.ms` around
    /// now): a record outside them refuses its batch (Kafka:
    /// INVALID_TIMESTAMP). Records without a timestamp (-1) pass.
    pub timestamps: Option<(i64, i64)>,
}

impl RecordRules {
    fn is_empty(&self) -> bool {
        !self.keyed && self.timestamps.is_none()
    }
}

/// As `validate`, and every record obeys `rules`.
pub fn validate_with(batch: &Bytes, header: &BatchHeader, limits: Limits, rules: RecordRules) -> Result<(), RecordError> {
    if rules.is_empty() {
        return validate(batch, header, limits);
    }
    let offset = header.base_offset;
    if let Some((_, latest)) = rules.timestamps {
        // The header's maximum refuses a batch from the future at once.
        if header.max_timestamp > latest {
            return Err(RecordError::Timestamp {
                offset,
                timestamp: header.max_timestamp,
            });
        }
    }
    walk_checked(batch, header, limits, Fields::Skip, Deltas::Contiguous, |r| {
        if rules.keyed && r.key.is_none() {
            return Err(RecordError::Invalid {
                offset,
                what: "Compacted topic cannot accept message without key".into(),
            });
        }
        if let Some((earliest, latest)) = rules.timestamps {
            let ts = header.base_timestamp.saturating_add(r.timestamp_delta);
            if ts >= 0 && (ts < earliest || ts > latest) {
                return Err(RecordError::Timestamp { offset, timestamp: ts });
            }
        }
        Ok(true)
    })
}

/// Every record of one complete batch, with its fields, decoded within
/// `limits` (the cleaner and recompression rebuild batches from them).
pub fn collect(batch: &Bytes, header: &BatchHeader, limits: Limits) -> Result<Vec<Record>, RecordError> {
    let mut out = Vec::with_capacity(header.records_count.clamp(0, 4096) as usize);
    walk(batch, header, limits, Fields::Keep, |r| {
        out.push(r);
        Ok(true)
    })?;
    Ok(out)
}

/// What record offset deltas a batch may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deltas {
    /// 0, 1, 2, ...: a batch as a producer sends it.
    Contiguous,
    /// Ascending within the batch's offsets: a batch the cleaner has
    /// compacted, with the records it removed missing.
    Ascending,
}

/// Walks the records of one complete batch in order, checking them as
/// `validate` does, and hands each to `visit` until it returns false.
/// Gaps left by compaction are allowed; see `validate` for produce.
pub fn walk(
    batch: &Bytes,
    header: &BatchHeader,
    limits: Limits,
    fields: Fields,
    visit: impl FnMut(Record) -> Result<bool, RecordError>,
) -> Result<(), RecordError> {
    walk_checked(batch, header, limits, fields, Deltas::Ascending, visit)
}

fn walk_checked(
    batch: &Bytes,
    header: &BatchHeader,
    limits: Limits,
    fields: Fields,
    deltas: Deltas,
    mut visit: impl FnMut(Record) -> Result<bool, RecordError>,
) -> Result<(), RecordError> {
    let offset = header.base_offset;
    let end = header.total_len().min(batch.len());
    if end < HEADER_LEN {
        return Err(BatchError::Truncated {
            have: batch.len(),
            need: HEADER_LEN,
        }
        .into());
    }
    let payload = batch.slice(HEADER_LEN..end);
    let count = header.records_count;
    let shape = Shape {
        offset,
        count,
        last_delta: header.last_offset_delta,
        deltas,
    };
    match codec_of(header) {
        0 => {
            if payload.len() as u64 > limits.max_decoded_bytes {
                return Err(RecordError::TooLarge {
                    offset,
                    limit: limits.max_decoded_bytes,
                });
            }
            let mut source = SliceSource { buf: payload };
            walk_source(&mut source, shape, fields, &mut visit)
        }
        codec => {
            let reader = decompressor(codec, payload, offset)?;
            let mut source = StreamSource::new(reader, limits.max_decoded_bytes);
            walk_source(&mut source, shape, fields, &mut visit).map_err(|e| source.explain(e, offset))
        }
    }
}

/// What a batch's header says its records must look like.
#[derive(Debug, Clone, Copy)]
struct Shape {
    offset: i64,
    count: i32,
    last_delta: i32,
    deltas: Deltas,
}

fn walk_source<S: Source>(
    source: &mut S,
    shape: Shape,
    fields: Fields,
    visit: &mut impl FnMut(Record) -> Result<bool, RecordError>,
) -> Result<(), RecordError> {
    let Shape { offset, count, .. } = shape;
    let malformed = |what| RecordError::Malformed { offset, what };
    let mut previous_delta = -1i32;
    for index in 0..count {
        let length = source
            .varint()
            .map_err(|e| e.at(offset))?
            .ok_or(malformed("fewer records than the header claims"))?;
        if length <= 0 {
            return Err(malformed("record length"));
        }
        let (left, past) = source.most_left();
        if length as u64 > left {
            return Err(past.at(offset));
        }
        let record = read_record(source, length as u64, fields).map_err(|e| e.at(offset))?;
        let in_place = match shape.deltas {
            Deltas::Contiguous => record.offset_delta == index,
            Deltas::Ascending => record.offset_delta > previous_delta && record.offset_delta <= shape.last_delta,
        };
        if !in_place {
            return Err(RecordError::Invalid {
                offset,
                what: format!("record {index} has offset delta {}", record.offset_delta),
            });
        }
        previous_delta = record.offset_delta;
        if !visit(record)? {
            return Ok(());
        }
    }
    if !source.at_end().map_err(|e| e.at(offset))? {
        return Err(malformed("more records than the header claims"));
    }
    Ok(())
}

/// A framing problem inside one record, before the batch offset is known.
#[derive(Debug)]
enum ParseError {
    Malformed(&'static str),
    Io(io::Error),
    /// More than the decode limit would be needed.
    TooLarge(u64),
}

impl ParseError {
    fn at(self, offset: i64) -> RecordError {
        match self {
            ParseError::Malformed(what) => RecordError::Malformed { offset, what },
            ParseError::TooLarge(limit) => RecordError::TooLarge { offset, limit },
            ParseError::Io(e) => RecordError::Decompress {
                offset,
                message: e.to_string(),
            },
        }
    }
}

impl From<io::Error> for ParseError {
    fn from(e: io::Error) -> Self {
        ParseError::Io(e)
    }
}

/// Where record bytes come from: a slice of an uncompressed batch, or a
/// decompressing stream.
trait Source {
    fn byte(&mut self) -> Result<Option<u8>, ParseError>;
    /// The next `n` bytes, kept or skipped; `None` if fewer remain.
    fn bytes(&mut self, n: usize, keep: bool) -> Result<Option<Bytes>, ParseError>;
    fn at_end(&mut self) -> Result<bool, ParseError>;
    /// The most bytes the source can still yield, and the error for a
    /// claimed length beyond it: refused before anything is sized by it.
    fn most_left(&self) -> (u64, ParseError);

    /// A zig-zag varint of at most 64 bits; `None` at a clean end.
    fn varint(&mut self) -> Result<Option<i64>, ParseError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(byte) = self.byte()? else {
                return if shift == 0 {
                    Ok(None)
                } else {
                    Err(ParseError::Malformed("truncated varint"))
                };
            };
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(Some(((value >> 1) as i64) ^ -((value & 1) as i64)));
            }
        }
        Err(ParseError::Malformed("varint longer than 64 bits"))
    }
}

struct SliceSource {
    buf: Bytes,
}

impl Source for SliceSource {
    fn byte(&mut self) -> Result<Option<u8>, ParseError> {
        Ok(self.buf.has_remaining().then(|| self.buf.get_u8()))
    }

    fn bytes(&mut self, n: usize, keep: bool) -> Result<Option<Bytes>, ParseError> {
        if n > self.buf.len() {
            return Ok(None);
        }
        if keep {
            Ok(Some(self.buf.split_to(n)))
        } else {
            self.buf.advance(n);
            Ok(Some(Bytes::new()))
        }
    }

    fn at_end(&mut self) -> Result<bool, ParseError> {
        Ok(self.buf.is_empty())
    }

    fn most_left(&self) -> (u64, ParseError) {
        (self.buf.len() as u64, ParseError::Malformed("record length runs past the batch"))
    }
}

/// A decompressing stream that fails once it has produced more than its
/// limit.
struct StreamSource<'a> {
    reader: BufReader<Limited<Box<dyn Read + Send + 'a>>>,
    limit: u64,
}

impl<'a> StreamSource<'a> {
    fn new(reader: Box<dyn Read + Send + 'a>, limit: u64) -> Self {
        Self {
            reader: BufReader::with_capacity(
                16 * 1024,
                Limited {
                    inner: reader,
                    remaining: limit,
                    exceeded: false,
                },
            ),
            limit,
        }
    }

    /// Tells an over-limit stream apart from a broken one.
    fn explain(&self, e: RecordError, offset: i64) -> RecordError {
        if self.reader.get_ref().exceeded {
            return RecordError::TooLarge { offset, limit: self.limit };
        }
        e
    }
}

impl Source for StreamSource<'_> {
    fn byte(&mut self) -> Result<Option<u8>, ParseError> {
        let buf = self.reader.fill_buf()?;
        let Some(&byte) = buf.first() else { return Ok(None) };
        self.reader.consume(1);
        Ok(Some(byte))
    }

    fn bytes(&mut self, n: usize, keep: bool) -> Result<Option<Bytes>, ParseError> {
        let mut limited = (&mut self.reader).take(n as u64);
        if keep {
            // Grows as bytes arrive: a claimed length costs nothing until
            // the stream backs it.
            let mut out = BytesMut::new().writer();
            let copied = io::copy(&mut limited, &mut out)?;
            return Ok((copied == n as u64).then(|| out.into_inner().freeze()));
        }
        let copied = io::copy(&mut limited, &mut io::sink())?;
        Ok((copied == n as u64).then(Bytes::new))
    }

    fn at_end(&mut self) -> Result<bool, ParseError> {
        Ok(self.reader.fill_buf()?.is_empty())
    }

    fn most_left(&self) -> (u64, ParseError) {
        // What is buffered, plus what the limit lets the codec still produce:
        // a longer record would pass the limit (or the stream is lying).
        let left = self.reader.buffer().len() as u64 + self.reader.get_ref().remaining;
        (left, ParseError::TooLarge(self.limit))
    }
}

/// Counts what a decompressor produces and stops it past a limit.
struct Limited<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte past the limit, so that reaching it exactly is
        // fine and passing it is seen.
        let want = buf.len().min(self.remaining.saturating_add(1).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.remaining {
            self.exceeded = true;
            return Err(io::Error::other("decoded size limit exceeded"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Headers one record may carry (Kafka sets no bound; clients send a few).
const MAX_HEADERS_PER_RECORD: i64 = 65_536;

fn read_record<S: Source>(source: &mut S, length: u64, fields: Fields) -> Result<Record, ParseError> {
    let mut framed = Framed {
        source,
        remaining: length,
        keep: fields == Fields::Keep,
    };
    let _attributes = framed.byte()?;
    let timestamp_delta = framed.varint()?;
    let offset_delta = i32::try_from(framed.varint()?).map_err(|_| ParseError::Malformed("offset delta"))?;
    let key = framed.nullable()?;
    let value = framed.nullable()?;
    let header_count = framed.varint()?;
    if header_count < 0 {
        return Err(ParseError::Malformed("negative header count"));
    }
    // Each header takes at least two bytes, so a count the record cannot
    // hold is refused before anything is reserved for it.
    if header_count as u64 > framed.remaining / 2 {
        return Err(ParseError::Malformed("header count larger than the record"));
    }
    // A kept header costs 24 times its two smallest bytes: bound the count,
    // so a record that validates (headers skipped) can always be kept.
    if header_count > MAX_HEADERS_PER_RECORD {
        return Err(ParseError::Malformed("more than 65536 headers in one record"));
    }
    let mut headers = Vec::new();
    if framed.keep {
        headers.reserve((header_count as usize).min(64));
    }
    for _ in 0..header_count {
        let key = framed.nullable()?.ok_or(ParseError::Malformed("null header key"))?;
        let value = framed.nullable()?;
        if framed.keep {
            headers.push((key, value));
        }
    }
    if framed.remaining != 0 {
        return Err(ParseError::Malformed("record length does not match its fields"));
    }
    Ok(Record {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

/// One record's bytes: every read must stay within its declared length.
struct Framed<'s, S> {
    source: &'s mut S,
    remaining: u64,
    keep: bool,
}

impl<S: Source> Framed<'_, S> {
    fn byte(&mut self) -> Result<u8, ParseError> {
        if self.remaining == 0 {
            return Err(ParseError::Malformed("record shorter than its fields"));
        }
        self.remaining -= 1;
        self.source.byte()?.ok_or(ParseError::Malformed("truncated record"))
    }

    fn varint(&mut self) -> Result<i64, ParseError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(ParseError::Malformed("varint longer than 64 bits"))
    }

    /// A length-prefixed field; -1 is null.
    fn nullable(&mut self) -> Result<Option<Bytes>, ParseError> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as u64 > self.remaining {
            return Err(ParseError::Malformed("field length out of bounds"));
        }
        self.remaining -= len as u64;
        let bytes = self
            .source
            .bytes(len as usize, self.keep)?
            .ok_or(ParseError::Malformed("truncated record"))?;
        Ok(Some(bytes))
    }
}

/// A streaming decompressor for a batch's codec.
fn decompressor<'a>(codec: i16, payload: Bytes, offset: i64) -> Result<Box<dyn Read + Send + 'a>, RecordError> {
    let failed = |message: String| RecordError::Decompress { offset, message };
    Ok(match codec {
        1 => Box::new(flate2::read::MultiGzDecoder::new(payload.reader())),
        2 => Box::new(SnappyReader::new(payload)),
        3 => Box::new(lz4::Decoder::new(payload.reader()).map_err(|e| failed(e.to_string()))?),
        4 => {
            let mut decoder = zstd::stream::read::Decoder::new(payload.reader()).map_err(|e| failed(e.to_string()))?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| failed(e.to_string()))?;
            Box::new(decoder)
        }
        other => return Err(failed(format!("unknown compression codec {other}"))),
    })
}

/// Kafka's snappy: xerial framing (a 16-byte header, then blocks each
/// prefixed by its length), or one raw block when the header is missing.
/// Decodes one block at a time.
struct SnappyReader {
    input: Bytes,
    raw: bool,
    block: Bytes,
}

impl SnappyReader {
    fn new(input: Bytes) -> Self {
        let framed = input.len() >= XERIAL_HEADER_LEN && input.starts_with(XERIAL_MAGIC);
        let input = if framed { input.slice(XERIAL_HEADER_LEN..) } else { input };
        Self {
            input,
            raw: !framed,
            block: Bytes::new(),
        }
    }

    fn next_block(&mut self) -> io::Result<()> {
        let compressed = if self.raw {
            self.raw = false;
            std::mem::take(&mut self.input)
        } else {
            if self.input.len() < 4 {
                return Err(io::Error::other("truncated snappy block length"));
            }
            let len = self.input.get_u32() as usize;
            if len > self.input.len() {
                return Err(io::Error::other("snappy block longer than the batch"));
            }
            self.input.split_to(len)
        };
        let claimed = snap::raw::decompress_len(&compressed).map_err(io::Error::other)?;
        if claimed > compressed.len().saturating_mul(SNAPPY_MAX_RATIO).saturating_add(64) {
            return Err(io::Error::other("snappy block claims more than it can hold"));
        }
        let mut out = vec![0u8; claimed];
        let n = snap::raw::Decoder::new()
            .decompress(&compressed, &mut out)
            .map_err(io::Error::other)?;
        out.truncate(n);
        self.block = Bytes::from(out);
        Ok(())
    }
}

impl Read for SnappyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.block.is_empty() {
            if self.input.is_empty() && !self.raw {
                return Ok(0);
            }
            self.next_block()?;
        }
        let n = buf.len().min(self.block.len());
        buf[..n].copy_from_slice(&self.block[..n]);
        self.block.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::encode_batch;
    use crate::log::batch::validate as validate_header;
    use kafka_protocol::records::Compression;

    const LIMITS: Limits = Limits {
        max_decoded_bytes: 1 << 20,
    };

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Rebuilds a batch around `records` (already compressed with `codec`)
    /// with a valid CRC, claiming `count` records.
    pub(crate) fn batch_around(records: &[u8], codec: i16, count: i32) -> Bytes {
        let mut b = encode_batch(1, Compression::None, -1, -1)[..HEADER_LEN].to_vec();
        b.extend_from_slice(records);
        let length = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        b[21..23].copy_from_slice(&codec.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    use crate::log::encode::put_varint;

    /// The bytes of one uncompressed record with no key and no headers.
    pub(crate) fn record_bytes(offset_delta: i64, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::log::encode::put_record(
            &mut out,
            &Record {
                offset_delta: offset_delta as i32,
                value: Some(Bytes::copy_from_slice(value)),
                ..Record::default()
            },
        );
        out
    }

    fn check(batch: &Bytes, limits: Limits) -> Result<(), RecordError> {
        let header = validate_header(batch)?;
        validate(batch, &header, limits)
    }

    #[test]
    fn client_batches_of_every_codec_are_valid_and_walk_back_exactly() {
        for codec in CODECS {
            let batch = encode_batch(50, codec, -1, -1);
            check(&batch, LIMITS).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            let header = validate_header(&batch).unwrap();
            let mut seen = Vec::new();
            walk(&batch, &header, LIMITS, Fields::Keep, |r| {
                seen.push(r);
                Ok(true)
            })
            .unwrap();
            assert_eq!(seen.len(), 50, "{codec:?}");
            assert_eq!(seen[7].value.as_deref(), Some(&b"value-7"[..]), "{codec:?}");
            assert_eq!(seen[7].key.as_deref(), Some(&b"key-7"[..]), "{codec:?}");
            assert_eq!(seen[7].offset_delta, 7);
        }
    }

    #[test]
    fn a_header_claiming_more_records_than_the_batch_holds_is_refused() {
        let batch = batch_around(&record_bytes(0, b"x"), 0, i32::MAX);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::Malformed { .. })));
    }

    #[test]
    fn trailing_records_beyond_the_count_are_refused() {
        let mut records = record_bytes(0, b"x");
        records.extend(record_bytes(1, b"y"));
        let batch = batch_around(&records, 0, 1);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::Malformed { .. })));
    }

    #[test]
    fn unparseable_records_with_a_valid_crc_are_refused() {
        let batch = batch_around(&[0xff; 40], 0, 3);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::Malformed { .. })));
    }

    /// Found by the `record_decode` fuzz target: a record whose length
    /// claims far more than the batch holds made the walker reserve room for
    /// its claimed header count (8 GB) when keeping fields.
    #[test]
    fn lying_record_lengths_and_header_counts_allocate_nothing() {
        // Past the batch (uncompressed) it is malformed; past the decode
        // limit (compressed) it is too large, as a real bomb would be.
        let mut record = Vec::new();
        put_varint(&mut record, 1 << 40); // record length
        record.push(0); // attributes
        put_varint(&mut record, 0); // timestamp delta
        put_varint(&mut record, 0); // offset delta
        put_varint(&mut record, -1); // key
        put_varint(&mut record, -1); // value
        put_varint(&mut record, 1 << 30); // header count
        for codec in [0, 1, 4] {
            let batch = batch_around(&compress(codec, &record), codec, 1);
            let header = validate_header(&batch).unwrap();
            let result = walk(&batch, &header, LIMITS, Fields::Keep, |_| Ok(true));
            let refused = match codec {
                0 => matches!(result, Err(RecordError::Malformed { .. })),
                _ => matches!(result, Err(RecordError::TooLarge { .. })),
            };
            assert!(refused, "codec {codec}: {result:?}");
        }
        // Within the batch, more headers than one record may carry.
        let mut body = vec![0u8];
        for v in [0, 0, -1, -1, MAX_HEADERS_PER_RECORD + 1] {
            put_varint(&mut body, v);
        }
        for _ in 0..=MAX_HEADERS_PER_RECORD {
            put_varint(&mut body, 0); // empty key
            put_varint(&mut body, -1); // null value
        }
        let mut record = Vec::new();
        put_varint(&mut record, body.len() as i64);
        record.extend_from_slice(&body);
        let batch = batch_around(&record, 0, 1);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::Malformed { .. })));
    }

    #[test]
    fn offset_deltas_must_count_from_zero() {
        let mut records = Vec::new();
        for delta in 5..8 {
            records.extend(record_bytes(delta, b"v"));
        }
        let batch = batch_around(&records, 0, 3);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::Invalid { .. })));
        let compressed = gzip(&records);
        let batch = batch_around(&compressed, 1, 3);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::Invalid { .. })));
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// `n` records of `size` zero bytes each, uncompressed.
    fn zero_records(n: i64, size: usize) -> Vec<u8> {
        let zeros = vec![0u8; size];
        (0..n).flat_map(|i| record_bytes(i, &zeros)).collect()
    }

    #[test]
    fn decompression_bombs_stop_at_the_limit_for_every_codec() {
        // 64 records of 64 KiB of zeros: 4 MiB decoded, a few KiB compressed.
        let records = zero_records(64, 64 * 1024);
        for codec in [1i16, 2, 3, 4] {
            let compressed = compress(codec, &records);
            let batch = batch_around(&compressed, codec, 64);
            match check(&batch, LIMITS) {
                Err(RecordError::TooLarge { .. }) => {}
                other => panic!("codec {codec}: {other:?}"),
            }
            // And the same batch passes under a limit that fits it.
            check(
                &batch,
                Limits {
                    max_decoded_bytes: 8 << 20,
                },
            )
            .unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        }
        // Uncompressed records count against the limit too.
        let batch = batch_around(&records, 0, 64);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::TooLarge { .. })));
    }

    #[test]
    fn a_raw_snappy_block_claiming_4_gib_is_refused_without_allocating() {
        // A raw snappy block whose length preamble claims 2^32 - 1 bytes.
        let mut block = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        block.extend_from_slice(&[0u8; 89]);
        let batch = batch_around(&block, 2, 1);
        assert!(matches!(check(&batch, LIMITS), Err(RecordError::Decompress { .. })));
    }

    #[test]
    fn corrupt_compressed_payloads_are_errors() {
        for codec in [1i16, 2, 3, 4] {
            let batch = batch_around(&[0x13; 64], codec, 1);
            assert!(check(&batch, LIMITS).is_err(), "codec {codec}");
        }
    }

    pub(crate) fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match codec {
            1 => gzip(data),
            2 => {
                let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
                for chunk in data.chunks(32 * 1024) {
                    let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            3 => {
                let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
                e.write_all(data).unwrap();
                let (out, result) = e.finish();
                result.unwrap();
                out
            }
            4 => zstd::stream::encode_all(data, 3).unwrap(),
            _ => data.to_vec(),
        }
    }
}
