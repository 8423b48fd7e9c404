//! Fetch from a follower (replica_id >= 0): the leader checks the follower's
//! epoch and history (DivergingEpoch, KIP-279/KAFKA-10554), counts its fetch
//! offset as the acknowledgement of everything below, and answers with
//! batches up to its log end (not the high watermark). A fetch with nothing
//! new waits for the next append, not for the next fsync, so the leader's
//! flush and the followers' copies overlap.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{EpochEndOffset, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use super::timing::Waits;
use super::{encode_response, error_code, RequestContext, Response};
use crate::broker::replica::ReplicaFetch;
use crate::broker::Broker;
use crate::clock::now_ms;

pub(super) async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: FetchRequest) -> Response {
    let replica = req.replica_id.0;
    // Only brokers replicate (Kafka: CLUSTER_ACTION on the cluster).
    if !ctx.on_cluster(broker, crate::security::acl::Operation::ClusterAction) {
        let response = kafka_protocol::messages::FetchResponse::default()
            .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code());
        return Response::from(super::encode_response(ctx, &response));
    }
    let max_wait = Duration::from_millis((req.max_wait_ms.max(0) as u64).min(broker.config.fetch_max_wait_ms));
    let deadline = tokio::time::Instant::now() + max_wait;
    let want = (req.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes);
    let watched = super::fetch::requested_partitions(broker, &req, &Default::default());
    // The long poll for data: waiting the follower asked for.
    let mut polled = Duration::ZERO;
    loop {
        let mut wakeups: Vec<_> = watched.iter().map(|p| Box::pin(p.appended())).collect();
        for w in &mut wakeups {
            w.as_mut().enable();
        }
        let mut memory = broker.response_memory.reserve_up_to(want);
        let (response, bytes, news) = read_once(broker, replica, &req, memory.bytes()).await;
        if bytes > 0 || news || wakeups.is_empty() || tokio::time::Instant::now() >= deadline {
            let frame = encode_response(ctx, &response);
            drop(response);
            memory.shrink_to(frame.len());
            return Response {
                frame,
                memory,
                throttle_ms: 0,
                waits: Waits {
                    by_design: polled,
                    ..Waits::default()
                },
            };
        }
        drop(memory);
        let waiting = tokio::time::Instant::now();
        tokio::select! {
            _ = futures::future::select_all(wakeups) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = broker.stopping.cancelled() => {}
        }
        polled += waiting.elapsed();
    }
}

/// One pass: the response, the bytes read, and whether it has news that
/// must go out without waiting (an error, a divergence, a moved high
/// watermark).
async fn read_once(broker: &Broker, replica: i32, req: &FetchRequest, budget: usize) -> (FetchResponse, usize, bool) {
    let mut response = FetchResponse::default();
    let mut remaining = budget;
    let mut bytes = 0;
    let mut news = false;
    let now = now_ms();
    for fetch_topic in &req.topics {
        let topic = broker.topic(fetch_topic.topic.0.as_str());
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        for fp in &fetch_topic.partitions {
            let mut pd = PartitionData::default().with_partition_index(fp.partition);
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                pd.error_code = ResponseError::UnknownTopicOrPartition.code();
                news = true;
                partitions.push(pd);
                continue;
            };
            let answer = partition.on_replica_fetch(replica, fp.current_leader_epoch, fp.last_fetched_epoch, fp.fetch_offset, now);
            pd.log_start_offset = partition.lock_log().log_start_offset();
            match answer {
                Err(e) => {
                    pd.error_code = e.code();
                    news = true;
                }
                Ok((
                    ReplicaFetch::Diverging {
                        epoch,
                        end_offset,
                        high_watermark,
                    },
                    _,
                )) => {
                    pd.high_watermark = high_watermark;
                    pd.diverging_epoch = EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset);
                    news = true;
                }
                Ok((
                    ReplicaFetch::Read {
                        log_end,
                        high_watermark,
                        proposal_pending,
                        high_watermark_moved,
                    },
                    _,
                )) => {
                    news |= high_watermark_moved;
                    if proposal_pending {
                        if let Some(cluster) = &broker.cluster {
                            cluster.request_isr_change(&partition.topic, partition.index);
                        }
                    }
                    pd.high_watermark = high_watermark;
                    pd.last_stable_offset = high_watermark;
                    if fp.fetch_offset < pd.log_start_offset || fp.fetch_offset > log_end {
                        pd.error_code = ResponseError::OffsetOutOfRange.code();
                        news = true;
                    } else if fp.fetch_offset < log_end && remaining > 0 {
                        let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining).max(1);
                        match partition.read(fp.fetch_offset, limit, log_end).await {
                            Ok(read) => {
                                bytes += read.len();
                                remaining = remaining.saturating_sub(read.len());
                                pd.records = Some(read);
                            }
                            Err(e) => {
                                pd.error_code = error_code::log_error(&e);
                                news = true;
                            }
                        }
                    }
                }
            }
            if pd.records.is_none() {
                pd.records = Some(Bytes::new());
            }
            partitions.push(pd);
        }
        response.responses.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    (response, bytes, news)
}
