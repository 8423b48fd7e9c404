//! Background upkeep: segment rolling, retention and producer expiry on a
//! timer, the interval flusher, the local disk budget, and the gauges
//! refreshed before each scrape.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Broker, Partition};
use crate::clock::now_ms;
use crate::config::FlushPolicy;
use crate::metrics::PartitionLabels;

impl Broker {
    pub(super) fn spawn_maintenance(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let interval_ms = self.config.log_maintenance_interval_ms;
        let flush_interval_ms = self.config.flush_interval_ms;
        let flush = self.config.flush;
        self.tasks.spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(broker) = weak.upgrade() else { return };
                broker.run_log_maintenance().await;
            }
        });
        if flush == FlushPolicy::Interval {
            let weak = Arc::downgrade(self);
            self.tasks.spawn(async move {
                let mut ticker = tokio::time::interval(std::time::Duration::from_millis(flush_interval_ms));
                loop {
                    ticker.tick().await;
                    let Some(broker) = weak.upgrade() else { return };
                    for topic in broker.topics() {
                        for partition in topic.partitions() {
                            partition.flush(&broker.metrics).await;
                        }
                    }
                }
            });
        }
    }

    /// Rolls expired active segments, forgets idle producers and applies
    /// retention on every partition. Decisions are taken under each
    /// partition's lock; removed segments' files are deleted after it, on
    /// the blocking pool.
    pub async fn run_log_maintenance(&self) {
        let now = now_ms();
        for topic in self.topics() {
            for partition in topic.partitions() {
                let removed = {
                    let mut log = partition.lock_log();
                    if let Err(e) = log.roll_if_expired(now) {
                        tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "segment roll failed");
                    }
                    let expired = log.expire_producers(now);
                    if expired > 0 {
                        tracing::debug!(topic = %topic.name, partition = partition.index, expired, "forgot idle idempotent producers");
                    }
                    let archived_end = partition.manifest().end_offset().unwrap_or(i64::MIN);
                    log.apply_retention(now, archived_end)
                };
                if removed.is_empty() {
                    continue;
                }
                if let Err(e) = Partition::delete_segment_files(removed).await {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "retention could not delete a segment file");
                }
            }
        }
    }

    pub fn refresh_local_bytes(&self) {
        let total: u64 = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| p.lock_log().size_bytes())
            .sum();
        self.local_bytes.store(total, Ordering::Relaxed);
        self.metrics.local_disk_bytes.set(total as i64);
    }

    pub fn add_local_bytes(&self, bytes: u64) {
        self.local_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether the local disk budget is used up (produce is then refused).
    pub fn over_disk_budget(&self) -> bool {
        let budget = self.config.local_disk_budget_bytes;
        budget > 0 && self.local_bytes.load(Ordering::Relaxed) >= budget
    }

    /// Refreshes the per-partition and per-group gauges before a scrape.
    pub fn update_gauges(&self) {
        let m = &self.metrics;
        for family in [
            &m.log_end_offset,
            &m.log_start_offset,
            &m.high_watermark,
            &m.log_size_bytes,
            &m.log_segments,
            &m.last_stable_offset,
        ] {
            family.clear();
        }
        let mut high_watermarks = HashMap::new();
        let mut producer_ids = 0;
        for topic in self.topics() {
            for partition in topic.partitions() {
                let labels = PartitionLabels {
                    topic: topic.name.clone(),
                    partition: partition.index.to_string(),
                };
                let hw = partition.high_watermark();
                high_watermarks.insert((topic.name.clone(), partition.index), hw);
                m.high_watermark.get_or_create(&labels).set(hw);
                let log = partition.lock_log();
                m.log_end_offset.get_or_create(&labels).set(log.next_offset());
                m.log_start_offset.get_or_create(&labels).set(log.log_start_offset());
                m.log_size_bytes.get_or_create(&labels).set(log.size_bytes() as i64);
                m.last_stable_offset.get_or_create(&labels).set(log.last_stable_offset(hw));
                m.log_segments.get_or_create(&labels).set(log.segment_count() as i64);
                producer_ids += log.producer_count();
            }
        }
        self.groups.update_gauges(m, &high_watermarks);
        m.response_memory_bytes.set(self.response_memory.used() as i64);
        m.request_memory_bytes.set(self.request_memory.used() as i64);
        m.producer_ids.set(producer_ids as i64);
        m.transactions_open.set(self.transactions.open_count() as i64);
        m.transactional_ids.set(self.transactions.id_count() as i64);
    }
}
