//! A broker in a cluster: its etcd session and view of the cluster (the
//! image), the controller task, and the replica manager that turns the
//! controller's decisions into this broker's roles (leader or follower of
//! each partition) and runs the followers' fetchers.
//!
//! `join` is called by the composition root (`node`), which owns the tasks.

mod fetcher;
mod isr;
pub mod offsets;
pub mod peers;
pub mod replicas;
pub mod shards;
pub mod transactions;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::coordination::etcd::image::ClusterImage;
use crate::coordination::etcd::{self, EtcdCoordinator, IsrWriter, Registration, SessionState};
use crate::tasks::Tasks;

/// What the rest of the broker needs of the cluster.
pub struct ClusterLink {
    pub broker_id: i32,
    pub image: watch::Receiver<Arc<ClusterImage>>,
    pub session: watch::Receiver<SessionState>,
    isr_writer: IsrWriter,
    /// Partitions whose leader wants an ISR change recorded: a set, so
    /// requests repeated while etcd is away take no more room.
    isr_pending: parking_lot::Mutex<std::collections::BTreeSet<(String, i32)>>,
    isr_wake: tokio::sync::Notify,
    pub lag_max_ms: i64,
    /// Cancelled to leave the cluster (controlled shutdown).
    leaving: tokio_util::sync::CancellationToken,
    /// Group coordination on the replicated offsets topic.
    pub offsets: Arc<offsets::ClusterOffsets>,
    /// Transaction coordination on the replicated transaction state topic.
    pub transactions: Arc<transactions::ClusterTxns>,
    /// Connections to other brokers for markers and verification.
    pub peers: peers::Peers,
    /// How followers connect to leaders (TLS, SASL).
    pub inter_broker: crate::kafka_client::ClientSecurity,
    /// The listener whose address other brokers are reached on.
    pub inter_broker_listener: String,
}

impl ClusterLink {
    /// The current image.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.image.borrow().clone()
    }

    /// Asks for the partition's ISR change to be recorded (see `isr`).
    pub fn request_isr_change(&self, topic: &str, partition: i32) {
        if self.isr_pending.lock().insert((topic.to_string(), partition)) {
            self.isr_wake.notify_one();
        }
    }

    /// A controlled shutdown: leaves the cluster (the registration goes, so
    /// the controller moves this broker's leaderships to other ISR members)
    /// and waits, at most `grace`, until the image shows that this broker
    /// leads nothing. Clients still connected get NOT_LEADER_OR_FOLLOWER
    /// and find the new leaders meanwhile.
    pub async fn leave(&self, grace: Duration) {
        let me = self.broker_id;
        let leads = |image: &ClusterImage| image.partitions.values().filter(|(s, _)| s.leader == me).count();
        let before = leads(&self.image());
        tracing::info!(broker_id = me, leaderships = before, "controlled shutdown: leaving the cluster");
        self.leaving.cancel();
        let mut image = self.image.clone();
        let moved = tokio::time::timeout(grace, image.wait_for(|i| !i.brokers.contains_key(&me) && leads(i) == 0)).await;
        match moved {
            Ok(Ok(_)) => tracing::info!(broker_id = me, leaderships = before, "controlled shutdown: leaderships moved"),
            _ => tracing::warn!(
                broker_id = me,
                remaining = leads(&self.image()),
                "controlled shutdown: leaderships did not all move in time; the lease expiry moves the rest"
            ),
        }
    }

    /// The broker ids that are live now.
    pub fn live_broker_ids(&self) -> std::collections::BTreeSet<i32> {
        self.image.borrow().brokers.keys().copied().collect()
    }

    /// The broker ids that are live now, and their addresses on `listener`.
    pub fn live_brokers(&self, listener: &str) -> Vec<(i32, String)> {
        self.image
            .borrow()
            .brokers
            .iter()
            .map(|(id, (registration, _))| (*id, registration.address_on(listener).to_string()))
            .collect()
    }
}

/// Connects to etcd, registers this broker and starts following the
/// cluster; spawns the session, the image watch and the controller on
/// `tasks`. Returns once this broker is registered and sees itself.
pub async fn join(config: &Config, tasks: &Tasks) -> anyhow::Result<(Arc<EtcdCoordinator>, Arc<ClusterLink>)> {
    let endpoints = config.etcd_endpoints();
    let ttl = Duration::from_millis(config.etcd_lease_ttl_ms);
    let client = etcd::connect(&endpoints, ttl.min(Duration::from_secs(5))).await?;
    let (host, port) = config.advertised();
    let (dir_id, empty_disk) = data_dir_id(&config.data_dir)?;
    if empty_disk {
        tracing::info!(data_dir = %config.data_dir.display(), "an empty data dir: this broker rejoins as a new replica");
    }
    let registration = Registration {
        broker_id: config.broker_id,
        advertised: format!("{host}:{port}"),
        http: config.http_listen.to_string(),
        dir_id,
        empty_disk,
        listeners: config
            .effective_listeners()
            .iter()
            .map(|l| {
                let (host, port) = l.advertised();
                (l.name.clone(), format!("{host}:{port}"))
            })
            .collect(),
    };
    let session = etcd::Session::new(client.clone(), &config.cluster, registration, ttl);
    let mut session_state = session.state();
    let controller_session = session.state();
    let leaving = tokio_util::sync::CancellationToken::new();
    tasks.spawn(session.run_until(leaving.clone()));
    let (image_tx, mut image) = watch::channel(Arc::new(ClusterImage::default()));
    tasks.spawn(etcd::follow_image(client.clone(), config.cluster.clone(), image_tx));
    tasks.spawn(crate::controller::run(
        config.broker_id,
        etcd::ControllerStore::new(client.clone(), &config.cluster),
        controller_session,
        image.clone(),
    ));
    tracing::info!(etcd = %endpoints.join(","), cluster = %config.cluster, broker_id = config.broker_id, "joining the cluster");
    session_state
        .wait_for(|s| s.broker_epoch.is_some())
        .await
        .map_err(|_| anyhow::anyhow!("the etcd session stopped before registering"))?;
    let me = config.broker_id;
    image
        .wait_for(|i| i.brokers.contains_key(&me))
        .await
        .map_err(|_| anyhow::anyhow!("the cluster watch stopped"))?;
    let link = Arc::new(ClusterLink {
        broker_id: me,
        image,
        session: session_state,
        isr_writer: IsrWriter::new(client.clone(), &config.cluster),
        isr_pending: parking_lot::Mutex::new(Default::default()),
        isr_wake: tokio::sync::Notify::new(),
        lag_max_ms: config.replica_lag_time_max_ms as i64,
        leaving,
        offsets: Arc::new(offsets::ClusterOffsets::default()),
        transactions: Arc::new(transactions::ClusterTxns::default()),
        peers: peers::Peers::default(),
        inter_broker: inter_broker_security(config)?,
        inter_broker_listener: config.inter_broker_listener_name(),
    });
    Ok((Arc::new(EtcdCoordinator::new(client, &config.cluster)), link))
}

/// What followers need to reach leaders on the inter-broker listener:
/// a TLS client config, and a SASL login (files read now, so a missing one
/// stops the start with its reason).
fn inter_broker_security(config: &Config) -> anyhow::Result<crate::kafka_client::ClientSecurity> {
    let name = config.inter_broker_listener_name();
    let Some(listener) = config.effective_listeners().into_iter().find(|l| l.name == name) else {
        return Ok(Default::default());
    };
    let auth = &config.auth;
    let tls = match (&auth.inter_broker_tls_ca, listener.protocol.tls()) {
        (Some(ca), true) => Some(
            crate::security::tls::client_config(
                ca,
                auth.inter_broker_tls_cert.as_deref().zip(auth.inter_broker_tls_key.as_deref()),
                &crate::security::tls::INTER_BROKER_SETTINGS,
            )
            .map_err(|e| anyhow::anyhow!(e))?,
        ),
        _ => None,
    };
    let sasl = match (
        &auth.inter_broker_sasl_mechanism,
        &auth.inter_broker_user,
        &auth.inter_broker_password_file,
    ) {
        (Some(mechanism), Some(user), Some(file)) if listener.protocol.sasl() => {
            let password = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read inter_broker_password_file {}: {e}", file.display()))?;
            Some(crate::kafka_client::SaslLogin {
                mechanism: *mechanism,
                user: user.clone(),
                password: password.trim_end_matches(['\n', '\r']).to_string(),
                entropy: Arc::new(crate::security::runtime::SystemEntropy),
            })
        }
        _ => None,
    };
    Ok(crate::kafka_client::ClientSecurity { tls, sasl })
}

/// A name for this data dir, kept in it: a broker that comes back with
/// another disk is told apart from the one that left. Also whether the dir
/// holds no data yet (no name, no topics).
fn data_dir_id(data_dir: &std::path::Path) -> anyhow::Result<(String, bool)> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("dir-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok((id.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let empty = std::fs::read_dir(data_dir.join("topics")).map_or(true, |mut d| d.next().is_none());
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = data_dir.join("dir-id.tmp");
    std::fs::write(&tmp, &id)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    crate::log::sync_dir(data_dir)?;
    Ok((id, empty))
}
