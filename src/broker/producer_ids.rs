//! Producer ids for InitProducerId: reserved from the coordinator in
//! blocks, handed out one at a time.

use super::Broker;
use crate::coordination::CoordinationError;

const PRODUCER_ID_BLOCK: i64 = 1000;

impl Broker {
    /// Whether `id` was handed out: by this broker since it started, or, in
    /// a cluster, by any broker (it is below the cluster's counter). An epoch
    /// bump is honoured only for those; others get a fresh id. In a cluster
    /// the bump needs no etcd, so an idempotent producer that bumps its epoch
    /// while etcd is away carries on.
    pub async fn issued_producer_id(&self, id: i64) -> bool {
        let by_cluster = self.cluster.as_ref().is_some_and(|c| id >= 0 && id < c.image().producer_ids_next);
        let ids = self.producer_ids.lock().await;
        by_cluster || (id >= ids.2 && id < ids.0)
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
}
