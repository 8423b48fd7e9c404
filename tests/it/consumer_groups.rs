//! KIP-848 consumer groups with librdkafka's `group.protocol=consumer`:
//! members join, rebalance incrementally as others come and go, and commit;
//! a classic group migrates to the consumer protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::Message;

use crate::bad_input::call;
use crate::common::Broker;
use crate::kafka::{config, create_topic, produce, producer, record};

/// Fast heartbeats so rebalances settle in seconds.
const BROKER_CONFIG: &str = "group_consumer_heartbeat_interval_ms = 200\ngroup_consumer_session_timeout_ms = 6000\n";

fn member(bootstrap: &str, group: &str, topic: &str, protocol: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = config(bootstrap);
    c.set("group.id", group)
        .set("group.protocol", protocol)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    if protocol == "classic" {
        c.set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "200");
    }
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment().unwrap().elements().iter().map(|e| e.partition()).collect()
}

/// Polls `c` briefly; returns the keys read and commits what it read.
fn poll_and_commit(c: &BaseConsumer) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(m) = c.poll(Duration::from_millis(20)) {
        // Transport errors while a broker restarts are reported, not fatal.
        let Ok(m) = m else { continue };
        keys.push(String::from_utf8(m.key().unwrap().to_vec()).unwrap());
    }
    if !keys.is_empty() {
        // A commit can race a revocation; the group is what is tested.
        let _ = c.commit_consumer_state(CommitMode::Sync);
    }
    keys
}

fn describe(broker: &Broker, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_string(group.into()))]);
    let response: ConsumerGroupDescribeResponse = call(broker, ApiKey::ConsumerGroupDescribe, 1, &request);
    response.groups.into_iter().next().unwrap()
}

fn listed_type(broker: &Broker, group: &str) -> Option<String> {
    let response: ListGroupsResponse = call(broker, ApiKey::ListGroups, 5, &ListGroupsRequest::default());
    response
        .groups
        .iter()
        .find(|g| g.group_id.0.as_str() == group)
        .map(|g| g.group_type.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_members_rebalance_incrementally_and_commit() {
    let broker = Broker::start(BROKER_CONFIG);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "kip848", 6, &[]).await;
    let p = producer(&bootstrap, &[]);
    let first: Vec<_> = (0..3000).map(|i| record(i, 10)).collect();
    produce(&p, "kip848", &first).await;

    let b = bootstrap.clone();
    let (a, seen) = tokio::task::spawn_blocking(move || {
        let a = member(&b, "g848", "kip848", "consumer", &[]);
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while assigned(&a).len() != 6 || seen.len() < 3000 {
            for k in poll_and_commit(&a) {
                *seen.entry(k).or_default() += 1;
            }
            assert!(
                Instant::now() < deadline,
                "the first member never got all partitions: {:?}",
                assigned(&a)
            );
        }
        // A second member: a keeps consuming the partitions it keeps (it is
        // never left with nothing: the rebalance is incremental) while b
        // gets the ones a gives up.
        let c = member(&b, "g848", "kip848", "consumer", &[]);
        let joined_at = Instant::now();
        let deadline = joined_at + Duration::from_secs(60);
        loop {
            for k in poll_and_commit(&a).into_iter().chain(poll_and_commit(&c)) {
                *seen.entry(k).or_default() += 1;
            }
            let (pa, pc) = (assigned(&a), assigned(&c));
            assert!(!pa.is_empty(), "a lost all its partitions during an incremental rebalance");
            assert!(pa.is_disjoint(&pc), "two members own a partition: {pa:?} {pc:?}");
            if pa.len() == 3 && pc.len() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "no 3/3 split: {pa:?} {pc:?}");
        }
        // Reported, not asserted (timing belongs to benchmarks).
        eprintln!("measured: 3/3 split {:?} after the second member was created", joined_at.elapsed());
        // c leaves (close sends the leave heartbeat): a gets all six back
        // at once, without waiting for c's session to end.
        let left_at = Instant::now();
        drop(c);
        let deadline = left_at + Duration::from_secs(20);
        while assigned(&a).len() != 6 {
            for k in poll_and_commit(&a) {
                *seen.entry(k).or_default() += 1;
            }
            assert!(Instant::now() < deadline, "a did not get the leaver's partitions");
        }
        eprintln!(
            "measured: all six back {:?} after the second member began to close",
            left_at.elapsed()
        );
        (a, seen)
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 3000, "every record of the first batch was read");

    let g = describe(&broker, "g848");
    assert_eq!(g.error_code, 0);
    assert_eq!((g.group_state.as_str(), g.assignor_name.as_str()), ("Stable", "uniform"));
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].member_epoch, g.assignment_epoch);
    let owned: usize = g.members[0].assignment.topic_partitions.iter().map(|t| t.partitions.len()).sum();
    assert_eq!(owned, 6);
    assert_eq!(listed_type(&broker, "g848").as_deref(), Some("consumer"));
    // a joined, c joined, c left: at least three new group epochs.
    let rebalances = crate::common::metric(&broker, "sediment_consumer_group_rebalances_total{protocol=\"consumer\"}");
    assert!(rebalances >= 3.0, "rebalances counted: {rebalances}");

    // The commits (OffsetCommit v9 with the member epoch) hold: a new
    // member, after a leaves, reads only what came after.
    let second: Vec<_> = (3000..4000).map(|i| record(i, 10)).collect();
    produce(&p, "kip848", &second).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tail: BTreeMap<String, usize> = BTreeMap::new();
        while tail.len() < 1000 {
            for k in poll_and_commit(&a) {
                *tail.entry(k).or_default() += 1;
            }
            assert!(Instant::now() < deadline, "a stalled at {}", tail.len());
        }
        drop(a);
        let restarted = member(&b, "g848", "kip848", "consumer", &[]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut again = Vec::new();
        while Instant::now() < deadline {
            again.extend(poll_and_commit(&restarted));
        }
        assert!(again.is_empty(), "committed records were delivered again: {} of them", again.len());
        assert_eq!(assigned(&restarted).len(), 6);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_migrates_to_the_consumer_protocol_and_keeps_its_offsets() {
    let broker = Broker::start(BROKER_CONFIG);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "migrating", 4, &[]).await;
    let p = producer(&bootstrap, &[]);
    let first: Vec<_> = (0..1000).map(|i| record(i, 10)).collect();
    produce(&p, "migrating", &first).await;

    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let classic = member(&b, "moving", "migrating", "classic", &[]);
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 1000 {
            seen.extend(poll_and_commit(&classic));
            assert!(Instant::now() < deadline, "the classic member stalled at {}", seen.len());
        }
    })
    .await
    .unwrap();
    // The classic member left; its offsets stay with the group.
    assert_eq!(listed_type(&broker, "moving").as_deref(), Some("classic"));

    let second: Vec<_> = (1000..1500).map(|i| record(i, 10)).collect();
    produce(&p, "migrating", &second).await;
    let b = bootstrap.clone();
    let modern = tokio::task::spawn_blocking(move || {
        let modern = member(&b, "moving", "migrating", "consumer", &[("group.remote.assignor", "range")]);
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 500 {
            for k in poll_and_commit(&modern) {
                let i: usize = k.trim_start_matches("key-").parse().unwrap();
                assert!(i >= 1000, "record {i}, committed by the classic group, was read again");
                seen.insert(i);
            }
            assert!(Instant::now() < deadline, "the migrated group stalled at {}", seen.len());
        }
        modern
    })
    .await
    .unwrap();
    let g = describe(&broker, "moving");
    assert_eq!(
        (g.error_code, g.group_state.as_str(), g.assignor_name.as_str()),
        (0, "Stable", "range")
    );
    assert_eq!(listed_type(&broker, "moving").as_deref(), Some("consumer"));
    // A classic consumer (an application not yet upgraded) joins the
    // consumer group as a classic member and gets its share.
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let classic = member(&b, "moving", "migrating", "classic", &[]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            poll_and_commit(&classic);
            poll_and_commit(&modern);
            let (pc, pm) = (assigned(&classic), assigned(&modern));
            assert!(pc.is_disjoint(&pm), "two members own a partition: {pc:?} {pm:?}");
            if pc.len() == 2 && pm.len() == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "no 2/2 split: {pc:?} {pm:?}");
        }
    })
    .await
    .unwrap();
}

/// What a client without the consumer protocol's rules gets: Kafka's
/// errors, not a crash or a hang.
#[test]
fn bad_heartbeats_get_kafkas_errors() {
    let broker = Broker::start(BROKER_CONFIG);
    let heartbeat =
        |req: &ConsumerGroupHeartbeatRequest| -> ConsumerGroupHeartbeatResponse { call(&broker, ApiKey::ConsumerGroupHeartbeat, 1, req) };
    let s = |v: &str| StrBytes::from_string(v.into());
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("raw")))
        .with_member_id(s("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("nothing-yet"))]))
        .with_topic_partitions(Some(vec![]));
    let ok = heartbeat(&join);
    assert_eq!((ok.error_code, ok.member_epoch), (0, 1));
    assert_eq!(ok.heartbeat_interval_ms, 200);
    let cases = [
        (join.clone().with_member_id(s("")), 42, "MemberId can't be empty."),
        (join.clone().with_member_epoch(7), 110, ""),
        (join.clone().with_member_id(s("m2")).with_member_epoch(3), 25, ""),
        (join.clone().with_server_assignor(Some(s("sticky"))), 112, ""),
        (join.clone().with_subscribed_topic_regex(Some(s("(("))), 128, ""),
        (join.clone().with_subscribed_topic_names(None), 42, ""),
    ];
    for (req, code, message) in cases {
        let r = heartbeat(&req);
        assert_eq!(r.error_code, code, "{:?}", r.error_message);
        if !message.is_empty() {
            assert_eq!(r.error_message.unwrap().as_str(), message);
        }
    }
    let describe_unknown = describe(&broker, "no-such-group");
    assert_eq!(describe_unknown.error_code, 69);
    let leave = heartbeat(&join.clone().with_member_epoch(-1).with_topic_partitions(None));
    assert_eq!((leave.error_code, leave.member_epoch), (0, -1));
}

/// Kafka 4.0's online upgrade and downgrade: a consumer of the new protocol
/// joins a classic group that has members; the group becomes a consumer
/// group and its classic member carries on, handing over partitions as the
/// coordinator assigns them; when the other leaves, the group is classic
/// again and the classic member takes them all back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_with_members_is_upgraded_online() {
    let broker = Broker::start(BROKER_CONFIG);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "online", 4, &[]).await;
    let p = producer(&bootstrap, &[]);
    let first: Vec<_> = (0..2000).map(|i| record(i, 10)).collect();
    produce(&p, "online", &first).await;

    let b = bootstrap.clone();
    let (old, new, mut seen) = tokio::task::spawn_blocking(move || {
        let old = member(
            &b,
            "upgrading",
            "online",
            "classic",
            &[("partition.assignment.strategy", "cooperative-sticky")],
        );
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while assigned(&old).len() != 4 || seen.len() < 1000 {
            for k in poll_and_commit(&old) {
                *seen.entry(k).or_default() += 1;
            }
            assert!(Instant::now() < deadline, "the classic member stalled");
        }
        let new = member(&b, "upgrading", "online", "consumer", &[]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for k in poll_and_commit(&old).into_iter().chain(poll_and_commit(&new)) {
                *seen.entry(k).or_default() += 1;
            }
            let (po, pn) = (assigned(&old), assigned(&new));
            assert!(po.is_disjoint(&pn), "two members own a partition: {po:?} {pn:?}");
            if po.len() == 2 && pn.len() == 2 && seen.len() == 2000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no 2/2 split: {po:?} {pn:?} after {} records",
                seen.len()
            );
        }
        (old, new, seen)
    })
    .await
    .unwrap();
    let g = describe(&broker, "upgrading");
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    let mut types: Vec<i8> = g.members.iter().map(|m| m.member_type).collect();
    types.sort();
    assert_eq!(types, vec![0, 1], "one classic member, one of the consumer protocol");
    assert_eq!(listed_type(&broker, "upgrading").as_deref(), Some("consumer"));

    // The new member leaves: the classic member is told to rejoin and
    // takes all four partitions, and reads what comes next.
    let second: Vec<_> = (2000..2400).map(|i| record(i, 10)).collect();
    produce(&p, "online", &second).await;
    let old = tokio::task::spawn_blocking(move || {
        drop(new);
        let deadline = Instant::now() + Duration::from_secs(60);
        while assigned(&old).len() != 4 || seen.len() < 2400 {
            for k in poll_and_commit(&old) {
                *seen.entry(k).or_default() += 1;
            }
            assert!(
                Instant::now() < deadline,
                "the classic member did not take everything back: {:?}",
                assigned(&old)
            );
        }
        old
    })
    .await
    .unwrap();
    // Left with a classic member only, the group is classic again (Kafka's
    // online downgrade), and that member assigns with its own assignor.
    assert_eq!(listed_type(&broker, "upgrading").as_deref(), Some("classic"));
    drop(old);
}

/// Membership lives in memory: after a broker restart, consumers of the new
/// protocol are told to rejoin (UNKNOWN_MEMBER_ID), get their partitions
/// back and go on from their commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_members_rejoin_after_a_broker_restart() {
    let mut broker = Broker::start(BROKER_CONFIG);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "restarting", 2, &[]).await;
    let first: Vec<_> = (0..500).map(|i| record(i, 10)).collect();
    produce(&producer(&bootstrap, &[]), "restarting", &first).await;
    let b = bootstrap.clone();
    let c = tokio::task::spawn_blocking(move || {
        let c = member(&b, "survivor", "restarting", "consumer", &[]);
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 500 {
            seen.extend(poll_and_commit(&c));
            assert!(Instant::now() < deadline, "stalled at {}", seen.len());
        }
        c
    })
    .await
    .unwrap();
    broker.restart();
    let second: Vec<_> = (500..1000).map(|i| record(i, 10)).collect();
    produce(&producer(&bootstrap, &[]), "restarting", &second).await;
    let c = tokio::task::spawn_blocking(move || {
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 500 {
            for k in poll_and_commit(&c) {
                let i: usize = k.trim_start_matches("key-").parse().unwrap();
                assert!(i >= 500, "record {i} was committed before the restart and read again");
                seen.insert(i);
            }
            assert!(
                Instant::now() < deadline,
                "no progress after the restart: {} records, {:?}",
                seen.len(),
                assigned(&c)
            );
        }
        c
    })
    .await
    .unwrap();
    // The member rejoins and is Stable with both partitions.
    let c = std::sync::Arc::new(c);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let polled = c.clone();
        tokio::task::spawn_blocking(move || poll_and_commit(&polled)).await.unwrap();
        let g = describe(&broker, "survivor");
        if g.error_code == 0 && g.group_state.as_str() == "Stable" && g.members.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the member never rejoined: {g:?}");
    }
}

/// OffsetFetch v8 answers a batch of groups; v9 checks a KIP-848 member's
/// epoch, as OffsetCommit v9 does.
#[test]
fn offset_fetch_batches_groups_and_checks_member_epochs() {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
    let broker = Broker::start(BROKER_CONFIG);
    let s = |v: &str| StrBytes::from_string(v.into());
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = config(&broker.bootstrap()).create().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let topic = rdkafka::admin::NewTopic::new("fetched", 1, rdkafka::admin::TopicReplication::Fixed(1));
        admin.create_topics(&[topic], &rdkafka::admin::AdminOptions::new()).await.unwrap();
    });
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("fg")))
        .with_member_id(s("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("fetched"))]))
        .with_topic_partitions(Some(vec![]));
    let joined: ConsumerGroupHeartbeatResponse = call(&broker, ApiKey::ConsumerGroupHeartbeat, 1, &join);
    let epoch = joined.member_epoch;
    assert_eq!((joined.error_code, epoch), (0, 1));
    let commit = |member_epoch: i32, version: i16| -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("fg")))
            .with_member_id(s("m1"))
            .with_generation_id_or_member_epoch(member_epoch)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("fetched")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)])]);
        let response: OffsetCommitResponse = call(&broker, ApiKey::OffsetCommit, version, &request);
        response.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(epoch + 1, 9), 113, "STALE_MEMBER_EPOCH");
    assert_eq!(commit(epoch, 8), 35, "UNSUPPORTED_VERSION: a KIP-848 member commits with v9");
    assert_eq!(commit(epoch, 9), 0);
    let group = |id: &str, member: Option<&str>, member_epoch: i32| {
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(id)))
            .with_member_id(member.map(s))
            .with_member_epoch(member_epoch)
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("fetched")))
                .with_partition_indexes(vec![0])]))
    };
    let fetch = |version: i16, groups: Vec<OffsetFetchRequestGroup>| -> OffsetFetchResponse {
        call(
            &broker,
            ApiKey::OffsetFetch,
            version,
            &OffsetFetchRequest::default().with_groups(groups),
        )
    };
    let both = fetch(8, vec![group("fg", None, -1), group("nobody", None, -1)]);
    let offsets: Vec<(String, i16, i64)> = both
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.error_code, g.topics[0].partitions[0].committed_offset))
        .collect();
    assert_eq!(offsets, vec![("fg".into(), 0, 42), ("nobody".into(), 0, -1)]);
    let by_member = fetch(9, vec![group("fg", Some("m1"), epoch)]);
    assert_eq!(
        (
            by_member.groups[0].error_code,
            by_member.groups[0].topics[0].partitions[0].committed_offset
        ),
        (0, 42)
    );
    let stale = fetch(9, vec![group("fg", Some("m1"), epoch + 3)]);
    assert_eq!((stale.groups[0].error_code, stale.groups[0].topics.len()), (113, 0));
    let stranger = fetch(9, vec![group("fg", Some("m9"), 1)]);
    assert_eq!(stranger.groups[0].error_code, 25, "UNKNOWN_MEMBER_ID");
}
