//! The composition root: builds the coordinator, broker, listeners and HTTP
//! server from a `Config`, and owns shutdown.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::archive::Archive;
use crate::broker::Broker;
use crate::config::Config;
use crate::coordination::embedded::EmbeddedCoordinator;
use crate::coordination::Coordinator;
use crate::metrics::Metrics;
use crate::tasks::Tasks;

/// Runs a broker until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    raise_open_file_limit();
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    // Two brokers on one data dir would corrupt each other's logs.
    let lock = std::fs::File::create(config.data_dir.join(".lock")).context("cannot create the data dir lock file")?;
    lock.try_lock()
        .map_err(|_| anyhow::anyhow!("data dir {} is in use by another sediment process", config.data_dir.display()))?;
    let mut listeners = Vec::new();
    for l in config.effective_listeners() {
        if l.listen.ip().is_unspecified() && l.advertise.is_none() {
            tracing::warn!(listener = %l.name, listen = %l.listen, "listening on all interfaces without an advertised address: clients will be told to connect to {}", l.listen);
        }
        let bound = TcpListener::bind(l.listen)
            .await
            .with_context(|| format!("cannot listen on {} (listener {})", l.listen, l.name))?;
        listeners.push(bound);
    }
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (http)", config.http_listen))?;
    run_on(config, listeners, http_listener, shutdown).await
}

/// Runs a broker on listeners bound by the caller (a test, or later a
/// simulation, builds a whole broker in-process this way) until `shutdown`
/// completes: one bound socket per `config.effective_listeners()`, in order.
/// The data dir must already be locked by the caller or unused.
pub async fn run_on(
    config: Config,
    listeners: Vec<TcpListener>,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let archive_url = config.archive_url();
    let metrics = Arc::new(Metrics::new());
    let (endpoints, mut certificates) = endpoints(&config, listeners)?;
    let entropy: Arc<dyn crate::security::runtime::Entropy> = Arc::new(crate::security::runtime::SystemEntropy);
    let security =
        Arc::new(crate::security::runtime::Security::new(&config.auth, entropy, metrics.clone()).map_err(|e| anyhow::anyhow!(e))?);
    let token = match &config.http_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read http_token_file {}", path.display()))?;
            let token = text.trim().to_string();
            anyhow::ensure!(
                token.len() >= 16,
                "the token in http_token_file {} must be at least 16 characters",
                path.display()
            );
            Some(token)
        }
        None => None,
    };
    let http_state = Arc::new(crate::http::HttpState {
        metrics: metrics.clone(),
        broker: OnceLock::new(),
        token,
    });
    let (stop_tx, http_stop) = tokio::sync::watch::channel(false);
    let (http_task, http_certificate) = serve_http(&config, http_listener, http_state.clone(), http_stop)?;
    // The HTTP server answers /healthz (and /readyz with 503) while the
    // archive is consulted and the logs recover.
    let store = crate::archive::store::open(&archive_url)?;
    // Background work and connections are owned here and stopped here, in
    // order: connections drain first (their acknowledgements need the
    // flushers), then background work stops, then the final flush.
    let background = Tasks::new();
    let connections = Tasks::new();
    let (coordinator, cluster): (Arc<dyn Coordinator>, _) = if config.etcd.is_some() {
        // A cluster: topics and partition states live in etcd.
        let (coordinator, link) = crate::cluster::join(&config, &background).await?;
        restore_lost_etcd(store.as_ref(), &coordinator, &link, &archive_url).await?;
        (coordinator, Some(link))
    } else {
        let meta_dir = config.data_dir.join("meta");
        if !EmbeddedCoordinator::has_state(&meta_dir) {
            restore_cluster_state(store.as_ref(), &meta_dir, &archive_url).await?;
        }
        let embedded = EmbeddedCoordinator::open(&meta_dir)?.with_writes_counter(metrics.coordination_writes.clone());
        (Arc::new(embedded), None)
    };
    let archive = Arc::new(Archive::new(
        store,
        archive_url,
        config.data_dir.join("cache"),
        config.cache_bytes,
        metrics.clone(),
        background.clone(),
    )?);
    let broker = Broker::open(
        config,
        coordinator,
        cluster.clone(),
        archive,
        metrics,
        security,
        background.clone(),
        connections.draining(),
    )
    .await?;
    let iceberg = iceberg_committer(&broker);
    background.spawn(crate::tiering::run(broker.clone(), iceberg));
    background.spawn(crate::cleaner::run(broker.clone()));
    certificates.extend(http_certificate);
    if !certificates.is_empty() {
        background.spawn(reload_certificates(certificates, broker.metrics.clone()));
    }
    if let Some(link) = cluster {
        background.spawn(follow_security(broker.clone(), link.image.clone()));
        link.offsets.attach(&broker);
        link.transactions.attach(&broker);
        background.spawn(crate::cluster::replicas::run(broker.clone(), link, background.clone()));
    }
    let _ = http_state.broker.set(broker.clone());
    let served: Vec<String> = broker
        .config
        .effective_listeners()
        .iter()
        .map(|l| format!("{}://{} ({})", l.name, l.listen, l.protocol))
        .collect();
    tracing::info!(
        archive = %broker.archive.url,
        listeners = ?served,
        authorizer = broker.security.authorizer_enabled(),
        http = %broker.config.http_listen,
        data_dir = %broker.config.data_dir.display(),
        broker_id = broker.config.broker_id,
        leader_epoch = broker.leader_epoch,
        "sediment is serving"
    );
    tokio::select! {
        _ = crate::server::run(endpoints, broker.clone(), connections.clone()) => {}
        _ = shutdown => {}
    }
    let grace = std::time::Duration::from_millis(broker.config.shutdown_timeout_ms);
    if let Some(cluster) = &broker.cluster {
        // Leaderships move while connections still answer, so clients are
        // told where the partitions went rather than cut off.
        cluster.leave(grace / 2).await;
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections; finishing requests under way"
    );
    let drained = connections.shutdown(grace).await;
    if drained.cancelled > 0 {
        tracing::warn!(
            connections = drained.cancelled,
            "connections still busy after shutdown_timeout_ms were cut"
        );
    }
    background.shutdown(std::time::Duration::ZERO).await;
    tracing::info!("shutting down: flushing logs");
    for topic in broker.topics() {
        for partition in topic.partitions() {
            partition.flush(&broker.metrics).await;
        }
    }
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    Ok(())
}

/// Serves the admin HTTP port (HTTPS with `http_tls_cert`) until `stop` says so.
fn serve_http(
    config: &Config,
    listener: TcpListener,
    state: Arc<crate::http::HttpState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<std::io::Result<()>>, Certificates)> {
    let router = crate::http::router(state);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Ok(match (&config.http_tls_cert, &config.http_tls_key) {
        (Some(cert), Some(key)) => {
            let (server, reloading) =
                crate::security::tls::server_config(cert, key, None).map_err(|e| anyhow::anyhow!("admin HTTP: {e}"))?;
            let timeout = std::time::Duration::from_millis(config.auth.tls_handshake_timeout_ms);
            let listener = crate::http::tls::TlsListener::new(listener, tokio_rustls::TlsAcceptor::from(server), timeout)?;
            let http = axum::serve(listener, router).with_graceful_shutdown(stopped);
            (tokio::spawn(async move { http.await }), vec![("HTTP".to_string(), reloading)])
        }
        _ => {
            let http = axum::serve(listener, router).with_graceful_shutdown(stopped);
            (tokio::spawn(async move { http.await }), Vec::new())
        }
    })
}

type Endpoints = Vec<(TcpListener, Arc<crate::server::Endpoint>)>;
type Certificates = Vec<(String, Arc<crate::security::tls::ReloadingCert>)>;

/// Pairs each bound socket with its listener's security: its TLS
/// configuration (certificates loaded now, so a bad file stops the start
/// with its reason) and SASL mechanisms. Warns about plain text off loopback.
fn endpoints(config: &Config, sockets: Vec<TcpListener>) -> anyhow::Result<(Endpoints, Certificates)> {
    use crate::security::sasl::ListenerSecurity;
    let listeners = config.effective_listeners();
    anyhow::ensure!(
        listeners.len() == sockets.len(),
        "{} listeners configured but {} sockets bound",
        listeners.len(),
        sockets.len()
    );
    let mut endpoints = Vec::new();
    let mut certificates = Vec::new();
    for (l, socket) in listeners.into_iter().zip(sockets) {
        if l.is_open_to_the_network() {
            tracing::warn!(listener = %l.name, listen = %l.listen, "listener serves PLAINTEXT beyond loopback: anyone who reaches it can read, write and delete every topic; configure SSL or SASL (docs/security.md)");
        }
        let tls = match (&l.tls_cert, &l.tls_key) {
            (Some(cert), Some(key)) if l.protocol.tls() => {
                let (server, reloading) = crate::security::tls::server_config(cert, key, l.tls_client_ca.as_deref())
                    .map_err(|e| anyhow::anyhow!("listener {}: {e}", l.name))?;
                certificates.push((l.name.clone(), reloading));
                Some(tokio_rustls::TlsAcceptor::from(server))
            }
            _ => None,
        };
        let security = Arc::new(ListenerSecurity {
            name: l.name.clone(),
            protocol: l.protocol,
            mechanisms: l.mechanisms(),
        });
        endpoints.push((socket, Arc::new(crate::server::Endpoint { security, tls })));
    }
    Ok((endpoints, certificates))
}

/// How often listener certificate files are checked for a change.
const CERTIFICATE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves new certificates once their files change (rotation without a
/// restart). A pair that does not load keeps the old one, with a WARN.
async fn reload_certificates(certificates: Certificates, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (listener, cert) in &certificates {
            let checking = cert.clone();
            match tokio::task::spawn_blocking(move || checking.reload_if_changed()).await {
                Ok(Ok(true)) => {
                    metrics.tls_certificate_reloads.inc();
                    tracing::info!(listener, cert = %cert.cert_path().display(), "serving a new TLS certificate");
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(listener, error = %e, "cannot load the changed TLS certificate; still serving the previous one")
                }
                Err(e) => tracing::warn!(listener, error = %e, "certificate check failed"),
            }
        }
    }
}

/// Cluster: puts ACL, credential and quota changes other brokers made in
/// force here, as etcd's watch delivers them.
async fn follow_security(
    broker: Arc<Broker>,
    mut image: tokio::sync::watch::Receiver<Arc<crate::coordination::etcd::image::ClusterImage>>,
) {
    let mut last = (Default::default(), Default::default(), Default::default());
    loop {
        let current = image.borrow_and_update().clone();
        if (&current.acls, &current.scram, &current.quotas) != (&last.0, &last.1, &last.2) {
            broker.security.install(current.revision.max(0) as u64, current.security());
            last = (current.acls.clone(), current.scram.clone(), current.quotas.clone());
        }
        if image.changed().await.is_err() {
            return;
        }
    }
}

/// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit,
/// as Kafka's operators expect: each partition's active segment holds a
/// descriptor, and so does each connection. Logs both limits.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit still stops at the kernel's fs.nr_open.
    let hard = limit.maximum.or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    match (limit.current, hard) {
        (Some(soft), Some(target)) if soft < target => {
            let raised = Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::info!(soft, hard = %show(limit.maximum), raised_to = target, "raised the open-file limit to the hard limit")
                }
                Err(e) => tracing::warn!(soft, hard = %show(limit.maximum), error = %e, "cannot raise the open-file limit"),
            }
        }
        _ => tracing::info!(soft = %show(limit.current), hard = %show(limit.maximum), "open-file limit"),
    }
}

/// A cluster whose etcd holds nothing for it (it lost etcd: a new, empty
/// one) takes its topics, partition states and producer-id counter from the
/// newest copy the controller left in the archive. Nothing there means a new
/// cluster. Several brokers may race here; every key is written only if
/// absent.
async fn restore_lost_etcd(
    store: &dyn object_store::ObjectStore,
    coordinator: &crate::coordination::etcd::EtcdCoordinator,
    link: &crate::cluster::ClusterLink,
    url: &str,
) -> anyhow::Result<()> {
    use crate::archive::layout;
    use object_store::ObjectStoreExt;
    let image = link.image();
    if !image.topics.is_empty() || !image.partitions.is_empty() || image.producer_ids_next > 0 {
        return Ok(());
    }
    let Some((version, key)) = newest_copy_patiently(store, &layout::etcd_prefix(), url).await else {
        return Ok(());
    };
    let bytes = store.get(&key).await?.bytes().await?;
    let copy: crate::coordination::etcd::copy::ClusterCopy =
        serde_json::from_slice(&bytes).with_context(|| format!("the cluster copy {key} in the archive is unreadable"))?;
    if copy.topics.is_empty() {
        return Ok(());
    }
    let restored = coordinator.restore(&copy).await?;
    tracing::warn!(
        archive = url,
        version,
        topics = copy.topics.len(),
        restored,
        "etcd held nothing for this cluster: restored its topics and partition states from the archive's copy"
    );
    Ok(())
}

/// The newest versioned copy under `prefix` in the archive, retried (with
/// a WARN) while the archive does not answer: deciding there is none while
/// the store is down could start a cluster over its own history.
async fn newest_copy_patiently(
    store: &dyn object_store::ObjectStore,
    prefix: &object_store::path::Path,
    url: &str,
) -> Option<(u64, object_store::path::Path)> {
    let mut attempt = 0;
    loop {
        match crate::archive::layout::newest_version(store, prefix).await {
            Ok(newest) => return newest,
            Err(e) => {
                tracing::warn!(archive = url, prefix = %prefix, error = %e, attempt, "cannot list the archive for a saved copy; retrying");
                tokio::time::sleep(crate::archive::backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// A broker on an empty data dir takes its topics from the newest copy of
/// the cluster state in the archive (written by the uploader). Nothing there
/// means a new cluster. Retries while the archive does not answer: starting
/// without it could reuse offsets the archive already holds.
async fn restore_cluster_state(store: &dyn object_store::ObjectStore, meta_dir: &std::path::Path, url: &str) -> anyhow::Result<()> {
    use crate::archive::layout;
    use object_store::ObjectStoreExt;
    let Some((version, key)) = newest_copy_patiently(store, &layout::cluster_prefix(), url).await else {
        tracing::info!(archive = url, "no cluster state in the archive: starting a new cluster");
        return Ok(());
    };
    let bytes = store.get(&key).await?.bytes().await?;
    EmbeddedCoordinator::restore(meta_dir, &bytes)?;
    tracing::info!(archive = url, version, "restored cluster state from the archive");
    // The consumer groups' committed offsets, copied beside it.
    if let Some((version, key)) = layout::newest_version(store, &layout::offsets_prefix()).await? {
        let bytes = store.get(&key).await?.bytes().await?;
        crate::groups::offsets::OffsetStore::restore(meta_dir, &bytes)?;
        tracing::info!(archive = url, version, "restored committed offsets from the archive");
    }
    Ok(())
}

/// The committer of the topics' Iceberg tables, named after this broker
/// process so that its files never collide with another broker's.
fn iceberg_committer(broker: &Arc<Broker>) -> crate::iceberg::table::Committer {
    let c = &broker.config;
    let retention = crate::iceberg::schema::Retention {
        max_snapshot_age_ms: c.iceberg_snapshot_max_age_ms,
        min_snapshots_to_keep: c.iceberg_min_snapshots_to_keep,
        max_snapshots: c.iceberg_max_snapshots,
        previous_versions_max: c.iceberg_metadata_previous_versions_max,
        min_manifests_to_merge: c.iceberg_min_manifests_to_merge,
    };
    crate::iceberg::table::Committer::new(
        broker.archive.store.clone(),
        broker.archive.url.clone(),
        format!("b{}-{}", c.broker_id, crate::clock::now_ms()),
        retention,
        broker.metrics.clone(),
    )
}
