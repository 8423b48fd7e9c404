//! Criterion micro-benchmarks of the hot paths: request frame decode, log
//! append (batch validation + header stamp + write) and log read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use sediment::log::{batch, LogConfig, PartitionLog};

fn batch_of(n: usize, value_len: usize) -> Bytes {
    compressed_batch_of(n, value_len, Compression::None)
}

/// Values are mildly compressible text, as a client's JSON would be.
fn compressed_batch_of(n: usize, value_len: usize, compression: Compression) -> Bytes {
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
            value: Some(Bytes::from(
                format!("{{\"id\":{i},\"v\":\"{}\"}}", i * 7919 % 100_003).repeat(value_len / 16 + 1)[..value_len].to_string(),
            )),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    buf.freeze()
}

fn frame<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn decode(c: &mut Criterion) {
    let records = batch_of(1000, 100);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(vec![PartitionProduceData::default().with_records(Some(records.clone()))])]);
    let produce_frame = frame(ApiKey::Produce, 9, &produce);
    let fetch_frame = frame(ApiKey::Fetch, 12, &FetchRequest::default());
    let mut g = c.benchmark_group("frame_decode");
    g.throughput(Throughput::Bytes(produce_frame.len() as u64));
    g.bench_function("produce_v9_1000x100B", |b| {
        b.iter(|| sediment::protocol::decode_request(produce_frame.clone()).unwrap())
    });
    g.bench_function("fetch_v12", |b| {
        b.iter(|| sediment::protocol::decode_request(fetch_frame.clone()).unwrap())
    });
    g.bench_function("validate_batch_1000x100B", |b| b.iter(|| batch::split_batches(&records).unwrap()));
    g.finish();
}

/// Record-level validation on produce (`log::records::validate`), per
/// codec: the cost the streaming walk adds to each produced batch.
fn record_validation(c: &mut Criterion) {
    use sediment::log::records::{validate, Limits};
    let limits = Limits {
        max_decoded_bytes: 256 << 20,
    };
    let mut g = c.benchmark_group("record_validation");
    g.throughput(Throughput::Elements(1000));
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let records = compressed_batch_of(1000, 100, codec);
        let header = batch::validate(&records).unwrap();
        g.bench_function(format!("{name}_1000x100B"), |b| {
            b.iter(|| validate(&records, &header, limits).unwrap())
        });
    }
    g.finish();
}

fn log_append(c: &mut Criterion) {
    let records = batch_of(1000, 100);
    let batches = batch::split_batches(&records).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_bytes: 256 << 20,
            ..LogConfig::default()
        },
        0,
    )
    .unwrap();
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(records.len() as u64));
    g.bench_function("append_1000x100B_no_fsync", |b| {
        b.iter(|| {
            log.append(&batches, 0, 0).unwrap();
            // Drop the flush list so it does not grow; fsync is measured by the load tool.
            log.take_unflushed();
        })
    });
    let end = log.next_offset();
    g.bench_function("read_1MiB_from_page_cache", |b| {
        b.iter_batched(
            || (end / 2) % end.max(1),
            |offset| log.read(offset, 1 << 20, end).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// One authorization check against 10,000 ACLs: literal and prefixed, on
/// topics and groups, for 1,000 principals (the bound: under 1 µs).
fn acl_check(c: &mut Criterion) {
    use sediment::security::acl::*;
    use sediment::security::Principal;
    let mut acls = Vec::new();
    for i in 0..10_000 {
        acls.push(AclBinding {
            resource_type: if i % 4 == 0 { ResourceType::Group } else { ResourceType::Topic },
            resource_name: if i % 3 == 0 {
                format!("team-{}-", i % 100)
            } else {
                format!("topic-{i}")
            },
            pattern_type: if i % 3 == 0 { PatternType::Prefixed } else { PatternType::Literal },
            principal: format!("User:user-{}", i % 1000),
            host: "*".into(),
            operation: if i % 2 == 0 { Operation::Read } else { Operation::Write },
            permission: if i % 50 == 0 { Permission::Deny } else { Permission::Allow },
        });
    }
    let index = AclIndex::new(&acls);
    let policy = Policy {
        enabled: true,
        super_users: Default::default(),
        allow_everyone_if_no_acl_found: false,
    };
    let principal = Principal::user("user-7");
    let who = Requester {
        principal: &principal,
        host: "10.0.0.1",
    };
    let mut group = c.benchmark_group("acl");
    group.bench_function("authorize_literal_10k_acls", |b| {
        b.iter(|| policy.authorize(&index, who, Operation::Write, ResourceType::Topic, std::hint::black_box("topic-7")))
    });
    group.bench_function("authorize_prefixed_10k_acls", |b| {
        b.iter(|| {
            policy.authorize(
                &index,
                who,
                Operation::Read,
                ResourceType::Topic,
                std::hint::black_box("team-7-orders"),
            )
        })
    });
    group.bench_function("authorize_no_match_10k_acls", |b| {
        b.iter(|| {
            policy.authorize(
                &index,
                who,
                Operation::Read,
                ResourceType::Topic,
                std::hint::black_box("unrelated-topic"),
            )
        })
    });
    group.finish();
}

/// One cleaning pass over a 32 MiB sealed segment of 100-byte records whose
/// 1,000 keys are each updated in every batch (all but the last batch's
/// records go): mapping, rewriting and fsyncing, as the cleaner task does.
fn compaction_pass(c: &mut Criterion) {
    use sediment::log::compaction::{self, CompactionConfig};
    use sediment::log::records::Limits;
    let mut g = c.benchmark_group("compaction");
    g.sample_size(10);
    for (name, compression) in [("pass_32MiB_uncompressed", Compression::None), ("pass_32MiB_lz4", Compression::Lz4)] {
        let records = compressed_batch_of(1000, 100, compression);
        let batches = batch::split_batches(&records).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 32 << 20,
            delete_policy: false,
            compaction: Some(CompactionConfig {
                min_cleanable_dirty_ratio: 0.0,
                ..CompactionConfig::default()
            }),
            ..LogConfig::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), config, 0).unwrap();
        while log.segment_count() < 2 {
            log.append(&batches, 0, 0).unwrap();
            log.take_unflushed();
        }
        let limits = Limits {
            max_decoded_bytes: 1 << 30,
        };
        let plan = log.plan_cleaning(1, log.next_offset(), limits, 4 << 20).unwrap();
        let bytes: u64 = plan.segments.iter().map(|s| s.size).sum();
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(name, |b| {
            b.iter(|| {
                let outcome = compaction::run_pass(&plan).unwrap();
                for cleaned in &outcome.cleaned {
                    std::fs::remove_file(&cleaned.cleaned_path).unwrap();
                }
                outcome.summary()
            })
        });
    }
    g.finish();
}

/// KIP-848 coordinator work, which runs under the group coordinator's lock:
/// the uniform and range assignors over 100 members and 1,000 partitions
/// (a new target after one member joined a balanced group), and a steady
/// heartbeat of a reconciled member of that group.
fn consumer_groups(c: &mut Criterion) {
    use sediment::groups::consumer::assignor::{assign, AssignorName, MemberSpec};
    use sediment::groups::consumer::group::{ConsumerGroup, HeartbeatInput, Timing, TopicCatalog};
    use sediment::groups::consumer::Assignment;
    use std::collections::{BTreeMap, BTreeSet};

    let topics: Vec<uuid::Uuid> = (1..=10u8).map(|i| uuid::Uuid::from_bytes([i; 16])).collect();
    let partitions: BTreeMap<uuid::Uuid, i32> = topics.iter().map(|t| (*t, 100)).collect();
    let ids: Vec<String> = (0..100).map(|i| format!("member-{i:03}")).collect();
    let subscribed: BTreeSet<uuid::Uuid> = topics.iter().copied().collect();
    fn specs<'a>(
        ids: &'a [String],
        subscribed: &BTreeSet<uuid::Uuid>,
        previous: Option<&'a BTreeMap<String, Assignment>>,
    ) -> Vec<MemberSpec<'a>> {
        ids.iter()
            .map(|id| MemberSpec {
                member_id: id,
                instance_id: None,
                topics: subscribed.clone(),
                previous: previous.and_then(|p| p.get(id)),
            })
            .collect()
    }
    let mut group = c.benchmark_group("consumer_group");
    for assignor in AssignorName::ALL {
        let before = assign(assignor, &specs(&ids[..99], &subscribed, None), &partitions);
        group.bench_function(format!("{}_100_members_1000_partitions", assignor.as_str()), |b| {
            b.iter(|| assign(assignor, &specs(&ids, &subscribed, Some(&before)), &partitions))
        });
    }

    struct Ten;
    impl TopicCatalog for Ten {
        fn by_name(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
            let i: u8 = name.strip_prefix('t')?.parse().ok()?;
            (1..=10).contains(&i).then(|| (uuid::Uuid::from_bytes([i; 16]), 100))
        }
        fn names(&self) -> Vec<String> {
            (1..=10).map(|i| format!("t{i}")).collect()
        }
    }
    let timing = Timing {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        max_size: 1_000,
    };
    let names: Vec<String> = (1..=10).map(|i| format!("t{i}")).collect();
    let mut g = ConsumerGroup::new("bench".into());
    let mut owned: BTreeMap<String, (i32, Assignment)> = BTreeMap::new();
    for id in &ids {
        let join = HeartbeatInput {
            api_version: 1,
            member_id: id.clone(),
            rebalance_timeout_ms: 60_000,
            subscribed_topic_names: Some(names.clone()),
            owned: Some(Assignment::new()),
            ..Default::default()
        };
        let out = g.heartbeat(0, join, &Ten, timing).expect("join");
        owned.insert(id.clone(), (out.member_epoch, out.assignment.unwrap_or_default()));
    }
    // Heartbeat until every member is reconciled.
    for _ in 0..5 {
        for id in &ids {
            let (epoch, assignment) = owned[id].clone();
            let beat = HeartbeatInput {
                api_version: 1,
                member_id: id.clone(),
                member_epoch: epoch,
                rebalance_timeout_ms: -1,
                owned: Some(assignment.clone()),
                ..Default::default()
            };
            let out = g.heartbeat(0, beat, &Ten, timing).expect("beat");
            owned.insert(id.clone(), (out.member_epoch, out.assignment.unwrap_or(assignment)));
        }
    }
    let (epoch, assignment) = owned[&ids[0]].clone();
    let steady = HeartbeatInput {
        api_version: 1,
        member_id: ids[0].clone(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(assignment),
        ..Default::default()
    };
    group.bench_function("steady_heartbeat_100_members_1000_partitions", |b| {
        b.iter(|| g.heartbeat(0, steady.clone(), &Ten, timing).expect("steady"))
    });
    group.finish();
}

criterion_group!(
    benches,
    decode,
    record_validation,
    log_append,
    acl_check,
    compaction_pass,
    consumer_groups
);
criterion_main!(benches);
