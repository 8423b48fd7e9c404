//! The broker's state: topics and their partitions, producer ids, groups,
//! metrics. Protocol handlers (`protocol/`) call into it; it never sees a
//! socket or a Kafka frame.

pub mod partition;
pub mod validator;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kafka_protocol::ResponseError;

use crate::archive::Archive;
use crate::clock::now_ms;
use crate::config::{Config, FlushPolicy};
use crate::coordination::{CoordinationError, Coordinator, TopicRecord};
use crate::groups::coordinator::GroupCoordinator;
use crate::log::PartitionLog;
use crate::metrics::{Metrics, PartitionLabels, TopicLabels};
use crate::tasks::Tasks;
use crate::topic_config::{InvalidConfig, TopicConfig};
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

pub use partition::Partition;

/// Kafka's limit on topic name length.
const TOPIC_NAME_MAX: usize = 249;
/// A sanity bound on partitions per topic.
const PARTITIONS_MAX: i32 = 10_000;
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Extension of a topic directory whose deletion is under way.
const DELETED_SUFFIX: &str = "deleted";

pub struct Topic {
    pub name: String,
    pub id: uuid::Uuid,
    config: RwLock<(TopicConfig, BTreeMap<String, String>)>,
    partitions: RwLock<Vec<Arc<Partition>>>,
    /// This topic's counters, resolved once so the data path does not look
    /// labels up per request.
    pub metrics: TopicMetrics,
}

pub struct TopicMetrics {
    pub produce_bytes: Counter,
    pub produce_records: Counter,
    pub fetch_bytes: Counter,
}

impl Topic {
    fn new(name: &str, id: uuid::Uuid, config: TopicConfig, overrides: BTreeMap<String, String>, metrics: &Metrics) -> Self {
        let labels = TopicLabels { topic: name.to_string() };
        Self {
            name: name.to_string(),
            id,
            config: RwLock::new((config, overrides)),
            partitions: RwLock::new(Vec::new()),
            metrics: TopicMetrics {
                produce_bytes: metrics.bytes_in.get_or_create_owned(&labels),
                produce_records: metrics.records_in.get_or_create_owned(&labels),
                fetch_bytes: metrics.bytes_out.get_or_create_owned(&labels),
            },
        }
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().ok()?;
        usize::try_from(index).ok().and_then(|i| partitions.get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.read().map(|p| p.len() as i32).unwrap_or(0)
    }

    pub fn config(&self) -> TopicConfig {
        self.config.read().map(|c| c.0.clone()).unwrap_or_default()
    }

    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.config.read().map(|c| c.1.clone()).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("invalid topic name {0:?}: use 1 to 249 of [a-zA-Z0-9._-], not '.' or '..'")]
    InvalidName(String),
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    #[error("unknown topic {0}")]
    Unknown(String),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("replication factor {0} is not possible on this single-node broker (use 1 or -1)")]
    InvalidReplicationFactor(i16),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config {0}")]
    InvalidConfig(#[from] InvalidConfig),
    #[error("{0}")]
    Coordination(#[from] CoordinationError),
    #[error("storage error: {0}")]
    Storage(String),
}

impl TopicError {
    pub fn code(&self) -> i16 {
        match self {
            TopicError::InvalidName(_) => ResponseError::InvalidTopicException.code(),
            TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition.code(),
            TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
            TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor.code(),
            TopicError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment.code(),
            TopicError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
            TopicError::Coordination(_) | TopicError::Storage(_) => ResponseError::KafkaStorageError.code(),
        }
    }
}

/// A topic whose partitions are open but which is not yet recorded or
/// visible (`Broker::prepare_topic`, then `commit_topics`).
struct NewTopic {
    topic: Arc<Topic>,
    partitions: Vec<Arc<Partition>>,
    record: TopicRecord,
}

/// How a config change applies to a topic's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// IncrementalAlterConfigs: set or delete the named keys, keep the rest.
    Incremental,
    /// AlterConfigs: the given keys become the whole set of overrides.
    Replace,
}

pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= TOPIC_NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TopicError::InvalidName(name.to_string()))
    }
}

pub struct Broker {
    pub config: Config,
    pub coordinator: Arc<dyn Coordinator>,
    pub archive: Arc<Archive>,
    /// Archive deletions of deleted topics still under way, by topic name.
    archive_deletions: std::sync::Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Bytes of all local logs: refreshed by maintenance, raised by appends;
    /// checked against `local_disk_budget_bytes` on produce.
    local_bytes: AtomicU64,
    pub metrics: Arc<Metrics>,
    pub groups: GroupCoordinator,
    /// Single node: bumped on every start, written into each batch header.
    pub leader_epoch: i32,
    /// Record-level checks of produced batches (bounded decompression).
    pub validator: validator::BatchValidator,
    /// Bytes Fetch responses may hold until written (`max_response_memory_bytes`).
    pub response_memory: Arc<crate::memory::MemoryBudget>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion.
    topic_changes: tokio::sync::Mutex<()>,
    /// (next id, end of the reserved block, first id issued since start).
    producer_ids: tokio::sync::Mutex<(i64, i64, i64)>,
    ready: AtomicBool,
    /// Background loops (flushers, maintenance, tiering, group timers,
    /// archive deletions), owned and stopped by the composition root.
    tasks: Tasks,
    /// Cancelled when shutdown begins: long polls answer at once.
    pub stopping: CancellationToken,
}

impl Broker {
    /// Opens every topic's log (recovering from a crash) and starts the
    /// background tasks on `tasks`: flushers, log maintenance, group timers
    /// (the uploader is `tiering`'s, started by the composition root). They hold the broker until `tasks` is shut down.
    pub async fn open(
        config: Config,
        coordinator: Arc<dyn Coordinator>,
        archive: Arc<Archive>,
        metrics: Arc<Metrics>,
        tasks: Tasks,
        stopping: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let leader_epoch = coordinator.register_start(config.broker_id).await?;
        let groups = GroupCoordinator::open(&config.data_dir.join("meta"), &config)?;
        let broker = Arc::new(Self {
            coordinator,
            archive,
            local_bytes: AtomicU64::new(0),
            archive_deletions: Default::default(),
            metrics,
            groups,
            leader_epoch,
            validator: validator::BatchValidator::new(
                config.max_batch_decoded_bytes,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            response_memory: crate::memory::MemoryBudget::new(config.max_response_memory_bytes),
            topics: RwLock::new(HashMap::new()),
            topic_changes: tokio::sync::Mutex::new(()),
            producer_ids: tokio::sync::Mutex::new((0, 0, 0)),
            ready: AtomicBool::new(false),
            tasks,
            stopping,
            config,
        });
        let records = broker.coordinator.topics().await?;
        // Settle interrupted deletions before any topic directory is opened
        // (opening creates a missing one).
        let known_dirs: Vec<PathBuf> = records
            .iter()
            .map(|r| broker.topics_root().join(format!("{}.{}", r.name, r.id)))
            .collect();
        broker.remove_stray_topic_dirs(&known_dirs);
        for record in records {
            let topic = broker.open_topic(&record).await?;
            broker.insert_topic(topic);
        }
        broker.refresh_local_bytes();
        broker.spawn_maintenance();
        let timers = broker.clone();
        broker.tasks.spawn(async move { timers.groups.run_timers().await });
        broker.ready.store(true, Ordering::Release);
        Ok(broker)
    }

    /// Serving, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.stopping.is_cancelled()
    }

    fn topics_root(&self) -> PathBuf {
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
    fn remove_stray_topic_dirs(&self, known: &[PathBuf]) {
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

    async fn open_topic(&self, record: &TopicRecord) -> Result<Arc<Topic>, TopicError> {
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
            let partition = Partition::new(topic.name.clone(), index, log, self.config.flush);
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
        if let Ok(mut partitions) = topic.partitions.write() {
            partitions.extend(opened);
        }
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
    async fn prepare_topic(&self, topic: Topic, partitions: i32) -> Result<NewTopic, TopicError> {
        match self.open_partitions(&topic, 0, partitions, false).await {
            Ok(opened) => Ok(NewTopic {
                record: TopicRecord {
                    name: topic.name.clone(),
                    id: topic.id.to_string(),
                    partitions,
                    configs: topic.overrides(),
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
        if let Err(e) = self.coordinator.put_topics(records).await {
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
        if let Ok(mut pending) = self.archive_deletions.lock() {
            pending.retain(|_, h| !h.is_finished());
            if let Some(previous) = pending.insert(name, handle) {
                previous.abort();
            }
        }
    }

    fn cancel_archive_deletion(&self, topic: &str) {
        if let Some(handle) = self.archive_deletions.lock().ok().and_then(|mut p| p.remove(topic)) {
            if !handle.is_finished() {
                tracing::warn!(
                    topic,
                    "a topic of this name was deleted and is created again before its archive was removed; old objects may remain"
                );
            }
            handle.abort();
        }
    }

    /// Recomputes the bytes of all local logs.
    pub fn refresh_local_bytes(&self) {
        let total: u64 = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .filter_map(|p| p.lock_log().ok().map(|l| l.size_bytes()))
            .sum();
        self.local_bytes.store(total, Ordering::Relaxed);
        self.metrics.local_disk_bytes.set(total as i64);
    }

    pub fn add_local_bytes(&self, bytes: u64) {
        self.local_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether the local disk budget is used up (produce is then refused).
    pub fn over_disk_budget(&self) -> bool {
        let budget = self.config.local_disk_budget_bytes;
        budget > 0 && self.local_bytes.load(Ordering::Relaxed) >= budget
    }

    fn insert_topic(&self, topic: Arc<Topic>) {
        if let Ok(mut topics) = self.topics.write() {
            topics.insert(topic.name.clone(), topic);
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().ok()?.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics.read().ok()?.values().find(|t| &t.id == id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.read().map(|t| t.values().cloned().collect()).unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(index)
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
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
        if replication_factor != -1 && replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor(replication_factor));
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
            return Ok(Arc::new(topic));
        }
        // Partitions first, then the record: a topic is recorded only once
        // its partitions exist, so a failure (out of file descriptors, a
        // full disk) leaves no topic behind that the next start would trip on.
        let new = self.prepare_topic(topic, partitions).await?;
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
                    self.prepare_topic(topic, partitions).await
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
        if let Err(e) = self.coordinator.delete_topic(name.to_string()).await {
            // Not deleted after all: put the directory back.
            let _ = std::fs::rename(&doomed, &dir);
            return Err(e.into());
        }
        let _ = crate::log::sync_dir(&self.topics_root());
        for partition in topic.partitions() {
            partition.close();
        }
        if let Ok(mut topics) = self.topics.write() {
            topics.remove(name);
        }
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(doomed))
            .await
            .map_err(|e| TopicError::Storage(e.to_string()))?
            .map_err(|e| TopicError::Storage(e.to_string()))?;
        self.spawn_archive_deletion(name.to_string());
        tracing::info!(topic = name, "deleted topic");
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
        let record = TopicRecord {
            name: name.to_string(),
            id: topic.id.to_string(),
            partitions: total,
            configs: topic.overrides(),
        };
        if let Err(e) = self.coordinator.put_topic(record).await {
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
                None => {
                    // Deleting an unknown key is still an error, as in Kafka.
                    TopicConfig::default().get(key).ok_or_else(|| InvalidConfig {
                        key: key.clone(),
                        message: "unknown topic config".into(),
                    })?;
                    overrides.remove(key)
                }
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
        };
        self.coordinator.put_topic(record).await?;
        for partition in topic.partitions() {
            if let Ok(mut log) = partition.lock_log() {
                log.set_config(config.log_config());
            }
        }
        if let Ok(mut c) = topic.config.write() {
            *c = (config, overrides);
        }
        Ok(())
    }

    /// Whether this broker handed out `id` since it started (an epoch bump
    /// is honoured only for those; others get a fresh id).
    pub async fn issued_producer_id(&self, id: i64) -> bool {
        let ids = self.producer_ids.lock().await;
        id >= ids.2 && id < ids.0
    }

    pub async fn next_producer_id(&self) -> Result<i64, CoordinationError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let first = self.coordinator.allocate_producer_ids(PRODUCER_ID_BLOCK).await?;
            let issued_since = if ids.1 == 0 { first } else { ids.2 };
            *ids = (first, first + PRODUCER_ID_BLOCK, issued_since);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    fn spawn_maintenance(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let interval_ms = self.config.log_maintenance_interval_ms;
        let flush_interval_ms = self.config.flush_interval_ms;
        let flush = self.config.flush;
        self.tasks.spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(broker) = weak.upgrade() else { return };
                broker.run_log_maintenance();
            }
        });
        if flush == FlushPolicy::Interval {
            let weak = Arc::downgrade(self);
            self.tasks.spawn(async move {
                let mut ticker = tokio::time::interval(std::time::Duration::from_millis(flush_interval_ms));
                loop {
                    ticker.tick().await;
                    let Some(broker) = weak.upgrade() else { return };
                    for topic in broker.topics() {
                        for partition in topic.partitions() {
                            partition.flush(&broker.metrics).await;
                        }
                    }
                }
            });
        }
    }

    /// Rolls expired active segments and applies retention on every partition.
    pub fn run_log_maintenance(&self) {
        let now = now_ms();
        for topic in self.topics() {
            for partition in topic.partitions() {
                let Ok(mut log) = partition.lock_log() else { continue };
                if let Err(e) = log.roll_if_expired(now) {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "segment roll failed");
                }
                let expired = log.expire_producers(now);
                if expired > 0 {
                    tracing::debug!(topic = %topic.name, partition = partition.index, expired, "forgot idle idempotent producers");
                }
                let archived_end = partition.manifest().end_offset().unwrap_or(i64::MIN);
                if let Err(e) = log.apply_retention(now, archived_end) {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "retention failed");
                }
            }
        }
    }

    /// Refreshes the per-partition and per-group gauges before a scrape.
    pub fn update_gauges(&self) {
        let m = &self.metrics;
        for family in [
            &m.log_end_offset,
            &m.log_start_offset,
            &m.high_watermark,
            &m.log_size_bytes,
            &m.log_segments,
        ] {
            family.clear();
        }
        let mut high_watermarks = HashMap::new();
        let mut producer_ids = 0;
        for topic in self.topics() {
            for partition in topic.partitions() {
                let labels = PartitionLabels {
                    topic: topic.name.clone(),
                    partition: partition.index.to_string(),
                };
                let hw = partition.high_watermark();
                high_watermarks.insert((topic.name.clone(), partition.index), hw);
                m.high_watermark.get_or_create(&labels).set(hw);
                if let Ok(log) = partition.lock_log() {
                    m.log_end_offset.get_or_create(&labels).set(log.next_offset());
                    m.log_start_offset.get_or_create(&labels).set(log.log_start_offset());
                    m.log_size_bytes.get_or_create(&labels).set(log.size_bytes() as i64);
                    m.log_segments.get_or_create(&labels).set(log.segment_count() as i64);
                    producer_ids += log.producer_count();
                }
            }
        }
        self.groups.update_gauges(m, &high_watermarks);
        m.response_memory_bytes.set(self.response_memory.used() as i64);
        m.producer_ids.set(producer_ids as i64);
    }
}
