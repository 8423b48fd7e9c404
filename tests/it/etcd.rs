//! The etcd session and coordinator against a real etcd (Debian's
//! etcd-server), with short leases: registration under a lease, keep-alives,
//! an etcd restart, a lost lease, a taken broker id, and the coordinator's
//! topics and producer-id blocks under concurrency.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sediment::coordination::etcd::{connect, live_brokers, EtcdCoordinator, Registration, Session, SessionState};
use sediment::coordination::{Coordinator, TopicRecord};
use tokio::sync::watch;

use crate::common::{free_port, http_get, wait_until};

/// A single-member etcd on free loopback ports, killed on drop.
pub struct Etcd {
    host: String,
    netns: Option<String>,
    pub client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        // A free port can be taken by another test before etcd binds it; etcd
        // then exits at once, and new ports are tried.
        for _ in 0..2 {
            if let Some(etcd) = Self::try_start_at(None, "127.0.0.1", free_port(), free_port()) {
                return etcd;
            }
        }
        Self::start_at(None, "127.0.0.1", free_port(), free_port())
    }

    /// An etcd inside network namespace `netns`, listening on `host` there.
    pub fn start_in_netns(netns: &str, host: &str) -> Etcd {
        Self::start_at(Some(netns.to_string()), host, 2379, 2380)
    }

    fn start_at(netns: Option<String>, host: &str, client_port: u16, peer_port: u16) -> Etcd {
        Self::try_start_at(netns, host, client_port, peer_port).expect("etcd exited before it was healthy")
    }

    /// None if etcd exited before it was healthy (its ports were taken).
    fn try_start_at(netns: Option<String>, host: &str, client_port: u16, peer_port: u16) -> Option<Etcd> {
        let tmp = tempfile::tempdir().unwrap();
        let mut etcd = Etcd {
            host: host.to_string(),
            netns,
            client_port,
            peer_port,
            data_dir: tmp.path().join("etcd"),
            child: None,
            _tmp: tmp,
        };
        etcd.try_spawn().then_some(etcd)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }

    fn spawn(&mut self) {
        assert!(self.try_spawn(), "etcd exited before it was healthy");
    }

    /// Starts etcd and waits until it is healthy; false if it exits first.
    fn try_spawn(&mut self) -> bool {
        let (h, cp, pp) = (self.host.clone(), self.client_port, self.peer_port);
        let mut command = match &self.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        let child = command
            .args(["--name", "n0", "--data-dir"])
            .arg(&self.data_dir)
            .arg(format!("--listen-client-urls=http://{h}:{cp}"))
            .arg(format!("--advertise-client-urls=http://{h}:{cp}"))
            .arg(format!("--listen-peer-urls=http://{h}:{pp}"))
            .arg(format!("--initial-advertise-peer-urls=http://{h}:{pp}"))
            .arg(format!("--initial-cluster=n0=http://{h}:{pp}"))
            .args([
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval=10",
                "--election-timeout=100",
            ])
            .args(["--logger", "zap", "--log-outputs"])
            .arg(self.data_dir.with_extension("log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd runs (Debian: apt-get install etcd-server)");
        self.child = Some(child);
        let health = format!("http://{h}:{cp}/health");
        let mut exited = false;
        wait_until("etcd is healthy", 20, || {
            exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            exited || http_get(&health).is_ok_and(|b| b.contains("\"health\":\"true\""))
        });
        if exited {
            self.child = None;
        }
        !exited
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A new, empty etcd on the same ports: the old one and its data are gone.
    pub fn replace_with_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.spawn();
    }

    /// Starts a killed etcd again on its data dir.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

const TTL: Duration = Duration::from_secs(2);

fn registration(id: i32, dir_id: &str) -> Registration {
    Registration {
        broker_id: id,
        advertised: format!("127.0.0.1:{}", 9000 + id),
        http: format!("127.0.0.1:{}", 9600 + id),
        dir_id: dir_id.to_string(),
        empty_disk: false,
        listeners: Default::default(),
    }
}

async fn start_session(etcd: &Etcd, cluster: &str, reg: Registration) -> (watch::Receiver<SessionState>, tokio::task::JoinHandle<()>) {
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let session = Session::new(client, cluster, reg, TTL);
    let state = session.state();
    (state, tokio::spawn(session.run()))
}

async fn registered(state: &mut watch::Receiver<SessionState>) -> i64 {
    let s = tokio::time::timeout(Duration::from_secs(20), state.wait_for(|s| s.broker_epoch.is_some() && s.connected))
        .await
        .expect("registered within 20 s")
        .unwrap()
        .clone();
    s.broker_epoch.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stays_registered_through_keep_alives_and_an_etcd_restart() {
    let mut etcd = Etcd::start();
    let (mut state, task) = start_session(&etcd, "c1", registration(1, "dir-a")).await;
    let epoch = registered(&mut state).await;
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let live = live_brokers(&client, "c1").await.unwrap();
    assert_eq!(live, vec![(registration(1, "dir-a"), epoch)]);
    // Three lease TTLs later the keep-alives have held it.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(live_brokers(&client, "c1").await.unwrap().len(), 1);
    // etcd goes away and comes back on the same data dir: the session
    // reconnects, and the lease (reset by etcd's restart) still holds the
    // same registration.
    etcd.kill();
    tokio::time::timeout(Duration::from_secs(20), state.wait_for(|s| !s.connected))
        .await
        .expect("the session noticed etcd was gone")
        .unwrap();
    etcd.restart();
    tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| s.connected && s.broker_epoch.is_some()))
        .await
        .expect("the session reconnected")
        .unwrap();
    tokio::time::sleep(TTL * 2).await;
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let live = live_brokers(&client, "c1").await.unwrap();
    assert_eq!(live.len(), 1, "registered after the restart");
    assert_eq!(state.borrow().broker_epoch, Some(live[0].1));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_replaced_under_a_new_broker_epoch() {
    let etcd = Etcd::start();
    let (mut state, task) = start_session(&etcd, "c2", registration(7, "dir-a")).await;
    let first = registered(&mut state).await;
    // Revoke the broker's lease behind its back (as an expiry would).
    let mut client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let key = client.get("/c2/brokers/7", None).await.unwrap();
    client.lease_revoke(key.kvs()[0].lease()).await.unwrap();
    let second = tokio::time::timeout(
        Duration::from_secs(20),
        state.wait_for(|s| s.broker_epoch.is_some_and(|e| e > first)),
    )
    .await
    .expect("registered again")
    .unwrap()
    .broker_epoch
    .unwrap();
    assert!(second > first);
    let live = live_brokers(&client, "c2").await.unwrap();
    assert_eq!(live, vec![(registration(7, "dir-a"), second)]);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_id_held_by_another_data_dir_is_not_taken_over() {
    let etcd = Etcd::start();
    let (mut first_state, first) = start_session(&etcd, "c3", registration(2, "dir-a")).await;
    registered(&mut first_state).await;
    // Another disk claiming the same id waits while the first lives.
    let (second_state, second) = start_session(&etcd, "c3", registration(2, "dir-b")).await;
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(second_state.borrow().broker_epoch, None);
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    assert_eq!(live_brokers(&client, "c3").await.unwrap()[0].0.dir_id, "dir-a");
    // The first goes away: its lease expires and the second registers.
    first.abort();
    let mut second_state = second_state;
    registered(&mut second_state).await;
    assert_eq!(live_brokers(&client, "c3").await.unwrap()[0].0.dir_id, "dir-b");
    // The same data dir restarting takes its own registration over at once.
    second.abort();
    let (mut again, third) = start_session(&etcd, "c3", registration(2, "dir-b")).await;
    registered(&mut again).await;
    third.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_keeps_topics_and_never_hands_out_a_producer_id_twice() {
    let etcd = Etcd::start();
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let a = std::sync::Arc::new(EtcdCoordinator::new(client.clone(), "c4"));
    let b = std::sync::Arc::new(EtcdCoordinator::new(client, "c4"));
    // More topics than one etcd transaction may hold.
    let topics: Vec<TopicRecord> = (0..300)
        .map(|i| TopicRecord {
            name: format!("t{i:03}"),
            id: format!("id-{i}"),
            partitions: 3,
            configs: Default::default(),
            assignment: Vec::new(),
        })
        .collect();
    a.put_topics(topics.clone()).await.unwrap();
    assert_eq!(b.topics().await.unwrap(), topics);
    b.delete_topic("t007".into()).await.unwrap();
    assert_eq!(a.topics().await.unwrap().len(), 299);
    // Creation refuses a taken name; a change or deletion based on a record
    // that changed meanwhile is refused, never applied over it.
    assert!(matches!(
        a.create_topics(vec![topics[1].clone()]).await,
        Err(sediment::coordination::CoordinationError::TopicExists(_))
    ));
    let mut changed = topics[1].clone();
    changed.partitions = 6;
    a.update_topic(topics[1].clone(), changed.clone()).await.unwrap();
    let mut stale = topics[1].clone();
    stale.partitions = 9;
    assert!(matches!(
        b.update_topic(topics[1].clone(), stale).await,
        Err(sediment::coordination::CoordinationError::Conflict(_))
    ));
    assert!(matches!(
        b.delete_topic_if(topics[1].clone()).await,
        Err(sediment::coordination::CoordinationError::Conflict(_))
    ));
    b.delete_topic_if(changed).await.unwrap();
    assert_eq!(a.topics().await.unwrap().len(), 298);
    // Two brokers reserving blocks at once never overlap.
    let mut tasks = Vec::new();
    for c in [a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut firsts = Vec::new();
            for _ in 0..20 {
                firsts.push(c.allocate_producer_ids(1000).await.unwrap());
            }
            firsts
        }));
    }
    let mut all: Vec<i64> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..40).map(|i| i * 1000).collect::<Vec<_>>());
    assert_eq!(a.register_start(1).await.unwrap(), 1);
    assert_eq!(b.register_start(1).await.unwrap(), 2);
    assert_eq!(a.register_start(2).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_image_follows_brokers_and_topics_through_etcd_restarts_and_a_compaction() {
    use sediment::coordination::etcd::follow_image;
    use sediment::coordination::etcd::image::ClusterImage;
    let mut etcd = Etcd::start();
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let (publish, mut image) = watch::channel(std::sync::Arc::new(ClusterImage::default()));
    let follower = tokio::spawn(follow_image(client.clone(), "c5".into(), publish));
    let coordinator = EtcdCoordinator::new(client.clone(), "c5");
    let topic = |name: &str| TopicRecord {
        name: name.to_string(),
        id: format!("id-{name}"),
        partitions: 1,
        configs: Default::default(),
        assignment: Vec::new(),
    };
    coordinator.put_topics(vec![topic("a"), topic("b")]).await.unwrap();
    let (mut state, session) = start_session(&etcd, "c5", registration(4, "dir-a")).await;
    let epoch = registered(&mut state).await;
    let seen = |image: &mut watch::Receiver<std::sync::Arc<ClusterImage>>, what: &'static str, f: fn(&ClusterImage) -> bool| {
        let mut image = image.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), image.wait_for(|i| f(i)))
                .await
                .unwrap_or_else(|_| panic!("the image never showed {what}"))
                .unwrap()
                .clone()
        }
    };
    let now = seen(&mut image, "the broker and two topics", |i| {
        i.brokers.len() == 1 && i.topics.len() == 2
    })
    .await;
    assert_eq!(now.brokers[&4], (registration(4, "dir-a"), epoch));
    coordinator.delete_topic("a".into()).await.unwrap();
    seen(&mut image, "topic a gone", |i| !i.topics.contains_key("a")).await;
    // etcd restarts: the watch lists again and goes on.
    etcd.restart();
    // The client's first requests after the restart may fail: retry.
    let mut retry = 0;
    while coordinator.put_topic(topic("c")).await.is_err() && retry < 50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        retry += 1;
    }
    let after = seen(&mut image, "topic c after the restart", |i| i.topics.contains_key("c")).await;
    assert_eq!(after.topics.keys().collect::<Vec<_>>(), vec!["b", "c"]);
    // Changes made while etcd was away from the watch, then the history
    // compacted past them: the watch never resumes from an old revision
    // (any end of its stream lists again), so it sees the current state.
    etcd.restart();
    let mut retry = 0;
    while coordinator.put_topic(topic("d")).await.is_err() && retry < 50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        retry += 1;
    }
    coordinator.delete_topic("b".into()).await.unwrap();
    let mut compactor = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let revision = compactor.get("/c5/", None).await.unwrap().header().unwrap().revision();
    compactor.compact(revision, None).await.unwrap();
    let compacted = seen(&mut image, "topics c and d after a compaction", |i| {
        i.topics.contains_key("d") && !i.topics.contains_key("b")
    })
    .await;
    assert_eq!(compacted.topics.keys().collect::<Vec<_>>(), vec!["c", "d"]);
    assert!(compacted.revision >= revision);
    coordinator.put_topic(topic("e")).await.unwrap();
    seen(&mut image, "a change after the compaction", |i| i.topics.contains_key("e")).await;
    // A broker whose lease goes leaves the image.
    session.abort();
    let mut admin = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let key = admin.get("/c5/brokers/4", None).await.unwrap();
    if let Some(kv) = key.kvs().first() {
        admin.lease_revoke(kv.lease()).await.unwrap();
    }
    seen(&mut image, "the broker gone", |i| i.brokers.is_empty()).await;
    follower.abort();
}

/// Two brokers, each with a session, an image and a controller task: one is
/// elected controller, creates the partitions of a topic, and when a broker's
/// lease goes (the controller's own), the other broker takes over as
/// controller and moves the leaderships to the in-sync replica left, under a
/// new leader epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_elects_leaders_from_the_isr_when_a_broker_goes() {
    use sediment::controller::decide::PartitionState;
    use sediment::coordination::etcd::image::ClusterImage;
    use sediment::coordination::etcd::{follow_image, ControllerStore};
    let etcd = Etcd::start();
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let (publish, mut image) = watch::channel(std::sync::Arc::new(ClusterImage::default()));
    let observer = tokio::spawn(follow_image(client.clone(), "c6".into(), publish));
    let mut tasks = std::collections::BTreeMap::new();
    for id in [1, 2] {
        let (session_state, session) = start_session(&etcd, "c6", registration(id, &format!("dir-{id}"))).await;
        let (publish, broker_image) = watch::channel(std::sync::Arc::new(ClusterImage::default()));
        let follow = tokio::spawn(follow_image(client.clone(), "c6".into(), publish));
        let controller = tokio::spawn(sediment::controller::run(
            id,
            ControllerStore::new(client.clone(), "c6"),
            session_state,
            broker_image,
        ));
        tasks.insert(id, [session, follow, controller]);
        if id == 1 {
            // Broker 1 is controller before broker 2 starts, so its death
            // below also tests the takeover.
            tokio::time::timeout(Duration::from_secs(30), image.wait_for(|i| i.controller.is_some_and(|c| c.0 == 1)))
                .await
                .expect("broker 1 became controller")
                .unwrap();
        }
    }
    // Both registered before the topic exists: a partition created while a
    // replica is away starts without it in the ISR (and only replication,
    // still to come, would bring it back).
    tokio::time::timeout(Duration::from_secs(30), image.wait_for(|i| i.brokers.len() == 2))
        .await
        .expect("both brokers registered")
        .unwrap();
    EtcdCoordinator::new(client.clone(), "c6")
        .put_topic(TopicRecord {
            name: "t".into(),
            id: "id-t".into(),
            partitions: 2,
            configs: Default::default(),
            assignment: vec![vec![1, 2], vec![2, 1]],
        })
        .await
        .unwrap();
    let state = |i: &ClusterImage, p: i32| i.partitions.get(&("id-t".to_string(), p)).map(|(s, _)| s.clone());
    let ready = tokio::time::timeout(
        Duration::from_secs(30),
        image.wait_for(|i| state(i, 0).is_some() && state(i, 1).is_some() && i.controller.is_some()),
    )
    .await
    .expect("partitions created")
    .unwrap()
    .clone();
    let p = |replicas: &[i32], leader, epoch, isr: &[i32]| PartitionState {
        replicas: replicas.to_vec(),
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
    };
    assert_eq!(state(&ready, 0), Some(p(&[1, 2], 1, 0, &[1, 2])));
    assert_eq!(state(&ready, 1), Some(p(&[2, 1], 2, 0, &[2, 1])));
    // Broker 1 goes away (its tasks stop and its lease is revoked, as an
    // expiry would do).
    for task in tasks.remove(&1).unwrap() {
        task.abort();
    }
    let mut admin = client.clone();
    let key = admin.get("/c6/brokers/1", None).await.unwrap();
    admin.lease_revoke(key.kvs()[0].lease()).await.unwrap();
    let after = tokio::time::timeout(
        Duration::from_secs(30),
        image.wait_for(|i| state(i, 0).is_some_and(|s| s.leader == 2) && state(i, 1).is_some_and(|s| s.isr == vec![2])),
    )
    .await
    .expect("leadership moved to broker 2")
    .unwrap()
    .clone();
    assert_eq!(state(&after, 0), Some(p(&[1, 2], 2, 1, &[2])));
    assert_eq!(state(&after, 1), Some(p(&[2, 1], 2, 0, &[2])));
    assert_eq!(after.controller.map(|c| c.0), Some(2));
    // The deposed controller's epoch no longer writes anything.
    let stale_epoch = ready.controller.map(|c| c.1).unwrap();
    let (_, revision) = after.partitions[&("id-t".to_string(), 0)].clone();
    let stale = sediment::coordination::etcd::PartitionWrite {
        topic_id: "id-t".into(),
        partition: 0,
        state: p(&[1, 2], 1, 9, &[1, 2]),
        expected_mod_revision: revision,
    };
    let written = ControllerStore::new(client.clone(), "c6")
        .write(stale_epoch, &[stale])
        .await
        .unwrap();
    assert_eq!(written, 0, "fenced by the controller epoch");
    observer.abort();
    for task in tasks.into_values().flatten() {
        task.abort();
    }
}

/// A partition leader records its own ISR changes, fenced by the
/// partition's mod_revision and by its broker epoch: a stale view or a
/// leader whose registration was replaced writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isr_changes_are_fenced_by_revision_and_broker_epoch() {
    use sediment::controller::decide::PartitionState;
    use sediment::coordination::etcd::{record_isr, Keys, PartitionWrite};
    let etcd = Etcd::start();
    let client = connect(&[etcd.endpoint()], Duration::from_secs(2)).await.unwrap();
    let keys = Keys::new("c7");
    let (mut state, session) = start_session(&etcd, "c7", registration(1, "dir-1")).await;
    let epoch = registered(&mut state).await;
    let start = PartitionState {
        replicas: vec![1, 2],
        leader: 1,
        leader_epoch: 3,
        isr: vec![1, 2],
    };
    let mut admin = client.clone();
    let put = admin
        .put(keys.partition("id-t", 0), serde_json::to_vec(&start).unwrap(), None)
        .await
        .unwrap();
    let revision = put.header().unwrap().revision();
    let shrink = |expected_mod_revision| PartitionWrite {
        topic_id: "id-t".into(),
        partition: 0,
        state: PartitionState {
            isr: vec![1],
            ..start.clone()
        },
        expected_mod_revision,
    };
    assert!(
        !record_isr(&client, &keys, 1, epoch, &shrink(revision - 1)).await.unwrap(),
        "stale revision"
    );
    assert!(
        !record_isr(&client, &keys, 1, epoch + 1000, &shrink(revision)).await.unwrap(),
        "stale broker epoch"
    );
    assert!(
        !record_isr(&client, &keys, 2, epoch, &shrink(revision)).await.unwrap(),
        "not the leader"
    );
    assert!(record_isr(&client, &keys, 1, epoch, &shrink(revision)).await.unwrap());
    let stored = admin.get(keys.partition("id-t", 0), None).await.unwrap();
    let now: PartitionState = serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert_eq!(now.isr, vec![1]);
    session.abort();
}
