//! The server-side assignors of KIP-848 consumer groups, `uniform` and
//! `range`. Pure: members and topics in, one target assignment per member
//! out. Both are deterministic, so the same group always gets the same
//! answer whichever broker coordinates it.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::Assignment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssignorName {
    Uniform,
    Range,
}

impl AssignorName {
    /// In Kafka's order of `group.consumer.assignors`: the first is the
    /// default.
    pub const ALL: [AssignorName; 2] = [AssignorName::Uniform, AssignorName::Range];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AssignorName::Uniform => "uniform",
            AssignorName::Range => "range",
        }
    }
}

/// One member as the assignors see it.
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    /// Subscribed topics that exist.
    pub topics: BTreeSet<Uuid>,
    /// The member's previous target: kept where balance allows.
    pub previous: Option<&'a Assignment>,
}

/// The target assignment of every member (members with nothing get an empty
/// one). `partitions` gives each subscribed topic's partition count.
pub fn assign(assignor: AssignorName, members: &[MemberSpec<'_>], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    match assignor {
        AssignorName::Uniform => uniform(members, partitions),
        AssignorName::Range => range(members, partitions),
    }
}

/// Kafka's server-side range assignor: per topic, its subscribers in order
/// of instance id (else member id) take contiguous ranges, the first ones
/// one partition more. Members subscribed to the same topics of the same
/// size get the same partition numbers of each (co-partitioning).
fn range(members: &[MemberSpec<'_>], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members.iter().map(|m| (m.member_id.to_string(), Assignment::new())).collect();
    for (topic, count) in partitions {
        let mut subscribers: Vec<&MemberSpec<'_>> = members.iter().filter(|m| m.topics.contains(topic)).collect();
        if subscribers.is_empty() || *count <= 0 {
            continue;
        }
        subscribers.sort_by_key(|m| (m.instance_id.unwrap_or(m.member_id), m.member_id));
        let n = subscribers.len() as i32;
        let (base, extra) = (count / n, count % n);
        let mut start = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let len = base + i32::from((i as i32) < extra);
            if len > 0 {
                if let Some(assigned) = out.get_mut(member.member_id) {
                    assigned.entry(*topic).or_default().extend(start..start + len);
                }
            }
            start += len;
        }
    }
    out
}

/// Balanced and sticky: every partition of a subscribed topic goes to one
/// of its subscribers; a member keeps what it had while that does not put
/// it above its share; then each free partition goes to the least loaded
/// subscriber, and partitions move from a member to a subscriber with at
/// least two fewer until none can. With one subscription for all this is
/// Kafka's homogeneous result (counts differ by at most one).
fn uniform(members: &[MemberSpec<'_>], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut sorted: Vec<&MemberSpec<'_>> = members.iter().collect();
    sorted.sort_by_key(|m| m.member_id);
    // Subscribers of each topic, by index into `sorted`.
    let mut subscribers: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (i, m) in sorted.iter().enumerate() {
        for topic in &m.topics {
            if partitions.get(topic).is_some_and(|c| *c > 0) {
                subscribers.entry(*topic).or_default().push(i);
            }
        }
    }
    let total: usize = subscribers
        .keys()
        .map(|t| partitions.get(t).copied().unwrap_or(0).max(0) as usize)
        .sum();
    let mut owned: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); sorted.len()];
    if total == 0 || sorted.is_empty() {
        return finish(&sorted, owned);
    }
    // A member's share of what it could hold, rounded up: what it may keep.
    let share = |i: usize| -> usize {
        let eligible: usize = sorted[i]
            .topics
            .iter()
            .filter_map(|t| subscribers.get(t).map(|_| partitions.get(t).copied().unwrap_or(0).max(0) as usize))
            .sum();
        let sharing: BTreeSet<usize> = sorted[i]
            .topics
            .iter()
            .filter_map(|t| subscribers.get(t))
            .flatten()
            .copied()
            .collect();
        eligible.div_ceil(sharing.len().max(1))
    };
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (i, m) in sorted.iter().enumerate() {
        let Some(previous) = m.previous else { continue };
        let cap = share(i);
        for (topic, ps) in previous {
            if !m.topics.contains(topic) || !subscribers.contains_key(topic) {
                continue;
            }
            let count = partitions.get(topic).copied().unwrap_or(0);
            for p in ps.iter().filter(|p| **p < count) {
                if owned[i].len() >= cap {
                    break;
                }
                if taken.insert((*topic, *p)) {
                    owned[i].insert((*topic, *p));
                }
            }
        }
    }
    // Free partitions, topics with the fewest subscribers first: they have
    // the least choice.
    let mut topics: Vec<(&Uuid, &Vec<usize>)> = subscribers.iter().collect();
    topics.sort_by_key(|(t, subs)| (subs.len(), **t));
    for (topic, subs) in &topics {
        let count = partitions.get(*topic).copied().unwrap_or(0);
        for p in 0..count {
            if taken.contains(&(**topic, p)) {
                continue;
            }
            if let Some(&least) = subs.iter().min_by_key(|i| (owned[**i].len(), **i)) {
                owned[least].insert((**topic, p));
            }
        }
    }
    // Moves lower the sum of squared counts, so this ends; each pass moves
    // at most one partition per member.
    loop {
        let mut moved = false;
        let mut order: Vec<usize> = (0..sorted.len()).collect();
        order.sort_by_key(|i| (std::cmp::Reverse(owned[*i].len()), *i));
        for from in order {
            let candidates: Vec<(Uuid, i32)> = owned[from].iter().rev().copied().collect();
            for (topic, p) in candidates {
                let Some(subs) = subscribers.get(&topic) else { continue };
                let Some(&to) = subs.iter().min_by_key(|i| (owned[**i].len(), **i)) else {
                    continue;
                };
                if owned[to].len() + 1 < owned[from].len() {
                    owned[from].remove(&(topic, p));
                    owned[to].insert((topic, p));
                    moved = true;
                    break;
                }
            }
        }
        if !moved {
            break;
        }
    }
    finish(&sorted, owned)
}

fn finish(sorted: &[&MemberSpec<'_>], owned: Vec<BTreeSet<(Uuid, i32)>>) -> BTreeMap<String, Assignment> {
    sorted
        .iter()
        .zip(owned)
        .map(|(m, set)| {
            let mut assignment = Assignment::new();
            for (topic, p) in set {
                assignment.entry(topic).or_default().insert(p);
            }
            (m.member_id.to_string(), assignment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded::Seeded;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|s| s.len()).sum()
    }

    /// Every partition of every subscribed topic is assigned exactly once,
    /// and only to a subscriber.
    fn assert_complete(members: &[MemberSpec<'_>], partitions: &BTreeMap<Uuid, i32>, out: &BTreeMap<String, Assignment>) {
        let mut seen = BTreeSet::new();
        for m in members {
            for (t, ps) in &out[m.member_id] {
                assert!(m.topics.contains(t), "{} got a topic it does not subscribe to", m.member_id);
                for p in ps {
                    assert!(*p < partitions[t]);
                    assert!(seen.insert((*t, *p)), "partition {t}/{p} assigned twice");
                }
            }
        }
        let expected: usize = partitions
            .iter()
            .filter(|(t, _)| members.iter().any(|m| m.topics.contains(t)))
            .map(|(_, c)| *c as usize)
            .sum();
        assert_eq!(seen.len(), expected);
    }

    fn spec<'a>(id: &'a str, topics: &[Uuid], previous: Option<&'a Assignment>) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            instance_id: None,
            topics: topics.iter().copied().collect(),
            previous,
        }
    }

    #[test]
    fn names_parse_and_uniform_is_the_default() {
        assert_eq!(AssignorName::parse("range"), Some(AssignorName::Range));
        assert_eq!(AssignorName::parse("uniform"), Some(AssignorName::Uniform));
        assert_eq!(AssignorName::parse("sticky"), None);
        assert_eq!(AssignorName::ALL[0], AssignorName::Uniform);
    }

    #[test]
    fn range_gives_contiguous_ranges_and_co_partitions() {
        let (a, b) = (topic(1), topic(2));
        let partitions = BTreeMap::from([(a, 3), (b, 3)]);
        let members = [spec("m0", &[a, b], None), spec("m1", &[a, b], None)];
        let out = assign(AssignorName::Range, &members, &partitions);
        assert_eq!(
            out["m0"],
            Assignment::from([(a, BTreeSet::from([0, 1])), (b, BTreeSet::from([0, 1]))])
        );
        assert_eq!(out["m1"], Assignment::from([(a, BTreeSet::from([2])), (b, BTreeSet::from([2]))]));
        assert_complete(&members, &partitions, &out);
    }

    #[test]
    fn range_orders_by_instance_id_when_there_is_one() {
        let a = topic(1);
        let partitions = BTreeMap::from([(a, 2)]);
        let mut first = spec("zz", &[a], None);
        first.instance_id = Some("i0");
        let mut second = spec("aa", &[a], None);
        second.instance_id = Some("i1");
        let out = assign(AssignorName::Range, &[first, second], &partitions);
        assert_eq!(out["zz"][&a], BTreeSet::from([0]));
        assert_eq!(out["aa"][&a], BTreeSet::from([1]));
    }

    #[test]
    fn uniform_balances_and_keeps_what_members_had() {
        let a = topic(1);
        let partitions = BTreeMap::from([(a, 6)]);
        let first = assign(
            AssignorName::Uniform,
            &[spec("m0", &[a], None), spec("m1", &[a], None)],
            &partitions,
        );
        assert_eq!(count(&first["m0"]), 3);
        // A third member takes one from each, and the others keep the rest.
        let members = [
            spec("m0", &[a], Some(&first["m0"])),
            spec("m1", &[a], Some(&first["m1"])),
            spec("m2", &[a], None),
        ];
        let second = assign(AssignorName::Uniform, &members, &partitions);
        assert_complete(&members, &partitions, &second);
        for m in ["m0", "m1", "m2"] {
            assert_eq!(count(&second[m]), 2, "{m}: {second:?}");
        }
        for m in ["m0", "m1"] {
            assert!(second[m][&a].is_subset(&first[m][&a]), "{m} lost a partition it could keep");
        }
    }

    #[test]
    fn uniform_with_different_subscriptions_gives_each_topic_to_its_subscribers() {
        let (a, b) = (topic(1), topic(2));
        let partitions = BTreeMap::from([(a, 4), (b, 2)]);
        let members = [spec("m0", &[a], None), spec("m1", &[a, b], None), spec("m2", &[b], None)];
        let out = assign(AssignorName::Uniform, &members, &partitions);
        assert_complete(&members, &partitions, &out);
        let counts: Vec<usize> = ["m0", "m1", "m2"].iter().map(|m| count(&out[*m])).collect();
        assert_eq!(counts.iter().sum::<usize>(), 6);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{counts:?}");
    }

    #[test]
    fn topics_nobody_subscribes_to_and_empty_groups_assign_nothing() {
        let a = topic(1);
        let partitions = BTreeMap::from([(a, 4)]);
        for assignor in AssignorName::ALL {
            assert!(assign(assignor, &[], &partitions).is_empty());
            let out = assign(assignor, &[spec("m0", &[topic(9)], None)], &partitions);
            assert!(out["m0"].is_empty());
        }
    }

    /// Random groups: both assignors assign every partition once to a
    /// subscriber; uniform with one subscription for all is balanced to
    /// within one, and is sticky when a member leaves (the others keep
    /// everything they had).
    #[test]
    fn random_groups_are_complete_balanced_and_sticky() {
        let mut rng = Seeded::new(848);
        let topics: Vec<Uuid> = (1..=4).map(topic).collect();
        for _ in 0..300 {
            let partitions: BTreeMap<Uuid, i32> = topics.iter().map(|t| (*t, rng.below(12) as i32)).collect();
            let n = 1 + rng.below(7) as usize;
            let ids: Vec<String> = (0..n).map(|i| format!("m{}", rng.below(1000) * 10 + i as u64)).collect();
            let homogeneous = rng.below(2) == 0;
            let subs: Vec<Vec<Uuid>> = (0..n)
                .map(|_| {
                    if homogeneous {
                        topics.clone()
                    } else {
                        topics.iter().copied().filter(|_| rng.below(2) == 0).collect()
                    }
                })
                .collect();
            let members: Vec<MemberSpec<'_>> = ids.iter().zip(&subs).map(|(id, t)| spec(id, t, None)).collect();
            for assignor in AssignorName::ALL {
                let out = assign(assignor, &members, &partitions);
                assert_complete(&members, &partitions, &out);
            }
            let out = assign(AssignorName::Uniform, &members, &partitions);
            if homogeneous {
                let counts: Vec<usize> = out.values().map(count).collect();
                assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{counts:?}");
                if n > 1 {
                    let survivors: Vec<MemberSpec<'_>> = members[1..]
                        .iter()
                        .map(|m| spec(m.member_id, &subs[0], Some(&out[m.member_id])))
                        .collect();
                    let after = assign(AssignorName::Uniform, &survivors, &partitions);
                    assert_complete(&survivors, &partitions, &after);
                    for m in &survivors {
                        for (t, ps) in &out[m.member_id] {
                            assert!(ps.is_subset(&after[m.member_id][t]), "a survivor lost a partition");
                        }
                    }
                }
            }
        }
    }
}
