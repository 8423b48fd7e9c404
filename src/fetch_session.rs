//! Fetch sessions (KIP-227): a consumer of many partitions names them all
//! once; after that each fetch names only the partitions whose position
//! changed, and the answer holds only the partitions with something new
//! (records, a moved high watermark, last stable offset or log start, an
//! error). Pure logic: the Fetch handler (protocol::fetch) reads the log.
//!
//! Bounds: at most `slots` sessions and `max_partitions` partitions over
//! all of them. Past either, a fetch that asks for a new session is served
//! without one (session id 0), as Kafka does when its cache is full; an
//! incremental fetch that would grow past them loses its session
//! (FETCH_SESSION_ID_NOT_FOUND), and the client starts over with a full one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::TopicName;
use kafka_protocol::ResponseError;

use crate::seeded::Seeded;

/// The session id of a fetch that has no session.
pub const NO_SESSION: i32 = 0;
/// The epoch of a full fetch that asks for a new session.
const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full fetch that wants no session (and closes its old one).
const FINAL_EPOCH: i32 = -1;

/// A session idle this long may be evicted to make room for a new one
/// (Kafka's min.incremental.fetch.session.eviction.ms).
pub const EVICTION_IDLE_MS: i64 = 120_000;

pub type PartitionKey = (TopicName, i32);

/// What a fetch's session fields ask for.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// A full fetch with no session; `close` is the session it ends, if any.
    Sessionless { close: Option<i32> },
    /// A full fetch that starts a new session (ending `close`, if any).
    New { close: Option<i32> },
    /// A fetch within session `id` at `epoch`.
    Incremental { id: i32, epoch: i32 },
}

pub fn classify(session_id: i32, epoch: i32) -> Kind {
    let close = (session_id != NO_SESSION).then_some(session_id);
    match epoch {
        FINAL_EPOCH => Kind::Sessionless { close },
        INITIAL_EPOCH => Kind::New { close },
        _ => Kind::Incremental { id: session_id, epoch },
    }
}

/// Why an incremental fetch cannot be served: answered as a top-level
/// error, after which the client sends a full fetch.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum SessionError {
    /// Unknown (or evicted, or another principal's) session.
    NotFound,
    /// The request's epoch is not the one the session expects.
    InvalidEpoch,
}

impl SessionError {
    pub fn code(self) -> i16 {
        match self {
            SessionError::NotFound => ResponseError::FetchSessionIdNotFound.code(),
            SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch.code(),
        }
    }
}

/// What one partition's answer carried, to compare with what the session
/// last told the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub error_code: i16,
    pub has_records: bool,
}

struct Cached {
    params: FetchPartition,
    /// Position in the session's read order.
    seq: u64,
    /// The (high watermark, last stable offset, log start) last sent;
    /// `None` until the first answer.
    sent: Option<(i64, i64, i64)>,
}

/// One client's session: its partitions, in the order they are read.
pub struct Session {
    /// The epoch the next incremental fetch must carry.
    next_epoch: i32,
    partitions: HashMap<PartitionKey, Cached>,
    order: BTreeMap<u64, PartitionKey>,
    next_seq: u64,
    /// Partitions of all sessions, shared with the cache.
    total: Arc<AtomicUsize>,
}

impl Session {
    fn new(total: Arc<AtomicUsize>) -> Self {
        Self {
            next_epoch: 1,
            partitions: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            total,
        }
    }

    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Adds `key`, or updates its fetch position; returns whether it is new.
    fn upsert(&mut self, key: PartitionKey, params: FetchPartition) -> bool {
        if let Some(cached) = self.partitions.get_mut(&key) {
            cached.params = params;
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.partitions.insert(key, Cached { params, seq, sent: None });
        self.total.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn remove(&mut self, key: &PartitionKey) {
        if let Some(cached) = self.partitions.remove(key) {
            self.order.remove(&cached.seq);
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Applies an incremental fetch at `epoch`: `changed` partitions are
    /// added or moved to their new position, `forgotten` ones dropped.
    /// Fails, changing nothing, if `epoch` is not the expected one.
    pub fn apply(
        &mut self,
        epoch: i32,
        changed: impl IntoIterator<Item = (PartitionKey, FetchPartition)>,
        forgotten: impl IntoIterator<Item = PartitionKey>,
    ) -> Result<(), SessionError> {
        if epoch != self.next_epoch {
            return Err(SessionError::InvalidEpoch);
        }
        // Kafka's epochs wrap from i32::MAX to 1 (0 and -1 are taken).
        self.next_epoch = if self.next_epoch == i32::MAX { 1 } else { self.next_epoch + 1 };
        for key in forgotten {
            self.remove(&key);
        }
        for (key, params) in changed {
            self.upsert(key, params);
        }
        Ok(())
    }

    /// The partitions to read, in session order.
    pub fn to_read(&self) -> impl Iterator<Item = (&PartitionKey, &FetchPartition)> {
        self.order
            .values()
            .filter_map(|key| self.partitions.get(key).map(|c| (key, &c.params)))
    }

    /// Records what a partition's answer told the client, and says whether
    /// an incremental response must carry it: it has records or an error,
    /// or an offset the client knows has moved. A partition that had
    /// records goes to the end of the read order, so a response full at
    /// `max_bytes` starts from the others next time (as Kafka does).
    pub fn record_answer(&mut self, key: &PartitionKey, answer: Answer) -> bool {
        let Some(cached) = self.partitions.get_mut(key) else {
            return false;
        };
        let offsets = (answer.high_watermark, answer.last_stable_offset, answer.log_start_offset);
        let changed = cached.sent != Some(offsets);
        cached.sent = Some(offsets);
        if answer.has_records {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.remove(&cached.seq);
            cached.seq = seq;
            self.order.insert(seq, key.clone());
        }
        changed || answer.has_records || answer.error_code != 0
    }

    #[cfg(test)]
    fn order(&self) -> Vec<PartitionKey> {
        self.order.values().cloned().collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.total.fetch_sub(self.partitions.len(), Ordering::Relaxed);
    }
}

struct Entry {
    session: Arc<Mutex<Session>>,
    /// The principal that created it: no one else may use it.
    owner: String,
    last_used_ms: i64,
}

/// The broker's fetch sessions, bounded by `slots` sessions and
/// `max_partitions` partitions in all.
pub struct SessionCache {
    slots: usize,
    max_partitions: usize,
    sessions: HashMap<i32, Entry>,
    total: Arc<AtomicUsize>,
    ids: Seeded,
}

/// Why a new session was not created.
#[derive(Debug, PartialEq, Eq)]
pub enum NotCreated {
    /// Every slot holds a session used within EVICTION_IDLE_MS.
    NoSlot,
    /// Its partitions would pass the cache's partition bound.
    TooManyPartitions,
}

impl SessionCache {
    /// `seed` picks the session ids: the composition root passes entropy
    /// so ids differ across restarts (a client's stale id then most likely
    /// names no session rather than someone else's).
    pub fn new(slots: usize, max_partitions: usize, seed: u64) -> Self {
        Self {
            slots,
            max_partitions,
            sessions: HashMap::new(),
            total: Arc::new(AtomicUsize::new(0)),
            ids: Seeded::new(seed),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Partitions held over all sessions.
    pub fn partitions(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn close(&mut self, id: i32, owner: &str) {
        if self.sessions.get(&id).is_some_and(|e| e.owner == owner) {
            self.sessions.remove(&id);
        }
    }

    /// The session `id`, if it exists and belongs to `owner`; marks it used.
    pub fn get(&mut self, id: i32, owner: &str, now_ms: i64) -> Result<Arc<Mutex<Session>>, SessionError> {
        match self.sessions.get_mut(&id) {
            Some(entry) if entry.owner == owner => {
                entry.last_used_ms = now_ms;
                Ok(entry.session.clone())
            }
            _ => Err(SessionError::NotFound),
        }
    }

    /// Whether the partitions of all sessions are past the bound (after an
    /// incremental fetch added some): the caller then drops the session.
    pub fn over_partition_bound(&self) -> bool {
        self.partitions() > self.max_partitions
    }

    /// A new session for `owner` holding `partitions`, evicting the least
    /// recently used session idle for EVICTION_IDLE_MS if every slot is taken.
    pub fn create(
        &mut self,
        owner: &str,
        partitions: impl IntoIterator<Item = (PartitionKey, FetchPartition)>,
        now_ms: i64,
    ) -> Result<(i32, Arc<Mutex<Session>>), NotCreated> {
        if self.sessions.len() >= self.slots {
            let idle = self
                .sessions
                .iter()
                .filter(|(_, e)| now_ms - e.last_used_ms >= EVICTION_IDLE_MS)
                .min_by_key(|(_, e)| e.last_used_ms)
                .map(|(id, _)| *id)
                .ok_or(NotCreated::NoSlot)?;
            self.sessions.remove(&idle);
        }
        let mut session = Session::new(self.total.clone());
        for (key, params) in partitions {
            session.upsert(key, params);
            if self.over_partition_bound() {
                return Err(NotCreated::TooManyPartitions);
            }
        }
        let id = self.fresh_id();
        let session = Arc::new(Mutex::new(session));
        self.sessions.insert(
            id,
            Entry {
                session: session.clone(),
                owner: owner.to_string(),
                last_used_ms: now_ms,
            },
        );
        Ok((id, session))
    }

    fn fresh_id(&mut self) -> i32 {
        loop {
            let id = self.ids.below(i32::MAX as u64) as i32;
            if id > 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    fn key(topic: &str, partition: i32) -> PartitionKey {
        (TopicName(StrBytes::from_string(topic.to_string())), partition)
    }

    fn at(offset: i64) -> FetchPartition {
        FetchPartition::default()
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)
    }

    fn answer(hw: i64, has_records: bool) -> Answer {
        Answer {
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: 0,
            error_code: 0,
            has_records,
        }
    }

    fn three(cache: &mut SessionCache) -> (i32, Arc<Mutex<Session>>) {
        let partitions = (0..3).map(|p| (key("t", p), at(0)));
        cache.create("User:a", partitions, 0).unwrap()
    }

    #[test]
    fn session_fields_say_what_the_fetch_is() {
        assert_eq!(classify(0, -1), Kind::Sessionless { close: None });
        assert_eq!(classify(7, -1), Kind::Sessionless { close: Some(7) });
        assert_eq!(classify(0, 0), Kind::New { close: None });
        assert_eq!(classify(7, 0), Kind::New { close: Some(7) });
        assert_eq!(classify(7, 3), Kind::Incremental { id: 7, epoch: 3 });
        // A positive epoch with no session names session 0, which never exists.
        let mut cache = SessionCache::new(10, 100, 1);
        assert_eq!(cache.get(0, "User:a", 0).err(), Some(SessionError::NotFound));
    }

    #[test]
    fn first_answer_sends_everything_then_only_what_changed() {
        let mut cache = SessionCache::new(10, 100, 1);
        let (id, session) = three(&mut cache);
        assert!(id > 0);
        let mut s = session.lock();
        for p in 0..3 {
            assert!(s.record_answer(&key("t", p), answer(0, false)));
        }
        s.apply(1, [], []).unwrap();
        // Nothing new: nothing to send.
        assert!(!s.record_answer(&key("t", 0), answer(0, false)));
        // A moved high watermark, records, or an error must be sent.
        assert!(s.record_answer(&key("t", 1), answer(5, false)));
        assert!(!s.record_answer(&key("t", 1), answer(5, false)));
        assert!(s.record_answer(&key("t", 2), answer(0, true)));
        let error = Answer {
            error_code: 6,
            ..answer(0, false)
        };
        assert!(s.record_answer(&key("t", 0), error));
        assert!(s.record_answer(&key("t", 0), error));
    }

    #[test]
    fn epochs_must_follow_in_order() {
        let mut cache = SessionCache::new(10, 100, 1);
        let (_, session) = three(&mut cache);
        let mut s = session.lock();
        assert_eq!(s.apply(2, [], []), Err(SessionError::InvalidEpoch));
        s.apply(1, [], []).unwrap();
        // A retried request with the same epoch is refused.
        assert_eq!(s.apply(1, [], []), Err(SessionError::InvalidEpoch));
        s.apply(2, [], []).unwrap();
        s.next_epoch = i32::MAX;
        s.apply(i32::MAX, [], []).unwrap();
        s.apply(1, [], []).unwrap();
    }

    #[test]
    fn incremental_fetches_add_move_and_forget_partitions() {
        let mut cache = SessionCache::new(10, 100, 1);
        let (_, session) = three(&mut cache);
        let mut s = session.lock();
        s.apply(1, [(key("t", 1), at(42)), (key("u", 0), at(7))], [key("t", 0)]).unwrap();
        let read: Vec<_> = s.to_read().map(|(k, p)| (k.clone(), p.fetch_offset)).collect();
        assert_eq!(read, vec![(key("t", 1), 42), (key("t", 2), 0), (key("u", 0), 7)]);
        assert_eq!(cache.partitions(), 3);
    }

    #[test]
    fn partitions_with_records_go_to_the_back() {
        let mut cache = SessionCache::new(10, 100, 1);
        let (_, session) = three(&mut cache);
        let mut s = session.lock();
        s.record_answer(&key("t", 0), answer(3, true));
        assert_eq!(s.order(), vec![key("t", 1), key("t", 2), key("t", 0)]);
        s.record_answer(&key("t", 2), answer(3, false));
        assert_eq!(s.order(), vec![key("t", 1), key("t", 2), key("t", 0)]);
    }

    #[test]
    fn sessions_belong_to_their_principal() {
        let mut cache = SessionCache::new(10, 100, 1);
        let (id, _) = three(&mut cache);
        assert_eq!(cache.get(id, "User:mallory", 0).err(), Some(SessionError::NotFound));
        cache.close(id, "User:mallory");
        assert!(cache.get(id, "User:a", 0).is_ok());
        cache.close(id, "User:a");
        assert_eq!(cache.get(id, "User:a", 0).err(), Some(SessionError::NotFound));
        assert_eq!(cache.partitions(), 0);
    }

    #[test]
    fn a_full_cache_evicts_only_idle_sessions() {
        let mut cache = SessionCache::new(2, 100, 1);
        let (first, _) = cache.create("User:a", [(key("t", 0), at(0))], 0).unwrap();
        let (second, _) = cache.create("User:a", [(key("t", 1), at(0))], 1_000).unwrap();
        assert_eq!(
            cache.create("User:a", [(key("t", 2), at(0))], 2_000).err(),
            Some(NotCreated::NoSlot)
        );
        // The first is idle long enough once EVICTION_IDLE_MS has passed
        // since its last use; the second, used later, stays.
        let (third, _) = cache.create("User:a", [(key("t", 2), at(0))], EVICTION_IDLE_MS).unwrap();
        assert!(cache.get(first, "User:a", EVICTION_IDLE_MS).is_err());
        assert!(cache.get(second, "User:a", EVICTION_IDLE_MS).is_ok());
        assert!(cache.get(third, "User:a", EVICTION_IDLE_MS).is_ok());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.partitions(), 2);
    }

    #[test]
    fn the_partition_bound_holds_over_all_sessions() {
        let mut cache = SessionCache::new(10, 4, 1);
        three(&mut cache);
        let two = (0..2).map(|p| (key("u", p), at(0)));
        assert_eq!(cache.create("User:a", two, 0).err(), Some(NotCreated::TooManyPartitions));
        // The refused session's partitions were given back.
        assert_eq!(cache.partitions(), 3);
        let (id, session) = cache.create("User:a", [(key("u", 0), at(0))], 0).unwrap();
        session.lock().apply(1, [(key("u", 1), at(0))], []).unwrap();
        assert!(cache.over_partition_bound());
        cache.close(id, "User:a");
        drop(session);
        assert!(!cache.over_partition_bound());
    }

    #[test]
    fn ids_are_positive_and_distinct() {
        let mut cache = SessionCache::new(1000, 1000, 42);
        let mut ids = std::collections::HashSet::new();
        for p in 0..1000 {
            let (id, _) = cache.create("User:a", [(key("t", p), at(0))], 0).unwrap();
            assert!(id > 0);
            assert!(ids.insert(id));
        }
    }
}
