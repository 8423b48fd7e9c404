use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as Owned;
use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;

const T: i64 = 1_000;

struct Topics;

impl TopicCatalog for Topics {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        (name == "t").then_some((Uuid::from_bytes([1; 16]), 4))
    }

    fn names(&self) -> Vec<String> {
        vec!["t".into()]
    }
}

fn t() -> Uuid {
    Uuid::from_bytes([1; 16])
}

fn timing() -> Timing {
    Timing {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        max_size: 10,
    }
}

/// Embedded subscription metadata to "t", owning `owned` (v1).
fn metadata(owned: &[i32]) -> Bytes {
    let s = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("t")])
        .with_owned_partitions(vec![Owned::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(owned.to_vec())]);
    let mut out = BytesMut::new();
    out.put_i16(1);
    s.encode(&mut out, 1).unwrap();
    out.freeze()
}

fn classic(id: &str, assigned: &[i32]) -> ClassicMember {
    ClassicMember {
        member_id: id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocols: vec![("cooperative-sticky".into(), metadata(assigned))],
        assignment: embedded::encode_assignment(1, &[("t".into(), assigned.to_vec())]),
    }
}

fn rejoin(id: &str, owned: &[i32]) -> JoinInput {
    JoinInput {
        member_id: id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".into(),
        protocols: vec![("cooperative-sticky".into(), metadata(owned))],
        require_known_member_id: true,
    }
}

fn synced(g: &mut ConsumerGroup, id: &str, generation: i32) -> Vec<i32> {
    let bytes = g.classic_sync(T, id, None, generation, Some("cooperative-sticky")).unwrap();
    let parts = embedded::decode_assignment(&bytes).unwrap();
    parts.into_iter().flat_map(|(_, ps)| ps).collect()
}

#[test]
fn a_classic_group_is_taken_over_and_its_members_hand_partitions_to_a_new_one() {
    let mut g = ConsumerGroup::from_classic("g".into(), 5, "cooperative-sticky", vec![classic("a", &[0, 1, 2, 3])], &Topics, T).unwrap();
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    assert_eq!(g.classic_heartbeat(T, "a", None, 5), 0, "nothing changed yet");

    // A member of the new protocol joins: a gets REBALANCE_IN_PROGRESS.
    let join = new_protocol_join("b");
    let b = g.heartbeat(T, join, &Topics, timing()).unwrap();
    assert_eq!(
        (b.member_epoch, b.assignment.clone()),
        (6, Some(Assignment::new())),
        "b waits for a's partitions"
    );
    assert_eq!(g.classic_heartbeat(T, "a", None, 5), ResponseError::RebalanceInProgress.code());

    // a rejoins still owning all four: it keeps its epoch and is told to
    // keep two; then it rejoins owning those two and moves to epoch 6.
    let joined = g
        .classic_join(T, rejoin("a", &[0, 1, 2, 3]), "unused".into(), &Topics, timing())
        .unwrap();
    assert_eq!(joined.generation_id, 5);
    let kept = synced(&mut g, "a", 5);
    assert_eq!(kept.len(), 2);
    let joined = g.classic_join(T, rejoin("a", &kept), "unused".into(), &Topics, timing()).unwrap();
    assert_eq!(joined.generation_id, 6);
    assert_eq!(synced(&mut g, "a", 6), kept);
    assert_eq!(g.classic_heartbeat(T, "a", None, 6), 0);

    // b now gets the other two.
    let b2 = g.heartbeat(T, beat_input("b", 6), &Topics, timing()).unwrap();
    let got: Vec<i32> = b2.assignment.unwrap()[&t()].iter().copied().collect();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| !kept.contains(p)));
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let view = g.describe();
    assert_eq!(view.members.iter().filter(|m| m.classic).count(), 1);
}

/// A member of the new protocol joining, subscribed to "t".
fn new_protocol_join(id: &str) -> HeartbeatInput {
    HeartbeatInput {
        api_version: 1,
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 10_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::new()),
        ..Default::default()
    }
}

fn beat_input(id: &str, epoch: i32) -> HeartbeatInput {
    HeartbeatInput {
        api_version: 1,
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(Assignment::new()),
        ..Default::default()
    }
}

#[test]
fn classic_joins_follow_kafkas_rules() {
    let mut g = ConsumerGroup::new("g".into());
    let code = |r: Result<ClassicJoined, ClassicRefusal>| r.unwrap_err();
    let wrong_type = JoinInput {
        protocol_type: "connect".into(),
        ..rejoin("", &[])
    };
    assert_eq!(
        code(g.classic_join(T, wrong_type, "new".into(), &Topics, timing())).code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let garbage = JoinInput {
        protocols: vec![("range".into(), Bytes::from_static(b"\xff"))],
        ..rejoin("", &[])
    };
    assert_eq!(
        code(g.classic_join(T, garbage, "new".into(), &Topics, timing())).code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let required = code(g.classic_join(T, rejoin("", &[]), "new".into(), &Topics, timing()));
    assert_eq!(
        (required.code, required.member_id.as_str()),
        (ResponseError::MemberIdRequired.code(), "new")
    );
    // The id handed out (or any id) joins.
    let joined = g.classic_join(T, rejoin("new", &[]), "unused".into(), &Topics, timing()).unwrap();
    assert_eq!((joined.member_id.as_str(), joined.generation_id), ("new", 1));
    assert_eq!(synced(&mut g, "new", 1), vec![0, 1, 2, 3]);
    assert_eq!(
        g.classic_sync(T, "new", None, 0, None),
        Err(ResponseError::IllegalGeneration.code())
    );
    // Commits of a classic member are checked by generation, any version.
    assert_eq!(g.validate_commit("new", 1, 2, false), Ok(()));
    assert_eq!(
        g.validate_commit("new", 0, 8, false).unwrap_err().code,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(g.classic_leave(&[("new".into(), None)]), vec![0]);
    assert!(g.is_empty());
}

#[test]
fn a_classic_member_that_never_syncs_is_removed() {
    let mut g = ConsumerGroup::new("g".into());
    let join = JoinInput {
        require_known_member_id: false,
        ..rejoin("", &[])
    };
    g.classic_join(T, join, "m".into(), &Topics, timing()).unwrap();
    assert_eq!(g.next_deadline(), Some(T + 10_000), "the session ends before the sync deadline");
    assert!(g.tick(T + 9_999).is_empty());
    assert_eq!(g.tick(T + 10_000), vec!["m".to_string()]);
}

#[test]
fn a_group_whose_metadata_is_garbage_is_not_taken_over() {
    let mut bad = classic("a", &[0]);
    bad.assignment = Bytes::from_static(b"\x00\x00\x7f");
    let refused = ConsumerGroup::from_classic("g".into(), 1, "cooperative-sticky", vec![bad], &Topics, T).unwrap_err();
    assert_eq!(refused.code, ResponseError::GroupIdNotFound.code());
    // No protocol chosen yet (first rebalance): the members' first one.
    let taken = ConsumerGroup::from_classic("g".into(), 0, "", vec![classic("a", &[1])], &Topics, T).unwrap();
    assert_eq!(taken.describe().members[0].topic_names, vec!["t".to_string()]);
    assert!(ConsumerGroup::can_take_over(Some("consumer"), &[classic("a", &[])], 1));
    assert!(!ConsumerGroup::can_take_over(Some("connect"), &[classic("a", &[])], 1));
    assert!(!ConsumerGroup::can_take_over(
        Some("consumer"),
        &[classic("a", &[]), classic("b", &[])],
        1
    ));
}

#[test]
fn a_group_left_with_classic_members_only_can_be_handed_back() {
    let mut g = ConsumerGroup::from_classic("g".into(), 5, "cooperative-sticky", vec![classic("a", &[0, 1, 2, 3])], &Topics, T).unwrap();
    let join = new_protocol_join("b");
    g.heartbeat(T, join, &Topics, timing()).unwrap();
    assert!(g.classic_handover().is_none(), "a member of the new protocol is in");
    g.heartbeat(T, beat_input("b", LEAVE_EPOCH), &Topics, timing()).unwrap();
    let (generation, protocol, members) = g.classic_handover().unwrap();
    assert_eq!((generation, protocol.as_str(), members.len()), (7, "cooperative-sticky", 1));
    let kept = embedded::decode_assignment(&members[0].assignment).unwrap();
    assert_eq!(kept, vec![("t".to_string(), vec![0, 1, 2, 3])], "a's last assignment goes with it");
    // The classic group prepares a rebalance that a's heartbeat is told of.
    let (mut classic_group, replies) =
        crate::groups::state_machine::Group::from_members("g".into(), 0, 10, generation, protocol, members, T);
    assert!(replies.is_empty());
    assert_eq!(classic_group.state(), crate::groups::state_machine::GroupState::PreparingRebalance);
    assert_eq!(
        classic_group.heartbeat(T, "a", None, generation),
        ResponseError::RebalanceInProgress.code()
    );
}
