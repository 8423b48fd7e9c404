//! The archive: sealed segments become Parquet objects in object storage,
//! and reads below the local log's start are served from them.
//!
//! - `layout`: object keys (a public contract).
//! - `records`: v2 batches to rows and back, exactly.
//! - `parquet`: rows to Arrow/Parquet and back.
//! - `manifest`: which objects cover which offsets; compare-and-swap
//!   publishing fenced by the leader epoch.
//! - `store`: the object store from the `--archive` URL.
//! - `cache`: the bounded on-disk cache of archive reads.
//! - `tiering`: the background uploader and archive retention.
//!
//! Only this module imports `parquet` and `arrow`.

pub mod cache;
pub mod layout;
pub mod manifest;
pub mod parquet;
pub mod records;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use ::parquet::arrow::async_writer::AsyncArrowWriter;
use ::parquet::arrow::ParquetRecordBatchStreamBuilder;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use self::cache::DiskCache;
use self::manifest::ObjectEntry;
use self::records::Row;
use crate::log::batch::BatchWalker;
use crate::metrics::Metrics;

/// Largest Kafka batch re-encoded from archived rows.
const ARCHIVE_BATCH_BYTES: usize = 1 << 20;
/// Objects whose row-group offsets are remembered.
const ROW_GROUP_INDEX_MAX: usize = 10_000;
/// Bytes of a segment read at a time while tiering it.
const SEGMENT_READ_CHUNK: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("reading segment: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Records(#[from] records::RecordError),
    #[error("{0}")]
    Manifest(#[from] manifest::ManifestError),
    #[error("archive task failed: {0}")]
    Task(String),
}

/// A sealed local segment the uploader may archive.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub path: PathBuf,
    pub base_offset: i64,
    /// One past its last offset.
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Aborted transactions with records in it: the archive leaves them
    /// out (and the markers), so it holds committed records only.
    pub aborted: Vec<crate::log::txn::AbortedTxn>,
}

pub struct Archive {
    pub store: Arc<dyn ObjectStore>,
    pub url: String,
    cache: DiskCache,
    metrics: Arc<Metrics>,
    /// Per object: the largest offset in each row group, so cached reads
    /// need no footer fetch.
    row_groups: Mutex<HashMap<String, Vec<i64>>>,
    /// Row groups being read ahead, so each is read once.
    prefetching: Mutex<std::collections::HashSet<String>>,
    /// Where read-ahead tasks run (stopped with the broker's background work).
    tasks: crate::tasks::Tasks,
}

impl Archive {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        url: String,
        cache_dir: PathBuf,
        cache_bytes: u64,
        metrics: Arc<Metrics>,
        tasks: crate::tasks::Tasks,
    ) -> std::io::Result<Self> {
        Ok(Self {
            tasks,
            store,
            url,
            cache: DiskCache::open(cache_dir, cache_bytes)?,
            metrics,
            row_groups: Mutex::new(HashMap::new()),
            prefetching: Mutex::new(Default::default()),
        })
    }

    pub fn cache_bytes(&self) -> u64 {
        self.cache.size_bytes()
    }

    /// Writes the records of `segment` from `from_offset` on as one Parquet
    /// object (multipart upload; the object appears whole or not at all).
    /// Runs on a blocking thread: decoding is CPU work off the request path.
    pub async fn upload_segment(
        &self,
        topic: &str,
        partition: i32,
        segment: &SealedSegment,
        from_offset: i64,
        limits: records::Limits,
    ) -> Result<Option<ObjectEntry>, ArchiveError> {
        let first = from_offset.max(segment.base_offset);
        let last = segment.next_offset - 1;
        if first > last {
            return Ok(None);
        }
        let key = layout::data_key(topic, partition, first, last);
        let store = self.store.clone();
        let props = parquet::writer_properties(topic, partition, first, last);
        let segment = segment.clone();
        let handle = tokio::runtime::Handle::current();
        let key_for_task = key.clone();
        let stats = tokio::task::spawn_blocking(move || -> Result<(i64, i64, i64, u64), ArchiveError> {
            // Multipart upload: the object appears whole when the writer
            // completes, or not at all.
            let writer = BufWriter::new(store, key_for_task);
            let mut writer = AsyncArrowWriter::try_new(writer, parquet::schema(), Some(props))?;
            let mut rows = RowBuffer::default();
            let (mut count, mut min_ts, mut max_ts) = (0i64, i64::MAX, i64::MIN);
            let mut skipped = 0u64;
            // Arrow batches and row groups are bounded by bytes as well as
            // rows: one compressed batch can decode to gigabytes of
            // repetitive values, and an Arrow binary column holds < 2 GiB.
            let flush = |rows: &mut RowBuffer, writer: &mut AsyncArrowWriter<BufWriter>| -> Result<(), ArchiveError> {
                if rows.rows.is_empty() {
                    return Ok(());
                }
                let batch = parquet::to_record_batch(&rows.rows)?;
                rows.clear();
                handle.block_on(writer.write(&batch))?;
                if writer.in_progress_size() >= parquet::MAX_ROW_GROUP_BYTES {
                    handle.block_on(writer.flush())?;
                }
                Ok(())
            };
            for_each_batch(&segment.path, |batch| {
                // Checked whole before any row is kept, so that a batch is
                // archived entirely or not at all, even when its rows are
                // flushed in several Arrow batches.
                // As the log stores batches: a compacted leader's copies have gaps.
                let checked = crate::log::batch::validate_stored(&batch)
                    .map_err(records::RecordError::from)
                    .and_then(|header| {
                        crate::log::records::walk(&batch, &header, limits, crate::log::records::Fields::Skip, |_| Ok(true)).map(|()| header)
                    });
                let header = match checked {
                    Ok(header) if header.is_control() => return Ok(()),
                    Ok(header)
                        if header.is_transactional()
                            && segment.aborted.iter().any(|a| a.covers(header.producer_id, header.base_offset)) =>
                    {
                        return Ok(());
                    }
                    Ok(header) => header,
                    Err(e) => {
                        // A batch whose CRC holds but whose records do not
                        // parse or exceed the decode bound (accepted before
                        // produce validated records) must not stop tiering
                        // for good: it stays readable in the local log until
                        // local retention, and is missing from the archive.
                        tracing::error!(error = %e, segment = %segment.path.display(), "skipping an undecodable batch while archiving");
                        skipped += 1;
                        return Ok(());
                    }
                };
                let mut failed = None;
                records::for_each_row(&batch, &header, limits, |row| {
                    // Rows below `first` were archived already.
                    if row.offset < first || row.offset > last {
                        return Ok(true);
                    }
                    count += 1;
                    min_ts = min_ts.min(row.timestamp);
                    max_ts = max_ts.max(row.timestamp);
                    rows.push(row);
                    if rows.is_full() {
                        if let Err(e) = flush(&mut rows, &mut writer) {
                            failed = Some(e);
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })?;
                failed.map_or(Ok(()), Err)
            })?;
            flush(&mut rows, &mut writer)?;
            handle.block_on(writer.close())?;
            Ok((count, min_ts, max_ts, skipped))
        })
        .await
        .map_err(|e| ArchiveError::Task(e.to_string()))??;
        let (records, min_timestamp, max_timestamp, skipped) = stats;
        self.metrics.tiering_skipped_batches.inc_by(skipped);
        let size_bytes = self.store.head(&key).await?.size;
        Ok(Some(ObjectEntry {
            key: key.to_string(),
            first_offset: first,
            last_offset: last,
            records,
            size_bytes,
            min_timestamp,
            max_timestamp,
        }))
    }

    /// Kafka record batches re-encoded from the archive, starting with the
    /// batch holding `offset`, up to `max_bytes` (at least one batch).
    pub async fn read(self: &Arc<Self>, object: &ObjectEntry, offset: i64, max_bytes: usize) -> Result<Bytes, ArchiveError> {
        let started = Instant::now();
        let groups = self.row_group_ends(object).await?;
        let mut out = BytesMut::new();
        let first_group = groups.partition_point(|max| *max < offset);
        for (index, _) in groups.iter().enumerate().skip(first_group) {
            // A consumer reading from the archive reads on: prepare the next
            // row group while this one is served.
            if index + 1 < groups.len() {
                self.prefetch(object, index + 1);
            }
            let encoded = self.row_group_batches(object, index).await?;
            for (header, range) in BatchWalker::new(&encoded) {
                if header.last_offset() < offset {
                    continue;
                }
                if !out.is_empty() && out.len() + range.len() > max_bytes {
                    self.observe_read(started, out.len());
                    return Ok(out.freeze());
                }
                out.extend_from_slice(&encoded[range]);
            }
            if out.len() >= max_bytes {
                break;
            }
        }
        self.observe_read(started, out.len());
        Ok(out.freeze())
    }

    /// The first record in `object` with a timestamp >= `timestamp`.
    pub async fn offset_for_timestamp(self: &Arc<Self>, object: &ObjectEntry, timestamp: i64) -> Result<Option<(i64, i64)>, ArchiveError> {
        let groups = self.row_group_ends(object).await?;
        let mut rows = Vec::new();
        for index in 0..groups.len() {
            let encoded = self.row_group_batches(object, index).await?;
            for (header, range) in BatchWalker::new(&encoded) {
                if header.max_timestamp < timestamp {
                    continue;
                }
                rows.clear();
                // Our own uncompressed batches: they decode to their size.
                let batch = encoded.slice(range);
                let limits = records::Limits {
                    max_decoded_bytes: batch.len() as u64,
                };
                records::decode_batch(&batch, limits, &mut rows)?;
                if let Some(r) = rows.iter().find(|r| r.timestamp >= timestamp) {
                    return Ok(Some((r.offset, r.timestamp)));
                }
            }
        }
        Ok(None)
    }

    fn observe_read(&self, started: Instant, bytes: usize) {
        self.metrics.archive_read_bytes.inc_by(bytes as u64);
        self.metrics.archive_read_duration.observe(started.elapsed().as_secs_f64());
    }

    async fn row_group_ends(&self, object: &ObjectEntry) -> Result<Vec<i64>, ArchiveError> {
        if let Some(known) = self.row_groups.lock().get(&object.key).cloned() {
            return Ok(known);
        }
        let builder = ParquetRecordBatchStreamBuilder::new(self.reader(object)).await?;
        let ends: Vec<i64> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| parquet::row_group_max_offset(g).unwrap_or(i64::MAX))
            .collect();
        {
            let mut m = self.row_groups.lock();
            // A bound on memory: dropping the map only costs footer reads.
            if m.len() >= ROW_GROUP_INDEX_MAX {
                m.clear();
            }
            m.insert(object.key.clone(), ends.clone());
        }
        Ok(ends)
    }

    fn prefetch(self: &Arc<Self>, object: &ObjectEntry, index: usize) {
        let key = format!("{}#{index}", object.key);
        if self.cache.contains(&key) {
            return;
        }
        if !self.prefetching.lock().insert(key.clone()) {
            return;
        }
        let (archive, object) = (self.clone(), object.clone());
        self.tasks.spawn(async move {
            if let Err(e) = archive.row_group_batches(&object, index).await {
                tracing::debug!(key = %object.key, index, error = %e, "archive prefetch failed");
            }
            archive.prefetching.lock().remove(&key);
        });
    }

    /// One row group re-encoded as Kafka batches, from the cache or the store.
    /// Runs on the blocking pool: Parquet decoding is CPU work and the cache
    /// reads and writes files, so neither may hold up an async worker. The
    /// row group's bytes are fetched from there too (`block_on`).
    async fn row_group_batches(self: &Arc<Self>, object: &ObjectEntry, index: usize) -> Result<Bytes, ArchiveError> {
        let (archive, object) = (self.clone(), object.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || runtime.block_on(archive.load_row_group(&object, index)))
            .await
            .map_err(|e| ArchiveError::Task(e.to_string()))?
    }

    /// `row_group_batches`' work; blocking.
    async fn load_row_group(&self, object: &ObjectEntry, index: usize) -> Result<Bytes, ArchiveError> {
        let cache_key = format!("{}#{index}", object.key);
        if let Some(hit) = self.cache.get(&cache_key) {
            self.metrics.archive_cache_hits.inc();
            return Ok(hit);
        }
        self.metrics.archive_cache_misses.inc();
        let mut stream = ParquetRecordBatchStreamBuilder::new(self.reader(object))
            .await?
            .with_row_groups(vec![index])
            .build()?;
        let mut out = BytesMut::new();
        while let Some(batch) = stream.try_next().await? {
            parquet::encode_record_batch(&batch, ARCHIVE_BATCH_BYTES, &mut out)?;
        }
        let encoded = out.freeze();
        self.cache.put(&cache_key, &encoded);
        Ok(encoded)
    }

    fn reader(&self, object: &ObjectEntry) -> ObjectReader {
        ObjectReader {
            store: self.store.clone(),
            path: Path::from(object.key.as_str()),
            size: object.size_bytes,
        }
    }

    /// Deletes archived objects (after the manifest stopped naming them).
    pub async fn delete_objects(&self, objects: &[ObjectEntry]) {
        for o in objects {
            if let Err(e) = self.store.delete(&Path::from(o.key.as_str())).await {
                tracing::warn!(key = %o.key, error = %e, "could not delete an archived object; it is no longer in the manifest");
            }
            self.cache.forget_prefix(&format!("{}#", o.key));
            self.row_groups.lock().remove(&o.key);
        }
    }

    /// Deletes everything archived for a topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ArchiveError> {
        let keys: Vec<_> = self
            .store
            .list(Some(&layout::topic_prefix(topic)))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        for key in keys {
            self.store.delete(&key).await?;
            self.cache.forget_prefix(key.as_ref());
        }
        Ok(())
    }
}

/// Calls `f` with each batch of a segment file, read in large chunks.
/// Rows waiting to become one Arrow batch, with their payload bytes.
#[derive(Default)]
struct RowBuffer {
    rows: Vec<Row>,
    bytes: usize,
}

impl RowBuffer {
    fn push(&mut self, row: Row) {
        self.bytes += row_bytes(&row);
        self.rows.push(row);
    }

    fn is_full(&self) -> bool {
        self.rows.len() >= parquet::ROWS_PER_BATCH || self.bytes >= parquet::MAX_BATCH_BYTES
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

fn row_bytes(row: &Row) -> usize {
    let field = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    16 + field(&row.key) + field(&row.value) + row.headers.iter().map(|(k, v)| k.len() + field(v)).sum::<usize>()
}

fn for_each_batch(path: &std::path::Path, mut f: impl FnMut(Bytes) -> Result<(), ArchiveError>) -> Result<(), ArchiveError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut pending = BytesMut::new();
    let mut chunk = vec![0u8; SEGMENT_READ_CHUNK];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        let frozen = pending.split().freeze();
        for (_, range) in BatchWalker::new(&frozen) {
            consumed = range.end;
            f(frozen.slice(range))?;
        }
        pending.extend_from_slice(&frozen[consumed..]);
    }
    Ok(())
}

/// Exponential backoff for store retries: 100 ms doubling to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(9)).min(30_000))
}

/// Ranged reads of one archived object for the Parquet reader; the size is
/// known from the manifest, so the footer costs one request and no HEAD.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn parquet_err(e: object_store::Error) -> ::parquet::errors::ParquetError {
    ::parquet::errors::ParquetError::External(Box::new(e))
}

impl ::parquet::arrow::async_reader::AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> futures::future::BoxFuture<'_, ::parquet::errors::Result<Bytes>> {
        Box::pin(async move { self.store.get_range(&self.path, range).await.map_err(parquet_err) })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, ::parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move { self.store.get_ranges(&self.path, &ranges).await.map_err(parquet_err) })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ::parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, ::parquet::errors::Result<Arc<::parquet::file::metadata::ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let metadata = ::parquet::file::metadata::ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}
