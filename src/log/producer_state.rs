//! Idempotent-producer bookkeeping per partition: Kafka's sequence rules,
//! as pure logic so every rule is unit tested.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;

/// Kafka keeps the last five batches per producer to recognise retries.
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<BatchMeta>,
    /// When this producer last appended (or, after a restart, when the log
    /// was opened): what expiry and eviction go by.
    last_seen_ms: i64,
    /// The max timestamp of its last batch (-1 before one).
    last_timestamp: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence it wrote here (-1 if only markers).
    pub last_sequence: i32,
    /// The max timestamp of its last batch (-1 if none).
    pub last_timestamp: i64,
}

/// What bounds the table: clients choose producer ids, so without a bound
/// any client could make a partition remember without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerLimits {
    /// Producers kept per partition; past it the least recently seen tenth
    /// is forgotten (their next batch is accepted as from a new producer).
    pub max_producers: usize,
    /// Kafka's producer.id.expiration.ms: a producer not seen for this long
    /// is forgotten.
    pub expiration_ms: i64,
}

impl Default for ProducerLimits {
    fn default() -> Self {
        Self {
            max_producers: 10_000,
            expiration_ms: 86_400_000,
        }
    }
}

/// What to do with an incoming batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or next in sequence: append it.
    Append,
    /// A retry of a batch already in the log at `base_offset`: acknowledge
    /// it again without appending.
    Duplicate { base_offset: i64 },
    /// The producer's epoch is older than the one we know (Kafka's
    /// INVALID_PRODUCER_EPOCH).
    StaleEpoch,
    /// A gap or reordering (Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder,
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    limits: ProducerLimits,
}

fn in_sequence(last: i32, next: i32) -> bool {
    next as i64 == last as i64 + 1 || (last == i32::MAX && next == 0)
}

impl ProducerStateTable {
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if header.producer_id < 0 || header.base_sequence < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer (new, or its state aged out): accept any
            // sequence, as Kafka does.
            return SequenceCheck::Append;
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch;
        }
        if header.producer_epoch > entry.epoch {
            // A bumped epoch restarts the sequence at zero.
            return if header.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        let last_sequence = header.last_sequence();
        if let Some(dup) = entry
            .recent
            .iter()
            .find(|m| m.first_sequence == header.base_sequence && m.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
            };
        }
        match entry.recent.back() {
            Some(last) if !in_sequence(last.last_sequence, header.base_sequence) => SequenceCheck::OutOfOrder,
            _ => SequenceCheck::Append,
        }
    }

    pub fn limits(&self) -> ProducerLimits {
        self.limits
    }

    pub fn set_limits(&mut self, limits: ProducerLimits) {
        self.limits = limits;
        while self.producers.len() > limits.max_producers {
            self.evict_least_recent();
        }
    }

    /// Records an appended batch (also used when replaying the log at startup).
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64, now_ms: i64) {
        if header.producer_id < 0 || header.base_sequence < 0 {
            return;
        }
        if self.producers.len() >= self.limits.max_producers && !self.producers.contains_key(&header.producer_id) {
            self.evict_least_recent();
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        entry.last_timestamp = header.max_timestamp;
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset,
        });
    }

    /// Records a transaction marker: a newer epoch in it fences the
    /// producer's older epochs here (their batches get StaleEpoch) and
    /// restarts its sequence.
    pub fn record_marker(&mut self, header: &BatchHeader, now_ms: i64) {
        if header.producer_id < 0 {
            return;
        }
        if self.producers.len() >= self.limits.max_producers && !self.producers.contains_key(&header.producer_id) {
            self.evict_least_recent();
        }
        let entry = self.producers.entry(header.producer_id).or_insert_with(|| ProducerEntry {
            epoch: header.producer_epoch,
            last_timestamp: -1,
            ..ProducerEntry::default()
        });
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.recent.clear();
        }
    }

    /// Every producer with state here, by id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.recent.back().map_or(-1, |b| b.last_sequence),
                last_timestamp: e.last_timestamp,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Producers with state in this partition.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Forgets producers not seen for `expiration_ms`. Returns how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let horizon = now_ms.saturating_sub(self.limits.expiration_ms);
        self.producers.retain(|_, e| e.last_seen_ms >= horizon);
        before - self.producers.len()
    }

    /// Makes room: forgets the least recently seen tenth (at least one), so
    /// a flood of new ids costs one sort per tenth of the table, not per batch.
    fn evict_least_recent(&mut self) {
        let mut seen: Vec<(i64, i64)> = self.producers.iter().map(|(id, e)| (e.last_seen_ms, *id)).collect();
        let count = (self.limits.max_producers / 10).max(1).min(seen.len());
        if count == 0 {
            return;
        }
        seen.select_nth_unstable(count - 1);
        for (_, id) in &seen[..count] {
            self.producers.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: count,
        }
    }

    #[test]
    fn non_idempotent_batches_always_append() {
        let table = ProducerStateTable::default();
        assert_eq!(table.check(&header(-1, -1, -1, 3)), SequenceCheck::Append);
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut table = ProducerStateTable::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(table.check(&first), SequenceCheck::Append);
        table.record(&first, 100, 0);
        let second = header(7, 0, 3, 2);
        assert_eq!(table.check(&second), SequenceCheck::Append);
        table.record(&second, 103, 0);
        assert_eq!(table.check(&first), SequenceCheck::Duplicate { base_offset: 100 });
        assert_eq!(table.check(&second), SequenceCheck::Duplicate { base_offset: 103 });
    }

    #[test]
    fn a_marker_at_a_newer_epoch_fences_the_older_one() {
        let mut table = ProducerStateTable::default();
        table.record(&header(7, 0, 0, 3), 0, 0);
        table.record_marker(&header(7, 1, -1, 1), 0);
        assert_eq!(table.check(&header(7, 0, 3, 1)), SequenceCheck::StaleEpoch);
        assert_eq!(table.check(&header(7, 1, 0, 1)), SequenceCheck::Append);
        // A marker for an unknown producer fences too.
        table.record_marker(&header(9, 4, -1, 1), 0);
        assert_eq!(table.check(&header(9, 3, 0, 1)), SequenceCheck::StaleEpoch);
        // An older marker changes nothing.
        table.record_marker(&header(7, 0, -1, 1), 0);
        assert_eq!(table.check(&header(7, 1, 0, 1)), SequenceCheck::Append);
    }

    #[test]
    fn gap_is_out_of_order() {
        let mut table = ProducerStateTable::default();
        table.record(&header(7, 0, 0, 3), 0, 0);
        assert_eq!(table.check(&header(7, 0, 5, 1)), SequenceCheck::OutOfOrder);
    }

    #[test]
    fn older_epoch_is_stale_and_new_epoch_restarts_at_zero() {
        let mut table = ProducerStateTable::default();
        table.record(&header(7, 3, 0, 1), 0, 0);
        assert_eq!(table.check(&header(7, 2, 1, 1)), SequenceCheck::StaleEpoch);
        assert_eq!(table.check(&header(7, 4, 0, 1)), SequenceCheck::Append);
        assert_eq!(table.check(&header(7, 4, 9, 1)), SequenceCheck::OutOfOrder);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for i in 0..6 {
            table.record(&header(1, 0, i, 1), i as i64, 0);
        }
        assert_eq!(table.check(&header(1, 0, 0, 1)), SequenceCheck::OutOfOrder);
        assert_eq!(table.check(&header(1, 0, 1, 1)), SequenceCheck::Duplicate { base_offset: 1 });
    }

    #[test]
    fn sequence_wraps_to_zero() {
        let mut table = ProducerStateTable::default();
        table.record(&header(1, 0, i32::MAX, 1), 0, 0);
        assert_eq!(table.check(&header(1, 0, 0, 1)), SequenceCheck::Append);
    }

    #[test]
    fn producers_expire_and_the_table_stays_within_its_bound() {
        let mut table = ProducerStateTable::default();
        table.set_limits(ProducerLimits {
            max_producers: 100,
            expiration_ms: 1000,
        });
        for id in 0..1000 {
            table.record(&header(id, 0, 0, 1), id, id);
        }
        assert!(table.producer_count() <= 100, "{} producers kept", table.producer_count());
        assert_eq!(
            table.check(&header(999, 0, 0, 1)),
            SequenceCheck::Duplicate { base_offset: 999 },
            "the most recent are kept"
        );
        assert_eq!(table.check(&header(0, 0, 5, 1)), SequenceCheck::Append, "the oldest were forgotten");
        table.record(&header(5000, 0, 0, 1), 0, 5000);
        let kept = table.producer_count();
        assert_eq!(table.expire(5500), kept - 1);
        assert_eq!(table.producer_count(), 1, "only the producer seen within a second is left");
    }

    #[test]
    fn active_producers_report_their_last_batch() {
        let mut table = ProducerStateTable::default();
        let mut batch = header(7, 2, 0, 3);
        batch.max_timestamp = 1234;
        table.record(&batch, 10, 0);
        table.record_marker(&header(9, 1, -1, 1), 0);
        assert_eq!(
            table.active(),
            vec![
                ActiveProducer {
                    producer_id: 7,
                    epoch: 2,
                    last_sequence: 2,
                    last_timestamp: 1234
                },
                ActiveProducer {
                    producer_id: 9,
                    epoch: 1,
                    last_sequence: -1,
                    last_timestamp: -1
                },
            ]
        );
    }
}
