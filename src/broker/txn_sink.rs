//! What the transaction coordinator needs from this broker: markers in
//! partitions (its own, or through their leaders with WriteTxnMarkers),
//! offsets in its groups, fresh producer ids.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::partition::AckError;
use super::Broker;
use crate::cluster::offsets::OFFSETS_TOPIC;
use crate::coordination::BoxFuture;
use crate::groups::offsets::CommittedOffset;
use crate::log::Marker;
use crate::txn::TxnSink;

/// How long a marker waits for its partition's ISR before the completion
/// is left for the coordinator's next round.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a marker was not written here: Kafka's code, and what happened.
pub type MarkerRefusal = (i16, String);

impl Broker {
    /// Writes the marker to a partition this broker leads and waits until
    /// its ISR holds it. In a cluster, a marker for a `__consumer_offsets`
    /// partition ends the producer's transactional offset commits of that
    /// partition's groups instead (they commit or are dropped).
    pub async fn write_marker_here(&self, topic: &str, index: i32, marker: Marker) -> Result<(), MarkerRefusal> {
        let name = format!("{topic}-{index}");
        let Some(partition) = self.partition(topic, index) else {
            return Err((ResponseError::UnknownTopicOrPartition.code(), format!("{name} does not exist")));
        };
        if topic == OFFSETS_TOPIC && self.cluster.is_some() {
            if partition.leader_epoch().is_none() {
                return Err((ResponseError::NotLeaderOrFollower.code(), format!("not the leader of {name}")));
            }
            return self
                .groups
                .offsets
                .end_transaction(index, marker.producer_id, marker.commit)
                .await
                .map_err(|e| (ResponseError::CoordinatorNotAvailable.code(), format!("{name}: {e}")));
        }
        let (appended, term) = partition.append_marker(marker, crate::clock::now_ms()).map_err(|e| match e {
            super::replica::ProduceRefusal::NotLeader => (ResponseError::NotLeaderOrFollower.code(), format!("not the leader of {name}")),
            other => (ResponseError::KafkaStorageError.code(), format!("marker for {name}: {other}")),
        })?;
        match tokio::time::timeout(
            MARKER_TIMEOUT,
            partition.wait_acknowledged(appended.next_offset, term, true, &mut Default::default()),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AckError::Storage(e))) => Err((ResponseError::KafkaStorageError.code(), format!("marker for {name}: {e}"))),
            Ok(Err(AckError::NotLeader)) => Err((
                ResponseError::NotLeaderOrFollower.code(),
                format!("marker for {name}: leadership moved"),
            )),
            Ok(Err(AckError::NotEnoughReplicasAfterAppend)) => Err((
                ResponseError::NotEnoughReplicasAfterAppend.code(),
                format!("marker for {name}: the ISR fell below min.insync.replicas"),
            )),
            Err(_) => Err((
                ResponseError::RequestTimedOut.code(),
                format!("marker for {name} not acknowledged in time"),
            )),
        }
    }

    /// The broker that leads `topic`-`index` now, per the cluster image.
    fn leader_of(&self, topic: &str, index: i32) -> Option<i32> {
        let cluster = self.cluster.as_ref()?;
        let id = self.topic(topic)?.id.to_string();
        let image = cluster.image();
        image
            .partitions
            .get(&(id, index))
            .map(|(state, _)| state.leader)
            .filter(|l| *l >= 0)
    }

    /// Sends the marker for `partitions` to their leader `leader` with
    /// WriteTxnMarkers and checks every partition's answer.
    async fn write_markers_at(&self, leader: i32, partitions: &[(String, i32)], marker: Marker) -> Result<(), String> {
        let Some(cluster) = &self.cluster else {
            return Err("no cluster".to_string());
        };
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, index) in partitions {
            by_topic.entry(topic).or_default().push(*index);
        }
        let request = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            )]);
        let response: WriteTxnMarkersResponse = cluster
            .peers
            .call(
                cluster,
                leader,
                (ApiKey::WriteTxnMarkers, 1),
                &request,
                MARKER_TIMEOUT + Duration::from_secs(5),
            )
            .await
            .map_err(|e| format!("markers to broker {leader}: {e}"))?;
        let mut answered = 0;
        for result in response.markers.iter().flat_map(|m| &m.topics) {
            for p in &result.partitions {
                answered += 1;
                // A partition deleted meanwhile needs no marker.
                if p.error_code != 0 && p.error_code != ResponseError::UnknownTopicOrPartition.code() {
                    return Err(format!(
                        "marker for {}-{} at broker {leader}: error {}",
                        result.name.0, p.partition_index, p.error_code
                    ));
                }
            }
        }
        if answered != partitions.len() {
            return Err(format!("broker {leader} answered {answered} of {} markers", partitions.len()));
        }
        Ok(())
    }
}

impl TxnSink for Broker {
    fn write_markers<'a>(&'a self, partitions: &'a [(String, i32)], marker: Marker) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // Partitions this broker leads are written here; the others go to
            // their leaders, one request per leader, all side by side.
            let mut here = Vec::new();
            let mut elsewhere: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
            for (topic, index) in partitions {
                let led_here = self.partition(topic, *index).is_some_and(|p| p.leader_epoch().is_some());
                match self.leader_of(topic, *index) {
                    Some(leader) if !led_here && Some(leader) != self.cluster.as_ref().map(|c| c.broker_id) => {
                        elsewhere.entry(leader).or_default().push((topic.clone(), *index));
                    }
                    _ => here.push((topic, *index)),
                }
            }
            let local = futures::future::join_all(here.iter().map(|(topic, index)| async move {
                match self.write_marker_here(topic, *index, marker).await {
                    Ok(()) => Ok(()),
                    // A deleted topic's partitions need no marker.
                    Err((code, _)) if code == ResponseError::UnknownTopicOrPartition.code() => Ok(()),
                    Err((_, message)) => Err(message),
                }
            }));
            let remote = futures::future::join_all(
                elsewhere
                    .iter()
                    .map(|(leader, partitions)| self.write_markers_at(*leader, partitions, marker)),
            );
            let (local, remote) = futures::join!(local, remote);
            for result in local.into_iter().chain(remote) {
                result?;
            }
            Ok(())
        })
    }

    fn commit_offsets(&self, group: &str, offsets: Vec<(String, i32, CommittedOffset)>) -> BoxFuture<'_, Result<(), String>> {
        let group = group.to_string();
        Box::pin(async move { self.groups.offsets.commit(&group, offsets).await.map_err(|e| e.to_string()) })
    }

    fn fresh_producer_id(&self) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move { self.next_producer_id().await.map_err(|e| e.to_string()) })
    }

    fn completed(&self, commit: bool) {
        if commit {
            self.metrics.transactions_committed.inc();
        } else {
            self.metrics.transactions_aborted.inc();
        }
    }
}
