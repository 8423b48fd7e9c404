//! DeleteRecords: moves a partition's log start up. The new start is
//! recorded in the archive's manifest, the partition's durable truth (it
//! survives a restart, an empty disk and a leader change); archived
//! objects and local segments wholly below it are then deleted.

use kafka_protocol::ResponseError;

use super::{Broker, Partition, Topic};

/// DeleteRecords' offset meaning "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

impl Broker {
    /// Deletes the records of `partition` below `offset` (the high
    /// watermark for -1) and returns the log start consumers now see.
    pub async fn delete_records(&self, topic: &Topic, partition: &Partition, offset: i64) -> Result<i64, ResponseError> {
        let epoch = partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
        // Kafka's rule: a compact-only topic's records are deleted by the
        // cleaner alone.
        if !topic.config().delete_policy {
            return Err(ResponseError::PolicyViolation);
        }
        let high_watermark = partition.high_watermark();
        let target = if offset == HIGH_WATERMARK { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&target) {
            return Err(ResponseError::OffsetOutOfRange);
        }
        let current = partition.log_start_offset().map_err(|_| ResponseError::KafkaStorageError)?;
        if target <= current {
            return Ok(current);
        }
        let doomed = crate::tiering::publish(self, topic, partition, |manifest| Ok(manifest.with_log_start(target, epoch)))
            .await
        .map_err(|e| {
            tracing::warn!(topic = %topic.name, partition = partition.index, offset = target, error = %e, "cannot record the new log start in the archive");
            ResponseError::KafkaStorageError
        })?;
        self.archive.delete_objects(&doomed).await;
        let segments = partition.lock_log().delete_archived(target, |_, _| false);
        let local_segments = segments.len();
        if let Err(e) = Partition::delete_segment_files(segments).await {
            // The start has moved: the files are garbage, not records.
            tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "cannot delete local segments below the new log start");
        }
        tracing::info!(
            topic = %topic.name,
            partition = partition.index,
            log_start_offset = target,
            archived_objects = doomed.len(),
            local_segments,
            "deleted records"
        );
        partition.log_start_offset().map_err(|_| ResponseError::KafkaStorageError)
    }
}
