//! Where a topic's table lives, and how its archive objects become Iceberg
//! data files. Pure.
//!
//! ```text
//! topic=<t>/_iceberg/metadata/v<N>.metadata.json    the table, version N
//! topic=<t>/_iceberg/metadata/version-hint.text      N, for readers by path
//! topic=<t>/_iceberg/metadata/snap-<id>-<writer>.avro        manifest lists
//! topic=<t>/_iceberg/metadata/<id>-<writer>-m<n>.avro        manifests
//! ```
//! Under a `_` folder, which Hive-style readers skip, beside the partition
//! folders; the data files are the archive's own objects, by absolute URL.
//! `<writer>` names the broker process, so two brokers committing the same
//! version never write the same file.

use std::collections::HashMap;

use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, Struct};
use object_store::path::Path;

use crate::archive::manifest::ObjectEntry;
use crate::archive::parquet::field_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLocation {
    /// The archive's URL, without a trailing slash.
    archive_url: String,
    topic: String,
}

impl TableLocation {
    pub fn new(archive_url: &str, topic: &str) -> Self {
        Self {
            archive_url: archive_url.trim_end_matches('/').to_string(),
            topic: topic.to_string(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The table's `location`.
    pub fn table_url(&self) -> String {
        format!("{}/topic={}/_iceberg", self.archive_url, self.topic)
    }

    pub fn metadata_prefix(&self) -> Path {
        Path::from(format!("topic={}/_iceberg/metadata", self.topic))
    }

    pub fn metadata_key(&self, version: u64) -> Path {
        self.metadata_prefix().join(format!("v{version}.metadata.json"))
    }

    pub fn version_hint_key(&self) -> Path {
        self.metadata_prefix().join("version-hint.text")
    }

    pub fn manifest_list_key(&self, snapshot_id: i64, writer: &str) -> Path {
        self.metadata_prefix().join(format!("snap-{snapshot_id}-{writer}.avro"))
    }

    pub fn manifest_key(&self, snapshot_id: i64, writer: &str, n: usize) -> Path {
        self.metadata_prefix().join(format!("{snapshot_id}-{writer}-m{n}.avro"))
    }

    /// The absolute URL engines are given for a key of the archive.
    pub fn url(&self, key: &Path) -> String {
        format!("{}/{}", self.archive_url, key)
    }

    /// The archive key of a URL this table wrote; `None` for anything else
    /// (a table edited by hand, or moved).
    pub fn key(&self, url: &str) -> Option<Path> {
        let rest = url.strip_prefix(&self.archive_url)?.strip_prefix('/')?;
        Path::parse(rest).ok().filter(|p| p.as_ref() == rest)
    }
}

/// `N` of `v<N>.metadata.json`.
pub fn metadata_version(key: &Path) -> Option<u64> {
    let digits = key.filename()?.strip_prefix('v')?.strip_suffix(".metadata.json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An archive object as an Iceberg data file, with the statistics engines
/// prune by: bounds of `offset` and `timestamp` (from the archive manifest,
/// no footer read), and their value and null counts.
pub fn data_file(location: &TableLocation, partition: i32, object: &ObjectEntry) -> iceberg::Result<DataFile> {
    let records = object.records.max(0) as u64;
    let mut lower = HashMap::new();
    let mut upper = HashMap::new();
    lower.insert(field_id::OFFSET, Datum::long(object.first_offset));
    upper.insert(field_id::OFFSET, Datum::long(object.last_offset));
    // An object whose every record was aborted has no timestamps; and a
    // hostile timestamp must not overflow microseconds.
    if records > 0 && object.min_timestamp <= object.max_timestamp {
        if let (Some(min), Some(max)) = (object.min_timestamp.checked_mul(1000), object.max_timestamp.checked_mul(1000)) {
            lower.insert(field_id::TIMESTAMP, Datum::timestamptz_micros(min));
            upper.insert(field_id::TIMESTAMP, Datum::timestamptz_micros(max));
        }
    }
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(location.url(&Path::from(object.key.as_str())))
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::from_iter([Some(Literal::int(partition))]))
        .partition_spec_id(0)
        .record_count(records)
        .file_size_in_bytes(object.size_bytes)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .value_counts(HashMap::from([(field_id::OFFSET, records), (field_id::TIMESTAMP, records)]))
        .null_value_counts(HashMap::from([(field_id::OFFSET, 0), (field_id::TIMESTAMP, 0)]))
        .build()
        .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_urls_round_trip_and_foreign_urls_are_refused() {
        let loc = TableLocation::new("s3://bucket/prefix/", "orders");
        assert_eq!(loc.table_url(), "s3://bucket/prefix/topic=orders/_iceberg");
        let key = loc.metadata_key(12);
        assert_eq!(key.as_ref(), "topic=orders/_iceberg/metadata/v12.metadata.json");
        assert_eq!(metadata_version(&key), Some(12));
        assert_eq!(metadata_version(&loc.version_hint_key()), None);
        assert_eq!(metadata_version(&loc.manifest_list_key(3, "b1-7")), None);
        let url = loc.url(&loc.manifest_key(3, "b1-7", 0));
        assert_eq!(url, "s3://bucket/prefix/topic=orders/_iceberg/metadata/3-b1-7-m0.avro");
        assert_eq!(loc.key(&url), Some(loc.manifest_key(3, "b1-7", 0)));
        assert_eq!(loc.key("s3://other/topic=orders/x.avro"), None);
        assert_eq!(loc.key("s3://bucket/prefix/topic=orders/../../x"), None);
    }

    #[test]
    fn table_keys_are_never_a_prefix_of_archive_keys_or_each_other() {
        use crate::archive::layout;
        let loc = TableLocation::new("s3://b", "t");
        let keys: Vec<String> = [
            loc.metadata_key(1),
            loc.metadata_key(10),
            loc.version_hint_key(),
            loc.manifest_list_key(1, "b0-5"),
            loc.manifest_list_key(10, "b0-5"),
            loc.manifest_key(1, "b0-5", 0),
            loc.manifest_key(1, "b0-5", 10),
            layout::data_key("t", 0, 0, 9),
            layout::manifest_key("t", 0, 1),
        ]
        .iter()
        .map(|k| k.to_string())
        .collect();
        for a in &keys {
            for b in &keys {
                assert!(a == b || !b.starts_with(a.as_str()), "{a} prefixes {b}");
            }
        }
        // Hive-style readers skip the folder; no partition folder holds it.
        assert!(loc.metadata_prefix().as_ref().starts_with("topic=t/_"));
    }

    #[test]
    fn data_files_carry_bounds_and_survive_hostile_timestamps() {
        let loc = TableLocation::new("file:///a", "t");
        let object = ObjectEntry {
            key: "topic=t/partition=2/x.parquet".into(),
            first_offset: 10,
            last_offset: 19,
            records: 10,
            size_bytes: 500,
            min_timestamp: 1_000,
            max_timestamp: 2_000,
        };
        let file = data_file(&loc, 2, &object).unwrap();
        assert_eq!(file.file_path(), "file:///a/topic=t/partition=2/x.parquet");
        assert_eq!(file.lower_bounds()[&field_id::OFFSET], Datum::long(10));
        assert_eq!(file.upper_bounds()[&field_id::TIMESTAMP], Datum::timestamptz_micros(2_000_000));
        let hostile = ObjectEntry {
            max_timestamp: i64::MAX,
            ..object.clone()
        };
        assert!(!data_file(&loc, 2, &hostile)
            .unwrap()
            .upper_bounds()
            .contains_key(&field_id::TIMESTAMP));
        let empty = ObjectEntry {
            records: 0,
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
            ..object
        };
        assert_eq!(data_file(&loc, 2, &empty).unwrap().record_count(), 0);
    }
}
