//! Broker configuration: defaults, then a TOML file, then `SEDIMENT_*`
//! environment variables, then flags (the later wins). Every key is
//! documented in docs/configuration.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::security::listener::{self, ListenerConfig, SaslMechanism, SecurityProtocol};
use crate::topic_config::TopicConfig;

/// The encoding of exported spans: OTLP/HTTP's two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// How an acknowledgement relates to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlushPolicy {
    /// Acknowledge only once the batch is fsynced (group commit: one fsync
    /// covers every batch appended while the previous one ran).
    Always,
    /// Acknowledge once written to the page cache; fsync every
    /// `flush_interval_ms`. A machine crash may lose the last interval.
    Interval,
}

/// The whole broker configuration, as read from the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Local log, group offsets and topic metadata live here.
    pub data_dir: PathBuf,
    /// Kafka protocol listener.
    pub listen: SocketAddr,
    /// host:port given to clients in Metadata; the listen address when unset.
    pub advertise: Option<String>,
    /// Admin HTTP: /healthz, /readyz, /metrics.
    pub http_listen: SocketAddr,
    /// Object store URL for the archive; `file://<data_dir>/archive` when unset.
    pub archive: Option<String>,
    /// etcd endpoints, comma-separated; embedded coordination when unset.
    pub etcd: Option<String>,
    pub broker_id: i32,
    /// etcd key prefix; also the Kafka cluster id.
    pub cluster: String,
    /// Create a topic when a Metadata request names it (Kafka's auto.create.topics.enable).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic or a CreateTopics with -1.
    pub default_partitions: i32,
    pub flush: FlushPolicy,
    /// fsync period under `flush = "interval"`.
    pub flush_interval_ms: u64,
    /// Largest request frame accepted; a larger one closes the connection.
    pub max_request_bytes: usize,
    pub max_connections: usize,
    /// A connection with no request for this long is closed (Kafka's
    /// connections.max.idle.ms).
    pub connections_max_idle_ms: u64,
    /// At shutdown, how long connections get to finish the requests they
    /// have started (produce waiting for fsync, long polls answered at once)
    /// before they are cut; then background work stops and logs are flushed.
    pub shutdown_timeout_ms: u64,
    /// Requests read ahead of their responses on one connection.
    pub max_inflight_requests_per_connection: usize,
    /// A request that takes longer (less a Fetch's long poll and a
    /// rebalance's wait) is logged at INFO with its timings; 0 logs every
    /// request.
    pub slow_request_threshold_ms: u64,
    /// OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`) that
    /// request spans are exported to; none: no export.
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// The share of requests whose spans are exported, 0.0 to 1.0.
    pub otlp_sample_ratio: f64,
    /// Kafka's group.initial.rebalance.delay.ms.
    pub group_initial_rebalance_delay_ms: i64,
    pub group_min_session_timeout_ms: i64,
    pub group_max_session_timeout_ms: i64,
    pub group_max_size: usize,
    /// Kafka's group.consumer.session.timeout.ms: a KIP-848 member that has
    /// not heartbeated for this long is removed and its partitions
    /// reassigned.
    pub group_consumer_session_timeout_ms: i64,
    /// Kafka's group.consumer.heartbeat.interval.ms: how often KIP-848
    /// members are told to heartbeat (a rebalance reaches them this fast).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Groups the coordinator keeps membership state for; a JoinGroup that
    /// would create one more gets the retriable COORDINATOR_NOT_AVAILABLE.
    /// Also bounds the groups with committed offsets (a standalone commit
    /// that would add one more gets the same error).
    pub group_max_count: usize,
    /// Kafka's offsets.retention.minutes: the committed offsets of a group
    /// with no members are deleted once this long has passed since they
    /// were committed and since the group became empty.
    pub offsets_retention_minutes: u64,
    /// Kafka's offsets.retention.check.interval.ms: how often expired
    /// offsets are looked for.
    pub offsets_retention_check_interval_ms: u64,
    /// Kafka's offset.metadata.max.bytes: longer commit metadata gets
    /// OFFSET_METADATA_TOO_LARGE for its partition.
    pub offset_metadata_max_bytes: usize,
    /// How often retention and time-based segment rolling run.
    pub log_maintenance_interval_ms: u64,
    /// How often the uploader looks for sealed segments to archive.
    pub tiering_interval_ms: u64,
    /// The Iceberg REST catalog's one namespace; the cluster's name when unset.
    pub iceberg_namespace: Option<String>,
    /// Hand the broker's own S3 credentials (`AWS_ACCESS_KEY_ID`, ...) to
    /// engines that load a table from the catalog.
    pub iceberg_vend_credentials: bool,
    /// Iceberg's history.expire.max-snapshot-age-ms for every topic's table.
    pub iceberg_snapshot_max_age_ms: i64,
    /// Iceberg's history.expire.min-snapshots-to-keep.
    pub iceberg_min_snapshots_to_keep: usize,
    /// Snapshots a table keeps at most, whatever their age.
    pub iceberg_max_snapshots: usize,
    /// Iceberg's write.metadata.previous-versions-max.
    pub iceberg_metadata_previous_versions_max: usize,
    /// Iceberg's commit.manifest.min-count-to-merge.
    pub iceberg_min_manifests_to_merge: usize,
    /// How often the log cleaner looks for compacted partitions to clean.
    pub cleaner_interval_ms: u64,
    /// Memory for one cleaning pass's key map (Kafka's
    /// log.cleaner.dedupe.buffer.size): 32 bytes per distinct key.
    pub cleaner_dedupe_buffer_bytes: u64,
    /// Kafka's transaction.max.timeout.ms: the longest timeout a
    /// transactional producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// Kafka's transactional.id.expiration.ms: an idle transactional id is
    /// forgotten after this long.
    pub transactional_id_expiration_ms: i64,
    /// Transactional ids the coordinator keeps at once.
    pub transaction_max_count: usize,
    /// How often timed-out transactions are aborted and idle ids expired
    /// (Kafka's transaction.abort.timed.out.transaction.cleanup.interval.ms).
    pub transaction_check_interval_ms: u64,
    /// Bound of the on-disk cache of archive reads (under data_dir/cache).
    pub cache_bytes: u64,
    /// Local log bytes beyond which archived segments are evicted early and,
    /// if that is not enough (the archive is unreachable), produce is refused
    /// with a retriable KAFKA_STORAGE_ERROR. 0: no budget.
    pub local_disk_budget_bytes: u64,
    /// Longest Fetch long poll honoured, whatever the client asks.
    pub fetch_max_wait_ms: u64,
    /// Largest Fetch response, whatever the client asks (Kafka's broker
    /// fetch.max.bytes).
    pub fetch_max_bytes: usize,
    /// Fetch sessions (KIP-227) kept at once (Kafka's
    /// max.incremental.fetch.session.cache.slots). 0 turns sessions off:
    /// every fetch is then a full one.
    pub fetch_session_cache_slots: usize,
    /// Partitions all fetch sessions together may hold (no Kafka
    /// equivalent): bounds the cache's memory.
    pub fetch_session_cache_max_partitions: usize,
    /// How much unused client quota a budget may save up, in milliseconds
    /// of its rate (Kafka averages over `quota.window.num` ×
    /// `quota.window.size.seconds`). Also the largest fetch response a
    /// consumer quota allows.
    pub quota_burst_ms: u64,
    /// Most bytes all Fetch responses together may hold between being read
    /// and being handed to their sockets: a slow reader keeps its share until
    /// written. A fetch that finds the budget used up waits (within its
    /// max.wait.ms) for a share or answers with what it has.
    pub max_response_memory_bytes: usize,
    /// Most bytes all request frames together may hold while they are read
    /// and handled (Kafka's queued.max.request.bytes). A connection waits for
    /// a share before reading more of a request.
    pub max_request_memory_bytes: usize,
    /// Most bytes one record batch may decompress to. Every produced batch
    /// is decoded record by record to validate it; one that decodes to more
    /// than this (or than its topic's max.message.bytes, whichever is
    /// larger) is refused with MESSAGE_TOO_LARGE.
    pub max_batch_decoded_bytes: u64,
    /// Kafka's producer.id.expiration.ms: an idempotent producer that has not
    /// appended to a partition for this long is forgotten there.
    pub producer_id_expiration_ms: u64,
    /// Idempotent producers remembered per partition; past it the least
    /// recently seen tenth is forgotten.
    pub max_producer_ids_per_partition: usize,
    /// Broker-wide defaults for topic configs, with Kafka's keys
    /// (`"retention.ms" = "604800000"`).
    pub topic_defaults: BTreeMap<String, String>,
    /// Cluster: the TTL of this broker's etcd lease. A broker that stops
    /// keeping it alive loses its leaderships this long after.
    pub etcd_lease_ttl_ms: u64,
    /// Cluster: a follower that has not caught up with the leader's log
    /// end for this long leaves the ISR (Kafka's replica.lag.time.max.ms).
    pub replica_lag_time_max_ms: u64,
    /// Cluster: replicas of a topic created without a replication factor
    /// (auto-created, or -1), capped at the live brokers.
    pub default_replication_factor: i16,
    /// Cluster: partitions of `__consumer_offsets` (Kafka's
    /// offsets.topic.num.partitions); fixed once the topic exists.
    pub offsets_topic_partitions: i32,
    /// Cluster: replicas of `__consumer_offsets`, capped at the live brokers
    /// when it is created (Kafka's offsets.topic.replication.factor).
    pub offsets_topic_replication_factor: i16,
    /// Cluster: partitions of `__transaction_state` (Kafka's
    /// transaction.state.log.num.partitions); fixed once the topic exists.
    pub transaction_state_partitions: i32,
    /// Cluster: replicas of `__transaction_state`, capped at the live
    /// brokers when it is created (transaction.state.log.replication.factor).
    pub transaction_state_replication_factor: i16,
    /// `[[listener]]` entries; when there are none, one PLAINTEXT listener
    /// at `listen`, advertised as `advertise`.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Authentication and authorization (`[auth]`).
    pub auth: AuthConfig,
    /// PEM certificate and key: the admin HTTP port serves HTTPS.
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    /// Cluster: the listener brokers replicate through (Kafka's
    /// inter.broker.listener.name); the first listener when unset.
    pub inter_broker_listener: Option<String>,
    /// A file holding a bearer token that `/metrics` and `/v1` require
    /// (`Authorization: Bearer <token>`); `/healthz` and `/readyz` stay open.
    pub http_token_file: Option<PathBuf>,
}

/// `[auth]`: who may connect and what they may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Enforce ACLs on every request (Kafka's authorizer.class.name).
    pub authorizer: bool,
    /// Principals allowed everything (`User:admin`).
    pub super_users: Vec<String>,
    /// A resource no ACL matches is open to all (Kafka's
    /// allow.everyone.if.no.acl.found); closed by default.
    pub allow_everyone_if_no_acl_found: bool,
    /// TOML file with a `[users]` table of `name = "password"`: the PLAIN users.
    pub plain_users_file: Option<PathBuf>,
    /// Kafka's connections.max.reauth.ms: a SASL session lasts this long
    /// unless the client re-authenticates (KIP-368); 0: forever.
    pub connections_max_reauth_ms: u64,
    /// Largest request a connection may send before it has authenticated
    /// (Kafka's sasl.server.max.receive.size).
    pub sasl_max_receive_bytes: usize,
    /// A failed authentication is answered after this delay, doubled for
    /// each failure in a row from the same address, up to the max (Kafka's
    /// connection.failed.authentication.delay.ms).
    pub failed_authentication_delay_ms: u64,
    pub failed_authentication_max_delay_ms: u64,
    /// How long a client has to finish its TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Cluster, an inter-broker listener with TLS: the CA (PEM) that signed
    /// the brokers' certificates, and optionally this broker's own
    /// certificate and key for a listener that asks for one (mTLS).
    pub inter_broker_tls_ca: Option<PathBuf>,
    pub inter_broker_tls_cert: Option<PathBuf>,
    pub inter_broker_tls_key: Option<PathBuf>,
    /// Cluster, an inter-broker listener with SASL: the mechanism, user and
    /// a file holding the password this broker authenticates with.
    pub inter_broker_sasl_mechanism: Option<SaslMechanism>,
    pub inter_broker_user: Option<String>,
    pub inter_broker_password_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            authorizer: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            plain_users_file: None,
            connections_max_reauth_ms: 0,
            sasl_max_receive_bytes: 524_288,
            failed_authentication_delay_ms: 100,
            failed_authentication_max_delay_ms: 5_000,
            tls_handshake_timeout_ms: 10_000,
            inter_broker_tls_ca: None,
            inter_broker_tls_cert: None,
            inter_broker_tls_key: None,
            inter_broker_sasl_mechanism: None,
            inter_broker_user: None,
            inter_broker_password_file: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertise: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9644)),
            archive: None,
            etcd: None,
            broker_id: 0,
            cluster: "sediment".to_string(),
            auto_create_topics: true,
            default_partitions: 1,
            flush: FlushPolicy::Always,
            flush_interval_ms: 1000,
            max_request_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            connections_max_idle_ms: 600_000,
            shutdown_timeout_ms: 15_000,
            max_inflight_requests_per_connection: 64,
            slow_request_threshold_ms: 1000,
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            otlp_sample_ratio: 1.0,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 1000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_max_count: 100_000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            log_maintenance_interval_ms: 5_000,
            tiering_interval_ms: 2_000,
            cleaner_interval_ms: 15_000,
            iceberg_namespace: None,
            iceberg_vend_credentials: false,
            iceberg_snapshot_max_age_ms: 5 * 24 * 3600 * 1000,
            iceberg_min_snapshots_to_keep: 1,
            iceberg_max_snapshots: 100,
            iceberg_metadata_previous_versions_max: 20,
            iceberg_min_manifests_to_merge: 16,
            cleaner_dedupe_buffer_bytes: 128 << 20,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            transaction_max_count: 100_000,
            transaction_check_interval_ms: 10_000,
            cache_bytes: 1 << 30,
            local_disk_budget_bytes: 0,
            fetch_max_wait_ms: 30_000,
            fetch_max_bytes: 55 * 1024 * 1024,
            fetch_session_cache_slots: 1000,
            fetch_session_cache_max_partitions: 200_000,
            quota_burst_ms: 1000,
            max_response_memory_bytes: 512 * 1024 * 1024,
            max_request_memory_bytes: 512 * 1024 * 1024,
            max_batch_decoded_bytes: 256 * 1024 * 1024,
            producer_id_expiration_ms: 86_400_000,
            max_producer_ids_per_partition: 10_000,
            topic_defaults: BTreeMap::new(),
            etcd_lease_ttl_ms: 10_000,
            replica_lag_time_max_ms: 30_000,
            default_replication_factor: 3,
            offsets_topic_partitions: 16,
            offsets_topic_replication_factor: 3,
            transaction_state_partitions: 16,
            transaction_state_replication_factor: 3,
            listeners: Vec::new(),
            auth: AuthConfig::default(),
            http_tls_cert: None,
            http_tls_key: None,
            http_token_file: None,
            inter_broker_listener: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Values given as flags or `SEDIMENT_*` variables; `None` where absent.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML file with the same keys as the flags (data_dir, listen, ...).
    #[arg(long, env = "SEDIMENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Local log and cache directory [default: ./data].
    #[arg(long, env = "SEDIMENT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka protocol listener [default: 127.0.0.1:9092].
    #[arg(long, env = "SEDIMENT_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address given to clients in Metadata [default: the listen address].
    #[arg(long, env = "SEDIMENT_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Admin HTTP listener for /healthz, /readyz, /metrics [default: 127.0.0.1:9644].
    #[arg(long, env = "SEDIMENT_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Object store URL for the archive [default: file://<data-dir>/archive].
    #[arg(long, env = "SEDIMENT_ARCHIVE", value_name = "URL")]
    pub archive: Option<String>,
    /// Comma-separated etcd endpoints [default: embedded single-node coordination].
    #[arg(long, env = "SEDIMENT_ETCD", value_name = "URLS")]
    pub etcd: Option<String>,
    /// Broker id, unique per cluster [default: 0].
    #[arg(long, env = "SEDIMENT_BROKER_ID", value_name = "N")]
    pub broker_id: Option<i32>,
    /// Cluster name: etcd key prefix and Kafka cluster id [default: sediment].
    #[arg(long, env = "SEDIMENT_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
    /// Bound of the on-disk cache of archive reads, in bytes [default: 1 GiB].
    #[arg(long, env = "SEDIMENT_CACHE_BYTES", value_name = "BYTES")]
    pub cache_bytes: Option<u64>,
    /// Security protocol of the (first) listener [default: PLAINTEXT].
    #[arg(long, env = "SEDIMENT_SECURITY_PROTOCOL", value_name = "PROTOCOL")]
    pub security_protocol: Option<SecurityProtocol>,
    /// PEM certificate chain of the (first) listener, for SSL and SASL_SSL.
    #[arg(long, env = "SEDIMENT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the (first) listener.
    #[arg(long, env = "SEDIMENT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: clients of the (first) listener need a certificate they signed.
    #[arg(long, env = "SEDIMENT_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Comma-separated SASL mechanisms of the (first) listener [default: SCRAM-SHA-256,SCRAM-SHA-512].
    #[arg(long, env = "SEDIMENT_SASL_MECHANISMS", value_name = "LIST")]
    pub sasl_mechanisms: Option<String>,
    /// Enforce ACLs [default: off].
    #[arg(long, env = "SEDIMENT_AUTHORIZER", value_name = "BOOL")]
    pub authorizer: Option<bool>,
    /// Comma-separated principals allowed everything (User:admin).
    #[arg(long, env = "SEDIMENT_SUPER_USERS", value_name = "LIST")]
    pub super_users: Option<String>,
    /// TOML file of PLAIN users and passwords.
    #[arg(long, env = "SEDIMENT_PLAIN_USERS_FILE", value_name = "FILE")]
    pub plain_users_file: Option<PathBuf>,
}

impl Config {
    /// Builds the configuration: defaults, the file, then env and flags.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match &overrides.config {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = &overrides.data_dir {
            config.data_dir = v.clone();
        }
        config.apply_listener_overrides(overrides)?;
        if let Some(v) = overrides.http_listen {
            config.http_listen = v;
        }
        if let Some(v) = &overrides.archive {
            config.archive = Some(v.clone());
        }
        if let Some(v) = &overrides.etcd {
            config.etcd = Some(v.clone());
        }
        if let Some(v) = overrides.broker_id {
            config.broker_id = v;
        }
        if let Some(v) = &overrides.cluster {
            config.cluster = v.clone();
        }
        if let Some(v) = overrides.cache_bytes {
            config.cache_bytes = v;
        }
        if let Some(v) = overrides.authorizer {
            config.auth.authorizer = v;
        }
        if let Some(v) = &overrides.super_users {
            config.auth.super_users = split_list(v);
        }
        if let Some(v) = &overrides.plain_users_file {
            config.auth.plain_users_file = Some(v.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// `--listen`, `--advertise` and the security flags set the first
    /// listener; with none configured, they make it.
    fn apply_listener_overrides(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            if let Some(v) = o.listen {
                self.listen = v;
            }
            if let Some(v) = &o.advertise {
                self.advertise = Some(v.clone());
            }
            let secured = o.security_protocol.is_some()
                || o.tls_cert.is_some()
                || o.tls_key.is_some()
                || o.tls_client_ca.is_some()
                || o.sasl_mechanisms.is_some();
            if !secured {
                return Ok(());
            }
            self.listeners.push(ListenerConfig::plaintext(self.listen, self.advertise.clone()));
        }
        let first = &mut self.listeners[0];
        if let Some(v) = o.listen {
            first.listen = v;
        }
        if let Some(v) = &o.advertise {
            first.advertise = Some(v.clone());
        }
        if let Some(protocol) = o.security_protocol {
            first.protocol = protocol;
            if first.name == "PLAINTEXT" {
                first.name = protocol.name().to_string();
            }
        }
        if let Some(v) = &o.tls_cert {
            first.tls_cert = Some(v.clone());
        }
        if let Some(v) = &o.tls_key {
            first.tls_key = Some(v.clone());
        }
        if let Some(v) = &o.tls_client_ca {
            first.tls_client_ca = Some(v.clone());
        }
        if let Some(list) = &o.sasl_mechanisms {
            first.sasl_mechanisms = split_list(list)
                .iter()
                .map(|m| {
                    SaslMechanism::parse(m).ok_or_else(|| {
                        ConfigError::Invalid(format!("SASL mechanism {m:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }

    /// The listeners served: the `[[listener]]` entries, or one PLAINTEXT
    /// listener at `listen`.
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if self.listeners.is_empty() {
            vec![ListenerConfig::plaintext(self.listen, self.advertise.clone())]
        } else {
            self.listeners.clone()
        }
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.broker_id < 0 {
            return invalid(format!("broker_id must be >= 0, got {}", self.broker_id));
        }
        if self.cluster.is_empty() || !self.cluster.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return invalid(format!("cluster name {:?} must be non-empty [A-Za-z0-9._-]", self.cluster));
        }
        if let Some(ns) = &self.iceberg_namespace {
            if ns.is_empty() || ns.len() > 255 || !ns.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
                return invalid(format!("iceberg_namespace {ns:?} must be 1 to 255 of [A-Za-z0-9_-]"));
            }
        }
        if self.iceberg_snapshot_max_age_ms < 0
            || self.iceberg_min_snapshots_to_keep < 1
            || self.iceberg_max_snapshots < 1
            || self.iceberg_metadata_previous_versions_max < 1
            || self.iceberg_min_manifests_to_merge < 1
        {
            return invalid(
                "iceberg_snapshot_max_age_ms must be >= 0, and iceberg_min_snapshots_to_keep, iceberg_max_snapshots, \
                 iceberg_metadata_previous_versions_max and iceberg_min_manifests_to_merge >= 1"
                    .into(),
            );
        }
        if !(1..=10_000).contains(&self.default_partitions) {
            return invalid(format!("default_partitions must be 1..=10000, got {}", self.default_partitions));
        }
        if self.group_min_session_timeout_ms < 1 || self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return invalid("group_min_session_timeout_ms must be >= 1 and <= group_max_session_timeout_ms".into());
        }
        if !(1..=3_600_000).contains(&self.quota_burst_ms) {
            return invalid(format!("quota_burst_ms must be 1..=3600000, got {}", self.quota_burst_ms));
        }
        if !(1..=3_600_000).contains(&self.group_consumer_session_timeout_ms) {
            return invalid(format!(
                "group_consumer_session_timeout_ms must be 1..=3600000, got {}",
                self.group_consumer_session_timeout_ms
            ));
        }
        if self.group_consumer_heartbeat_interval_ms < 1
            || self.group_consumer_heartbeat_interval_ms as i64 >= self.group_consumer_session_timeout_ms
        {
            return invalid(format!(
                "group_consumer_heartbeat_interval_ms must be >= 1 and below group_consumer_session_timeout_ms, got {}",
                self.group_consumer_heartbeat_interval_ms
            ));
        }
        if self.group_max_size == 0 {
            return invalid("group_max_size must be >= 1".into());
        }
        if self.group_max_count == 0 {
            return invalid("group_max_count must be >= 1".into());
        }
        // An i64 of milliseconds must hold the retention.
        if !(1..=(i64::MAX as u64 / 60_000)).contains(&self.offsets_retention_minutes) {
            return invalid("offsets_retention_minutes must be >= 1".into());
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return invalid("offsets_retention_check_interval_ms must be >= 1".into());
        }
        if self.group_initial_rebalance_delay_ms < 0 {
            return invalid("group_initial_rebalance_delay_ms must be >= 0".into());
        }
        if self.fetch_max_bytes < 1024 {
            return invalid("fetch_max_bytes must be >= 1024".into());
        }
        if self.max_producer_ids_per_partition == 0 {
            return invalid("max_producer_ids_per_partition must be >= 1".into());
        }
        if !(1..=i64::MAX as u64).contains(&self.producer_id_expiration_ms) {
            return invalid("producer_id_expiration_ms must be >= 1".into());
        }
        if self.max_request_memory_bytes < self.max_request_bytes {
            return invalid("max_request_memory_bytes must be >= max_request_bytes".into());
        }
        if self.max_response_memory_bytes < 1024 * 1024 {
            return invalid("max_response_memory_bytes must be >= 1048576".into());
        }
        if self.max_batch_decoded_bytes < 1024 * 1024 {
            return invalid("max_batch_decoded_bytes must be >= 1048576".into());
        }
        if self.connections_max_idle_ms == 0 {
            return invalid("connections_max_idle_ms must be >= 1".into());
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            if !matches!(
                url::Url::parse(endpoint).map(|u| u.scheme().to_string()).as_deref(),
                Ok("http" | "https")
            ) {
                return invalid(format!("otlp_endpoint must be an http:// or https:// URL, not {endpoint:?}"));
            }
        }
        if !(0.0..=1.0).contains(&self.otlp_sample_ratio) {
            return invalid(format!("otlp_sample_ratio must be 0.0 to 1.0, not {}", self.otlp_sample_ratio));
        }
        if self.max_request_bytes < 1024 {
            return invalid("max_request_bytes must be >= 1024".into());
        }
        if self.max_connections == 0 || self.max_inflight_requests_per_connection == 0 {
            return invalid("max_connections and max_inflight_requests_per_connection must be >= 1".into());
        }
        if self.flush_interval_ms == 0
            || self.log_maintenance_interval_ms == 0
            || self.tiering_interval_ms == 0
            || self.cleaner_interval_ms == 0
        {
            return invalid(
                "flush_interval_ms, log_maintenance_interval_ms, tiering_interval_ms and cleaner_interval_ms must be >= 1".into(),
            );
        }
        if self.transaction_max_timeout_ms < 1 || self.transactional_id_expiration_ms < 1 {
            return invalid("transaction_max_timeout_ms and transactional_id_expiration_ms must be >= 1".into());
        }
        if self.transaction_max_count == 0 || self.transaction_check_interval_ms == 0 {
            return invalid("transaction_max_count and transaction_check_interval_ms must be >= 1".into());
        }
        if self.cleaner_dedupe_buffer_bytes < 1 << 20 {
            return invalid("cleaner_dedupe_buffer_bytes must be at least 1048576 (1 MiB)".into());
        }
        if let Some(etcd) = &self.etcd {
            let endpoints = self.etcd_endpoints();
            let bad = endpoints.iter().find(|e| {
                let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://"));
                rest.and_then(parse_host_port).is_none()
            });
            if endpoints.is_empty() || bad.is_some() {
                return invalid(format!(
                    "etcd {etcd:?} must be comma-separated endpoints such as http://etcd-0:2379,http://etcd-1:2379"
                ));
            }
        }
        if self.etcd_lease_ttl_ms < 1000 {
            return invalid("etcd_lease_ttl_ms must be >= 1000 (etcd leases count whole seconds)".into());
        }
        if self.replica_lag_time_max_ms == 0 || self.replica_lag_time_max_ms > i64::MAX as u64 {
            return invalid("replica_lag_time_max_ms must be >= 1".into());
        }
        if self.default_replication_factor < 1 || self.offsets_topic_replication_factor < 1 || self.transaction_state_replication_factor < 1
        {
            return invalid(
                "default_replication_factor, offsets_topic_replication_factor and transaction_state_replication_factor must be >= 1".into(),
            );
        }
        if !(1..=1000).contains(&self.transaction_state_partitions) {
            return invalid("transaction_state_partitions must be between 1 and 1000".into());
        }
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            return invalid("offsets_topic_partitions must be between 1 and 1000".into());
        }
        listener::validate(&self.effective_listeners()).map_err(ConfigError::Invalid)?;
        self.validate_auth()?;
        if let Some(name) = &self.inter_broker_listener {
            if !self.effective_listeners().iter().any(|l| &l.name == name) {
                return invalid(format!("inter_broker_listener {name:?} names no listener"));
            }
        }
        self.validate_inter_broker()?;
        if self.http_tls_cert.is_some() != self.http_tls_key.is_some() {
            return invalid("http_tls_cert and http_tls_key go together".into());
        }
        if let Some(advertise) = &self.advertise {
            if parse_host_port(advertise).is_none() {
                return invalid(format!("advertise {advertise:?} must be HOST:PORT"));
            }
        }
        if let Some(archive) = &self.archive {
            if !archive.contains("://") {
                return invalid(format!(
                    "archive {archive:?} must be a URL such as file:///path or s3://bucket/prefix"
                ));
            }
        }
        TopicConfig::from_overrides(&TopicConfig::default(), &self.topic_defaults)
            .map_err(|e| ConfigError::Invalid(format!("topic_defaults: {e}")))?;
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        if let Some(bad) = auth.super_users.iter().find(|p| crate::security::Principal::parse(p).is_none()) {
            return Err(ConfigError::Invalid(format!(
                "super_users: {bad:?} must be a principal such as User:admin"
            )));
        }
        if auth.sasl_max_receive_bytes < 1024 {
            return Err(ConfigError::Invalid("sasl_max_receive_bytes must be >= 1024".into()));
        }
        if auth.tls_handshake_timeout_ms == 0 {
            return Err(ConfigError::Invalid("tls_handshake_timeout_ms must be >= 1".into()));
        }
        if auth.connections_max_reauth_ms > i64::MAX as u64 / 2 {
            return Err(ConfigError::Invalid("connections_max_reauth_ms is too large".into()));
        }
        let plain_wanted = self
            .effective_listeners()
            .iter()
            .any(|l| l.mechanisms().contains(&SaslMechanism::Plain));
        if plain_wanted && auth.plain_users_file.is_none() {
            return Err(ConfigError::Invalid(
                "a listener offers SASL PLAIN, whose users come from [auth] plain_users_file; set it".into(),
            ));
        }
        Ok(())
    }

    /// A cluster's followers must be able to speak the inter-broker listener's protocol.
    fn validate_inter_broker(&self) -> Result<(), ConfigError> {
        if self.etcd.is_none() {
            return Ok(());
        }
        let name = self.inter_broker_listener_name();
        let Some(listener) = self.effective_listeners().into_iter().find(|l| l.name == name) else {
            return Ok(());
        };
        let auth = &self.auth;
        if listener.protocol.tls() && auth.inter_broker_tls_ca.is_none() {
            return Err(ConfigError::Invalid(format!(
                "the inter-broker listener {name} serves {}: set [auth] inter_broker_tls_ca to the CA that signed the brokers' certificates",
                listener.protocol
            )));
        }
        if auth.inter_broker_tls_cert.is_some() != auth.inter_broker_tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "inter_broker_tls_cert and inter_broker_tls_key go together".into(),
            ));
        }
        if listener.protocol.sasl() {
            let complete =
                auth.inter_broker_sasl_mechanism.is_some() && auth.inter_broker_user.is_some() && auth.inter_broker_password_file.is_some();
            if !complete {
                return Err(ConfigError::Invalid(format!(
                    "the inter-broker listener {name} serves {}: set [auth] inter_broker_sasl_mechanism, inter_broker_user and inter_broker_password_file",
                    listener.protocol
                )));
            }
            if let Some(m) = auth.inter_broker_sasl_mechanism {
                if !listener.mechanisms().contains(&m) {
                    return Err(ConfigError::Invalid(format!(
                        "inter_broker_sasl_mechanism {m} is not offered by listener {name}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The topic config every topic starts from.
    /// The bounds of each partition's idempotent-producer state.
    pub fn producer_limits(&self) -> crate::log::producer_state::ProducerLimits {
        crate::log::producer_state::ProducerLimits {
            max_producers: self.max_producer_ids_per_partition,
            expiration_ms: self.producer_id_expiration_ms as i64,
        }
    }

    pub fn topic_defaults(&self) -> TopicConfig {
        TopicConfig::from_overrides(&TopicConfig::default(), &self.topic_defaults).unwrap_or_default()
    }

    /// (host, port) of the first listener, given to clients.
    pub fn advertised(&self) -> (String, i32) {
        match self.listeners.first() {
            Some(first) => first.advertised(),
            None => ListenerConfig::plaintext(self.listen, self.advertise.clone()).advertised(),
        }
    }

    /// (host, port) given to clients of the listener named `name` (the
    /// first listener's for an unknown name).
    pub fn advertised_on(&self, name: &str) -> (String, i32) {
        self.effective_listeners()
            .iter()
            .find(|l| l.name == name)
            .map(ListenerConfig::advertised)
            .unwrap_or_else(|| self.advertised())
    }

    /// The listener brokers replicate through.
    pub fn inter_broker_listener_name(&self) -> String {
        self.inter_broker_listener
            .clone()
            .unwrap_or_else(|| self.effective_listeners().first().map(|l| l.name.clone()).unwrap_or_default())
    }

    /// The `--etcd` endpoints, trimmed.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn archive_url(&self) -> String {
        self.archive
            .clone()
            .unwrap_or_else(|| crate::archive::store::default_url(&self.data_dir))
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

pub(crate) fn parse_host_port(s: &str) -> Option<(String, i32)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() {
        return None;
    }
    Some((host.trim_matches(['[', ']']).to_string(), port as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sediment.toml");
        std::fs::write(
            &path,
            "data_dir = \"/from/file\"\nbroker_id = 3\n[topic_defaults]\n\"retention.ms\" = \"1000\"\n",
        )
        .unwrap();
        let overrides = Overrides {
            config: Some(path),
            broker_id: Some(5),
            ..Default::default()
        };
        let config = Config::load(&overrides).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.broker_id, 5);
        assert_eq!(config.topic_defaults().retention_ms, 1000);
        assert_eq!(config.listen, Config::default().listen);
    }

    #[test]
    fn group_bounds_have_kafkas_defaults_and_refuse_zero() {
        let config = Config::default();
        assert_eq!(config.offsets_retention_minutes, 10080);
        assert_eq!(config.offset_metadata_max_bytes, 4096);
        let parsed = Config::from_toml("group_max_count = 5\noffsets_retention_minutes = 1\n").unwrap();
        assert_eq!((parsed.group_max_count, parsed.offsets_retention_minutes), (5, 1));
        for bad in [
            Config {
                group_max_count: 0,
                ..Config::default()
            },
            Config {
                offsets_retention_minutes: 0,
                ..Config::default()
            },
            Config {
                offsets_retention_check_interval_ms: 0,
                ..Config::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }

    #[test]
    fn otlp_export_takes_an_http_url_a_protocol_and_a_ratio() {
        let parsed = Config::from_toml(
            "otlp_endpoint = \"http://collector:4318/v1/traces\"\notlp_protocol = \"http/json\"\notlp_sample_ratio = 0.25\n",
        )
        .unwrap();
        assert_eq!(parsed.otlp_protocol, OtlpProtocol::HttpJson);
        assert!(parsed.validate().is_ok());
        assert!(Config::from_toml("otlp_protocol = \"grpc\"").is_err());
        for (endpoint, ratio) in [
            ("collector:4318", 1.0),
            ("ftp://collector/v1/traces", 1.0),
            ("http://c:4318", 1.5),
            ("http://c:4318", f64::NAN),
        ] {
            let bad = Config {
                otlp_endpoint: Some(endpoint.into()),
                otlp_sample_ratio: ratio,
                ..Config::default()
            };
            assert!(bad.validate().is_err(), "{endpoint} {ratio}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::from_toml("no_such_key = 1").is_err());
        assert!(Config::from_toml("broker_id = \"x\"").is_err());
        let bad = Config {
            advertise: Some("nohost".into()),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            topic_defaults: [("segment.bytes".to_string(), "-4".to_string())].into(),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn advertised_defaults_to_listen() {
        let config = Config::default();
        assert_eq!(config.advertised(), ("127.0.0.1".to_string(), 9092));
        let config = Config {
            advertise: Some("broker-0.example:19092".into()),
            ..Config::default()
        };
        assert_eq!(config.advertised(), ("broker-0.example".to_string(), 19092));
    }
}
