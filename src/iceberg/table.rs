//! Commits a topic's table: reads the newest metadata and its manifests,
//! then the archive's partition manifests (`read`), and writes one snapshot that
//! makes the table hold exactly the archive's objects (`plan`). Files are
//! written through iceberg's in-memory FileIO and put with our store; the
//! commit itself is creating `v<N+1>.metadata.json` with `PutMode::Create`,
//! so of two writers of version N+1 one wins and the other reads again and
//! retries. A table whose newest metadata cannot be read is rebuilt from
//! the archive under the next version number.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use iceberg::io::FileIO;
use iceberg::spec::{
    FormatVersion, ManifestEntry, ManifestFile, ManifestListWriter, ManifestWriter, ManifestWriterBuilder, Operation, PartitionSpec,
    PrimitiveLiteral, SchemaRef, Snapshot, SortOrder, Summary, TableMetadata, TableMetadataBuilder,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use super::location::{self, TableLocation};
use super::plan::{self, ManifestAction, Plan};
use super::read::{archived_objects, read_current, read_url, Current, LiveManifest};
pub use super::read::{
    current_files, newest_metadata, parse_live_entries, parse_manifest_list, parse_metadata, ManifestCache, PartitionManifests,
};
use super::schema::{self, Retention};
use crate::archive::manifest::{ManifestError, ObjectEntry};
use crate::metrics::{Metrics, OperationLabels};

/// Attempts at one commit before the round gives up (the next round retries).
const COMMIT_ATTEMPTS: usize = 5;
/// Files in the metadata folder younger than this are never swept as
/// orphans: another broker may be about to commit them.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);
/// Every this many versions, unreferenced files are swept.
const SWEEP_EVERY_VERSIONS: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum IcebergError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    #[error("archive manifest: {0}")]
    Archive(#[from] ManifestError),
    #[error("metadata JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the commit lost the race for the next version {0} times")]
    Contended(usize),
    #[error("the commit task failed: {0}")]
    Task(String),
}

/// Who commits and how the table's history is kept.
#[derive(Clone)]
pub struct Committer {
    pub store: Arc<dyn ObjectStore>,
    pub archive_url: String,
    /// Unique per broker process (file names; see `location`).
    pub writer: String,
    pub retention: Retention,
    pub metrics: Arc<Metrics>,
    /// Manifests read before (they never change once written).
    manifests: Arc<ManifestCache>,
    /// The archive's partition manifests read before.
    partition_manifests: Arc<PartitionManifests>,
}

impl Committer {
    /// A committer with empty caches.
    pub fn new(store: Arc<dyn ObjectStore>, archive_url: String, writer: String, retention: Retention, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            archive_url,
            writer,
            retention,
            metrics,
            manifests: Default::default(),
            partition_manifests: Default::default(),
        }
    }
}

/// What a commit did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The new metadata version, when a snapshot was committed.
    pub version: Option<u64>,
    pub added: usize,
    pub deleted: usize,
    pub expired: usize,
    /// The table was unreadable and was rebuilt.
    pub repaired: bool,
}

/// The Kafka partition of a data file (its identity partition value).
fn partition_of(entry: &ManifestEntry) -> i32 {
    match entry.data_file().partition().fields().first() {
        Some(Some(iceberg::spec::Literal::Primitive(PrimitiveLiteral::Int(p)))) => *p,
        _ => -1,
    }
}

/// Manifest writers of one commit, opened as entries arrive.
struct Writers<'a> {
    io: &'a FileIO,
    loc: &'a TableLocation,
    writer: &'a str,
    snapshot_id: i64,
    schema: SchemaRef,
    spec: PartitionSpec,
    open: BTreeMap<String, ManifestWriter>,
}

impl Writers<'_> {
    fn get(&mut self, group: String) -> iceberg::Result<&mut ManifestWriter> {
        if !self.open.contains_key(&group) {
            let key = self.loc.manifest_key(self.snapshot_id, self.writer, self.open.len());
            let output = self.io.new_output(self.loc.url(&key))?;
            let writer = ManifestWriterBuilder::new(output, Some(self.snapshot_id), self.schema.clone(), self.spec.clone()).build_v2_data();
            self.open.insert(group.clone(), writer);
        }
        self.open
            .get_mut(&group)
            .ok_or_else(|| iceberg::Error::new(iceberg::ErrorKind::Unexpected, "manifest writer vanished"))
    }
}

impl Committer {
    fn loc(&self, topic: &str) -> TableLocation {
        TableLocation::new(&self.archive_url, topic)
    }

    /// Makes `topic`'s table hold exactly the archive's objects, committing
    /// a snapshot if anything differs (or the table must be repaired).
    pub async fn sync(&self, topic: &str, topic_id: uuid::Uuid, partitions: i32, now_ms: i64) -> Result<Committed, IcebergError> {
        let started = Instant::now();
        let outcome = self.sync_inner(topic, topic_id, partitions, now_ms).await;
        match &outcome {
            Ok(c) if c.version.is_some() => self.metrics.iceberg_commit_duration.observe(started.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(_) => {
                self.metrics.iceberg_commit_errors.inc();
            }
        }
        outcome
    }

    async fn sync_inner(&self, topic: &str, topic_id: uuid::Uuid, partitions: i32, now_ms: i64) -> Result<Committed, IcebergError> {
        let loc = self.loc(topic);
        let store = self.store.as_ref();
        for _ in 0..COMMIT_ATTEMPTS {
            // The table first, then the archive: whatever another writer
            // committed, the archive read after it holds at least as much,
            // so this commit never takes back what it added.
            let current = read_current(store, &loc, &self.manifests).await?;
            if let Some(why) = &current.broken {
                self.metrics.iceberg_metadata_repairs.inc();
                tracing::error!(topic, version = current.version, reason = %why, "the Iceberg table is unreadable; rebuilding it from the archive's manifests");
            }
            let objects = archived_objects(store, topic, &topic_id.to_string(), partitions, &self.partition_manifests).await?;
            let desired: Vec<String> = objects.iter().map(|(_, o)| loc.url(&Path::from(o.key.as_str()))).collect();
            let live: Vec<Vec<String>> = match &current.table {
                Some((_, manifests)) => manifests
                    .iter()
                    .map(|m| m.entries.iter().map(|e| e.file_path().to_string()).collect())
                    .collect(),
                None => Vec::new(),
            };
            let plan = plan::plan(&live, &desired, self.retention.min_manifests_to_merge);
            let needs_table = current.table.is_none() && (current.broken.is_some() || !desired.is_empty());
            if plan.is_empty() && !needs_table {
                return Ok(Committed::default());
            }
            match self.commit(&loc, topic_id, &current, &plan, &objects, now_ms).await? {
                Some(committed) => return Ok(committed),
                None => {
                    self.metrics.iceberg_commit_conflicts.inc();
                    tracing::debug!(
                        topic,
                        version = current.version + 1,
                        "lost an Iceberg commit race; reading the table again"
                    );
                }
            }
        }
        Err(IcebergError::Contended(COMMIT_ATTEMPTS))
    }

    /// Writes the snapshot and tries to create the next metadata version.
    /// `None` when another writer created it first (its files are removed).
    async fn commit(
        &self,
        loc: &TableLocation,
        topic_id: uuid::Uuid,
        current: &Current,
        plan: &Plan,
        objects: &[(i32, ObjectEntry)],
        now_ms: i64,
    ) -> Result<Option<Committed>, IcebergError> {
        let version = current.version + 1;
        // Unique within the table: versions only grow, repairs included.
        let snapshot_id = version as i64;
        let previous = current.table.as_ref().map(|(m, _)| m);
        let sequence = previous.map_or(0, |m| m.last_sequence_number()) + 1;
        let parent = previous.and_then(|m| m.current_snapshot_id());
        let (schema, spec) = match previous {
            Some(m) => (m.current_schema().clone(), m.default_partition_spec().as_ref().clone()),
            None => {
                let s = schema::schema()?;
                let spec = schema::partition_spec(&s)?;
                (Arc::new(s), spec)
            }
        };
        let io = FileIO::new_with_memory();
        let mut writers = Writers {
            io: &io,
            loc,
            writer: &self.writer,
            snapshot_id,
            schema: schema.clone(),
            spec,
            open: BTreeMap::new(),
        };
        let mut listed: Vec<ManifestFile> = Vec::new();
        let manifests: &[LiveManifest] = current.table.as_ref().map_or(&[], |(_, m)| m);
        for (index, (m, action)) in manifests.iter().zip(&plan.manifests).enumerate() {
            let deleted = match action {
                ManifestAction::Drop => continue,
                ManifestAction::Keep if !plan.merge => {
                    listed.push(m.file.clone());
                    continue;
                }
                ManifestAction::Keep => Default::default(),
                ManifestAction::Rewrite { deleted } => deleted.clone(),
            };
            for (position, entry) in m.entries.iter().enumerate() {
                let group = if plan.merge {
                    format!("p{:010}", partition_of(entry))
                } else {
                    format!("r{index:010}")
                };
                // Inherited values made explicit: an existing or deleted
                // entry must carry them.
                let sequence_number = entry.sequence_number().unwrap_or(m.file.sequence_number);
                let file_sequence = entry.file_sequence_number.or(Some(sequence_number));
                let w = writers.get(group)?;
                if deleted.contains(&position) {
                    w.add_delete_file(entry.data_file().clone(), sequence_number, file_sequence)?;
                } else {
                    let added_by = entry.snapshot_id().unwrap_or(m.file.added_snapshot_id);
                    w.add_existing_file(entry.data_file().clone(), added_by, sequence_number, file_sequence)?;
                }
            }
        }
        let mut added_records = 0u64;
        for (partition, object) in plan.added.iter().filter_map(|&i| objects.get(i)) {
            let file = location::data_file(loc, *partition, object)?;
            added_records += file.record_count();
            let group = if plan.merge {
                format!("p{partition:010}")
            } else {
                "added".to_string()
            };
            writers.get(group)?.add_file(file, sequence)?;
        }
        let mut written: Vec<Path> = Vec::new();
        let outcome = self
            .write_and_commit(
                loc,
                topic_id,
                current,
                plan,
                writers.open,
                listed,
                &io,
                &mut written,
                SnapshotFacts {
                    snapshot_id,
                    parent,
                    sequence,
                    now_ms,
                    added_records,
                    total_files: objects.len(),
                    total_records: objects.iter().map(|(_, o)| o.records.max(0) as u64).sum(),
                },
            )
            .await;
        match outcome {
            Ok(Some(c)) => Ok(Some(c)),
            other => {
                // Lost or failed: what this attempt wrote is no one's.
                for key in &written {
                    let _ = self.store.delete(key).await;
                }
                other
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_and_commit(
        &self,
        loc: &TableLocation,
        topic_id: uuid::Uuid,
        current: &Current,
        plan: &Plan,
        open: BTreeMap<String, ManifestWriter>,
        mut listed: Vec<ManifestFile>,
        io: &FileIO,
        written: &mut Vec<Path>,
        facts: SnapshotFacts,
    ) -> Result<Option<Committed>, IcebergError> {
        let store = self.store.as_ref();
        for (_, writer) in open {
            let file = writer.write_manifest_file().await?;
            let key = loc.key(&file.manifest_path).ok_or_else(|| {
                iceberg::Error::new(
                    iceberg::ErrorKind::Unexpected,
                    format!("{} is outside the table", file.manifest_path),
                )
            })?;
            let bytes = io.new_input(&file.manifest_path)?.read().await?;
            written.push(key.clone());
            store.put(&key, bytes.into()).await?;
            listed.push(file);
        }
        let list_key = loc.manifest_list_key(facts.snapshot_id, &self.writer);
        let list_url = loc.url(&list_key);
        let mut list = ManifestListWriter::v2(
            io.new_output(&list_url)?.writer().await?,
            facts.snapshot_id,
            facts.parent,
            facts.sequence,
        );
        list.add_manifests(listed.iter().cloned())?;
        list.close().await?;
        let bytes = io.new_input(&list_url)?.read().await?;
        written.push(list_key.clone());
        store.put(&list_key, bytes.into()).await?;

        let deleted = plan.deleted_count();
        let operation = match (plan.added.is_empty(), deleted == 0) {
            (false, true) => Operation::Append,
            (true, false) => Operation::Delete,
            _ => Operation::Overwrite,
        };
        let summary = Summary {
            operation: operation.clone(),
            additional_properties: HashMap::from([
                ("added-data-files".to_string(), plan.added.len().to_string()),
                ("added-records".to_string(), facts.added_records.to_string()),
                ("deleted-data-files".to_string(), deleted.to_string()),
                ("total-data-files".to_string(), facts.total_files.to_string()),
                ("total-records".to_string(), facts.total_records.to_string()),
                ("total-delete-files".to_string(), "0".to_string()),
            ]),
        };
        let snapshot = Snapshot::builder()
            .with_snapshot_id(facts.snapshot_id)
            .with_parent_snapshot_id(facts.parent)
            .with_sequence_number(facts.sequence)
            .with_timestamp_ms(facts.now_ms)
            .with_manifest_list(list_url.clone())
            .with_summary(summary)
            .with_schema_id(0)
            .build();
        let props = schema::properties(loc.topic(), &self.retention)?;
        let (builder, previous_snapshots) = match &current.table {
            Some((previous, _)) => {
                let previous_url = loc.url(&loc.metadata_key(current.version));
                let snapshots: Vec<(i64, i64, String)> = previous
                    .snapshots()
                    .map(|s| (s.snapshot_id(), s.timestamp_ms(), s.manifest_list().to_string()))
                    .collect();
                (
                    TableMetadataBuilder::new_from_metadata(previous.clone(), Some(previous_url)).set_properties(props)?,
                    snapshots,
                )
            }
            None => {
                let s = schema::schema()?;
                let spec = schema::partition_spec(&s)?;
                let builder = TableMetadataBuilder::new(s, spec, SortOrder::unsorted_order(), loc.table_url(), FormatVersion::V2, props)?
                    .assign_uuid(topic_id);
                (builder, Vec::new())
            }
        };
        let mut all: Vec<(i64, i64)> = previous_snapshots.iter().map(|(id, ts, _)| (*id, *ts)).collect();
        all.push((facts.snapshot_id, facts.now_ms));
        let r = &self.retention;
        let expired = plan::expired_snapshots(
            &all,
            Some(facts.snapshot_id),
            facts.now_ms,
            r.max_snapshot_age_ms,
            r.min_snapshots_to_keep,
            r.max_snapshots,
        );
        let built = builder.set_branch_snapshot(snapshot, "main")?.remove_snapshots(&expired).build()?;
        let metadata_bytes = serde_json::to_vec(&built.metadata)?;
        let version = current.version + 1;
        let created = store
            .put_opts(
                &loc.metadata_key(version),
                metadata_bytes.into(),
                PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                },
            )
            .await;
        match created {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.metrics
            .iceberg_commits
            .get_or_create(&OperationLabels {
                operation: operation.as_str().to_string(),
            })
            .inc();
        // Committed. The rest is upkeep: failures only leave files behind.
        if let Err(e) = store.put(&loc.version_hint_key(), version.to_string().into()).await {
            tracing::warn!(topic = loc.topic(), error = %e, "cannot write the Iceberg version hint");
        }
        let expired_set: HashSet<i64> = expired.iter().copied().collect();
        let expired_lists: Vec<String> = previous_snapshots
            .iter()
            .filter(|(id, _, _)| expired_set.contains(id))
            .map(|(_, _, list)| list.clone())
            .collect();
        let new_manifests: HashSet<String> = listed.iter().map(|m| m.manifest_path.clone()).collect();
        self.expire(loc, &built.metadata, &expired_lists, &new_manifests, &list_url).await;
        for old in &built.expired_metadata_logs {
            if let Some(key) = loc.key(&old.metadata_file) {
                let _ = store.delete(&key).await;
            }
        }
        if current.broken.is_some() || version.is_multiple_of(SWEEP_EVERY_VERSIONS) {
            self.sweep_orphans(loc, &built.metadata, version, facts.now_ms).await;
        }
        self.metrics.iceberg_snapshots_expired.inc_by(expired.len() as u64);
        tracing::info!(
            topic = loc.topic(),
            version,
            snapshot_id = facts.snapshot_id,
            operation = operation.as_str(),
            added_files = plan.added.len(),
            deleted_files = deleted,
            expired_snapshots = expired.len(),
            "committed an Iceberg snapshot"
        );
        Ok(Some(Committed {
            version: Some(version),
            added: plan.added.len(),
            deleted,
            expired: expired.len(),
            repaired: current.broken.is_some(),
        }))
    }

    /// The manifest paths a manifest list names.
    async fn list_manifests(&self, loc: &TableLocation, list_url: &str) -> Result<Vec<String>, String> {
        let bytes = match read_url(self.store.as_ref(), loc, list_url).await {
            Ok(Ok(b)) => b,
            Ok(Err(why)) => return Err(why),
            Err(e) => return Err(e.to_string()),
        };
        parse_manifest_list(&bytes)
            .map(|l| l.into_iter().map(|m| m.manifest_path).collect())
            .map_err(|e| e.to_string())
    }

    /// Deletes the expired snapshots' manifest lists, and the manifests
    /// only they named. History is one line and a manifest, once left out
    /// of a snapshot, never comes back: so a manifest an expired snapshot
    /// named is still needed only if the oldest snapshot kept names it.
    async fn expire(
        &self,
        loc: &TableLocation,
        metadata: &TableMetadata,
        expired_lists: &[String],
        new_manifests: &HashSet<String>,
        new_list: &str,
    ) {
        if expired_lists.is_empty() {
            return;
        }
        let oldest_kept = metadata
            .snapshots()
            .min_by_key(|s| s.sequence_number())
            .map(|s| s.manifest_list().to_string());
        let kept: HashSet<String> = match oldest_kept {
            Some(list) if list == new_list => new_manifests.clone(),
            Some(list) => match self.list_manifests(loc, &list).await {
                Ok(m) => m.into_iter().collect(),
                // Unknown: delete nothing but the lists.
                Err(_) => return self.delete_urls(loc, expired_lists).await,
            },
            None => HashSet::new(),
        };
        let mut doomed: HashSet<String> = HashSet::new();
        for list in expired_lists {
            if let Ok(manifests) = self.list_manifests(loc, list).await {
                doomed.extend(manifests.into_iter().filter(|m| !kept.contains(m)));
            }
        }
        let doomed: Vec<String> = doomed.into_iter().chain(expired_lists.iter().cloned()).collect();
        self.delete_urls(loc, &doomed).await;
    }

    async fn delete_urls(&self, loc: &TableLocation, urls: &[String]) {
        for url in urls {
            if let Some(key) = loc.key(url) {
                if let Err(e) = self.store.delete(&key).await {
                    tracing::debug!(url, error = %e, "cannot delete an expired Iceberg file");
                }
            }
        }
    }

    /// Deletes files in the metadata folder that nothing the table names
    /// needs: left by a crash mid-commit, or by the table a repair replaced.
    async fn sweep_orphans(&self, loc: &TableLocation, metadata: &TableMetadata, version: u64, now_ms: i64) {
        let mut referenced: HashSet<Path> = HashSet::from([loc.metadata_key(version), loc.version_hint_key()]);
        referenced.extend(metadata.metadata_log().iter().filter_map(|m| loc.key(&m.metadata_file)));
        for snapshot in metadata.snapshots() {
            referenced.extend(loc.key(snapshot.manifest_list()));
            match self.list_manifests(loc, snapshot.manifest_list()).await {
                Ok(manifests) => referenced.extend(manifests.iter().filter_map(|m| loc.key(m))),
                // Not knowing what is referenced, delete nothing.
                Err(_) => return,
            }
        }
        let Ok(files) = self.store.list(Some(&loc.metadata_prefix())).try_collect::<Vec<_>>().await else {
            return;
        };
        let cutoff_ms = now_ms.saturating_sub(ORPHAN_GRACE.as_millis() as i64);
        for file in files {
            if referenced.contains(&file.location) || file.last_modified.timestamp_millis() > cutoff_ms {
                continue;
            }
            // A newer version than ours is someone else's commit.
            if location::metadata_version(&file.location).is_some_and(|v| v > version) {
                continue;
            }
            tracing::info!(key = %file.location, "deleting an orphaned Iceberg file");
            let _ = self.store.delete(&file.location).await;
        }
    }
}

/// The facts of the snapshot being committed.
struct SnapshotFacts {
    snapshot_id: i64,
    parent: Option<i64>,
    sequence: i64,
    now_ms: i64,
    added_records: u64,
    total_files: usize,
    total_records: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::layout;
    use crate::archive::manifest::{self, Manifest};
    use object_store::memory::InMemory;

    const URL: &str = "memory:///archive";

    fn committer(store: Arc<dyn ObjectStore>, writer: &str, retention: Retention) -> Committer {
        Committer::new(store, URL.into(), writer.into(), retention, Arc::new(Metrics::new()))
    }

    fn object(partition: i32, first: i64, last: i64) -> ObjectEntry {
        ObjectEntry {
            key: layout::data_key("t", partition, first, last).to_string(),
            first_offset: first,
            last_offset: last,
            records: last - first + 1,
            size_bytes: 1000,
            min_timestamp: first,
            max_timestamp: last,
        }
    }

    /// Appends one object to partition `p`'s archive manifest.
    async fn archive(store: &dyn ObjectStore, topic_id: &str, p: i32, first: i64, last: i64) {
        let current = manifest::load(store, "t", p).await.unwrap().for_incarnation(topic_id);
        let next = current.with_object(object(p, first, last), 0).unwrap();
        manifest::publish(store, "t", p, &current, &next).await.unwrap();
    }

    async fn archived_urls(store: &dyn ObjectStore, partitions: i32) -> Vec<String> {
        let loc = TableLocation::new(URL, "t");
        let mut urls = Vec::new();
        for p in 0..partitions {
            let m: Manifest = manifest::load(store, "t", p).await.unwrap();
            urls.extend(m.objects.iter().map(|o| loc.url(&Path::from(o.key.as_str()))));
        }
        urls.sort();
        urls
    }

    async fn metadata_files(store: &dyn ObjectStore) -> usize {
        let loc = TableLocation::new(URL, "t");
        store
            .list(Some(&loc.metadata_prefix()))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn appends_retention_and_a_thousand_rounds_keep_metadata_bounded() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let id = uuid::Uuid::from_u128(7);
        let retention = Retention {
            max_snapshots: 10,
            previous_versions_max: 5,
            min_manifests_to_merge: 4,
            ..Retention::default()
        };
        let c = committer(store.clone(), "b0-1", retention);
        // No archive yet: no table.
        assert_eq!(c.sync("t", id, 2, 1).await.unwrap(), Committed::default());
        let mut next = [0i64, 0];
        let mut most_files = 0;
        for round in 0..1_000i64 {
            let p = (round % 2) as i32;
            let first = next[p as usize];
            archive(store.as_ref(), &id.to_string(), p, first, first + 9).await;
            next[p as usize] += 10;
            if round % 50 == 49 {
                // Retention: the oldest object of each partition leaves the
                // archive's manifest.
                for p in 0..2 {
                    let current = manifest::load(store.as_ref(), "t", p).await.unwrap();
                    let trimmed = current.without_oldest(1, 0);
                    manifest::publish(store.as_ref(), "t", p, &current, &trimmed).await.unwrap();
                }
            }
            let committed = c.sync("t", id, 2, 1_000 + round).await.unwrap();
            assert!(committed.version.is_some(), "round {round} committed");
            assert!(!committed.repaired);
            most_files = most_files.max(metadata_files(store.as_ref()).await);
        }
        let files = current_files(store.as_ref(), URL, "t").await.unwrap();
        assert_eq!(files, archived_urls(store.as_ref(), 2).await);
        assert_eq!(files.len(), 1_000 - 2 * 20);
        // 10 snapshots' lists, 6 metadata versions, the hint and the
        // manifests those snapshots name: bounded, not growing per round.
        assert!(most_files < 80, "{most_files} files in the metadata folder");
        // Nothing changed: nothing to commit.
        assert_eq!(c.sync("t", id, 2, 5_000).await.unwrap().version, None);
    }

    #[tokio::test]
    async fn racing_committers_lose_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let id = uuid::Uuid::from_u128(8);
        let a = committer(store.clone(), "b1-1", Retention::default());
        let b = committer(store.clone(), "b2-1", Retention::default());
        let mut first = 0;
        for round in 0..40 {
            archive(store.as_ref(), &id.to_string(), round % 3, first, first + 4).await;
            first += 5;
            let (ra, rb) = tokio::join!(a.sync("t", id, 3, round as i64), b.sync("t", id, 3, round as i64));
            ra.unwrap();
            rb.unwrap();
            assert_eq!(
                current_files(store.as_ref(), URL, "t").await.unwrap(),
                archived_urls(store.as_ref(), 3).await
            );
        }
    }

    #[tokio::test]
    async fn a_corrupt_or_missing_metadata_file_is_repaired_from_the_archive() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let id = uuid::Uuid::from_u128(9);
        let c = committer(store.clone(), "b0-1", Retention::default());
        archive(store.as_ref(), &id.to_string(), 0, 0, 9).await;
        let v1 = c.sync("t", id, 1, 1).await.unwrap().version.unwrap();
        let loc = TableLocation::new(URL, "t");
        store.put(&loc.metadata_key(v1), b"{not json".to_vec().into()).await.unwrap();
        // Nothing new in the archive, yet the broken table is rebuilt.
        let repaired = c.sync("t", id, 1, 2).await.unwrap();
        assert!(repaired.repaired && repaired.version == Some(v1 + 1), "{repaired:?}");
        assert_eq!(c.metrics.iceberg_metadata_repairs.get(), 1);
        assert_eq!(current_files(store.as_ref(), URL, "t").await.unwrap().len(), 1);
        // The current manifest list gone missing: the same.
        store.delete(&loc.manifest_list_key((v1 + 1) as i64, "b0-1")).await.unwrap();
        archive(store.as_ref(), &id.to_string(), 0, 10, 19).await;
        let again = c.sync("t", id, 1, 3).await.unwrap();
        assert!(again.repaired);
        assert_eq!(
            current_files(store.as_ref(), URL, "t").await.unwrap(),
            archived_urls(store.as_ref(), 1).await
        );
    }

    #[test]
    fn a_lying_avro_count_is_refused_before_it_allocates() {
        // Found by the fuzzer: a header map claiming ~2^28 entries made the
        // reader reserve 2.7 GB.
        let found: &[u8] = &[
            79, 98, 106, 1, 255, 255, 255, 24, 0, 0, 0, 255, 255, 255, 250, 255, 255, 10, 32, 91, 91, 48, 46, 53,
        ];
        assert!(parse_manifest_list(found).is_err());
        assert!(parse_live_entries(found).is_err());
        // A compressed file is refused (the reader inflates without a bound).
        let mut deflated = b"Obj\x01\x02\x14avro.codec\x0edeflate\x00".to_vec();
        deflated.extend([0u8; 16]);
        let err = parse_live_entries(&deflated).unwrap_err().to_string();
        assert!(err.contains("compressed"), "{err}");
    }

    #[tokio::test]
    async fn damaged_table_files_are_errors_not_panics() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let id = uuid::Uuid::from_u128(10);
        let c = committer(store.clone(), "b0-1", Retention::default());
        archive(store.as_ref(), &id.to_string(), 0, 0, 9).await;
        c.sync("t", id, 1, 1).await.unwrap();
        let loc = TableLocation::new(URL, "t");
        let files = store.list(Some(&loc.metadata_prefix())).try_collect::<Vec<_>>().await.unwrap();
        let mut rng = crate::seeded::Seeded::new(5);
        for file in files {
            let bytes = store.get(&file.location).await.unwrap().bytes().await.unwrap().to_vec();
            for _ in 0..300 {
                let mut damaged = bytes.clone();
                match rng.below(3) {
                    0 => damaged.truncate(rng.below(bytes.len() as u64 + 1) as usize),
                    1 => {
                        for _ in 0..1 + rng.below(8) {
                            let i = rng.below(damaged.len().max(1) as u64) as usize;
                            if let Some(b) = damaged.get_mut(i) {
                                *b = rng.below(256) as u8;
                            }
                        }
                    }
                    _ => damaged.extend((0..rng.below(64)).map(|_| rng.below(256) as u8)),
                }
                let _ = parse_metadata(&damaged);
                let _ = parse_manifest_list(&damaged);
                let _ = parse_live_entries(&damaged);
            }
        }
    }
}
