//! Rows to Parquet and back, in the archive schema of docs/archive-format.md:
//! `offset` int64, `timestamp` timestamp(ms, UTC), `key` binary (nullable),
//! `value` binary (nullable), `headers` list<struct<key: utf8, value:
//! binary (nullable)>> (never null, may be empty).
//!
//! Each column carries its Iceberg field id (`PARQUET:field_id`), so the
//! topic's Iceberg table (`crate::iceberg`) reads files written since ids
//! were added without its name mapping.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray, TimestampMillisecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::error::ArrowError;
use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, RowGroupMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;

use super::records::Row;

/// Rows per row group: about 8 MiB of 100-byte records, small enough that
/// a reader starting mid-object fetches little it does not need.
pub const ROWS_PER_GROUP: usize = 65_536;
/// Rows per Arrow batch handed to the writer.
pub const ROWS_PER_BATCH: usize = 8_192;
/// Payload bytes per Arrow batch: far below the 2 GiB an Arrow binary
/// column can address, whatever the records' sizes.
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// Encoded bytes buffered for one row group before it is written out, so a
/// segment of large, compressible records does not sit in memory whole.
pub const MAX_ROW_GROUP_BYTES: usize = 128 << 20;

/// Iceberg field ids of the archive's columns (a public contract: the
/// topic's table schema uses them, docs/archive-format.md lists them). Top
/// level first, then nested, as Iceberg assigns them; 6 is the table's
/// `partition` column, which the files do not hold.
pub mod field_id {
    pub const OFFSET: i32 = 1;
    pub const TIMESTAMP: i32 = 2;
    pub const KEY: i32 = 3;
    pub const VALUE: i32 = 4;
    pub const HEADERS: i32 = 5;
    pub const PARTITION: i32 = 6;
    pub const HEADER: i32 = 7;
    pub const HEADER_KEY: i32 = 8;
    pub const HEADER_VALUE: i32 = 9;
}

fn with_id(field: Field, id: i32) -> Field {
    let metadata: std::collections::HashMap<String, String> =
        [(::parquet::arrow::PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string())].into();
    field.with_metadata(metadata)
}

fn header_fields() -> Fields {
    Fields::from(vec![
        with_id(Field::new("key", DataType::Utf8, false), field_id::HEADER_KEY),
        with_id(Field::new("value", DataType::Binary, true), field_id::HEADER_VALUE),
    ])
}

fn header_item() -> FieldRef {
    Arc::new(with_id(
        Field::new("item", DataType::Struct(header_fields()), false),
        field_id::HEADER,
    ))
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        with_id(Field::new("offset", DataType::Int64, false), field_id::OFFSET),
        with_id(
            Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            field_id::TIMESTAMP,
        ),
        with_id(Field::new("key", DataType::Binary, true), field_id::KEY),
        with_id(Field::new("value", DataType::Binary, true), field_id::VALUE),
        with_id(Field::new("headers", DataType::List(header_item()), false), field_id::HEADERS),
    ]))
}

pub fn writer_properties(topic: &str, partition: i32, first_offset: i64, last_offset: i64) -> WriterProperties {
    let metadata = [
        ("sediment.topic", topic.to_string()),
        ("sediment.partition", partition.to_string()),
        ("sediment.first_offset", first_offset.to_string()),
        ("sediment.last_offset", last_offset.to_string()),
        ("sediment.format_version", "1".to_string()),
    ];
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(metadata.into_iter().map(|(k, v)| KeyValue::new(k.to_string(), v)).collect()))
        .build()
}

pub fn to_record_batch(rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let offsets = Int64Array::from_iter_values(rows.iter().map(|r| r.offset));
    let timestamps = TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.timestamp)).with_timezone("UTC");
    let keys: BinaryArray = rows.iter().map(|r| r.key.as_deref()).collect();
    let values: BinaryArray = rows.iter().map(|r| r.value.as_deref()).collect();
    let header_keys = StringArray::from_iter_values(rows.iter().flat_map(|r| r.headers.iter().map(|h| h.0.as_str())));
    let header_values: BinaryArray = rows.iter().flat_map(|r| r.headers.iter().map(|h| h.1.as_deref())).collect();
    let structs = StructArray::try_new(
        header_fields(),
        vec![Arc::new(header_keys) as ArrayRef, Arc::new(header_values)],
        None,
    )?;
    let headers = ListArray::try_new(
        header_item(),
        OffsetBuffer::from_lengths(rows.iter().map(|r| r.headers.len())),
        Arc::new(structs),
        None,
    )?;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(offsets),
            Arc::new(timestamps),
            Arc::new(keys),
            Arc::new(values),
            Arc::new(headers),
        ],
    )
}

fn column_error(what: &str) -> ArrowError {
    ArrowError::SchemaError(format!("archive column {what} has an unexpected type"))
}

/// The archive schema's columns of one record batch, typed.
struct Columns<'a> {
    offsets: &'a arrow::array::PrimitiveArray<Int64Type>,
    timestamps: &'a arrow::array::PrimitiveArray<TimestampMillisecondType>,
    keys: &'a BinaryArray,
    values: &'a BinaryArray,
    headers: &'a ListArray,
    header_keys: &'a StringArray,
    header_values: &'a BinaryArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, ArrowError> {
        let headers = batch.column(4).as_list_opt::<i32>().ok_or_else(|| column_error("headers"))?;
        let header_structs = headers.values().as_struct_opt().ok_or_else(|| column_error("headers.item"))?;
        Ok(Self {
            offsets: batch
                .column(0)
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| column_error("offset"))?,
            timestamps: batch
                .column(1)
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| column_error("timestamp"))?,
            keys: batch.column(2).as_binary_opt::<i32>().ok_or_else(|| column_error("key"))?,
            values: batch.column(3).as_binary_opt::<i32>().ok_or_else(|| column_error("value"))?,
            headers,
            header_keys: header_structs
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| column_error("headers.key"))?,
            header_values: header_structs
                .column(1)
                .as_binary_opt::<i32>()
                .ok_or_else(|| column_error("headers.value"))?,
        })
    }

    /// The range of header entries of row `i`.
    fn header_range(&self, i: usize) -> std::ops::Range<usize> {
        self.headers.value_offsets()[i] as usize..self.headers.value_offsets()[i + 1] as usize
    }
}

fn nullable(a: &BinaryArray, i: usize) -> Option<&[u8]> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// Appends the rows of `batch` with offset >= `from_offset` to `out`.
pub fn rows_from_record_batch(batch: &RecordBatch, from_offset: i64, out: &mut Vec<Row>) -> Result<(), ArrowError> {
    let c = Columns::of(batch)?;
    let bytes_at = |a: &BinaryArray, i: usize| nullable(a, i).map(Bytes::copy_from_slice);
    for i in 0..batch.num_rows() {
        let offset = c.offsets.value(i);
        if offset < from_offset {
            continue;
        }
        let row_headers = c
            .header_range(i)
            .map(|j| (c.header_keys.value(j).to_string(), bytes_at(c.header_values, j)))
            .collect();
        out.push(Row {
            offset,
            timestamp: c.timestamps.value(i),
            key: bytes_at(c.keys, i),
            value: bytes_at(c.values, i),
            headers: row_headers,
        });
    }
    Ok(())
}

/// Encodes the rows of `batch` straight into Kafka batches of at most
/// `max_batch_bytes` (a larger single record gets a batch of its own).
pub fn encode_record_batch(batch: &RecordBatch, max_batch_bytes: usize, out: &mut bytes::BytesMut) -> Result<(), ArrowError> {
    let c = Columns::of(batch)?;
    let mut builder = super::records::BatchBuilder::new(-1);
    for i in 0..batch.num_rows() {
        let key = nullable(c.keys, i);
        let value = nullable(c.values, i);
        let size = 32 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        if !builder.is_empty() && builder.len() + size > max_batch_bytes {
            builder.finish_into(out);
        }
        builder.push(
            c.offsets.value(i),
            c.timestamps.value(i),
            key,
            value,
            c.header_range(i).map(|j| (c.header_keys.value(j), nullable(c.header_values, j))),
        );
    }
    builder.finish_into(out);
    Ok(())
}

/// The largest offset a row group holds, from its statistics.
pub fn row_group_max_offset(group: &RowGroupMetaData) -> Option<i64> {
    match group.column(0).statistics()? {
        Statistics::Int64(s) => s.max_opt().copied(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    pub(crate) fn sample_rows(first: i64, n: i64) -> Vec<Row> {
        (first..first + n)
            .map(|i| Row {
                offset: i,
                timestamp: 1_700_000_000_000 + i,
                key: (i % 5 != 0).then(|| Bytes::from(format!("k{i}"))),
                value: (i % 7 != 0).then(|| Bytes::from(format!("v{i}"))),
                headers: (0..(i % 3))
                    .map(|h| (format!("h{h}"), (h != 1).then(|| Bytes::from(vec![h as u8; 2]))))
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn rows_survive_a_parquet_round_trip_with_statistics() {
        let rows = sample_rows(1000, 20_000);
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, schema(), Some(writer_properties("t", 0, 1000, 20_999))).unwrap();
        for chunk in rows.chunks(ROWS_PER_BATCH) {
            writer.write(&to_record_batch(chunk).unwrap()).unwrap();
        }
        writer.close().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap();
        let group = reader.metadata().row_group(0);
        assert_eq!(row_group_max_offset(group), Some(20_999));
        let kv = reader.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|k| k.key == "sediment.topic" && k.value.as_deref() == Some("t")));
        let mut back = Vec::new();
        for batch in reader.build().unwrap() {
            rows_from_record_batch(&batch.unwrap(), 1500, &mut back).unwrap();
        }
        assert_eq!(back, rows[500..]);
    }
}
