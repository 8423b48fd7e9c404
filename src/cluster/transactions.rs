//! Transaction coordination in a cluster, Kafka's way: each transactional
//! id belongs to one partition of the internal, replicated
//! `__transaction_state` topic (by the Java hash of the id), and that
//! partition's leader coordinates it. Every state change is appended to the
//! partition and acknowledged by its ISR (acks=all) before it is applied
//! or answered, so a transaction survives the loss of any single broker. A
//! broker that becomes a partition's leader loads its ids from the log, and
//! its timer then completes what the previous coordinator left prepared and
//! aborts what timed out; the partition's leader epoch is the coordinator
//! epoch in its markers.
//!
//! Records hold the state as JSON lines (those of `meta/transactions.jsonl`
//! on a single node), not Kafka's binary schema.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::shards::{append_acknowledged, partition_for, read_values, Shards};
use crate::archive::records::Row;
use crate::broker::{Broker, Partition};
use crate::clock::now_ms;
use crate::coordination::BoxFuture;
use crate::txn::TxnReplicator;

pub const TXN_TOPIC: &str = "__transaction_state";

/// How long a state change waits for the ISR before it fails (retriable).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ClusterTxns {
    broker: OnceLock<Weak<Broker>>,
    pub(super) shards: Shards,
}

impl Default for ClusterTxns {
    fn default() -> Self {
        Self {
            broker: OnceLock::new(),
            shards: Shards::new(TXN_TOPIC),
        }
    }
}

impl ClusterTxns {
    /// Ties this to the broker (after it is built: the broker holds this).
    pub fn attach(self: &Arc<Self>, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
        broker.transactions.set_replicator(self.clone());
    }

    fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get()?.upgrade()
    }

    /// Transaction state partitions to load (newly led); the ids of those
    /// no longer led are forgotten. The caller runs `load` for each.
    pub fn reconcile(&self, broker: &Broker) -> Vec<(Arc<Partition>, i32)> {
        let moves = self.shards.reconcile(broker);
        if !moves.lost.is_empty() {
            let count = self.shards.count(broker);
            let lost = moves.lost;
            let forgotten = broker.transactions.forget(|id| lost.contains(&partition_for(id, count)));
            tracing::info!(partitions = ?lost, transactional_ids = forgotten, "no longer coordinating the transactions of these partitions");
        }
        moves.to_load
    }

    /// Loads the transactional ids of a partition this broker now leads
    /// from its log, then answers for them.
    pub async fn load(&self, partition: Arc<Partition>, epoch: i32) {
        let Some(broker) = self.broker() else { return };
        let Some(topic) = broker.topic(TXN_TOPIC) else { return };
        let count = topic.partition_count();
        let index = partition.index;
        let limits = broker.validator.limits(topic.config().log_config().max_message_bytes);
        match read_values(&partition, limits).await {
            Ok(lines) => {
                let ids = broker.transactions.reload(|id| partition_for(id, count) == index, &lines);
                self.shards.loaded(index, epoch);
                tracing::info!(
                    partition = index,
                    coordinator_epoch = epoch,
                    records = lines.len(),
                    transactional_ids = ids,
                    "coordinating the transactions of a transaction state partition"
                );
            }
            Err(e) => {
                tracing::warn!(partition = index, error = %e, "cannot read a transaction state partition; its ids stay unavailable until it is read");
                self.shards.failed(index);
            }
        }
    }
}

impl TxnReplicator for ClusterTxns {
    fn owner_epoch(&self, transactional_id: &str) -> Result<i32, i16> {
        let Some(broker) = self.broker() else {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        };
        self.shards.owner_epoch(&broker, transactional_id)
    }

    fn replicate(&self, transactional_id: &str, line: Vec<u8>) -> BoxFuture<'_, std::io::Result<()>> {
        let id = transactional_id.to_string();
        Box::pin(async move {
            let broker = self.broker().ok_or_else(|| std::io::Error::other("the broker is shutting down"))?;
            let partition = self
                .shards
                .shard_of(&broker, &id)
                .ok_or_else(|| std::io::Error::other("no transaction state topic"))?;
            let now = now_ms();
            let row = Row {
                offset: 0,
                timestamp: now,
                key: Some(Bytes::from(id.into_bytes())),
                value: Some(Bytes::from(line)),
                headers: Vec::new(),
            };
            append_acknowledged(&partition, &[row], now, REPLICATION_TIMEOUT).await
        })
    }
}

/// How long a partition leader waits for a coordinator's verification.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Produce verification with the id's coordinator on another broker
/// (KIP-890 part 1, AddPartitionsToTxn v4 `verify_only`): is `topic`-
/// `partition` in the producer's open transaction? Refusals carry Kafka's
/// code: INVALID_TXN_STATE or INVALID_PRODUCER_EPOCH as the coordinator
/// says, NOT_ENOUGH_REPLICAS (retriable, as Kafka answers) when the
/// coordinator cannot be asked.
pub async fn verify_remotely(
    broker: &Broker,
    link: &super::ClusterLink,
    write: (&str, i64, i16),
    topic: &str,
    partition: i32,
) -> Result<(), (i16, String)> {
    use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    let (transactional_id, producer_id, producer_epoch) = write;
    let retriable = |message: String| (ResponseError::NotEnoughReplicas.code(), message);
    let shards = &link.transactions.shards;
    let coordinator = shards
        .shard_of(broker, transactional_id)
        .and_then(|shard| {
            let id = broker.topic(TXN_TOPIC)?.id.to_string();
            link.image().partitions.get(&(id, shard.index)).map(|(state, _)| state.leader)
        })
        .filter(|leader| *leader >= 0)
        .ok_or_else(|| retriable("the transaction coordinator is not available; retry".to_string()))?;
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(transactional_id.to_string())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_verify_only(true)
        .with_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![partition])])]);
    let response: AddPartitionsToTxnResponse = link
        .peers
        .call(link, coordinator, (ApiKey::AddPartitionsToTxn, 4), &request, VERIFY_TIMEOUT)
        .await
        .map_err(|e| retriable(format!("cannot verify the transaction with broker {coordinator}: {e}")))?;
    if response.error_code != 0 {
        return Err(retriable(format!(
            "transaction verification refused with error {}",
            response.error_code
        )));
    }
    let code = response
        .results_by_transaction
        .iter()
        .flat_map(|t| &t.topic_results)
        .flat_map(|t| &t.results_by_partition)
        .find(|p| p.partition_index == partition)
        .map(|p| p.partition_error_code)
        .ok_or_else(|| retriable("the coordinator did not answer for the partition".to_string()))?;
    match code {
        0 => Ok(()),
        c if c == ResponseError::InvalidProducerEpoch.code() || c == ResponseError::ProducerFenced.code() => Err((
            ResponseError::InvalidProducerEpoch.code(),
            "the producer is fenced by a newer epoch".to_string(),
        )),
        c if c == ResponseError::InvalidTxnState.code() || c == ResponseError::InvalidProducerIdMapping.code() => Err((
            ResponseError::InvalidTxnState.code(),
            "the partition is not in the producer's open transaction".to_string(),
        )),
        c => Err(retriable(format!("the transaction coordinator answered error {c}; retry"))),
    }
}
