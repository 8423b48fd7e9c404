//! Topic lifecycle: opening topics at startup, creating them (atomically:
//! partitions first, then the record), auto-creation, deletion, partitions
//! and config changes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::{validate_topic_name, Broker, ConfigChange, Partition, Role, Topic, TopicError};
use crate::clock::now_ms;
use crate::config::FlushPolicy;
use crate::coordination::TopicRecord;
use crate::log::PartitionLog;
use crate::metrics::TopicLabels;
use crate::topic_config::TopicConfig;

/// A sanity bound on partitions per topic.
const PARTITIONS_MAX: i32 = 10_000;
/// Extension of a topic directory whose deletion is under way.
const DELETED_SUFFIX: &str = "deleted";

/// Where a new topic's replicas go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This many replicas (-1: the default), placed by the broker.
    Factor(i16),
    /// CreateTopics' manual assignment: the replicas of each partition.
    Manual(Vec<Vec<i32>>),
}

/// A topic whose partitions are open but which is not yet recorded or
/// visible (`Broker::prepare_topic`, then `commit_topics`).
struct NewTopic {
    topic: Arc<Topic>,
    partitions: Vec<Arc<Partition>>,
    record: TopicRecord,
}

impl Broker {
    pub(super) fn topics_root(&self) -> PathBuf {
        self.config.data_dir.join("topics")
    }

    fn topic_dir(&self, name: &str, id: &uuid::Uuid) -> PathBuf {
        // Keep in step with the known-directory list in `open`.
        self.topics_root().join(format!("{name}.{id}"))
    }

    /// Settles deletions a crash interrupted and warns about, but never
    /// removes, directories no topic record names (they may be data whose
    /// metadata was lost). A `*.deleted` directory whose topic is still on
    /// record was renamed just before a crash stopped the deletion: it is
    /// renamed back; otherwise the deletion is finished.
    pub(super) fn remove_stray_topic_dirs(&self, known: &[PathBuf]) {
        let Ok(entries) = std::fs::read_dir(self.topics_root()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == DELETED_SUFFIX) {
                let original = path.with_extension("");
                if known.contains(&original) && !original.exists() {
                    tracing::warn!(dir = %original.display(), "a topic deletion did not complete; keeping the topic");
                    let _ = std::fs::rename(&path, &original);
                } else {
                    tracing::info!(dir = %path.display(), "finishing an interrupted topic deletion");
                    let _ = std::fs::remove_dir_all(&path);
                }
            } else if !known.contains(&path) {
                tracing::warn!(dir = %path.display(), "no topic record names this directory; leaving it untouched");
            }
        }
    }

    pub(super) async fn open_topic(&self, record: &TopicRecord) -> Result<Arc<Topic>, TopicError> {
        let id = uuid::Uuid::parse_str(&record.id).map_err(|e| TopicError::Storage(format!("topic {} has a bad id: {e}", record.name)))?;
        let config = TopicConfig::from_overrides(&self.config.topic_defaults(), &record.configs)?;
        let topic = Arc::new(Topic::new(&record.name, id, config, record.configs.clone(), &self.metrics));
        let partitions = self.open_partitions(&topic, 0, record.partitions, true).await?;
        self.attach_partitions(&topic, partitions);
        Ok(topic)
    }

    /// Opens partitions `from..total` of `topic` without making them
    /// visible: nothing serves them and no flusher runs until
    /// `attach_partitions`. On an error the ones already opened are dropped,
    /// which closes their files; what they created on disk is the caller's
    /// to remove.
    async fn open_partitions(&self, topic: &Topic, from: i32, total: i32, restore: bool) -> Result<Vec<Arc<Partition>>, TopicError> {
        let log_config = topic.config().log_config();
        let mut opened = Vec::with_capacity(total.saturating_sub(from).max(0) as usize);
        for index in from..total {
            // What the archive holds decides where the log continues: a broker
            // on an empty disk serves the archived history and appends after it.
            let manifest = if restore {
                self.load_manifest_patiently(&topic.name, index, &topic.id.to_string()).await
            } else {
                crate::archive::manifest::Manifest::for_topic(&topic.id.to_string())
            };
            let dir = self.topic_dir(&topic.name, &topic.id).join(index.to_string());
            let now = now_ms();
            let config = log_config.clone();
            let archived_end = manifest.end_offset();
            let producer_limits = self.config.producer_limits();
            let (log, report) = tokio::task::spawn_blocking(move || {
                let (mut log, report) = PartitionLog::open(&dir, config, now)?;
                log.set_producer_limits(producer_limits);
                if let Some(end) = archived_end {
                    log.advance_to(end, now)?;
                }
                Ok::<_, crate::log::LogError>((log, report))
            })
            .await
            .map_err(|e| TopicError::Storage(e.to_string()))?
            .map_err(|e| TopicError::Storage(format!("cannot open partition {index} of {}: {e}", topic.name)))?;
            if report.truncated_bytes > 0 {
                self.metrics.recovery_truncated_bytes.inc_by(report.truncated_bytes);
            }
            tracing::info!(
                topic = %topic.name,
                partition = index,
                segments = report.segments,
                batches = report.batches,
                truncated_bytes = report.truncated_bytes,
                log_end_offset = log.next_offset(),
                archived_objects = manifest.objects.len(),
                "opened partition"
            );
            let role = if self.cluster.is_some() {
                Role::Inactive
            } else {
                Role::single_node(self.config.broker_id, self.leader_epoch, log.next_offset())
            };
            let partition = Partition::new(topic.name.clone(), index, log, self.config.flush, role);
            partition.set_manifest(manifest);
            opened.push(partition);
        }
        Ok(opened)
    }

    /// Makes partitions `open_partitions` opened part of `topic` and starts
    /// their flushers.
    fn attach_partitions(&self, topic: &Topic, opened: Vec<Arc<Partition>>) {
        if self.config.flush == FlushPolicy::Always {
            for partition in &opened {
                self.tasks.spawn(partition.clone().run_flusher(self.metrics.clone()));
            }
        }
        topic.partitions.write().extend(opened);
    }

    /// Removes directories a failed topic change created (the partitions in
    /// them must be dropped first, so their files are closed).
    async fn remove_created_dirs(&self, dirs: Vec<PathBuf>) {
        let root = self.topics_root();
        let removed = tokio::task::spawn_blocking(move || {
            for dir in &dirs {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the directory of a topic change that failed");
                    }
                }
            }
            crate::log::sync_dir(&root)
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(dir = %self.topics_root().display(), error = %e, "cannot sync the topics directory");
        }
    }

    /// Drops the metric series `Topic::new` registered for a topic that was
    /// not created after all.
    fn forget_topic_metrics(&self, name: &str) {
        let labels = TopicLabels { topic: name.to_string() };
        self.metrics.bytes_in.remove(&labels);
        self.metrics.records_in.remove(&labels);
        self.metrics.bytes_out.remove(&labels);
    }

    /// Opens every partition of a new topic, not yet visible or recorded.
    /// On failure nothing of it remains, on disk or open.
    async fn prepare_topic(&self, topic: Topic, partitions: i32, placement: &Placement) -> Result<NewTopic, TopicError> {
        let assignment = match self.assignment(&topic.id, partitions, placement) {
            Ok(assignment) => assignment,
            Err(e) => {
                self.forget_topic_metrics(&topic.name);
                return Err(e);
            }
        };
        match self.open_partitions(&topic, 0, partitions, false).await {
            Ok(opened) => Ok(NewTopic {
                record: TopicRecord {
                    name: topic.name.clone(),
                    id: topic.id.to_string(),
                    partitions,
                    configs: topic.overrides(),
                    assignment,
                },
                topic: Arc::new(topic),
                partitions: opened,
            }),
            Err(e) => {
                self.remove_created_dirs(vec![self.topic_dir(&topic.name, &topic.id)]).await;
                self.forget_topic_metrics(&topic.name);
                Err(e)
            }
        }
    }

    /// Replicas of each new partition. A single node holds them all (no
    /// assignment is recorded); a cluster places `replication_factor`
    /// replicas (-1: `default_replication_factor`, capped at the live
    /// brokers) over the live brokers, starting where the topic's random id
    /// says, as Kafka starts at random.
    fn assignment(&self, topic_id: &uuid::Uuid, partitions: i32, placement: &Placement) -> Result<Vec<Vec<i32>>, TopicError> {
        let me = self.config.broker_id;
        let Some(cluster) = &self.cluster else {
            return match placement {
                Placement::Factor(-1 | 1) => Ok(Vec::new()),
                Placement::Factor(factor) => Err(TopicError::InvalidReplicationFactor(*factor)),
                Placement::Manual(manual) if manual.iter().all(|r| r.as_slice() == [me]) => Ok(Vec::new()),
                Placement::Manual(_) => Err(TopicError::InvalidReplicaAssignment(format!(
                    "every partition must be assigned to broker {me} alone"
                ))),
            };
        };
        let live = cluster.live_broker_ids();
        let replication_factor = match placement {
            Placement::Manual(manual) => {
                crate::controller::placement::validate(manual, &live).map_err(|e| TopicError::InvalidReplicaAssignment(e.to_string()))?;
                return Ok(manual.clone());
            }
            Placement::Factor(factor) => *factor,
        };
        let factor = if replication_factor == -1 {
            self.config.default_replication_factor.min(live.len().max(1) as i16)
        } else {
            replication_factor
        };
        let id = topic_id.as_bytes();
        let start = crate::controller::placement::Start {
            first: id[0] as usize,
            shift: id[1] as usize,
        };
        crate::controller::placement::assign(partitions, factor, &live, 0, start).map_err(|_| TopicError::InvalidReplicationFactor(factor))
    }

    /// A cluster's record of the topic, as this broker last saw it.
    fn recorded_topic(&self, name: &str) -> Option<TopicRecord> {
        self.cluster.as_ref()?.image().topics.get(name).cloned()
    }

    /// Records a changed topic. In a cluster, only over the record this
    /// broker based the change on: a concurrent change through another
    /// broker is refused, never overwritten.
    async fn record_topic_change(&self, record: TopicRecord) -> Result<(), crate::coordination::CoordinationError> {
        match self.recorded_topic(&record.name) {
            Some(expected) => self.coordinator.update_topic(expected, record).await,
            None => self.coordinator.put_topic(record).await,
        }
    }

    /// The replicas a cluster recorded for the topic (empty on a single node).
    fn recorded_assignment(&self, name: &str) -> Vec<Vec<i32>> {
        self.cluster
            .as_ref()
            .and_then(|c| c.image().topics.get(name).map(|t| t.assignment.clone()))
            .unwrap_or_default()
    }

    /// Records new topics whose partitions are open in one coordinator
    /// change, then makes them visible. If the record cannot be written,
    /// none of them remains.
    async fn commit_topics(&self, new: Vec<NewTopic>) -> Result<Vec<Arc<Topic>>, TopicError> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        for n in &new {
            self.cancel_archive_deletion(&n.topic.name);
        }
        let records = new.iter().map(|n| n.record.clone()).collect();
        if let Err(e) = self.coordinator.create_topics(records).await {
            let dirs = new.iter().map(|n| self.topic_dir(&n.topic.name, &n.topic.id)).collect();
            for n in &new {
                self.forget_topic_metrics(&n.topic.name);
            }
            drop(new);
            self.remove_created_dirs(dirs).await;
            return Err(e.into());
        }
        let mut created = Vec::with_capacity(new.len());
        for n in new {
            self.attach_partitions(&n.topic, n.partitions);
            self.insert_topic(n.topic.clone());
            tracing::info!(topic = %n.topic.name, partitions = n.record.partitions, "created topic");
            created.push(n.topic);
        }
        Ok(created)
    }

    /// The partition's manifest, retried until the archive answers: without
    /// it the log could reuse offsets the archive already holds.
    async fn load_manifest_patiently(&self, topic: &str, partition: i32, topic_id: &str) -> crate::archive::manifest::Manifest {
        let mut attempt = 0;
        loop {
            match crate::archive::manifest::load(self.archive.store.as_ref(), topic, partition).await {
                Ok(m) => return m.for_incarnation(topic_id),
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, attempt, archive = %self.archive.url, "cannot read the archive manifest; retrying");
                    self.metrics.tiering_upload_errors.inc();
                    tokio::time::sleep(crate::archive::backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Removes a deleted topic's archive, retrying until the store answers.
    /// Creating a topic of the same name cancels it, so the new topic's
    /// objects are never removed by the old one's deletion.
    fn spawn_archive_deletion(&self, topic: String) {
        let archive = self.archive.clone();
        let name = topic.clone();
        let handle = self.tasks.spawn(async move {
            let mut attempt = 0;
            while let Err(e) = archive.delete_topic(&topic).await {
                tracing::warn!(topic = %topic, error = %e, attempt, "cannot delete a deleted topic's archive yet; retrying");
                tokio::time::sleep(crate::archive::backoff(attempt)).await;
                attempt += 1;
            }
            tracing::info!(topic = %topic, "deleted the topic's archive");
        });
        let mut pending = self.archive_deletions.lock();
        pending.retain(|_, h| !h.is_finished());
        if let Some(previous) = pending.insert(name, handle) {
            previous.abort();
        }
    }

    fn cancel_archive_deletion(&self, topic: &str) {
        let pending = self.archive_deletions.lock().remove(topic);
        if let Some(handle) = pending {
            if !handle.is_finished() {
                tracing::warn!(
                    topic,
                    "a topic of this name was deleted and is created again before its archive was removed; old objects may remain"
                );
            }
            handle.abort();
        }
    }

    /// Creates a topic of `partitions` partitions (-1: `default_partitions`)
    /// placed as `placement` says.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        placement: Placement,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions));
        }
        let config = TopicConfig::from_overrides(&self.config.topic_defaults(), &configs)?;
        let _guard = self.topic_changes.lock().await;
        if self.topic(name).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let id = uuid::Uuid::new_v4();
        let topic = Topic::new(name, id, config, configs, &self.metrics);
        if validate_only {
            self.forget_topic_metrics(name);
            self.assignment(&id, partitions, &placement)?;
            return Ok(Arc::new(topic));
        }
        // Partitions first, then the record: a topic is recorded only once
        // its partitions exist, so a failure (out of file descriptors, a
        // full disk) leaves no topic behind that the next start would trip on.
        let new = self.prepare_topic(topic, partitions, &placement).await?;
        let mut created = self.commit_topics(vec![new]).await?;
        created
            .pop()
            .ok_or_else(|| TopicError::Storage("topic creation recorded nothing".into()))
    }

    /// The named topics, the missing ones created with defaults if
    /// auto-creation is on (Metadata). All topics created are recorded in
    /// one coordinator change. Every name given has an entry.
    pub async fn auto_create_topics(&self, names: &[&str]) -> HashMap<String, Result<Arc<Topic>, TopicError>> {
        let mut out: HashMap<String, Result<Arc<Topic>, TopicError>> = HashMap::with_capacity(names.len());
        let mut missing = Vec::new();
        for &name in names {
            if out.contains_key(name) {
                continue;
            }
            let found = match (self.topic(name), validate_topic_name(name)) {
                (Some(topic), _) => Ok(topic),
                (None, Err(e)) => Err(e),
                (None, Ok(())) if !self.config.auto_create_topics => Err(TopicError::Unknown(name.to_string())),
                (None, Ok(())) => {
                    missing.push(name);
                    continue;
                }
            };
            out.insert(name.to_string(), found);
        }
        if missing.is_empty() {
            return out;
        }
        let _guard = self.topic_changes.lock().await;
        let partitions = self.config.default_partitions;
        let mut new = Vec::with_capacity(missing.len());
        for name in missing {
            if let Some(topic) = self.topic(name) {
                // Created while this request waited for the lock.
                out.insert(name.to_string(), Ok(topic));
                continue;
            }
            let prepared = match TopicConfig::from_overrides(&self.config.topic_defaults(), &BTreeMap::new()) {
                Ok(config) => {
                    let topic = Topic::new(name, uuid::Uuid::new_v4(), config, BTreeMap::new(), &self.metrics);
                    self.prepare_topic(topic, partitions, &Placement::Factor(-1)).await
                }
                Err(e) => Err(e.into()),
            };
            match prepared {
                Ok(n) => new.push(n),
                Err(e) => {
                    tracing::warn!(topic = name, error = %e, "cannot auto-create topic");
                    out.insert(name.to_string(), Err(e));
                }
            }
        }
        let names: Vec<String> = new.iter().map(|n| n.topic.name.clone()).collect();
        match self.commit_topics(new).await {
            Ok(created) => out.extend(created.into_iter().map(|t| (t.name.clone(), Ok(t)))),
            Err(e) => {
                tracing::warn!(topics = names.len(), error = %e, "cannot record auto-created topics");
                out.extend(names.into_iter().map(|n| (n, Err(TopicError::Storage(e.to_string())))));
            }
        }
        out
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        // Rename first: once the record is gone the data must go too, and a
        // crash in between is settled at the next start (see
        // `remove_stray_topic_dirs`).
        let dir = self.topic_dir(&topic.name, &topic.id);
        let doomed = PathBuf::from(format!("{}.{DELETED_SUFFIX}", dir.display()));
        std::fs::rename(&dir, &doomed).map_err(|e| TopicError::Storage(format!("cannot remove {}: {e}", dir.display())))?;
        let deleted = match self.recorded_topic(name) {
            Some(expected) => self.coordinator.delete_topic_if(expected).await,
            None => self.coordinator.delete_topic(name.to_string()).await,
        };
        if let Err(e) = deleted {
            // Not deleted after all: put the directory back.
            let _ = std::fs::rename(&doomed, &dir);
            return Err(e.into());
        }
        self.drop_local_topic(&topic, doomed).await?;
        self.spawn_archive_deletion(name.to_string());
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// The local half of a deletion: the partitions close, the topic goes
    /// from the map and its metrics, and `doomed` (its renamed directory)
    /// is removed.
    async fn drop_local_topic(&self, topic: &Topic, doomed: PathBuf) -> Result<(), TopicError> {
        let _ = crate::log::sync_dir(&self.topics_root());
        for partition in topic.partitions() {
            partition.close();
        }
        self.topics.write().remove(&topic.name);
        // Its counters go with it: a deleted topic's series would otherwise
        // stay in every scrape until a restart.
        self.forget_topic_metrics(&topic.name);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(doomed))
            .await
            .map_err(|e| TopicError::Storage(e.to_string()))?
            .map_err(|e| TopicError::Storage(e.to_string()))
    }

    /// A cluster: a topic another broker deleted (it is gone from etcd)
    /// goes here too. That broker removes the archive.
    pub async fn forget_deleted_topic(&self, name: &str) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let Some(topic) = self.topic(name) else { return Ok(()) };
        let dir = self.topic_dir(&topic.name, &topic.id);
        let doomed = PathBuf::from(format!("{}.{DELETED_SUFFIX}", dir.display()));
        std::fs::rename(&dir, &doomed).map_err(|e| TopicError::Storage(format!("cannot remove {}: {e}", dir.display())))?;
        self.drop_local_topic(&topic, doomed).await?;
        tracing::info!(topic = name, "removed a topic deleted elsewhere in the cluster");
        Ok(())
    }

    pub async fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if total <= topic.partition_count() || total > PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(total));
        }
        if validate_only {
            return Ok(());
        }
        // As for a new topic: open the new partitions, then record them.
        let existing = topic.partition_count();
        let new_dirs = || {
            let dir = self.topic_dir(&topic.name, &topic.id);
            (existing..total).map(|i| dir.join(i.to_string())).collect::<Vec<_>>()
        };
        let opened = match self.open_partitions(&topic, existing, total, false).await {
            Ok(opened) => opened,
            Err(e) => {
                self.remove_created_dirs(new_dirs()).await;
                return Err(e);
            }
        };
        let mut assignment = self.recorded_assignment(name);
        if !assignment.is_empty() {
            let factor = assignment.first().map_or(1, |r| r.len() as i16);
            let live: std::collections::BTreeSet<i32> = self.cluster.iter().flat_map(|c| c.live_broker_ids()).collect();
            let more = crate::controller::placement::assign(total - existing, factor, &live, existing, Default::default())
                .map_err(|_| TopicError::InvalidReplicationFactor(factor));
            match more {
                Ok(more) => assignment.extend(more),
                Err(e) => {
                    drop(opened);
                    self.remove_created_dirs(new_dirs()).await;
                    return Err(e);
                }
            }
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: topic.id.to_string(),
            partitions: total,
            configs: topic.overrides(),
            assignment,
        };
        if let Err(e) = self.record_topic_change(record).await {
            drop(opened);
            self.remove_created_dirs(new_dirs()).await;
            return Err(e.into());
        }
        self.attach_partitions(&topic, opened);
        tracing::info!(topic = name, partitions = total, "added partitions");
        Ok(())
    }

    /// Applies config changes (key, Some(value) to set, None to delete).
    pub async fn alter_topic_config(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
        how: ConfigChange,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        // Read under the lock, so a concurrent change is never undone.
        let mut overrides = match how {
            ConfigChange::Incremental => topic.overrides(),
            ConfigChange::Replace => BTreeMap::new(),
        };
        for (key, value) in changes {
            match value {
                Some(v) => overrides.insert(key.clone(), v.clone()),
                // Deleting a key that is not set (known or not) changes
                // nothing, as in Kafka 4.0.
                None => overrides.remove(key),
            };
        }
        let config = TopicConfig::from_overrides(&self.config.topic_defaults(), &overrides)?;
        if validate_only {
            return Ok(());
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: topic.id.to_string(),
            partitions: topic.partition_count(),
            configs: overrides.clone(),
            assignment: self.recorded_assignment(name),
        };
        self.record_topic_change(record).await?;
        Self::apply_config(&topic, config, overrides);
        Ok(())
    }

    fn apply_config(topic: &Topic, config: TopicConfig, overrides: BTreeMap<String, String>) {
        for partition in topic.partitions() {
            partition.lock_log().set_config(config.log_config());
        }
        *topic.config.write() = (Arc::new(config), overrides);
    }

    /// A cluster: brings a topic this broker holds in line with its record
    /// in etcd, as changed through another broker (CreatePartitions,
    /// AlterConfigs).
    pub async fn sync_topic(&self, record: &TopicRecord) -> Result<(), TopicError> {
        let _guard = self.topic_changes.lock().await;
        let Some(topic) = self.topic(&record.name).filter(|t| t.id.to_string() == record.id) else {
            return Ok(());
        };
        let existing = topic.partition_count();
        if record.partitions > existing {
            let opened = self.open_partitions(&topic, existing, record.partitions, true).await?;
            self.attach_partitions(&topic, opened);
            tracing::info!(topic = %record.name, partitions = record.partitions, "opened partitions added elsewhere in the cluster");
        }
        if record.configs != topic.overrides() {
            let config = TopicConfig::from_overrides(&self.config.topic_defaults(), &record.configs)?;
            Self::apply_config(&topic, config, record.configs.clone());
            tracing::info!(topic = %record.name, "applied topic configs changed elsewhere in the cluster");
        }
        Ok(())
    }
}
