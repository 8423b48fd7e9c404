//! The replica manager: on every new cluster image, opens topics created
//! elsewhere, sets each partition's role on this broker from the state the
//! controller recorded (lead, follow, or neither), and keeps one fetcher per
//! leader broker running for the partitions this broker follows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{fetcher, isr, ClusterLink};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::coordination::etcd::image::ClusterImage;
use crate::coordination::PartitionState;
use crate::metrics::{PartitionLabels, ReplicaLabels};
use crate::replication::state::Rules;
use crate::tasks::Tasks;

/// What this broker should do, as the image says (pure).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// The partitions this broker leads, with their recorded state.
    pub lead: BTreeMap<(String, i32), PartitionState>,
    /// Leader broker → the partitions followed from it, with their epochs.
    pub follow: BTreeMap<i32, BTreeMap<(String, i32), i32>>,
}

/// Reads this broker's roles out of the image. A broker the image does not
/// show as registered (it is leaving, or lost its lease) has none: it must
/// not follow, or it could be taken back into an ISR it is about to leave.
pub fn roles(image: &ClusterImage, me: i32) -> Roles {
    let mut out = Roles::default();
    if !image.brokers.contains_key(&me) {
        return out;
    }
    for topic in image.topics.values() {
        for partition in 0..topic.partitions {
            let Some((state, _)) = image.partitions.get(&(topic.id.clone(), partition)) else {
                continue;
            };
            let key = (topic.name.clone(), partition);
            if state.leader == me {
                out.lead.insert(key, state.clone());
            } else if state.replicas.contains(&me) && !state.is_offline() && image.brokers.contains_key(&state.leader) {
                out.follow.entry(state.leader).or_default().insert(key, state.leader_epoch);
            }
        }
    }
    out
}

struct RunningFetcher {
    address: String,
    partitions: BTreeMap<(String, i32), i32>,
    stop: CancellationToken,
}

/// Runs until `tasks` is shut down.
pub async fn run(broker: Arc<Broker>, link: Arc<ClusterLink>, tasks: Tasks) {
    let mut image = link.image.clone();
    let mut fetchers: BTreeMap<i32, RunningFetcher> = BTreeMap::new();
    // Topics (name, id) seen in an image.
    let mut seen = BTreeSet::new();
    tasks.spawn(isr::run(broker.clone(), link.clone()));
    // Lagging followers are looked for a few times per lag period.
    let mut lag_check = tokio::time::interval(Duration::from_millis((link.lag_max_ms as u64 / 4).clamp(100, 5_000)));
    let mut session = link.session.clone();
    loop {
        let current = image.borrow_and_update().clone();
        apply(&broker, &link, &current, &mut fetchers, &mut seen, &tasks).await;
        update_gauges(&broker, &link, &current);
        tokio::select! {
            changed = image.changed() => if changed.is_err() { break },
            changed = session.changed() => if changed.is_err() { break },
            _ = lag_check.tick() => check_lagging(&broker, &link),
        }
    }
    for (_, f) in fetchers {
        f.stop.cancel();
    }
}

async fn apply(
    broker: &Arc<Broker>,
    link: &Arc<ClusterLink>,
    image: &ClusterImage,
    fetchers: &mut BTreeMap<i32, RunningFetcher>,
    seen: &mut BTreeSet<(String, String)>,
    tasks: &Tasks,
) {
    for record in image.topics.values() {
        let adopted = match broker.adopt_topic(record).await {
            Ok(_) => broker.sync_topic(record).await,
            Err(e) => Err(e),
        };
        if let Err(e) = adopted {
            tracing::warn!(topic = %record.name, error = %e, "cannot open a topic of the cluster");
        }
    }
    // A topic seen in an earlier image and gone from this one was deleted
    // elsewhere. One not seen yet may be this broker's own creation that the
    // watch has not delivered: it stays.
    for topic in broker.topics() {
        let key = (topic.name.clone(), topic.id.to_string());
        if image.topics.get(&topic.name).is_some_and(|r| r.id == key.1) {
            seen.insert(key);
        } else if seen.remove(&key) {
            if let Err(e) = broker.forget_deleted_topic(&topic.name).await {
                tracing::warn!(topic = %topic.name, error = %e, "cannot remove a topic deleted elsewhere");
            }
        }
    }
    let wanted = roles(image, link.broker_id);
    let now = now_ms();
    for topic in broker.topics() {
        let min_insync = topic.config().min_insync_replicas.max(1) as usize;
        let rules = Rules {
            min_insync,
            lag_max_ms: link.lag_max_ms,
        };
        for partition in topic.partitions() {
            let key = (topic.name.clone(), partition.index);
            if let Some(state) = wanted.lead.get(&key) {
                partition.become_leader(link.broker_id, state.leader_epoch, &state.replicas, &state.isr, rules, now);
            } else if let Some((leader, epoch)) = wanted.follow.iter().find_map(|(l, ps)| ps.get(&key).map(|e| (*l, *e))) {
                partition.become_follower(epoch, leader);
            } else {
                partition.become_inactive();
            }
        }
    }
    // Offsets partitions led now have their groups loaded; those lost, forgotten.
    for (partition, epoch) in link.offsets.reconcile(broker) {
        let offsets = link.offsets.clone();
        tasks.spawn(async move { offsets.load(partition, epoch).await });
    }
    // And transaction state partitions, their transactional ids.
    for (partition, epoch) in link.transactions.reconcile(broker) {
        let transactions = link.transactions.clone();
        tasks.spawn(async move { transactions.load(partition, epoch).await });
    }
    // One fetcher per leader; restarted when its partitions or address change.
    let listener = &link.inter_broker_listener;
    fetchers.retain(|leader, f| {
        let keep =
            wanted.follow.get(leader) == Some(&f.partitions) && address_of(image, *leader, listener).as_deref() == Some(f.address.as_str());
        if !keep {
            f.stop.cancel();
        }
        keep
    });
    for (leader, partitions) in wanted.follow {
        if fetchers.contains_key(&leader) {
            continue;
        }
        let Some(address) = address_of(image, leader, listener) else {
            continue;
        };
        let stop = CancellationToken::new();
        tasks.spawn(fetcher::run(
            broker.clone(),
            link.broker_id,
            leader,
            address.clone(),
            partitions.clone(),
            stop.clone(),
        ));
        fetchers.insert(leader, RunningFetcher { address, partitions, stop });
    }
}

/// Leaderships, under-replicated partitions and the etcd session, for
/// `/metrics`.
fn update_gauges(broker: &Broker, link: &ClusterLink, image: &ClusterImage) {
    let (mut leading, mut under_replicated) = (0, 0);
    let m = &broker.metrics;
    m.isr_size.clear();
    m.follower_lag_records.clear();
    for topic in broker.topics() {
        let Some(record) = image.topics.get(&topic.name) else { continue };
        for partition in topic.partitions() {
            let Some(isr) = partition.leader_isr() else { continue };
            leading += 1;
            let labels = PartitionLabels {
                topic: topic.name.clone(),
                partition: partition.index.to_string(),
            };
            m.isr_size.get_or_create(&labels).set(isr.len() as i64);
            for (replica, lag) in partition.follower_lags() {
                let labels = ReplicaLabels {
                    topic: topic.name.clone(),
                    partition: partition.index.to_string(),
                    replica: replica.to_string(),
                };
                m.follower_lag_records.get_or_create(&labels).set(lag);
            }
            let replicas = image
                .partitions
                .get(&(record.id.clone(), partition.index))
                .map_or(0, |(s, _)| s.replicas.len());
            if isr.len() < replicas {
                under_replicated += 1;
            }
        }
    }
    broker.metrics.leader_partitions.set(leading);
    broker.metrics.under_replicated_partitions.set(under_replicated);
    let session = link.session.borrow().clone();
    let up = session.broker_epoch.is_some() && session.connected;
    broker.metrics.etcd_session_up.set(i64::from(up));
    let controller = image.controller.is_some_and(|(id, _)| id == link.broker_id);
    m.controller.set(i64::from(controller));
    let offline = image.partitions.values().filter(|(s, _)| s.is_offline()).count();
    m.offline_partitions.set(if controller { offline as i64 } else { 0 });
}

/// Where this broker's fetchers reach `broker`: its inter-broker listener.
fn address_of(image: &ClusterImage, broker: i32, listener: &str) -> Option<String> {
    image.brokers.get(&broker).map(|(r, _)| r.address_on(listener).to_string())
}

fn check_lagging(broker: &Broker, link: &ClusterLink) {
    let now = now_ms();
    for topic in broker.topics() {
        for partition in topic.partitions() {
            if partition.lagging_replicas(now).is_some() {
                link.request_isr_change(&topic.name, partition.index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::etcd::Registration;
    use crate::coordination::TopicRecord;

    fn image(states: &[(i32, PartitionState)], live: &[i32]) -> ClusterImage {
        let mut image = ClusterImage::default();
        image.topics.insert(
            "t".into(),
            TopicRecord {
                name: "t".into(),
                id: "id".into(),
                partitions: states.len() as i32,
                configs: Default::default(),
                assignment: states.iter().map(|(_, s)| s.replicas.clone()).collect(),
            },
        );
        for (p, state) in states {
            image.partitions.insert(("id".into(), *p), (state.clone(), 1));
        }
        for id in live {
            let registration = Registration {
                broker_id: *id,
                advertised: format!("b{id}:9092"),
                http: String::new(),
                dir_id: String::new(),
                empty_disk: false,
                listeners: Default::default(),
            };
            image.brokers.insert(*id, (registration, 1));
        }
        image
    }

    fn state(replicas: &[i32], leader: i32, epoch: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: replicas.to_vec(),
        }
    }

    #[test]
    fn each_broker_leads_follows_or_stays_out_as_the_image_says() {
        let image = image(
            &[
                (0, state(&[1, 2, 3], 1, 4)),
                (1, state(&[2, 3, 1], 2, 7)),
                (2, state(&[2, 3], 2, 1)),
                (3, state(&[1, 3], crate::coordination::NO_LEADER, 9)),
            ],
            &[1, 2, 3],
        );
        let one = roles(&image, 1);
        assert_eq!(one.lead.keys().cloned().collect::<Vec<_>>(), vec![("t".to_string(), 0)]);
        assert_eq!(one.follow.get(&2), Some(&BTreeMap::from([(("t".to_string(), 1), 7)])));
        assert_eq!(one.follow.len(), 1, "not a replica of 2, and 3 is offline");
        let three = roles(&image, 3);
        assert!(three.lead.is_empty());
        assert_eq!(three.follow[&1].len(), 1);
        assert_eq!(three.follow[&2].len(), 2);
    }

    #[test]
    fn a_broker_that_is_not_registered_has_no_role() {
        let image = image(&[(0, state(&[1, 2], 1, 3))], &[1]);
        assert_eq!(roles(&image, 2), Roles::default(), "leaving, or lost its lease");
    }

    #[test]
    fn no_fetcher_for_a_leader_that_is_not_live() {
        let image = image(&[(0, state(&[1, 2], 1, 3))], &[2]);
        assert!(roles(&image, 2).follow.is_empty(), "the controller has not moved it yet");
    }
}
