//! Every archived topic as an Apache Iceberg (format v2) table, with no
//! second copy of a record: the table's data files are the archive's own
//! Parquet objects, and its metadata sits beside them under
//! `topic=<t>/_iceberg/` (docs/archive-format.md).
//!
//! - `schema`: the table schema (the archive's columns and field ids, plus
//!   the identity-partitioned `partition`), name mapping and properties.
//! - `location`: metadata keys and data-file URLs; objects as data files.
//! - `plan`: what a commit changes and which snapshots expire (pure).
//! - `read`: reading the table and the partition manifests back from the
//!   bucket, with bounded caches and parsers that refuse damaged files.
//! - `table`: committing a snapshot that makes the table equal the
//!   archive, by compare-and-swap on the next metadata version; expiry.
//! - `catalog`: the read-only REST catalog under `/iceberg` on the admin
//!   HTTP port.
//!
//! The uploader (`tiering`) commits once per round per topic it changed,
//! and before retention deletes objects; nothing here is on the produce or
//! fetch path.

pub mod catalog;
pub mod location;
pub mod plan;
pub mod read;
pub mod schema;
pub mod table;
