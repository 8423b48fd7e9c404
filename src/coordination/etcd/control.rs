//! The controller's writes: the election, and partition changes fenced by
//! the controller epoch and each partition's mod_revision (Jepsen: a lease
//! is not mutual exclusion, so every write carries its token).

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::{json, EtcdError, Keys};
use crate::coordination::PartitionState;

/// One partition's new state, written only if the key is still at
/// `expected_mod_revision` (0: the key must not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionWrite {
    pub topic_id: String,
    pub partition: i32,
    pub state: PartitionState,
    pub expected_mod_revision: i64,
}

/// Room for the controller's own compare in each transaction.
const WRITES_PER_TXN: usize = 127;

pub struct ControllerStore {
    client: Client,
    keys: Keys,
}

impl ControllerStore {
    pub fn new(client: Client, cluster: &str) -> Self {
        Self {
            client,
            keys: Keys::new(cluster),
        }
    }

    /// Tries to become the controller under `lease` (the broker's own, so
    /// the key goes when the broker does). The controller epoch if it won.
    pub async fn campaign(&self, broker_id: i32, lease: i64) -> Result<Option<i64>, EtcdError> {
        let key = self.keys.controller();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                json(&broker_id),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut client = self.client.clone();
        let response = client.txn(txn).await?;
        Ok(response.succeeded().then(|| response.header().map_or(0, |h| h.revision())))
    }

    /// Writes in transactions of at most 127 partitions, each fenced by the
    /// controller epoch and every partition's expected mod_revision. Returns
    /// how many were written: a refused transaction (a stale view, or no
    /// longer the controller) writes nothing, and the next image says why.
    pub async fn write(&self, controller_epoch: i64, writes: &[PartitionWrite]) -> Result<usize, EtcdError> {
        let mut client = self.client.clone();
        let mut written = 0;
        for chunk in writes.chunks(WRITES_PER_TXN) {
            let mut compares = vec![Compare::create_revision(self.keys.controller(), CompareOp::Equal, controller_epoch)];
            let mut puts = Vec::with_capacity(chunk.len());
            for w in chunk {
                let key = self.keys.partition(&w.topic_id, w.partition);
                compares.push(if w.expected_mod_revision == 0 {
                    Compare::create_revision(key.as_str(), CompareOp::Equal, 0)
                } else {
                    Compare::mod_revision(key.as_str(), CompareOp::Equal, w.expected_mod_revision)
                });
                puts.push(TxnOp::put(key, json(&w.state), None));
            }
            if client.txn(Txn::new().when(compares).and_then(puts)).await?.succeeded() {
                written += chunk.len();
            }
        }
        Ok(written)
    }
}

impl ControllerStore {
    /// Deletes partition states (of deleted topics), fenced like `write`;
    /// returns how many went.
    pub async fn delete(&self, controller_epoch: i64, stale: &[(String, i32, i64)]) -> Result<usize, EtcdError> {
        let mut client = self.client.clone();
        let mut deleted = 0;
        for chunk in stale.chunks(WRITES_PER_TXN) {
            let mut compares = vec![Compare::create_revision(self.keys.controller(), CompareOp::Equal, controller_epoch)];
            let mut deletes = Vec::with_capacity(chunk.len());
            for (topic_id, partition, revision) in chunk {
                let key = self.keys.partition(topic_id, *partition);
                compares.push(Compare::mod_revision(key.as_str(), CompareOp::Equal, *revision));
                deletes.push(TxnOp::delete(key, None));
            }
            if client.txn(Txn::new().when(compares).and_then(deletes)).await?.succeeded() {
                deleted += chunk.len();
            }
        }
        Ok(deleted)
    }
}

/// A partition leader's write of its own ISR change (KIP-497: the leader,
/// not the controller, changes the ISR). Fenced by the partition's
/// mod_revision, so it never undoes a controller decision it has not seen,
/// and by the leader's broker epoch, so a leader that lost its registration
/// (and with it, possibly, its leadership) writes nothing.
pub async fn record_isr(client: &Client, keys: &Keys, leader: i32, broker_epoch: i64, write: &PartitionWrite) -> Result<bool, EtcdError> {
    if write.state.leader != leader || !write.state.isr.contains(&leader) {
        return Ok(false);
    }
    let key = keys.partition(&write.topic_id, write.partition);
    let txn = Txn::new()
        .when([
            Compare::create_revision(keys.broker(leader), CompareOp::Equal, broker_epoch),
            Compare::mod_revision(key.as_str(), CompareOp::Equal, write.expected_mod_revision),
        ])
        .and_then([TxnOp::put(key, json(&write.state), None)]);
    let mut client = client.clone();
    Ok(client.txn(txn).await?.succeeded())
}

/// A partition leader's handle for recording its ISR changes.
#[derive(Clone)]
pub struct IsrWriter {
    client: Client,
    keys: Keys,
}

impl IsrWriter {
    pub fn new(client: Client, cluster: &str) -> Self {
        Self {
            client,
            keys: Keys::new(cluster),
        }
    }

    /// `record_isr` for this cluster.
    pub async fn record(&self, leader: i32, broker_epoch: i64, write: &PartitionWrite) -> Result<bool, EtcdError> {
        record_isr(&self.client, &self.keys, leader, broker_epoch, write).await
    }
}
