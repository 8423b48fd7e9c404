//! The transactional APIs: InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn,
//! DescribeTransactions and ListTransactions. The rules are in
//! `txn::state`; this module decodes, authorizes and maps errors to
//! Kafka's codes. In a cluster each transactional id has one coordinator
//! (`cluster::transactions`); other brokers answer NOT_COORDINATOR. There,
//! TxnOffsetCommit goes to the group's coordinator, which holds the offsets
//! until the transaction's marker reaches the group's offsets partition.
//! AddPartitionsToTxn v4 is the brokers' produce verification (KIP-890).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::cluster::offsets::{partition_for, OFFSETS_TOPIC};
use crate::groups::coordinator::CommitFrom;
use crate::groups::offsets::CommittedOffset;
use crate::security::acl::{Operation, ResourceType};
use crate::txn::state::{PendingOffset, TxnError};
use crate::txn::CoordinatorError;

/// The error code for a coordinator refusal. `fenced_is_new`: the request
/// version knows PRODUCER_FENCED (older ones get INVALID_PRODUCER_EPOCH).
pub(super) fn code_of(error: &CoordinatorError, fenced_is_new: bool) -> i16 {
    match error {
        CoordinatorError::Txn(TxnError::Fenced) if fenced_is_new => ResponseError::ProducerFenced.code(),
        CoordinatorError::Txn(TxnError::Fenced) => ResponseError::InvalidProducerEpoch.code(),
        CoordinatorError::Txn(TxnError::InvalidProducerIdMapping) | CoordinatorError::UnknownId => {
            ResponseError::InvalidProducerIdMapping.code()
        }
        CoordinatorError::Txn(TxnError::InvalidState) => ResponseError::InvalidTxnState.code(),
        CoordinatorError::Txn(TxnError::Concurrent) => ResponseError::ConcurrentTransactions.code(),
        CoordinatorError::Txn(TxnError::InvalidTimeout) => ResponseError::InvalidTransactionTimeout.code(),
        CoordinatorError::Full | CoordinatorError::Unavailable(_) => ResponseError::CoordinatorNotAvailable.code(),
        CoordinatorError::NotHere(code) => *code,
    }
}

/// `None` if this broker coordinates the id now, else the code to answer.
fn not_here(broker: &Broker, transactional_id: &str) -> Option<i16> {
    broker.transactions.here(transactional_id).err().map(|e| code_of(&e, true))
}

fn may_write(broker: &Broker, ctx: &RequestContext, transactional_id: &str) -> bool {
    ctx.allowed(broker, Operation::Write, ResourceType::TransactionalId, transactional_id)
}

/// InitProducerId with a transactional id.
pub(super) async fn handle_init(broker: &Arc<Broker>, ctx: &RequestContext, req: InitProducerIdRequest, transactional_id: &str) -> Bytes {
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    response.error_code = if !may_write(broker, ctx, transactional_id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if let Some(code) = not_here(broker, transactional_id) {
        code
    } else {
        let expected = (req.producer_id.0 >= 0 && req.producer_epoch >= 0).then_some((req.producer_id.0, req.producer_epoch));
        match broker
            .transactions
            .init_producer_id(&**broker, transactional_id, req.transaction_timeout_ms, expected, now_ms())
            .await
        {
            Ok((producer_id, epoch)) => {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = epoch;
                0
            }
            Err(e) => code_of(&e, ctx.api_version >= 4),
        }
    };
    encode_response(ctx, &response)
}

pub(super) async fn handle_add_partitions(broker: &Broker, ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> Bytes {
    if ctx.api_version >= 4 {
        return handle_verify(broker, ctx, req);
    }
    let mut response = AddPartitionsToTxnResponse::default();
    let id = req.v3_and_below_transactional_id.0.to_string();
    // Every partition gets the same answer unless one is refused on its
    // own, when the others are OPERATION_NOT_ATTEMPTED (nothing is added).
    let mut own: BTreeMap<(String, i32), i16> = BTreeMap::new();
    let mut wanted = Vec::new();
    for topic in &req.v3_and_below_topics {
        let name = topic.name.0.to_string();
        let exists = broker.topic(&name);
        let allowed = ctx.allowed(broker, Operation::Write, ResourceType::Topic, &name);
        for &partition in &topic.partitions {
            let code = if !allowed {
                ResponseError::TopicAuthorizationFailed.code()
            } else if exists.as_ref().and_then(|t| t.partition(partition)).is_none() {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                0
            };
            own.insert((name.clone(), partition), code);
            wanted.push((name.clone(), partition));
        }
    }
    let common = if !may_write(broker, ctx, &id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if let Some(code) = not_here(broker, &id) {
        code
    } else if own.values().any(|c| *c != 0) {
        ResponseError::OperationNotAttempted.code()
    } else {
        match broker
            .transactions
            .add_partitions(
                &id,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &wanted,
                now_ms(),
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => code_of(&e, ctx.api_version >= 2),
        }
    };
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for ((topic, partition), code) in own {
        let code = if code != 0 { code } else { common };
        by_topic.entry(topic).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(partition)
                .with_partition_error_code(code),
        );
    }
    response.results_by_topic_v3_and_below = by_topic
        .into_iter()
        .map(|(name, results)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(str_bytes(name)))
                .with_results_by_partition(results)
        })
        .collect();
    encode_response(ctx, &response)
}

/// AddPartitionsToTxn v4+ from a partition leader (KIP-890 part 1): are
/// these partitions in the producers' open transactions? Nothing is added;
/// a request that asks to add (`verify_only` false, KIP-890 part 2) gets
/// INVALID_REQUEST.
fn handle_verify(broker: &Broker, ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> Bytes {
    let mut response = AddPartitionsToTxnResponse::default();
    if !ctx.on_cluster(broker, Operation::ClusterAction) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return encode_response(ctx, &response);
    }
    if req.transactions.iter().any(|t| !t.verify_only) {
        response.error_code = ResponseError::InvalidRequest.code();
        return encode_response(ctx, &response);
    }
    for txn in &req.transactions {
        let id = txn.transactional_id.0.as_str();
        let topic_results = txn
            .topics
            .iter()
            .map(|topic| {
                let results = topic
                    .partitions
                    .iter()
                    .map(|&partition| {
                        let code = match broker.transactions.verify_write(
                            id,
                            txn.producer_id.0,
                            txn.producer_epoch,
                            topic.name.0.as_str(),
                            partition,
                        ) {
                            Ok(()) => 0,
                            Err(CoordinatorError::Txn(TxnError::Fenced)) => ResponseError::InvalidProducerEpoch.code(),
                            Err(CoordinatorError::NotHere(code)) => code,
                            Err(_) => ResponseError::InvalidTxnState.code(),
                        };
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(partition)
                            .with_partition_error_code(code)
                    })
                    .collect();
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_results_by_partition(results)
            })
            .collect();
        response.results_by_transaction.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(txn.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    encode_response(ctx, &response)
}

/// The `__consumer_offsets` partition of a group, which a cluster's
/// transaction adds for its offsets (the marker there commits them). The
/// topic's partition count, or the one it will be created with.
fn offsets_partition_of(broker: &Broker, group: &str) -> Option<(String, i32)> {
    broker.cluster.as_ref()?;
    let count = broker
        .topic(OFFSETS_TOPIC)
        .map_or(broker.config.offsets_topic_partitions, |t| t.partition_count());
    Some((OFFSETS_TOPIC.to_string(), partition_for(group, count)))
}

pub(super) async fn handle_add_offsets(broker: &Broker, ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> Bytes {
    let id = req.transactional_id.0.to_string();
    let group = req.group_id.0.to_string();
    let error_code = if !may_write(broker, ctx, &id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if !ctx.allowed(broker, Operation::Read, ResourceType::Group, &group) {
        ResponseError::GroupAuthorizationFailed.code()
    } else if let Some(code) = not_here(broker, &id) {
        code
    } else {
        match broker
            .transactions
            .add_group(
                &id,
                req.producer_id.0,
                req.producer_epoch,
                &group,
                offsets_partition_of(broker, &group),
                now_ms(),
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => code_of(&e, ctx.api_version >= 2),
        }
    };
    encode_response(ctx, &AddOffsetsToTxnResponse::default().with_error_code(error_code))
}

pub(super) async fn handle_txn_offset_commit(broker: &Broker, ctx: &RequestContext, req: TxnOffsetCommitRequest) -> Bytes {
    let id = req.transactional_id.0.to_string();
    let group = req.group_id.0.to_string();
    let metadata_max = broker.groups.offset_metadata_max_bytes();
    let now = now_ms();
    let mut common = if !may_write(broker, ctx, &id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if !ctx.allowed(broker, Operation::Read, ResourceType::Group, &group) {
        ResponseError::GroupAuthorizationFailed.code()
    } else if let Some(code) = broker.cluster.as_ref().and_then(|c| c.offsets.group_error(&group)) {
        // A cluster: the group's coordinator holds the offsets.
        code
    } else if !req.member_id.is_empty() || req.generation_id >= 0 {
        // v3+: a group member's commit is checked against its generation.
        broker
            .groups
            .validate_commit(
                &group,
                &CommitFrom {
                    member_id: &req.member_id,
                    instance_id: req.group_instance_id.as_deref(),
                    generation_id: req.generation_id,
                    api_version: ctx.api_version,
                    transactional: true,
                },
            )
            .err()
            .unwrap_or(0)
    } else {
        0
    };
    let mut own: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
    let mut staged = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let allowed = ctx.allowed(broker, Operation::Read, ResourceType::Topic, &name);
        let mut codes = Vec::new();
        for p in &topic.partitions {
            let code = if !allowed {
                ResponseError::TopicAuthorizationFailed.code()
            } else if p.committed_metadata.as_ref().is_some_and(|m| m.len() > metadata_max) {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                staged.push(PendingOffset {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_timestamp_ms: now,
                    },
                });
                0
            };
            codes.push((p.partition_index, code));
        }
        own.push((topic.name.clone(), codes));
    }
    if common == 0 && !staged.is_empty() {
        if broker.cluster.is_some() {
            // Held by the group's coordinator until the transaction's marker
            // reaches the group's offsets partition.
            let offsets = staged.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect();
            if let Err(e) = broker.groups.offsets.hold_for_transaction(&group, req.producer_id.0, offsets).await {
                tracing::warn!(group = %group, error = %e, "cannot hold transactional offsets");
                common = ResponseError::CoordinatorNotAvailable.code();
            }
        } else if let Err(e) = broker
            .transactions
            .stage_offsets(&id, req.producer_id.0, req.producer_epoch, &group, staged, now)
            .await
        {
            common = code_of(&e, ctx.api_version >= 3);
        }
    }
    let response = TxnOffsetCommitResponse::default().with_topics(
        own.into_iter()
            .map(|(name, codes)| {
                TxnOffsetCommitResponseTopic::default().with_name(name).with_partitions(
                    codes
                        .into_iter()
                        .map(|(partition, code)| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(partition)
                                .with_error_code(if code != 0 { code } else { common })
                        })
                        .collect(),
                )
            })
            .collect(),
    );
    encode_response(ctx, &response)
}

pub(super) async fn handle_end(broker: &Arc<Broker>, ctx: &RequestContext, req: EndTxnRequest) -> Bytes {
    let id = req.transactional_id.0.to_string();
    let error_code = if !may_write(broker, ctx, &id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if let Some(code) = not_here(broker, &id) {
        code
    } else {
        match broker
            .transactions
            .end(&**broker, &id, req.producer_id.0, req.producer_epoch, req.committed, now_ms())
            .await
        {
            Ok(()) => 0,
            Err(e) => code_of(&e, ctx.api_version >= 2),
        }
    };
    let response = EndTxnResponse::default()
        .with_error_code(error_code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    encode_response(ctx, &response)
}

pub(super) fn handle_describe(broker: &Broker, ctx: &RequestContext, req: DescribeTransactionsRequest) -> Bytes {
    let mut response = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut state = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_transaction_state(str_bytes(""))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        if !ctx.allowed(broker, Operation::Describe, ResourceType::TransactionalId, id.0.as_str()) {
            state.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        } else if let Some(code) = not_here(broker, id.0.as_str()) {
            state.error_code = code;
        } else if let Some(txn) = broker.transactions.describe(id.0.as_str()) {
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in &txn.partitions {
                topics.entry(topic).or_default().push(*partition);
            }
            state = state
                .with_transaction_state(str_bytes(txn.state.name()))
                .with_transaction_timeout_ms(txn.timeout_ms)
                .with_transaction_start_time_ms(txn.started_ms)
                .with_producer_id(ProducerId(txn.producer_id))
                .with_producer_epoch(txn.producer_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(topic)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                );
        } else {
            state.error_code = ResponseError::TransactionalIdNotFound.code();
        }
        response.transaction_states.push(state);
    }
    encode_response(ctx, &response)
}

/// The state names ListTransactions filters by (Kafka's, including the
/// ones Sediment never enters).
const STATE_NAMES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub(super) fn handle_list(broker: &Broker, ctx: &RequestContext, req: ListTransactionsRequest) -> Bytes {
    let mut response = ListTransactionsResponse::default();
    response.unknown_state_filters = req
        .state_filters
        .iter()
        .filter(|s| !STATE_NAMES.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    // In a cluster, the ids this broker coordinates (admin clients ask
    // every broker and merge the answers).
    {
        let mut txns = broker.transactions.list();
        txns.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        for txn in txns {
            let state_ok = req.state_filters.is_empty() || req.state_filters.iter().any(|s| s.as_str() == txn.state.name());
            let producer_ok = req.producer_id_filters.is_empty() || req.producer_id_filters.contains(&ProducerId(txn.producer_id));
            // v1: only transactions open for longer than this.
            let duration_ok = req.duration_filter < 0 || (txn.started_ms >= 0 && now - txn.started_ms > req.duration_filter);
            if state_ok
                && producer_ok
                && duration_ok
                && ctx.permits(broker, Operation::Describe, ResourceType::TransactionalId, &txn.transactional_id)
            {
                response.transaction_states.push(
                    ListedTransaction::default()
                        .with_transactional_id(TransactionalId(str_bytes(txn.transactional_id)))
                        .with_producer_id(ProducerId(txn.producer_id))
                        .with_transaction_state(str_bytes(txn.state.name())),
                );
            }
        }
    }
    encode_response(ctx, &response)
}
