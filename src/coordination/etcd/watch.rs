//! Keeps a `ClusterImage` current: list the cluster's keys, then watch them
//! from the listed revision + 1. The crate does not resume a watch, so any
//! end of the stream (etcd restarted, the connection died, the watch was
//! cancelled or its revision compacted away) starts over with a fresh list:
//! nothing between two revisions is ever missed.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use super::image::{Change, ClusterImage};
use super::{EtcdError, Keys};

/// Publishes the image of `cluster` on `publish` until its task is cancelled.
pub async fn follow_image(client: Client, cluster: String, publish: watch::Sender<Arc<ClusterImage>>) {
    let keys = Keys::new(&cluster);
    let mut attempt = 0u32;
    loop {
        let mut client = client.clone();
        match follow_once(&mut client, &keys, &publish).await {
            // A cancelled or compacted watch: list again at once.
            Ok(()) => attempt = 0,
            Err(e) => {
                tracing::warn!(cluster = %cluster, error = %e, attempt, "cluster watch interrupted; listing again");
                tokio::time::sleep(Duration::from_millis(200u64 << attempt.min(5))).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

async fn follow_once(client: &mut Client, keys: &Keys, publish: &watch::Sender<Arc<ClusterImage>>) -> Result<(), EtcdError> {
    let listed = client.get(keys.root(), Some(GetOptions::new().with_prefix())).await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let mut image = ClusterImage::default();
    for kv in listed.kvs() {
        image.apply(
            keys,
            &Change {
                key: kv.key_str()?,
                value: Some(kv.value()),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
            },
        );
    }
    image.revision = revision;
    publish.send_replace(Arc::new(image.clone()));
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_progress_notify();
    let mut stream = client.watch(keys.root(), Some(options)).await?;
    loop {
        let Some(response) = stream.message().await? else {
            return Err(EtcdError::WatchEnded);
        };
        if response.canceled() || response.compact_revision() > 0 {
            tracing::warn!(
                compact_revision = response.compact_revision(),
                reason = response.cancel_reason(),
                "cluster watch cancelled; listing again"
            );
            return Ok(());
        }
        if response.events().is_empty() {
            continue;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let value = match event.event_type() {
                EventType::Put => Some(kv.value()),
                EventType::Delete => None,
            };
            image.apply(
                keys,
                &Change {
                    key: kv.key_str()?,
                    value,
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                },
            );
        }
        publish.send_replace(Arc::new(image.clone()));
    }
}
