//! Produce: validate each partition's batches record by record, append them
//! now (in arrival order), then wait for durability before answering (acks 1
//! and all; a single node is its own in-sync replica set).

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::{encode_response, error_code, str_bytes, RequestContext, ResponseFuture};
use crate::broker::partition::AckWaits;
use crate::broker::replica::{AckError, ProduceRefusal};
use crate::broker::{Broker, TopicError};
use crate::clock::now_ms;
use crate::log::batch;
use crate::log::records::RecordRules;
use crate::metrics::{ErrorLabels, Metrics};
use crate::security::acl::{Operation, ResourceType};
use crate::topic_config::TopicCompression;
use crate::txn::state::TxnError;
use crate::txn::CoordinatorError;

struct Pending {
    response: PartitionProduceResponse,
    /// Offset that must be acknowledged (durable, or committed for acks=all)
    /// before this partition is answered, and the leadership term it was
    /// appended in.
    wait: Option<(Arc<crate::broker::Partition>, i64, u64)>,
}

/// Splits, validates record by record, then appends one partition's batches.
async fn validate_and_append(
    broker: &Broker,
    topic: &crate::broker::Topic,
    partition: &crate::broker::Partition,
    records: &bytes::Bytes,
    write: Option<(TransactionalWrite<'_>, Verified)>,
) -> Result<(crate::log::AppendResult, u64), ProduceRefusal> {
    let batches = batch::split_batches(records).map_err(crate::log::LogError::from)?;
    let config = topic.config();
    let max_message_bytes = config.log_config().max_message_bytes;
    let now = now_ms();
    let rules = RecordRules {
        keyed: config.compact_policy,
        timestamps: (!config.log_append_time).then(|| {
            (
                now.saturating_sub(config.timestamp_before_max_ms),
                now.saturating_add(config.timestamp_after_max_ms),
            )
        }),
    };
    broker
        .validator
        .validate(&batches, max_message_bytes, rules)
        .await
        .map_err(crate::log::LogError::from)?;
    let batches = match config.compression {
        TopicCompression::Producer => batches,
        TopicCompression::Codec { codec, level } => broker
            .validator
            .recompress(batches, codec, level, max_message_bytes)
            .await
            .map_err(crate::log::LogError::from)?,
    };
    // Read after validation, which may have waited: LogAppendTime is the
    // time of the append.
    // Again under the partition lock, which markers take too: a write
    // verified there lands before its transaction's marker.
    let verify = |log: &crate::log::PartitionLog| {
        let checked = match write {
            None => Ok(()),
            Some((write, Verified::Here)) => verify_write(broker, write, &partition.topic, partition.index),
            Some((write, Verified::Elsewhere { markers_seen })) => {
                if log.markers_seen() == markers_seen || log.has_open_txn(write.producer_id) {
                    Ok(())
                } else {
                    // A marker came while the coordinator was asked: it may
                    // have ended this producer's transaction.
                    Err((
                        ResponseError::NotEnoughReplicas.code(),
                        "a transaction ended while the write was verified; retry".to_string(),
                    ))
                }
            }
        };
        checked.map_err(|(code, message)| ProduceRefusal::Refused { code, message })
    };
    partition.append_verified(&batches, now_ms(), verify)
}

/// How a transactional write was verified before its append; checked again
/// under the partition lock.
#[derive(Clone, Copy)]
enum Verified {
    /// This broker coordinates the transactional id: its table is read
    /// again under the lock.
    Here,
    /// In a cluster, another broker coordinates it: the producer's
    /// transaction was open in this partition, or the coordinator said the
    /// partition is in it, when the log had seen `markers_seen` markers.
    /// The write stands if no marker came since, or the transaction is open.
    Elsewhere { markers_seen: u64 },
}

/// Verifies a transactional write before its append (KIP-890 part 1).
async fn verify_before_append(
    broker: &Broker,
    write: TransactionalWrite<'_>,
    partition: &crate::broker::Partition,
) -> Result<Verified, (i16, String)> {
    let cluster = match (broker.transactions.here(write.transactional_id), &broker.cluster) {
        (Ok(_), _) | (Err(_), None) => {
            return verify_write(broker, write, &partition.topic, partition.index).map(|()| Verified::Here);
        }
        (Err(_), Some(cluster)) => cluster,
    };
    let (open, markers_seen) = {
        let log = partition.lock_log();
        (log.has_open_txn(write.producer_id), log.markers_seen())
    };
    // The producer's transaction is open here already: the coordinator
    // added this partition; the log checks the epoch.
    if !open {
        crate::cluster::transactions::verify_remotely(
            broker,
            cluster,
            (write.transactional_id, write.producer_id, write.producer_epoch),
            &partition.topic,
            partition.index,
        )
        .await?;
    }
    Ok(Verified::Elsewhere { markers_seen })
}

/// A transactional write: the producer's transactional id, id and epoch.
#[derive(Clone, Copy)]
struct TransactionalWrite<'a> {
    transactional_id: &'a str,
    producer_id: i64,
    producer_epoch: i16,
}

/// Transactional data needs a transactional id, and a transactional id
/// needs transactional data of one producer: the write to verify, if any.
fn transactional_write<'a>(
    transactional_id: Option<&'a str>,
    records: &bytes::Bytes,
) -> Result<Option<TransactionalWrite<'a>>, (i16, String)> {
    let mut headers = batch::BatchWalker::new(records).map(|(header, _)| header);
    let Some(first) = headers.next() else { return Ok(None) };
    let transactional = first.is_transactional();
    if headers.any(|h| h.is_transactional() != transactional || (transactional && h.producer_id != first.producer_id)) {
        return Err((
            ResponseError::InvalidRecord.code(),
            "a partition's transactional batches must all be one producer's, with no other batches".to_string(),
        ));
    }
    match transactional_id {
        None if transactional => Err((
            ResponseError::InvalidRecord.code(),
            "transactional batches need a transactional id".to_string(),
        )),
        None => Ok(None),
        Some(_) if !transactional => Err((
            ResponseError::InvalidRecord.code(),
            "a transactional producer's batches must be transactional".to_string(),
        )),
        Some(transactional_id) => Ok(Some(TransactionalWrite {
            transactional_id,
            producer_id: first.producer_id,
            producer_epoch: first.producer_epoch,
        })),
    }
}

/// KIP-890 part 1: the partition must be in the producer's open
/// transaction, at its current epoch, so a late or zombie write cannot
/// open a transaction no marker ends.
fn verify_write(broker: &Broker, write: TransactionalWrite<'_>, topic: &str, partition: i32) -> Result<(), (i16, String)> {
    broker
        .transactions
        .verify_write(write.transactional_id, write.producer_id, write.producer_epoch, topic, partition)
        .map_err(|e| {
            let code = match e {
                CoordinatorError::Txn(TxnError::Fenced) => ResponseError::InvalidProducerEpoch.code(),
                _ => ResponseError::InvalidTxnState.code(),
            };
            (code, format!("the partition is not in the producer's open transaction ({e:?})"))
        })
}

/// Counts a partition answered with an error, by the error's name.
fn count_error(metrics: &Metrics, code: i16) {
    metrics
        .produce_errors
        .get_or_create(&ErrorLabels {
            error: error_code::name(code),
        })
        .inc();
}

/// Validates and appends every partition's batches now, in the order the
/// request arrived; the returned future waits for durability and answers.
pub(super) async fn handle(broker: &Arc<Broker>, ctx: RequestContext, req: ProduceRequest) -> ResponseFuture {
    let acks = req.acks;
    let mut topics: Vec<(kafka_protocol::messages::TopicName, Vec<Pending>)> = Vec::with_capacity(req.topic_data.len());
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        // Produce never creates topics, as in Kafka: the producer's Metadata
        // request does (auto_create_topics), and a missing topic gets the
        // retriable UNKNOWN_TOPIC_OR_PARTITION so the client refreshes it.
        let topic = broker.topic(&name);
        let topic_err = if !matches!(acks, -1..=1) {
            Some(ResponseError::InvalidRequiredAcks.code())
        } else if req
            .transactional_id
            .as_ref()
            .is_some_and(|id| !ctx.allowed(broker, Operation::Write, ResourceType::TransactionalId, id.0.as_str()))
        {
            Some(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else if !ctx.allowed(broker, Operation::Write, ResourceType::Topic, &name) {
            Some(ResponseError::TopicAuthorizationFailed.code())
        } else if topic.is_none() {
            Some(match crate::broker::validate_topic_name(&name) {
                Err(e) => e.code(),
                Ok(()) => TopicError::Unknown(name.clone()).code(),
            })
        } else {
            None
        };
        let mut pendings = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            let mut response = PartitionProduceResponse::default().with_index(pd.index).with_base_offset(-1);
            let mut wait = None;
            let result = match (&topic_err, &topic) {
                (Some(code), _) => Err((*code, None)),
                (None, Some(topic)) => match topic.partition(pd.index) {
                    None => Err((ResponseError::UnknownTopicOrPartition.code(), None)),
                    Some(_) if broker.over_disk_budget() => {
                        // Retriable: clears once tiering drains and archived
                        // local segments are evicted.
                        broker.metrics.produce_refused_disk_budget.inc();
                        Err((
                            ResponseError::KafkaStorageError.code(),
                            Some("local disk budget used up while the archive catches up; retry".to_string()),
                        ))
                    }
                    Some(partition) if acks == -1 && partition.leader_epoch().is_some() && !partition.enough_in_sync() => {
                        // Nothing is appended: the ISR is below min.insync.replicas.
                        Err((ResponseError::NotEnoughReplicas.code(), None))
                    }
                    Some(partition) => {
                        let records = pd.records.unwrap_or_default();
                        let transactional_id = req.transactional_id.as_ref().map(|id| id.0.as_str());
                        // Verified before validation too, so a fenced
                        // producer's data is refused before it is decompressed.
                        let checked = match transactional_write(transactional_id, &records) {
                            Ok(Some(write)) => verify_before_append(broker, write, &partition)
                                .await
                                .map(|verified| Some((write, verified))),
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        };
                        match checked {
                            Err((code, message)) => Err((code, Some(message))),
                            Ok(write) => match validate_and_append(broker, topic, &partition, &records, write).await {
                                Ok((appended, term)) => {
                                    topic.metrics.produce_bytes.inc_by(records.len() as u64);
                                    broker.add_local_bytes(records.len() as u64);
                                    topic.metrics.produce_records.inc_by(appended.records as u64);
                                    response.base_offset = appended.base_offset;
                                    response.log_append_time_ms = appended.log_append_time_ms.unwrap_or(-1);
                                    // The start a consumer sees: the archive's, if it holds anything.
                                    response.log_start_offset = partition.start_seen_by_consumers(appended.log_start_offset);
                                    wait = Some((partition.clone(), appended.next_offset, term));
                                    Ok(())
                                }
                                Err(ProduceRefusal::NotLeader) => Err((ResponseError::NotLeaderOrFollower.code(), None)),
                                Err(ProduceRefusal::Refused { code, message }) => Err((code, Some(message))),
                                Err(ProduceRefusal::Log(e)) => {
                                    tracing::debug!(topic = %name, partition = pd.index, error = %e, "produce refused");
                                    Err((error_code::log_error(&e), Some(e.to_string())))
                                }
                            },
                        }
                    }
                },
                (None, None) => Err((ResponseError::UnknownTopicOrPartition.code(), None)),
            };
            if let Err((code, message)) = result {
                count_error(&broker.metrics, code);
                response.error_code = code;
                response.error_message = message.map(str_bytes);
            }
            pendings.push(Pending { response, wait });
        }
        topics.push((topic_data.name, pendings));
    }
    let broker = broker.clone();
    // Produce's timeout_ms bounds the wait for acknowledgements (REQUEST_TIMED_OUT).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    Box::pin(async move {
        let mut response = ProduceResponse::default();
        let mut waited = AckWaits::default();
        for (name, pendings) in topics {
            let mut partition_responses = Vec::with_capacity(pendings.len());
            for mut p in pendings {
                if let (Some((partition, offset, term)), true) = (p.wait, acks != 0) {
                    let acknowledged =
                        tokio::time::timeout_at(deadline, partition.wait_acknowledged(offset, term, acks == -1, &mut waited)).await;
                    let refusal = match acknowledged {
                        Ok(Ok(())) => None,
                        Ok(Err(AckError::Storage(message))) => Some((ResponseError::KafkaStorageError, Some(message))),
                        Ok(Err(AckError::NotLeader)) => Some((ResponseError::NotLeaderOrFollower, None)),
                        Ok(Err(AckError::NotEnoughReplicasAfterAppend)) => Some((ResponseError::NotEnoughReplicasAfterAppend, None)),
                        Err(_) => Some((ResponseError::RequestTimedOut, None)),
                    };
                    if let Some((error, message)) = refusal {
                        p.response.error_code = error.code();
                        p.response.error_message = message.map(str_bytes);
                        count_error(&broker.metrics, error.code());
                    }
                }
                partition_responses.push(p.response);
            }
            response.responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partition_responses),
            );
        }
        if acks == 0 {
            return None;
        }
        let mut response: super::Response = encode_response(&ctx, &response).into();
        response.waits.fsync = waited.local;
        response.waits.replication = waited.replication;
        Some(response)
    })
}
