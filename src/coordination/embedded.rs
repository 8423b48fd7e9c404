//! Single-node coordination: the cluster state in one JSON file under the
//! data dir, replaced atomically (write, fsync, rename, fsync dir). Writes are
//! rare (topic changes, producer-id blocks, starts), so rewriting the whole
//! file is fine.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{BoxFuture, CoordinationError, Coordinator, TopicRecord};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    topics: Vec<TopicRecord>,
    #[serde(default)]
    next_producer_id: i64,
    #[serde(default)]
    broker_epoch: i32,
    /// Grows with every change.
    #[serde(default)]
    version: u64,
}

pub struct EmbeddedCoordinator {
    path: PathBuf,
    state: Mutex<State>,
}

impl EmbeddedCoordinator {
    pub fn open(meta_dir: &Path) -> Result<Self, CoordinationError> {
        std::fs::create_dir_all(meta_dir)?;
        let path = meta_dir.join("cluster.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CoordinationError::Corrupt(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    /// Applies `change` and persists the result before returning it.
    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> Result<T, CoordinationError> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| CoordinationError::Corrupt("state lock poisoned".into()))?;
        let mut next = guard.clone();
        let out = change(&mut next);
        next.version += 1;
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| CoordinationError::Corrupt(e.to_string()))?;
        write_atomically(&self.path, &bytes)?;
        *guard = next;
        Ok(out)
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl EmbeddedCoordinator {
    /// Writes `bytes` (a snapshot from the archive) as the local state, for a
    /// broker starting on an empty data dir. Refuses to overwrite.
    pub fn restore(meta_dir: &Path, bytes: &[u8]) -> Result<(), CoordinationError> {
        serde_json::from_slice::<State>(bytes).map_err(|e| CoordinationError::Corrupt(format!("archived cluster state: {e}")))?;
        std::fs::create_dir_all(meta_dir)?;
        let path = meta_dir.join("cluster.json");
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)?;
        Ok(())
    }

    pub fn has_state(meta_dir: &Path) -> bool {
        meta_dir.join("cluster.json").exists()
    }
}

impl Coordinator for EmbeddedCoordinator {
    fn snapshot(&self) -> Option<(u64, Vec<u8>)> {
        let guard = self.state.lock().ok()?;
        Some((guard.version, serde_json::to_vec_pretty(&*guard).ok()?))
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicRecord>, CoordinationError>> {
        Box::pin(async move {
            let guard = self
                .state
                .lock()
                .map_err(|_| CoordinationError::Corrupt("state lock poisoned".into()))?;
            Ok(guard.topics.clone())
        })
    }

    fn put_topic(&self, topic: TopicRecord) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move {
            self.update(|s| {
                s.topics.retain(|t| t.name != topic.name);
                s.topics.push(topic);
            })
        })
    }

    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move { self.update(|s| s.topics.retain(|t| t.name != name)) })
    }

    fn allocate_producer_ids(&self, count: i64) -> BoxFuture<'_, Result<i64, CoordinationError>> {
        Box::pin(async move {
            self.update(|s| {
                let first = s.next_producer_id;
                s.next_producer_id += count;
                first
            })
        })
    }

    fn register_start(&self, _broker_id: i32) -> BoxFuture<'_, Result<i32, CoordinationError>> {
        Box::pin(async move {
            self.update(|s| {
                s.broker_epoch += 1;
                s.broker_epoch
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = EmbeddedCoordinator::open(dir.path()).unwrap();
        let topic = TopicRecord {
            name: "orders".into(),
            id: "x".into(),
            partitions: 3,
            configs: Default::default(),
        };
        coordinator.put_topic(topic.clone()).await.unwrap();
        assert_eq!(coordinator.allocate_producer_ids(1000).await.unwrap(), 0);
        assert_eq!(coordinator.register_start(0).await.unwrap(), 1);
        drop(coordinator);
        let coordinator = EmbeddedCoordinator::open(dir.path()).unwrap();
        assert_eq!(coordinator.topics().await.unwrap(), vec![topic]);
        assert_eq!(coordinator.allocate_producer_ids(1000).await.unwrap(), 1000);
        assert_eq!(coordinator.register_start(0).await.unwrap(), 2);
        coordinator.delete_topic("orders".into()).await.unwrap();
        assert!(coordinator.topics().await.unwrap().is_empty());
    }
}
