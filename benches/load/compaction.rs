//! compaction mode: produce latency while the log cleaner works, against
//! the same produce with nothing to clean, and the cleaning rate.
//!
//! A compacted topic is filled first (`--count` records of `--size` bytes
//! over 1,024 keys, unpaced) with `min.compaction.lag.ms` at an hour, so
//! nothing is cleaned, and the archive is let catch up (only archived
//! segments are cleaned). Then an idempotent acks=all producer runs at
//! `--rate` for `--seconds` twice: on a plain topic with the cleaner idle
//! (the baseline), and on the compacted topic right after its lag is set
//! to 0, so the cleaner works through the fill meanwhile. The latencies of
//! the records sent while a cleaning pass ran are reported apart (a watcher
//! reads each pass's end and duration off the metrics every 10 ms). The
//! cleaning rate is the log bytes the cleaner read over its passes' wall
//! time (`sediment_cleaner_read_bytes_total` over
//! `sediment_cleaner_pass_duration_seconds_sum`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, Producer};

use super::{base_config, create_topic_with_configs, free_port, percentile, produce_n, producer, Broker, Opts};

const SEGMENT_BYTES: &str = "8388608";

pub(super) fn run(o: &Opts) {
    let config = "log_maintenance_interval_ms = 100\ntiering_interval_ms = 100\ncleaner_interval_ms = 200\n";
    let broker = Broker::start_with_config(o, config);
    let suffix = free_port();
    let (plain, compacted) = (format!("load-plain-{suffix}"), format!("load-compacted-{suffix}"));
    let compact_configs = |lag_ms: &'static str| {
        vec![
            ("cleanup.policy", "compact"),
            ("segment.bytes", SEGMENT_BYTES),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", lag_ms),
        ]
    };
    create_topic_with_configs(o, &broker.bootstrap, &plain, 1, &[("segment.bytes", SEGMENT_BYTES)]);
    create_topic_with_configs(o, &broker.bootstrap, &compacted, 1, &compact_configs("3600000"));

    let fill = Opts {
        partitions: 1,
        ..o.clone()
    };
    let (took, _) = produce_n(&broker.bootstrap, &compacted, &fill);
    println!(
        "compaction: filled {} records of {} B in {:.1} s; waiting for the archive",
        o.count,
        o.size,
        took.as_secs_f64()
    );
    broker.wait_metric("sediment_tiering_backlog_bytes", "the archive to catch up", |v| v == 0.0);

    let (base, _) = paced(&broker, &plain, o, false);
    let before = cleaner(&broker);
    let admin: AdminClient<DefaultClientContext> = base_config(&broker.bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&compacted));
    for (k, v) in compact_configs("0") {
        alter = alter.set(k, v);
    }
    rt.block_on(admin.alter_configs(&[alter], &AdminOptions::new())).unwrap()[0]
        .as_ref()
        .unwrap();
    let (all, during_passes) = paced(&broker, &compacted, o, true);
    let after = cleaner(&broker);
    let window = o.seconds as f64;
    let read = after.0 - before.0;
    let busy = after.1 - before.1;
    println!(
        "| produce at {} msgs/s of {} B, acks=all, idempotent | records | p50 ms | p99 ms |",
        o.rate, o.size
    );
    println!("| --- | --- | --- | --- |");
    let row = |what: &str, l: &[u32]| println!("| {what} | {} | {:.2} | {:.2} |", l.len(), percentile(l, 0.5), percentile(l, 0.99));
    row("plain topic, cleaner idle", &base);
    row("compacted topic, whole window", &all);
    row("compacted topic, sent while a pass ran", &during_passes);
    println!(
        "p99 while cleaning / idle: {:.2}; cleaner: {:.1} MB of log read in {:.2} s of passes ({:.0} MB/s), busy {:.0} % of the {window:.0} s window, {:.0} passes, {:.1} MB saved",
        percentile(&during_passes, 0.99) / percentile(&base, 0.99),
        read / 1e6,
        busy,
        read / 1e6 / busy,
        100.0 * busy / window,
        after.2 - before.2,
        (after.3 - before.3) / 1e6,
    );
}

/// (bytes read, pass seconds, passes, bytes saved) so far.
fn cleaner(broker: &Broker) -> (f64, f64, f64, f64) {
    (
        broker.metric("sediment_cleaner_read_bytes_total"),
        broker.metric("sediment_cleaner_pass_duration_seconds_sum"),
        broker.metric("sediment_cleaner_passes_total"),
        broker.metric("sediment_cleaner_saved_bytes_total"),
    )
}

/// Produces at `o.rate` for `o.seconds` (keys cycling over 1,024), after
/// a warm-up record. Returns the sorted send-to-acknowledgement latencies
/// (µs) of all records, and, when `watch_passes`, of those sent while a
/// cleaning pass ran.
fn paced(broker: &Broker, topic: &str, o: &Opts, watch_passes: bool) -> (Vec<u32>, Vec<u32>) {
    let opts = Opts {
        idempotence: Some(true),
        ..o.clone()
    };
    let p = producer(&broker.bootstrap, &opts);
    let payload = vec![b'p'; o.size];
    // Connection and metadata first: not part of any latency.
    p.send(BaseRecord::with_opaque_to(topic, 0).key("warm-up").payload(&payload[..]))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
    p.context().latencies_us.lock().unwrap().clear();
    p.context().sent_at_us.lock().unwrap().clear();
    let passes = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_passes.then(|| {
        let (passes, stop, http, clock) = (passes.clone(), stop.clone(), broker.http.clone(), p.context().started);
        std::thread::spawn(move || {
            let probe = Broker::observer(http);
            let (mut count, mut sum) = (probe.metric(PASS_COUNT), probe.metric(PASS_SUM));
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                let (now_count, now_sum) = (probe.metric(PASS_COUNT), probe.metric(PASS_SUM));
                if now_count > count {
                    // The passes that ended since the last look: when, and for how long.
                    let end = clock.elapsed().as_micros() as u64;
                    let took = ((now_sum - sum) * 1e6) as u64;
                    passes.lock().unwrap().push((end.saturating_sub(took + 10_000), end));
                    (count, sum) = (now_count, now_sum);
                }
            }
        })
    });
    let total = o.rate * o.seconds;
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / o.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let key = (i % 1024).to_be_bytes();
        let sent_at = p.context().started.elapsed().as_micros() as usize;
        p.send(BaseRecord::with_opaque_to(topic, sent_at).key(&key[..]).payload(&payload[..]))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    p.flush(Duration::from_secs(60)).unwrap();
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        w.join().unwrap();
    }
    let latencies = std::mem::take(&mut *p.context().latencies_us.lock().unwrap());
    let sent = std::mem::take(&mut *p.context().sent_at_us.lock().unwrap());
    let passes = passes.lock().unwrap();
    let mut during: Vec<u32> = latencies
        .iter()
        .zip(&sent)
        .filter(|(_, at)| passes.iter().any(|(from, to)| (*from..=*to).contains(*at)))
        .map(|(l, _)| *l)
        .collect();
    let mut all = latencies;
    all.sort_unstable();
    during.sort_unstable();
    (all, during)
}

const PASS_COUNT: &str = "sediment_cleaner_pass_duration_seconds_count";
const PASS_SUM: &str = "sediment_cleaner_pass_duration_seconds_sum";
