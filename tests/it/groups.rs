//! Consumer groups with librdkafka: members split the partitions, commit,
//! and a restarted member resumes from the committed offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::Message;

use crate::common::Broker;
use crate::kafka::{config, create_topic, produce, producer, record};

fn member(bootstrap: &str, group: &str, strategy: &str) -> BaseConsumer {
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", strategy)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&["grouped"]).unwrap();
    consumer
}

/// Polls every member once; collects (partition, offset, key) per member.
fn poll_round(members: &[&BaseConsumer], received: &mut [Vec<(i32, i64, String)>]) {
    for (i, c) in members.iter().enumerate() {
        while let Some(m) = c.poll(Duration::from_millis(20)) {
            let m = m.unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            received[i].push((m.partition(), m.offset(), key));
        }
    }
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment().unwrap().elements().iter().map(|e| e.partition()).collect()
}

async fn scenario(strategy: &str) {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "grouped", 4, &[]).await;
    let p = producer(&bootstrap, &[]);
    let phase1: Vec<_> = (0..4000).map(|i| record(i, 10)).collect();
    produce(&p, "grouped", &phase1).await;

    let group = format!("group-{}", strategy.replace(',', "-"));
    let b = bootstrap.clone();
    let g = group.clone();
    let s = strategy.to_string();
    let (first_keys, a) = tokio::task::spawn_blocking(move || {
        let a = member(&b, &g, &s);
        let c = member(&b, &g, &s);
        let mut received = vec![Vec::new(), Vec::new()];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            poll_round(&[&a, &c], &mut received);
            let (pa, pc) = (assigned(&a), assigned(&c));
            let total = received[0].len() + received[1].len();
            if total >= 4000 && !pa.is_empty() && !pc.is_empty() && pa.len() + pc.len() == 4 && pa.is_disjoint(&pc) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "group did not settle: {pa:?} {pc:?} after {total} records"
            );
        }
        // Each member only saw its own partitions.
        let parts_a: BTreeSet<i32> = received[0].iter().map(|r| r.0).collect();
        let parts_c: BTreeSet<i32> = received[1].iter().map(|r| r.0).collect();
        assert!(parts_a.is_disjoint(&parts_c), "members shared partitions: {parts_a:?} {parts_c:?}");
        a.commit_consumer_state(CommitMode::Sync).unwrap();
        c.commit_consumer_state(CommitMode::Sync).unwrap();
        let keys: BTreeSet<String> = received.iter().flatten().map(|r| r.2.clone()).collect();
        // The restarted member: c leaves.
        drop(c);
        (keys, a)
    })
    .await
    .unwrap();
    assert_eq!(first_keys.len(), 4000, "phase one: every record once");

    let phase2: Vec<_> = (4000..8000).map(|i| record(i, 10)).collect();
    produce(&p, "grouped", &phase2).await;
    let b = bootstrap.clone();
    let s = strategy.to_string();
    tokio::task::spawn_blocking(move || {
        let restarted = member(&b, &group, &s);
        let mut received = vec![Vec::new(), Vec::new()];
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        loop {
            poll_round(&[&a, &restarted], &mut received);
            per_key.clear();
            for r in received.iter().flatten() {
                *per_key.entry(r.2.clone()).or_default() += 1;
            }
            let settled = !assigned(&restarted).is_empty();
            if settled && per_key.len() >= 4000 {
                break;
            }
            assert!(Instant::now() < deadline, "phase two stalled at {} records", per_key.len());
        }
        for key in per_key.keys() {
            let i: usize = key.trim_start_matches("key-").parse().unwrap();
            assert!(i >= 4000, "committed record {key} was delivered again");
        }
        assert_eq!(per_key.len(), 4000, "every new record arrived");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_group_splits_partitions_and_restarted_member_resumes_from_commits() {
    scenario("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_group_splits_partitions_and_restarted_member_resumes_from_commits() {
    scenario("roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_group_splits_partitions_and_restarted_member_resumes_from_commits() {
    scenario("cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restarting_within_its_session_gets_its_partitions_back() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "grouped", 4, &[]).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let static_member = |instance: &str| -> BaseConsumer {
            let c: BaseConsumer = config(&b)
                .set("group.id", "static")
                .set("group.instance.id", instance)
                .set("session.timeout.ms", "30000")
                .set("heartbeat.interval.ms", "200")
                .set("partition.assignment.strategy", "range")
                .create()
                .unwrap();
            c.subscribe(&["grouped"]).unwrap();
            c
        };
        let settle = |members: &[&BaseConsumer]| {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let mut sink = vec![Vec::new(); members.len()];
                poll_round(members, &mut sink);
                let sets: Vec<BTreeSet<i32>> = members.iter().map(|c| assigned(c)).collect();
                if sets.iter().all(|s| !s.is_empty()) && sets.iter().map(BTreeSet::len).sum::<usize>() == 4 {
                    return sets;
                }
                assert!(Instant::now() < deadline, "static group did not settle: {sets:?}");
            }
        };
        let a = static_member("member-a");
        let c = static_member("member-c");
        let before = settle(&[&a, &c]);
        // A static member leaves without LeaveGroup (KIP-345) and comes back
        // with the same instance id well within its session timeout.
        drop(c);
        let c = static_member("member-c");
        let after = settle(&[&a, &c]);
        assert_eq!(before, after, "the restarted static member got its own partitions back");
    })
    .await
    .unwrap();
}
