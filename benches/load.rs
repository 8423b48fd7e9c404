//! The load tool: Sediment driven by librdkafka, reporting msgs/s, MB/s and
//! latency percentiles, plus the broker's peak RSS.
//!
//! cargo bench --bench load -- [matrix|produce|consume|e2e|archive] [options]
//!   --partitions N   (default 1)     --size BYTES   (default 100)
//!   --acks 1|all     (default all)   --linger-ms N  (default 5)
//!   --batch-size N   librdkafka batch.num.messages (default 10000)
//!   --count N        records for produce/consume (default 2000000)
//!   --rate N         e2e records per second (default 20000)
//!   --seconds N      e2e duration (default 10)
//!   --bootstrap H:P  use a running broker (or cluster) instead of starting one
//!   --idempotence B  enable.idempotence (default false, as in librdkafka)
//!   --txn-records N  txn: records per transaction (default 1000)
//!   --txn-ms N       txn: a transaction commits after this long even if
//!                    short of --txn-records (default 100)
//!   --cluster N      start N brokers on a local etcd (default 0: a single
//!                    node); topics get min(3, N) replicas and, with 3,
//!                    min.insync.replicas=2
//!   --lease-ms N     etcd_lease_ttl_ms of a started cluster (default 10000)
//!   --rounds N       failover rounds (default 5)
//!   --signal S       failover: kill (SIGKILL, default) or term (SIGTERM)
//!   --retry-backoff-max-ms N  failover: librdkafka's retry.backoff.max.ms
//!                    (default 1000, librdkafka's own)
//!   --iceberg B      archive: the topic's archive.iceberg.enabled (default
//!                    true); run both ways to see what Iceberg commits cost
//!
//! Modes: matrix, produce, txn (produce in transactions), consume, e2e,
//! archive, fetch-sessions (a consumer of --partitions, 1,000 unless
//! given, fetching with and without a KIP-227 session: request and
//! response bytes, round trip, broker CPU per fetch), compaction (produce
//! latency while the cleaner works through a filled compacted topic, against
//! the same produce with nothing to clean, and the cleaning rate), and failover: a 3-broker
//! cluster with an idempotent acks=all producer at --rate (default 5000)
//! on one partition; the leader is killed after 3 s, and the longest time
//! without an acknowledgement is reported, per round, median and worst.
//!
//! Without --bootstrap it starts the release `sediment` binary on free ports
//! with a fresh data dir and default durability (acknowledged = fsynced), and
//! for a cluster the `etcd` binary (Debian's etcd-server) too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails should stop loudly

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[path = "load/compaction.rs"]
mod compaction;
#[path = "load/fetch_sessions.rs"]
mod fetch_sessions;

#[derive(Clone, Debug)]
struct Opts {
    partitions: i32,
    size: usize,
    acks: String,
    linger_ms: u64,
    batch_size: usize,
    count: u64,
    rate: u64,
    seconds: u64,
    bootstrap: Option<String>,
    idempotence: Option<bool>,
    cluster: usize,
    lease_ms: u64,
    rounds: usize,
    signal: String,
    retry_backoff_max_ms: u64,
    /// Records per transaction; 0: not transactional.
    txn_records: u64,
    txn_ms: u64,
    /// archive: the topic's `archive.iceberg.enabled`.
    iceberg: bool,
}

fn parse(args: &[String]) -> (String, Opts) {
    let mut o = Opts {
        partitions: 1,
        size: 100,
        acks: "all".into(),
        linger_ms: 5,
        batch_size: 10_000,
        count: 2_000_000,
        rate: 20_000,
        seconds: 10,
        bootstrap: None,
        idempotence: None,
        cluster: 0,
        lease_ms: 10_000,
        rounds: 5,
        signal: "kill".into(),
        retry_backoff_max_ms: 1000,
        txn_records: 0,
        txn_ms: 100,
        iceberg: true,
    };
    let mut mode = "matrix".to_string();
    let mut settings = Vec::new();
    let mut it = args.iter().filter(|a| *a != "--bench");
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--partitions" => o.partitions = val().parse().unwrap(),
            "--size" => o.size = val().parse().unwrap(),
            "--acks" => o.acks = val(),
            "--linger-ms" => o.linger_ms = val().parse().unwrap(),
            "--batch-size" => o.batch_size = val().parse().unwrap(),
            "--count" => o.count = val().parse().unwrap(),
            "--rate" => o.rate = val().parse().unwrap(),
            "--seconds" => o.seconds = val().parse().unwrap(),
            "--bootstrap" => o.bootstrap = Some(val()),
            "--idempotence" => o.idempotence = Some(val().parse().unwrap()),
            "--cluster" => o.cluster = val().parse().unwrap(),
            "--lease-ms" => o.lease_ms = val().parse().unwrap(),
            "--rounds" => o.rounds = val().parse().unwrap(),
            "--signal" => o.signal = val(),
            "--retry-backoff-max-ms" => o.retry_backoff_max_ms = val().parse().unwrap(),
            "--txn-records" => o.txn_records = val().parse().unwrap(),
            "--txn-ms" => o.txn_ms = val().parse().unwrap(),
            "--iceberg" => o.iceberg = val().parse().unwrap(),
            "-X" => {
                let setting = val();
                let (k, v) = setting.split_once('=').expect("-X takes key=value");
                settings.push((k.to_string(), v.to_string()));
            }
            m if !m.starts_with('-') => mode = m.to_string(),
            other => panic!("unknown option {other}"),
        }
    }
    let _ = CLIENT_SETTINGS.set(settings);
    (mode, o)
}

struct Broker {
    child: Option<Child>,
    bootstrap: String,
    /// host:port of the admin HTTP listener.
    http: String,
    /// A cluster's other brokers (id, process, Kafka address) and its etcd.
    others: Vec<(i32, Option<Child>, String)>,
    etcd: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    fn start(opts: &Opts) -> Broker {
        Self::start_with_config(opts, "")
    }

    /// Starts the release broker with `config` as its TOML config file.
    fn start_with_config(opts: &Opts, config: &str) -> Broker {
        if let Some(b) = &opts.bootstrap {
            return Broker {
                child: None,
                bootstrap: b.clone(),
                http: String::new(),
                others: Vec::new(),
                etcd: None,
                _dir: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        if opts.cluster > 0 {
            return Self::start_cluster(opts, config, dir);
        }
        let (child, bootstrap, http) = spawn_broker(dir.path(), "single", config);
        Broker {
            child: Some(child),
            http,
            bootstrap,
            others: Vec::new(),
            etcd: None,
            _dir: Some(dir),
        }
    }

    /// A handle that only reads the metrics of a broker started elsewhere.
    fn observer(http: String) -> Broker {
        Broker {
            child: None,
            bootstrap: String::new(),
            http,
            others: Vec::new(),
            etcd: None,
            _dir: None,
        }
    }

    /// `opts.cluster` brokers (ids 1..) on a fresh local etcd, sharing one
    /// `file://` archive. The first is the one whose metrics are read.
    fn start_cluster(opts: &Opts, config: &str, dir: tempfile::TempDir) -> Broker {
        let (client, peer) = (free_port(), free_port());
        let etcd = Command::new("etcd")
            .args(["--name", "n0", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster=n0=http://127.0.0.1:{peer}"))
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian: apt-get install etcd-server)");
        wait_for_port(&format!("127.0.0.1:{client}"));
        let mut brokers: Vec<(i32, Option<Child>, String, String)> = (1..=opts.cluster as i32)
            .map(|id| {
                let cluster_config = format!(
                    "etcd = \"http://127.0.0.1:{client}\"\nbroker_id = {id}\narchive = \"file://{}\"\netcd_lease_ttl_ms = {}\n{config}",
                    dir.path().join("archive").display(),
                    opts.lease_ms
                );
                let (child, bootstrap, http) = spawn_broker(dir.path(), &format!("b{id}"), &cluster_config);
                (id, Some(child), bootstrap, http)
            })
            .collect();
        let bootstrap = brokers.iter().map(|b| b.2.clone()).collect::<Vec<_>>().join(",");
        let (_, child, _, http) = brokers.remove(0);
        Broker {
            child,
            bootstrap,
            http,
            others: brokers.into_iter().map(|(id, c, b, _)| (id, c, b)).collect(),
            etcd: Some(etcd),
            _dir: Some(dir),
        }
    }

    /// A cluster: sends `signal` to broker `id` (1 is `child`).
    fn signal_broker(&mut self, id: i32, signal: &str) {
        let child = if id == 1 {
            self.child.as_mut()
        } else {
            self.others.iter_mut().find(|b| b.0 == id).and_then(|b| b.1.as_mut())
        };
        let Some(child) = child else { return };
        let flag = if signal == "term" { "-TERM" } else { "-KILL" };
        let _ = Command::new("kill").arg(flag).arg(child.id().to_string()).status();
        let _ = child.wait();
    }

    /// A metric's value from /metrics (first series whose line starts with `name`).
    fn metric(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.http) else {
            return f64::NAN;
        };
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// CPU seconds (user + system) the broker has used so far.
    fn cpu_seconds(&self) -> f64 {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return f64::NAN;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return f64::NAN;
        };
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    fn wait_metric(&self, name: &str, what: &str, done: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !done(self.metric(name)) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident set size of the broker process (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let others = self.others.iter_mut().filter_map(|b| b.1.take());
        for mut c in self.child.take().into_iter().chain(others).chain(self.etcd.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the release broker with its data under `dir/<name>` and `config`
/// as its TOML file; returns it once its Kafka port answers, with its Kafka
/// and HTTP addresses.
fn spawn_broker(dir: &std::path::Path, name: &str, config: &str) -> (Child, String, String) {
    let port = free_port();
    let http = format!("127.0.0.1:{}", free_port());
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sediment"))
        .args(["serve", "--data-dir"])
        .arg(dir.join(name))
        .arg("--config")
        .arg(&config_path)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--http-listen", &http])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    wait_for_port(&bootstrap);
    (child, bootstrap, http)
}

fn wait_for_port(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "{address} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Client settings given with `-X key=value` (security settings, for a
/// secured broker started by hand), applied to every client the tool makes.
static CLIENT_SETTINGS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("broker.address.family", "v4");
    for (k, v) in CLIENT_SETTINGS.get().into_iter().flatten() {
        c.set(k, v);
    }
    c
}

/// Creates the topic: one replica on a single node; in a cluster,
/// min(3, brokers) replicas and, with 3, min.insync.replicas=2. Returns once
/// every partition has a leader and a full ISR.
fn create_topic(o: &Opts, bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with_configs(o, bootstrap, topic, partitions, &[]);
}

fn create_topic_with_configs(o: &Opts, bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let factor = if o.cluster > 0 { o.cluster.min(3) as i32 } else { 1 };
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(factor));
    if factor >= 3 {
        new_topic = new_topic.set("min.insync.replicas", "2");
    }
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    let r = rt.block_on(admin.create_topics(&[new_topic], &AdminOptions::new())).unwrap();
    r.into_iter().for_each(|x| {
        x.unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(0..partitions).all(|p| leader_of(bootstrap, topic, p).is_some_and(|(_, isr)| isr == factor as usize)) {
        assert!(Instant::now() < deadline, "{topic} did not get leaders and full ISRs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (leader, ISR size) of a partition, from Metadata.
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> Option<(i32, usize)> {
    let consumer: BaseConsumer = base_config(bootstrap).create().ok()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(3)).ok()?;
    let p = md.topics().first()?.partitions().iter().find(|p| p.id() == partition)?;
    (p.error().is_none() && p.leader() >= 0).then(|| (p.leader(), p.isr().len()))
}

/// Records each delivery's latency (send to acknowledgement).
struct LatencyContext {
    started: Instant,
    latencies_us: Mutex<Vec<u32>>,
    /// When each acknowledged record was sent (µs after `started`), in the
    /// order of `latencies_us`.
    sent_at_us: Mutex<Vec<u64>>,
    failed: AtomicU64,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_us: usize) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now_us = self.started.elapsed().as_micros() as usize;
        self.latencies_us.lock().unwrap().push(now_us.saturating_sub(sent_at_us) as u32);
        self.sent_at_us.lock().unwrap().push(sent_at_us as u64);
    }
}

fn producer(bootstrap: &str, o: &Opts) -> ThreadedProducer<LatencyContext> {
    let ctx = LatencyContext {
        started: Instant::now(),
        latencies_us: Mutex::new(Vec::new()),
        sent_at_us: Mutex::new(Vec::new()),
        failed: AtomicU64::new(0),
    };
    let mut config = base_config(bootstrap);
    if o.txn_records > 0 {
        config.set("transactional.id", format!("load-{}", free_port()));
    }
    config
        .set("acks", if o.acks == "1" { "1" } else { "all" })
        .set("linger.ms", o.linger_ms.to_string())
        .set("batch.num.messages", o.batch_size.to_string())
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", o.idempotence.unwrap_or(false).to_string())
        .create_with_context(ctx)
        .unwrap()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn report(name: &str, o: &Opts, msgs: u64, elapsed: Duration, latencies_us: Option<Vec<u32>>, broker: &Broker) {
    let secs = elapsed.as_secs_f64();
    let mut line = format!(
        "{name:<8} brokers={} partitions={:<2} size={:<5} acks={:<3} linger_ms={:<2} msgs={msgs:<9} msgs/s={:>10.0} MB/s={:>7.1}",
        o.cluster.max(1),
        o.partitions,
        o.size,
        o.acks,
        o.linger_ms,
        msgs as f64 / secs,
        msgs as f64 * o.size as f64 / secs / 1e6
    );
    if let Some(mut l) = latencies_us {
        l.sort_unstable();
        line += &format!(
            " p50_ms={:.2} p99_ms={:.2} p99.9_ms={:.2}",
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 0.999)
        );
    }
    if let Some(rss) = broker.peak_rss_mib() {
        line += &format!(" broker_peak_rss_mib={rss:.0}");
    }
    println!("{line}");
}

fn produce_n(bootstrap: &str, topic: &str, o: &Opts) -> (Duration, Vec<u32>) {
    let p = producer(bootstrap, o);
    // Values: a window into 16 MiB of pseudo-random bytes, different for
    // every record, so compression (librdkafka's, Parquet's) is not flattered.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let pool: Vec<u8> = (0..(16 << 20) + o.size)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let transactional = o.txn_records > 0;
    let txn_timeout = Duration::from_secs(60);
    if transactional {
        p.init_transactions(txn_timeout).unwrap();
    }
    let started = Instant::now();
    let ctx_start = p.context().started;
    let (mut in_txn, mut txn_started) = (0u64, Instant::now());
    for i in 0..o.count {
        if transactional && in_txn == 0 {
            p.begin_transaction().unwrap();
            txn_started = Instant::now();
        }
        let key = (i % 1024).to_be_bytes();
        let at = (i as usize).wrapping_mul(7919) % (16 << 20);
        let mut record = BaseRecord::with_opaque_to(topic, ctx_start.elapsed().as_micros() as usize)
            .key(&key[..])
            .payload(&pool[at..at + o.size]);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        in_txn += 1;
        if transactional && (in_txn >= o.txn_records || txn_started.elapsed() >= Duration::from_millis(o.txn_ms)) {
            // The rdkafka crate's ThreadedProducer::flush sleeps 100 ms
            // between checks (its poll thread takes the delivery reports):
            // wait for the deliveries here instead, as a C or Java client's
            // commit would.
            while (p.context().latencies_us.lock().unwrap().len() as u64) + p.context().failed.load(Ordering::Relaxed) < i + 1 {
                std::thread::sleep(Duration::from_micros(100));
            }
            p.commit_transaction(txn_timeout).unwrap();
            in_txn = 0;
        }
    }
    if transactional && in_txn > 0 {
        p.commit_transaction(txn_timeout).unwrap();
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(p.context().failed.load(Ordering::Relaxed), 0, "deliveries failed");
    let latencies = std::mem::take(&mut *p.context().latencies_us.lock().unwrap());
    (elapsed, latencies)
}

fn run_produce(o: &Opts) {
    let broker = Broker::start(o);
    let topic = format!("load-produce-{}", free_port());
    create_topic(o, &broker.bootstrap, &topic, o.partitions);
    let (elapsed, latencies) = produce_n(&broker.bootstrap, &topic, o);
    let name = if o.txn_records > 0 { "txn" } else { "produce" };
    report(name, o, o.count, elapsed, Some(latencies), &broker);
}

fn run_consume(o: &Opts) {
    let broker = Broker::start(o);
    let topic = format!("load-consume-{}", free_port());
    create_topic(o, &broker.bootstrap, &topic, o.partitions);
    produce_n(&broker.bootstrap, &topic, o);
    let consumer = consumer_from_beginning(&broker.bootstrap, "load", &topic, o.partitions);
    let started = Instant::now();
    let n = consume_batches(&consumer, o.count);
    report("consume", o, n, started.elapsed(), None, &broker);
}

/// A consumer assigned every partition of `topic` from offset 0.
fn consumer_from_beginning(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "4194304")
        .set("queued.max.messages.kbytes", "262144")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Consumes `count` messages through librdkafka's batch API. The safe
/// wrapper's one-message `poll` costs ~2.5 µs a message on this machine,
/// which would measure the wrapper rather than the broker; the batch call
/// is what high-throughput librdkafka consumers use.
#[allow(unsafe_code)]
fn consume_batches(consumer: &BaseConsumer, count: u64) -> u64 {
    use rdkafka::bindings as rd;
    const BATCH: usize = 10_000;
    let started = Instant::now();
    let mut n = 0u64;
    let mut messages: Vec<*mut rd::rd_kafka_message_t> = vec![std::ptr::null_mut(); BATCH];
    // SAFETY: the queue and messages come from librdkafka for this live
    // consumer; each message is destroyed once, the queue handle once.
    unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
        while n < count {
            let got = rd::rd_kafka_consume_batch_queue(queue, 500, messages.as_mut_ptr(), BATCH);
            for m in messages.iter().take(got.max(0) as usize) {
                if (**m).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    n += 1;
                }
                rd::rd_kafka_message_destroy(*m);
            }
            assert!(started.elapsed() < Duration::from_secs(300), "consume stalled at {n}");
        }
        rd::rd_kafka_queue_destroy(queue);
    }
    n
}

fn run_e2e(o: &Opts) {
    let broker = Broker::start(o);
    let topic = format!("load-e2e-{}", free_port());
    create_topic(o, &broker.bootstrap, &topic, o.partitions);
    let clock = Instant::now();
    let total = o.rate * o.seconds;
    let consumer_done = Arc::new(Mutex::new(Vec::<u32>::with_capacity(total as usize)));
    let consumer_thread = {
        let (bootstrap, topic, partitions, sink) = (broker.bootstrap.clone(), topic.clone(), o.partitions, consumer_done.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = base_config(&bootstrap)
                .set("group.id", "e2e")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "100")
                .set("fetch.min.bytes", "1")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition_offset(&topic, p, Offset::Beginning).unwrap();
            }
            consumer.assign(&tpl).unwrap();
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(o_seconds_guard(total));
            while got < total && Instant::now() < deadline {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let sent_us = u64::from_be_bytes(m.payload().unwrap()[..8].try_into().unwrap());
                    let now_us = clock.elapsed().as_micros() as u64;
                    sink.lock().unwrap().push(now_us.saturating_sub(sent_us) as u32);
                    got += 1;
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500)); // consumer assigned
    let mut e2e_opts = o.clone();
    e2e_opts.linger_ms = 0;
    let p = producer(&broker.bootstrap, &e2e_opts);
    let mut payload = vec![b'x'; o.size.max(8)];
    let started = Instant::now();
    for i in 0..total {
        // Pace to the target rate.
        let due = started + Duration::from_secs_f64(i as f64 / o.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&(clock.elapsed().as_micros() as u64).to_be_bytes());
        let key = (i % 1024).to_be_bytes();
        p.send(BaseRecord::with_opaque_to(&topic, 0).key(&key[..]).payload(&payload[..]))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    p.flush(Duration::from_secs(60)).unwrap();
    consumer_thread.join().unwrap();
    let latencies = std::mem::take(&mut *consumer_done.lock().unwrap());
    let n = latencies.len() as u64;
    report("e2e", &e2e_opts, n, started.elapsed(), Some(latencies), &broker);
}

/// Tiering and archive reads: how fast sealed segments become Parquet in
/// the (file://) archive, what it costs in broker CPU, how a consumer from
/// offset 0 reads the archive compared with the local log, and the delay
/// from acknowledgement to visibility in the archive.
fn run_archive(o: &Opts) {
    let config = format!(
        "log_maintenance_interval_ms = 100\ntiering_interval_ms = 100\n[topic_defaults]\n\"segment.bytes\" = \"{}\"\n\"segment.ms\" = \"1000\"\n\"retention.ms\" = \"-1\"\n\"archive.iceberg.enabled\" = \"{}\"\n",
        64 << 20,
        o.iceberg
    );
    let broker = Broker::start_with_config(o, &config);
    let topic = format!("load-archive-{}", free_port());
    create_topic(o, &broker.bootstrap, &topic, o.partitions);
    let cpu_start = broker.cpu_seconds();
    let started = Instant::now();
    let (produce_elapsed, _) = produce_n(&broker.bootstrap, &topic, o);
    let produced_mb = o.count as f64 * o.size as f64 / 1e6;
    let cpu_after_produce = broker.cpu_seconds();
    let uploaded_at_produce_end = broker.metric("sediment_tiering_uploaded_records_total");
    broker.wait_metric("sediment_tiering_uploaded_records_total", "tiering to catch up", |v| {
        v >= o.count as f64
    });
    let caught_up = started.elapsed();
    let tier_cpu = broker.cpu_seconds() - cpu_after_produce;
    let tier_mb = (o.count as f64 - uploaded_at_produce_end.max(0.0)) * o.size as f64 / 1e6;
    let parquet_mb = broker.metric("sediment_tiering_uploaded_bytes_total") / 1e6;
    let objects = broker.metric("sediment_tiering_uploads_total");
    println!(
        "iceberg  enabled={} commits={} commit_s_total={:.3} commit_ms_mean={:.1}",
        o.iceberg,
        broker.metric("sediment_iceberg_commit_duration_seconds_count"),
        broker.metric("sediment_iceberg_commit_duration_seconds_sum"),
        1000.0 * broker.metric("sediment_iceberg_commit_duration_seconds_sum")
            / broker.metric("sediment_iceberg_commit_duration_seconds_count").max(1.0),
    );
    println!(
        "tiering  partitions={} size={} msgs={} produce_MB/s={:.1} ingest_to_archived_MB/s={:.1} catch_up_after_produce_s={:.2} tiering_cpu_s_per_MB={:.4} parquet_MB={:.1} objects={} compression={:.1}x total_broker_cpu_s={:.2}",
        o.partitions,
        o.size,
        o.count,
        produced_mb / produce_elapsed.as_secs_f64(),
        produced_mb / caught_up.as_secs_f64(),
        (caught_up - produce_elapsed).as_secs_f64(),
        tier_cpu / tier_mb.max(f64::EPSILON),
        parquet_mb,
        objects,
        produced_mb / parquet_mb.max(f64::EPSILON),
        broker.cpu_seconds() - cpu_start,
    );
    // A consumer from offset 0: local log, then archive (cold, then warm cache).
    let read_all = |label: &str| {
        let consumer = consumer_from_beginning(&broker.bootstrap, &format!("archive-{label}"), &topic, o.partitions);
        let t = Instant::now();
        let n = consume_batches(&consumer, o.count);
        let secs = t.elapsed().as_secs_f64();
        println!(
            "read     from={label:<13} msgs={n} msgs/s={:.0} MB/s={:.1}",
            n as f64 / secs,
            n as f64 * o.size as f64 / secs / 1e6
        );
    };
    read_all("local");
    let admin: AdminClient<DefaultClientContext> = base_config(&broker.bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(admin.alter_configs(
        &[AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("local.retention.ms", "0")],
        &AdminOptions::new(),
    ))
    .unwrap();
    broker.wait_metric("sediment_local_disk_bytes", "local segments to go", |v| v < 1e6);
    read_all("archive-cold");
    read_all("archive-warm");
    // Acknowledgement to visibility in the archive, one record at a time.
    let p = producer(
        &broker.bootstrap,
        &Opts {
            acks: "all".into(),
            linger_ms: 0,
            ..o.clone()
        },
    );
    let mut delays = Vec::new();
    let mut table_delays = Vec::new();
    for i in 0..5 {
        let before = broker.metric("sediment_tiering_uploaded_records_total");
        let commits_before = broker.metric("sediment_iceberg_commit_duration_seconds_count");
        let t = Instant::now();
        p.send(BaseRecord::with_opaque_to(&topic, 0).key(&[i as u8][..]).payload(&b"visible?"[..]))
            .map_err(|(e, _)| e)
            .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        let acked = t.elapsed();
        broker.wait_metric("sediment_tiering_uploaded_records_total", "the record to reach the archive", |v| {
            v > before
        });
        delays.push((t.elapsed() - acked).as_secs_f64());
        if o.iceberg {
            // The commit that names the new object makes it visible through
            // the catalog.
            broker.wait_metric(
                "sediment_iceberg_commit_duration_seconds_count",
                "the table to name the record",
                |v| v > commits_before,
            );
            table_delays.push((t.elapsed() - acked).as_secs_f64());
        }
    }
    let rounded = |v: &[f64]| v.iter().map(|d| (d * 100.0).round() / 100.0).collect::<Vec<_>>();
    println!(
        "visible  ack_to_archive_s={:?} ack_to_iceberg_table_s={:?} (segment.ms=1000, tiering_interval_ms=100)",
        rounded(&delays),
        rounded(&table_delays)
    );
}

/// When each acknowledgement arrived.
struct AckTimes {
    times: Mutex<Vec<Instant>>,
    failed: AtomicU64,
}

impl ClientContext for AckTimes {}

impl ProducerContext for AckTimes {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.times.lock().unwrap().push(Instant::now());
        }
    }
}

/// A 3-broker cluster per round; an idempotent acks=all producer at
/// `o.rate` on one partition; the leader gets `o.signal` after 3 s. The
/// time without acknowledgements is the longest gap between two
/// acknowledgements that ends after the signal.
fn run_failover(o: &Opts) {
    let mut gaps_ms = Vec::new();
    for round in 1..=o.rounds {
        let opts = Opts {
            cluster: 3,
            partitions: 1,
            ..o.clone()
        };
        let mut cluster = Broker::start(&opts);
        let topic = format!("load-failover-{}", free_port());
        create_topic(&opts, &cluster.bootstrap, &topic, 1);
        let ctx = AckTimes {
            times: Mutex::new(Vec::new()),
            failed: AtomicU64::new(0),
        };
        let producer: ThreadedProducer<AckTimes> = base_config(&cluster.bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", o.linger_ms.to_string())
            .set("message.timeout.ms", "120000")
            .set("retry.backoff.max.ms", o.retry_backoff_max_ms.to_string())
            .create_with_context(ctx)
            .unwrap();
        let payload = vec![b'x'; o.size];
        let interval = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
        let started = Instant::now();
        let signal_at = started + Duration::from_secs(3);
        let mut signalled = None;
        let mut next = started;
        let deadline = started + Duration::from_secs(90);
        loop {
            let now = Instant::now();
            if signalled.is_none() && now >= signal_at {
                let (leader, _) = leader_of(&cluster.bootstrap, &topic, 0).expect("a leader");
                cluster.signal_broker(leader, &o.signal);
                signalled = Some(Instant::now());
            }
            if let Some(at) = signalled {
                // Done once acknowledgements have flowed for 3 s after the signal.
                let resumed = producer
                    .context()
                    .times
                    .lock()
                    .unwrap()
                    .last()
                    .is_some_and(|t| *t > at + Duration::from_secs(3));
                if resumed || now > deadline {
                    break;
                }
            }
            if now < next {
                std::thread::sleep(next - now);
            }
            next += interval;
            let mut record = BaseRecord::to(&topic).key("k").payload(&payload[..]);
            while let Err((_, r)) = producer.send(record) {
                record = r;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        producer.flush(Duration::from_secs(120)).unwrap();
        let at = signalled.unwrap();
        let times = producer.context().times.lock().unwrap().clone();
        let gap = times
            .windows(2)
            .filter(|w| w[1] > at)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        let failed = producer.context().failed.load(Ordering::Relaxed);
        println!(
            "failover signal={} lease_ms={} rate={} round={round} acks={} failed={failed} gap_ms={:.0}",
            o.signal,
            o.lease_ms,
            o.rate,
            times.len(),
            gap.as_secs_f64() * 1000.0
        );
        gaps_ms.push(gap.as_secs_f64() * 1000.0);
    }
    gaps_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "failover signal={} lease_ms={} rounds={} median_gap_ms={:.0} worst_gap_ms={:.0}",
        o.signal,
        o.lease_ms,
        gaps_ms.len(),
        gaps_ms[gaps_ms.len() / 2],
        gaps_ms.last().copied().unwrap_or(f64::NAN)
    );
}

fn o_seconds_guard(total: u64) -> u64 {
    60 + total / 10_000
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, o) = parse(&args);
    match mode.as_str() {
        "produce" => run_produce(&o),
        "txn" => run_produce(&Opts {
            txn_records: if o.txn_records == 0 { 1000 } else { o.txn_records },
            ..o.clone()
        }),
        "consume" => run_consume(&o),
        "e2e" => run_e2e(&o),
        "archive" => run_archive(&o),
        "failover" => run_failover(&o),
        "fetch-sessions" => fetch_sessions::run(&o),
        "compaction" => compaction::run(&o),
        "matrix" => {
            for partitions in [1, 8] {
                for size in [100, 1024] {
                    for acks in ["1", "all"] {
                        let count = if size == 100 { 2_000_000 } else { 500_000 };
                        run_produce(&Opts {
                            partitions,
                            size,
                            acks: acks.into(),
                            count,
                            ..o.clone()
                        });
                    }
                }
            }
            run_produce(&Opts {
                linger_ms: 0,
                batch_size: 1,
                count: 300_000,
                ..o.clone()
            });
            for partitions in [1, 8] {
                run_consume(&Opts {
                    partitions,
                    count: 2_000_000,
                    ..o.clone()
                });
            }
            run_e2e(&Opts {
                rate: 20_000,
                seconds: 10,
                ..o.clone()
            });
        }
        other => panic!("unknown mode {other}: matrix, produce, txn, consume, e2e, archive, failover, fetch-sessions or compaction"),
    }
}
