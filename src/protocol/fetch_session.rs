//! Fetch sessions in the Fetch handler: turns a fetch into the full set of
//! partitions to read (from its session, for an incremental fetch) and
//! trims the answer to what the session's client has not been told yet.
//! The rules are in crate::fetch_session.

use std::sync::Arc;

use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use parking_lot::Mutex;

use super::RequestContext;
use crate::broker::Broker;
use crate::fetch_session::{classify, Answer, Kind, PartitionKey, Session, SessionCache, SessionError, NO_SESSION};
use crate::metrics::{KindLabels, Metrics};

/// A fetch resolved against its session.
pub(super) struct Plan {
    /// Every partition to read: the request's own, or its session's.
    pub request: FetchRequest,
    session: Option<(i32, Arc<Mutex<Session>>)>,
    /// Answer only what changed (else every partition read).
    incremental: bool,
}

pub(super) fn begin(broker: &Broker, ctx: &RequestContext, req: FetchRequest) -> Result<Plan, SessionError> {
    let owner = ctx.principal.to_string();
    let now_ms = crate::clock::now_ms();
    let count = |kind: &'static str| broker.metrics.fetch_session_requests.get_or_create(&KindLabels { kind }).inc();
    let full = |request, session| Plan {
        request,
        session,
        incremental: false,
    };
    match classify(req.session_id, req.session_epoch) {
        Kind::Sessionless { close } => {
            count("full");
            if let Some(id) = close {
                let mut cache = broker.fetch_sessions.lock();
                cache.close(id, &owner);
                publish(&cache, &broker.metrics);
            }
            Ok(full(req, None))
        }
        Kind::New { close } => {
            let mut cache = broker.fetch_sessions.lock();
            if let Some(id) = close {
                cache.close(id, &owner);
            }
            let created = cache.create(&owner, requested(&req.topics), now_ms);
            publish(&cache, &broker.metrics);
            drop(cache);
            match created {
                Ok(session) => {
                    count("session_new");
                    Ok(full(req, Some(session)))
                }
                Err(refused) => {
                    count("session_refused");
                    tracing::debug!(reason = ?refused, "fetch served without a session");
                    Ok(full(req, None))
                }
            }
        }
        Kind::Incremental { id, epoch } => {
            let applied = incremental(broker, &owner, id, epoch, &req, now_ms);
            count(if applied.is_ok() { "incremental" } else { "session_error" });
            let session = applied?;
            let request = session_request(&req, &session.lock());
            Ok(Plan {
                request,
                session: Some((id, session)),
                incremental: true,
            })
        }
    }
}

/// Applies an incremental fetch to its session. A session that would hold
/// more partitions than the cache allows is dropped.
fn incremental(
    broker: &Broker,
    owner: &str,
    id: i32,
    epoch: i32,
    req: &FetchRequest,
    now_ms: i64,
) -> Result<Arc<Mutex<Session>>, SessionError> {
    let session = broker.fetch_sessions.lock().get(id, owner, now_ms)?;
    let forgotten = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), *p)));
    session.lock().apply(epoch, requested(&req.topics), forgotten)?;
    let mut cache = broker.fetch_sessions.lock();
    let over = cache.over_partition_bound();
    if over {
        cache.close(id, owner);
    }
    publish(&cache, &broker.metrics);
    if over {
        return Err(SessionError::NotFound);
    }
    Ok(session)
}

/// The request's partitions, keyed for the session.
fn requested(topics: &[FetchTopic]) -> impl Iterator<Item = (PartitionKey, kafka_protocol::messages::fetch_request::FetchPartition)> + '_ {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| ((t.topic.clone(), p.partition), p.clone())))
}

/// `req` naming every partition of `session`, in its order. Runs of one
/// topic share an entry; a topic may come back later in the list, as in
/// Kafka's own session responses.
fn session_request(req: &FetchRequest, session: &Session) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, _), params) in session.to_read() {
        match topics.last_mut() {
            Some(last) if last.topic == *topic => last.partitions.push(params.clone()),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(topic.clone())
                    .with_partitions(vec![params.clone()]),
            ),
        }
    }
    let mut request = req.clone();
    request.topics = topics;
    request.forgotten_topics_data = Vec::new();
    request
}

impl Plan {
    /// Sets the session id and records what the answer tells the client;
    /// an incremental answer keeps only what changed.
    pub fn finish(&self, response: &mut FetchResponse) {
        response.session_id = self.session.as_ref().map_or(NO_SESSION, |(id, _)| *id);
        let Some((_, session)) = &self.session else {
            return;
        };
        let mut session = session.lock();
        for topic in &mut response.responses {
            let name = &topic.topic;
            topic.partitions.retain(|pd| {
                let changed = session.record_answer(&(name.clone(), pd.partition_index), answer_of(pd));
                changed || !self.incremental
            });
        }
        if self.incremental {
            response.responses.retain(|t| !t.partitions.is_empty());
        }
    }
}

fn answer_of(pd: &PartitionData) -> Answer {
    Answer {
        high_watermark: pd.high_watermark,
        last_stable_offset: pd.last_stable_offset,
        log_start_offset: pd.log_start_offset,
        error_code: pd.error_code,
        has_records: pd.records.as_ref().is_some_and(|r| !r.is_empty()),
    }
}

fn publish(cache: &SessionCache, metrics: &Metrics) {
    metrics.fetch_sessions.set(cache.len() as i64);
    metrics.fetch_session_partitions.set(cache.partitions() as i64);
}
