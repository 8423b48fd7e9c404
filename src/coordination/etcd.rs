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
//!
//! Not wired into `serve` yet: replication and the controller come next (see
//! docs/ARCHITECTURE.md, "Cluster: what exists").

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{BoxFuture, CoordinationError, Coordinator, TopicRecord};

/// etcd's limit on operations per transaction (`--max-txn-ops`, 128).
const MAX_TXN_OPS: usize = 128;

/// The keys of one cluster, all under `/<cluster>/` (several clusters share
/// one etcd). Pure, so the layout is tested without etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Self {
        Self {
            root: format!("/{cluster}/"),
        }
    }

    /// Lease-bound; its create_revision is the broker's epoch.
    pub fn broker(&self, id: i32) -> String {
        format!("{}brokers/{id}", self.root)
    }

    pub fn brokers(&self) -> String {
        format!("{}brokers/", self.root)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}topics/{name}", self.root)
    }

    pub fn topics(&self) -> String {
        format!("{}topics/", self.root)
    }

    /// `{"next": N}`: the first producer id not yet handed out.
    pub fn producer_ids(&self) -> String {
        format!("{}producer-ids", self.root)
    }

    /// How many times a broker id has started (the single-node leader epoch).
    pub fn starts(&self, id: i32) -> String {
        format!("{}starts/{id}", self.root)
    }
}

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
}

/// The session as the rest of the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// The broker epoch: create_revision of its registration. `None` until
    /// registered, and while a lost registration is being replaced.
    pub broker_epoch: Option<i64>,
    /// Whether the last keep-alive was answered.
    pub connected: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("broker id {0} is registered by another broker (data dir {1}); waiting for it to go")]
    IdTaken(i32, String),
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

fn parse<T: for<'de> Deserialize<'de>>(kv: &KeyValue) -> Result<T, EtcdError> {
    serde_json::from_slice(kv.value()).map_err(|e| EtcdError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        message: e.to_string(),
    })
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain structs: serialisation cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A broker's membership: its lease and its registration, kept alive.
pub struct Session {
    client: Client,
    keys: Keys,
    registration: Registration,
    ttl: Duration,
    state: watch::Sender<SessionState>,
}

/// Why keeping a lease alive stopped.
enum KeepAliveEnd {
    /// etcd no longer knows the lease: register again.
    Lost,
    /// etcd did not answer within a TTL: keep trying the same lease.
    Unreachable,
}

impl Session {
    pub fn new(client: Client, cluster: &str, registration: Registration, ttl: Duration) -> Self {
        let (state, _) = watch::channel(SessionState {
            broker_epoch: None,
            connected: false,
        });
        Self {
            client,
            keys: Keys::new(cluster),
            registration,
            ttl,
            state,
        }
    }

    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// Registers and keeps the registration alive until the task is
    /// cancelled (the lease then expires on its own, or is revoked by
    /// `leave`).
    pub async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            let (lease, epoch) = match self.register().await {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, broker_id = self.registration.broker_id, "cannot register with etcd; retrying");
                    self.publish(None, false);
                    tokio::time::sleep(backoff(attempt, self.ttl)).await;
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            };
            attempt = 0;
            tracing::info!(
                broker_id = self.registration.broker_id,
                broker_epoch = epoch,
                lease,
                "registered with etcd"
            );
            self.publish(Some(epoch), true);
            loop {
                match self.keep_alive(lease).await {
                    KeepAliveEnd::Lost => {
                        tracing::warn!(
                            broker_id = self.registration.broker_id,
                            lease,
                            "etcd lost this broker's lease; registering again"
                        );
                        self.publish(None, true);
                        break;
                    }
                    KeepAliveEnd::Unreachable => {
                        tracing::warn!(
                            broker_id = self.registration.broker_id,
                            lease,
                            "etcd does not answer keep-alives; retrying"
                        );
                        self.publish(Some(epoch), false);
                        tokio::time::sleep(backoff(attempt, self.ttl)).await;
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }

    fn publish(&self, broker_epoch: Option<i64>, connected: bool) {
        self.state.send_if_modified(|s| {
            let next = SessionState { broker_epoch, connected };
            let changed = *s != next;
            *s = next;
            changed
        });
    }

    /// Grants a lease and creates the registration under it, if no other
    /// broker holds the id. A registration left by this broker's previous
    /// run (same data dir) is taken over: its lease is revoked first.
    async fn register(&mut self) -> Result<(i64, i64), EtcdError> {
        let key = self.keys.broker(self.registration.broker_id);
        let existing = self.client.get(key.as_str(), None).await?;
        if let Some(kv) = existing.kvs().first() {
            let theirs: Registration = parse(kv)?;
            if theirs.dir_id != self.registration.dir_id {
                return Err(EtcdError::IdTaken(theirs.broker_id, theirs.dir_id));
            }
            // Ours, from before a restart: without this the id would stay
            // taken until the old lease expired.
            let _ = self.client.lease_revoke(kv.lease()).await;
        }
        let ttl_secs = self.ttl.as_secs().max(2) as i64;
        let lease = self.client.lease_grant(ttl_secs, None).await?.id();
        let put = TxnOp::put(key.as_str(), json(&self.registration), Some(PutOptions::new().with_lease(lease)));
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([put]);
        let response = self.client.txn(txn).await?;
        if !response.succeeded() {
            let _ = self.client.lease_revoke(lease).await;
            return Err(EtcdError::IdTaken(self.registration.broker_id, "unknown".into()));
        }
        let epoch = response.header().map_or(0, |h| h.revision());
        Ok((lease, epoch))
    }

    /// Sends keep-alives every third of the TTL and reads every answer.
    async fn keep_alive(&mut self, lease: i64) -> KeepAliveEnd {
        let interval = self.ttl / 3;
        let (mut keeper, mut answers) = match self.client.lease_keep_alive(lease).await {
            Ok(pair) => pair,
            Err(e) if is_lease_not_found(&e) => return KeepAliveEnd::Lost,
            Err(_) => return KeepAliveEnd::Unreachable,
        };
        loop {
            if keeper.keep_alive().await.is_err() {
                return KeepAliveEnd::Unreachable;
            }
            match tokio::time::timeout(self.ttl, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                    // Copied out first: publishing while the borrow is held
                    // would deadlock on the channel's lock.
                    let epoch = self.state.borrow().broker_epoch;
                    self.publish(epoch, true);
                }
                // A TTL of 0 is etcd saying the lease is gone.
                Ok(Ok(Some(_))) => return KeepAliveEnd::Lost,
                Ok(Err(e)) if is_lease_not_found(&e) => return KeepAliveEnd::Lost,
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return KeepAliveEnd::Unreachable,
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

/// 200 ms doubling, at most one TTL: a broker comes back within a lease.
fn backoff(attempt: u32, ttl: Duration) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(8))).min(ttl.max(Duration::from_millis(200)))
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

    fn register_start(&self, broker_id: i32) -> BoxFuture<'_, Result<i32, CoordinationError>> {
        Box::pin(async move {
            let before = self.bump(&self.keys.starts(broker_id), 1).await?;
            i32::try_from(before + 1).map_err(|_| CoordinationError::Corrupt("broker start count overflows".into()))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_cluster_and_never_prefix_each_other() {
        let k = Keys::new("prod");
        assert_eq!(k.broker(3), "/prod/brokers/3");
        assert_eq!(k.topic("orders"), "/prod/topics/orders");
        assert_eq!(k.producer_ids(), "/prod/producer-ids");
        assert!(k.broker(1).starts_with(&k.brokers()));
        assert!(k.topic("a").starts_with(&k.topics()));
        // Another cluster's keys are outside this one's prefixes.
        let other = Keys::new("prod2");
        assert!(!other.broker(1).starts_with(&k.brokers()));
        assert!(!other.topics().starts_with("/prod/"));
    }

    #[test]
    fn backoff_doubles_and_stops_at_one_ttl() {
        let ttl = Duration::from_secs(3);
        assert_eq!(backoff(0, ttl), Duration::from_millis(200));
        assert_eq!(backoff(2, ttl), Duration::from_millis(800));
        assert_eq!(backoff(30, ttl), ttl);
    }
}
