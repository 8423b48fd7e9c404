//! Cluster coordination through etcd: broker membership under a lease, and
//! the `Coordinator` seam's state (topics, producer-id blocks, starts) as
//! keys under `/<cluster>/`. The only module that speaks etcd.
//!
//! The `etcd-client` crate neither reconnects lease keep-alives nor tells a
//! dead connection from a quiet one, so `Session::run` owns that: it keeps
//! the lease alive every third of its TTL, retries with backoff while etcd
//! does not answer (etcd resets every lease's TTL when it elects a leader or
//! restarts, so an outage alone does not expire it), and when etcd says the
//! lease is gone it grants a new one and registers again, under a new broker
//! epoch. Every write that decides something is a transaction with a compare.

mod control;
pub mod copy;
pub mod image;
mod keys;
mod session;
mod watch;

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{BoxFuture, CoordinationError, Coordinator, TopicRecord};
use crate::security::state::{SecurityChange, SecurityState};
use image::ClusterImage;

pub use control::{record_isr, ControllerStore, IsrWriter, PartitionWrite};
pub use keys::Keys;
pub use session::Session;
pub use watch::follow_image;

/// etcd's limit on operations per transaction (`--max-txn-ops`, 128).
const MAX_TXN_OPS: usize = 128;

/// What a broker publishes about itself under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub broker_id: i32,
    /// host:port Kafka clients are told to connect to.
    pub advertised: String,
    /// host:port of the admin HTTP listener.
    pub http: String,
    /// Names this broker's data dir: a broker that comes back with another
    /// one (an empty disk) is a new replica, not the old one.
    pub dir_id: String,
    /// The data dir held no data when this run began: whatever ISRs still
    /// name this broker from before, it holds none of it (the controller
    /// takes it out of them, `controller::plan`).
    #[serde(default)]
    pub empty_disk: bool,
    /// host:port on each listener, by listener name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub listeners: std::collections::BTreeMap<String, String>,
}

impl Registration {
    /// Where a client of `listener` reaches this broker: that listener's
    /// address, or the first listener's when the broker has no such one.
    pub fn address_on(&self, listener: &str) -> &str {
        self.listeners.get(listener).unwrap_or(&self.advertised)
    }
}

/// The session as the rest of the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// The broker epoch: create_revision of its registration. `None` until
    /// registered, and while a lost registration is being replaced.
    pub broker_epoch: Option<i64>,
    /// The lease the registration lives under (the controller key, when
    /// this broker holds it, lives under the same one).
    pub lease: Option<i64>,
    /// Whether the last keep-alive was answered.
    pub connected: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("broker id {0} is registered by another broker (data dir {1}); waiting for it to go")]
    IdTaken(i32, String),
    #[error("the etcd watch stream ended")]
    WatchEnded,
    #[error("etcd holds a value that does not parse at {key}: {message}")]
    Corrupt { key: String, message: String },
}

impl From<EtcdError> for CoordinationError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::Corrupt { .. } => CoordinationError::Corrupt(e.to_string()),
            other => CoordinationError::Io(std::io::Error::other(other.to_string())),
        }
    }
}

/// Connects without waiting for etcd: requests fail (and are retried by
/// their callers) until it answers. HTTP/2 keep-alives make a dead
/// connection fail instead of hanging.
pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Client, EtcdError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    Ok(Client::connect(endpoints, Some(options)).await?)
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(kv: &KeyValue) -> Result<T, EtcdError> {
    serde_json::from_slice(kv.value()).map_err(|e| EtcdError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        message: e.to_string(),
    })
}

pub(super) fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain structs: serialisation cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The `Coordinator` seam on etcd.
pub struct EtcdCoordinator {
    client: Client,
    keys: Keys,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    next: i64,
}

impl EtcdCoordinator {
    pub fn new(client: Client, cluster: &str) -> Self {
        Self {
            client,
            keys: Keys::new(cluster),
        }
    }

    /// Runs `op` on a topic's key only if the key still holds `expected`;
    /// `Conflict` otherwise.
    async fn if_unchanged(&self, expected: &TopicRecord, op: TxnOp) -> Result<(), CoordinationError> {
        let key = self.keys.topic(&expected.name);
        let txn = Txn::new()
            .when([Compare::value(key.as_str(), CompareOp::Equal, json(expected))])
            .and_then([op]);
        let mut client = self.client.clone();
        if !client.txn(txn).await.map_err(EtcdError::from)?.succeeded() {
            return Err(CoordinationError::Conflict(expected.name.clone()));
        }
        Ok(())
    }

    /// Adds `count` to the counter at `key` with a compare on its
    /// mod_revision, retrying when another broker got there first; returns
    /// the value before.
    async fn bump(&self, key: &str, count: i64) -> Result<i64, EtcdError> {
        let mut client = self.client.clone();
        loop {
            let current = client.get(key, None).await?;
            let (value, compare) = match current.kvs().first() {
                Some(kv) => (
                    parse::<Counter>(kv)?.next,
                    Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
                ),
                None => (0, Compare::create_revision(key, CompareOp::Equal, 0)),
            };
            let next = Counter { next: value + count };
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(key, json(&next), None)]);
            if client.txn(txn).await?.succeeded() {
                return Ok(value);
            }
        }
    }
}

impl Coordinator for EtcdCoordinator {
    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicRecord>, CoordinationError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            let found = client
                .get(self.keys.topics(), Some(GetOptions::new().with_prefix()))
                .await
                .map_err(EtcdError::from)?;
            let mut topics = found.kvs().iter().map(parse::<TopicRecord>).collect::<Result<Vec<_>, _>>()?;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(topics)
        })
    }

    fn put_topic(&self, topic: TopicRecord) -> BoxFuture<'_, Result<(), CoordinationError>> {
        self.put_topics(vec![topic])
    }

    fn put_topics(&self, topics: Vec<TopicRecord>) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            // One transaction per 128 topics: each is atomic, the whole set
            // is not (etcd bounds operations per transaction).
            for chunk in topics.chunks(MAX_TXN_OPS) {
                let ops: Vec<TxnOp> = chunk.iter().map(|t| TxnOp::put(self.keys.topic(&t.name), json(t), None)).collect();
                client.txn(Txn::new().and_then(ops)).await.map_err(EtcdError::from)?;
            }
            Ok(())
        })
    }

    fn create_topics(&self, topics: Vec<TopicRecord>) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            // Each chunk is one transaction: created only if none of its
            // names exists (etcd bounds a transaction's compares and puts
            // together, so 64 topics a chunk).
            for chunk in topics.chunks(MAX_TXN_OPS / 2) {
                let compares: Vec<Compare> = chunk
                    .iter()
                    .map(|t| Compare::create_revision(self.keys.topic(&t.name), CompareOp::Equal, 0))
                    .collect();
                let ops: Vec<TxnOp> = chunk.iter().map(|t| TxnOp::put(self.keys.topic(&t.name), json(t), None)).collect();
                let response = client.txn(Txn::new().when(compares).and_then(ops)).await.map_err(EtcdError::from)?;
                if !response.succeeded() {
                    let names: Vec<&str> = chunk.iter().map(|t| t.name.as_str()).collect();
                    return Err(CoordinationError::TopicExists(names.join(", ")));
                }
            }
            Ok(())
        })
    }

    fn update_topic(&self, expected: TopicRecord, topic: TopicRecord) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move {
            let put = TxnOp::put(self.keys.topic(&topic.name), json(&topic), None);
            self.if_unchanged(&expected, put).await
        })
    }

    fn delete_topic_if(&self, expected: TopicRecord) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move {
            let delete = TxnOp::delete(self.keys.topic(&expected.name), None);
            self.if_unchanged(&expected, delete).await
        })
    }

    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            client.delete(self.keys.topic(&name), None).await.map_err(EtcdError::from)?;
            Ok(())
        })
    }

    fn allocate_producer_ids(&self, count: i64) -> BoxFuture<'_, Result<i64, CoordinationError>> {
        Box::pin(async move { Ok(self.bump(&self.keys.producer_ids(), count).await?) })
    }

    fn security(&self) -> BoxFuture<'_, Result<(u64, SecurityState), CoordinationError>> {
        Box::pin(async move { Ok(self.read_security().await?) })
    }

    fn change_security(&self, change: SecurityChange) -> BoxFuture<'_, Result<(u64, SecurityState), CoordinationError>> {
        Box::pin(async move {
            let mut ops = Vec::new();
            for acl in &change.delete_acls {
                ops.push(TxnOp::delete(self.keys.acl(&json(acl)), None));
            }
            for acl in &change.create_acls {
                let value = json(acl);
                ops.push(TxnOp::put(self.keys.acl(&value), value, None));
            }
            for (user, mechanism) in &change.delete_scram {
                ops.push(TxnOp::delete(self.keys.scram(user, mechanism.mechanism().name()), None));
            }
            for entry in &change.upsert_scram {
                ops.push(TxnOp::put(
                    self.keys.scram(&entry.user, entry.mechanism.mechanism().name()),
                    json(entry),
                    None,
                ));
            }
            for (entity, kind) in &change.remove_quotas {
                ops.push(TxnOp::delete(self.keys.quota(&json(entity), kind.name()), None));
            }
            for setting in &change.set_quotas {
                ops.push(TxnOp::put(
                    self.keys.quota(&json(&setting.entity), setting.kind.name()),
                    json(setting),
                    None,
                ));
            }
            let mut client = self.client.clone();
            // Larger changes go in several transactions, each all or none.
            for chunk in ops.chunks(MAX_TXN_OPS) {
                client.txn(Txn::new().and_then(chunk.to_vec())).await.map_err(EtcdError::from)?;
            }
            Ok(self.read_security().await?)
        })
    }

    fn register_start(&self, broker_id: i32) -> BoxFuture<'_, Result<i32, CoordinationError>> {
        Box::pin(async move {
            let before = self.bump(&self.keys.starts(broker_id), 1).await?;
            i32::try_from(before + 1).map_err(|_| CoordinationError::Corrupt("broker start count overflows".into()))
        })
    }
}

impl EtcdCoordinator {
    /// The ACLs, credentials and quotas as of one revision (the version).
    async fn read_security(&self) -> Result<(u64, SecurityState), EtcdError> {
        let mut client = self.client.clone();
        let acls = client.get(self.keys.acls(), Some(GetOptions::new().with_prefix())).await?;
        let revision = acls.header().map_or(0, |h| h.revision());
        let scram = client
            .get(self.keys.scram_all(), Some(GetOptions::new().with_prefix().with_revision(revision)))
            .await?;
        let quotas = client
            .get(self.keys.quotas(), Some(GetOptions::new().with_prefix().with_revision(revision)))
            .await?;
        let mut image = ClusterImage::default();
        for kv in acls.kvs().iter().chain(scram.kvs()).chain(quotas.kvs()) {
            let Ok(key) = kv.key_str() else { continue };
            image.apply(
                &self.keys,
                &image::Change {
                    key,
                    value: Some(kv.value()),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                },
            );
        }
        Ok((revision.max(0) as u64, image.security()))
    }

    /// Writes a copy from the archive into an etcd that holds nothing for
    /// this cluster: topics, partition states (leaderless, epochs jumped)
    /// and the producer-id counter. Each key only if absent, so a broker
    /// racing another to restore writes nothing twice. Returns whether any
    /// topic was written.
    pub async fn restore(&self, copy: &copy::ClusterCopy) -> Result<bool, EtcdError> {
        let mut client = self.client.clone();
        let mut restored = false;
        for chunk in copy.topics.chunks(MAX_TXN_OPS / 2) {
            let compares: Vec<Compare> = chunk
                .iter()
                .map(|t| Compare::create_revision(self.keys.topic(&t.name), CompareOp::Equal, 0))
                .collect();
            let puts: Vec<TxnOp> = chunk.iter().map(|t| TxnOp::put(self.keys.topic(&t.name), json(t), None)).collect();
            restored |= client.txn(Txn::new().when(compares).and_then(puts)).await?.succeeded();
        }
        let states = copy.restored_states();
        for chunk in states.chunks(MAX_TXN_OPS / 2) {
            let keys: Vec<String> = chunk.iter().map(|(t, p, _)| self.keys.partition(t, *p)).collect();
            let compares: Vec<Compare> = keys
                .iter()
                .map(|k| Compare::create_revision(k.as_str(), CompareOp::Equal, 0))
                .collect();
            let puts: Vec<TxnOp> = keys
                .iter()
                .zip(chunk)
                .map(|(k, (_, _, s))| TxnOp::put(k.as_str(), json(s), None))
                .collect();
            client.txn(Txn::new().when(compares).and_then(puts)).await?;
        }
        let counter = self.keys.producer_ids();
        let next = Counter {
            next: copy.restored_producer_ids_next(),
        };
        let txn = Txn::new()
            .when([Compare::create_revision(counter.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(counter.as_str(), json(&next), None)]);
        client.txn(txn).await?;
        Ok(restored)
    }
}

/// Reads the registrations of every live broker.
pub async fn live_brokers(client: &Client, cluster: &str) -> Result<Vec<(Registration, i64)>, EtcdError> {
    let mut client = client.clone();
    let found = client
        .get(Keys::new(cluster).brokers(), Some(GetOptions::new().with_prefix()))
        .await?;
    found
        .kvs()
        .iter()
        .map(|kv| Ok((parse::<Registration>(kv)?, kv.create_revision())))
        .collect()
}
