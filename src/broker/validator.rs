//! Record-level validation of produced batches, before they are appended.
//!
//! Uncompressed batches are walked where they arrive: the walk is a few
//! varints per record over bytes already in memory, no more than the CRC
//! check costs. Compressed batches are decompressed on the blocking pool,
//! never on an async worker, and at most `concurrency` at a time, so that a
//! flood of compressed produce requests queues instead of holding a
//! decompression window each.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::log::batch::{self, BatchHeader};
use crate::log::encode;
use crate::log::records::{self, Limits, RecordError, RecordRules};

pub struct BatchValidator {
    permits: Arc<Semaphore>,
    max_decoded_bytes: u64,
}

impl BatchValidator {
    pub fn new(max_decoded_bytes: u64, concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            max_decoded_bytes,
        }
    }

    /// The bound for a topic: a batch the topic accepts by size must be
    /// allowed to decode to at least its own size.
    pub fn limits(&self, max_message_bytes: usize) -> Limits {
        Limits {
            max_decoded_bytes: self.max_decoded_bytes.max(max_message_bytes as u64),
        }
    }

    /// Checks the records of every batch no larger than `max_message_bytes`
    /// (larger ones are refused by the append, without being decoded)
    /// against the format and the topic's `rules`.
    pub async fn validate(
        &self,
        batches: &[(BatchHeader, Bytes)],
        max_message_bytes: usize,
        rules: RecordRules,
    ) -> Result<(), RecordError> {
        let limits = self.limits(max_message_bytes);
        let mut compressed = Vec::new();
        for (header, bytes) in batches.iter().filter(|(_, b)| b.len() <= max_message_bytes) {
            if records::codec_of(header) == 0 {
                records::validate_with(bytes, header, limits, rules)?;
            } else {
                compressed.push((*header, bytes.clone()));
            }
        }
        if compressed.is_empty() {
            return Ok(());
        }
        self.on_blocking_pool(move || {
            compressed
                .iter()
                .try_for_each(|(header, bytes)| records::validate_with(bytes, header, limits, rules))
        })
        .await
    }

    /// Rewrites the batches whose codec is not `codec` (a topic's
    /// `compression.type`), on the blocking pool: offsets, timestamps and
    /// the producer's id, epoch and sequences stay as they were.
    pub async fn recompress(
        &self,
        batches: Vec<(BatchHeader, Bytes)>,
        codec: i16,
        level: Option<i32>,
        max_message_bytes: usize,
    ) -> Result<Vec<(BatchHeader, Bytes)>, RecordError> {
        if batches.iter().all(|(h, _)| records::codec_of(h) == codec) {
            return Ok(batches);
        }
        let limits = self.limits(max_message_bytes);
        self.on_blocking_pool(move || {
            batches
                .into_iter()
                .map(|(header, bytes)| {
                    if records::codec_of(&header) == codec {
                        return Ok((header, bytes));
                    }
                    let kept = records::collect(&bytes, &header, limits)?;
                    let rebuilt = encode::rebuild_batch(&header, &kept, codec, level)
                        .map_err(|e| RecordError::Internal(format!("recompression failed: {e}")))?;
                    let new_header = batch::validate(&rebuilt)?;
                    Ok((new_header, rebuilt))
                })
                .collect()
        })
        .await
    }

    /// Runs decoding work on the blocking pool, at most `concurrency` at a time.
    async fn on_blocking_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, RecordError> + Send + 'static,
    ) -> Result<T, RecordError> {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Err(RecordError::Internal("validation is shutting down".into()));
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| RecordError::Internal(format!("validation task failed: {e}")))?
    }
}
