//! Iceberg commits and planning at scale, no broker: a `file://` archive
//! gets 10,000 objects over 4 partitions, committed 10 at a time (1,000
//! snapshots, as 1,000 tiering rounds would), each object one minute of
//! records. Reports the commit time as the table grows, the metadata files
//! left, and what pyiceberg reads to plan a one-hour range
//! (benches/iceberg/plan.py: manifests opened and data files planned).
//!
//! cargo bench --bench iceberg [-- --objects N --per-commit N]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails should stop loudly

use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStore;
use sediment::archive::layout;
use sediment::archive::manifest::{self, ObjectEntry};
use sediment::iceberg::schema::Retention;
use sediment::iceberg::table::Committer;

const PARTITIONS: i32 = 4;
const MINUTE_MS: i64 = 60_000;
const RECORDS_PER_OBJECT: i64 = 6_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().unwrap())
    };
    let objects = arg("--objects", 10_000);
    let per_commit = arg("--per-commit", 10).max(1);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}", root.display());
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap());
    let committer = Committer::new(
        store.clone(),
        url.clone(),
        "bench".into(),
        Retention::default(),
        Arc::new(sediment::metrics::Metrics::new()),
    );
    let id = uuid::Uuid::from_u128(1);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let base_ms = 1_700_000_000_000i64;
    let mut next_offset = [0i64; PARTITIONS as usize];
    let mut commit_ms: Vec<f64> = Vec::new();
    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..objects {
            let p = (i % PARTITIONS as usize) as i32;
            let first = next_offset[p as usize];
            next_offset[p as usize] += RECORDS_PER_OBJECT;
            let min_ts = base_ms + i as i64 * MINUTE_MS;
            let entry = ObjectEntry {
                key: layout::data_key("bench", p, first, first + RECORDS_PER_OBJECT - 1).to_string(),
                first_offset: first,
                last_offset: first + RECORDS_PER_OBJECT - 1,
                records: RECORDS_PER_OBJECT,
                size_bytes: 1 << 20,
                min_timestamp: min_ts,
                max_timestamp: min_ts + MINUTE_MS - 1,
            };
            let current = manifest::load(store.as_ref(), "bench", p)
                .await
                .unwrap()
                .for_incarnation(&id.to_string());
            let next = current.with_object(entry, 0).unwrap();
            manifest::publish(store.as_ref(), "bench", p, &current, &next).await.unwrap();
            if (i + 1) % per_commit == 0 || i + 1 == objects {
                let t = Instant::now();
                committer
                    .sync("bench", id, PARTITIONS, base_ms + i as i64 * MINUTE_MS)
                    .await
                    .unwrap();
                commit_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    });
    let total = started.elapsed().as_secs_f64();
    let window = |from: usize, to: usize| {
        let slice = &commit_ms[from.min(commit_ms.len())..to.min(commit_ms.len())];
        slice.iter().sum::<f64>() / slice.len().max(1) as f64
    };
    let n = commit_ms.len();
    println!(
        "commits  objects={objects} per_commit={per_commit} commits={n} mean_ms first_100={:.1} last_100={:.1} all={:.1} total_s={total:.1}",
        window(0, 100),
        window(n.saturating_sub(100), n),
        window(0, n)
    );
    let metadata_dir = root.join("topic=bench/_iceberg/metadata");
    let files = std::fs::read_dir(&metadata_dir).unwrap().count();
    let bytes: u64 = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!("metadata files={files} bytes={bytes}");
    // One hour in the middle of the history.
    let hour_from = base_ms + (objects as i64 / 2) * MINUTE_MS;
    let hint = std::fs::read_to_string(metadata_dir.join("version-hint.text")).unwrap();
    let location = format!("{url}/topic=bench/_iceberg/metadata/v{hint}.metadata.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/iceberg/plan.py");
    let out = std::process::Command::new("python3")
        .args([script, &location, &hour_from.to_string(), &(hour_from + 3_600_000).to_string()])
        .output()
        .expect("python3 runs");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
}
