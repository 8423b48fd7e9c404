//! The table's schema, partition spec, name mapping and properties: the
//! archive's columns (`archive::parquet`) with their field ids, plus
//! `partition`, an identity partition whose values live in the manifests.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    ListType, MappedField, NameMapping, NestedField, PartitionSpec, PrimitiveType, Schema, StructType, Transform, Type,
    DEFAULT_SCHEMA_NAME_MAPPING,
};

use crate::archive::parquet::field_id as id;

/// How the table's metadata is kept: Iceberg's own property names, so
/// engines and tools read them the way they read any table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `history.expire.max-snapshot-age-ms`.
    pub max_snapshot_age_ms: i64,
    /// `history.expire.min-snapshots-to-keep`.
    pub min_snapshots_to_keep: usize,
    /// `sediment.history.expire.max-snapshots`: a cap on the count too, so
    /// a busy topic's metadata stays small whatever the age limit.
    pub max_snapshots: usize,
    /// `write.metadata.previous-versions-max`.
    pub previous_versions_max: usize,
    /// `commit.manifest.min-count-to-merge`.
    pub min_manifests_to_merge: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_snapshot_age_ms: 5 * 24 * 3600 * 1000,
            min_snapshots_to_keep: 1,
            max_snapshots: 100,
            previous_versions_max: 20,
            min_manifests_to_merge: 16,
        }
    }
}

/// The table schema. Field ids are given in the order Iceberg assigns them
/// (top level first), so building table metadata keeps them as they are
/// and they match the ids in the Parquet files.
pub fn schema() -> iceberg::Result<Schema> {
    let header = Type::Struct(StructType::new(vec![
        NestedField::required(id::HEADER_KEY, "key", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::optional(id::HEADER_VALUE, "value", Type::Primitive(PrimitiveType::Binary)).into(),
    ]));
    let headers = Type::List(ListType::new(NestedField::required(id::HEADER, "element", header).into()));
    Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            NestedField::required(id::OFFSET, "offset", Type::Primitive(PrimitiveType::Long)).into(),
            // The files hold milliseconds; readers widen them to the
            // table's microseconds.
            NestedField::required(id::TIMESTAMP, "timestamp", Type::Primitive(PrimitiveType::Timestamptz)).into(),
            NestedField::optional(id::KEY, "key", Type::Primitive(PrimitiveType::Binary)).into(),
            NestedField::optional(id::VALUE, "value", Type::Primitive(PrimitiveType::Binary)).into(),
            NestedField::required(id::HEADERS, "headers", headers).into(),
            // Optional: the files do not hold it, and readers fill it from
            // the identity partition's values (a required column missing
            // from a file is an error to them).
            NestedField::optional(id::PARTITION, "partition", Type::Primitive(PrimitiveType::Int)).into(),
        ])
        .build()
}

pub fn partition_spec(schema: &Schema) -> iceberg::Result<PartitionSpec> {
    PartitionSpec::builder(Arc::new(schema.clone()))
        .with_spec_id(0)
        .add_partition_field("partition", "partition", Transform::Identity)?
        .build()
}

/// Column names to field ids, for files written before they held ids.
/// The header list's element is `item` in Arrow-written files, `element`
/// in the Parquet spec: both are mapped.
pub fn name_mapping() -> NameMapping {
    let leaf = |field_id: i32, name: &str| MappedField::new(Some(field_id), vec![name.to_string()], Vec::new());
    let header = MappedField::new(
        Some(id::HEADER),
        vec!["element".to_string(), "item".to_string()],
        vec![leaf(id::HEADER_KEY, "key"), leaf(id::HEADER_VALUE, "value")],
    );
    NameMapping::new(vec![
        leaf(id::OFFSET, "offset"),
        leaf(id::TIMESTAMP, "timestamp"),
        leaf(id::KEY, "key"),
        leaf(id::VALUE, "value"),
        MappedField::new(Some(id::HEADERS), vec!["headers".to_string()], vec![header]),
        leaf(id::PARTITION, "partition"),
    ])
}

/// The table's properties.
pub fn properties(topic: &str, retention: &Retention) -> Result<HashMap<String, String>, serde_json::Error> {
    Ok(HashMap::from([
        (DEFAULT_SCHEMA_NAME_MAPPING.to_string(), serde_json::to_string(&name_mapping())?),
        (
            "history.expire.max-snapshot-age-ms".into(),
            retention.max_snapshot_age_ms.to_string(),
        ),
        (
            "history.expire.min-snapshots-to-keep".into(),
            retention.min_snapshots_to_keep.to_string(),
        ),
        ("sediment.history.expire.max-snapshots".into(), retention.max_snapshots.to_string()),
        (
            "write.metadata.previous-versions-max".into(),
            retention.previous_versions_max.to_string(),
        ),
        (
            "commit.manifest.min-count-to-merge".into(),
            retention.min_manifests_to_merge.to_string(),
        ),
        ("write.parquet.compression-codec".into(), "zstd".into()),
        ("sediment.topic".into(), topic.to_string()),
        // Engines must not write: the broker owns the table.
        ("sediment.read-only".into(), "true".into()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{FormatVersion, SortOrder, TableMetadataBuilder};

    #[test]
    fn building_table_metadata_keeps_the_field_ids_the_files_carry() {
        let schema = schema().unwrap();
        let spec = partition_spec(&schema).unwrap();
        let props = properties("t", &Retention::default()).unwrap();
        let built = TableMetadataBuilder::new(
            schema.clone(),
            spec,
            SortOrder::unsorted_order(),
            "memory://t".into(),
            FormatVersion::V2,
            props,
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata;
        let table = built.current_schema();
        for (name, field_id) in [
            ("offset", id::OFFSET),
            ("timestamp", id::TIMESTAMP),
            ("key", id::KEY),
            ("value", id::VALUE),
            ("headers", id::HEADERS),
            ("partition", id::PARTITION),
            ("headers.element", id::HEADER),
            ("headers.element.key", id::HEADER_KEY),
            ("headers.element.value", id::HEADER_VALUE),
        ] {
            assert_eq!(table.field_by_name(name).map(|f| f.id), Some(field_id), "{name}");
        }
        // And the Parquet schema's ids are the same.
        let arrow = crate::archive::parquet::schema();
        for field in arrow.fields() {
            let parquet_id: i32 = field.metadata()["PARQUET:field_id"].parse().unwrap();
            assert_eq!(
                table.field_by_name(field.name()).map(|f| f.id),
                Some(parquet_id),
                "{}",
                field.name()
            );
        }
    }

    #[test]
    fn the_name_mapping_covers_every_column_and_both_list_element_names() {
        let json = serde_json::to_value(name_mapping()).unwrap();
        let text = json.to_string();
        for name in ["offset", "timestamp", "key", "value", "headers", "partition", "element", "item"] {
            assert!(text.contains(&format!("\"{name}\"")), "{name} missing from {text}");
        }
        assert_eq!(json[4]["fields"][0]["field-id"], id::HEADER);
    }
}
