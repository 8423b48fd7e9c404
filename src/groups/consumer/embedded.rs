//! The consumer protocol embedded in classic groups' JoinGroup metadata and
//! SyncGroup assignments (Kafka's `ConsumerProtocol`): a version, then a
//! ConsumerProtocolSubscription or ConsumerProtocolAssignment. A KIP-848
//! group reads classic members' subscriptions and writes their assignments
//! in it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The newest version of both messages Sediment knows; a newer one is read
/// as this one, as Kafka does (new fields are only ever appended).
const MAX_VERSION: i16 = 3;

/// A classic member's subscription.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscription {
    pub version: i16,
    pub topics: Vec<String>,
    /// (topic, partitions) the member owns (cooperative members, v1+).
    pub owned: Vec<(String, Vec<i32>)>,
    pub rack_id: Option<String>,
}

fn version(data: &mut Bytes) -> Option<i16> {
    if data.remaining() < 2 {
        return None;
    }
    let version = data.get_i16();
    (version >= 0).then_some(version.min(MAX_VERSION))
}

pub fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let mut data = metadata.clone();
    let version = version(&mut data)?;
    let s = ConsumerProtocolSubscription::decode(&mut data, version).ok()?;
    Some(Subscription {
        version,
        topics: s.topics.iter().map(|t| t.to_string()).collect(),
        owned: s
            .owned_partitions
            .iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions.clone()))
            .collect(),
        rack_id: s.rack_id.map(|r| r.to_string()),
    })
}

/// (topic, partitions) of a classic member's assignment.
pub fn decode_assignment(assignment: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let mut data = assignment.clone();
    let version = version(&mut data)?;
    let a = ConsumerProtocolAssignment::decode(&mut data, version).ok()?;
    Some(
        a.assigned_partitions
            .iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions.clone()))
            .collect(),
    )
}

/// An assignment in the version the member's subscription used.
pub fn encode_assignment(version: i16, partitions: &[(String, Vec<i32>)]) -> Bytes {
    let version = version.clamp(0, MAX_VERSION);
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, ps)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.put_i16(version);
    // Encoding our own well-formed message cannot fail; an empty
    // assignment is the safe answer if it ever did.
    if assignment.encode(&mut out, version).is_err() {
        return Bytes::new();
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;

    fn subscription(version: i16) -> Bytes {
        let s = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_owned_partitions(if version >= 1 {
                vec![OwnedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![1, 2])]
            } else {
                vec![]
            });
        let mut out = BytesMut::new();
        out.put_i16(version);
        s.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn subscriptions_of_every_version_decode() {
        for version in 0..=3 {
            let s = decode_subscription(&subscription(version)).unwrap();
            assert_eq!(s.topics, vec!["t".to_string()]);
            assert_eq!(s.owned.is_empty(), version == 0);
        }
        // A newer version reads as the newest known.
        let mut newer = BytesMut::from(&subscription(3)[..]);
        newer[..2].copy_from_slice(&7i16.to_be_bytes());
        assert_eq!(decode_subscription(&newer.freeze()).unwrap().version, 3);
    }

    #[test]
    fn garbage_does_not_decode() {
        for bad in [&b""[..], &b"\x00"[..], &b"\xff\xff\x00\x01"[..], &b"\x00\x00\x7f\xff\xff\xff"[..]] {
            assert_eq!(decode_subscription(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
        assert_eq!(decode_assignment(&Bytes::from_static(b"\x00\x00\x7f")), None);
    }

    #[test]
    fn assignments_round_trip() {
        let parts = vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])];
        for version in 0..=3 {
            assert_eq!(decode_assignment(&encode_assignment(version, &parts)).unwrap(), parts);
        }
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), vec![]);
    }
}
