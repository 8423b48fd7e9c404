//! Fetch: batches from the local log as stored, never past the high
//! watermark, with long polling on max.wait.ms / min.bytes, and fetch
//! sessions (KIP-227, protocol::fetch_session).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::timing::Waits;
use super::{encode_response, error_code, RequestContext, Response};
use crate::broker::{Broker, Partition, Topic};
use crate::log::LogError;
use crate::memory::Reservation;

use crate::security::acl::{Operation, ResourceType};
use std::collections::HashSet;

const READ_COMMITTED: i8 = 1;

pub(super) async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: FetchRequest) -> Response {
    if req.replica_id.0 >= 0 {
        return super::replica_fetch::handle(broker, ctx, req).await;
    }
    // From here `req` names every partition to read: an incremental
    // fetch's are its session's.
    let plan = match super::fetch_session::begin(broker, ctx, req) {
        Ok(plan) => plan,
        Err(refused) => {
            let response = FetchResponse::default().with_error_code(refused.code());
            return encode_response(ctx, &response).into();
        }
    };
    // A consumer over its byte-rate quota is answered at once, with
    // nothing read, and told how long to wait (Kafka's throttled response).
    let (owed_ms, quota_cap) = super::throttle::fetch_admission(broker, ctx);
    if owed_ms > 0 {
        crate::quota::count_throttle(&broker.metrics, crate::quota::QuotaKind::ConsumerByteRate, owed_ms);
        let mut response = FetchResponse::default().with_throttle_time_ms(owed_ms);
        plan.finish(&mut response);
        return Response {
            frame: encode_response(ctx, &response),
            memory: Reservation::none(),
            throttle_ms: owed_ms,
            waits: Waits::default(),
        };
    }
    let req = &plan.request;
    let max_wait = Duration::from_millis((req.max_wait_ms.max(0) as u64).min(broker.config.fetch_max_wait_ms));
    let mut deadline = tokio::time::Instant::now() + max_wait;
    let want = (req.max_bytes.max(0) as usize)
        .min(broker.config.fetch_max_bytes)
        .min(quota_cap.unwrap_or(usize::MAX));
    // Topics the requester may not read are answered TOPIC_AUTHORIZATION_FAILED
    // and never read or watched.
    let denied: HashSet<String> = req
        .topics
        .iter()
        .map(|t| t.topic.0.to_string())
        .filter(|name| !ctx.allowed(broker, Operation::Read, ResourceType::Topic, name))
        .collect();
    // Only appends to the partitions this fetch asks for wake it: a long
    // poll on an idle partition costs nothing to producers elsewhere.
    // A fetch that may not wait (max_wait_ms 0) watches nothing.
    let watched = if max_wait.is_zero() {
        Vec::new()
    } else {
        requested_partitions(broker, req, &denied)
    };
    // The long poll for data: waiting the client asked for.
    let mut polled = Duration::ZERO;
    loop {
        // Register for wake-ups before reading, so an append (or a release
        // of response memory) between the read and the wait is not missed.
        let mut wakeups: Vec<_> = watched.iter().map(|p| Box::pin(p.data_arrived())).collect();
        for w in &mut wakeups {
            w.as_mut().enable();
        }
        let memory_released = broker.response_memory.released();
        tokio::pin!(memory_released);
        memory_released.as_mut().enable();
        // The bytes this pass may read: its share of the broker-wide budget.
        let mut memory = broker.response_memory.reserve_up_to(want);
        let mut pass = read_once(broker, req, &denied, want, &mut memory).await;
        let out_of_time = tokio::time::Instant::now() >= deadline;
        let done =
            pass.bytes >= req.min_bytes.max(0) as usize || pass.has_error || (wakeups.is_empty() && !pass.memory_short) || out_of_time;
        if pass.memory_short {
            broker.metrics.fetch_memory_waits.inc();
        }
        if done {
            for (topic, bytes) in &pass.served {
                topic.metrics.fetch_bytes.inc_by(*bytes as u64);
            }
            plan.finish(&mut pass.response);
            let throttle_ms = super::throttle::fetch_served(broker, ctx, pass.bytes);
            pass.response.throttle_time_ms = throttle_ms;
            let frame = encode_response(ctx, &pass.response);
            // The records now live in `frame` alone.
            drop(pass);
            memory.shrink_to(frame.len());
            return Response {
                frame,
                memory,
                throttle_ms,
                waits: Waits {
                    by_design: polled,
                    ..Waits::default()
                },
            };
        }
        let memory_short = pass.memory_short;
        drop(pass);
        drop(memory);
        let data_arrived = async move {
            if wakeups.is_empty() {
                std::future::pending::<()>().await;
            }
            futures::future::select_all(wakeups).await;
        };
        let waiting = tokio::time::Instant::now();
        tokio::select! {
            _ = data_arrived => {
                broker.metrics.fetch_wakeups.inc();
            }
            _ = &mut memory_released, if memory_short => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // Shutting down: answer now rather than hold the drain up.
            _ = broker.stopping.cancelled() => deadline = tokio::time::Instant::now(),
        }
        // Waiting for response memory is the broker's slowness, not the
        // client's wish.
        if !memory_short {
            polled += waiting.elapsed();
        }
    }
}

/// The partitions a fetch names that exist here (less the `denied` topics).
pub(super) fn requested_partitions(broker: &Broker, req: &FetchRequest, denied: &HashSet<String>) -> Vec<Arc<Partition>> {
    req.topics
        .iter()
        .filter(|t| !denied.contains(t.topic.0.as_str()))
        .filter_map(|t| broker.topic(t.topic.0.as_str()).map(|topic| (topic, t)))
        .flat_map(|(topic, t)| t.partitions.iter().filter_map(move |p| topic.partition(p.partition)))
        .collect()
}

/// What one pass over the requested partitions found.
struct Pass {
    response: FetchResponse,
    bytes: usize,
    has_error: bool,
    /// The response memory budget was used up: some partitions were not read.
    memory_short: bool,
    /// Bytes served per topic, counted only if this pass becomes the response.
    served: Vec<(Arc<Topic>, usize)>,
}

/// One pass over the requested partitions, reading no more than `memory`
/// holds (growing it only for a first batch larger than it, KIP-74).
async fn read_once(broker: &Broker, req: &FetchRequest, denied: &HashSet<String>, want: usize, memory: &mut Reservation) -> Pass {
    let mut remaining = memory.bytes();
    let mut pass = Pass {
        response: FetchResponse::default(),
        bytes: 0,
        has_error: false,
        memory_short: remaining == 0 && want > 0,
        served: Vec::new(),
    };
    for fetch_topic in &req.topics {
        let before = pass.bytes;
        let name = fetch_topic.topic.0.to_string();
        let topic = broker.topic(&name);
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        for fp in &fetch_topic.partitions {
            let mut pd = PartitionData::default().with_partition_index(fp.partition);
            pd.aborted_transactions = (req.isolation_level == READ_COMMITTED).then(Vec::new);
            if denied.contains(&name) {
                pd.error_code = ResponseError::TopicAuthorizationFailed.code();
                pass.has_error = true;
                partitions.push(pd);
                continue;
            }
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                pd.error_code = ResponseError::UnknownTopicOrPartition.code();
                pass.has_error = true;
                partitions.push(pd);
                continue;
            };
            // Consumers read from the leader only, at its epoch (KIP-320).
            if let Err(refusal) = partition.lead_at(fp.current_leader_epoch) {
                pd.error_code = refusal.code();
                pass.has_error = true;
                partitions.push(pd);
                continue;
            }
            let high_watermark = partition.high_watermark();
            let last_stable_offset = partition.last_stable_offset();
            pd.high_watermark = high_watermark;
            pd.last_stable_offset = last_stable_offset;
            // read_committed stops at the last stable offset (KIP-98).
            let read_committed = req.isolation_level == READ_COMMITTED;
            let upper_bound = if read_committed { last_stable_offset } else { high_watermark };
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            // At the upper bound there is nothing to read: an idle consumer's
            // usual fetch, answered without touching the log.
            let read = if pass.memory_short || (limit == 0 && pass.bytes > 0) || fp.fetch_offset == upper_bound {
                Ok(Bytes::new())
            } else {
                read_partition(broker, &partition, fp.fetch_offset, limit.max(1), upper_bound).await
            };
            pd.log_start_offset = partition.log_start_offset().unwrap_or(-1);
            match read {
                // Only the first data in a response may exceed the limits
                // (KIP-74), so a consumer always progresses.
                Ok(bytes) if pass.bytes > 0 && bytes.len() > limit => pd.records = Some(Bytes::new()),
                Ok(bytes) => {
                    let unreserved = bytes.len().saturating_sub(memory.bytes().saturating_sub(pass.bytes));
                    if unreserved > 0 && !grow_for_first_batch(broker, memory, unreserved, bytes.len()) {
                        pass.memory_short = true;
                        pd.records = Some(Bytes::new());
                    } else {
                        if read_committed {
                            pd.aborted_transactions = Some(aborted_transactions(&partition, fp.fetch_offset, &bytes));
                        }
                        pass.bytes += bytes.len();
                        remaining = remaining.saturating_sub(bytes.len());
                        pd.records = Some(bytes);
                    }
                }
                Err(e) => {
                    pd.error_code = error_code::log_error(&e);
                    pass.has_error = true;
                    if !matches!(e, crate::log::LogError::OffsetOutOfRange { .. }) {
                        tracing::warn!(topic = %name, partition = fp.partition, error = %e, "fetch read failed");
                    }
                }
            }
            partitions.push(pd);
        }
        if let (Some(t), true) = (&topic, pass.bytes > before) {
            pass.served.push((t.clone(), pass.bytes - before));
        }
        pass.response.responses.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    pass
}

/// Makes room for a first batch larger than the reservation. A batch larger
/// than the whole budget is let through over it: waiting could never serve it.
fn grow_for_first_batch(broker: &Broker, memory: &mut Reservation, more: usize, batch_len: usize) -> bool {
    let budget = &broker.response_memory;
    if budget.try_grow(memory, more) {
        return true;
    }
    if batch_len > budget.limit() {
        budget.force_grow(memory, more);
        return true;
    }
    false
}

/// The aborted transactions a read_committed consumer must skip in
/// `records`, read from `from`. Archived records need none: the archive
/// holds committed records only.
fn aborted_transactions(partition: &Partition, from: i64, records: &Bytes) -> Vec<AbortedTransaction> {
    let Some(end) = crate::log::batch::BatchWalker::new(records)
        .last()
        .map(|(h, _)| h.last_offset() + 1)
    else {
        return Vec::new();
    };
    partition
        .aborted_in(from, end)
        .into_iter()
        .map(|a| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}

/// Reads from the local log, or from the archive below the local log's
/// start: a consumer sees one log either way. Never past `upper_bound`
/// (the high watermark, or the last stable offset for read_committed).
async fn read_partition(
    broker: &Broker,
    partition: &Partition,
    offset: i64,
    max_bytes: usize,
    upper_bound: i64,
) -> Result<Bytes, LogError> {
    let high_watermark = partition.high_watermark();
    let local_start = partition.lock_log().log_start_offset();
    // Below the start consumers see (the archive's, or DeleteRecords') there is nothing.
    let log_start = partition.start_seen_by_consumers(local_start);
    if offset < log_start {
        return Err(LogError::OffsetOutOfRange {
            offset,
            log_start,
            log_end: high_watermark,
        });
    }
    if offset < local_start {
        let manifest = partition.manifest();
        // An object may hold no rows past `offset` (batches that could not be
        // archived): move on to the next object rather than answer empty.
        let mut next = offset;
        while let Some(object) = manifest.find(next).filter(|o| o.first_offset < local_start) {
            let bytes = broker.archive.read(object, next, max_bytes).await.map_err(|e| {
                tracing::warn!(topic = %partition.topic, partition = partition.index, offset, error = %e, "archive read failed");
                LogError::Io(std::io::Error::other(e.to_string()))
            })?;
            if !bytes.is_empty() {
                return Ok(bytes);
            }
            next = object.last_offset + 1;
        }
        // A gap between the archive and the local log: continue locally.
        return partition.read(local_start, max_bytes, upper_bound).await;
    }
    partition.read(offset, max_bytes, upper_bound).await
}
