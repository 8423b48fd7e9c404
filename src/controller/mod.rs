//! The cluster controller: one broker at a time, elected through etcd,
//! places replicas and elects leaders from the ISR as brokers come and go.
//! Its decisions are pure (`placement`, `decide`, `plan`); `run` only reads
//! the cluster image and writes what `plan` returns, fenced by its epoch.
//! Not yet started by `serve` (docs/ARCHITECTURE.md, "Cluster: what exists").

pub mod decide;
pub mod placement;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::coordination::etcd::image::ClusterImage;
use crate::coordination::etcd::{ControllerStore, SessionState};

/// Campaigns while no broker is controller, and while this one is, keeps
/// every partition in line with the live brokers. Runs until cancelled.
pub async fn run(
    broker_id: i32,
    store: ControllerStore,
    mut session: watch::Receiver<SessionState>,
    mut image: watch::Receiver<Arc<ClusterImage>>,
) {
    loop {
        let current = image.borrow_and_update().clone();
        let lease = session.borrow_and_update().lease;
        match (current.controller, lease) {
            (None, Some(lease)) => match store.campaign(broker_id, lease).await {
                Ok(Some(epoch)) => tracing::info!(broker_id, controller_epoch = epoch, "became the controller"),
                Ok(None) => {}
                Err(e) => tracing::warn!(broker_id, error = %e, "controller campaign failed; retrying"),
            },
            (Some((id, epoch)), Some(_)) if id == broker_id => {
                let stale = plan::stale(&current);
                if !stale.is_empty() {
                    match store.delete(epoch, &stale).await {
                        Ok(n) => tracing::info!(
                            controller_epoch = epoch,
                            partitions = n,
                            "controller removed the states of deleted topics"
                        ),
                        Err(e) => tracing::warn!(controller_epoch = epoch, error = %e, "cannot remove stale partition states; retrying"),
                    }
                }
                let writes = plan::plan(&current);
                if !writes.is_empty() {
                    match store.write(epoch, &writes).await {
                        Ok(n) if n == writes.len() => {
                            tracing::info!(controller_epoch = epoch, partitions = n, "controller updated partitions")
                        }
                        // A stale view: the image catches up and we plan again.
                        Ok(n) => tracing::debug!(
                            controller_epoch = epoch,
                            written = n,
                            planned = writes.len(),
                            "some partition writes were refused"
                        ),
                        Err(e) => tracing::warn!(controller_epoch = epoch, error = %e, "controller writes failed; retrying"),
                    }
                }
            }
            _ => {}
        }
        // Wait for news; look again now and then, since a refused write or
        // a failed campaign changes nothing that would wake us.
        tokio::select! {
            changed = image.changed() => if changed.is_err() { return },
            changed = session.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
