//! Hostile and heavy clients (issue 6): batches whose records lie,
//! decompression bombs, large compressible records, and pipelined requests
//! that must take effect in order. The broker runs with its address space
//! capped, so a regression that allocates without bound kills the broker and
//! fails the test instead of taking the machine down.

use std::io::Write;
use std::net::TcpStream;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::archive::wait_for_tiering;
use crate::bad_input::{connect, encode_batch_of, fetch_request, produce_raw, read_response, request};
use crate::common::{metric, Broker};
use crate::kafka::{consume_all, create_topic, produce, producer, record};
use sediment::log::encode::put_varint;

const GIB: u64 = 1 << 30;

/// One uncompressed v2 record with no key and no headers.
fn record_bytes(offset_delta: i64, value: &[u8]) -> Vec<u8> {
    record_at(offset_delta, 0, value)
}

/// The same, `timestamp_delta` ms after the batch's base timestamp.
fn record_at(offset_delta: i64, timestamp_delta: i64, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(&mut body, timestamp_delta);
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, -1);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varint(&mut body, 0);
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// A batch around `records` (compressed with `codec` already), claiming
/// `count` records, with a valid CRC.
fn batch_around(records: &[u8], codec: i16, count: i32) -> Bytes {
    let mut b = encode_batch_of(1, 1)[..61].to_vec();
    b.extend_from_slice(records);
    let length = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    b[21..23].copy_from_slice(&codec.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
    match codec {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        2 => {
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for chunk in data.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        3 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(data).unwrap();
            let (out, result) = e.finish();
            result.unwrap();
            out
        }
        4 => zstd::stream::encode_all(data, 1).unwrap(),
        _ => data.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_whose_records_lie_are_refused_and_nothing_acknowledged_is_lost() {
    let broker = Broker::start_limited("", GIB);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "liars", 1, &[]).await;
    let one = record_bytes(0, b"only");
    let deltas_from_five: Vec<u8> = (5..8).flat_map(|d| record_bytes(d, b"v")).collect();
    let cases: Vec<(&str, Bytes, i16)> = vec![
        ("one record claiming 2^31-1", batch_around(&one, 0, i32::MAX), 2),
        ("records that do not parse", batch_around(&[0xff; 40], 0, 3), 2),
        ("a record longer than the batch", batch_around(&[0x7e, 0, 0], 0, 1), 2),
        (
            "more records than claimed",
            batch_around(&[one.clone(), record_bytes(1, b"x")].concat(), 0, 1),
            2,
        ),
        ("offset deltas 5,6,7", batch_around(&deltas_from_five, 0, 3), 87),
        ("gzip offset deltas 5,6,7", batch_around(&compress(1, &deltas_from_five), 1, 3), 87),
        ("gzip garbage", batch_around(&[0x1f, 0x8b, 8, 0, 0xde, 0xad], 1, 1), 2),
    ];
    tokio::task::block_in_place(|| {
        let mut s = connect(&broker);
        for (name, batch, code) in &cases {
            assert_eq!(produce_raw(&mut s, "liars", batch.clone()), *code, "{name}");
        }
        // Nothing was appended: the next good batch lands at offset 0.
        assert_eq!(produce_raw(&mut s, "liars", encode_batch_of(3, 10)), 0);
    });
    let sent: Vec<_> = (0..50).map(|i| record(i, 30)).collect();
    produce(&producer(&bootstrap, &[("compression.type", "gzip")]), "liars", &sent).await;
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "liars", 1, 53, &[]))
        .await
        .unwrap();
    let offsets: Vec<i64> = consumed[&0].iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..53).collect::<Vec<_>>());
    // Every refusal is counted, under the name of its error.
    assert_eq!(
        crate::common::metric_sum(&broker, "sediment_produce_errors_total"),
        cases.len() as f64
    );
    for (error, code) in [("CORRUPT_MESSAGE", 2), ("INVALID_RECORD", 87)] {
        let refused = cases.iter().filter(|c| c.2 == code).count();
        let series = format!("sediment_produce_errors_total{{error=\"{error}\"}}");
        assert_eq!(metric(&broker, &series), refused as f64, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_refused_for_every_codec_and_the_broker_stays_up() {
    // 16 MiB may be decoded per batch; each bomb decodes to 64 MiB.
    let mut broker = Broker::start_limited("max_batch_decoded_bytes = 16777216\n", GIB);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "bombs", 1, &[]).await;
    let zeros = vec![0u8; 1 << 20];
    let records: Vec<u8> = (0..64).flat_map(|d| record_bytes(d, &zeros)).collect();
    tokio::task::block_in_place(|| {
        let mut s = connect(&broker);
        for codec in [1i16, 2, 3, 4] {
            let bomb = batch_around(&compress(codec, &records), codec, 64);
            assert!(bomb.len() < 4 << 20, "codec {codec}: a bomb is small ({} bytes)", bomb.len());
            assert_eq!(produce_raw(&mut s, "bombs", bomb), 10, "codec {codec}: MESSAGE_TOO_LARGE");
        }
        // A raw snappy block whose preamble claims 4 GiB, in 94 bytes.
        let mut claim = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        claim.resize(94 - 61, 0);
        assert_eq!(produce_raw(&mut s, "bombs", batch_around(&claim, 2, 1)), 2, "CORRUPT_MESSAGE");
    });
    assert!(broker.is_running(), "{}", broker.log());
    // Well-behaved compressed producers are served as before.
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let sent: Vec<_> = (0..100).map(|i| record(i, 1000)).collect();
        produce(&producer(&bootstrap, &[("compression.type", codec)]), "bombs", &sent).await;
    }
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "bombs", 1, 400, &[]))
        .await
        .unwrap();
    assert_eq!(consumed[&0].len(), 400);
    assert!(broker.is_running(), "{}", broker.log());
}

/// Finding 2: a librdkafka producer with zstd and large, repetitive JSON
/// values (about 1,000x compressible) fills a segment that decodes to far
/// more than the broker may hold at once. The uploader must archive it in
/// byte-bounded pieces; before, it built one Arrow column of every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_compressible_records_are_archived_in_bounded_memory() {
    let config = "log_maintenance_interval_ms = 200\ntiering_interval_ms = 200\n[topic_defaults]\n\"segment.ms\" = \"1000\"\n";
    let broker = Broker::start_limited(config, GIB);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "json", 1, &[]).await;
    const RECORDS: usize = 700;
    const VALUE_BYTES: usize = 900 * 1024;
    let sent: Vec<_> = (0..RECORDS)
        .map(|i| {
            let mut r = record(i, 0);
            let mut json = String::with_capacity(VALUE_BYTES + 100);
            while json.len() < VALUE_BYTES {
                json.push_str(&format!("{{\"id\":{i},\"kind\":\"sensor\",\"ok\":true,\"tags\":[\"a\",\"b\"]}},"));
            }
            r.value = Some(json.into_bytes());
            r
        })
        .collect();
    let decoded: usize = sent.iter().map(|r| r.value.as_ref().map_or(0, Vec::len)).sum();
    assert!(
        decoded as u64 > 600 << 20,
        "the segment decodes to more than half the broker's address space"
    );
    produce(&producer(&bootstrap, &[("compression.type", "zstd")]), "json", &sent).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, RECORDS as f64));
    assert_eq!(metric(&broker, "sediment_tiering_skipped_batches_total"), 0.0);
    let peak = broker.peak_rss();
    assert!(peak < 700 << 20, "peak RSS {} MiB", peak >> 20);
}

fn read_produce_response(s: &mut TcpStream) -> i16 {
    let mut response = read_response(s);
    ResponseHeader::decode(&mut response, 0).unwrap();
    let produced = ProduceResponse::decode(&mut response, 7).unwrap();
    produced.responses[0].partition_responses[0].error_code
}

/// Finding 7: requests pipelined on one connection take effect in order, as
/// Kafka processes them one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_observe_the_effects_of_earlier_ones() {
    let broker = Broker::start_limited("", GIB);
    create_topic(&broker.bootstrap(), "ordered", 1, &[]).await;
    tokio::task::block_in_place(|| {
        let mut s = connect(&broker);
        for round in 0..20i64 {
            let commit = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("pipelined")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("ordered")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(round * 10 + 7)])]);
            let fetch = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("pipelined")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("ordered")))
                    .with_partition_indexes(vec![0])]));
            // Both in one write: the fetch arrives while the commit persists.
            let both = [request(ApiKey::OffsetCommit, 2, &commit), request(ApiKey::OffsetFetch, 1, &fetch)].concat();
            s.write_all(&both).unwrap();
            read_response(&mut s);
            let mut response = read_response(&mut s);
            ResponseHeader::decode(&mut response, 0).unwrap();
            let fetched = OffsetFetchResponse::decode(&mut response, 1).unwrap();
            assert_eq!(fetched.topics[0].partitions[0].committed_offset, round * 10 + 7, "round {round}");
        }
        for round in 0..10 {
            let name = format!("made-{round}");
            let create = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]);
            let produce = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(encode_batch_of(1, 5)))])]);
            let both = [request(ApiKey::CreateTopics, 2, &create), request(ApiKey::Produce, 7, &produce)].concat();
            s.write_all(&both).unwrap();
            read_response(&mut s);
            assert_eq!(
                read_produce_response(&mut s),
                0,
                "round {round}: the topic exists for the produce after it"
            );
        }
    });
}

/// Finding 8: long polls parked on an idle partition are not woken by
/// appends to another topic. Each wake-up is counted, so the test counts
/// work rather than timing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wake_only_the_fetches_of_their_partition() {
    let broker = Broker::start_limited("", GIB);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "idle", 1, &[]).await;
    create_topic(&bootstrap, "busy", 1, &[]).await;
    const PARKED: usize = 300;
    const PRODUCES: usize = 40;
    let fetch = fetch_request("idle", 0, 20_000, 1 << 20);
    let frame = request(ApiKey::Fetch, 4, &fetch);
    tokio::task::block_in_place(|| {
        let parked: Vec<TcpStream> = (0..PARKED)
            .map(|_| {
                let mut s = connect(&broker);
                s.write_all(&frame).unwrap();
                s
            })
            .collect();
        crate::common::wait_until("the fetches parked", 30, || {
            metric(&broker, "sediment_connections") >= PARKED as f64
        });
        let mut s = connect(&broker);
        for _ in 0..PRODUCES {
            assert_eq!(produce_raw(&mut s, "busy", encode_batch_of(1, 10)), 0);
        }
        let wakeups = metric(&broker, "sediment_fetch_wakeups_total");
        assert!(
            wakeups < PARKED as f64,
            "{wakeups} wake-ups of fetches on an idle partition for {PRODUCES} appends elsewhere"
        );
        // A fetch parked on the busy partition is woken by an append there,
        // long before its 20 s wait is over (the socket times out at 5 s).
        let mut waiting = connect(&broker);
        let busy = fetch_request("busy", PRODUCES as i64, 20_000, 1 << 20);
        waiting.write_all(&request(ApiKey::Fetch, 4, &busy)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(produce_raw(&mut s, "busy", encode_batch_of(1, 10)), 0);
        read_response(&mut waiting);
        assert!(metric(&broker, "sediment_fetch_wakeups_total") >= 1.0);
        drop(parked);
    });
}

/// Finding 9: readers that send Fetch requests for 50 MB and never read the
/// responses hold at most `max_response_memory_bytes` between them; readers
/// that stall for an idle period are disconnected and give their share back,
/// and a well-behaved consumer then reads everything. Before, each unread
/// response held its full size, without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_fetch_responses_hold_bounded_memory() {
    const BUDGET: u64 = 64 << 20;
    const READERS: usize = 24;
    const BATCHES: usize = 50;
    let config = format!("max_response_memory_bytes = {BUDGET}\nconnections_max_idle_ms = 3000\n");
    let broker = Broker::start_limited(&config, GIB);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "wide", 1, &[]).await;
    let fetch = fetch_request("wide", 0, 0, 55 << 20);
    let frame = request(ApiKey::Fetch, 4, &fetch);
    tokio::task::block_in_place(|| {
        let mut s = connect(&broker);
        for _ in 0..BATCHES {
            assert_eq!(produce_raw(&mut s, "wide", encode_batch_of(1, 1_000_000)), 0);
        }
        // Each reader asks for all 50 MB, twice, and reads nothing.
        let stalled: Vec<TcpStream> = (0..READERS)
            .map(|_| {
                let mut s = connect(&broker);
                s.write_all(&frame).unwrap();
                s.write_all(&frame).unwrap();
                s
            })
            .collect();
        crate::common::wait_until("the fetches were answered", 30, || {
            metric(&broker, "sediment_requests_total{api=\"Fetch\"}") >= READERS as f64
        });
        let peak = broker.peak_rss();
        assert!(peak < 600 << 20, "peak RSS {} MiB", peak >> 20);
        let held = metric(&broker, "sediment_response_memory_bytes");
        assert!(held > 0.0 && held <= BUDGET as f64, "responses hold {held} bytes");
        assert!(metric(&broker, "sediment_fetch_memory_waits_total") > 0.0);
        // Readers that stop reading are cut off after an idle period.
        crate::common::wait_until("stalled readers were disconnected", 60, || {
            metric(&broker, "sediment_response_memory_bytes") == 0.0
        });
        drop(stalled);
    });
    let got = tokio::task::block_in_place(|| consume_all(&bootstrap, "wide", 1, BATCHES, &[]));
    assert_eq!(got[&0].len(), BATCHES);
    let mut broker = broker;
    assert!(broker.is_running(), "{}", broker.log());
}

/// Idempotent producer state is bounded: a client inventing a producer id
/// per batch makes each partition remember at most
/// `max_producer_ids_per_partition` of them, and the newest still have
/// their retries recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_producer_ids_are_bounded_per_partition() {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let broker = Broker::start_limited("max_producer_ids_per_partition = 50\n", GIB);
    create_topic(&broker.bootstrap(), "ids", 1, &[]).await;
    let batch_from = |producer_id: i64| {
        let record = Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    };
    tokio::task::block_in_place(|| {
        let mut s = connect(&broker);
        for id in 1..=500 {
            assert_eq!(produce_raw(&mut s, "ids", batch_from(id)), 0);
        }
        let remembered = metric(&broker, "sediment_producer_ids");
        assert!((1.0..=50.0).contains(&remembered), "{remembered} producers remembered");
        // The newest producer's retry is still a duplicate: not appended again.
        assert_eq!(produce_raw(&mut s, "ids", batch_from(500)), 0);
    });
    let b = broker.bootstrap();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "ids", 1, usize::MAX, &[]))
        .await
        .unwrap();
    assert_eq!(consumed[&0].len(), 500, "the retry was not appended");
}

/// Request frames being read share `max_request_memory_bytes`: clients that
/// send most of a large request and stop hold at most that much between
/// them, and are cut off after an idle period. Before, each held its frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_large_requests_hold_bounded_memory() {
    const BUDGET: u64 = 16 << 20;
    const SENDERS: usize = 30;
    let config = format!("max_request_bytes = 8388608\nmax_request_memory_bytes = {BUDGET}\nconnections_max_idle_ms = 1000\n");
    let broker = Broker::start_limited(&config, GIB);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "after", 1, &[]).await;
    tokio::task::block_in_place(|| {
        let most_of_a_frame = vec![0u8; 7 << 20];
        let stalled: Vec<TcpStream> = (0..SENDERS)
            .map(|_| {
                let mut s = connect(&broker);
                s.set_write_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
                s.write_all(&(8i32 << 20).to_be_bytes()).unwrap();
                // The broker stops reading once the budget is used up, so
                // this write may not finish; what it sent is enough.
                let _ = s.write_all(&most_of_a_frame);
                s
            })
            .collect();
        let peak = broker.peak_rss();
        assert!(peak < 150 << 20, "peak RSS {} MiB", peak >> 20);
        let held = metric(&broker, "sediment_request_memory_bytes");
        assert!(held > 0.0 && held <= BUDGET as f64, "requests hold {held} bytes");
        assert!(metric(&broker, "sediment_request_memory_waits_total") > 0.0);
        crate::common::wait_until("stalled senders were disconnected", 60, || {
            metric(&broker, "sediment_request_memory_bytes") == 0.0
        });
        drop(stalled);
    });
    let sent: Vec<_> = (0..20).map(|i| record(i, 100)).collect();
    produce(&producer(&bootstrap, &[]), "after", &sent).await;
    let got = tokio::task::block_in_place(|| consume_all(&bootstrap, "after", 1, 20, &[]));
    assert_eq!(got[&0].len(), 20);
}

/// Finding 10: ListOffsets by timestamp that must walk a huge compressed
/// batch does so on the blocking pool, without the partition lock: a produce
/// to the same partition is answered while eight such searches still walk.
/// Before, the searches decoded under the lock on the async workers, and the
/// produce waited behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_searches_decode_without_holding_up_produce() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
    let broker = Broker::start_limited("", GIB);
    create_topic(&broker.bootstrap(), "ts", 1, &[("max.message.bytes", "67108864")]).await;
    // A million tiny records, one millisecond apart: cheap to compress,
    // slow to walk, so each search takes far longer than a produce.
    const RECORDS: i64 = 1_000_000;
    let records: Vec<u8> = (0..RECORDS).flat_map(|d| record_at(d, d, b"v")).collect();
    let mut batch = batch_around(&compress(4, &records), 4, RECORDS as i32).to_vec();
    let base = i64::from_be_bytes(batch[27..35].try_into().unwrap());
    let last = base + RECORDS - 1;
    batch[35..43].copy_from_slice(&last.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let search = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("ts")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(last)])]);
    tokio::task::block_in_place(|| {
        let mut s = connect(&broker);
        assert_eq!(produce_raw(&mut s, "ts", Bytes::from(batch)), 0);
        let searches: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut c = connect(&broker);
                c.write_all(&request(ApiKey::ListOffsets, 1, &search)).unwrap();
                c
            })
            .collect();
        assert_eq!(produce_raw(&mut s, "ts", encode_batch_of(1, 10)), 0);
        for c in &searches {
            c.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let pending = matches!(c.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            assert!(pending, "a search answered before the produce after it");
            c.set_nonblocking(false).unwrap();
        }
        for mut c in searches {
            c.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
            let mut response = read_response(&mut c);
            ResponseHeader::decode(&mut response, 0).unwrap();
            let found = ListOffsetsResponse::decode(&mut response, 1).unwrap();
            let p = &found.topics[0].partitions[0];
            assert_eq!((p.error_code, p.timestamp), (0, last));
        }
    });
}
