//! What the transaction coordinator needs from this broker: markers in
//! its partitions, offsets in its groups, fresh producer ids.

use std::time::Duration;

use super::partition::AckError;
use super::Broker;
use crate::coordination::BoxFuture;
use crate::groups::offsets::CommittedOffset;
use crate::log::Marker;
use crate::txn::TxnSink;

/// How long a marker waits for its partition's ISR before the completion
/// is left for the coordinator's next round.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

impl TxnSink for Broker {
    fn write_marker(&self, topic: &str, partition: i32, marker: Marker) -> BoxFuture<'_, Result<(), String>> {
        let found = self.partition(topic, partition);
        let name = format!("{topic}-{partition}");
        Box::pin(async move {
            // A deleted topic's partitions need no marker.
            let Some(partition) = found else { return Ok(()) };
            let (appended, term) = partition
                .append_marker(marker, crate::clock::now_ms())
                .map_err(|e| format!("marker for {name}: {e}"))?;
            match tokio::time::timeout(MARKER_TIMEOUT, partition.wait_acknowledged(appended.next_offset, term, true)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(AckError::Storage(e))) => Err(format!("marker for {name}: {e}")),
                Ok(Err(e)) => Err(format!("marker for {name}: {e:?}")),
                Err(_) => Err(format!("marker for {name} not acknowledged in time")),
            }
        })
    }

    fn commit_offsets(&self, group: &str, offsets: Vec<(String, i32, CommittedOffset)>) -> BoxFuture<'_, Result<(), String>> {
        let group = group.to_string();
        Box::pin(async move { self.groups.offsets.commit(&group, offsets).await.map_err(|e| e.to_string()) })
    }

    fn fresh_producer_id(&self) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move { self.next_producer_id().await.map_err(|e| e.to_string()) })
    }

    fn completed(&self, commit: bool) {
        if commit {
            self.metrics.transactions_committed.inc();
        } else {
            self.metrics.transactions_aborted.inc();
        }
    }
}
