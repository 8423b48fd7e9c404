//! WriteTxnMarkers (27), broker to broker: a transaction coordinator asks
//! this broker, the partitions' leader, to write commit or abort markers.
//! Each partition is answered once its ISR holds the marker (or, for a
//! `__consumer_offsets` partition, once the producer's held offsets of its
//! groups are committed or dropped). Needs CLUSTER_ACTION on the cluster.

use bytes::Bytes;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;

use super::{encode_response, RequestContext};
use crate::broker::Broker;
use crate::log::Marker;
use crate::security::acl::Operation;

pub(super) async fn handle(broker: &Broker, ctx: &RequestContext, req: WriteTxnMarkersRequest) -> Bytes {
    let allowed = ctx.on_cluster(broker, Operation::ClusterAction);
    let mut response = WriteTxnMarkersResponse::default();
    for marker in req.markers {
        let written = Marker {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        // Every partition of a marker side by side; markers in order.
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in marker.topics {
            let name = topic.name.0.to_string();
            let writes = topic.partition_indexes.iter().map(|&index| {
                let name = &name;
                async move {
                    let code = if !allowed {
                        ResponseError::ClusterAuthorizationFailed.code()
                    } else {
                        match broker.write_marker_here(name, index, written).await {
                            Ok(()) => 0,
                            Err((code, message)) => {
                                tracing::debug!(topic = %name, partition = index, error = %message, "marker not written");
                                code
                            }
                        }
                    };
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                }
            });
            let partitions = futures::future::join_all(writes).await;
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        response.markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    encode_response(ctx, &response)
}
