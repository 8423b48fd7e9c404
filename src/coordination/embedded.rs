//! Single-node coordination: the cluster state in one JSON file under the
//! data dir, replaced atomically (write, fsync, rename, fsync dir). Writes are
//! rare (topic changes, producer-id blocks, starts), so rewriting the whole
//! file is fine; many topics created at once are one write (`put_topics`).
//! The write runs on a blocking thread, one change at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use prometheus_client::metrics::counter::Counter;

use serde::{Deserialize, Serialize};

use super::{BoxFuture, CoordinationError, Coordinator, TopicRecord};
use crate::security::state::{SecurityChange, SecurityState};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    topics: Vec<TopicRecord>,
    #[serde(default)]
    next_producer_id: i64,
    #[serde(default)]
    broker_epoch: i32,
    /// ACLs and SCRAM credentials (salted and hashed).
    #[serde(default)]
    security: SecurityState,
    /// Grows with every change.
    #[serde(default)]
    version: u64,
}

pub struct EmbeddedCoordinator {
    path: PathBuf,
    /// The state as last written: readers never wait for a write.
    state: Arc<Mutex<State>>,
    /// Serialises changes. The blocking task that writes the file holds it
    /// (an owned guard), so even a change whose caller gave up finishes,
    /// file and memory, before the next change reads the state.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Counts durable writes of the state (`sediment_coordination_writes`).
    writes: Counter,
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
            state: Arc::new(Mutex::new(state)),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            writes: Counter::default(),
        })
    }

    /// Counts every durable write of the state in `writes`.
    pub fn with_writes_counter(mut self, writes: Counter) -> Self {
        self.writes = writes;
        self
    }

    /// Applies `change` to a copy of the state, writes the copy durably on
    /// a blocking thread, and only then makes it the state and returns.
    async fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> Result<T, CoordinationError> {
        let turn = self.turn.clone().lock_owned().await;
        let mut next = self.state.lock().clone();
        let out = change(&mut next);
        next.version += 1;
        let path = self.path.clone();
        let state = self.state.clone();
        let writes = self.writes.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let bytes = serde_json::to_vec_pretty(&next).map_err(|e| CoordinationError::Corrupt(e.to_string()))?;
            write_atomically(&path, &bytes)?;
            writes.inc();
            *state.lock() = next;
            Ok::<(), CoordinationError>(())
        })
        .await
        .map_err(|e| CoordinationError::Io(std::io::Error::other(format!("cluster state write failed: {e}"))))??;
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
        let guard = self.state.lock();
        Some((guard.version, serde_json::to_vec_pretty(&*guard).ok()?))
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicRecord>, CoordinationError>> {
        Box::pin(async move { Ok(self.state.lock().topics.clone()) })
    }

    fn put_topics(&self, topics: Vec<TopicRecord>) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move {
            self.update(move |s| {
                // A name given twice: the later record wins.
                let mut names = std::collections::HashSet::new();
                let mut fresh: Vec<TopicRecord> = topics.into_iter().rev().filter(|t| names.insert(t.name.clone())).collect();
                fresh.reverse();
                s.topics.retain(|t| !names.contains(&t.name));
                s.topics.extend(fresh);
            })
            .await
        })
    }

    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<(), CoordinationError>> {
        Box::pin(async move { self.update(|s| s.topics.retain(|t| t.name != name)).await })
    }

    fn allocate_producer_ids(&self, count: i64) -> BoxFuture<'_, Result<i64, CoordinationError>> {
        Box::pin(async move {
            self.update(|s| {
                let first = s.next_producer_id;
                s.next_producer_id += count;
                first
            })
            .await
        })
    }

    fn security(&self) -> BoxFuture<'_, Result<(u64, SecurityState), CoordinationError>> {
        Box::pin(async move {
            let state = self.state.lock();
            Ok((state.version, state.security.clone()))
        })
    }

    fn change_security(&self, change: SecurityChange) -> BoxFuture<'_, Result<(u64, SecurityState), CoordinationError>> {
        Box::pin(async move {
            let (version, security) = self
                .update(|state| {
                    state.security.apply(&change);
                    // `update` counts this change after the closure.
                    (state.version + 1, state.security.clone())
                })
                .await?;
            Ok((version, security))
        })
    }

    fn register_start(&self, _broker_id: i32) -> BoxFuture<'_, Result<i32, CoordinationError>> {
        Box::pin(async move {
            self.update(|s| {
                s.broker_epoch += 1;
                s.broker_epoch
            })
            .await
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
            assignment: Vec::new(),
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

    fn record(name: &str, partitions: i32) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: format!("id-{name}"),
            partitions,
            configs: Default::default(),
            assignment: Vec::new(),
        }
    }

    fn version(coordinator: &EmbeddedCoordinator) -> u64 {
        coordinator.snapshot().unwrap().0
    }

    #[tokio::test]
    async fn put_topics_records_many_topics_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let writes = Counter::default();
        let coordinator = EmbeddedCoordinator::open(dir.path()).unwrap().with_writes_counter(writes.clone());
        coordinator.put_topic(record("kept", 1)).await.unwrap();
        assert_eq!(writes.get(), 1);
        let mut batch: Vec<TopicRecord> = (0..3000).map(|i| record(&format!("t{i}"), 1)).collect();
        // An existing name is replaced, and a name given twice keeps its
        // later record.
        batch.push(record("kept", 4));
        batch.push(record("t7", 9));
        coordinator.put_topics(batch).await.unwrap();
        assert_eq!(writes.get(), 2, "one write for the whole batch");
        assert_eq!(version(&coordinator), 2);
        drop(coordinator);
        let coordinator = EmbeddedCoordinator::open(dir.path()).unwrap();
        let topics = coordinator.topics().await.unwrap();
        assert_eq!(topics.len(), 3001);
        let find = |name: &str| topics.iter().find(|t| t.name == name).map(|t| t.partitions);
        assert_eq!(find("kept"), Some(4));
        assert_eq!(find("t7"), Some(9));
        assert_eq!(find("t2999"), Some(1));
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let writes = Counter::default();
        let coordinator = EmbeddedCoordinator::open(dir.path()).unwrap().with_writes_counter(writes.clone());
        coordinator.put_topic(record("kept", 1)).await.unwrap();
        // The temporary file cannot be created where a directory stands.
        std::fs::create_dir(dir.path().join("cluster.tmp")).unwrap();
        assert!(coordinator.put_topics(vec![record("a", 1), record("b", 1)]).await.is_err());
        assert_eq!(coordinator.topics().await.unwrap(), vec![record("kept", 1)]);
        assert_eq!(version(&coordinator), 1);
        assert_eq!(writes.get(), 1);
        std::fs::remove_dir(dir.path().join("cluster.tmp")).unwrap();
        coordinator.put_topics(vec![record("a", 1)]).await.unwrap();
        assert_eq!(coordinator.topics().await.unwrap().len(), 2);
        assert_eq!(version(&coordinator), 2, "the failed change left no gap in the versions");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_are_serialised_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = Arc::new(EmbeddedCoordinator::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let c = coordinator.clone();
            tasks.push(tokio::spawn(async move {
                c.put_topic(record(&format!("t{i}"), 1)).await.unwrap();
                c.allocate_producer_ids(10).await.unwrap()
            }));
        }
        let mut firsts = Vec::new();
        for task in tasks {
            firsts.push(task.await.unwrap());
        }
        firsts.sort_unstable();
        assert_eq!(
            firsts,
            (0..40).map(|i| i * 10).collect::<Vec<i64>>(),
            "no producer id handed out twice"
        );
        assert_eq!(coordinator.topics().await.unwrap().len(), 40);
        assert_eq!(version(&coordinator), 80);
        drop(coordinator);
        let reopened = EmbeddedCoordinator::open(dir.path()).unwrap();
        assert_eq!(reopened.topics().await.unwrap().len(), 40);
        assert_eq!(version(&reopened), 80);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_whose_caller_gave_up_still_completes_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = EmbeddedCoordinator::open(dir.path()).unwrap();
        let batch: Vec<TopicRecord> = (0..2000).map(|i| record(&format!("t{i}"), 1)).collect();
        {
            // Polled until its write is under way, then dropped.
            let mut change = coordinator.put_topics(batch);
            let _ = futures::poll!(&mut change);
        }
        coordinator.put_topic(record("after", 1)).await.unwrap();
        drop(coordinator);
        let reopened = EmbeddedCoordinator::open(dir.path()).unwrap();
        assert_eq!(reopened.topics().await.unwrap().len(), 2001);
        assert_eq!(version(&reopened), 2);
    }
}
