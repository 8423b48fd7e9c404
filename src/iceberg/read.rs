//! Reading a topic's table back from the bucket: the newest metadata, its
//! manifest list and manifests (through a bounded cache, since manifests
//! never change), and the archive's partition manifests the table follows.
//! A missing or damaged file makes the table `broken`, for the commit to
//! rebuild; only store failures are errors. The parsers are fuzzed
//! (`fuzz/fuzz_targets/iceberg_read.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::spec::{FormatVersion, Manifest, ManifestEntry, ManifestFile, ManifestList, TableMetadata};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::location::{self, TableLocation};
use super::table::IcebergError;
use crate::archive::layout;
use crate::archive::manifest::{self, ObjectEntry};

/// A table file larger than this is treated as damaged, not read: the
/// largest the broker writes (a merged manifest of one partition) is about
/// 500 bytes per data file, so this is over 100,000 objects a partition.
const MAX_TABLE_FILE_BYTES: u64 = 64 << 20;

/// Live entries of manifests already read, by URL: a commit reads the
/// current snapshot's manifests, and most are the previous commit's.
/// Bounded by entries; dropped whole when full (only costs reads).
#[derive(Default)]
pub struct ManifestCache(parking_lot::Mutex<CachedManifests>);

#[derive(Default)]
struct CachedManifests {
    by_url: HashMap<String, Arc<Vec<ManifestEntry>>>,
    entries: usize,
}

/// Manifest entries the cache holds at most (a few hundred bytes each).
const MANIFEST_CACHE_ENTRIES: usize = 200_000;

impl ManifestCache {
    fn get(&self, url: &str) -> Option<Arc<Vec<ManifestEntry>>> {
        self.0.lock().by_url.get(url).cloned()
    }

    fn put(&self, url: &str, entries: Arc<Vec<ManifestEntry>>) {
        let mut cached = self.0.lock();
        if cached.entries + entries.len() > MANIFEST_CACHE_ENTRIES {
            cached.by_url.clear();
            cached.entries = 0;
        }
        cached.entries += entries.len();
        cached.by_url.insert(url.to_string(), entries);
    }
}

/// The newest metadata version under the table's folder, by listing it.
pub async fn newest_version(store: &dyn ObjectStore, loc: &TableLocation) -> object_store::Result<Option<u64>> {
    let newest = layout::newest_by(store, &loc.metadata_prefix(), location::metadata_version).await?;
    Ok(newest.map(|(version, _)| version))
}

/// The newest metadata's version and bytes, for the catalog.
pub async fn newest_metadata(store: &dyn ObjectStore, loc: &TableLocation) -> object_store::Result<Option<(u64, Bytes)>> {
    let Some(version) = newest_version(store, loc).await? else {
        return Ok(None);
    };
    let got = store.get(&loc.metadata_key(version)).await?;
    if got.meta.size > MAX_TABLE_FILE_BYTES {
        // Served as unreadable; the next commit rebuilds the table.
        return Ok(Some((version, Bytes::new())));
    }
    Ok(Some((version, got.bytes().await?)))
}

/// A manifest of the current snapshot with its live entries.
pub(super) struct LiveManifest {
    pub(super) file: ManifestFile,
    pub(super) entries: Arc<Vec<ManifestEntry>>,
}

/// The table as it is: the newest version number, and its metadata and
/// manifests when they could be read.
pub(super) struct Current {
    pub(super) version: u64,
    pub(super) table: Option<(TableMetadata, Vec<LiveManifest>)>,
    pub(super) broken: Option<String>,
}

/// The bytes at `url`, or why the table is broken (missing or foreign);
/// `Err` only for store failures worth retrying.
pub(super) async fn read_url(store: &dyn ObjectStore, loc: &TableLocation, url: &str) -> Result<Result<Bytes, String>, IcebergError> {
    let Some(key) = loc.key(url) else {
        return Ok(Err(format!("{url} is outside the table")));
    };
    match store.get(&key).await {
        Ok(got) if got.meta.size > MAX_TABLE_FILE_BYTES => Ok(Err(format!("{url} is {} bytes, over the bound", got.meta.size))),
        Ok(got) => Ok(Ok(got.bytes().await?)),
        Err(object_store::Error::NotFound { .. }) => Ok(Err(format!("{url} is missing"))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn read_current(store: &dyn ObjectStore, loc: &TableLocation, cache: &ManifestCache) -> Result<Current, IcebergError> {
    let Some(version) = newest_version(store, loc).await? else {
        return Ok(Current {
            version: 0,
            table: None,
            broken: None,
        });
    };
    let broken = |why: String| Current {
        version,
        table: None,
        broken: Some(why),
    };
    let metadata_url = loc.url(&loc.metadata_key(version));
    let bytes = match read_url(store, loc, &metadata_url).await? {
        Ok(b) => b,
        Err(why) => return Ok(broken(why)),
    };
    let metadata = match parse_metadata(&bytes) {
        Ok(m) => m,
        Err(e) => return Ok(broken(format!("{metadata_url}: {e}"))),
    };
    let mut manifests = Vec::new();
    if let Some(snapshot) = metadata.current_snapshot() {
        let list = match read_url(store, loc, snapshot.manifest_list()).await? {
            Ok(b) => b,
            Err(why) => return Ok(broken(why)),
        };
        let list = match parse_manifest_list(&list) {
            Ok(l) => l,
            Err(e) => return Ok(broken(format!("{}: {e}", snapshot.manifest_list()))),
        };
        for file in list {
            if let Some(entries) = cache.get(&file.manifest_path) {
                manifests.push(LiveManifest { file, entries });
                continue;
            }
            let bytes = match read_url(store, loc, &file.manifest_path).await? {
                Ok(b) => b,
                Err(why) => return Ok(broken(why)),
            };
            let manifest = match Manifest::parse_avro(&bytes) {
                Ok(m) => m,
                Err(e) => return Ok(broken(format!("{}: {e}", file.manifest_path))),
            };
            let (entries, _) = manifest.into_parts();
            let entries: Arc<Vec<ManifestEntry>> =
                Arc::new(entries.into_iter().filter(|e| e.is_alive()).map(Arc::unwrap_or_clone).collect());
            cache.put(&file.manifest_path, entries.clone());
            manifests.push(LiveManifest { file, entries });
        }
    }
    Ok(Current {
        version,
        table: Some((metadata, manifests)),
        broken: None,
    })
}

/// A table metadata file. The parsers take bytes from the bucket, which a
/// person or a broken writer may have damaged: errors, never panics
/// (fuzzed: `fuzz/fuzz_targets/iceberg_read.rs`).
pub fn parse_metadata(bytes: &[u8]) -> Result<TableMetadata, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// A manifest list's manifests.
pub fn parse_manifest_list(bytes: &[u8]) -> iceberg::Result<Vec<ManifestFile>> {
    check_avro(bytes)?;
    Ok(ManifestList::parse_with_version(bytes, FormatVersion::V2)?.entries().to_vec())
}

/// A manifest's live (added or existing) entries.
pub fn parse_live_entries(bytes: &[u8]) -> iceberg::Result<Vec<ManifestEntry>> {
    check_avro(bytes)?;
    let (entries, _) = Manifest::parse_avro(bytes)?.into_parts();
    Ok(entries.into_iter().filter(|e| e.is_alive()).map(Arc::unwrap_or_clone).collect())
}

/// The largest single allocation the Avro reader may make for one value
/// or block: it sizes buffers and collections from counts in the file, and
/// a damaged count asked for gigabytes (found by the fuzzer). The writer's
/// blocks are about 16 KB, so this leaves a wide margin.
const AVRO_MAX_ALLOCATION: usize = 4 << 20;

/// Checks that the Avro reader can read `bytes` in bounded memory: sets
/// its allocation bound (process-wide, first call wins), and refuses a
/// compressed file. The writer never compresses, and the reader inflates
/// deflate, snappy and zstd blocks without a bound.
fn check_avro(bytes: &[u8]) -> iceberg::Result<()> {
    apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION);
    // The header's `avro.codec` entry: the key's length (10, zigzag) and
    // name, then the value's length and value.
    const KEY: &[u8] = b"\x14avro.codec";
    const NULL: &[u8] = b"\x08null";
    let compressed = bytes
        .windows(KEY.len())
        .enumerate()
        .any(|(at, w)| w == KEY && !bytes[at + KEY.len()..].starts_with(NULL));
    if compressed {
        return Err(iceberg::Error::new(
            iceberg::ErrorKind::DataInvalid,
            "a compressed Avro file (Sediment writes them uncompressed)",
        ));
    }
    Ok(())
}

/// The archive's objects for a topic, by partition: the truth the table
/// follows. Objects of a deleted topic of the same name are not included.
/// Each partition's newest manifest is listed, and read only if it is
/// not the version read last time.
pub(super) async fn archived_objects(
    store: &dyn ObjectStore,
    topic: &str,
    topic_id: &str,
    partitions: i32,
    cache: &PartitionManifests,
) -> Result<Vec<(i32, ObjectEntry)>, IcebergError> {
    let mut objects = Vec::new();
    for p in 0..partitions {
        let Some((_, key)) = layout::newest_version(store, &layout::manifest_prefix(topic, p)).await? else {
            continue;
        };
        let slot = (topic.to_string(), p);
        let cached = cache.0.lock().get(&slot).filter(|(k, _)| *k == key).map(|(_, m)| m.clone());
        let m = match cached {
            Some(m) => m,
            None => {
                let m = Arc::new(manifest::read(store, &key).await?);
                cache.0.lock().insert(slot, (key, m.clone()));
                m
            }
        };
        if m.belongs_to(topic_id) {
            objects.extend(m.objects.iter().map(|o| (p, o.clone())));
        }
    }
    Ok(objects)
}

/// The partition manifest each commit last read, by topic and partition:
/// one per partition, replaced by newer versions, so it holds what the
/// broker holds in memory anyway.
#[derive(Default)]
pub struct PartitionManifests(parking_lot::Mutex<HashMap<(String, i32), KnownManifest>>);

/// A partition manifest version's key, and the manifest.
type KnownManifest = (Path, Arc<manifest::Manifest>);

/// The data files of the table's current snapshot, by reading it (for
/// tests and checks).
pub async fn current_files(store: &dyn ObjectStore, archive_url: &str, topic: &str) -> Result<Vec<String>, IcebergError> {
    let loc = TableLocation::new(archive_url, topic);
    let current = read_current(store, &loc, &ManifestCache::default()).await?;
    if let Some(why) = current.broken {
        return Err(IcebergError::Iceberg(iceberg::Error::new(iceberg::ErrorKind::DataInvalid, why)));
    }
    let mut files: Vec<String> = current
        .table
        .map(|(_, manifests)| {
            manifests
                .iter()
                .flat_map(|m| m.entries.iter().map(|e| e.file_path().to_string()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    Ok(files)
}
