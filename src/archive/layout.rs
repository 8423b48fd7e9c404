//! Where things live in the archive (a public contract: docs/archive-format.md).
//!
//! ```text
//! topic=<topic>/partition=<p>/<first offset:020>-<last offset:020>.parquet
//! topic=<topic>/partition=<p>/_manifest/<version:020>.json
//! _sediment/cluster/<version:020>.json
//! _sediment/offsets/<version:020>.jsonl
//! _sediment/etcd/<etcd revision:020>.json (a cluster)
//! ```
//! No key is a prefix of another key: data files and manifest versions sit
//! beside each other, never at a folder's own name. Names starting with `_`
//! are skipped by Hive-style readers (Spark, Trino, DuckDB, pyarrow).

use object_store::path::Path;

pub fn partition_prefix(topic: &str, partition: i32) -> Path {
    Path::from(format!("topic={topic}/partition={partition}"))
}

pub fn data_key(topic: &str, partition: i32, first_offset: i64, last_offset: i64) -> Path {
    Path::from(format!(
        "topic={topic}/partition={partition}/{first_offset:020}-{last_offset:020}.parquet"
    ))
}

pub fn manifest_prefix(topic: &str, partition: i32) -> Path {
    Path::from(format!("topic={topic}/partition={partition}/_manifest"))
}

pub fn manifest_key(topic: &str, partition: i32, version: u64) -> Path {
    Path::from(format!("topic={topic}/partition={partition}/_manifest/{version:020}.json"))
}

pub fn topic_prefix(topic: &str) -> Path {
    Path::from(format!("topic={topic}"))
}

pub fn cluster_prefix() -> Path {
    Path::from("_sediment/cluster")
}

pub fn cluster_key(version: u64) -> Path {
    Path::from(format!("_sediment/cluster/{version:020}.json"))
}

/// A cluster's copy of what etcd holds (`coordination::etcd::copy`).
pub fn etcd_prefix() -> Path {
    Path::from("_sediment/etcd")
}

pub fn etcd_key(version: u64) -> Path {
    Path::from(format!("_sediment/etcd/{version:020}.json"))
}

pub fn offsets_prefix() -> Path {
    Path::from("_sediment/offsets")
}

/// A copy of the committed consumer offsets (JSON lines).
pub fn offsets_key(version: u64) -> Path {
    Path::from(format!("_sediment/offsets/{version:020}.jsonl"))
}

/// The version number of a versioned JSON (or JSON-lines) file, from its key.
pub fn parse_version(key: &Path) -> Option<u64> {
    let name = key.filename()?;
    let stem = name.strip_suffix(".json").or_else(|| name.strip_suffix(".jsonl"))?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The newest versioned file under `prefix`, with its version.
pub async fn newest_version(store: &dyn object_store::ObjectStore, prefix: &Path) -> object_store::Result<Option<(u64, Path)>> {
    newest_by(store, prefix, parse_version).await
}

/// The file under `prefix` with the highest version, as `version_of` reads
/// it from a key (other files are ignored).
pub async fn newest_by(
    store: &dyn object_store::ObjectStore,
    prefix: &Path,
    version_of: fn(&Path) -> Option<u64>,
) -> object_store::Result<Option<(u64, Path)>> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store.list(Some(prefix)).try_collect().await?;
    Ok(metas
        .into_iter()
        .filter_map(|m| version_of(&m.location).map(|v| (v, m.location)))
        .max_by_key(|(v, _)| *v))
}

/// The offsets a data file covers, from its key.
pub fn parse_data_key(key: &Path) -> Option<(i64, i64)> {
    let name = key.filename()?;
    let stem = name.strip_suffix(".parquet")?;
    let (first, last) = stem.split_once('-')?;
    if first.len() != 20 || last.len() != 20 {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract_and_parse_back() {
        let key = data_key("orders", 3, 100, 199);
        assert_eq!(
            key.as_ref(),
            "topic=orders/partition=3/00000000000000000100-00000000000000000199.parquet"
        );
        assert_eq!(parse_data_key(&key), Some((100, 199)));
        let m = manifest_key("orders", 3, 7);
        assert_eq!(m.as_ref(), "topic=orders/partition=3/_manifest/00000000000000000007.json");
        assert_eq!(parse_version(&m), Some(7));
        assert_eq!(parse_version(&data_key("orders", 3, 1, 2)), None);
        assert_eq!(cluster_key(2).as_ref(), "_sediment/cluster/00000000000000000002.json");
        assert_eq!(parse_version(&offsets_key(9)), Some(9));
    }

    #[test]
    fn no_key_is_a_prefix_of_another() {
        let keys = [
            data_key("t", 0, 0, 9).to_string(),
            data_key("t", 0, 10, 19).to_string(),
            manifest_key("t", 0, 1).to_string(),
            manifest_key("t", 0, 2).to_string(),
            cluster_key(1).to_string(),
            offsets_key(1).to_string(),
            data_key("t", 1, 0, 9).to_string(),
        ];
        for a in &keys {
            for b in &keys {
                if a != b {
                    assert!(!b.starts_with(&format!("{a}/")) && !b.starts_with(a.as_str()), "{a} prefixes {b}");
                }
            }
        }
    }
}
