use std::collections::BTreeMap;

use super::*;

const T: i64 = 1_000;

struct Topics(BTreeMap<String, (Uuid, i32)>);

impl Topics {
    fn new(list: &[(&str, i32)]) -> Self {
        Self(
            list.iter()
                .enumerate()
                .map(|(i, (name, n))| (name.to_string(), (Uuid::from_bytes([i as u8 + 1; 16]), *n)))
                .collect(),
        )
    }

    fn id(&self, name: &str) -> Uuid {
        self.0[name].0
    }
}

impl TopicCatalog for Topics {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.get(name).copied()
    }

    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

fn timing() -> Timing {
    Timing {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        max_size: 3,
    }
}

fn join(member: &str, topics: &[&str]) -> HeartbeatInput {
    HeartbeatInput {
        api_version: 1,
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 10_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(Assignment::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

/// A steady heartbeat: the epoch and what the member owns.
fn beat(member: &str, epoch: i32, owned: &Assignment) -> HeartbeatInput {
    HeartbeatInput {
        api_version: 1,
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..Default::default()
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(|s| s.len()).sum()
}

/// Heartbeats every member, as a client does (owning what it was last
/// given), until the group is Stable; returns each member's partitions.
fn settle(group: &mut ConsumerGroup, topics: &Topics, members: &mut BTreeMap<String, (i32, Assignment)>) {
    for _ in 0..10 {
        for (id, (epoch, owned)) in members.iter_mut() {
            let out = group.heartbeat(T, beat(id, *epoch, owned), topics, timing()).unwrap();
            *epoch = out.member_epoch;
            if let Some(a) = out.assignment {
                *owned = a;
            }
        }
        if group.state() == ConsumerGroupState::Stable {
            return;
        }
    }
    panic!("group did not settle: {:?}", group.describe());
}

#[test]
fn requests_are_checked_with_kafkas_messages() {
    let ok = join("m", &["t"]);
    assert_eq!(validate("g", &ok), Ok(()));
    let msg = |g: &str, i: HeartbeatInput| validate(g, &i).unwrap_err().message;
    assert_eq!(msg(" ", ok.clone()), "GroupId can't be empty.");
    assert_eq!(
        msg(
            "g",
            HeartbeatInput {
                member_id: String::new(),
                ..ok.clone()
            }
        ),
        "MemberId can't be empty."
    );
    assert_eq!(
        msg(
            "g",
            HeartbeatInput {
                rebalance_timeout_ms: -1,
                ..ok.clone()
            }
        ),
        "RebalanceTimeoutMs must be provided in first request."
    );
    assert_eq!(
        msg(
            "g",
            HeartbeatInput {
                subscribed_topic_names: Some(vec![]),
                ..ok.clone()
            }
        ),
        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
    );
    assert_eq!(
        msg(
            "g",
            HeartbeatInput {
                member_epoch: -3,
                ..ok.clone()
            }
        ),
        "MemberEpoch is invalid."
    );
    let assignor = validate(
        "g",
        &HeartbeatInput {
            server_assignor: Some("sticky".into()),
            ..ok.clone()
        },
    )
    .unwrap_err();
    assert_eq!(assignor.code, ResponseError::UnsupportedAssignor.code());
    assert_eq!(
        assignor.message,
        "ServerAssignor sticky is not supported. Supported assignors: uniform, range."
    );
    for bad in ["(", &"a".repeat(REGEX_MAX_LEN + 1), "a{1000}{1000}"] {
        let refused = validate(
            "g",
            &HeartbeatInput {
                subscribed_topic_regex: Some(bad.to_string()),
                ..ok.clone()
            },
        )
        .unwrap_err();
        assert_eq!(refused.code, ResponseError::InvalidRegularExpression.code(), "{bad}");
    }
    let too_many = HeartbeatInput {
        subscribed_topic_names: Some((0..=SUBSCRIBED_TOPICS_MAX).map(|i| format!("t{i}")).collect()),
        ..ok.clone()
    };
    assert_eq!(msg("g", too_many), "SubscribedTopicNames holds more than 10000 topics.");
    // v0: the coordinator may make the member id.
    assert_eq!(
        validate(
            "g",
            &HeartbeatInput {
                api_version: 0,
                member_id: String::new(),
                ..ok
            }
        ),
        Ok(())
    );
}

#[test]
fn members_joining_and_leaving_rebalance_incrementally() {
    let topics = Topics::new(&[("t", 4)]);
    let t = topics.id("t");
    let mut g = ConsumerGroup::new("g".into());
    let a = g.heartbeat(T, join("a", &["t"]), &topics, timing()).unwrap();
    assert_eq!((a.member_epoch, a.assignment.as_ref().map(count)), (1, Some(4)));
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let a_owned = a.assignment.unwrap();

    // b joins: it gets nothing until a gives partitions up.
    let b = g.heartbeat(T, join("b", &["t"]), &topics, timing()).unwrap();
    assert_eq!(b.member_epoch, 2);
    assert_eq!(b.assignment, Some(Assignment::new()));
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    // a is told to keep two: same epoch until it confirms.
    let a2 = g.heartbeat(T, beat("a", 1, &a_owned), &topics, timing()).unwrap();
    assert_eq!(a2.member_epoch, 1);
    let kept = a2.assignment.unwrap();
    assert_eq!(count(&kept), 2);
    // b still waits: a has not confirmed.
    let b2 = g.heartbeat(T, beat("b", 2, &Assignment::new()), &topics, timing()).unwrap();
    assert_eq!(b2.assignment, None);
    // a confirms; then b gets the other two.
    let a3 = g.heartbeat(T, beat("a", 1, &kept), &topics, timing()).unwrap();
    assert_eq!(a3.member_epoch, 2);
    let b3 = g.heartbeat(T, beat("b", 2, &Assignment::new()), &topics, timing()).unwrap();
    let b_owned = b3.assignment.unwrap();
    assert_eq!(count(&b_owned), 2);
    assert!(b_owned[&t].is_disjoint(&kept[&t]));
    assert_eq!(g.state(), ConsumerGroupState::Stable);

    // a leaves: b gets everything at the next epoch.
    let left = g.heartbeat(T, beat("a", LEAVE_EPOCH, &kept), &topics, timing()).unwrap();
    assert_eq!(left.member_epoch, LEAVE_EPOCH);
    let b4 = g.heartbeat(T, beat("b", 2, &b_owned), &topics, timing()).unwrap();
    assert_eq!((b4.member_epoch, b4.assignment.map(|a| count(&a))), (3, Some(4)));
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn random_schedules_never_give_a_partition_to_two_members() {
    let topics = Topics::new(&[("t", 7), ("u", 3)]);
    let mut rng = crate::seeded::Seeded::new(48);
    for _ in 0..50 {
        let mut g = ConsumerGroup::new("g".into());
        let mut members: BTreeMap<String, (i32, Assignment)> = BTreeMap::new();
        for step in 0..40 {
            match rng.below(4) {
                0 if members.len() < 3 => {
                    let id = format!("m{step}");
                    let out = g.heartbeat(T, join(&id, &["t", "u"]), &topics, timing()).unwrap();
                    members.insert(id, (out.member_epoch, out.assignment.unwrap_or_default()));
                }
                1 if !members.is_empty() => {
                    let id = members.keys().nth(rng.below(members.len() as u64) as usize).cloned().unwrap();
                    let (_, owned) = members.remove(&id).unwrap();
                    g.heartbeat(T, beat(&id, LEAVE_EPOCH, &owned), &topics, timing()).unwrap();
                }
                _ if !members.is_empty() => {
                    let id = members.keys().nth(rng.below(members.len() as u64) as usize).cloned().unwrap();
                    let (epoch, owned) = members[&id].clone();
                    let out = g.heartbeat(T, beat(&id, epoch, &owned), &topics, timing()).unwrap();
                    let next = out.assignment.unwrap_or(owned);
                    members.insert(id, (out.member_epoch, next));
                }
                _ => {}
            }
            g.check_invariants().unwrap();
            // What clients own never overlaps.
            let mut seen = std::collections::BTreeSet::new();
            for (_, owned) in members.values() {
                for (t, ps) in owned {
                    for p in ps {
                        assert!(seen.insert((*t, *p)), "two members own {t}/{p}");
                    }
                }
            }
        }
        if !members.is_empty() {
            settle(&mut g, &topics, &mut members);
            let total: usize = members.values().map(|(_, a)| count(a)).sum();
            assert_eq!(total, 10, "every partition is owned once the group is stable");
        }
    }
}

#[test]
fn epochs_are_fenced_except_the_previous_one_with_a_subset() {
    let topics = Topics::new(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g".into());
    let a = g.heartbeat(T, join("a", &["t"]), &topics, timing()).unwrap();
    let owned = a.assignment.unwrap();
    let code = |r: Result<HeartbeatOutput, Refusal>| r.unwrap_err().code;
    assert_eq!(
        code(g.heartbeat(T, beat("a", 5, &owned), &topics, timing())),
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        code(g.heartbeat(T, beat("nobody", 1, &owned), &topics, timing())),
        ResponseError::UnknownMemberId.code()
    );
    let mut two = Topics::new(&[("t", 3)]);
    two.0.insert("t".into(), (topics.id("t"), 3));
    let grown = g.heartbeat(T, beat("a", 1, &owned), &two, timing()).unwrap();
    assert_eq!(grown.member_epoch, 2, "a new partition bumps the group epoch");
    assert_eq!(grown.assignment.map(|a| count(&a)), Some(3));
    // The epoch before this one, owning no more than it is assigned: the
    // answer that moved it on was lost. Owning more: fenced.
    assert!(g.heartbeat(T, beat("a", 1, &owned), &two, timing()).is_ok());
    let stranger = Assignment::from([(topics.id("t"), std::collections::BTreeSet::from([9]))]);
    assert_eq!(
        code(g.heartbeat(T, beat("a", 1, &stranger), &two, timing())),
        ResponseError::FencedMemberEpoch.code()
    );
}

#[test]
fn sessions_and_revocations_that_time_out_remove_the_member() {
    let topics = Topics::new(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g".into());
    let a = g.heartbeat(T, join("a", &["t"]), &topics, timing()).unwrap();
    g.heartbeat(T, join("b", &["t"]), &topics, timing()).unwrap();
    // a is asked to revoke one and never confirms.
    g.heartbeat(T, beat("a", a.member_epoch, &a.assignment.unwrap()), &topics, timing())
        .unwrap();
    assert_eq!(g.next_deadline(), Some(T + 10_000));
    assert!(g.tick(T + 9_999).is_empty());
    assert_eq!(g.tick(T + 10_000), vec!["a".to_string()]);
    let b = g
        .heartbeat(T + 10_000, beat("b", 2, &Assignment::new()), &topics, timing())
        .unwrap();
    assert_eq!(b.assignment.map(|a| count(&a)), Some(2));
    assert_eq!(g.tick(T + 10_000 + 45_000), vec!["b".to_string()]);
    assert!(g.is_empty());
    assert_eq!(g.state(), ConsumerGroupState::Empty);
}

#[test]
fn regex_subscriptions_follow_topics_as_they_appear() {
    let mut topics = Topics::new(&[("orders-eu", 1), ("payments", 1)]);
    let mut g = ConsumerGroup::new("g".into());
    let input = HeartbeatInput {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("orders-.*".into()),
        ..join("a", &[])
    };
    let a = g.heartbeat(T, input, &topics, timing()).unwrap();
    assert_eq!(
        a.assignment.as_ref().unwrap().keys().copied().collect::<Vec<_>>(),
        vec![topics.id("orders-eu")]
    );
    // Whole names only: "xorders-us" does not match.
    topics.0.insert("orders-us".into(), (Uuid::from_bytes([9; 16]), 2));
    topics.0.insert("xorders-us".into(), (Uuid::from_bytes([8; 16]), 2));
    // Within REGEX_REFRESH_MS the last scan is reused; after it, the new
    // topics are found.
    let owned = a.assignment.unwrap();
    let a1 = g
        .heartbeat(T + REGEX_REFRESH_MS - 1, beat("a", a.member_epoch, &owned), &topics, timing())
        .unwrap();
    assert_eq!((a1.member_epoch, a1.assignment), (a.member_epoch, None));
    let a2 = g
        .heartbeat(T + REGEX_REFRESH_MS, beat("a", a.member_epoch, &owned), &topics, timing())
        .unwrap();
    assert_eq!(a2.assignment.map(|a| count(&a)), Some(3));
    assert_eq!(
        g.subscribed_topics().into_iter().collect::<Vec<_>>(),
        vec!["orders-eu".to_string(), "orders-us".to_string()]
    );
    // A full request (as after an error) by regex gets the assignment though
    // nothing changed; a steady one does not.
    let epoch = g.describe().members[0].member_epoch;
    let owned = g.describe().members[0].assignment.clone();
    let steady = g
        .heartbeat(T + 2 * REGEX_REFRESH_MS, beat("a", epoch, &owned), &topics, timing())
        .unwrap();
    assert_eq!(steady.assignment, None);
    let full = HeartbeatInput {
        rebalance_timeout_ms: 10_000,
        subscribed_topic_regex: Some("orders-.*".into()),
        ..beat("a", epoch, &owned)
    };
    let answered = g.heartbeat(T + 2 * REGEX_REFRESH_MS, full, &topics, timing()).unwrap();
    assert_eq!(answered.assignment, Some(owned));
}

#[test]
fn a_static_member_that_restarts_gets_its_partitions_back() {
    let topics = Topics::new(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g".into());
    let with_instance = |id: &str| HeartbeatInput {
        instance_id: Some("i1".into()),
        ..join(id, &["t"])
    };
    let a = g.heartbeat(T, with_instance("a"), &topics, timing()).unwrap();
    let owned = a.assignment.unwrap();
    // Another member id for the same live instance: refused.
    assert_eq!(
        g.heartbeat(T, with_instance("a2"), &topics, timing()).unwrap_err().code,
        ResponseError::UnreleasedInstanceId.code()
    );
    let leave = HeartbeatInput {
        instance_id: Some("i1".into()),
        ..beat("a", STATIC_LEAVE_EPOCH, &owned)
    };
    assert_eq!(g.heartbeat(T, leave, &topics, timing()).unwrap().member_epoch, STATIC_LEAVE_EPOCH);
    let back = g.heartbeat(T, with_instance("a2"), &topics, timing()).unwrap();
    assert_eq!(back.assignment, Some(owned));
    assert_eq!(g.member_count(), 1);
}

#[test]
fn the_group_size_is_bounded() {
    let topics = Topics::new(&[("t", 1)]);
    let mut g = ConsumerGroup::new("g".into());
    for id in ["a", "b", "c"] {
        g.heartbeat(T, join(id, &["t"]), &topics, timing()).unwrap();
    }
    let refused = g.heartbeat(T, join("d", &["t"]), &topics, timing()).unwrap_err();
    assert_eq!(refused.code, ResponseError::GroupMaxSizeReached.code());
    // Members already in still rejoin.
    assert!(g.heartbeat(T, join("a", &["t"]), &topics, timing()).is_ok());
}

#[test]
fn commits_follow_kafkas_rules_for_consumer_groups() {
    let topics = Topics::new(&[("t", 1)]);
    let mut g = ConsumerGroup::new("g".into());
    assert_eq!(g.validate_commit("", -1, 8, false), Ok(()), "an empty group takes simple commits");
    let a = g.heartbeat(T, join("a", &["t"]), &topics, timing()).unwrap();
    let code = |r: Result<(), Refusal>| r.unwrap_err().code;
    assert_eq!(code(g.validate_commit("", -1, 9, false)), ResponseError::UnknownMemberId.code());
    assert_eq!(
        code(g.validate_commit("a", a.member_epoch, 8, false)),
        ResponseError::UnsupportedVersion.code()
    );
    assert_eq!(code(g.validate_commit("a", 7, 9, false)), ResponseError::StaleMemberEpoch.code());
    assert_eq!(g.validate_commit("a", a.member_epoch, 9, false), Ok(()));
    assert_eq!(
        g.validate_commit("a", a.member_epoch, 3, true),
        Ok(()),
        "TxnOffsetCommit checks only the epoch"
    );
    assert_eq!(g.validate_fetch(None, -1), Ok(()));
    assert_eq!(code(g.validate_fetch(Some("a"), 9)), ResponseError::StaleMemberEpoch.code());
}

#[test]
fn the_assignor_is_the_one_most_members_ask_for() {
    let topics = Topics::new(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g".into());
    assert_eq!(g.describe().assignor, "uniform");
    for id in ["a", "b"] {
        let input = HeartbeatInput {
            server_assignor: Some("range".into()),
            ..join(id, &["t"])
        };
        g.heartbeat(T, input, &topics, timing()).unwrap();
    }
    g.heartbeat(T, join("c", &["t"]), &topics, timing()).unwrap();
    assert_eq!(g.describe().assignor, "range");
}
