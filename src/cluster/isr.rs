//! Records partition leaders' ISR changes in etcd (KIP-497: the leader, not
//! the controller, changes the ISR). A change is asked for by a follower's
//! fetch (expansion) or the lag check (shrink); this task works out the ISR
//! the leader wants now and writes it, fenced by the partition's
//! mod_revision and this broker's epoch.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::ClusterLink;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::coordination::etcd::PartitionWrite;
use crate::coordination::PartitionState;
use crate::replication::state::IsrProposal;

pub(super) async fn run(broker: Arc<Broker>, link: Arc<ClusterLink>) {
    loop {
        link.isr_wake.notified().await;
        // Requests come in bursts (one per fetch): each partition once.
        let pending = std::mem::take(&mut *link.isr_pending.lock());
        let mut failed = false;
        for (topic, partition) in pending {
            if !record(&broker, &link, &topic, partition).await {
                // Refused or failed: the image will show why. Ask again if
                // the leader still wants the change, after a pause.
                failed = true;
                link.request_isr_change(&topic, partition);
            }
        }
        if failed {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// The pause before retrying ISR writes that failed (etcd away, or a stale view).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Writes the ISR the leader wants if it differs from etcd's. True when
/// nothing more is to be done.
async fn record(broker: &Broker, link: &ClusterLink, topic_name: &str, index: i32) -> bool {
    let Some(topic) = broker.topic(topic_name) else { return true };
    let Some(partition) = topic.partition(index) else { return true };
    let Some(epoch) = partition.leader_epoch() else { return true };
    let image = link.image();
    let Some(record) = image.topics.get(topic_name) else { return true };
    let Some((state, mod_revision)) = image.partitions.get(&(record.id.clone(), index)).cloned() else {
        return true;
    };
    if state.leader_epoch != epoch || state.leader != link.broker_id {
        return true;
    }
    let wanted: BTreeSet<i32> = match partition.lagging_replicas(now_ms()) {
        Some(IsrProposal::Shrink(isr)) | Some(IsrProposal::Expand(isr)) => isr,
        None => partition.leader_isr().unwrap_or_default().into_iter().collect(),
    };
    let isr: Vec<i32> = state.replicas.iter().copied().filter(|r| wanted.contains(r)).collect();
    if isr == state.isr || isr.is_empty() {
        return true;
    }
    let Some(broker_epoch) = link.session.borrow().broker_epoch else {
        return false;
    };
    let write = PartitionWrite {
        topic_id: record.id.clone(),
        partition: index,
        state: PartitionState {
            isr: isr.clone(),
            ..state.clone()
        },
        expected_mod_revision: mod_revision,
    };
    match link.isr_writer.record(link.broker_id, broker_epoch, &write).await {
        Ok(true) => {
            let (expanded, shrunk) = (isr.len() > state.isr.len(), isr.len() < state.isr.len());
            tracing::info!(topic = topic_name, partition = index, leader_epoch = epoch, from = ?state.isr, to = ?isr, "recorded ISR change");
            if expanded {
                broker.metrics.isr_expands.inc();
            }
            if shrunk {
                broker.metrics.isr_shrinks.inc();
            }
            partition.isr_recorded(epoch, &isr);
            true
        }
        Ok(false) => {
            tracing::debug!(
                topic = topic_name,
                partition = index,
                "ISR write refused (a newer state in etcd); retrying on the next image"
            );
            false
        }
        Err(e) => {
            tracing::warn!(topic = topic_name, partition = index, error = %e, "cannot record ISR change; retrying");
            false
        }
    }
}
