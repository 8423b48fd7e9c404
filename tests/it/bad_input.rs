//! Malformed and hostile requests: the broker answers with an error code or
//! closes that connection, never panics, and keeps serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::common::{http_get, Broker};
use crate::kafka::{consume_all, create_topic, produce, producer, record};

pub(crate) fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect(broker.bootstrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends raw bytes and reads until the broker closes or answers.
fn send_raw(broker: &Broker, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(broker);
    let _ = s.write_all(bytes);
    // No more bytes are coming: a broker waiting for the rest sees EOF.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_i16(api_key);
    f.put_i16(version);
    f.put_i32(7); // correlation id
    f.put_i16(-1); // null client id
    f.put_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

pub(crate) fn request<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("raw")));
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

pub(crate) fn read_response(s: &mut TcpStream) -> Bytes {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    Bytes::from(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_disturb_a_well_behaved_client() {
    let mut broker = Broker::start("max_request_bytes = 1048576\n");
    // Frames the broker must refuse by closing the connection.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-1i32).to_be_bytes().to_vec()),
        ("length over max_request_bytes", (i32::MAX).to_be_bytes().to_vec()),
        (
            "frame shorter than a header",
            [4i32.to_be_bytes().to_vec(), b"abcd".to_vec()].concat(),
        ),
        ("unknown api key", frame(999, 0, b"")),
        ("unsupported produce version", frame(0, 99, b"")),
        // Regression: kafka-protocol reserved 2^31 elements from this 4-byte
        // count and aborted the process (vendor/kafka-protocol/SEDIMENT-PATCH.md).
        ("metadata claiming 2^31 topics", frame(3, 1, &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])),
        (
            "metadata with a topic name longer than the frame",
            frame(3, 1, &[0, 0, 0, 1, 0x7f, 0xff, b'a']),
        ),
        (
            "flexible metadata claiming a huge compact array",
            frame(3, 9, &[0x00, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        ),
        ("produce body truncated", frame(0, 3, &[0, 1, 0])),
        (
            "fetch with absurd array length",
            frame(1, 4, &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
        ),
        (
            "length larger than the bytes sent",
            [100i32.to_be_bytes().to_vec(), vec![0, 18, 0, 0]].concat(),
        ),
    ];
    for (name, bytes) in &cases {
        let answer = send_raw(&broker, bytes);
        assert!(
            answer.is_empty(),
            "{name}: expected the connection closed, got {} bytes",
            answer.len()
        );
        assert!(broker.is_running(), "{name}: broker died");
    }
    // A pseudo-random storm of frames over one connection each.
    let mut seed: u64 = 0x5eed;
    for _ in 0..300 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let key = (seed >> 33) as i16 % 70;
        let version = (seed >> 20) as i16 % 14;
        let len = (seed >> 40) as usize % 200;
        let body: Vec<u8> = (0..len).map(|i| (seed.rotate_left(i as u32) & 0xff) as u8).collect();
        send_raw(&broker, &frame(key, version, &body));
    }
    assert!(broker.is_running(), "broker survived the storm");

    // A newer ApiVersions gets UNSUPPORTED_VERSION and the ranges in a v0 body.
    let mut s = connect(&broker);
    s.write_all(&frame(ApiKey::ApiVersions as i16, 42, b"")).unwrap();
    let mut response = read_response(&mut s);
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let versions = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(versions.error_code, 35);
    assert!(versions.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));

    // A batch with a bad CRC gets CORRUPT_MESSAGE, and the log is untouched.
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "guarded", 1, &[]).await;
    let good = encode_batch();
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let mut s = connect(&broker);
    for (records, topic, expected) in [
        (Bytes::from(bad), "guarded", 2i16),
        (good.clone(), "guarded", 0),
        (good.clone(), "no/such topic", 17),
        (good.clone(), "missing", 3),
    ] {
        assert_eq!(produce_raw(&mut s, topic, records), expected, "produce to {topic}");
    }

    // The well-behaved client is served as if nothing happened.
    let sent: Vec<_> = (0..100).map(|i| record(i, 20)).collect();
    produce(&producer(&bootstrap, &[]), "guarded", &sent).await;
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "guarded", 1, 101, &[]))
        .await
        .unwrap();
    assert_eq!(consumed[&0].len(), 101, "the one good raw batch plus the client's records");
    let metrics = http_get(&broker.http("/metrics")).unwrap();
    assert!(metrics.contains("sediment_protocol_errors_total{kind=\"decode\"}"), "{metrics}");
    assert!(broker.is_running());
    broker.kill();
}

/// Sends one Produce v7 request (acks=all, partition 0) on `s` and returns
/// the partition's error code.
pub(crate) fn produce_raw(s: &mut TcpStream, topic: &str, records: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    s.write_all(&request(ApiKey::Produce, 7, &req)).unwrap();
    let mut response = read_response(s);
    ResponseHeader::decode(&mut response, 0).unwrap();
    let produced = ProduceResponse::decode(&mut response, 7).unwrap();
    produced.responses[0].partition_responses[0].error_code
}

/// A Fetch (v4 fields) of one partition, 0, of `topic` from `offset`, with
/// `max_bytes` for the response and the partition.
pub(crate) fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32, max_bytes: i32) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    kafka_protocol::messages::FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)])])
}

/// A batch of `n` records with `value_len`-byte values, as a client sends it.
pub(crate) fn encode_batch_of(n: usize, value_len: usize) -> Bytes {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; value_len])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

pub(crate) fn encode_batch() -> Bytes {
    encode_batch_of(1, 9)
}

/// One request and its decoded response, on a fresh connection.
pub(crate) fn call<Req: Encodable, Resp: Decodable>(broker: &Broker, key: ApiKey, version: i16, req: &Req) -> Resp {
    let mut s = connect(broker);
    s.write_all(&request(key, version, req)).unwrap();
    let mut body = read_response(&mut s);
    ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    Resp::decode(&mut body, version).unwrap()
}

/// KIP-320: a client's `current_leader_epoch` older than the leader's gets
/// FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH, in Fetch,
/// ListOffsets and OffsetForLeaderEpoch; the right one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_future_leader_epochs_are_refused() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    use kafka_protocol::messages::*;
    let mut broker = Broker::start("");
    // Restart once, so the leader epoch is past 0 and an older one exists.
    create_topic(&broker.bootstrap(), "epochs", 1, &[]).await;
    broker.restart();
    produce(&producer(&broker.bootstrap(), &[]), "epochs", &[record(0, 10), record(1, 10)]).await;
    let name = TopicName(StrBytes::from_static_str("epochs"));
    let metadata: MetadataResponse = call(
        &broker,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(name.clone())),
        ])),
    );
    let epoch = metadata.topics[0].partitions[0].leader_epoch;
    assert!(epoch >= 1, "a restarted broker's epoch: {epoch}");
    let fenced = kafka_protocol::ResponseError::FencedLeaderEpoch.code();
    let unknown = kafka_protocol::ResponseError::UnknownLeaderEpoch.code();
    for (current, expected) in [(epoch - 1, fenced), (epoch + 1, unknown), (epoch, 0)] {
        let list: ListOffsetsResponse = call(
            &broker,
            ApiKey::ListOffsets,
            7,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default().with_name(name.clone()).with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_current_leader_epoch(current)
                        .with_timestamp(-1),
                ])]),
        );
        assert_eq!(list.topics[0].partitions[0].error_code, expected, "ListOffsets at epoch {current}");
        let mut fetch = fetch_request("epochs", 0, 0, 1 << 20);
        fetch.topics[0].partitions[0].current_leader_epoch = current;
        let fetched: FetchResponse = call(&broker, ApiKey::Fetch, 12, &fetch);
        assert_eq!(fetched.responses[0].partitions[0].error_code, expected, "Fetch at epoch {current}");
        let ends: OffsetForLeaderEpochResponse = call(
            &broker,
            ApiKey::OffsetForLeaderEpoch,
            4,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default().with_topic(name.clone()).with_partitions(
                    vec![OffsetForLeaderPartition::default()
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch)],
                )]),
        );
        let answer = &ends.topics[0].partitions[0];
        assert_eq!(answer.error_code, expected, "OffsetForLeaderEpoch at epoch {current}");
        if expected == 0 {
            assert_eq!(
                (answer.leader_epoch, answer.end_offset),
                (epoch, 2),
                "the current epoch ends at the log end"
            );
        }
    }
}
