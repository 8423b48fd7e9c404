//! A partition's manifest: which archived objects cover which offsets.
//!
//! Stored as versioned JSON files created with `PutMode::Create`, so a
//! publish is a compare-and-swap on the store itself: two writers cannot
//! both create version N+1. Each version carries the writer's leader epoch,
//! and a writer whose epoch is older than the newest manifest's is fenced:
//! a deposed leader can never publish.

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::layout;

/// One archived Parquet object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: i64,
    pub size_bytes: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub version: u64,
    pub epoch: i32,
    /// The topic's id: a topic deleted and created again under the same name
    /// does not inherit the old one's objects.
    #[serde(default)]
    pub topic_id: String,
    /// Objects in offset order, never overlapping.
    pub objects: Vec<ObjectEntry>,
    /// One past the last offset ever archived. Kept when retention removes
    /// objects, so the uploader never archives the same offsets twice.
    #[serde(default)]
    pub archived_end: Option<i64>,
    /// Everything below this offset is deleted (DeleteRecords): consumers
    /// start here, and rows below it in the first object are not part of
    /// the table (see docs/archive-format.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("manifest {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("fenced: the archive's manifest has epoch {theirs}, this broker writes with epoch {ours}")]
    Fenced { ours: i32, theirs: i32 },
    #[error("object {first}-{last} overlaps the archive, which ends at {end}")]
    NotContiguous { first: i64, last: i64, end: i64 },
}

impl Manifest {
    pub fn for_topic(topic_id: &str) -> Manifest {
        Manifest {
            topic_id: topic_id.to_string(),
            ..Manifest::default()
        }
    }

    /// Whether the objects are `topic_id`'s (an empty manifest is anyone's).
    pub fn belongs_to(&self, topic_id: &str) -> bool {
        self.topic_id == topic_id || self.version == 0
    }

    /// This manifest if it belongs to `topic_id`; otherwise an empty one that
    /// continues its version numbering (the objects belong to a deleted
    /// topic of the same name).
    pub fn for_incarnation(self, topic_id: &str) -> Manifest {
        if self.belongs_to(topic_id) {
            Manifest {
                topic_id: topic_id.to_string(),
                ..self
            }
        } else {
            Manifest {
                version: self.version,
                epoch: self.epoch,
                topic_id: topic_id.to_string(),
                objects: Vec::new(),
                archived_end: None,
                log_start_offset: None,
            }
        }
    }

    /// One past the last archived offset, if anything was ever archived.
    pub fn end_offset(&self) -> Option<i64> {
        self.archived_end.or(self.objects.last().map(|o| o.last_offset + 1))
    }

    pub fn start_offset(&self) -> Option<i64> {
        self.objects.first().map(|o| o.first_offset)
    }

    /// The object holding `offset`, or the first one after it (a gap left
    /// by retention or an empty range).
    pub fn find(&self, offset: i64) -> Option<&ObjectEntry> {
        let i = self.objects.partition_point(|o| o.last_offset < offset);
        self.objects.get(i)
    }

    pub fn total_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size_bytes).sum()
    }

    /// The next version with `entry` appended. Pure: the store write is
    /// `publish`.
    pub fn with_object(&self, entry: ObjectEntry, epoch: i32) -> Result<Manifest, ManifestError> {
        if let Some(end) = self.end_offset() {
            // Gaps are allowed (local retention may have removed segments
            // before they could be archived); overlaps never.
            if entry.first_offset < end {
                return Err(ManifestError::NotContiguous {
                    first: entry.first_offset,
                    last: entry.last_offset,
                    end,
                });
            }
        }
        let mut next = self.clone();
        next.version += 1;
        next.epoch = epoch;
        next.archived_end = Some(entry.last_offset + 1);
        next.objects.push(entry);
        Ok(next)
    }

    /// The next version, unchanged but for the writer's epoch: a new leader
    /// publishes it before anything else, so that a deposed leader (with an
    /// older epoch) can never publish again.
    pub fn with_epoch(&self, epoch: i32) -> Manifest {
        let mut next = self.clone();
        next.version += 1;
        next.epoch = epoch;
        next
    }

    /// The next version without the oldest `count` objects.
    /// Records that everything below `offset` is deleted (DeleteRecords).
    /// Objects wholly below the new start leave the manifest and are
    /// returned, for the caller to delete from the store; the archive's end
    /// moves up to the start, so the uploader never archives deleted
    /// offsets. The start never moves back.
    pub fn with_log_start(&self, offset: i64, epoch: i32) -> (Manifest, Vec<ObjectEntry>) {
        let start = self.log_start_offset.map_or(offset, |s| s.max(offset));
        let mut next = self.clone();
        next.version += 1;
        next.epoch = epoch;
        next.log_start_offset = Some(start);
        let gone = next.objects.iter().take_while(|o| o.last_offset < start).count();
        let removed = next.objects.drain(..gone).collect();
        next.archived_end = Some(self.end_offset().map_or(start, |end| end.max(start)));
        (next, removed)
    }

    pub fn without_oldest(&self, count: usize, epoch: i32) -> Manifest {
        let mut next = self.clone();
        next.version += 1;
        next.epoch = epoch;
        next.objects.drain(..count.min(next.objects.len()));
        next
    }
}

/// Reads the newest manifest version (an empty manifest if none exists).
pub async fn load(store: &dyn ObjectStore, topic: &str, partition: i32) -> Result<Manifest, ManifestError> {
    let Some((_, key)) = layout::newest_version(store, &layout::manifest_prefix(topic, partition)).await? else {
        return Ok(Manifest::default());
    };
    read(store, &key).await
}

/// Reads one manifest version by its key.
pub async fn read(store: &dyn ObjectStore, key: &object_store::path::Path) -> Result<Manifest, ManifestError> {
    let bytes = store.get(key).await?.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| ManifestError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Publishes `next` (built from the newest manifest) as a new version.
/// Fails with `Fenced` if a newer epoch has published, or with the store's
/// `AlreadyExists` if another writer won the same version: reload and retry.
pub async fn publish(
    store: &dyn ObjectStore,
    topic: &str,
    partition: i32,
    current: &Manifest,
    next: &Manifest,
) -> Result<(), ManifestError> {
    if current.epoch > next.epoch {
        return Err(ManifestError::Fenced {
            ours: next.epoch,
            theirs: current.epoch,
        });
    }
    let bytes = serde_json::to_vec_pretty(next).map_err(|e| ManifestError::Corrupt {
        key: "new manifest".into(),
        message: e.to_string(),
    })?;
    let key = layout::manifest_key(topic, partition, next.version);
    store
        .put_opts(
            &key,
            PutPayload::from(bytes),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await?;
    // Keep a few old versions for readers mid-way; drop the rest.
    if next.version > KEEP_VERSIONS {
        let _ = store
            .delete(&layout::manifest_key(topic, partition, next.version - KEEP_VERSIONS))
            .await;
    }
    Ok(())
}

const KEEP_VERSIONS: u64 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn entry(first: i64, last: i64) -> ObjectEntry {
        ObjectEntry {
            key: layout::data_key("t", 0, first, last).to_string(),
            first_offset: first,
            last_offset: last,
            records: last - first + 1,
            size_bytes: 100,
            min_timestamp: 0,
            max_timestamp: 0,
        }
    }

    #[test]
    fn objects_must_be_contiguous_and_find_locates_offsets() {
        let m = Manifest::default()
            .with_object(entry(0, 9), 1)
            .unwrap()
            .with_object(entry(10, 19), 1)
            .unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(m.end_offset(), Some(20));
        assert_eq!(m.find(15).unwrap().first_offset, 10);
        assert_eq!(m.find(20), None);
        assert!(matches!(m.with_object(entry(15, 30), 1), Err(ManifestError::NotContiguous { .. })));
        assert!(m.with_object(entry(25, 30), 1).is_ok(), "a gap is allowed");
        let trimmed = m.without_oldest(1, 1);
        assert_eq!(trimmed.start_offset(), Some(10));
        let emptied = m.without_oldest(2, 1);
        assert_eq!(emptied.end_offset(), Some(20), "retention keeps the archived end");
        assert!(emptied.with_object(entry(5, 9), 1).is_err(), "nothing is archived twice");
        assert_eq!(trimmed.find(3).unwrap().first_offset, 10, "below the start finds the first object");
    }

    #[test]
    fn a_log_start_drops_the_objects_below_it_and_never_moves_back() {
        let m = Manifest::default()
            .with_object(entry(0, 9), 1)
            .unwrap()
            .with_object(entry(10, 19), 1)
            .unwrap();
        let (mid, removed) = m.with_log_start(15, 1);
        assert_eq!(removed, vec![entry(0, 9)]);
        assert_eq!(
            (mid.log_start_offset, mid.start_offset(), mid.end_offset()),
            (Some(15), Some(10), Some(20))
        );
        // Past the archive's end: the uploader goes on from the start.
        let (past, removed) = mid.with_log_start(30, 1);
        assert_eq!(removed, vec![entry(10, 19)]);
        assert_eq!((past.log_start_offset, past.end_offset()), (Some(30), Some(30)));
        assert!(past.with_object(entry(25, 35), 1).is_err(), "deleted offsets are never archived");
        let (back, removed) = past.with_log_start(5, 1);
        assert!(removed.is_empty());
        assert_eq!(back.log_start_offset, Some(30));
        // A manifest written before the field existed still reads.
        let old: Manifest = serde_json::from_str(r#"{"version":1,"epoch":0,"objects":[]}"#).unwrap();
        assert_eq!(old.log_start_offset, None);
    }

    #[tokio::test]
    async fn publish_is_a_compare_and_swap_and_fences_older_epochs() {
        let store = InMemory::new();
        let current = load(&store, "t", 0).await.unwrap();
        assert_eq!(current, Manifest::default());
        let next = current.with_object(entry(0, 9), 2).unwrap();
        publish(&store, "t", 0, &current, &next).await.unwrap();
        // A second writer that read the same version loses the race.
        let rival = current.with_object(entry(0, 9), 2).unwrap();
        assert!(matches!(
            publish(&store, "t", 0, &current, &rival).await,
            Err(ManifestError::Store(object_store::Error::AlreadyExists { .. }))
        ));
        let loaded = load(&store, "t", 0).await.unwrap();
        assert_eq!(loaded, next);
        // A deposed leader (older epoch) is fenced.
        let stale = loaded.with_object(entry(10, 19), 1).unwrap();
        assert!(matches!(
            publish(&store, "t", 0, &loaded, &stale).await,
            Err(ManifestError::Fenced { ours: 1, theirs: 2 })
        ));
    }
}
