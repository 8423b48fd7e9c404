//! The APIs and versions Sediment implements: exactly what ApiVersions
//! advertises, and the table in docs/compatibility.md.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// (API, min version, max version). Upper bounds stop where a newer version
/// changes semantics we do not implement yet (topic ids in Fetch v13+ and
/// Produce v13, the KIP-848 group fields, ...).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    // v9: KIP-848 members commit with their member epoch.
    (ApiKey::OffsetCommit, 2, 9),
    // v8: a batch of groups; v9: a KIP-848 member's id and epoch.
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    // KIP-848. v1: members make their own ids and may subscribe by regex.
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    // v0 is Kafka 4.0's ListClientMetricsResources; v1 (ListConfigResources,
    // Kafka 4.1) lists other resource types, not implemented.
    (ApiKey::ListConfigResources, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Tokens travel in SaslAuthenticate (v1). v0 is advertised because
    // librdkafka before 2.1 enables SASL only when the range includes it;
    // a v0 handshake itself is refused (protocol::sasl).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    // Transactions. AddPartitionsToTxn v4 is the brokers' batched form,
    // served for produce verification (`verify_only`); v5 and
    // EndTxn/AddOffsetsToTxn/TxnOffsetCommit past v3 bring KIP-890 part 2
    // (an epoch bump per transaction), not implemented.
    (ApiKey::AddPartitionsToTxn, 0, 4),
    // Broker to broker: a coordinator's markers to partition leaders.
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

pub fn supported(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| VersionRange { min: *min, max: *max })
}

pub fn name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::ListConfigResources => "ListClientMetricsResources",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::AlterClientQuotas => "AlterClientQuotas",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised range must lie within what the codec can decode.
    #[test]
    fn advertised_versions_are_within_the_codec() {
        for (key, min, max) in SUPPORTED {
            let codec = key.valid_versions();
            assert!(
                *min >= codec.min && *max <= codec.max,
                "{key:?} {min}..={max} outside codec {codec}"
            );
            assert_ne!(name(*key), "Other");
        }
        assert_eq!(ProduceRequest::VERSIONS.min, 3);
    }
}
