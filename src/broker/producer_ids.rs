//! Producer ids for InitProducerId: reserved from the coordinator in
//! blocks, handed out one at a time.

use super::Broker;
use crate::coordination::CoordinationError;

const PRODUCER_ID_BLOCK: i64 = 1000;

impl Broker {
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
}
