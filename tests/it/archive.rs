//! The archive against a real S3-compatible server over HTTP: Parquet that
//! pyarrow reads straight from the bucket, consumers reading across the
//! archive/local boundary, a broker on an empty disk, an S3 outage, and
//! retention.

use std::collections::HashMap;

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::common::{metric, run_python, wait_until, Broker};
use crate::kafka::{
    assert_exact, commit_offsets, committed_offsets, config, consume_all, create_topic, produce, producer, record, TestRecord,
};
use crate::s3::{S3Server, BUCKET};

/// Small segments and fast timers, archiving to `s3://archive/<prefix>`.
/// Test records carry 2023 timestamps, so time retention is off unless a
/// test sets it.
pub(crate) fn archive_config(prefix: &str) -> String {
    format!(
        "archive = \"s3://{BUCKET}/{prefix}\"\nlog_maintenance_interval_ms = 200\ntiering_interval_ms = 200\n[topic_defaults]\n\"segment.bytes\" = \"262144\"\n\"segment.ms\" = \"1000\"\n\"retention.ms\" = \"-1\"\n"
    )
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (s != "-").then(|| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    })
}

/// Every row pyarrow finds in the bucket for `topic`, by (partition, offset).
pub(crate) fn read_bucket_with_pyarrow(s3: &S3Server, prefix: &str, topic: &str) -> HashMap<(i32, i64), TestRecord> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let report = run_python(
        "pyarrow_read_archive.py",
        &[&s3.endpoint(), BUCKET, prefix, topic, out.path().to_str().unwrap()],
    );
    assert!(report.starts_with("OK"), "{report}");
    parse_rows(out.path())
}

/// Rows dumped by a reader script: partition, offset, timestamp, key,
/// value, headers per line; each (partition, offset) at most once.
pub(crate) fn parse_rows(path: &std::path::Path) -> HashMap<(i32, i64), TestRecord> {
    let mut rows = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let headers: Vec<(String, Option<String>)> = serde_json::from_str(f[5]).unwrap();
        let record = TestRecord {
            key: unhex(f[3]),
            value: unhex(f[4]),
            headers: headers.into_iter().map(|(k, v)| (k, v.map(|h| unhex(&h).unwrap()))).collect(),
            timestamp: f[2].parse().unwrap(),
        };
        let position = (f[0].parse().unwrap(), f[1].parse().unwrap());
        assert!(rows.insert(position, record).is_none(), "offset {position:?} archived twice");
    }
    rows
}

pub(crate) fn assert_bucket_holds(rows: &HashMap<(i32, i64), TestRecord>, sent: &[TestRecord], placed: &[(i32, i64)]) {
    assert_eq!(rows.len(), sent.len(), "every record archived once");
    for (i, (r, pos)) in sent.iter().zip(placed).enumerate() {
        assert_eq!(rows.get(pos), Some(r), "record {i} at {pos:?}");
    }
}

pub(crate) fn wait_for_tiering(broker: &Broker, records: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !(metric(broker, "sediment_tiering_backlog_bytes") == 0.0 && metric(broker, "sediment_tiering_uploaded_records_total") >= records)
    {
        if std::time::Instant::now() > deadline {
            let log = broker.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "tiering did not catch up; broker log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

pub(crate) async fn set_topic_config(bootstrap: &str, topic: &str, key: &str, value: &str) {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().unwrap();
    admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_serves_pyarrow_consumers_across_the_boundary_and_a_broker_on_an_empty_disk() {
    let s3 = S3Server::start();
    let config = archive_config("sediment");
    let mut broker = Broker::start_with_env(&config, &s3.env());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "orders", 3, &[]).await;
    let sent: Vec<_> = (0..200_000).map(|i| record(i, 40)).collect();
    let placed = produce(&producer(&bootstrap, &[]), "orders", &sent).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 200_000.0));

    // An analytics reader finds every record in the bucket, exactly.
    let rows = tokio::task::block_in_place(|| read_bucket_with_pyarrow(&s3, "sediment", "orders"));
    assert_bucket_holds(&rows, &sent, &placed);

    // Local segments go once archived; a consumer from offset 0 reads
    // through the archive into the local log with no gap or repeat.
    set_topic_config(&bootstrap, "orders", "local.retention.ms", "0").await;
    tokio::task::block_in_place(|| {
        wait_until("local segments removed", 60, || {
            let text = crate::common::http_get(&broker.http("/v1/topics/orders")).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            v["partitions"].as_array().is_some_and(|ps| {
                ps.iter()
                    .all(|p| p["log_start_offset"] == p["log_end_offset"] && p["log_end_offset"].as_i64() > Some(0))
            })
        })
    });
    let more: Vec<_> = (200_000..201_000).map(|i| record(i, 40)).collect();
    let more_placed = produce(&producer(&bootstrap, &[]), "orders", &more).await;
    let all: Vec<_> = sent.iter().chain(&more).cloned().collect();
    let all_placed: Vec<_> = placed.iter().chain(&more_placed).cloned().collect();
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "orders", 3, 201_000, &[]))
        .await
        .unwrap();
    assert_exact(&all, &all_placed, &consumed);
    assert!(metric(&broker, "sediment_archive_read_bytes_total") > 0.0);

    // A broker on an empty disk with the same archive serves the history,
    // and knows where the consumer groups were.
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || commit_offsets(&b, "analysts", "orders", &[(0, 1234), (1, 56), (2, 7)]))
        .await
        .unwrap();
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 201_000.0));
    // One more uploader round copies the offsets.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    broker.kill();
    let fresh = Broker::start_with_env(&config, &s3.env());
    let b = fresh.bootstrap();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "orders", 3, 201_000, &[]))
        .await
        .unwrap();
    assert_exact(&all, &all_placed, &consumed);
    let b = fresh.bootstrap();
    let committed = tokio::task::spawn_blocking(move || committed_offsets(&b, "analysts", "orders", 3))
        .await
        .unwrap();
    assert_eq!(committed, vec![1234, 56, 7], "committed offsets came back from the archive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_stalls_tiering_not_produce_and_loses_nothing() {
    let mut s3 = S3Server::start();
    let config = archive_config("outage");
    let broker = Broker::start_with_env(&config, &s3.env());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "events", 1, &[]).await;
    let first: Vec<_> = (0..20_000).map(|i| record(i, 40)).collect();
    let mut placed = produce(&producer(&bootstrap, &[]), "events", &first).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 20_000.0));

    s3.stop();
    let second: Vec<_> = (20_000..40_000).map(|i| record(i, 40)).collect();
    placed.extend(produce(&producer(&bootstrap, &[]), "events", &second).await);
    tokio::task::block_in_place(|| {
        wait_until("uploads failing and a backlog", 60, || {
            metric(&broker, "sediment_tiering_upload_errors_total") > 0.0 && metric(&broker, "sediment_tiering_backlog_bytes") > 0.0
        })
    });
    // Consumers of local data are unaffected.
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "events", 1, 40_000, &[]))
        .await
        .unwrap();
    assert_eq!(consumed[&0].len(), 40_000);

    s3.restart();
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 40_000.0));
    let sent: Vec<_> = first.into_iter().chain(second).collect();
    let rows = tokio::task::block_in_place(|| read_bucket_with_pyarrow(&s3, "outage", "events"));
    assert_bucket_holds(&rows, &sent, &placed);
}

fn parquet_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_objects_from_the_bucket_and_the_manifest() {
    let s3 = S3Server::start();
    let config = archive_config("retention");
    let broker = Broker::start_with_env(&config, &s3.env());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "old", 1, &[]).await;
    create_topic(&bootstrap, "kept", 1, &[]).await;
    // Records from 2023: older than any retention.ms we set below.
    let sent: Vec<_> = (0..5_000).map(|i| record(i, 40)).collect();
    produce(&producer(&bootstrap, &[]), "old", &sent).await;
    produce(&producer(&bootstrap, &[]), "kept", &sent).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 10_000.0));
    let topic_dir = s3.bucket_dir().join("retention/topic=old");
    assert!(!parquet_files(&topic_dir).is_empty());

    set_topic_config(&bootstrap, "old", "retention.ms", "86400000").await;
    tokio::task::block_in_place(|| wait_until("old objects deleted", 60, || parquet_files(&topic_dir).is_empty()));
    // The newest manifest names no object.
    let manifests = topic_dir.join("partition=0/_manifest");
    let newest = std::fs::read_dir(&manifests).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
    assert_eq!(manifest["objects"].as_array().map(Vec::len), Some(0), "{manifest}");
    // The other topic keeps its objects.
    assert!(!parquet_files(&s3.bucket_dir().join("retention/topic=kept")).is_empty());

    // Deleting a topic deletes its archive.
    let admin: AdminClient<DefaultClientContext> = config_for(&bootstrap);
    admin.delete_topics(&["kept"], &AdminOptions::new()).await.unwrap();
    let kept_dir = s3.bucket_dir().join("retention/topic=kept");
    tokio::task::block_in_place(|| wait_until("deleted topic's archive removed", 60, || parquet_files(&kept_dir).is_empty()));
}

fn config_for(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    config(bootstrap).create().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_budget_refuses_produce_until_tiering_drains() {
    let mut s3 = S3Server::start();
    let config = archive_config("budget").replacen("[topic_defaults]", "local_disk_budget_bytes = 1000000\n[topic_defaults]", 1);
    let broker = Broker::start_with_env(&config, &s3.env());
    create_topic(&broker.bootstrap(), "budget", 1, &[]).await;
    s3.stop();
    let batch = crate::bad_input::encode_batch_of(200, 400);
    let mut s = crate::bad_input::connect(&broker);
    let mut accepted = 0;
    let refused = tokio::task::block_in_place(|| {
        for _ in 0..200 {
            match crate::bad_input::produce_raw(&mut s, "budget", batch.clone()) {
                0 => accepted += 1,
                code => return code,
            }
        }
        0
    });
    assert_eq!(refused, 56, "KAFKA_STORAGE_ERROR once the budget is used");
    assert!(
        accepted > 0 && accepted * batch.len() < 3_000_000,
        "refused near the budget, after {accepted} batches"
    );
    assert!(metric(&broker, "sediment_produce_refused_disk_budget_total") > 0.0);
    // The archive comes back: tiering drains, archived segments are evicted,
    // and produce is accepted again.
    s3.restart();
    tokio::task::block_in_place(|| {
        wait_until("produce accepted again", 120, || {
            let mut s = crate::bad_input::connect(&broker);
            crate::bad_input::produce_raw(&mut s, "budget", batch.clone()) == 0
        })
    });
    let b = broker.bootstrap();
    let expected = (accepted + 1) * 200;
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "budget", 1, expected, &[]))
        .await
        .unwrap();
    assert_eq!(
        consumed[&0].len(),
        expected,
        "every accepted record is readable, from the archive and the local log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_records_do_not_parse_is_refused_and_the_archive_stays_contiguous() {
    let s3 = S3Server::start();
    let broker = Broker::start_with_env(&archive_config("poison"), &s3.env());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "poison", 1, &[]).await;
    // A batch with a valid CRC that claims more records than it holds.
    let mut poison = crate::bad_input::encode_batch_of(5, 10).to_vec();
    poison[57..61].copy_from_slice(&10i32.to_be_bytes());
    poison[23..27].copy_from_slice(&9i32.to_be_bytes());
    let crc = crc32c::crc32c(&poison[21..]);
    poison[17..21].copy_from_slice(&crc.to_be_bytes());
    let good = crate::bad_input::encode_batch_of(10, 10);
    tokio::task::block_in_place(|| {
        let mut s = crate::bad_input::connect(&broker);
        assert_eq!(crate::bad_input::produce_raw(&mut s, "poison", good.clone()), 0);
        assert_eq!(
            crate::bad_input::produce_raw(&mut s, "poison", bytes::Bytes::from(poison)),
            2,
            "CORRUPT_MESSAGE: the records do not parse, whatever the CRC says"
        );
        assert_eq!(crate::bad_input::produce_raw(&mut s, "poison", good.clone()), 0);
        wait_for_tiering(&broker, 20.0);
    });
    set_topic_config(&bootstrap, "poison", "local.retention.ms", "0").await;
    tokio::task::block_in_place(|| {
        wait_until("local segments removed", 60, || {
            metric(&broker, "sediment_log_start_offset") >= 20.0
        })
    });
    let b = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "poison", 1, 20, &[]))
        .await
        .unwrap();
    let offsets: Vec<i64> = consumed[&0].iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..20).collect::<Vec<_>>(), "every acknowledged record, from the archive");
    assert_eq!(metric(&broker, "sediment_tiering_skipped_batches_total"), 0.0);
}
