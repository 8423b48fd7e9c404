//! The log cleaner task: compacts the partitions of compacted topics
//! (`cleanup.policy` with `compact`), one pass at a time, every
//! `cleaner_interval_ms`. The work (`log::compaction`) runs on the
//! blocking pool; the partition lock is held only to plan a pass and to
//! rename its results into place, so produce and fetch go on meanwhile.
//!
//! Only segments the archive already holds are cleaned: the archive keeps
//! every version of every key (a table engines can query as of any
//! offset), and the local log becomes the compacted view consumers read.
//!
//! It sits above `broker` and `log`; the composition root (`node`) starts it.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, Partition, Topic};
use crate::clock::now_ms;
use crate::log::compaction::{self, PassSummary};
use crate::log::LogError;

/// Bytes of map per distinct key (a 16-byte digest, an offset, the table's overhead).
const MAP_BYTES_PER_KEY: u64 = 32;

/// Runs until its task is cancelled (shutdown).
pub async fn run(broker: Arc<Broker>) {
    loop {
        tokio::time::sleep(Duration::from_millis(broker.config.cleaner_interval_ms)).await;
        for topic in broker.topics().into_iter().filter(|t| t.config().compact_policy) {
            for partition in topic.partitions() {
                if let Err(e) = clean_partition(&broker, &topic, &partition).await {
                    broker.metrics.cleaner_errors.inc();
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "cleaning failed; will retry");
                }
            }
        }
    }
}

/// One pass over one partition, if one is due.
pub async fn clean_partition(broker: &Broker, topic: &Topic, partition: &Arc<Partition>) -> Result<Option<PassSummary>, LogError> {
    // What the archive holds is safe to compact locally.
    let Some(archived_end) = partition.manifest().end_offset() else {
        return Ok(None);
    };
    let limits = broker.validator.limits(topic.config().log_config().max_message_bytes);
    let capacity = (broker.config.cleaner_dedupe_buffer_bytes / MAP_BYTES_PER_KEY) as usize;
    let Some(plan) = partition.lock_log().plan_cleaning(now_ms(), archived_end, limits, capacity) else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || compaction::run_pass(&plan))
        .await
        .map_err(|e| LogError::Io(std::io::Error::other(format!("cleaning task failed: {e}"))))??;
    let summary = outcome.summary();
    let (checkpoint, retired, dir) = {
        let mut log = partition.lock_log();
        let (checkpoint, retired) = log.install_cleaned(outcome)?;
        (checkpoint, retired, log.dir().to_path_buf())
    };
    tokio::task::spawn_blocking(move || {
        // The replaced files' blocks are freed here, off the lock.
        drop(retired);
        crate::log::sync_dir(&dir)?;
        compaction::write_checkpoint(&dir, checkpoint)
    })
    .await
    .map_err(|e| LogError::Io(std::io::Error::other(format!("checkpoint task failed: {e}"))))??;
    let metrics = &broker.metrics;
    metrics.cleaner_passes.inc();
    metrics.cleaner_records_removed.inc_by(summary.records_removed);
    metrics.cleaner_bytes_read.inc_by(summary.bytes_read);
    metrics.cleaner_bytes_saved.inc_by(summary.bytes_saved);
    metrics.cleaner_pass_duration.observe(started.elapsed().as_secs_f64());
    tracing::info!(
        topic = %topic.name,
        partition = partition.index,
        segments_rewritten = summary.segments_rewritten,
        records_removed = summary.records_removed,
        bytes_saved = summary.bytes_saved,
        cleaned_to = checkpoint,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "cleaned a compacted partition"
    );
    Ok(Some(summary))
}
