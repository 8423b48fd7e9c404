//! A network partition between real brokers: each broker and etcd run in a
//! network namespace of their own on a private bridge (the research's
//! one-machine rig), and nftables inside the leader's namespace cuts it off
//! from its peers and etcd while the test's clients (on the bridge's own
//! address) still reach it.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::common::{wait_until, Broker};
use crate::etcd::Etcd;
use crate::kafka;

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bridge with the test's address, and namespaces on it. Removed on drop.
struct Rig {
    tag: String,
    subnet: String,
    namespaces: Vec<String>,
}

impl Rig {
    /// `names` become namespaces `<tag><name>` at .2, .3, ... of the subnet.
    fn new(names: &[&str]) -> Rig {
        let n = std::process::id() % 100_000;
        let mut rig = Rig {
            tag: format!("sp{n}"),
            subnet: format!("10.98.{}", n % 250),
            namespaces: Vec::new(),
        };
        let bridge = rig.bridge();
        // Leftovers of a killed earlier run with the same pid.
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&["ip", "addr", "add", &format!("{}.1/24", rig.subnet), "dev", &bridge]);
        run(&["ip", "link", "set", &bridge, "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{}{name}", rig.tag);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            run(&["ip", "netns", "add", &ns]);
            rig.namespaces.push(ns.clone());
            let outside = format!("{ns}x");
            run(&["ip", "link", "add", &ns, "type", "veth", "peer", "name", &outside]);
            run(&["ip", "link", "set", &outside, "master", &bridge, "up"]);
            run(&["ip", "link", "set", &ns, "netns", &ns]);
            run(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", rig.address(i)), "dev", &ns]);
            run(&["ip", "-n", &ns, "link", "set", &ns, "up"]);
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        rig
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    fn address(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 2)
    }

    /// Drops every packet between namespace `i` and the addresses `peers`,
    /// both ways; the bridge's own address (the test's clients) still gets
    /// through.
    fn cut(&self, i: usize, peers: &[String]) {
        let ns = self.namespace(i);
        let set = peers.join(", ");
        run(&["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "cut"]);
        for (chain, hook, field) in [("out", "output", "daddr"), ("in", "input", "saddr")] {
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                &format!("add chain inet cut {chain} {{ type filter hook {hook} priority 0 ; }}"),
            ]);
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                &format!("add rule inet cut {chain} ip {field} {{ {set} }} drop"),
            ]);
        }
    }

    fn heal(&self, i: usize) {
        run(&["ip", "netns", "exec", self.namespace(i), "nft", "delete", "table", "inet", "cut"]);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
    }
}

/// Every segment of a partition, concatenated in offset order: replicas
/// that hold the same batches (offsets, epochs, CRCs) have the same bytes,
/// however their segments were cut.
fn log_bytes(broker: &Broker, topic: &str) -> Vec<u8> {
    let dir = broker.partition_dir(topic, 0);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names.iter().flat_map(|n| std::fs::read(dir.join(n)).unwrap()).collect()
}

/// (leader, ISR) as the brokers at `bootstrap` tell librdkafka.
fn state(bootstrap: &str, topic: &str) -> Option<(i32, Vec<i32>)> {
    let consumer: BaseConsumer = kafka::config(bootstrap).create().ok()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(3)).ok()?;
    let p = md.topics().first()?.partitions().first()?;
    (p.error().is_none() && p.leader() >= 0).then(|| (p.leader(), p.isr().to_vec()))
}

/// The leader is cut off from its followers and etcd while a producer
/// still reaches it: it acknowledges no acks=all write; the majority elects
/// another leader and goes on; after healing, the old leader truncates what
/// it took alone, and every replica holds the same batches as the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_acknowledges_nothing_and_rejoins_the_majority() {
    let rig = Rig::new(&["c", "b1", "b2", "b3"]);
    let etcd = Etcd::start_in_netns(rig.namespace(0), &rig.address(0));
    let archive = tempfile::tempdir().unwrap();
    let brokers: Vec<Broker> = (1..=3)
        .map(|id| {
            let config = format!(
                "etcd = \"{}\"\nbroker_id = {id}\ncluster = \"cut\"\narchive = \"file://{}\"\netcd_lease_ttl_ms = 3000\nreplica_lag_time_max_ms = 3000\n",
                etcd.endpoint(),
                archive.path().display()
            );
            Broker::start_in_netns(rig.namespace(id as usize), &rig.address(id as usize), &config)
        })
        .collect();
    let all: String = brokers.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let admin: AdminClient<DefaultClientContext> = kafka::config(&all).create().unwrap();
    let topic = NewTopic::new("cut", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    for r in admin.create_topics(&[topic], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    wait_until("a full ISR", 30, || state(&all, "cut").is_some_and(|(_, isr)| isr.len() == 3));
    let (leader, _) = state(&all, "cut").unwrap();
    let producer = kafka::producer(&all, &[("message.timeout.ms", "60000")]);
    let records: Vec<_> = (0..2400).map(|i| kafka::record(i, 100)).collect();
    let mut acked: Vec<(kafka::TestRecord, (i32, i64))> = Vec::new();
    let placed = kafka::produce(&producer, "cut", &records[..1000]).await;
    acked.extend(records[..1000].iter().cloned().zip(placed));

    // Cut the leader off from the other brokers and etcd.
    let others: Vec<usize> = (1..=3).filter(|id| *id as i32 != leader).collect();
    let mut peers: Vec<String> = others.iter().map(|i| rig.address(*i)).collect();
    peers.push(rig.address(0));
    rig.cut(leader as usize, &peers);

    // A producer that reaches only the cut-off leader.
    let lonely = kafka::producer(&brokers[leader as usize - 1].bootstrap(), &[("message.timeout.ms", "30000")]);
    let acked_alone = Arc::new(AtomicUsize::new(0));
    let mut deliveries = Vec::new();
    for r in &records[1000..1400] {
        deliveries.push(lonely.send_result(kafka::future_record("cut", r)).map_err(|(e, _)| e).unwrap());
    }
    let counter = acked_alone.clone();
    let lonely_outcome = tokio::spawn(async move {
        let mut outcome = Vec::new();
        for d in deliveries {
            let result = d.await.unwrap();
            if result.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            outcome.push(result.ok().map(|d| (d.partition, d.offset)));
        }
        outcome
    });
    let majority: String = others.iter().map(|i| brokers[*i - 1].bootstrap()).collect::<Vec<_>>().join(",");
    wait_until("the majority elects another leader", 30, || {
        state(&majority, "cut").is_some_and(|(l, _)| l != leader)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        acked_alone.load(Ordering::SeqCst),
        0,
        "the cut-off leader acknowledged an acks=all write"
    );
    let majority_producer = kafka::producer(&majority, &[("message.timeout.ms", "60000")]);
    let placed = kafka::produce(&majority_producer, "cut", &records[1400..]).await;
    acked.extend(records[1400..].iter().cloned().zip(placed));

    rig.heal(leader as usize);
    let lonely_placed = lonely_outcome.await.unwrap();
    for (r, placed) in records[1000..1400].iter().zip(lonely_placed) {
        // Written again through the new leader after the heal, or timed out.
        if let Some(at) = placed {
            acked.push((r.clone(), at));
        }
    }
    wait_until("the old leader is back in the ISR", 60, || {
        state(&all, "cut").is_some_and(|(_, isr)| isr.contains(&leader) && isr.len() == 3)
    });
    let (sent, placed): (Vec<_>, Vec<_>) = acked.into_iter().unzip();
    let consumed = kafka::consume_all(&all, "cut", 1, sent.len(), &[]);
    kafka::assert_exact(&sent, &placed, &consumed);
    // Every replica holds the leader's batches, byte for byte.
    let (now_leading, _) = state(&all, "cut").unwrap();
    wait_until("the replicas hold the same log", 30, || {
        let reference = log_bytes(&brokers[now_leading as usize - 1], "cut");
        brokers.iter().all(|b| log_bytes(b, "cut") == reference)
    });
}
