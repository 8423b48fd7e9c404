//! Hostile group traffic stays bounded: random group ids from JoinGroup and
//! SyncGroup leave nothing behind, commit metadata has a size limit, and the
//! committed-offsets file is compacted while the broker runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;

use crate::common::{http_get, metric, wait_until, Broker};
use crate::kafka::create_topic;

const JOIN_GROUP_VERSION: i16 = 5;
const SYNC_GROUP_VERSION: i16 = 3;
/// Requests written before their responses are read: below the broker's
/// max_inflight_requests_per_connection (64), so neither side stalls.
const PIPELINE_DEPTH: usize = 50;

fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect(broker.bootstrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, req: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("flood")));
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

fn read_response<R: Decodable>(s: &mut TcpStream, key: ApiKey, version: i16) -> R {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    R::decode(&mut body, version).unwrap()
}

/// Sends every request, `PIPELINE_DEPTH` at a time, and returns the responses.
fn pipeline<Req: Encodable, Resp: Decodable>(s: &mut TcpStream, key: ApiKey, version: i16, requests: &[Req]) -> Vec<Resp> {
    let mut responses = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(PIPELINE_DEPTH) {
        let mut bytes = Vec::new();
        for (i, req) in chunk.iter().enumerate() {
            bytes.extend(frame(key, version, i as i32, req));
        }
        s.write_all(&bytes).unwrap();
        for _ in chunk {
            responses.push(read_response(s, key, version));
        }
    }
    responses
}

fn call<Req: Encodable, Resp: Decodable>(broker: &Broker, key: ApiKey, version: i16, req: &Req) -> Resp {
    pipeline(&mut connect(broker), key, version, std::slice::from_ref(req)).remove(0)
}

fn group_ids(prefix: &str, n: usize) -> Vec<String> {
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (0..n).map(|i| format!("{prefix}-{salt:x}-{i}")).collect()
}

fn listed_groups(broker: &Broker) -> usize {
    let response: ListGroupsResponse = call(broker, ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    response.groups.len()
}

/// The broker's peak resident memory (VmHWM), found through its data dir on
/// its command line: the harness does not expose the pid.
fn broker_peak_rss_bytes(broker: &Broker) -> Option<u64> {
    let data_dir = broker.data_dir.to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&data_dir) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        return Some(kib * 1024);
    }
    None
}

#[test]
fn groups_flood_of_random_ids_leaves_no_groups_behind() {
    let max_groups = 1000;
    let broker = Broker::start_limited(
        &format!("group_min_session_timeout_ms = 100\ngroup_max_count = {max_groups}\n"),
        1 << 30,
    );
    let flood = 3000;
    let mut s = connect(&broker);

    let joins: Vec<JoinGroupRequest> = group_ids("join", flood)
        .into_iter()
        .map(|id| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_session_timeout_ms(500)
                .with_rebalance_timeout_ms(500)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"m"))])
        })
        .collect();
    let answers: Vec<JoinGroupResponse> = pipeline(&mut s, ApiKey::JoinGroup, JOIN_GROUP_VERSION, &joins);
    let groups_after_joins = metric(&broker, "sediment_consumer_groups");
    for a in &answers {
        assert!(
            [
                ResponseError::MemberIdRequired.code(),
                ResponseError::CoordinatorNotAvailable.code()
            ]
            .contains(&a.error_code),
            "join answered {}",
            a.error_code
        );
    }
    assert!(
        groups_after_joins <= max_groups as f64,
        "{groups_after_joins} groups exist, more than group_max_count"
    );

    let syncs: Vec<SyncGroupRequest> = group_ids("sync", flood)
        .into_iter()
        .map(|id| {
            SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_generation_id(1)
                .with_member_id(StrBytes::from_static_str("nobody"))
        })
        .collect();
    let answers: Vec<SyncGroupResponse> = pipeline(&mut s, ApiKey::SyncGroup, SYNC_GROUP_VERSION, &syncs);
    assert!(answers.iter().all(|a| a.error_code == ResponseError::UnknownMemberId.code()));

    // The member ids handed out expire after their 500 ms session timeout;
    // groups with nothing else in them go with them.
    wait_until("every flooded group is gone", 15, || listed_groups(&broker) == 0);
    assert_eq!(metric(&broker, "sediment_consumer_groups"), 0.0);
    let scrape = http_get(&broker.http("/metrics")).unwrap();
    eprintln!(
        "groups after the joins: {groups_after_joins}; scrape: {} bytes; peak RSS: {:?}",
        scrape.len(),
        broker_peak_rss_bytes(&broker)
    );
    assert!(scrape.len() < 32 * 1024, "a /metrics scrape is {} bytes", scrape.len());
    if let Some(peak) = broker_peak_rss_bytes(&broker) {
        assert!(peak < 256 << 20, "the broker's peak RSS was {} MiB", peak >> 20);
    }

    // The slots are free: a new group forms again.
    let again: JoinGroupResponse = call(&broker, ApiKey::JoinGroup, JOIN_GROUP_VERSION, &joins[0]);
    assert_eq!(again.error_code, ResponseError::MemberIdRequired.code());
}

fn commit_request(group: &str, topic: &str, partitions: i32, offset: i64, metadata: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_metadata(Some(StrBytes::from_string(metadata.to_string())))
                    })
                    .collect(),
            )])
}

fn fetch_offsets(broker: &Broker, group: &str, topic: &str, partitions: i32) -> Vec<(i64, String)> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes((0..partitions).collect())]));
    let response: OffsetFetchResponse = call(broker, ApiKey::OffsetFetch, 5, &request);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.committed_offset, p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_offset_metadata_over_the_limit_is_refused_per_partition() {
    // Kafka's default limit, offset.metadata.max.bytes = 4096.
    let broker = Broker::start_limited("", 1 << 30);
    create_topic(&broker.bootstrap(), "meta", 1, &[]).await;
    let at_limit: OffsetCommitResponse = call(
        &broker,
        ApiKey::OffsetCommit,
        2,
        &commit_request("g", "meta", 1, 7, &"m".repeat(4096)),
    );
    assert_eq!(at_limit.topics[0].partitions[0].error_code, 0);
    let over: OffsetCommitResponse = call(
        &broker,
        ApiKey::OffsetCommit,
        2,
        &commit_request("g", "meta", 1, 8, &"m".repeat(4097)),
    );
    assert_eq!(
        over.topics[0].partitions[0].error_code,
        ResponseError::OffsetMetadataTooLarge.code()
    );
    assert_eq!(
        fetch_offsets(&broker, "g", "meta", 1),
        vec![(7, "m".repeat(4096))],
        "the refused commit was not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_offsets_file_is_compacted_while_the_broker_runs() {
    let mut broker = Broker::start_limited("", 1 << 30);
    let partitions = 100;
    create_topic(&broker.bootstrap(), "churn", partitions, &[]).await;
    // 200 commits of 100 partitions with 1 KB of metadata: ~22 MB appended
    // for a ~110 KB table. Compaction starts at 16 MiB.
    let metadata = "x".repeat(1000);
    let commits: Vec<_> = (0..200)
        .map(|round| commit_request("churner", "churn", partitions, round, &metadata))
        .collect();
    let mut s = connect(&broker);
    for answer in pipeline::<_, OffsetCommitResponse>(&mut s, ApiKey::OffsetCommit, 2, &commits) {
        assert!(answer.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }
    let file = broker.data_dir.join("meta/offsets.jsonl");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size <= (16 << 20) + 200_000, "meta/offsets.jsonl is {size} bytes");
    broker.restart();
    let offsets = fetch_offsets(&broker, "churner", "churn", partitions);
    assert!(
        offsets.iter().all(|(offset, m)| *offset == 199 && *m == metadata),
        "a restart replays the last commits"
    );
}

/// A member's JoinGroup metadata and SyncGroup assignment are kept while it
/// is in the group: past 1 MiB each is refused, so a client cannot park
/// request-sized blobs (up to `max_request_bytes`) in the coordinator.
#[test]
fn groups_member_metadata_over_a_mebibyte_is_refused() {
    let broker = Broker::start("");
    let join = |metadata_len: usize, member_id: StrBytes| -> JoinGroupResponse {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("blobs")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(member_id)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from(vec![0u8; metadata_len]))]);
        crate::bad_input::call(&broker, ApiKey::JoinGroup, JOIN_GROUP_VERSION, &request)
    };
    let limit = (1 << 20) - "range".len();
    let over = join(limit + 1, StrBytes::default());
    assert_eq!(over.error_code, ResponseError::InvalidRequest.code());
    let first = join(limit, StrBytes::default());
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let at_limit = join(limit, first.member_id);
    assert_eq!(at_limit.error_code, 0, "a member at the limit joins");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("blobs")))
        .with_generation_id(at_limit.generation_id)
        .with_member_id(at_limit.member_id.clone())
        .with_assignments(vec![
            kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(at_limit.member_id.clone())
                .with_assignment(Bytes::from(vec![0u8; (1 << 20) + 1])),
        ]);
    let refused: SyncGroupResponse = crate::bad_input::call(&broker, ApiKey::SyncGroup, SYNC_GROUP_VERSION, &sync);
    assert_eq!(refused.error_code, ResponseError::InvalidRequest.code());
}
