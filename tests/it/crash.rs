//! Crashes: SIGKILL during acks=all production, and damaged segment tails.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureRecord;

use crate::common::{http_get, Broker};
use crate::kafka::{consume_all, create_topic, produce, producer, record, TestRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_records_survive_sigkill_during_acks_all_production() {
    let mut broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "crash", 3, &[]).await;
    let p = Arc::new(producer(&bootstrap, &[("message.timeout.ms", "5000")]));
    let acked: Arc<Mutex<Vec<(usize, i32, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (p, acked, stop) = (p.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            let mut inflight = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = record(i, 50);
                let fr = FutureRecord::<[u8], [u8]>::to("crash")
                    .key(r.key.as_deref().unwrap())
                    .payload(r.value.as_deref().unwrap())
                    .timestamp(r.timestamp);
                if let Ok(f) = p.send_result(fr) {
                    let acked = acked.clone();
                    inflight.push(tokio::spawn(async move {
                        if let Ok(Ok(d)) = f.await {
                            acked.lock().unwrap().push((i, d.partition, d.offset));
                        }
                    }));
                    i += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if i.is_multiple_of(1000) {
                    tokio::task::yield_now().await;
                }
            }
            for f in inflight {
                let _ = f.await;
            }
        })
    };
    // Kill while acks are flowing.
    while acked.lock().unwrap().len() < 30_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill();
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    drop(p);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 30_000);

    broker.restart();
    let b = broker.bootstrap();
    // Everything written is read back (acked or not), so read until idle.
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "crash", 3, usize::MAX, &[("fetch.wait.max.ms", "100")]))
        .await
        .unwrap();
    let mut at: HashMap<(i32, i64), &TestRecord> = HashMap::new();
    let mut seen_keys: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (partition, records) in &consumed {
        for (offset, r) in records {
            at.insert((*partition, *offset), r);
            *seen_keys.entry(r.key.clone().unwrap()).or_default() += 1;
        }
    }
    for (i, partition, offset) in &acked {
        let expected = record(*i, 50);
        let got = at
            .get(&(*partition, *offset))
            .unwrap_or_else(|| panic!("acked record {i} at {partition}/{offset} lost"));
        assert_eq!(got.key, expected.key);
        assert_eq!(got.value, expected.value);
        assert_eq!(got.timestamp, expected.timestamp);
    }
    assert!(seen_keys.values().all(|n| *n == 1), "a record appears twice");
}

/// Produces `n` records in batches of `batch` to a one-partition topic.
async fn produce_batches(bootstrap: &str, topic: &str, n: usize) -> Vec<TestRecord> {
    create_topic(bootstrap, topic, 1, &[]).await;
    let sent: Vec<_> = (0..n).map(|i| record(i, 30)).collect();
    produce(
        &producer(bootstrap, &[("batch.num.messages", "50"), ("linger.ms", "20")]),
        topic,
        &sent,
    )
    .await;
    sent
}

fn last_segment(broker: &Broker, topic: &str) -> std::path::PathBuf {
    let dir = broker.partition_dir(topic, 0);
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_segment_tail_is_truncated_and_every_complete_batch_served() {
    let mut broker = Broker::start("");
    let sent = produce_batches(&broker.bootstrap(), "torn", 1000).await;
    broker.kill();
    // A torn write: the first half of a copy of the segment's first batch.
    let segment = last_segment(&broker, "torn");
    let mut bytes = std::fs::read(&segment).unwrap();
    let batch_len = 12 + u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let half = bytes[..batch_len / 2].to_vec();
    bytes.extend_from_slice(&half);
    std::fs::write(&segment, &bytes).unwrap();
    broker.restart();
    let b = broker.bootstrap();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "torn", 1, 1000, &[]))
        .await
        .unwrap();
    let values: Vec<_> = consumed[&0].iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(values, sent, "every acknowledged record, once, in order");
    let metrics = http_get(&broker.http("/metrics")).unwrap();
    assert!(metrics.contains("sediment_recovery_truncated_bytes_total"), "{metrics}");
    assert!(
        !metrics.contains("sediment_recovery_truncated_bytes_total 0\n"),
        "truncation is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_last_batch_is_cut_and_earlier_batches_served() {
    let mut broker = Broker::start("");
    let sent = produce_batches(&broker.bootstrap(), "garbled", 1000).await;
    broker.kill();
    let segment = last_segment(&broker, "garbled");
    let mut bytes = std::fs::read(&segment).unwrap();
    let len = bytes.len();
    bytes[len - 5] ^= 0xff; // inside the last batch's records: its CRC fails
    std::fs::write(&segment, &bytes).unwrap();
    broker.restart();
    let b = broker.bootstrap();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "garbled", 1, usize::MAX, &[]))
        .await
        .unwrap();
    let values: Vec<_> = consumed[&0].iter().map(|(_, r)| r.clone()).collect();
    assert!(
        values.len() < 1000 && values.len() >= 900,
        "only the damaged last batch is dropped: {}",
        values.len()
    );
    assert_eq!(values[..], sent[..values.len()], "the complete batches, in order");
    // The log keeps working after recovery.
    let more = vec![record(5000, 30)];
    let placed = produce(&producer(&broker.bootstrap(), &[]), "garbled", &more).await;
    assert_eq!(placed[0].1, values.len() as i64, "next offset follows the recovered end");
}
