//! Replica placement for new topics and partitions: Kafka's rack-unaware
//! round robin (AdminUtils.assignReplicasToBrokers). Pure: the starting
//! points, random in Kafka, come in as arguments.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {factor} is larger than the {live} live brokers")]
    TooFewBrokers { factor: i16, live: usize },
    #[error("replication factor {0} must be at least 1")]
    BadFactor(i16),
    #[error("partition count {0} must be at least 1")]
    BadPartitions(i32),
    #[error("partition {partition}: {message}")]
    BadAssignment { partition: usize, message: String },
}

/// Where placement starts: Kafka picks both at random so that topics do not
/// all lead on the same broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Start {
    pub first: usize,
    pub shift: usize,
}

/// Replicas for `partitions` new partitions (numbered from `first_partition`)
/// over the `live` brokers: leaders go round robin, and each partition's
/// followers come after its leader at a shift that grows every time the
/// leaders wrap around, so followers spread too.
pub fn assign(
    partitions: i32,
    factor: i16,
    live: &BTreeSet<i32>,
    first_partition: i32,
    start: Start,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if partitions < 1 {
        return Err(PlacementError::BadPartitions(partitions));
    }
    if factor < 1 {
        return Err(PlacementError::BadFactor(factor));
    }
    let brokers: Vec<i32> = live.iter().copied().collect();
    let n = brokers.len();
    if factor as usize > n {
        return Err(PlacementError::TooFewBrokers { factor, live: n });
    }
    let mut out = Vec::with_capacity(partitions as usize);
    for i in 0..partitions as usize {
        let p = first_partition.max(0) as usize + i;
        let shift = start.shift + p / n;
        let leader = (start.first + p) % n;
        let mut replicas = vec![brokers[leader]];
        for j in 0..(factor as usize - 1) {
            // Never the leader's own slot: the offset runs over 1..n.
            let offset = 1 + (shift + j) % (n - 1).max(1);
            replicas.push(brokers[(leader + offset) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Checks a manual assignment (CreateTopics with `assignments`): every
/// partition names distinct, known brokers, all with the same count.
pub fn validate(assignment: &[Vec<i32>], known: &BTreeSet<i32>) -> Result<(), PlacementError> {
    let bad = |partition, message: &str| PlacementError::BadAssignment {
        partition,
        message: message.to_string(),
    };
    let factor = assignment.first().map_or(0, Vec::len);
    for (partition, replicas) in assignment.iter().enumerate() {
        if replicas.is_empty() {
            return Err(bad(partition, "no replicas"));
        }
        if replicas.len() != factor {
            return Err(bad(partition, "every partition needs the same number of replicas"));
        }
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if distinct.len() != replicas.len() {
            return Err(bad(partition, "a broker is named twice"));
        }
        if let Some(unknown) = replicas.iter().find(|b| !known.contains(b)) {
            return Err(bad(partition, &format!("broker {unknown} is not registered")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn matches_kafkas_round_robin_on_a_small_case() {
        // Five brokers, RF 3, starting at broker 0 with no shift.
        let got = assign(6, 3, &live(&[0, 1, 2, 3, 4]), 0, Start::default()).unwrap();
        assert_eq!(got[0], vec![0, 1, 2]);
        assert_eq!(got[1], vec![1, 2, 3]);
        assert_eq!(got[4], vec![4, 0, 1]);
        // The leaders wrapped: followers now start one further away.
        assert_eq!(got[5], vec![0, 2, 3]);
    }

    #[test]
    fn every_placement_is_distinct_live_and_leaders_are_balanced() {
        let mut rng = crate::seeded::Seeded::new(7);
        let mut next = |m: usize| rng.below(m as u64) as usize;
        for _ in 0..500 {
            let n = 1 + next(9);
            let ids: BTreeSet<i32> = (0..n).map(|i| (i * 3 + 1) as i32).collect();
            let factor = 1 + next(n) as i16;
            let partitions = 1 + next(60) as i32;
            let start = Start {
                first: next(n),
                shift: next(n),
            };
            let got = assign(partitions, factor, &ids, 0, start).unwrap();
            assert_eq!(got.len(), partitions as usize);
            let mut leaders = std::collections::BTreeMap::new();
            for replicas in &got {
                assert_eq!(replicas.len(), factor as usize);
                let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
                assert_eq!(distinct.len(), replicas.len(), "{replicas:?}");
                assert!(distinct.is_subset(&ids));
                *leaders.entry(replicas[0]).or_insert(0) += 1;
            }
            let most = leaders.values().max().copied().unwrap_or(0);
            let least = if leaders.len() == n {
                leaders.values().min().copied().unwrap_or(0)
            } else {
                0
            };
            assert!(most - least <= 1, "leaders {leaders:?} over {n} brokers");
            assert!(validate(&got, &ids).is_ok());
        }
    }

    #[test]
    fn impossible_requests_are_refused() {
        let three = live(&[1, 2, 3]);
        assert_eq!(
            assign(1, 4, &three, 0, Start::default()),
            Err(PlacementError::TooFewBrokers { factor: 4, live: 3 })
        );
        assert_eq!(assign(0, 1, &three, 0, Start::default()), Err(PlacementError::BadPartitions(0)));
        assert_eq!(assign(1, 0, &three, 0, Start::default()), Err(PlacementError::BadFactor(0)));
        assert!(validate(&[vec![1, 2], vec![3]], &three).is_err(), "uneven");
        assert!(validate(&[vec![1, 1]], &three).is_err(), "twice");
        assert!(validate(&[vec![1, 9]], &three).is_err(), "unknown");
        assert!(validate(&[vec![]], &three).is_err(), "empty");
    }

    #[test]
    fn added_partitions_continue_the_round_robin() {
        let ids = live(&[0, 1, 2]);
        let all = assign(6, 2, &ids, 0, Start::default()).unwrap();
        let more = assign(3, 2, &ids, 3, Start::default()).unwrap();
        assert_eq!(&all[3..], &more[..]);
    }
}
