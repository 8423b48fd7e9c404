//! Compacted topics against the real binary with librdkafka: the cleaner
//! keeps each key's latest record, the disk shrinks, idempotent producers
//! go on, a crash in the middle of a pass loses nothing, and keyless
//! records are refused.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

use crate::common::{metric, wait_until, Broker};
use crate::kafka::{consume_all, create_topic, produce, producer, TestRecord};

const KEYS: usize = 10_000;
const RECORDS: usize = 1_000_000;

/// The broker rolls, archives and cleans within about a second.
const FAST_CLEANING: &str = "log_maintenance_interval_ms = 200\ntiering_interval_ms = 200\ncleaner_interval_ms = 300\n";

/// Record `i` of the workload: every key is updated about 100 times, and
/// one write in 37 deletes its key (a tombstone).
fn update(i: usize) -> TestRecord {
    let key = format!("key-{}", i % KEYS);
    let value = (!i.is_multiple_of(37)).then(|| {
        let mut v = format!("v{i}-").into_bytes();
        v.resize(80, b'.');
        v
    });
    TestRecord {
        key: Some(key.into_bytes()),
        value,
        headers: Vec::new(),
        timestamp: 1_700_000_000_000 + i as i64,
    }
}

/// Each key's latest value (None: deleted) after `records`.
fn latest(records: &[TestRecord]) -> HashMap<Vec<u8>, Option<Vec<u8>>> {
    records
        .iter()
        .map(|r| (r.key.clone().unwrap_or_default(), r.value.clone()))
        .collect()
}

/// What a consumer from offset 0 sees, as key -> latest value, checking
/// that live keys appear once; tombstones may still be there.
fn read_table(bootstrap: &str, topic: &str) -> (HashMap<Vec<u8>, Option<Vec<u8>>>, usize) {
    let consumed = consume_all(bootstrap, topic, 1, usize::MAX, &[]);
    let records = consumed.get(&0).cloned().unwrap_or_default();
    let mut table = HashMap::new();
    let mut last = -1;
    for (offset, r) in &records {
        assert!(*offset > last, "offsets ascend");
        last = *offset;
        table.insert(r.key.clone().unwrap_or_default(), r.value.clone());
    }
    (table, records.len())
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_latest_value_per_key_through_cleaning_and_a_crash() {
    let mut broker = Broker::start(FAST_CLEANING);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "table",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            // A log with little dirt is still cleaned within seconds.
            ("max.compaction.lag.ms", "2000"),
            ("delete.retention.ms", "0"),
        ],
    )
    .await;

    let updates: Vec<TestRecord> = (0..RECORDS).map(update).collect();
    let idempotent = producer(
        &bootstrap,
        &[("linger.ms", "20"), ("batch.size", "1000000"), ("compression.type", "lz4")],
    );
    produce(&idempotent, "table", &updates).await;
    let expected = latest(&updates);
    let dir = broker.partition_dir("table", 0);
    let written = dir_bytes(&dir);
    eprintln!("produced {RECORDS} records over {KEYS} keys: {written} bytes on disk");

    // Kill the broker while a pass is writing its segments (or, if the
    // pass was too quick to catch, once one has run): a crash in the
    // middle of cleaning.
    let mut caught_mid_pass = false;
    wait_until("a cleaning pass starts", 120, || {
        caught_mid_pass = std::fs::read_dir(&dir)
            .map(|es| {
                es.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".cleaned"))
            })
            .unwrap_or(false);
        caught_mid_pass || metric(&broker, "sediment_cleaner_passes_total") >= 1.0
    });
    broker.kill();
    eprintln!(
        "killed the broker {}",
        if caught_mid_pass {
            "in the middle of a pass"
        } else {
            "after a pass"
        }
    );
    broker.start_again();
    let bootstrap = broker.bootstrap();

    // Cleaning resumes and finishes: every segment holds only latest values.
    wait_until("the log is compacted", 180, || {
        let size = dir_bytes(&dir);
        size > 0 && size < written / 10
    });
    // One more write makes the log dirty (a sliver of it: the pass is due by
    // max.compaction.lag.ms), so a pass sees the tombstones in the clean
    // part with delete.retention.ms passed, and drops them.
    let after_crash = producer(&bootstrap, &[]);
    let sentinel = TestRecord {
        key: Some(b"sentinel".to_vec()),
        value: Some(b"last".to_vec()),
        headers: Vec::new(),
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    };
    produce(&after_crash, "table", std::slice::from_ref(&sentinel)).await;
    let live: HashMap<Vec<u8>, Vec<u8>> = expected
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
        .chain([(b"sentinel".to_vec(), b"last".to_vec())])
        .collect();
    let mut seen = (HashMap::new(), 0);
    wait_until("tombstones are gone and only live keys remain", 180, || {
        seen = read_table(&bootstrap, "table");
        seen.1 == live.len()
    });
    let (table, count) = seen;
    assert_eq!(count, live.len(), "exactly one record per live key");
    for (key, value) in &live {
        assert_eq!(table.get(key), Some(&Some(value.clone())), "key {}", String::from_utf8_lossy(key));
    }
    let compacted = dir_bytes(&dir);
    eprintln!(
        "after cleaning: {count} records, {compacted} bytes on disk ({:.1} % of {written})",
        compacted as f64 * 100.0 / written as f64
    );
    assert!(compacted < written / 10, "the disk shrank: {compacted} of {written} bytes");

    // The idempotent producer goes on across cleaning and the restart.
    let more: Vec<TestRecord> = (RECORDS..RECORDS + 20_000).map(update).collect();
    let again = producer(&bootstrap, &[("enable.idempotence", "true")]);
    let placed = produce(&again, "table", &more).await;
    assert_eq!(placed.len(), more.len());
    let mut expected_after = live.clone();
    for (k, v) in latest(&more) {
        match v {
            Some(v) => expected_after.insert(k, v),
            None => expected_after.remove(&k),
        };
    }
    let (table, _) = read_table(&bootstrap, "table");
    for (key, value) in &expected_after {
        assert_eq!(
            table.get(key),
            Some(&Some(value.clone())),
            "key {} after more writes",
            String::from_utf8_lossy(key)
        );
    }
    assert!(metric(&broker, "sediment_cleaner_records_removed_total") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_are_refused_by_compacted_topics_with_invalid_record() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "keyed", 1, &[("cleanup.policy", "compact,delete")]).await;
    let p = producer(
        &bootstrap,
        &[("message.timeout.ms", "10000"), ("enable.idempotence", "false"), ("retries", "0")],
    );
    let keyless = FutureRecord::<[u8], [u8]>::to("keyed").payload(b"no key");
    let outcome = p.send(keyless, Duration::from_secs(10)).await;
    match outcome {
        Err((KafkaError::MessageProduction(code), _)) => assert_eq!(code, RDKafkaErrorCode::InvalidRecord),
        other => panic!("a keyless record must be refused with INVALID_RECORD, got {other:?}"),
    }
    // Keyed records are accepted on the same topic.
    let keyed = FutureRecord::<[u8], [u8]>::to("keyed").key(b"k").payload(b"v");
    assert!(producer(&bootstrap, &[]).send(keyed, Duration::from_secs(10)).await.is_ok());
}
