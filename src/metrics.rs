//! Prometheus metrics, served as text on the HTTP port's `/metrics`.
//! Names and labels are listed in docs/operations.md.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A follower of a partition, as its leader sees it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    pub topic: String,
    pub partition: String,
    pub replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

/// A Kafka error, by the name Kafka's docs give it (`NOT_LEADER_OR_FOLLOWER`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

/// An authentication outcome on one listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub listener: String,
    pub mechanism: &'static str,
}

/// A refused operation on one listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub listener: String,
    pub resource_type: &'static str,
    pub operation: &'static str,
}

/// A consumer group's protocol: `classic` or `consumer` (KIP-848).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupProtocolLabels {
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    pub quota: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<ApiLabels, Counter>,
    /// Produce partitions answered with an error, by Kafka's error name.
    pub produce_errors: Family<ErrorLabels, Counter>,
    pub request_duration: Family<ApiLabels, Histogram, fn() -> Histogram>,
    /// Requests over `slow_request_threshold_ms`, by API.
    pub slow_requests: Family<ApiLabels, Counter>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub records_in: Family<TopicLabels, Counter>,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub fetch_wakeups: Counter,
    /// Client fetches by their session kind (KIP-227).
    pub fetch_session_requests: Family<KindLabels, Counter>,
    pub fetch_sessions: Gauge,
    pub fetch_session_partitions: Gauge,
    /// Fetch passes that found `max_response_memory_bytes` used up.
    pub fetch_memory_waits: Counter,
    /// Responses that asked their client to wait, by quota (`quota::`).
    pub quota_throttled: Family<QuotaLabels, Counter>,
    /// Seconds of throttle asked for, by quota.
    pub quota_throttle_seconds: Family<QuotaLabels, Counter<f64, AtomicU64>>,
    /// Client budgets the quota limiter holds.
    pub quota_budgets: Gauge,
    pub response_memory_bytes: Gauge,
    pub request_memory_bytes: Gauge,
    /// Request reads that waited for `max_request_memory_bytes`.
    pub request_memory_waits: Counter,
    pub producer_ids: Gauge,
    pub protocol_errors: Family<KindLabels, Counter>,
    pub fsync_duration: Histogram,
    pub recovery_truncated_bytes: Counter,
    pub log_end_offset: Family<PartitionLabels, Gauge>,
    pub log_start_offset: Family<PartitionLabels, Gauge>,
    pub high_watermark: Family<PartitionLabels, Gauge>,
    pub log_size_bytes: Family<PartitionLabels, Gauge>,
    pub log_segments: Family<PartitionLabels, Gauge>,
    pub group_lag: Family<LagLabels, Gauge>,
    pub tiering_uploads: Counter,
    /// Iceberg snapshots committed, by operation (append, delete, overwrite).
    pub iceberg_commits: Family<OperationLabels, Counter>,
    pub iceberg_commit_conflicts: Counter,
    pub iceberg_commit_errors: Counter,
    pub iceberg_metadata_repairs: Counter,
    pub iceberg_snapshots_expired: Counter,
    pub iceberg_commit_duration: Histogram,
    pub cleaner_passes: Counter,
    pub last_stable_offset: Family<PartitionLabels, Gauge>,
    pub transactions_open: Gauge,
    pub transactional_ids: Gauge,
    pub transactions_committed: Counter,
    pub transactions_aborted: Counter,
    pub transactions_timed_out: Counter,
    pub cleaner_errors: Counter,
    pub cleaner_records_removed: Counter,
    pub cleaner_bytes_read: Counter,
    pub cleaner_bytes_saved: Counter,
    /// Wall time of each cleaning pass (the rewrite on the blocking pool,
    /// its install and checkpoint).
    pub cleaner_pass_duration: Histogram,
    pub tiering_upload_errors: Counter,
    pub tiering_skipped_batches: Counter,
    pub tiering_uploaded_bytes: Counter,
    pub tiering_uploaded_records: Counter,
    pub tiering_backlog_bytes: Gauge,
    pub tiering_backlog_segments: Gauge,
    /// Unix time of the last successful archive upload; 0: none yet.
    pub tiering_last_upload_timestamp_seconds: Gauge,
    pub archive_read_bytes: Counter,
    pub archive_read_duration: Histogram,
    pub archive_cache_hits: Counter,
    pub archive_cache_misses: Counter,
    pub archive_cache_bytes: Gauge,
    pub archive_bytes: Family<PartitionLabels, Gauge>,
    pub archive_start_offset: Family<PartitionLabels, Gauge>,
    pub archive_end_offset: Family<PartitionLabels, Gauge>,
    pub local_disk_bytes: Gauge,
    pub produce_refused_disk_budget: Counter,
    /// Cluster: ISR changes this broker recorded as a partition leader.
    pub isr_expands: Counter,
    pub isr_shrinks: Counter,
    /// Cluster: partitions this broker leads, and of them those whose ISR
    /// is smaller than their replicas.
    pub leader_partitions: Gauge,
    pub under_replicated_partitions: Gauge,
    /// Cluster: 1 while the etcd session is registered and answered.
    pub etcd_session_up: Gauge,
    /// Cluster: 1 on the broker that is the controller.
    pub controller: Gauge,
    /// Cluster, on the controller: partitions with no leader.
    pub offline_partitions: Gauge,
    /// Cluster: ISR size of each partition this broker leads.
    pub isr_size: Family<PartitionLabels, Gauge>,
    /// Cluster: records each follower is behind its leader's log end.
    pub follower_lag_records: Family<ReplicaLabels, Gauge>,
    /// Durable writes of the cluster state (`coordination/`).
    pub coordination_writes: Counter,
    pub group_members: Family<GroupLabels, Gauge>,
    /// Security: SASL and TLS authentications that succeeded, and failed.
    pub authentications: Family<AuthLabels, Counter>,
    pub authentication_failures: Family<AuthLabels, Counter>,
    /// Security: operations the authorizer refused.
    pub authorization_denials: Family<DenialLabels, Counter>,
    /// Security: ACLs in force on this broker.
    pub acls: Gauge,
    /// Security: listener certificates reloaded from changed files.
    pub tls_certificate_reloads: Counter,
    /// Groups with membership state or committed offsets.
    pub consumer_groups: Gauge,
    /// Rebalances: classic generations completed, KIP-848 group epochs.
    pub group_rebalances: Family<GroupProtocolLabels, Counter>,
    /// Group series left out of the scrape by the caps in
    /// `groups::coordinator`.
    pub group_series_omitted: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sediment");
        let m = Self {
            requests: Family::default(),
            produce_errors: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            slow_requests: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            records_in: Family::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            fetch_wakeups: Counter::default(),
            fetch_session_requests: Family::default(),
            fetch_sessions: Gauge::default(),
            fetch_session_partitions: Gauge::default(),
            fetch_memory_waits: Counter::default(),
            quota_throttled: Family::default(),
            quota_throttle_seconds: Family::default(),
            quota_budgets: Gauge::default(),
            response_memory_bytes: Gauge::default(),
            request_memory_bytes: Gauge::default(),
            request_memory_waits: Counter::default(),
            producer_ids: Gauge::default(),
            protocol_errors: Family::default(),
            fsync_duration: latency_histogram(),
            recovery_truncated_bytes: Counter::default(),
            log_end_offset: Family::default(),
            log_start_offset: Family::default(),
            high_watermark: Family::default(),
            log_size_bytes: Family::default(),
            log_segments: Family::default(),
            group_lag: Family::default(),
            tiering_uploads: Counter::default(),
            iceberg_commits: Family::default(),
            iceberg_commit_conflicts: Counter::default(),
            iceberg_commit_errors: Counter::default(),
            iceberg_metadata_repairs: Counter::default(),
            iceberg_snapshots_expired: Counter::default(),
            iceberg_commit_duration: latency_histogram(),
            tiering_upload_errors: Counter::default(),
            cleaner_passes: Counter::default(),
            last_stable_offset: Family::default(),
            transactions_open: Gauge::default(),
            transactional_ids: Gauge::default(),
            transactions_committed: Counter::default(),
            transactions_aborted: Counter::default(),
            transactions_timed_out: Counter::default(),
            cleaner_errors: Counter::default(),
            cleaner_records_removed: Counter::default(),
            cleaner_bytes_read: Counter::default(),
            cleaner_bytes_saved: Counter::default(),
            cleaner_pass_duration: latency_histogram(),
            tiering_skipped_batches: Counter::default(),
            tiering_uploaded_bytes: Counter::default(),
            tiering_uploaded_records: Counter::default(),
            tiering_backlog_bytes: Gauge::default(),
            tiering_backlog_segments: Gauge::default(),
            tiering_last_upload_timestamp_seconds: Gauge::default(),
            archive_read_bytes: Counter::default(),
            archive_read_duration: latency_histogram(),
            archive_cache_hits: Counter::default(),
            archive_cache_misses: Counter::default(),
            archive_cache_bytes: Gauge::default(),
            archive_bytes: Family::default(),
            archive_start_offset: Family::default(),
            archive_end_offset: Family::default(),
            local_disk_bytes: Gauge::default(),
            produce_refused_disk_budget: Counter::default(),
            isr_expands: Counter::default(),
            isr_shrinks: Counter::default(),
            authentications: Family::default(),
            authentication_failures: Family::default(),
            authorization_denials: Family::default(),
            acls: Gauge::default(),
            tls_certificate_reloads: Counter::default(),
            leader_partitions: Gauge::default(),
            under_replicated_partitions: Gauge::default(),
            etcd_session_up: Gauge::default(),
            controller: Gauge::default(),
            offline_partitions: Gauge::default(),
            isr_size: Family::default(),
            follower_lag_records: Family::default(),
            coordination_writes: Counter::default(),
            group_members: Family::default(),
            consumer_groups: Gauge::default(),
            group_rebalances: Family::default(),
            group_series_omitted: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Kafka requests handled, by API", m.requests.clone());
        registry.register(
            "produce_errors",
            "Produce partitions answered with an error, by Kafka's error name",
            m.produce_errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response, by API",
            m.request_duration.clone(),
        );
        registry.register(
            "slow_requests",
            "Requests that took longer than slow_request_threshold_ms, not counting a Fetch's long poll or a rebalance's wait; each is logged at INFO with its timings",
            m.slow_requests.clone(),
        );
        registry.register("produce_bytes", "Record batch bytes appended, by topic", m.bytes_in.clone());
        registry.register(
            "fetch_bytes",
            "Record batch bytes served to fetchers, by topic",
            m.bytes_out.clone(),
        );
        registry.register("produce_records", "Records appended, by topic", m.records_in.clone());
        registry.register(
            "fetch_wakeups",
            "Long-polling fetches woken by new data on a partition they asked for",
            m.fetch_wakeups.clone(),
        );
        registry.register(
            "fetch_session_requests",
            "Client fetches by kind: full (no session), session_new, incremental, session_refused (cache full: served without one), session_error (unknown session or wrong epoch)",
            m.fetch_session_requests.clone(),
        );
        registry.register("fetch_sessions", "Fetch sessions held", m.fetch_sessions.clone());
        registry.register(
            "fetch_session_partitions",
            "Partitions held over all fetch sessions",
            m.fetch_session_partitions.clone(),
        );
        registry.register(
            "consumer_group_rebalances",
            "Group rebalances by protocol: each new generation of a classic group, each new group epoch of a KIP-848 group (a member came, went or changed its subscription, or the subscribed topics changed)",
            m.group_rebalances.clone(),
        );
        registry.register(
            "quota_throttled_responses",
            "Responses that told their client to wait (throttle_time_ms > 0), by the quota it exceeded: producer_byte_rate, consumer_byte_rate, request_percentage, controller_mutation_rate",
            m.quota_throttled.clone(),
        );
        registry.register(
            "quota_throttle_seconds",
            "Seconds of throttle responses asked for, by quota",
            m.quota_throttle_seconds.clone(),
        );
        registry.register(
            "quota_budgets",
            "Client quota budgets (one per user and/or client id a quota applies to) held by this broker",
            m.quota_budgets.clone(),
        );
        registry.register(
            "fetch_memory_waits",
            "Fetch passes that found the response memory budget used up and waited or answered short",
            m.fetch_memory_waits.clone(),
        );
        registry.register(
            "response_memory_bytes",
            "Bytes held by Fetch responses not yet written to their sockets",
            m.response_memory_bytes.clone(),
        );
        registry.register(
            "request_memory_bytes",
            "Bytes held by request frames being read or handled",
            m.request_memory_bytes.clone(),
        );
        registry.register(
            "request_memory_waits",
            "Request reads that waited for the request memory budget",
            m.request_memory_waits.clone(),
        );
        registry.register(
            "producer_ids",
            "Idempotent producers remembered, summed over partitions",
            m.producer_ids.clone(),
        );
        registry.register("connections", "Open Kafka connections", m.connections.clone());
        registry.register("connections_opened", "Kafka connections accepted", m.connections_total.clone());
        registry.register(
            "protocol_errors",
            "Connections closed for bad frames, by kind",
            m.protocol_errors.clone(),
        );
        registry.register(
            "fsync_duration_seconds",
            "Duration of log fsyncs (group commits)",
            m.fsync_duration.clone(),
        );
        registry.register(
            "recovery_truncated_bytes",
            "Bytes cut from torn segment tails at startup",
            m.recovery_truncated_bytes.clone(),
        );
        registry.register(
            "log_end_offset",
            "Next offset to be written, per partition",
            m.log_end_offset.clone(),
        );
        registry.register("log_start_offset", "First offset held, per partition", m.log_start_offset.clone());
        registry.register(
            "high_watermark",
            "Offset below which records are durable and readable",
            m.high_watermark.clone(),
        );
        registry.register("log_size_bytes", "Bytes of the local log, per partition", m.log_size_bytes.clone());
        registry.register("log_segments", "Segments of the local log, per partition", m.log_segments.clone());
        registry.register(
            "consumer_group_lag_records",
            "Records between a group's committed offset and the high watermark",
            m.group_lag.clone(),
        );
        registry.register("consumer_group_members", "Members of each consumer group", m.group_members.clone());
        registry.register(
            "consumer_groups",
            "Consumer groups with members or committed offsets",
            m.consumer_groups.clone(),
        );
        registry.register(
            "consumer_group_series_omitted",
            "consumer_group_lag and consumer_group_members series left out by their caps",
            m.group_series_omitted.clone(),
        );
        registry.register("tiering_uploads", "Segments archived as Parquet objects", m.tiering_uploads.clone());
        registry.register(
            "iceberg_commits",
            "Snapshots committed to topics' Iceberg tables, by operation (append, delete, overwrite)",
            m.iceberg_commits.clone(),
        );
        registry.register(
            "iceberg_commit_conflicts",
            "Iceberg commits that lost the compare-and-swap on the table's next metadata version to another writer, and were retried",
            m.iceberg_commit_conflicts.clone(),
        );
        registry.register(
            "iceberg_commit_errors",
            "Iceberg commits that failed (object store errors, lost races five times); retried next tiering round",
            m.iceberg_commit_errors.clone(),
        );
        registry.register(
            "iceberg_metadata_repairs",
            "Iceberg tables whose newest metadata, manifest list or manifest was missing or unreadable, rebuilt from the archive's manifests",
            m.iceberg_metadata_repairs.clone(),
        );
        registry.register(
            "iceberg_snapshots_expired",
            "Iceberg snapshots expired (history.expire.*), their manifest lists and unreferenced manifests deleted",
            m.iceberg_snapshots_expired.clone(),
        );
        registry.register(
            "iceberg_commit_duration_seconds",
            "Time to commit one topic's Iceberg snapshot: reading the table and the archive's manifests, writing manifests and metadata",
            m.iceberg_commit_duration.clone(),
        );
        registry.register(
            "last_stable_offset",
            "The offset read_committed consumers read up to: below the high watermark while a transaction is open",
            m.last_stable_offset.clone(),
        );
        registry.register(
            "transactions_open",
            "Transactions open now (coordinator)",
            m.transactions_open.clone(),
        );
        registry.register(
            "transactional_ids",
            "Transactional ids the coordinator keeps (bounded by transaction_max_count)",
            m.transactional_ids.clone(),
        );
        registry.register("transactions_committed", "Transactions committed", m.transactions_committed.clone());
        registry.register(
            "transactions_aborted",
            "Transactions aborted (by their producer, a fencing producer or a timeout)",
            m.transactions_aborted.clone(),
        );
        registry.register(
            "transactions_timed_out",
            "Transactions the coordinator aborted because they outlived their timeout",
            m.transactions_timed_out.clone(),
        );
        registry.register(
            "cleaner_passes",
            "Cleaning passes over compacted partitions",
            m.cleaner_passes.clone(),
        );
        registry.register(
            "cleaner_errors",
            "Cleaning passes that failed (retried next round)",
            m.cleaner_errors.clone(),
        );
        registry.register(
            "cleaner_records_removed",
            "Records compaction removed",
            m.cleaner_records_removed.clone(),
        );
        registry.register(
            "cleaner_read_bytes",
            "Log bytes the cleaner read to map keys",
            m.cleaner_bytes_read.clone(),
        );
        registry.register(
            "cleaner_pass_duration_seconds",
            "Wall time of each cleaning pass: cleaner_read_bytes over this histogram's sum is the cleaning rate",
            m.cleaner_pass_duration.clone(),
        );
        registry.register(
            "cleaner_saved_bytes",
            "Local log bytes compaction freed",
            m.cleaner_bytes_saved.clone(),
        );
        registry.register(
            "tiering_upload_errors",
            "Failed archive uploads and manifest publishes (retried)",
            m.tiering_upload_errors.clone(),
        );
        registry.register(
            "tiering_skipped_batches",
            "Batches left out of the archive because their records do not parse",
            m.tiering_skipped_batches.clone(),
        );
        registry.register(
            "tiering_uploaded_bytes",
            "Bytes of Parquet written to the archive",
            m.tiering_uploaded_bytes.clone(),
        );
        registry.register(
            "tiering_uploaded_records",
            "Records written to the archive",
            m.tiering_uploaded_records.clone(),
        );
        registry.register(
            "tiering_backlog_bytes",
            "Local log bytes not yet in the archive",
            m.tiering_backlog_bytes.clone(),
        );
        registry.register(
            "tiering_backlog_segments",
            "Local segments not yet wholly in the archive",
            m.tiering_backlog_segments.clone(),
        );
        registry.register(
            "tiering_last_upload_timestamp_seconds",
            "Unix time of the last successful archive upload (0: none since the broker started); time() minus it is the upload age",
            m.tiering_last_upload_timestamp_seconds.clone(),
        );
        registry.register(
            "archive_read_bytes",
            "Record batch bytes served from the archive",
            m.archive_read_bytes.clone(),
        );
        registry.register(
            "archive_read_duration_seconds",
            "Duration of archive reads for Fetch",
            m.archive_read_duration.clone(),
        );
        registry.register(
            "archive_cache_hits",
            "Archive reads served from the local cache",
            m.archive_cache_hits.clone(),
        );
        registry.register(
            "archive_cache_misses",
            "Archive reads that went to the object store",
            m.archive_cache_misses.clone(),
        );
        registry.register(
            "archive_cache_bytes",
            "Bytes held by the archive read cache",
            m.archive_cache_bytes.clone(),
        );
        registry.register(
            "archive_bytes",
            "Bytes of Parquet in the archive, per partition",
            m.archive_bytes.clone(),
        );
        registry.register(
            "archive_start_offset",
            "First archived offset, per partition",
            m.archive_start_offset.clone(),
        );
        registry.register(
            "archive_end_offset",
            "One past the last archived offset, per partition",
            m.archive_end_offset.clone(),
        );
        registry.register("local_disk_bytes", "Bytes of all local logs", m.local_disk_bytes.clone());
        registry.register(
            "produce_refused_disk_budget",
            "Produce partitions refused because the local disk budget is used",
            m.produce_refused_disk_budget.clone(),
        );
        registry.register(
            "coordination_writes",
            "Durable writes of the cluster state (topics, producer-id blocks, starts)",
            m.coordination_writes.clone(),
        );
        registry.register(
            "isr_expands",
            "ISR expansions this broker recorded as leader",
            m.isr_expands.clone(),
        );
        registry.register("isr_shrinks", "ISR shrinks this broker recorded as leader", m.isr_shrinks.clone());
        registry.register(
            "authentications",
            "Successful authentications, by listener and mechanism",
            m.authentications.clone(),
        );
        registry.register(
            "authentication_failures",
            "Failed authentications (SASL, TLS handshakes), by listener and mechanism",
            m.authentication_failures.clone(),
        );
        registry.register(
            "authorization_denials",
            "Operations refused by the ACLs, by listener, resource type and operation",
            m.authorization_denials.clone(),
        );
        registry.register("acls", "ACLs in force on this broker", m.acls.clone());
        registry.register(
            "tls_certificate_reloads",
            "Listener certificates reloaded after their files changed",
            m.tls_certificate_reloads.clone(),
        );
        registry.register("leader_partitions", "Partitions this broker leads", m.leader_partitions.clone());
        registry.register(
            "under_replicated_partitions",
            "Partitions this broker leads whose ISR is smaller than their replicas",
            m.under_replicated_partitions.clone(),
        );
        registry.register(
            "etcd_session_up",
            "1 while this broker's etcd session is registered and answered (cluster mode)",
            m.etcd_session_up.clone(),
        );
        registry.register("controller", "1 on the cluster's controller, 0 elsewhere", m.controller.clone());
        registry.register(
            "offline_partitions",
            "Partitions with no leader, as the controller sees them (0 on other brokers)",
            m.offline_partitions.clone(),
        );
        registry.register(
            "isr_size",
            "In-sync replicas of each partition this broker leads",
            m.isr_size.clone(),
        );
        registry.register(
            "follower_lag_records",
            "Records each follower is behind its leader's log end, on the leader",
            m.follower_lag_records.clone(),
        );
        Self { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod encode_tests {
    use super::*;

    #[test]
    fn the_whole_registry_encodes() {
        let m = Metrics::new();
        m.bytes_in.get_or_create(&TopicLabels { topic: "t".into() }).inc();
        let out = m.encode();
        assert!(
            out.ends_with("# EOF\n"),
            "encoding stopped early: ...{}",
            &out[out.len().saturating_sub(200)..]
        );
        assert!(out.contains("sediment_produce_bytes_total{topic=\"t\"} 1"));
    }
}
