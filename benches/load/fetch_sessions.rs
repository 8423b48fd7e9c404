//! fetch-sessions mode: what a consumer of many partitions costs per fetch
//! with full fetches and with an incremental fetch session (KIP-227).
//! One raw connection fetches every partition at its end (an idle
//! consumer's steady state: nothing new), 2,000 times each way, and the
//! request and response sizes, the round trip and the broker's CPU per
//! fetch are reported.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{create_topic, free_port, percentile, produce_n, Broker, Opts};

const FETCHES: usize = 2000;
const FETCH_VERSION: i16 = 12;

pub(super) fn run(o: &Opts) {
    let partitions = if o.partitions == 1 { 1000 } else { o.partitions };
    let broker = Broker::start(o);
    let topic = format!("load-sessions-{}", free_port());
    create_topic(o, &broker.bootstrap, &topic, partitions);
    let o = Opts {
        partitions,
        count: partitions as u64 * 10,
        ..o.clone()
    };
    produce_n(&broker.bootstrap, &topic, &o);
    let mut conn = Connection::open(&broker.bootstrap);
    let ends = conn.log_ends(&topic, partitions);
    let full = fetch_of(&topic, &ends);
    println!("fetch-sessions: {partitions} partitions, each fetched at its end (nothing new), {FETCHES} fetches each way");
    println!("| fetch | request bytes | response bytes | round trip mean | p99 | broker CPU per fetch |");
    println!("| --- | --- | --- | --- | --- | --- |");

    measure("full (no session)", &broker, &mut conn, |_| full.clone());

    let mut opening = full.clone();
    opening.session_epoch = 0;
    let (response, _) = conn.fetch(&opening);
    assert!(response.session_id > 0, "the broker started no session");
    let session_id = response.session_id;
    measure("incremental (session)", &broker, &mut conn, |i| {
        let mut next = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(full.max_bytes)
            .with_session_id(session_id)
            .with_session_epoch(i as i32 + 1);
        next.isolation_level = full.isolation_level;
        next
    });
}

fn measure(name: &str, broker: &Broker, conn: &mut Connection, request: impl Fn(usize) -> FetchRequest) {
    let cpu_before = broker.cpu_seconds();
    let mut round_trips = Vec::with_capacity(FETCHES);
    let (mut request_bytes, mut response_bytes) = (0, 0);
    let started = Instant::now();
    for i in 0..FETCHES {
        let req = request(i);
        let sent = Instant::now();
        let (response, sizes) = conn.fetch(&req);
        round_trips.push(sent.elapsed().as_micros() as u32);
        assert_eq!(response.error_code, 0, "fetch {i} of {name} failed");
        (request_bytes, response_bytes) = sizes;
    }
    let elapsed = started.elapsed();
    let cpu_us = (broker.cpu_seconds() - cpu_before) * 1e6 / FETCHES as f64;
    round_trips.sort_unstable();
    let mean = elapsed.as_micros() as f64 / FETCHES as f64;
    println!(
        "| {name} | {request_bytes} | {response_bytes} | {:.3} ms | {:.3} ms | {cpu_us:.0} µs |",
        mean / 1000.0,
        percentile(&round_trips, 0.99),
    );
}

fn fetch_of(topic: &str, ends: &[i64]) -> FetchRequest {
    let partitions = ends
        .iter()
        .enumerate()
        .map(|(p, end)| {
            FetchPartition::default()
                .with_partition(p as i32)
                .with_fetch_offset(*end)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(name(topic)).with_partitions(partitions)])
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// One connection speaking raw requests, one at a time.
struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    fn open(bootstrap: &str) -> Self {
        let stream = TcpStream::connect(bootstrap).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self { stream, correlation_id: 0 }
    }

    /// Sends `req` and returns the response body (header read) with the
    /// request's and response's frame sizes.
    fn call<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) -> (Bytes, (usize, usize)) {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("load")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).unwrap();
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).unwrap();
        let sizes = (frame.len(), body.len() + 4);
        let mut body = Bytes::from(body);
        ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
        (body, sizes)
    }

    fn fetch(&mut self, req: &FetchRequest) -> (FetchResponse, (usize, usize)) {
        let (mut body, sizes) = self.call(ApiKey::Fetch, FETCH_VERSION, req);
        (FetchResponse::decode(&mut body, FETCH_VERSION).unwrap(), sizes)
    }

    fn log_ends(&mut self, topic: &str, partitions: i32) -> Vec<i64> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default().with_name(name(topic)).with_partitions(
                (0..partitions)
                    .map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1))
                    .collect(),
            )]);
        let (mut body, _) = self.call(ApiKey::ListOffsets, 7, &req);
        let response = ListOffsetsResponse::decode(&mut body, 7).unwrap();
        let mut ends = vec![0; partitions as usize];
        for p in &response.topics[0].partitions {
            ends[p.partition_index as usize] = p.offset;
        }
        ends
    }
}
