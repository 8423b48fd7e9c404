//! The uploader: seals become Parquet objects, the manifest records them,
//! and retention trims the archive and the local log. One task per broker,
//! at its own pace (`tiering_interval_ms`), backing off while the store
//! fails. An outage stalls this task, never produce or fetch of local data.
//!
//! In a cluster only a partition's leader archives it, under its leader
//! epoch, and its first write at a new epoch is an epoch-bump manifest that
//! fences the deposed leader. Followers read the manifest to apply local
//! retention below the archived end.
//!
//! It sits above both `broker` and `archive` and neither imports it: the
//! composition root (`node`) starts it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;

use crate::archive::manifest::{self, Manifest, ManifestError, ObjectEntry};
use crate::archive::{layout, ArchiveError};
use crate::broker::{Broker, Partition, Topic};
use crate::clock::now_ms;
use crate::iceberg::table::Committer;
use crate::metrics::PartitionLabels;

/// Runs until its task is cancelled (shutdown). `iceberg` commits the
/// topics' tables.
pub async fn run(broker: Arc<Broker>, iceberg: Committer) {
    let mut attempt = 0u32;
    let mut mirrored_versions = (0u64, 0u64);
    // When each follower partition's manifest was last read.
    let mut manifest_reads: HashMap<(String, i32), Instant> = HashMap::new();
    let mut tables = TableSync::default();
    loop {
        let interval = Duration::from_millis(broker.config.tiering_interval_ms);
        let mut result = Ok(());
        for topic in broker.topics() {
            let mut removed = Vec::new();
            for partition in topic.partitions() {
                // Only a partition's leader archives it (at its leader epoch).
                let Some(epoch) = partition.leader_epoch() else {
                    // A follower deletes locally only what the archive holds:
                    // it learns how far that is from the leader's manifest.
                    refresh_follower_manifest(&broker, &topic, &partition, &mut manifest_reads).await;
                    apply_local_retention(&broker, &topic, &partition).await;
                    continue;
                };
                let mut outcome = Ok(());
                if broker.cluster.is_some() && partition.manifest().epoch < epoch {
                    outcome = bump_epoch(&broker, &topic, &partition, epoch).await;
                }
                let outcome = match outcome {
                    Ok(()) => tier_partition(&broker, &topic, &partition, epoch).await,
                    err => err,
                };
                let outcome = match outcome {
                    Ok(()) => apply_archive_retention(&broker, &topic, &partition, epoch)
                        .await
                        .map(|gone| removed.extend(gone)),
                    err => err,
                };
                if let Err(e) = outcome {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "tiering failed; will retry");
                    broker.metrics.tiering_upload_errors.inc();
                    result = Err(e);
                }
                apply_local_retention(&broker, &topic, &partition).await;
            }
            tables.after_round(&broker, &iceberg, &topic, removed).await;
        }
        if let Err(e) = mirror_cluster_state(&broker, &mut mirrored_versions).await {
            tracing::warn!(error = %e, "cannot copy cluster metadata to the archive; will retry");
            result = Err(e);
        }
        broker.refresh_local_bytes();
        update_metrics(&broker);
        let pause = match result {
            Ok(()) => {
                attempt = 0;
                interval
            }
            Err(_) => {
                attempt += 1;
                interval.max(crate::archive::backoff(attempt))
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// A new leader's first archive write: the manifest as it is, under its
/// epoch, so that the deposed leader is fenced from now on.
async fn bump_epoch(broker: &Broker, topic: &Topic, partition: &Partition, epoch: i32) -> Result<(), ArchiveError> {
    publish(broker, topic, partition, |current| {
        if current.epoch > epoch {
            return Err(ManifestError::Fenced {
                ours: epoch,
                theirs: current.epoch,
            });
        }
        Ok((current.with_epoch(epoch), ()))
    })
    .await?;
    tracing::info!(topic = %topic.name, partition = partition.index, epoch, "published the epoch-bump manifest");
    Ok(())
}

/// An object whose publish failed (a deposed leader, fenced) is not in
/// the table, but readers that list the bucket would still find it: remove
/// it when the archive already covers its range another way. Only then is
/// it safe: the new leader archives from the archive's end on, so it never
/// writes an object under that key again. An object past the end stays for
/// whichever leader archives that range next (same offsets, same key).
async fn remove_unpublished(broker: &Broker, topic: &Topic, partition: &Partition, entry: &ObjectEntry) {
    let Ok(current) = manifest::load(broker.archive.store.as_ref(), &topic.name, partition.index).await else {
        return;
    };
    let covered = current.end_offset().is_some_and(|end| entry.first_offset < end);
    if covered && !current.objects.iter().any(|o| o.key == entry.key) {
        tracing::info!(topic = %topic.name, partition = partition.index, key = %entry.key, "removing an object whose publish was refused");
        broker.archive.delete_objects(std::slice::from_ref(entry)).await;
    }
}

/// How often a follower reads the leader's manifest, at most.
const FOLLOWER_MANIFEST_INTERVAL: Duration = Duration::from_secs(10);

/// Reads the partition's manifest (the leader publishes it) when the
/// follower holds sealed segments past the archived end it knows, at most
/// every `FOLLOWER_MANIFEST_INTERVAL`: that is when local retention could
/// free more.
async fn refresh_follower_manifest(broker: &Broker, topic: &Topic, partition: &Partition, reads: &mut HashMap<(String, i32), Instant>) {
    let known_end = partition.manifest().end_offset().unwrap_or(i64::MIN);
    let behind = partition.lock_log().sealed_segments().iter().any(|s| s.next_offset > known_end);
    let key = (topic.name.clone(), partition.index);
    if !behind || reads.get(&key).is_some_and(|t| t.elapsed() < FOLLOWER_MANIFEST_INTERVAL) {
        return;
    }
    reads.insert(key, Instant::now());
    match manifest::load(broker.archive.store.as_ref(), &topic.name, partition.index).await {
        Ok(m) => partition.set_manifest(m.for_incarnation(&topic.id.to_string())),
        Err(e) => tracing::debug!(topic = %topic.name, partition = partition.index, error = %e, "cannot read the manifest as a follower"),
    }
}

/// Archives every sealed, durable segment past the archive's end, in order.
async fn tier_partition(broker: &Broker, topic: &Topic, partition: &Partition, epoch: i32) -> Result<(), ArchiveError> {
    // Below the last stable offset every transaction is decided, so the
    // uploader knows which records were aborted.
    let stable = partition.last_stable_offset();
    let sealed = partition.lock_log().sealed_segments();
    for segment in sealed {
        let end = partition.manifest().end_offset().unwrap_or(i64::MIN);
        if segment.next_offset <= end {
            continue;
        }
        if segment.next_offset > stable {
            break; // not durable or not decided yet: never archive what could still be lost or aborted
        }
        let started = Instant::now();
        let limits = broker.validator.limits(topic.config().log_config().max_message_bytes);
        let Some(entry) = broker
            .archive
            .upload_segment(&topic.name, partition.index, &segment, end, limits)
            .await?
        else {
            continue;
        };
        let (records, bytes) = (entry.records, entry.size_bytes);
        let with_entry = |current: &Manifest| current.with_object(entry.clone(), epoch).map(|next| (next, ()));
        if let Err(e) = publish(broker, topic, partition, with_entry).await {
            remove_unpublished(broker, topic, partition, &entry).await;
            return Err(e);
        }
        broker.metrics.tiering_uploads.inc();
        broker.metrics.tiering_last_upload_timestamp_seconds.set(now_ms() / 1000);
        broker.metrics.tiering_uploaded_bytes.inc_by(bytes);
        broker.metrics.tiering_uploaded_records.inc_by(records as u64);
        tracing::info!(
            topic = %topic.name,
            partition = partition.index,
            first_offset = entry.first_offset,
            last_offset = entry.last_offset,
            records,
            parquet_bytes = bytes,
            segment_bytes = segment.size_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "archived segment"
        );
    }
    Ok(())
}

/// Publishes `change` applied to the newest manifest in the store, retrying
/// when another writer won the version; fenced writers stop. Returns what
/// the change that was published returned beside its manifest (the objects
/// it removed, say).
pub(crate) async fn publish<T>(
    broker: &Broker,
    topic: &Topic,
    partition: &Partition,
    change: impl Fn(&Manifest) -> Result<(Manifest, T), ManifestError>,
) -> Result<T, ArchiveError> {
    let store = broker.archive.store.as_ref();
    let topic_id = topic.id.to_string();
    for _ in 0..5 {
        let current = manifest::load(store, &topic.name, partition.index)
            .await?
            .for_incarnation(&topic_id);
        let (next, outcome) = change(&current)?;
        match manifest::publish(store, &topic.name, partition.index, &current, &next).await {
            Ok(()) => {
                partition.set_manifest(next);
                return Ok(outcome);
            }
            Err(ManifestError::Store(object_store::Error::AlreadyExists { .. })) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ArchiveError::Task("manifest publish kept losing races".into()))
}

/// `retention.ms` / `retention.bytes` over the archive: oldest objects
/// leave the manifest. Returns them: they leave the store once the topic's
/// Iceberg table no longer names them (`TableSync`).
async fn apply_archive_retention(
    broker: &Broker,
    topic: &Topic,
    partition: &Partition,
    epoch: i32,
) -> Result<Vec<ObjectEntry>, ArchiveError> {
    let config = topic.config();
    // A compact-only topic keeps its history: nothing expires by time or size.
    if !config.delete_policy {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let expired = |m: &Manifest| -> usize {
        let mut remaining = m.total_bytes() as i64;
        let mut count = 0;
        for o in &m.objects {
            let by_time = config.retention_ms >= 0 && o.max_timestamp < now - config.retention_ms;
            let by_size = config.retention_bytes >= 0 && remaining > config.retention_bytes;
            if !(by_time || by_size) {
                break;
            }
            remaining -= o.size_bytes as i64;
            count += 1;
        }
        count
    };
    let known = partition.manifest();
    if expired(&known) == 0 {
        return Ok(Vec::new());
    }
    let doomed = publish(broker, topic, partition, |current| {
        let count = expired(current);
        Ok((current.without_oldest(count, epoch), current.objects[..count].to_vec()))
    })
    .await?;
    tracing::info!(topic = %topic.name, partition = partition.index, objects = doomed.len(), "archive retention removed objects");
    Ok(doomed)
}

/// What the uploader knows of each topic's Iceberg table: the partition
/// manifest versions it last committed from, and objects retention removed
/// that wait for a delete snapshot before they leave the store.
#[derive(Default)]
struct TableSync {
    committed: HashMap<String, (uuid::Uuid, Vec<(i32, u64)>)>,
    pending_deletes: HashMap<String, Vec<ObjectEntry>>,
}

impl TableSync {
    /// Commits `topic`'s table when a partition this broker leads changed
    /// since the last commit (or none was made since start), then deletes
    /// the objects retention removed. An internal topic or one with
    /// `archive.iceberg.enabled=false` has no table: its objects go at once.
    async fn after_round(&mut self, broker: &Broker, iceberg: &Committer, topic: &Topic, removed: Vec<ObjectEntry>) {
        let mut doomed = self.pending_deletes.remove(&topic.name).unwrap_or_default();
        doomed.extend(removed);
        if topic.name.starts_with("__") || !topic.config().iceberg_enabled {
            // Turned on again later, the table is brought up to date at once.
            self.committed.remove(&topic.name);
            broker.archive.delete_objects(&doomed).await;
            return;
        }
        let led: Vec<(i32, u64)> = topic
            .partitions()
            .iter()
            .filter(|p| p.leader_epoch().is_some())
            .map(|p| (p.index, p.manifest().version))
            .collect();
        let known = self
            .committed
            .get(&topic.name)
            .is_some_and(|(id, versions)| *id == topic.id && *versions == led);
        if led.is_empty() || (known && doomed.is_empty()) {
            broker.archive.delete_objects(&doomed).await;
            return;
        }
        // On the blocking pool: reading and writing manifests is Avro
        // decoding and encoding, tens of milliseconds on a large table,
        // which must not hold up an async worker.
        let (committer, name, id, partitions) = (iceberg.clone(), topic.name.clone(), topic.id, topic.partition_count());
        let runtime = tokio::runtime::Handle::current();
        let committed = tokio::task::spawn_blocking(move || runtime.block_on(committer.sync(&name, id, partitions, now_ms())))
            .await
            .unwrap_or_else(|e| Err(crate::iceberg::table::IcebergError::Task(e.to_string())));
        match committed {
            Ok(_) => {
                self.committed.insert(topic.name.clone(), (topic.id, led));
                broker.archive.delete_objects(&doomed).await;
            }
            Err(e) => {
                tracing::warn!(topic = %topic.name, error = %e, "cannot commit the topic's Iceberg table; will retry");
                // The table may still name them: they stay until it does not.
                self.pending_deletes.insert(topic.name.clone(), doomed);
            }
        }
    }
}

/// `local.retention.*` and the disk budget: removes local segments that
/// the archive holds.
async fn apply_local_retention(broker: &Broker, topic: &Topic, partition: &Partition) {
    let Some(archived_end) = partition.manifest().end_offset() else {
        return;
    };
    let now = now_ms();
    let config = topic.config().log_config();
    // A compacted log stays local: it is the compacted view consumers read
    // (the archive holds every version). Only the disk budget evicts it.
    let local_retention = config.compaction.is_none();
    // Nor does it evict a coordinator topic: a new coordinator loads its
    // state from the local log.
    let mut over_budget = broker.over_disk_budget() && !crate::cluster::shards::is_coordinator_topic(&topic.name);
    let removed = partition.lock_log().delete_archived(archived_end, |segment, remaining| {
        let by_time = local_retention && config.local_retention_ms >= 0 && now - segment.last_append_ms > config.local_retention_ms;
        let by_size = local_retention && config.local_retention_bytes >= 0 && remaining as i64 > config.local_retention_bytes;
        let evict = by_time || by_size || over_budget;
        // One eviction per round under the budget; the next round re-checks.
        over_budget = false;
        !evict
    });
    if removed.is_empty() {
        return;
    }
    if let Err(e) = Partition::delete_segment_files(removed).await {
        tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "local retention failed");
    }
}

/// Copies the embedded coordinator's state and the committed offsets to the
/// archive, so a broker on an empty disk finds its topics and its consumer
/// groups' positions again.
async fn mirror_cluster_state(broker: &Broker, mirrored: &mut (u64, u64)) -> Result<(), ArchiveError> {
    if let Some(cluster) = &broker.cluster {
        // A cluster: the controller keeps the copy of what etcd holds.
        // Committed offsets live in `__consumer_offsets`, archived as a topic.
        let image = cluster.image();
        let controller = image.controller.is_some_and(|(id, _)| id == cluster.broker_id);
        let version = image.revision.max(0) as u64;
        if controller && version > mirrored.0 {
            let copy = crate::coordination::etcd::copy::ClusterCopy::from_image(&image);
            let bytes = serde_json::to_vec(&copy).map_err(|e| ArchiveError::Task(e.to_string()))?;
            mirror(broker, bytes, &layout::etcd_prefix(), layout::etcd_key(version)).await?;
            mirrored.0 = version;
        }
        return Ok(());
    }
    if let Some((version, bytes)) = broker.coordinator.snapshot() {
        if version > mirrored.0 {
            mirror(broker, bytes, &layout::cluster_prefix(), layout::cluster_key(version)).await?;
            mirrored.0 = version;
        }
    }
    if let Some((version, bytes)) = broker.groups.offsets.snapshot() {
        if version > mirrored.1 {
            mirror(broker, bytes, &layout::offsets_prefix(), layout::offsets_key(version)).await?;
            mirrored.1 = version;
        }
    }
    Ok(())
}

/// Writes one versioned copy and keeps the newest three under `prefix`.
async fn mirror(
    broker: &Broker,
    bytes: Vec<u8>,
    prefix: &object_store::path::Path,
    key: object_store::path::Path,
) -> Result<(), ArchiveError> {
    broker.archive.store.put(&key, bytes.into()).await?;
    use futures::TryStreamExt;
    let mut versions: Vec<(u64, object_store::path::Path)> = broker
        .archive
        .store
        .list(Some(prefix))
        .try_filter_map(|m| async move { Ok(layout::parse_version(&m.location).map(|v| (v, m.location))) })
        .try_collect()
        .await?;
    versions.sort_unstable_by_key(|(v, _)| *v);
    for (_, old) in versions.iter().rev().skip(3) {
        let _ = broker.archive.store.delete(old).await;
    }
    Ok(())
}

fn update_metrics(broker: &Broker) {
    let m = &broker.metrics;
    let (mut backlog_bytes, mut backlog_segments) = (0u64, 0usize);
    for family in [&m.archive_bytes, &m.archive_start_offset, &m.archive_end_offset] {
        family.clear();
    }
    for topic in broker.topics() {
        for partition in topic.partitions() {
            let manifest = partition.manifest();
            let end = manifest.end_offset();
            let (bytes, segments) = partition.lock_log().bytes_from(end.unwrap_or(i64::MIN));
            backlog_bytes += bytes;
            backlog_segments += segments;
            let labels = PartitionLabels {
                topic: topic.name.clone(),
                partition: partition.index.to_string(),
            };
            m.archive_bytes.get_or_create(&labels).set(manifest.total_bytes() as i64);
            if let (Some(start), Some(end)) = (manifest.start_offset(), end) {
                m.archive_start_offset.get_or_create(&labels).set(start);
                m.archive_end_offset.get_or_create(&labels).set(end);
            }
        }
    }
    m.tiering_backlog_bytes.set(backlog_bytes as i64);
    m.tiering_backlog_segments.set(backlog_segments as i64);
    m.archive_cache_bytes.set(broker.archive.cache_bytes() as i64);
}
