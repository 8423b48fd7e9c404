//! The broker's state: topics and their partitions, producer ids, groups,
//! metrics. Protocol handlers (`protocol/`) call into it; it never sees a
//! socket or a Kafka frame.

mod admin;
mod delete_records;
pub use admin::Placement;
mod maintenance;
pub mod partition;
mod producer_ids;
pub mod replica;
mod topic;
mod txn_sink;
pub mod validator;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::archive::Archive;
use crate::config::Config;
use crate::coordination::Coordinator;
use crate::groups::coordinator::GroupCoordinator;
use crate::metrics::Metrics;
use crate::tasks::Tasks;
use tokio_util::sync::CancellationToken;

pub use partition::{Partition, Role};
pub use topic::{validate_topic_name, ConfigChange, Topic, TopicError, TopicMetrics};

pub struct Broker {
    pub config: Config,
    pub coordinator: Arc<dyn Coordinator>,
    /// The cluster this broker is part of; `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::ClusterLink>>,
    pub archive: Arc<Archive>,
    /// Archive deletions of deleted topics still under way, by topic name.
    archive_deletions: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Bytes of all local logs: refreshed by maintenance, raised by appends;
    /// checked against `local_disk_budget_bytes` on produce.
    local_bytes: AtomicU64,
    pub metrics: Arc<Metrics>,
    /// Authentication and authorization in force (ACLs, SCRAM credentials).
    pub security: Arc<crate::security::runtime::Security>,
    pub groups: GroupCoordinator,
    /// The transaction coordinator (single node).
    pub transactions: crate::txn::TxnCoordinator,
    /// Consumers' fetch sessions (KIP-227), bounded by the config's
    /// `fetch_session_cache_*`.
    pub fetch_sessions: Mutex<crate::fetch_session::SessionCache>,
    /// What clients used of their quotas (the quotas themselves are in
    /// `security`'s view).
    pub quotas: crate::quota::Quotas,
    /// Single node: bumped on every start, written into each batch header.
    pub leader_epoch: i32,
    /// Record-level checks of produced batches (bounded decompression).
    pub validator: validator::BatchValidator,
    /// Bytes Fetch responses may hold until written (`max_response_memory_bytes`).
    pub response_memory: Arc<crate::memory::MemoryBudget>,
    /// Bytes request frames may hold while read and handled (`max_request_memory_bytes`).
    pub request_memory: Arc<crate::memory::MemoryBudget>,
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
    /// (the uploader is `tiering`'s, started by the
    /// composition root). They hold the broker until `tasks` is shut down.
    #[allow(clippy::too_many_arguments)] // the composition root's one call
    pub async fn open(
        config: Config,
        coordinator: Arc<dyn Coordinator>,
        cluster: Option<Arc<crate::cluster::ClusterLink>>,
        archive: Arc<Archive>,
        metrics: Arc<Metrics>,
        security: Arc<crate::security::runtime::Security>,
        tasks: Tasks,
        stopping: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let leader_epoch = coordinator.register_start(config.broker_id).await?;
        let (version, state) = coordinator.security().await?;
        security.install(version, state);
        let mut groups = GroupCoordinator::open(&config.data_dir.join("meta"), &config)?;
        groups.report_rebalances_to(metrics.group_rebalances.clone());
        let transactions = crate::txn::TxnCoordinator::open(&config.data_dir.join("meta"), txn_config(&config))?;
        let fetch_sessions = crate::fetch_session::SessionCache::new(
            config.fetch_session_cache_slots,
            config.fetch_session_cache_max_partitions,
            security.random_seed(),
        );
        let broker = Arc::new(Self {
            coordinator,
            cluster,
            archive,
            local_bytes: AtomicU64::new(0),
            archive_deletions: Default::default(),
            metrics,
            security,
            groups,
            transactions,
            fetch_sessions: Mutex::new(fetch_sessions),
            quotas: crate::quota::Quotas::new(config.quota_burst_ms),
            leader_epoch,
            validator: validator::BatchValidator::new(
                config.max_batch_decoded_bytes,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            response_memory: crate::memory::MemoryBudget::new(config.max_response_memory_bytes),
            request_memory: crate::memory::MemoryBudget::new(config.max_request_memory_bytes),
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
        let txn_timers = broker.clone();
        broker.tasks.spawn(async move {
            let metrics = txn_timers.metrics.clone();
            txn_timers
                .transactions
                .run_timers(&*txn_timers, |n| {
                    metrics.transactions_timed_out.inc_by(n as u64);
                })
                .await
        });
        broker.ready.store(true, Ordering::Release);
        Ok(broker)
    }

    /// Records a change of ACLs or SCRAM credentials (an empty one is a
    /// no-op) and puts it in force here at once (other brokers of a cluster follow through etcd's watch).
    pub async fn change_security(
        &self,
        change: crate::security::state::SecurityChange,
    ) -> Result<(), crate::coordination::CoordinationError> {
        if change.is_empty() {
            return Ok(());
        }
        let (version, state) = self.coordinator.change_security(change).await?;
        self.security.install(version, state);
        Ok(())
    }

    /// Serving, and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.stopping.is_cancelled()
    }

    fn insert_topic(&self, topic: Arc<Topic>) {
        self.topics.write().insert(topic.name.clone(), topic);
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| &t.id == id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Opens a topic another broker created (a cluster learns of it from
    /// etcd) and makes it visible here.
    pub async fn adopt_topic(&self, record: &crate::coordination::TopicRecord) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.topic_changes.lock().await;
        if let Some(existing) = self.topic(&record.name).filter(|t| t.id.to_string() == record.id) {
            return Ok(existing);
        }
        let topic = self.open_topic(record).await?;
        self.insert_topic(topic.clone());
        tracing::info!(topic = %record.name, partitions = record.partitions, "opened a topic created elsewhere in the cluster");
        Ok(topic)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(index)
    }
}

fn txn_config(config: &Config) -> crate::txn::TxnConfig {
    crate::txn::TxnConfig {
        max_timeout_ms: config.transaction_max_timeout_ms,
        id_expiration_ms: config.transactional_id_expiration_ms,
        max_ids: config.transaction_max_count,
        check_interval_ms: config.transaction_check_interval_ms,
    }
}
