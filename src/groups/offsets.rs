//! Committed consumer offsets: an in-memory table backed by an append-only
//! JSON-lines file that is fsynced before a commit is acknowledged, and
//! compacted (rewritten atomically) at startup.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// One line of the offsets file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        value: CommittedOffset,
    },
    Delete {
        group: String,
        topic: String,
        partition: i32,
    },
    DeleteGroup {
        group: String,
    },
}

type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

pub struct OffsetStore {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    table: Mutex<HashMap<String, GroupOffsets>>,
    /// Grows with every change (milliseconds-based, so it also grows across
    /// restarts): the archive keeps copies by it.
    version: std::sync::atomic::AtomicU64,
}

/// The table as JSON lines, one committed offset a line.
fn compact(table: &HashMap<String, GroupOffsets>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (group, offsets) in table {
        for ((topic, partition), value) in offsets {
            let entry = Entry::Commit {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: value.clone(),
            };
            serde_json::to_writer(&mut out, &entry).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
    }
    Ok(out)
}

fn apply(table: &mut HashMap<String, GroupOffsets>, entry: Entry) {
    match entry {
        Entry::Commit {
            group,
            topic,
            partition,
            value,
        } => {
            table.entry(group).or_default().insert((topic, partition), value);
        }
        Entry::Delete { group, topic, partition } => {
            if let Some(g) = table.get_mut(&group) {
                g.remove(&(topic, partition));
            }
        }
        Entry::DeleteGroup { group } => {
            table.remove(&group);
        }
    }
}

impl OffsetStore {
    pub fn open(meta_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(meta_dir)?;
        let path = meta_dir.join("offsets.jsonl");
        let mut table = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    // A torn last line (crash mid-write) was never acknowledged.
                    match serde_json::from_str::<Entry>(line) {
                        Ok(entry) => apply(&mut table, entry),
                        Err(e) => tracing::warn!(error = %e, "skipping an unreadable committed-offset line"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Compact: the current table, one line per offset.
        let compacted = compact(&table)?;
        crate::coordination::embedded::write_atomically(&path, &compacted)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            path,
            file: Arc::new(Mutex::new(file)),
            table: Mutex::new(table),
            version: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn persist(&self, entries: Vec<Entry>) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for entry in &entries {
            serde_json::to_writer(&mut bytes, entry).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
        }
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().map_err(|_| std::io::Error::other("offsets file lock poisoned"))?;
            let before = file.metadata()?.len();
            let written = file.write_all(&bytes).and_then(|()| file.sync_data());
            if written.is_err() {
                // Cut a partial line off so the next commit starts on a
                // line of its own and stays readable after a restart.
                let _ = file.set_len(before);
            }
            written
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut table = self.table.lock().map_err(|_| std::io::Error::other("offsets lock poisoned"))?;
        for entry in entries {
            apply(&mut table, entry);
        }
        let now = crate::clock::now_ms().max(0) as u64;
        self.version.fetch_max(now, std::sync::atomic::Ordering::AcqRel);
        self.version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// The whole table with its version, for a copy in the archive; `None`
    /// before the first change of this run.
    pub fn snapshot(&self) -> Option<(u64, Vec<u8>)> {
        let version = self.version.load(std::sync::atomic::Ordering::Acquire);
        if version == 0 {
            return None;
        }
        let table = self.table.lock().ok()?;
        Some((version, compact(&table).ok()?))
    }

    /// Writes `bytes` (a copy from the archive) as the offsets file of a
    /// broker starting on an empty data dir. Never overwrites.
    pub fn restore(meta_dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(meta_dir)?;
        let path = meta_dir.join("offsets.jsonl");
        if path.exists() {
            return Ok(());
        }
        crate::coordination::embedded::write_atomically(&path, bytes)
    }

    /// Durably records the offsets; visible to fetches once this returns.
    pub async fn commit(&self, group: &str, offsets: Vec<(String, i32, CommittedOffset)>) -> std::io::Result<()> {
        let entries = offsets
            .into_iter()
            .map(|(topic, partition, value)| Entry::Commit {
                group: group.to_string(),
                topic,
                partition,
                value,
            })
            .collect();
        self.persist(entries).await
    }

    pub async fn delete(&self, group: &str, partitions: Vec<(String, i32)>) -> std::io::Result<()> {
        let entries = partitions
            .into_iter()
            .map(|(topic, partition)| Entry::Delete {
                group: group.to_string(),
                topic,
                partition,
            })
            .collect();
        self.persist(entries).await
    }

    pub async fn delete_group(&self, group: &str) -> std::io::Result<()> {
        self.persist(vec![Entry::DeleteGroup { group: group.to_string() }]).await
    }

    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.table.lock().ok()?.get(group)?.get(&(topic.to_string(), partition)).cloned()
    }

    /// Every committed offset of a group.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        let Ok(table) = self.table.lock() else { return Vec::new() };
        table
            .get(group)
            .map(|g| g.iter().map(|((t, p), v)| (t.clone(), *p, v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn groups(&self) -> Vec<String> {
        self.table.lock().map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 0,
        }
    }

    #[tokio::test]
    async fn commits_survive_reopen_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        store
            .commit("g", vec![("t".into(), 0, value(5)), ("t".into(), 1, value(7))])
            .await
            .unwrap();
        store.commit("g", vec![("t".into(), 0, value(9))]).await.unwrap();
        store.commit("h", vec![("t".into(), 0, value(1))]).await.unwrap();
        store.delete_group("h").await.unwrap();
        let path = store.path().to_path_buf();
        drop(store);
        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"commit\",\"gro").unwrap();
        drop(f);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.fetch("g", "t", 0).unwrap().offset, 9);
        assert_eq!(store.fetch("g", "t", 1).unwrap().offset, 7);
        assert!(store.fetch("h", "t", 0).is_none());
        store.delete("g", vec![("t".into(), 1)]).await.unwrap();
        assert!(store.fetch("g", "t", 1).is_none());
    }

    #[tokio::test]
    async fn a_snapshot_restores_into_an_empty_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        assert!(store.snapshot().is_none(), "nothing changed yet");
        store.commit("g", vec![("t".into(), 2, value(42))]).await.unwrap();
        let (v1, bytes) = store.snapshot().unwrap();
        store.commit("g", vec![("t".into(), 2, value(43))]).await.unwrap();
        assert!(store.snapshot().unwrap().0 > v1, "versions grow");
        let fresh = tempfile::tempdir().unwrap();
        OffsetStore::restore(fresh.path(), &bytes).unwrap();
        let restored = OffsetStore::open(fresh.path()).unwrap();
        assert_eq!(restored.fetch("g", "t", 2).unwrap().offset, 42);
    }
}
