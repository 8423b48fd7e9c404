//! A bounded on-disk cache of archive reads: for each (object, row group)
//! read, the Kafka record batches re-encoded from it. A hot range is then
//! served from local disk without touching the store or re-encoding. The
//! total size never exceeds the configured bound: least recently used
//! entries are evicted first. The cache starts empty at every start.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;

struct Entry {
    file: PathBuf,
    size: u64,
    last_used: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    total: u64,
    clock: u64,
    next_file: u64,
}

impl DiskCache {
    pub fn open(dir: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        // Whatever an earlier run left is not indexed: start clean.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            max_bytes,
            state: Mutex::new(State::default()),
        })
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        let file = {
            let mut state = self.state.lock();
            state.clock += 1;
            let now = state.clock;
            let entry = state.entries.get_mut(key)?;
            entry.last_used = now;
            entry.file.clone()
        };
        std::fs::read(file).ok().map(Bytes::from)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.state.lock().entries.contains_key(key)
    }

    /// Stores `value` under `key`, evicting older entries to stay within
    /// the bound. A value larger than the whole cache is not stored.
    pub fn put(&self, key: &str, value: &[u8]) {
        let size = value.len() as u64;
        if size > self.max_bytes {
            return;
        }
        let mut state = self.state.lock();
        if state.entries.contains_key(key) {
            return;
        }
        while state.total + size > self.max_bytes {
            let Some(oldest) = state.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(e) = state.entries.remove(&oldest) {
                state.total -= e.size;
                let _ = std::fs::remove_file(e.file);
            }
        }
        state.next_file += 1;
        let file = self.dir.join(format!("{:016}.bin", state.next_file));
        if std::fs::write(&file, value).is_err() {
            let _ = std::fs::remove_file(&file);
            return;
        }
        state.clock += 1;
        let last_used = state.clock;
        state.total += size;
        state.entries.insert(key.to_string(), Entry { file, size, last_used });
    }

    pub fn size_bytes(&self) -> u64 {
        self.state.lock().total
    }

    /// Drops every entry whose key starts with `prefix` (a deleted object).
    pub fn forget_prefix(&self, prefix: &str) {
        let mut state = self.state.lock();
        let doomed: Vec<String> = state.entries.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        for key in doomed {
            if let Some(e) = state.entries.remove(&key) {
                state.total -= e.size;
                let _ = std::fs::remove_file(e.file);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grows_past_its_bound_and_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path().join("c"), 250).unwrap();
        cache.put("a", &[1; 100]);
        cache.put("b", &[2; 100]);
        assert!(cache.get("a").is_some()); // a is now more recent than b
        cache.put("c", &[3; 100]);
        assert!(cache.size_bytes() <= 250);
        assert!(cache.get("b").is_none(), "least recently used went first");
        assert_eq!(cache.get("a").unwrap()[0], 1);
        assert_eq!(cache.get("c").unwrap()[0], 3);
        cache.put("huge", &[0; 1000]);
        assert!(cache.get("huge").is_none());
        assert!(cache.size_bytes() <= 250);
        let files = std::fs::read_dir(dir.path().join("c")).unwrap().count();
        assert_eq!(files, 2, "evicted entries leave no files");
        cache.forget_prefix("a");
        assert!(cache.get("a").is_none());
    }
}
