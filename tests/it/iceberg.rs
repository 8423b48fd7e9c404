//! Archived topics as Iceberg tables, read by real engines (pyiceberg
//! through the REST catalog and by metadata location, DuckDB's iceberg
//! extension) from the S3 test server over HTTP.

use std::path::Path;
use std::sync::Arc;

use crate::archive::{archive_config, assert_bucket_holds, wait_for_tiering};
use crate::common::{metric, run_python, wait_until, Broker};
use crate::kafka::{create_topic, produce, producer, record};
use crate::s3::{S3Server, BUCKET};

/// One archived object, from the newest partition manifest in the bucket.
#[derive(Debug, Clone)]
struct Object {
    key: String,
    last_offset: i64,
    records: i64,
    size_bytes: u64,
    min_timestamp: i64,
    max_timestamp: i64,
}

fn archived_objects(s3: &S3Server, prefix: &str, topic: &str, partitions: i32) -> Vec<Object> {
    let mut objects = Vec::new();
    for p in 0..partitions {
        let dir = s3.bucket_dir().join(format!("{prefix}/topic={topic}/partition={p}/_manifest"));
        let newest = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).max().unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
        for o in manifest["objects"].as_array().unwrap() {
            objects.push(Object {
                key: o["key"].as_str().unwrap().to_string(),
                last_offset: o["last_offset"].as_i64().unwrap(),
                records: o["records"].as_i64().unwrap(),
                size_bytes: o["size_bytes"].as_u64().unwrap(),
                min_timestamp: o["min_timestamp"].as_i64().unwrap(),
                max_timestamp: o["max_timestamp"].as_i64().unwrap(),
            });
        }
    }
    objects
}

fn url(prefix: &str, key: &str) -> String {
    format!("s3://{BUCKET}/{prefix}/{key}")
}

/// Status and body of an HTTP request to the broker.
fn http(method: &str, url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(
        stream,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The table's metadata as the catalog serves it, once its current
/// snapshot counts `records` records.
fn wait_for_table(broker: &Broker, namespace: &str, topic: &str, records: i64) -> serde_json::Value {
    let path = format!("/iceberg/v1/namespaces/{namespace}/tables/{topic}");
    let mut last = serde_json::Value::Null;
    let found = (0..900).any(|_| {
        let (status, body) = http("GET", &broker.http(&path));
        if status == 200 {
            last = serde_json::from_str(&body).unwrap();
            let metadata = &last["metadata"];
            let current = metadata["current-snapshot-id"].as_i64();
            let snapshot = metadata["snapshots"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["snapshot-id"].as_i64() == current));
            if snapshot.is_some_and(|s| s["summary"]["total-records"].as_str() == Some(records.to_string().as_str())) {
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        false
    });
    if !found {
        let log = broker.log();
        let tail: Vec<&str> = log.lines().filter(|l| !l.contains("request")).rev().take(40).collect();
        panic!(
            "the table never reached {records} records; last: {last}\nbroker log tail:\n{}",
            tail.join("\n")
        );
    }
    last
}

fn read_table(
    broker: &Broker,
    s3: &S3Server,
    namespace: &str,
    topic: &str,
    offset_at: i64,
    ts_at: i64,
    rows: Option<&Path>,
) -> serde_json::Value {
    let uri = broker.http("/iceberg");
    let (offset_at, ts_at) = (offset_at.to_string(), ts_at.to_string());
    let endpoint = format!("http://{}", s3.endpoint());
    let mut args = vec![uri.as_str(), &endpoint, namespace, topic, &offset_at, &ts_at]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    if let Some(path) = rows {
        args.push(path.to_str().unwrap().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = run_python("iceberg_read_table.py", &args);
    serde_json::from_str(report.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {report}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// `archive_config` with the catalog's namespace set and credentials vended.
fn config(prefix: &str) -> String {
    format!(
        "iceberg_namespace = \"analytics\"\niceberg_vend_credentials = true\n{}",
        archive_config(prefix)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_read_every_record_once_through_the_catalog_and_prune_by_offset_and_time() {
    let s3 = S3Server::start();
    let broker = Broker::start_with_env(&config("lake"), &s3.env());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "orders", 3, &[]).await;
    let sent: Vec<_> = (0..200_000).map(|i| record(i, 40)).collect();
    let placed = produce(&producer(&bootstrap, &[]), "orders", &sent).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 200_000.0));
    let loaded = tokio::task::block_in_place(|| wait_for_table(&broker, "analytics", "orders", 200_000));
    let location = loaded["metadata-location"].as_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("s3://{BUCKET}/lake/topic=orders/_iceberg/metadata/v")),
        "{location}"
    );
    assert_eq!(loaded["config"]["s3.path-style-access"], "true");

    // Cut-offs that only some files can match: the last object of
    // partition 0 by offset, the newest object's first record by time.
    let objects = archived_objects(&s3, "lake", "orders", 3);
    assert!(objects.len() > 6, "{} objects", objects.len());
    let offset_at = objects
        .iter()
        .filter(|o| o.key.contains("partition=0/"))
        .map(|o| o.last_offset)
        .max()
        .unwrap()
        - 10;
    let ts_at = objects.iter().map(|o| o.min_timestamp).max().unwrap();
    let expect = |keep: &dyn Fn(&Object) -> bool| {
        let mut v: Vec<String> = objects.iter().filter(|o| keep(o)).map(|o| url("lake", &o.key)).collect();
        v.sort();
        v
    };

    let rows_file = tempfile::NamedTempFile::new().unwrap();
    let report = tokio::task::block_in_place(|| read_table(&broker, &s3, "analytics", "orders", offset_at, ts_at, Some(rows_file.path())));
    assert_eq!(report["namespaces"], serde_json::json!([["analytics"]]));
    assert_eq!(report["tables"], serde_json::json!([["analytics", "orders"]]));
    assert_eq!(report["rows"], 200_000);
    assert_eq!(report["distinct_positions"], 200_000, "every record exactly once");
    assert_eq!(report["partitions"], serde_json::json!([0, 1, 2]));
    assert_eq!(report["static_rows"], 200_000, "StaticTable from the metadata location");
    assert_eq!(report["duckdb"]["rows"], 200_000, "DuckDB iceberg_scan: {}", report["duckdb"]);
    let names: Vec<&str> = report["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["offset", "timestamp", "key", "value", "headers", "partition"]);
    // The rows are the records that were sent, at their offsets.
    let rows = crate::archive::parse_rows(rows_file.path());
    assert_bucket_holds(&rows, &sent, &placed);

    // Pruning: a filtered scan plans only the files whose statistics match.
    assert_eq!(strings(&report["files"]), expect(&|_| true));
    let by_offset = strings(&report["files_offset_at"]);
    assert_eq!(by_offset, expect(&|o| o.last_offset >= offset_at));
    assert!(by_offset.len() < objects.len());
    let by_time = strings(&report["files_timestamp_at"]);
    assert_eq!(by_time, expect(&|o| o.max_timestamp >= ts_at));
    assert!(by_time.len() < objects.len());

    // The static route: a version hint beside the metadata.
    let hint = std::fs::read_to_string(s3.bucket_dir().join("lake/topic=orders/_iceberg/metadata/version-hint.text")).unwrap();
    assert!(location.ends_with(&format!("/v{hint}.metadata.json")), "{hint} vs {location}");

    // The catalog's errors are the spec's.
    let error_type = |method: &str, path: &str| {
        let (status, body) = http(method, &broker.http(path));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (
            status,
            v["error"]["type"].as_str().unwrap_or_default().to_string(),
            v["error"]["code"].as_u64(),
        )
    };
    assert_eq!(
        error_type("GET", "/iceberg/v1/namespaces/nope/tables/orders"),
        (404, "NoSuchNamespaceException".into(), Some(404))
    );
    assert_eq!(
        error_type("GET", "/iceberg/v1/namespaces/analytics/tables/nope"),
        (404, "NoSuchTableException".into(), Some(404))
    );
    assert_eq!(error_type("HEAD", "/iceberg/v1/namespaces/analytics/tables/nope").0, 404);
    assert_eq!(error_type("HEAD", "/iceberg/v1/namespaces/analytics/tables/orders").0, 204);
    assert_eq!(
        error_type("POST", "/iceberg/v1/namespaces/analytics/tables/orders"),
        (406, "UnsupportedOperationException".into(), Some(406))
    );
    assert_eq!(
        error_type("GET", "/iceberg/v1/namespaces/analytics/tables/__consumer_offsets").0,
        404
    );
    assert!(metric(&broker, "sediment_iceberg_commits_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_commits_a_delete_snapshot_and_a_corrupt_table_is_repaired() {
    let s3 = S3Server::start();
    let broker = Broker::start_with_env(&config("kept"), &s3.env());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "events", 1, &[]).await;
    let batch = |from: usize| (from..from + 3_000).map(|i| record(i, 100)).collect::<Vec<_>>();
    produce(&producer(&bootstrap, &[]), "events", &batch(0)).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 3_000.0));
    tokio::task::block_in_place(|| wait_for_table(&broker, "analytics", "events", 3_000));
    produce(&producer(&bootstrap, &[]), "events", &batch(3_000)).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 6_000.0));
    tokio::task::block_in_place(|| wait_for_table(&broker, "analytics", "events", 6_000));

    // Retention by size removes the oldest object only.
    let objects = archived_objects(&s3, "kept", "events", 1);
    assert!(objects.len() >= 2, "{objects:?}");
    let oldest = objects[0].clone();
    let total: u64 = objects.iter().map(|o| o.size_bytes).sum();
    crate::archive::set_topic_config(&bootstrap, "events", "retention.bytes", &(total - oldest.size_bytes).to_string()).await;
    let remaining = 6_000 - oldest.records;
    let after_delete = tokio::task::block_in_place(|| wait_for_table(&broker, "analytics", "events", remaining));
    let oldest_file = s3.bucket_dir().join(format!("kept/{}", oldest.key));
    tokio::task::block_in_place(|| wait_until("the oldest object deleted", 60, || !oldest_file.exists()));
    let delete_snapshot = after_delete["metadata"]["current-snapshot-id"].as_i64().unwrap();
    let operation = after_delete["metadata"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot-id"] == delete_snapshot)
        .map(|s| s["summary"]["operation"].clone());
    assert_eq!(operation, Some(serde_json::json!("delete")));

    // More records after the delete (retention.bytes off again, or it
    // would take the next oldest): the delete snapshot is still there to
    // travel back to, and reads while its files exist.
    crate::archive::set_topic_config(&bootstrap, "events", "retention.bytes", "-1").await;
    produce(&producer(&bootstrap, &[]), "events", &batch(6_000)).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 9_000.0));
    tokio::task::block_in_place(|| wait_for_table(&broker, "analytics", "events", remaining + 3_000));
    let report = tokio::task::block_in_place(|| read_table(&broker, &s3, "analytics", "events", 0, 0, None));
    assert_eq!(report["rows"], remaining + 3_000);
    assert!(
        !strings(&report["files"]).contains(&url("kept", &oldest.key)),
        "the current snapshot names no deleted object"
    );
    assert_eq!(
        report["time_travel"][delete_snapshot.to_string()],
        remaining,
        "{}",
        report["time_travel"]
    );
    assert_eq!(report["duckdb"]["rows"], remaining + 3_000);

    // A corrupt newest metadata file is reported and the next commit
    // rebuilds the table from the archive's manifests.
    let metadata_dir = s3.bucket_dir().join("kept/topic=events/_iceberg/metadata");
    let hint = std::fs::read_to_string(metadata_dir.join("version-hint.text")).unwrap();
    std::fs::write(metadata_dir.join(format!("v{hint}.metadata.json")), b"{\"format-version\": 2, torn").unwrap();
    let (status, body) = http("GET", &broker.http("/iceberg/v1/namespaces/analytics/tables/events"));
    assert_eq!(status, 500, "{body}");
    produce(&producer(&bootstrap, &[]), "events", &batch(9_000)).await;
    tokio::task::block_in_place(|| wait_for_tiering(&broker, 12_000.0));
    tokio::task::block_in_place(|| wait_for_table(&broker, "analytics", "events", remaining + 6_000));
    assert!(metric(&broker, "sediment_iceberg_metadata_repairs_total") >= 1.0);
    assert!(broker.log().contains("the Iceberg table is unreadable"));
    let report = tokio::task::block_in_place(|| read_table(&broker, &s3, "analytics", "events", 0, 0, None));
    assert_eq!(report["rows"], remaining + 6_000);
    assert_eq!(report["static_rows"], remaining + 6_000);
}

/// The S3 test server's bucket as an object store.
fn s3_store(s3: &S3Server) -> Arc<dyn object_store::ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(format!("http://{}", s3.endpoint()))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("sediment")
            .with_secret_access_key("sediment-secret")
            .build()
            .unwrap(),
    )
}

/// A committer to the S3 test server's bucket, as `writer`.
fn committer(
    store: &Arc<dyn object_store::ObjectStore>,
    writer: &str,
    retention: sediment::iceberg::schema::Retention,
) -> sediment::iceberg::table::Committer {
    sediment::iceberg::table::Committer::new(
        store.clone(),
        format!("s3://{BUCKET}"),
        writer.into(),
        retention,
        Arc::new(sediment::metrics::Metrics::new()),
    )
}

/// A partition manifest that names one more object.
async fn archive_object(
    store: &dyn object_store::ObjectStore,
    topic: &str,
    id: uuid::Uuid,
    partition: i32,
    first: i64,
    count: i64,
) -> String {
    use sediment::archive::manifest::{self, ObjectEntry};
    let entry = ObjectEntry {
        key: sediment::archive::layout::data_key(topic, partition, first, first + count - 1).to_string(),
        first_offset: first,
        last_offset: first + count - 1,
        records: count,
        size_bytes: 1,
        min_timestamp: first,
        max_timestamp: first + count - 1,
    };
    let key = entry.key.clone();
    let current = manifest::load(store, topic, partition)
        .await
        .unwrap()
        .for_incarnation(&id.to_string());
    let updated = current.with_object(entry, 0).unwrap();
    manifest::publish(store, topic, partition, &current, &updated).await.unwrap();
    key
}

/// Snapshot expiry over 250 commits (one per tiering round) against S3,
/// with retention trimming the archive now and then: the metadata folder
/// stays bounded and the table stays equal to the archive. (The unit test
/// `iceberg::table::tests::appends_retention_and_a_thousand_rounds_keep_metadata_bounded`
/// runs 1,000 rounds on an in-memory store; on the S3 test server, in a
/// debug build, a round takes about 0.3 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_stays_bounded_over_many_rounds_on_s3() {
    use sediment::archive::manifest;
    use sediment::iceberg::table::current_files;

    let s3 = S3Server::start();
    let store = s3_store(&s3);
    let archive_url = format!("s3://{BUCKET}");
    let id = uuid::Uuid::from_u128(43);
    let retention = sediment::iceberg::schema::Retention {
        max_snapshots: 10,
        previous_versions_max: 5,
        min_manifests_to_merge: 8,
        ..Default::default()
    };
    let committer = committer(&store, "b0-1", retention);
    let metadata_dir = s3.bucket_dir().join("topic=bounded/_iceberg/metadata");
    let mut next = [0i64; 2];
    let mut most = 0;
    for round in 0..250usize {
        let p = round % 2;
        archive_object(store.as_ref(), "bounded", id, p as i32, next[p], 10).await;
        next[p] += 10;
        if round % 50 == 49 {
            for p in 0..2 {
                let current = manifest::load(store.as_ref(), "bounded", p).await.unwrap();
                let trimmed = current.without_oldest(5, 0);
                manifest::publish(store.as_ref(), "bounded", p, &current, &trimmed).await.unwrap();
            }
        }
        let committed = committer.sync("bounded", id, 2, round as i64).await.unwrap();
        assert!(committed.version.is_some(), "round {round}");
        most = most.max(std::fs::read_dir(&metadata_dir).unwrap().count());
    }
    // 10 snapshots' lists, 6 metadata versions, the hint, and the manifests
    // those snapshots name.
    assert!(most < 60, "{most} files in the metadata folder");
    let files = current_files(store.as_ref(), &archive_url, "bounded").await.unwrap();
    assert_eq!(files.len(), 250 - 5 * 10);
    assert!(committer.metrics.iceberg_snapshots_expired.get() >= 230);
}

/// Two committers (as two brokers leading partitions of one topic would)
/// commit to one table at once over S3 while objects are archived: no
/// commit is lost and the table's files are the archive's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_committers_racing_over_s3_lose_no_commit() {
    use sediment::iceberg::table::{current_files, Committer};

    let s3 = S3Server::start();
    let store = s3_store(&s3);
    let archive_url = format!("s3://{BUCKET}");
    let id = uuid::Uuid::from_u128(42);
    let (a, b) = (
        committer(&store, "b1-1", Default::default()),
        committer(&store, "b2-1", Default::default()),
    );
    let rounds = 30;
    let mut next = [0i64; 2];
    let mut expected = Vec::new();
    for round in 0..rounds {
        let p = round % 2;
        let first = next[p];
        next[p] += 100;
        let key = archive_object(store.as_ref(), "race", id, p as i32, first, 100).await;
        expected.push(format!("{archive_url}/{key}"));
        let (ra, rb) = tokio::join!(a.sync("race", id, 2, round as i64), b.sync("race", id, 2, round as i64));
        ra.unwrap();
        rb.unwrap();
    }
    expected.sort();
    assert_eq!(current_files(store.as_ref(), &archive_url, "race").await.unwrap(), expected);
    let commits = |c: &Committer| {
        c.metrics
            .iceberg_commits
            .get_or_create(&sediment::metrics::OperationLabels {
                operation: "append".into(),
            })
            .get()
    };
    assert_eq!(
        commits(&a) + commits(&b),
        rounds as u64,
        "one append per archived object, none lost or doubled"
    );
}
