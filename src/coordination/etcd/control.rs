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
