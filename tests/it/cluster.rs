//! Three brokers as processes on one real etcd, sharing one archive, with
//! short timers (3 s leases): replication, acks=all, failover and rejoin,
//! seen through librdkafka.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;

use crate::common::{metric, wait_until, Broker};
use crate::etcd::Etcd;
use crate::kafka;

pub struct Cluster {
    pub brokers: Vec<Broker>,
    pub etcd: Etcd,
    _archive: Option<tempfile::TempDir>,
}

impl Cluster {
    /// `n` brokers (ids 1..=n) on a fresh etcd and a shared archive, with
    /// 3 s leases and lag time.
    pub fn start(n: i32, extra_config: &str) -> Cluster {
        Self::start_with_lease(n, 3000, extra_config)
    }

    pub fn start_with_lease(n: i32, lease_ms: u64, extra_config: &str) -> Cluster {
        let archive = tempfile::tempdir().unwrap();
        let url = format!("file://{}", archive.path().display());
        let mut cluster = Self::start_with(n, lease_ms, &url, extra_config, &[]);
        cluster._archive = Some(archive);
        cluster
    }

    /// `n` brokers archiving to `archive_url`, with `env` (S3 credentials).
    pub fn start_with(n: i32, lease_ms: u64, archive_url: &str, extra_config: &str, env: &[(String, String)]) -> Cluster {
        let etcd = Etcd::start();
        let brokers = (1..=n)
            .map(|id| {
                Broker::start_with_env(
                    &format!(
                        "etcd = \"{}\"\nbroker_id = {id}\ncluster = \"it\"\narchive = \"{archive_url}\"\netcd_lease_ttl_ms = {lease_ms}\nreplica_lag_time_max_ms = 3000\n{extra_config}",
                        etcd.endpoint(),
                    ),
                    env,
                )
            })
            .collect();
        Cluster {
            brokers,
            etcd,
            _archive: None,
        }
    }

    /// Creates a topic with 3 replicas and returns once every partition
    /// has a leader and a full ISR.
    pub async fn create_topic(&self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        create_replicated_topic(&self.bootstrap(), topic, partitions, 3, configs).await;
        wait_until("full ISRs", 30, || {
            (0..partitions).all(|p| self.partition_state(topic, p).is_some_and(|(_, isr)| isr.len() == 3))
        });
    }

    /// Every broker's address, for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.brokers.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",")
    }

    /// The addresses of the brokers still running, for a client's bootstrap list.
    pub fn live_bootstrap(&mut self) -> String {
        self.brokers
            .iter_mut()
            .filter_map(|b| b.is_running().then(|| b.bootstrap()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// (leader, ISR) of a partition as Metadata tells librdkafka.
    pub fn partition_state(&self, topic: &str, partition: i32) -> Option<(i32, Vec<i32>)> {
        let consumer: BaseConsumer = kafka::config(&self.bootstrap()).create().ok()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let t = metadata.topics().iter().find(|t| t.name() == topic)?;
        let p = t.partitions().iter().find(|p| p.id() == partition)?;
        (p.error().is_none() && p.leader() >= 0).then(|| (p.leader(), p.isr().to_vec()))
    }

    pub fn broker(&mut self, id: i32) -> &mut Broker {
        &mut self.brokers[(id - 1) as usize]
    }
}

async fn create_replicated_topic(bootstrap: &str, topic: &str, partitions: i32, factor: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = kafka::config(bootstrap).create().unwrap();
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(factor));
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    for r in admin.create_topics(&[new_topic], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

/// RF=3, min.insync.replicas=2, idempotent acks=all producer: the leader is
/// SIGKILLed between two halves of the load; every acknowledged record is
/// consumed exactly once, in order, from the survivors; the old leader comes
/// back, catches up and rejoins the ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_acknowledged_record() {
    let mut cluster = Cluster::start(3, "");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("replicated", 1, &[("min.insync.replicas", "2")]).await;
    let (leader, _) = cluster.partition_state("replicated", 0).unwrap();
    let producer = kafka::producer(&bootstrap, &[("message.timeout.ms", "60000")]);
    let records: Vec<_> = (0..4000).map(|i| kafka::record(i, 100)).collect();
    let first = kafka::produce(&producer, "replicated", &records[..2000]).await;
    assert_eq!(first.last(), Some(&(0, 1999)));
    // Followers learn the high watermark from their fetches: a new leader
    // starts from it, so consumers do not lose sight of committed records.
    wait_until("every follower knows the high watermark", 10, || {
        cluster
            .brokers
            .iter()
            .all(|b| crate::common::http_get(&b.http("/v1/topics/replicated")).is_ok_and(|t| t.contains("\"high_watermark\":2000")))
    });

    cluster.broker(leader).kill();
    let second = kafka::produce(&producer, "replicated", &records[2000..]).await;
    assert_eq!(second.last().map(|p| p.1), Some(3999), "offsets continue without a gap or a repeat");
    let (new_leader, isr) = cluster.partition_state("replicated", 0).unwrap();
    assert_ne!(new_leader, leader);
    assert!(!isr.contains(&leader), "the dead broker left the ISR: {isr:?}");
    // `sediment cluster health` says so, with its own exit code.
    let survivors = cluster.live_bootstrap();
    let health = crate::cli::sediment(&survivors, &["cluster", "health", "--format", "json"]);
    assert_eq!(health.status.code(), Some(4), "{health:?}");
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert!(
        report["under_replicated"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["topic"] == "replicated"),
        "{report}"
    );

    let survivors = cluster.live_bootstrap();
    let consumed = kafka::consume_all(&survivors, "replicated", 1, records.len(), &[]);
    let got: Vec<_> = consumed[&0].iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(got.len(), records.len(), "every acknowledged record, once");
    assert!(got == records, "in the order produced");

    // The old leader returns, catches up from the new one and rejoins.
    cluster.broker(leader).restart();
    wait_until("the restarted broker is back in the ISR", 30, || {
        cluster
            .partition_state("replicated", 0)
            .is_some_and(|(_, isr)| isr.contains(&leader))
    });
    let expands: f64 = cluster.brokers.iter().map(|b| metric(b, "sediment_isr_expands_total")).sum();
    assert!(expands >= 1.0, "the leader recorded the expansion");
    let bootstrap = cluster.bootstrap();
    wait_until("every partition is fully replicated again", 30, || {
        crate::cli::sediment(&bootstrap, &["cluster", "health"]).status.success()
    });
}

/// With both followers gone, acks=all is refused with NOT_ENOUGH_REPLICAS
/// (nothing appended) while acks=1 is still served; when they return, the
/// ISR expands and acks=all works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_needs_min_insync_replicas() {
    let mut cluster = Cluster::start(3, "");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("min-isr", 1, &[("min.insync.replicas", "2")]).await;
    let (leader, _) = cluster.partition_state("min-isr", 0).unwrap();
    let followers: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.broker(*id).kill();
    }
    let leader_address = cluster.broker(leader).bootstrap();
    // The controller (their leases expired) or the leader (they stopped
    // fetching), whichever comes first, takes them out of the ISR.
    wait_until("the ISR shrank to the leader", 30, || {
        cluster.partition_state("min-isr", 0) == Some((leader, vec![leader]))
    });
    let strict = kafka::producer(
        &leader_address,
        &[("message.timeout.ms", "3000"), ("enable.idempotence", "false"), ("retries", "0")],
    );
    let refused = strict
        .send(FutureRecord::<(), _>::to("min-isr").payload("refused"), Duration::from_secs(5))
        .await;
    let error = refused.expect_err("acks=all with one in-sync replica").0;
    assert!(error.to_string().contains("NotEnoughReplicas"), "{error}");
    let relaxed = kafka::producer(&leader_address, &[("acks", "1"), ("enable.idempotence", "false")]);
    let served = relaxed
        .send(FutureRecord::<(), _>::to("min-isr").payload("served"), Duration::from_secs(5))
        .await;
    assert!(served.is_ok(), "acks=1 is served by the leader alone: {served:?}");

    for id in &followers {
        cluster.broker(*id).restart();
    }
    wait_until("the ISR is full again", 30, || {
        cluster.partition_state("min-isr", 0).is_some_and(|(_, isr)| isr.len() == 3)
    });
    let producer = kafka::producer(&bootstrap, &[]);
    let placed = kafka::produce(&producer, "min-isr", &[kafka::record(1, 10)]).await;
    assert_eq!(placed, vec![(0, 1)], "after the refused one, offset 0 is the acks=1 record");
    let consumed: BTreeMap<i32, _> = kafka::consume_all(&bootstrap, "min-isr", 1, 2, &[]);
    assert_eq!(consumed[&0].len(), 2, "the refused record was never appended");
}

/// SIGTERM on a leader is a controlled shutdown: its leadership moves to
/// another ISR member at once, not when its (here 30 s) lease expires, and
/// a producer carries on through the move with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_moves_leadership_before_the_lease_expires() {
    let mut cluster = Cluster::start_with_lease(3, 30_000, "");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("moving", 1, &[("min.insync.replicas", "2")]).await;
    let (leader, _) = cluster.partition_state("moving", 0).unwrap();
    let producer = kafka::producer(&bootstrap, &[]);
    let records: Vec<_> = (0..1000).map(|i| kafka::record(i, 50)).collect();
    kafka::produce(&producer, "moving", &records[..500]).await;
    let status = cluster.broker(leader).terminate();
    assert!(status.success(), "a clean exit: {status}");
    // Its lease would still be alive for most of 30 s: only the controlled
    // shutdown can have moved the leadership by now.
    let (new_leader, isr) = cluster.partition_state("moving", 0).expect("a leader right after the shutdown");
    assert_ne!(new_leader, leader);
    assert!(!isr.contains(&leader));
    let log = cluster.broker(leader).log();
    assert!(log.contains("controlled shutdown: leaderships moved"), "{log}");
    kafka::produce(&producer, "moving", &records[500..]).await;
    let survivors = cluster.broker(new_leader).bootstrap();
    let consumed = kafka::consume_all(&survivors, "moving", 1, records.len(), &[]);
    let got: Vec<_> = consumed[&0].iter().map(|(_, r)| r.clone()).collect();
    assert!(got == records, "every record once, in order ({} of {})", got.len(), records.len());
}

/// Records sent, and where each landed.
type Sent = (Vec<kafka::TestRecord>, Vec<(i32, i64)>);

/// An idempotent acks=all producer sending chunks of records until stopped;
/// a delivery error fails it (librdkafka retries the retriable ones).
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Records acknowledged so far.
    acknowledged: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    handle: tokio::task::JoinHandle<Sent>,
}

impl Load {
    fn start(bootstrap: &str, topic: &str) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (bootstrap, topic, flag, count) = (bootstrap.to_string(), topic.to_string(), stop.clone(), acknowledged.clone());
        let handle = tokio::spawn(async move {
            let producer = kafka::producer(&bootstrap, &[("message.timeout.ms", "90000")]);
            let (mut sent, mut placed) = (Vec::new(), Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let chunk: Vec<_> = (sent.len()..sent.len() + 100).map(|i| kafka::record(i, 100)).collect();
                placed.extend(kafka::produce(&producer, &topic, &chunk).await);
                sent.extend(chunk);
                count.store(sent.len(), std::sync::atomic::Ordering::Relaxed);
            }
            (sent, placed)
        });
        Load {
            stop,
            acknowledged,
            handle,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn stop(self) -> Sent {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.await.unwrap()
    }
}

/// Every broker restarted in turn with SIGTERM under an acks=all load:
/// the producer sees no error it does not retry, and every record is there
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let mut cluster = Cluster::start(3, "");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("rolling", 3, &[("min.insync.replicas", "2")]).await;
    let load = Load::start(&bootstrap, "rolling");
    for id in 1..=3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(cluster.broker(id).terminate().success());
        cluster.broker(id).start_again();
        wait_until("the restarted broker is back in every ISR", 60, || {
            (0..3).all(|p| cluster.partition_state("rolling", p).is_some_and(|(_, isr)| isr.contains(&id)))
        });
    }
    let (sent, placed) = load.stop().await;
    assert!(sent.len() >= 300, "the load ran: {}", sent.len());
    let consumed = kafka::consume_all(&bootstrap, "rolling", 3, sent.len(), &[]);
    kafka::assert_exact(&sent, &placed, &consumed);
}

/// A broker replaced with an empty data dir (same id) catches up from the
/// leader, rejoins the ISR, and, once the only one left, serves everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_an_empty_disk_catches_up_and_serves_the_history() {
    let mut cluster = Cluster::start(3, "");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("replaced", 1, &[("min.insync.replicas", "2")]).await;
    let (leader, _) = cluster.partition_state("replaced", 0).unwrap();
    let replaced = (1..=3).find(|id| *id != leader).unwrap();
    let producer = kafka::producer(&bootstrap, &[]);
    let records: Vec<_> = (0..3000).map(|i| kafka::record(i, 200)).collect();
    kafka::produce(&producer, "replaced", &records[..1500]).await;
    cluster.broker(replaced).kill();
    std::fs::remove_dir_all(&cluster.broker(replaced).data_dir).unwrap();
    kafka::produce(&producer, "replaced", &records[1500..]).await;
    cluster.broker(replaced).start_again();
    wait_until("the new disk is in the ISR", 60, || {
        cluster
            .partition_state("replaced", 0)
            .is_some_and(|(_, isr)| isr.contains(&replaced))
    });
    for id in (1..=3).filter(|id| *id != replaced) {
        cluster.broker(id).kill();
    }
    wait_until("the replaced broker leads", 30, || {
        cluster.partition_state("replaced", 0).is_some_and(|(l, _)| l == replaced)
    });
    let consumed = kafka::consume_all(&cluster.broker(replaced).bootstrap(), "replaced", 1, records.len(), &[]);
    let got: Vec<_> = consumed[&0].iter().map(|(_, r)| r.clone()).collect();
    assert!(got == records, "the whole history ({} of {})", got.len(), records.len());
}

/// etcd down for 30 s under load: produce, consume and commits go on (no
/// ISR change is needed); after it returns, a killed leader still fails over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_stops_nothing_that_needs_no_decision() {
    let mut cluster = Cluster::start(3, "");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("no-etcd", 1, &[("min.insync.replicas", "2")]).await;
    let (leader, _) = cluster.partition_state("no-etcd", 0).unwrap();
    let load = Load::start(&bootstrap, "no-etcd");
    // A producer id handed out by one broker, before the outage.
    use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let issued: InitProducerIdResponse = crate::bad_input::call(cluster.broker(1), ApiKey::InitProducerId, 4, &init);
    assert_eq!(issued.error_code, 0);
    // The load's idempotent producer gets its id (a block from etcd) before
    // the outage: on a busy machine its first batch can take over a second.
    wait_until("the load is under way", 30, || load.acknowledged() > 0);
    cluster.etcd.kill();
    // During the outage, another broker bumps its epoch (KIP-360) without etcd.
    let bump = init.with_producer_id(issued.producer_id).with_producer_epoch(issued.producer_epoch);
    let bumped: InitProducerIdResponse = crate::bad_input::call(cluster.broker(2), ApiKey::InitProducerId, 4, &bump);
    assert_eq!(
        (bumped.error_code, bumped.producer_id, bumped.producer_epoch),
        (0, issued.producer_id, issued.producer_epoch + 1),
        "an epoch bump needs no etcd"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during: f64 = metric(cluster.broker(leader), "sediment_etcd_session_up");
    cluster.etcd.start_again();
    let (sent, placed) = load.stop().await;
    assert_eq!(during, 0.0, "the broker says etcd is gone");
    assert!(sent.len() >= 1000, "produce went on through the outage: {}", sent.len());
    let consumed = kafka::consume_all(&bootstrap, "no-etcd", 1, sent.len(), &[]);
    kafka::assert_exact(&sent, &placed, &consumed);
    wait_until("the session is back", 30, || {
        metric(cluster.broker(leader), "sediment_etcd_session_up") == 1.0
    });
    cluster.broker(leader).kill();
    wait_until("another broker leads", 30, || {
        cluster.partition_state("no-etcd", 0).is_some_and(|(l, _)| l != leader)
    });
    let producer = kafka::producer(&bootstrap, &[]);
    kafka::produce(&producer, "no-etcd", &[kafka::record(0, 10)]).await;
}

/// What the group's consumers saw: deliveries and successful commits,
/// each with when it happened.
#[derive(Default)]
struct GroupLog {
    deliveries: Vec<(std::time::Instant, i32, i64)>,
    commits: Vec<(std::time::Instant, i32, i64)>,
}

/// A group member: polls, and commits synchronously every 50 records, or
/// every 300 ms when it has something new.
fn group_member(bootstrap: String, log: std::sync::Arc<std::sync::Mutex<GroupLog>>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use rdkafka::consumer::CommitMode;
    use rdkafka::Message;
    let consumer: BaseConsumer = kafka::config(&bootstrap)
        .set("group.id", "three")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&["grouped"]).unwrap();
    let mut since_commit = 0;
    let mut last_commit = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            log.lock()
                .unwrap()
                .deliveries
                .push((std::time::Instant::now(), m.partition(), m.offset()));
            since_commit += 1;
        }
        if since_commit >= 50 || (since_commit > 0 && last_commit.elapsed() > Duration::from_millis(300)) {
            since_commit = 0;
            last_commit = std::time::Instant::now();
            if let Ok(positions) = consumer.position() {
                if consumer.commit(&positions, CommitMode::Sync).is_ok() {
                    let now = std::time::Instant::now();
                    let mut log = log.lock().unwrap();
                    for e in positions.elements() {
                        if let rdkafka::Offset::Offset(o) = e.offset() {
                            log.commits.push((now, e.partition(), o));
                        }
                    }
                }
            }
        }
    }
}

/// Three members across three brokers; the group's coordinator (the leader
/// of its `__consumer_offsets` partition) is SIGKILLed mid-way. The group
/// settles on another coordinator, no commit is lost or goes backwards, and
/// no record below a commit made before it is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_survives_the_loss_of_its_coordinator() {
    let mut cluster = Cluster::start(3, "group_min_session_timeout_ms = 1000\noffsets_topic_partitions = 4");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("grouped", 6, &[("min.insync.replicas", "2")]).await;
    let producer = kafka::producer(&bootstrap, &[]);
    let records: Vec<_> = (0..6000).map(|i| kafka::record(i, 50)).collect();
    kafka::produce(&producer, "grouped", &records).await;

    let log = std::sync::Arc::new(std::sync::Mutex::new(GroupLog::default()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let members: Vec<_> = (0..3)
        .map(|_| {
            let (b, l, s) = (bootstrap.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || group_member(b, l, s))
        })
        .collect();
    wait_until("the group consumed a third", 60, || log.lock().unwrap().deliveries.len() >= 2000);
    let offsets_partition = sediment::cluster::offsets::partition_for("three", 4);
    let (coordinator, _) = cluster
        .partition_state("__consumer_offsets", offsets_partition)
        .expect("the offsets topic exists once the group has a coordinator");
    cluster.broker(coordinator).kill();
    let killed_at = std::time::Instant::now();
    let distinct = || {
        let log = log.lock().unwrap();
        log.deliveries
            .iter()
            .map(|(_, p, o)| (*p, *o))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    wait_until("every record delivered", 120, || distinct() == records.len());
    // A few more commits after the move.
    let commits_then = log.lock().unwrap().commits.len();
    wait_until("commits go on", 30, || {
        let log = log.lock().unwrap();
        log.commits.len() > commits_then && log.commits.iter().any(|(t, _, _)| *t > killed_at)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for m in members {
        m.join().unwrap();
    }
    let log = log.lock().unwrap();
    let after = log.commits.iter().filter(|(t, _, _)| *t > killed_at).count();
    eprintln!(
        "coordinator {coordinator} killed; {} deliveries, {} commits, {after} after the kill",
        log.deliveries.len(),
        log.commits.len()
    );
    // No delivery below a commit that succeeded before it.
    for (delivered_at, partition, offset) in &log.deliveries {
        for (committed_at, p, committed) in &log.commits {
            assert!(
                !(p == partition && committed_at < delivered_at && offset < committed),
                "partition {partition}: offset {offset} delivered after offset {committed} was committed"
            );
        }
    }
    // Commits never go backwards, across the coordinator move.
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut commits = log.commits.clone();
    commits.sort_by_key(|(t, _, _)| *t);
    for (_, partition, offset) in commits {
        let previous = last.insert(partition, offset).unwrap_or(-1);
        assert!(offset >= previous, "partition {partition}: commit {offset} after {previous}");
    }
}

/// `__consumer_offsets` is compacted, as Kafka's is: with segments that
/// roll, are archived, and would expire by time and local retention at
/// once (so that a topic with `cleanup.policy=delete` loses them), and a
/// cleaner that runs all the time, a new coordinator still loads every
/// group's latest offsets. (The keys that make compaction safe are checked
/// by `groups::offsets` unit tests: the new leader's log here is a
/// follower's copy, which only its leader cleans.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_coordinator_loads_offsets_committed_long_ago() {
    let extra = "offsets_topic_partitions = 2\nlog_maintenance_interval_ms = 200\ntiering_interval_ms = 200\ncleaner_interval_ms = 200\n\
                 [topic_defaults]\n\"segment.ms\" = \"200\"\n\"retention.ms\" = \"300\"\n\"local.retention.ms\" = \"0\"\n\
                 \"min.cleanable.dirty.ratio\" = \"0.01\"\n";
    let mut cluster = Cluster::start(3, extra);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("kept", 2, &[]).await;
    kafka::commit_offsets(&bootstrap, "old", "kept", &[(0, 100)]);
    // Later commits to the other partition, superseding each other, across
    // segments that roll, reach the archive and are cleaned.
    for offset in 1..=20 {
        kafka::commit_offsets(&bootstrap, "old", "kept", &[(1, offset)]);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (coordinator, _) = cluster
        .partition_state("__consumer_offsets", sediment::cluster::offsets::partition_for("old", 2))
        .expect("the offsets topic exists");
    cluster.broker(coordinator).kill();
    let survivors = cluster.live_bootstrap();
    let mut committed = Vec::new();
    wait_until("a new coordinator answers with the group's offsets", 60, || {
        committed = std::panic::catch_unwind(|| kafka::committed_offsets(&survivors, "old", "kept", 2)).unwrap_or_default();
        committed == [100, 20]
    });
}

/// Three brokers archiving to S3 through two failovers (a SIGKILL and a
/// SIGTERM): pyarrow, listing the bucket as any engine would, finds every
/// committed record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_failovers_the_archive_holds_every_record_once() {
    let s3 = crate::s3::S3Server::start();
    let url = format!("s3://{}/cluster", crate::s3::BUCKET);
    let extra = "log_maintenance_interval_ms = 200\ntiering_interval_ms = 200\n[topic_defaults]\n\"segment.bytes\" = \"65536\"\n\"segment.ms\" = \"500\"\n\"retention.ms\" = \"-1\"\n";
    let mut cluster = Cluster::start_with(3, 3000, &url, extra, &s3.env());
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("tiered", 2, &[("min.insync.replicas", "2")]).await;
    let producer = kafka::producer(&bootstrap, &[("message.timeout.ms", "60000")]);
    let sent: Vec<_> = (0..30_000).map(|i| kafka::record(i, 100)).collect();
    let mut placed = kafka::produce(&producer, "tiered", &sent[..10_000]).await;
    let (first, _) = cluster.partition_state("tiered", 0).unwrap();
    cluster.broker(first).kill();
    placed.extend(kafka::produce(&producer, "tiered", &sent[10_000..20_000]).await);
    cluster.broker(first).start_again();
    wait_until("the killed broker is back in the ISRs", 60, || {
        (0..2).all(|p| cluster.partition_state("tiered", p).is_some_and(|(_, isr)| isr.contains(&first)))
    });
    let (second, _) = cluster.partition_state("tiered", 1).unwrap();
    assert!(cluster.broker(second).terminate().success());
    placed.extend(kafka::produce(&producer, "tiered", &sent[20_000..]).await);
    cluster.broker(second).start_again();
    wait_until("something is archived", 60, || {
        cluster
            .brokers
            .iter()
            .map(|b| metric(b, "sediment_tiering_uploads_total"))
            .sum::<f64>()
            > 0.0
    });
    let mut rows = Default::default();
    wait_until("the archive holds every record", 120, || {
        rows = tokio::task::block_in_place(|| crate::archive::read_bucket_with_pyarrow(&s3, "cluster", "tiered"));
        rows.len() >= sent.len()
    });
    crate::archive::assert_bucket_holds(&rows, &sent, &placed);
}

/// (version, epoch) of every manifest of a partition in the bucket.
fn manifests(s3: &crate::s3::S3Server, prefix: &str, topic: &str, partition: i32) -> Vec<(u64, i64)> {
    let dir = s3
        .bucket_dir()
        .join(format!("{prefix}/topic={topic}/partition={partition}/_manifest"));
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(u64, i64)> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some((json["version"].as_u64()?, json["epoch"].as_i64()?))
        })
        .collect();
    out.sort();
    out
}

/// A leader paused (SIGSTOP) past its lease while a producer writes to it,
/// then resumed: the others elect a new leader, which first publishes an
/// epoch-bump manifest; the old leader acknowledges none of the writes it
/// took (each record is there once, taken again by the new leader) and
/// publishes no manifest after the bump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_acknowledges_nothing_and_publishes_nothing_after_the_bump() {
    let s3 = crate::s3::S3Server::start();
    let url = format!("s3://{}/paused", crate::s3::BUCKET);
    let extra = "log_maintenance_interval_ms = 200\ntiering_interval_ms = 200\n[topic_defaults]\n\"segment.bytes\" = \"65536\"\n\"segment.ms\" = \"500\"\n\"retention.ms\" = \"-1\"\n";
    let mut cluster = Cluster::start_with(3, 3000, &url, extra, &s3.env());
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("paused", 1, &[("min.insync.replicas", "2")]).await;
    let (leader, _) = cluster.partition_state("paused", 0).unwrap();
    let producer = kafka::producer(&bootstrap, &[("message.timeout.ms", "60000")]);
    let records: Vec<_> = (0..3000).map(|i| kafka::record(i, 100)).collect();
    let mut placed = kafka::produce(&producer, "paused", &records[..2000]).await;
    wait_until("the leader archived something", 60, || {
        !manifests(&s3, "paused", "paused", 0).is_empty()
    });
    let old_epoch = manifests(&s3, "paused", "paused", 0).last().unwrap().1;

    // A producer that knows only the leader, writing while it is paused.
    let stuck_producer = kafka::producer(&cluster.broker(leader).bootstrap(), &[("message.timeout.ms", "60000")]);
    let stuck_records = records[2000..2500].to_vec();
    cluster.broker(leader).signal("STOP");
    let stuck = tokio::spawn(async move { kafka::produce(&stuck_producer, "paused", &stuck_records).await });
    let others: String = (1..=3)
        .filter(|id| *id != leader)
        .map(|id| cluster.broker(id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let consumer_view = |c: &Cluster| {
        let consumer: BaseConsumer = kafka::config(&others).create().unwrap();
        let md = consumer.fetch_metadata(Some("paused"), Duration::from_secs(5)).ok()?;
        let _ = c;
        md.topics()[0].partitions().first().map(|p| p.leader())
    };
    wait_until("another broker leads", 30, || {
        consumer_view(&cluster).is_some_and(|l| l >= 0 && l != leader)
    });
    wait_until("the new leader's epoch-bump manifest", 30, || {
        manifests(&s3, "paused", "paused", 0).last().is_some_and(|m| m.1 > old_epoch)
    });
    let (bump_version, new_epoch) = *manifests(&s3, "paused", "paused", 0).last().unwrap();
    let survivor = kafka::producer(&others, &[("message.timeout.ms", "60000")]);
    let later = kafka::produce(&survivor, "paused", &records[2500..]).await;

    cluster.broker(leader).signal("CONT");
    let stuck_placed = stuck.await.unwrap();
    placed.extend(stuck_placed);
    placed.extend(later);
    wait_until("the old leader follows again", 60, || {
        cluster.partition_state("paused", 0).is_some_and(|(_, isr)| isr.contains(&leader))
    });
    let consumed = kafka::consume_all(&bootstrap, "paused", 1, records.len(), &[]);
    kafka::assert_exact(&records, &placed, &consumed);
    // Give the old leader's uploader a few rounds to try, then look.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (version, epoch) in manifests(&s3, "paused", "paused", 0) {
        assert!(
            version <= bump_version || epoch >= new_epoch,
            "manifest version {version} has epoch {epoch}, older than the bump's {new_epoch}"
        );
    }
}

/// A topic deleted through one broker goes from every broker's disk and
/// from etcd, and a topic of the same name can be created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_goes_from_every_broker() {
    let mut cluster = Cluster::start(3, "");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("doomed", 2, &[]).await;
    let producer = kafka::producer(&bootstrap, &[]);
    kafka::produce(&producer, "doomed", &[kafka::record(0, 10)]).await;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&cluster.broker(2).bootstrap()).create().unwrap();
    for r in admin.delete_topics(&["doomed"], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    let holds_it = |b: &Broker| {
        let dirs = std::fs::read_dir(b.data_dir.join("topics"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("doomed.")));
        let states = crate::common::http_get(&b.http("/v1/cluster")).unwrap_or_default();
        dirs.unwrap_or(false) || states.contains("\"doomed\"")
    };
    wait_until("no broker holds the deleted topic", 30, || !cluster.brokers.iter().any(&holds_it));
    // Again, with a manual assignment: each partition on the brokers named.
    let assignment: &[&[i32]] = &[&[2, 3], &[3, 1]];
    let topic = NewTopic::new("doomed", 2, TopicReplication::Variable(assignment));
    for r in admin.create_topics(&[topic], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    for (p, replicas) in assignment.iter().enumerate() {
        wait_until("the partition is placed as asked", 30, || {
            cluster.partition_state("doomed", p as i32).is_some_and(|(leader, mut isr)| {
                isr.sort_unstable();
                let mut wanted = replicas.to_vec();
                wanted.sort_unstable();
                leader == replicas[0] && isr == wanted
            })
        });
    }
    let bad = NewTopic::new("misplaced", 1, TopicReplication::Variable(&[&[1, 9]]));
    let refused = admin.create_topics(&[bad], &AdminOptions::new()).await.unwrap();
    assert!(
        matches!(&refused[0], Err((_, rdkafka::types::RDKafkaErrorCode::InvalidReplicaAssignment))),
        "{refused:?}"
    );
}

/// CreatePartitions and AlterConfigs through one broker reach the others:
/// every broker opens the new partitions, and a leader elsewhere enforces
/// the new `min.insync.replicas`; a client quota set through one broker is
/// described by all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_configs_changed_through_one_broker_reach_all() {
    let mut cluster = Cluster::start(3, "");
    cluster.create_topic("grown", 1, &[]).await;
    // A client quota set through one broker is in force on every one.
    crate::quotas::set_quota(&cluster.brokers[1], &[("user", Some("alice"))], "producer_byte_rate", Some(1024.0));
    wait_until("every broker holds the quota", 30, || {
        cluster
            .brokers
            .iter()
            .all(|b| crate::quotas::describe(b, &[], false).is_ok_and(|q| q == ["user=alice producer_byte_rate=1024"]))
    });
    let via_two: AdminClient<DefaultClientContext> = kafka::config(&cluster.broker(2).bootstrap()).create().unwrap();
    let grown = via_two
        .create_partitions(&[rdkafka::admin::NewPartitions::new("grown", 3)], &AdminOptions::new())
        .await
        .unwrap();
    grown[0].as_ref().unwrap();
    wait_until("every broker holds three partitions", 30, || {
        cluster.brokers.iter().all(|b| {
            let t = crate::common::http_get(&b.http("/v1/topics/grown")).unwrap_or_default();
            t.contains("\"partition\":2")
        })
    });
    for p in 1..3 {
        wait_until("the new partitions are replicated", 30, || {
            cluster.partition_state("grown", p).is_some_and(|(_, isr)| isr.len() == 3)
        });
    }
    let via_three: AdminClient<DefaultClientContext> = kafka::config(&cluster.broker(3).bootstrap()).create().unwrap();
    let altered = via_three
        .alter_configs(
            &[rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic("grown")).set("min.insync.replicas", "3")],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    altered[0].as_ref().unwrap();
    let (leader, _) = cluster.partition_state("grown", 0).unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.broker(follower).kill();
    wait_until("the ISR shrank", 30, || {
        cluster.partition_state("grown", 0).is_some_and(|(_, isr)| isr.len() == 2)
    });
    let strict = kafka::producer(
        &cluster.broker(leader).bootstrap(),
        &[("message.timeout.ms", "3000"), ("enable.idempotence", "false"), ("retries", "0")],
    );
    let refused = strict
        .send(FutureRecord::<(), _>::to("grown").partition(0).payload("x"), Duration::from_secs(5))
        .await;
    let error = refused.expect_err("two in sync, three required").0;
    assert!(error.to_string().contains("NotEnoughReplicas"), "{error}");
}

/// kafka-python and kcat each keep producing through a leader's SIGKILL
/// without a restart, and every record is there once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_and_kcat_fail_over_without_a_restart() {
    use std::io::{BufRead, Write};
    let mut cluster = Cluster::start(3, "");
    let bootstrap = cluster.bootstrap();
    for topic in ["py-failover", "kcat-failover"] {
        cluster.create_topic(topic, 1, &[("min.insync.replicas", "2")]).await;
    }

    // kafka-python: half, the leader goes, the other half.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/kafka_python_failover.py");
    // `timeout` bounds each client: a stuck client fails the test, it does
    // not hang the suite.
    let mut python = std::process::Command::new("timeout")
        .args(["120", "python3"])
        .arg(script)
        .args([&bootstrap, "py-failover", "2000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(python.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "HALF");
    let (leader, _) = cluster.partition_state("py-failover", 0).unwrap();
    cluster.broker(leader).kill();
    writeln!(python.stdin.as_mut().unwrap()).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(python.wait().unwrap().success(), "kafka-python: {rest}");
    assert!(rest.contains("OK 2000"), "{rest}");
    cluster.broker(leader).start_again();
    wait_until("the broker is back in the ISR", 60, || {
        cluster.partition_state("kcat-failover", 0).is_some_and(|(_, isr)| isr.len() == 3)
    });

    // kcat: one producer process fed through stdin across the kill.
    let mut kcat = std::process::Command::new("timeout")
        .args(["120", "kcat"])
        .args(["-P", "-b", &bootstrap, "-t", "kcat-failover", "-p", "0"])
        .args(["-X", "acks=all", "-X", "enable.idempotence=true", "-X", "message.timeout.ms=60000"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = kcat.stdin.as_mut().unwrap();
    for i in 0..1000 {
        writeln!(stdin, "line-{i}").unwrap();
    }
    stdin.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (leader, _) = cluster.partition_state("kcat-failover", 0).unwrap();
    cluster.broker(leader).kill();
    let stdin = kcat.stdin.as_mut().unwrap();
    for i in 1000..2000 {
        writeln!(stdin, "line-{i}").unwrap();
    }
    drop(kcat.stdin.take());
    assert!(kcat.wait().unwrap().success(), "kcat delivered everything");
    let survivors = cluster.live_bootstrap();
    let read = std::process::Command::new("timeout")
        .args(["60", "kcat"])
        .args([
            "-C",
            "-b",
            &survivors,
            "-t",
            "kcat-failover",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .output()
        .unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&read.stdout).lines().map(str::to_string).collect();
    let expected: Vec<String> = (0..2000).map(|i| format!("line-{i}")).collect();
    assert!(lines == expected, "kcat read {} lines", lines.len());
}

/// One broker on etcd is a whole cluster: default replication gives one
/// replica, groups get their offsets topic, and a restart keeps it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_broker_cluster_works_like_three() {
    let mut cluster = Cluster::start(1, "");
    let bootstrap = cluster.bootstrap();
    let admin: AdminClient<DefaultClientContext> = kafka::config(&bootstrap).create().unwrap();
    let topic = NewTopic::new("solo", 2, TopicReplication::Fixed(-1));
    for r in admin.create_topics(&[topic], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    wait_until("leaders", 30, || (0..2).all(|p| cluster.partition_state("solo", p).is_some()));
    let producer = kafka::producer(&bootstrap, &[]);
    let records: Vec<_> = (0..1000).map(|i| kafka::record(i, 50)).collect();
    let placed = kafka::produce(&producer, "solo", &records).await;
    kafka::commit_offsets(&bootstrap, "solo-group", "solo", &[(0, 7), (1, 9)]);
    cluster.broker(1).restart();
    wait_until("leaders again", 30, || (0..2).all(|p| cluster.partition_state("solo", p).is_some()));
    let consumed = kafka::consume_all(&bootstrap, "solo", 2, records.len(), &[]);
    kafka::assert_exact(&records, &placed, &consumed);
    let committed = kafka::committed_offsets(&bootstrap, "solo-group", "solo", 2);
    assert_eq!(committed, vec![7, 9], "commits survive the restart");
}

/// A cluster that loses etcd (a new, empty one on the same address) takes
/// its topics back from the controller's copy in the archive: the brokers'
/// logs are served again, and new producers get ids never handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_loses_etcd_restores_its_topics_from_the_archive() {
    let mut cluster = Cluster::start(3, "tiering_interval_ms = 200");
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("kept", 2, &[("min.insync.replicas", "2")]).await;
    let producer = kafka::producer(&bootstrap, &[]);
    let records: Vec<_> = (0..2000).map(|i| kafka::record(i, 50)).collect();
    let mut placed = kafka::produce(&producer, "kept", &records[..1000]).await;
    drop(producer);
    let copies = cluster._archive.as_ref().unwrap().path().join("_sediment/etcd");
    wait_until("the controller's copy names the topic", 30, || {
        std::fs::read_dir(&copies)
            .map(|d| {
                d.flatten()
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"kept\"")))
            })
            .unwrap_or(false)
    });
    for id in 1..=3 {
        cluster.broker(id).kill();
    }
    cluster.etcd.replace_with_empty();
    for id in 1..=3 {
        cluster.broker(id).start_again();
    }
    wait_until("leaders again", 60, || (0..2).all(|p| cluster.partition_state("kept", p).is_some()));
    let producer = kafka::producer(&bootstrap, &[]);
    placed.extend(kafka::produce(&producer, "kept", &records[1000..]).await);
    let consumed = kafka::consume_all(&bootstrap, "kept", 2, records.len(), &[]);
    kafka::assert_exact(&records, &placed, &consumed);
    let log = cluster.broker(1).log();
    assert!(
        log.contains("restored its topics and partition states from the archive's copy"),
        "{log}"
    );
}
