//! Committed consumer offsets: an in-memory table backed by an append-only
//! JSON-lines file that is fsynced before a commit is acknowledged, and
//! compacted (rewritten atomically) at startup and whenever it has grown to
//! twice its compacted size (see [`needs_compaction`]).
//!
//! Every change is appended to the file and then applied to the table under
//! one lock, in a blocking thread: the table that OffsetFetch reads and the
//! file that a restart replays see the changes in the same order, and a
//! caller that goes away mid-commit cannot leave one updated without the
//! other.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::expiry::{expired_partitions, Membership};

use crate::line_file::LineFile as Appender;
pub use crate::line_file::{needs_compaction, COMPACTION_FLOOR_BYTES};

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
    /// A cluster's TxnOffsetCommit: an offset held for the producer's
    /// transaction until its marker reaches the group's offsets partition.
    TxnStage {
        group: String,
        producer_id: i64,
        topic: String,
        partition: i32,
        value: CommittedOffset,
    },
    /// The producer's transaction ended: its held offsets of the group are
    /// let go (a commit writes them as `Commit`s just before).
    TxnEnd {
        group: String,
        producer_id: i64,
    },
}

impl Entry {
    fn group(&self) -> &str {
        match self {
            Entry::Commit { group, .. }
            | Entry::Delete { group, .. }
            | Entry::DeleteGroup { group }
            | Entry::TxnStage { group, .. }
            | Entry::TxnEnd { group, .. } => group,
        }
    }

    /// The record key in a cluster's compacted `__consumer_offsets`: a
    /// later record with the same key makes an earlier one needless, so
    /// the cleaner keeps what a replay needs (Kafka keys its records the
    /// same way: by group, topic and partition).
    fn compaction_key(&self) -> Vec<u8> {
        let key = match self {
            Entry::Commit {
                group, topic, partition, ..
            }
            | Entry::Delete { group, topic, partition } => serde_json::json!(["offset", group, topic, partition]),
            Entry::DeleteGroup { group } => serde_json::json!(["group", group]),
            Entry::TxnStage {
                group,
                producer_id,
                topic,
                partition,
                ..
            } => serde_json::json!(["held", group, producer_id, topic, partition]),
            Entry::TxnEnd { group, producer_id } => serde_json::json!(["ended", group, producer_id]),
        };
        key.to_string().into_bytes()
    }
}

/// One change as a cluster replicates it: the group (which places it),
/// its compaction key, and its JSON line.
pub struct ReplicatedChange {
    pub group: String,
    pub key: Vec<u8>,
    pub line: Vec<u8>,
}

fn replicated(entries: &[Entry]) -> std::io::Result<Vec<ReplicatedChange>> {
    entries
        .iter()
        .map(|e| {
            Ok(ReplicatedChange {
                group: e.group().to_string(),
                key: e.compaction_key(),
                line: serde_json::to_vec(e).map_err(std::io::Error::other)?,
            })
        })
        .collect()
}

/// Where a cluster makes committed-offset changes durable before they are
/// applied: the group's partition of the replicated offsets topic. The
/// local file is then a copy this broker rebuilds when it becomes a
/// group's coordinator (`OffsetStore::reload`).
pub trait OffsetReplicator: Send + Sync {
    /// Whether this broker coordinates `group` now (leads its partition and
    /// has loaded it).
    fn owns(&self, group: &str) -> bool;
    /// Makes the changes durable on the ISR of each group's partition; an
    /// error means some may not be.
    fn replicate(&self, changes: Vec<ReplicatedChange>) -> crate::coordination::BoxFuture<'_, std::io::Result<()>>;
    /// The lane (offsets partition) of a group: changes replicate in order
    /// within a lane, and lanes side by side.
    fn lane(&self, group: &str) -> i32;
    /// How many lanes there are (`lane` is below it).
    fn lanes(&self) -> i32;
}

pub(crate) type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;
type Table = HashMap<String, GroupOffsets>;
/// A cluster's transactional offsets not committed yet, by group and
/// producer id.
type HeldOffsets = HashMap<(String, i64), GroupOffsets>;

pub struct OffsetStore {
    path: PathBuf,
    appender: Arc<Mutex<Appender>>,
    /// Queues changes in async code, so that waiting commits park a task
    /// rather than a blocking thread each. A change's blocking task holds
    /// its turn to the end, even if the caller has gone, so changes land in
    /// the order their turns were taken.
    turn: Arc<tokio::sync::Mutex<()>>,
    table: Arc<Mutex<Table>>,
    /// Transactional offsets waiting for their transaction's end (a
    /// cluster only: a single node's wait in the transaction coordinator).
    held: Arc<Mutex<HeldOffsets>>,
    /// Grows with every change (milliseconds-based, so it also grows across
    /// restarts): the archive keeps copies by it.
    version: Arc<AtomicU64>,
    /// A cluster's replicated log of changes; unset on a single node.
    replicator: std::sync::OnceLock<Arc<dyn OffsetReplicator>>,
    /// A cluster: one turn per lane, held from a change's replication to its
    /// application, so one group's changes apply in the order they
    /// replicate while other lanes' commits do not wait for them.
    lanes: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
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

fn apply(table: &mut Table, held: &mut HeldOffsets, entry: Entry) {
    match entry {
        Entry::TxnStage {
            group,
            producer_id,
            topic,
            partition,
            value,
        } => {
            held.entry((group, producer_id)).or_default().insert((topic, partition), value);
        }
        Entry::TxnEnd { group, producer_id } => {
            held.remove(&(group, producer_id));
        }
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
                // A group left with no offsets is gone, as a replay of the
                // compacted log (which may have dropped its commits) sees it.
                if g.is_empty() {
                    table.remove(&group);
                }
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
        // Held offsets in the file are a cluster's, which loads them again
        // from `__consumer_offsets` when it coordinates their groups.
        let mut held = HeldOffsets::new();
        crate::line_file::read_lines(&path, "offsets.jsonl", |entry| apply(&mut table, &mut held, entry))?;
        // Compact: the current table, one line per offset.
        let appender = Appender::rewrite_and_open(&path, &compact(&table)?)?;
        Ok(Self {
            path,
            appender: Arc::new(Mutex::new(appender)),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            table: Arc::new(Mutex::new(table)),
            held: Arc::new(Mutex::new(HeldOffsets::new())),
            version: Arc::new(AtomicU64::new(0)),
            replicator: std::sync::OnceLock::new(),
            lanes: Mutex::new(HashMap::new()),
        })
    }

    /// In a cluster: every change is replicated through `replicator` before
    /// it is applied here.
    pub fn set_replicator(&self, replicator: Arc<dyn OffsetReplicator>) {
        let _ = self.replicator.set(replicator);
    }

    /// A coordinator taking over groups: forgets what this broker held for
    /// the groups `belongs` selects and applies `lines` (the replicated
    /// changes, in order) instead. A line that does not parse is skipped
    /// with a warning.
    pub async fn reload(&self, belongs: impl Fn(&str) -> bool + Send + 'static, lines: Vec<Bytes>) -> std::io::Result<usize> {
        let turn = self.turn.clone().lock_owned().await;
        self.held.lock().retain(|(group, _), _| !belongs(group));
        let applied = self
            .apply_durably(turn, move |table| {
                let mut entries: Vec<Entry> = table
                    .keys()
                    .filter(|g| belongs(g))
                    .map(|g| Entry::DeleteGroup { group: g.clone() })
                    .collect();
                for line in &lines {
                    match serde_json::from_slice::<Entry>(line) {
                        Ok(entry) if belongs(entry.group()) => entries.push(entry),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "skipping an unreadable replicated committed-offset record"),
                    }
                }
                entries
            })
            .await?;
        Ok(applied.len())
    }

    /// The same store with another compaction floor (tests use a small one).
    pub fn with_compaction_floor(self, floor_bytes: u64) -> Self {
        self.appender.lock().compaction_floor_bytes = floor_bytes;
        self
    }

    /// The offsets file's current length in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.appender.lock().file_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lane(&self, lane: i32) -> Arc<tokio::sync::Mutex<()>> {
        self.lanes.lock().entry(lane).or_default().clone()
    }

    /// Records the changes of one group (a commit, an offset deletion, a
    /// group deletion). In a cluster they replicate in the group's lane,
    /// then apply; a broker that no longer coordinates the group refuses
    /// them (the client finds the coordinator again).
    async fn persist(&self, entries: Vec<Entry>) -> std::io::Result<()> {
        let Some(replicator) = self.replicator.get().cloned() else {
            return self.persist_with(move |_| entries).await.map(|_| ());
        };
        let Some(group) = entries.first().map(|e| e.group().to_string()) else {
            return Ok(());
        };
        let _in_order = self.lane(replicator.lane(&group)).lock_owned().await;
        if !replicator.owns(&group) {
            return Err(std::io::Error::other(format!("this broker no longer coordinates group {group}")));
        }
        replicator.replicate(replicated(&entries)?).await?;
        let turn = self.turn.clone().lock_owned().await;
        self.apply_durably(turn, move |_| entries).await.map(|_| ())
    }

    /// Appends the entries `decide` returns, then applies them to the table,
    /// and compacts the file if it has grown enough. `decide` sees the table
    /// as it is when this change's turn comes, so a decision (such as which
    /// offsets expired) cannot be overtaken by a concurrent commit. The work
    /// runs to the end in a blocking thread even if the caller goes away.
    /// Returns the entries applied.
    async fn persist_with(&self, decide: impl FnOnce(&Table) -> Vec<Entry> + Send + 'static) -> std::io::Result<Vec<Entry>> {
        let Some(replicator) = self.replicator.get().cloned() else {
            let turn = self.turn.clone().lock_owned().await;
            return self.apply_durably(turn, decide).await;
        };
        // A cluster (expiry, across groups): every lane's turn, in order,
        // then the store's, so no commit lands between the decision and its
        // application. Decided now, replicated, then applied here. Changes to
        // groups this broker does not coordinate are dropped.
        let mut lanes = Vec::new();
        for lane in 0..replicator.lanes() {
            lanes.push(self.lane(lane).lock_owned().await);
        }
        let turn = self.turn.clone().lock_owned().await;
        let entries: Vec<Entry> = decide(&self.table.lock())
            .into_iter()
            .filter(|e| replicator.owns(e.group()))
            .collect();
        if entries.is_empty() {
            return Ok(entries);
        }
        replicator.replicate(replicated(&entries)?).await?;
        self.apply_durably(turn, move |_| entries).await
    }

    /// Appends the entries `decide` returns to the local file, then applies
    /// them to the table, in a blocking thread that holds `turn` to the end.
    async fn apply_durably(
        &self,
        turn: tokio::sync::OwnedMutexGuard<()>,
        decide: impl FnOnce(&Table) -> Vec<Entry> + Send + 'static,
    ) -> std::io::Result<Vec<Entry>> {
        let appender = self.appender.clone();
        let table = self.table.clone();
        let held = self.held.clone();
        let version = self.version.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut appender = appender.lock();
            let entries = decide(&table.lock());
            if entries.is_empty() {
                return Ok(entries);
            }
            let mut bytes = Vec::new();
            for entry in &entries {
                serde_json::to_writer(&mut bytes, entry).map_err(std::io::Error::other)?;
                bytes.push(b'\n');
            }
            appender.append(&bytes)?;
            let mut table = table.lock();
            let mut held = held.lock();
            for entry in &entries {
                apply(&mut table, &mut held, entry.clone());
            }
            drop(held);
            let now = crate::clock::now_ms().max(0) as u64;
            version.fetch_max(now, Ordering::AcqRel);
            version.fetch_add(1, Ordering::AcqRel);
            if appender.needs_compaction() {
                // Serialized under the table lock, written without it, so
                // OffsetFetch does not wait for the disk.
                let compacted = compact(&table);
                drop(table);
                // The change is durable already; a failed rewrite only
                // leaves the file longer than it needs to be.
                match compacted.and_then(|bytes| appender.rewrite(&bytes)) {
                    Ok(()) => tracing::info!(bytes = appender.file_bytes, "compacted the committed-offsets file"),
                    Err(e) => tracing::warn!(error = %e, "cannot compact the committed-offsets file"),
                }
            }
            Ok(entries)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Deletes the offsets that retention has expired (see
    /// [`expired_partitions`]), deciding under the append lock so that a
    /// commit landing meanwhile is never deleted. `membership` holds the
    /// groups with membership state in memory; the others only have offsets.
    /// Returns the groups left with no offsets.
    pub async fn expire(&self, now_ms: i64, retention_ms: i64, membership: HashMap<String, Membership>) -> std::io::Result<Vec<String>> {
        let applied = self
            .persist_with(move |table| {
                let mut entries = Vec::new();
                for (group, offsets) in table {
                    let expired = expired_partitions(offsets, membership.get(group).copied(), now_ms, retention_ms);
                    if expired.len() == offsets.len() && !expired.is_empty() {
                        entries.push(Entry::DeleteGroup { group: group.clone() });
                    } else {
                        entries.extend(expired.into_iter().map(|(topic, partition)| Entry::Delete {
                            group: group.clone(),
                            topic,
                            partition,
                        }));
                    }
                }
                entries
            })
            .await?;
        Ok(applied
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::DeleteGroup { group } => Some(group),
                _ => None,
            })
            .collect())
    }

    /// The whole table with its version, for a copy in the archive; `None`
    /// before the first change of this run.
    pub fn snapshot(&self) -> Option<(u64, Vec<u8>)> {
        let version = self.version.load(Ordering::Acquire);
        if version == 0 {
            return None;
        }
        let table = self.table.lock();
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

    /// A cluster's TxnOffsetCommit: durably holds the offsets for the
    /// producer's transaction; they commit when its marker reaches the
    /// group's offsets partition (`end_transaction`).
    pub async fn hold_for_transaction(
        &self,
        group: &str,
        producer_id: i64,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> std::io::Result<()> {
        let entries = offsets
            .into_iter()
            .map(|(topic, partition, value)| Entry::TxnStage {
                group: group.to_string(),
                producer_id,
                topic,
                partition,
                value,
            })
            .collect();
        self.persist(entries).await
    }

    /// A transaction marker for offsets partition `lane`: the producer's
    /// held offsets of that partition's groups commit (or are dropped).
    pub async fn end_transaction(&self, lane: i32, producer_id: i64, commit: bool) -> std::io::Result<()> {
        let Some(replicator) = self.replicator.get().cloned() else {
            return Ok(());
        };
        let mut entries = Vec::new();
        for ((group, producer), offsets) in self.held.lock().iter() {
            if *producer != producer_id || replicator.lane(group) != lane {
                continue;
            }
            if commit {
                entries.extend(offsets.iter().map(|((topic, partition), value)| Entry::Commit {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: value.clone(),
                }));
            }
            entries.push(Entry::TxnEnd {
                group: group.clone(),
                producer_id,
            });
        }
        // All in one lane: `persist` replicates them in one append.
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
        self.table.lock().get(group)?.get(&(topic.to_string(), partition)).cloned()
    }

    /// Every committed offset of a group.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.table
            .lock()
            .get(group)
            .map(|g| g.iter().map(|((t, p), v)| (t.clone(), *p, v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn groups(&self) -> Vec<String> {
        self.table.lock().keys().cloned().collect()
    }

    /// Whether the group has any committed offset.
    pub fn has_group(&self, group: &str) -> bool {
        self.table.lock().contains_key(group)
    }

    /// Groups with at least one committed offset.
    pub fn group_count(&self) -> usize {
        self.table.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn value(offset: i64) -> CommittedOffset {
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
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"{\"op\":\"commit\",\"gro").unwrap();
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

#[cfg(test)]
mod ordering_tests {
    use super::tests::value;
    use super::*;

    /// What a restart would load: the file replayed line by line.
    fn replayed_offset(path: &Path, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let mut table = HashMap::new();
        for line in std::fs::read_to_string(path).unwrap().lines() {
            apply(&mut table, &mut HeldOffsets::new(), serde_json::from_str(line).unwrap());
        }
        Some(table.get(group)?.get(&(topic.to_string(), partition))?.offset)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_abandoned_mid_write_is_served_as_a_restart_would_replay_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        store.commit("g", vec![("t".into(), 0, value(1))]).await.unwrap();
        for attempt in 2..40i64 {
            // The client goes away while its commit is being written: the
            // commit future is polled once (which starts the write) and
            // dropped.
            let commit = store.commit("g", vec![("t".into(), 0, value(attempt))]);
            tokio::select! {
                biased;
                _ = commit => {}
                _ = std::future::ready(()) => {}
            }
            // A later change waits for the abandoned one's write.
            store.commit("g", vec![("t".into(), 1, value(attempt))]).await.unwrap();
            let served = store.fetch("g", "t", 0).map(|c| c.offset);
            let replayed = replayed_offset(store.path(), "g", "t", 0);
            assert_eq!(served, replayed, "OffsetFetch serves {served:?}, a restart would load {replayed:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_of_one_partition_reach_file_and_table_in_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(OffsetStore::open(dir.path()).unwrap());
        for round in 0..50i64 {
            let commits: Vec<_> = (0..8i64)
                .map(|i| {
                    let store = store.clone();
                    tokio::spawn(async move { store.commit("g", vec![("t".into(), 0, value(round * 8 + i))]).await })
                })
                .collect();
            for commit in commits {
                commit.await.unwrap().unwrap();
            }
            let served = store.fetch("g", "t", 0).map(|c| c.offset);
            let replayed = replayed_offset(store.path(), "g", "t", 0);
            assert_eq!(served, replayed, "round {round}");
        }
    }
}

#[cfg(test)]
mod compaction_and_expiry_tests {
    use super::*;

    fn committed_at(offset: i64, commit_timestamp_ms: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: Some("m".repeat(100)),
            commit_timestamp_ms,
        }
    }

    #[test]
    fn compaction_waits_for_the_floor_then_for_twice_the_compacted_size() {
        let floor = 1000;
        assert!(!needs_compaction(999, 0, floor));
        assert!(!needs_compaction(1000, 0, floor));
        assert!(needs_compaction(1001, 0, floor));
        assert!(!needs_compaction(4000, 2000, floor));
        assert!(needs_compaction(4001, 2000, floor));
    }

    #[tokio::test]
    async fn repeated_commits_keep_the_file_within_twice_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let floor = 64 * 1024;
        let store = OffsetStore::open(dir.path()).unwrap().with_compaction_floor(floor);
        // 200 commits of the same 100 partitions: ~3.5 MB appended for a
        // ~17 KB table.
        for round in 0..200 {
            let offsets = (0..100).map(|p| ("t".to_string(), p, committed_at(round, 0))).collect();
            store.commit("g", offsets).await.unwrap();
            let on_disk = std::fs::metadata(store.path()).unwrap().len();
            assert_eq!(on_disk, store.file_bytes());
            assert!(on_disk <= floor + 20_000, "round {round}: the file is {on_disk} bytes");
        }
        drop(store);
        let reopened = OffsetStore::open(dir.path()).unwrap();
        for p in 0..100 {
            assert_eq!(reopened.fetch("g", "t", p).unwrap().offset, 199);
        }
    }

    #[tokio::test]
    async fn expiry_deletes_only_old_offsets_of_groups_without_members() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        let day = 24 * 60 * 60 * 1000;
        store.commit("old", vec![("t".into(), 0, committed_at(1, 0))]).await.unwrap();
        store
            .commit(
                "mixed",
                vec![("t".into(), 0, committed_at(1, 0)), ("t".into(), 1, committed_at(1, 5 * day))],
            )
            .await
            .unwrap();
        store.commit("consuming", vec![("t".into(), 0, committed_at(1, 0))]).await.unwrap();
        let membership = HashMap::from([("consuming".to_string(), Membership::Active)]);
        let emptied = store.expire(8 * day, 7 * day, membership).await.unwrap();
        assert_eq!(emptied, vec!["old".to_string()]);
        assert!(!store.has_group("old"));
        assert!(store.fetch("mixed", "t", 0).is_none());
        assert!(store.fetch("mixed", "t", 1).is_some());
        assert!(store.fetch("consuming", "t", 0).is_some());
        drop(store);
        let reopened = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(reopened.group_count(), 2, "the expiry is durable");
    }
}

#[cfg(test)]
mod lane_tests {
    use super::tests::value;
    use super::*;

    /// A replicator whose lane 0 holds every change until released, and
    /// whose groups are all owned but `gone`.
    struct Held {
        release: tokio::sync::Notify,
        replicated: Mutex<Vec<String>>,
    }

    impl OffsetReplicator for Held {
        fn owns(&self, group: &str) -> bool {
            group != "gone"
        }
        fn replicate(&self, changes: Vec<ReplicatedChange>) -> crate::coordination::BoxFuture<'_, std::io::Result<()>> {
            Box::pin(async move {
                let group = changes[0].group.clone();
                if self.lane(&group) == 0 {
                    self.release.notified().await;
                }
                self.replicated.lock().push(group);
                Ok(())
            })
        }
        fn lane(&self, group: &str) -> i32 {
            if group.starts_with("slow") {
                0
            } else {
                1
            }
        }
        fn lanes(&self) -> i32 {
            2
        }
    }

    /// A change held in one lane does not hold up another lane's; within a
    /// lane, changes apply in order; a group this broker does not
    /// coordinate is refused, not silently dropped.
    #[tokio::test]
    async fn lanes_replicate_side_by_side_and_in_order_within() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(OffsetStore::open(dir.path()).unwrap());
        let held = Arc::new(Held {
            release: tokio::sync::Notify::new(),
            replicated: Mutex::new(Vec::new()),
        });
        store.set_replicator(held.clone());
        assert_eq!((held.lane("slow-a"), held.lane("fast")), (0, 1));
        let (s1, s2) = (store.clone(), store.clone());
        let first = tokio::spawn(async move { s1.commit("slow-a", vec![("t".into(), 0, value(1))]).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = tokio::spawn(async move { s2.commit("slow-a", vec![("t".into(), 0, value(2))]).await });
        // The other lane goes through while lane 0 is held.
        let fast = store.commit("fast", vec![("t".into(), 0, value(7))]);
        tokio::time::timeout(std::time::Duration::from_secs(5), fast)
            .await
            .expect("a commit in another lane does not wait for the held one")
            .unwrap();
        assert_eq!(store.fetch("fast", "t", 0).unwrap().offset, 7);
        assert!(store.fetch("slow-a", "t", 0).is_none());
        // Released one at a time: they apply in the order they came.
        held.release.notify_one();
        first.await.unwrap().unwrap();
        assert_eq!(store.fetch("slow-a", "t", 0).unwrap().offset, 1);
        held.release.notify_one();
        second.await.unwrap().unwrap();
        assert_eq!(store.fetch("slow-a", "t", 0).unwrap().offset, 2);
        assert_eq!(*held.replicated.lock(), vec!["fast", "slow-a", "slow-a"]);
        assert!(store.commit("gone", vec![("t".into(), 0, value(1))]).await.is_err());
        assert!(store.fetch("gone", "t", 0).is_none());
    }
}

#[cfg(test)]
mod replicated_log_tests {
    use super::tests::value;
    use super::*;

    fn random_entry(rng: &mut crate::seeded::Seeded) -> Entry {
        let group = format!("g{}", rng.below(3));
        let topic = format!("t{}", rng.below(2));
        let partition = rng.below(2) as i32;
        let producer_id = rng.below(2) as i64;
        match rng.below(10) {
            0..=3 => Entry::Commit {
                group,
                topic,
                partition,
                value: value(rng.below(1000) as i64),
            },
            4 => Entry::Delete { group, topic, partition },
            5 => Entry::DeleteGroup { group },
            6..=8 => Entry::TxnStage {
                group,
                producer_id,
                topic,
                partition,
                value: value(rng.below(1000) as i64),
            },
            _ => Entry::TxnEnd { group, producer_id },
        }
    }

    fn replay(entries: &[Entry]) -> (Table, HeldOffsets) {
        let (mut table, mut held) = (Table::new(), HeldOffsets::new());
        for entry in entries {
            apply(&mut table, &mut held, entry.clone());
        }
        (table, held)
    }

    /// What the log cleaner leaves of a log whose first `cleanable`
    /// records it may clean: each of those records stays unless a later
    /// one among them has its key.
    fn compacted(entries: &[Entry], cleanable: usize) -> Vec<Entry> {
        let keys: Vec<Vec<u8>> = entries.iter().map(Entry::compaction_key).collect();
        entries
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= cleanable || !keys[i + 1..cleanable].contains(&keys[*i]))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// `__consumer_offsets` is compacted by these keys: whatever part of
    /// the log was cleaned, a new coordinator replaying it loads the same
    /// committed and held offsets as from the whole log.
    #[test]
    fn cleaning_the_replicated_log_never_changes_what_a_coordinator_loads() {
        let mut rng = crate::seeded::Seeded::new(848);
        for _ in 0..2000 {
            let length = 1 + rng.below(40) as usize;
            let entries: Vec<Entry> = (0..length).map(|_| random_entry(&mut rng)).collect();
            let cleanable = rng.below(length as u64 + 1) as usize;
            let cleaned = compacted(&entries, cleanable);
            assert_eq!(replay(&cleaned), replay(&entries), "{entries:?} cleaned to {cleanable}");
        }
    }

    /// A cluster's replicator that owns every group, in one lane, and
    /// keeps the lines it replicates.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<Bytes>>);

    impl OffsetReplicator for Recorded {
        fn owns(&self, _group: &str) -> bool {
            true
        }
        fn replicate(&self, changes: Vec<ReplicatedChange>) -> crate::coordination::BoxFuture<'_, std::io::Result<()>> {
            self.0.lock().extend(changes.into_iter().map(|c| Bytes::from(c.line)));
            Box::pin(async { Ok(()) })
        }
        fn lane(&self, _group: &str) -> i32 {
            0
        }
        fn lanes(&self) -> i32 {
            1
        }
    }

    #[tokio::test]
    async fn transactional_offsets_wait_for_their_marker_even_across_a_coordinator_move() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        let replicator = Arc::new(Recorded::default());
        store.set_replicator(replicator.clone());
        store.commit("g", vec![("t".into(), 0, value(1))]).await.unwrap();
        store.hold_for_transaction("g", 7, vec![("t".into(), 0, value(5))]).await.unwrap();
        assert_eq!(store.fetch("g", "t", 0).map(|o| o.offset), Some(1), "held, not committed");
        store.end_transaction(0, 8, true).await.unwrap();
        assert_eq!(store.fetch("g", "t", 0).map(|o| o.offset), Some(1), "another producer's marker");
        store.end_transaction(0, 7, false).await.unwrap();
        assert_eq!(store.fetch("g", "t", 0).map(|o| o.offset), Some(1), "an abort drops them");
        store.hold_for_transaction("g", 7, vec![("t".into(), 0, value(9))]).await.unwrap();

        // Another broker loads the group from the replicated lines, and the
        // marker there commits what was held.
        let other_dir = tempfile::tempdir().unwrap();
        let other = OffsetStore::open(other_dir.path()).unwrap();
        other.set_replicator(Arc::new(Recorded::default()));
        let lines = replicator.0.lock().clone();
        other.reload(|_| true, lines).await.unwrap();
        assert_eq!(other.fetch("g", "t", 0).map(|o| o.offset), Some(1));
        other.end_transaction(0, 7, true).await.unwrap();
        assert_eq!(other.fetch("g", "t", 0).map(|o| o.offset), Some(9));
    }
}
