//! The Kafka edge: frames in, frames out, on top of the `kafka-protocol`
//! crate's codec. Never touches a socket: `server/` hands it whole frames.
//!
//! A request is handled in two steps. The connection awaits `handle_frame`
//! before it reads the next request, so every request takes effect in the
//! order it arrived and none observes state older than an earlier request's
//! effect (Kafka processes a connection's requests one at a time). For
//! Produce that first step validates and appends, and `handle_frame` returns
//! a future that waits for durability: produce requests pipeline, their
//! fsyncs overlap. Every other request is answered completely in the first
//! step, and its future is ready. The connection writes the responses in
//! request order.

mod acls;
mod configs;
mod consumer_groups;
mod delete_records;
mod describe_producers;
mod describe_topic_partitions;
pub mod error_code;
mod fetch;
mod fetch_session;
mod groups;
mod metadata;
mod offset_fetch;
mod offsets;
mod produce;
mod quotas;
mod replica_fetch;
mod sasl;
mod throttle;
pub mod timing;
mod topics;
mod trace;
mod transactions;
pub mod versions;
mod write_txn_markers;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::broker::Broker;
use crate::memory::Reservation;
use crate::metrics::ApiLabels;
use crate::quota;
use crate::security::acl::{Operation, Requester, ResourceType, CLUSTER_NAME};
use crate::security::sasl::{Admission, ListenerSecurity, Session};
use crate::security::Principal;
use throttle::ThrottleTime;
use timing::Waits;
pub use trace::{Arrival, Queued, RequestTrace, Written, REQUEST_TARGET};
use tracing::Instrument;

/// A response frame, with the share of `max_response_memory_bytes` it
/// holds until the connection has written it.
pub struct Response {
    pub frame: Bytes,
    pub memory: Reservation,
    /// The throttle (ms) the frame tells its client, when the handler set
    /// one of its own (Fetch's consumer byte rate).
    pub throttle_ms: i32,
    /// What its handler waited for, for the slow-request log.
    pub waits: Waits,
}

impl From<Bytes> for Response {
    fn from(frame: Bytes) -> Self {
        Self {
            frame,
            memory: Reservation::none(),
            throttle_ms: 0,
            waits: Waits::default(),
        }
    }
}

/// A response still being completed; `None` when the request gets no
/// response (Produce with acks=0).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Option<Response>> + Send>>;

/// Why a frame could not be handled. The connection is closed, as Kafka
/// does, because the stream can no longer be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("API {api} is not supported")]
    UnsupportedApi { api: &'static str },
    #[error("API {api} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        api: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("cannot decode {api} v{version}: {message}")]
    Decode { api: &'static str, version: i16, message: String },
    #[error("{0}")]
    NotAuthenticated(String),
}

impl FrameError {
    /// Short label for the protocol-errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::TooShort(_) => "too_short",
            FrameError::UnknownApiKey(_) => "unknown_api_key",
            FrameError::UnsupportedApi { .. } => "unsupported_api",
            FrameError::UnsupportedVersion { .. } => "unsupported_version",
            FrameError::Decode { .. } => "decode",
            FrameError::NotAuthenticated(_) => "not_authenticated",
        }
    }
}

/// One client connection as the protocol sees it: who it is, whether it
/// must be closed once the response on its way is written, and how long
/// to read nothing more from it (a client over its quota).
#[derive(Debug)]
pub struct Connection {
    pub session: Session,
    pub peer: SocketAddr,
    pub close_after_response: bool,
    /// Milliseconds the last request's client was told to wait: the
    /// connection reads no further request for that long (Kafka's mute).
    pub throttle_ms: i32,
}

impl Connection {
    pub fn new(session: Session, peer: SocketAddr) -> Self {
        Self {
            session,
            peer,
            close_after_response: false,
            throttle_ms: 0,
        }
    }
}

/// What a handler knows about the request it serves.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub client_host: String,
    pub principal: Principal,
    /// The listener the request came in on: Metadata answers with each
    /// broker's address on it.
    pub listener: Arc<ListenerSecurity>,
    /// The throttle (ms) every response to this request carries: what its
    /// client owes on its quotas (`throttle`).
    pub throttle_time_ms: i32,
    /// The security view holding the client quotas in force, when any is
    /// set and the request is not exempt (`throttle::before`).
    pub quotas: Option<Arc<crate::security::runtime::View>>,
}

impl RequestContext {
    pub fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: &self.client_host,
        }
    }

    /// Whether the requester may do `operation` on the resource; a refusal
    /// is counted and logged.
    pub fn allowed(&self, broker: &Broker, operation: Operation, kind: ResourceType, name: &str) -> bool {
        broker.security.allows(self.requester(), &self.listener.name, operation, kind, name)
    }

    /// Like `allowed`, silently: for what a listing leaves out.
    pub fn permits(&self, broker: &Broker, operation: Operation, kind: ResourceType, name: &str) -> bool {
        broker.security.permits(self.requester(), operation, kind, name)
    }

    pub fn on_cluster(&self, broker: &Broker, operation: Operation) -> bool {
        self.allowed(broker, operation, ResourceType::Cluster, CLUSTER_NAME)
    }
}

fn api_name(key: ApiKey) -> &'static str {
    versions::name(key)
}

/// Encodes a response frame: length, header, body, with the request's
/// throttle time.
pub fn encode_response<R: Encodable + HeaderVersion + ThrottleTime + Clone>(ctx: &RequestContext, response: &R) -> Bytes {
    let throttled;
    let response = if ctx.throttle_time_ms > 0 {
        // Only a throttled client's responses pay for this copy.
        let mut copy = response.clone();
        copy.raise_throttle(ctx.throttle_time_ms);
        throttled = copy;
        &throttled
    } else {
        response
    };
    let bytes = encode_with_header_version(ctx.correlation_id, R::header_version(ctx.api_version), ctx.api_version, response);
    if bytes.is_empty() {
        tracing::error!(
            api = api_name(ctx.api_key),
            version = ctx.api_version,
            "response not encodable at this version"
        );
    }
    bytes
}

fn encode_with_header_version<R: Encodable>(correlation_id: i32, header_version: i16, version: i16, response: &R) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, header_version)
        .and_then(|()| response.encode(&mut buf, version));
    if let Err(e) = encoded {
        // Our own response failed to encode: a bug, not a client's fault.
        tracing::error!(error = %e, "failed to encode a response");
        return Bytes::new();
    }
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

fn ready(response: impl Into<Response>) -> ResponseFuture {
    Box::pin(std::future::ready(Some(response.into())))
}

/// A request frame, decoded.
#[derive(Debug)]
pub enum Decoded {
    Request {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        client_id: String,
        request: Box<RequestKind>,
    },
    /// An ApiVersions request newer than we know; its body is not decoded.
    ApiVersionsTooNew { correlation_id: i32 },
}

/// Decodes one request frame (without its length prefix). Pure: this is
/// what the `request_decode` fuzz target drives.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    let api = api_name(api_key);
    let Some(range) = versions::supported(api_key) else {
        return Err(FrameError::UnsupportedApi { api });
    };
    if api_key == ApiKey::ApiVersions && version > range.max {
        return Ok(Decoded::ApiVersionsTooNew { correlation_id });
    }
    if version < range.min || version > range.max {
        return Err(FrameError::UnsupportedVersion {
            api,
            version,
            min: range.min,
            max: range.max,
        });
    }
    let decode_err = |e: anyhow::Error| FrameError::Decode {
        api,
        version,
        message: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version)).map_err(decode_err)?;
    let request = Box::new(RequestKind::decode(api_key, &mut frame, version).map_err(decode_err)?);
    let client_id = header.client_id.as_ref().map(StrBytes::to_string).unwrap_or_default();
    Ok(Decoded::Request {
        api_key,
        version,
        correlation_id,
        client_id,
        request,
    })
}

/// Handles one request frame (without its length prefix): applies its
/// effect, and returns what is left to wait for before the response.
pub async fn handle_frame(broker: &Arc<Broker>, frame: Bytes, arrival: Arrival, connection: &mut Connection) -> Result<Queued, FrameError> {
    let request_bytes = frame.len();
    let (api_key, version, correlation_id, client_id, request) = match decode_request(frame)? {
        Decoded::Request {
            api_key,
            version,
            correlation_id,
            client_id,
            request,
        } => (api_key, version, correlation_id, client_id, request),
        Decoded::ApiVersionsTooNew { correlation_id } => {
            // KIP-511: answer a newer client in a v0 body so it can pick a
            // version we share.
            let response = metadata::api_versions_response(kafka_protocol::ResponseError::UnsupportedVersion.code());
            broker.metrics.requests.get_or_create(&ApiLabels { api: "ApiVersions" }).inc();
            let span = tracing::info_span!(target: REQUEST_TARGET, "request", api = "ApiVersions", correlation_id);
            return Ok(Queued {
                response: ready(encode_with_header_version(correlation_id, 0, 0, &response)),
                trace: RequestTrace::new(span, "ApiVersions", request_bytes, arrival, Instant::now()),
            });
        }
    };
    let api = api_name(api_key);
    // Every event while the request is handled carries these fields. Its
    // own target lets an operator turn request spans off
    // (`RUST_LOG=info,sediment::request=off`): they cost about 1.7 µs of CPU
    // per request under the text log.
    let span = tracing::info_span!(target: REQUEST_TARGET, "request", api, version, client_id = %client_id, correlation_id);
    if let Admission::Close(reason) = connection.session.admit(api_key, crate::clock::now_ms()) {
        return Err(FrameError::NotAuthenticated(reason));
    }
    let mut ctx = RequestContext {
        api_key,
        api_version: version,
        correlation_id,
        client_id,
        client_host: connection.peer.ip().to_string(),
        principal: connection.session.principal.clone(),
        listener: connection.session.listener.clone(),
        throttle_time_ms: 0,
        quotas: None,
    };
    let started = Instant::now();
    let metrics = broker.metrics.clone();
    // Whether a client quota could apply to this request.
    let quotas_apply = !throttle::is_quota_exempt(&request) && throttle::before(broker, &mut ctx, &request, request_bytes);
    // Kafka leaves acks=0 produce out of the request-time quota.
    let timed = !matches!(&*request, RequestKind::Produce(req) if req.acks == 0);
    // The first step yields the rest of the request, which the writer awaits.
    #[allow(clippy::async_yields_async)]
    let response = async {
        match *request {
            // The SASL exchange changes the connection's state.
            RequestKind::SaslHandshake(req) => ready(sasl::handle_handshake(&ctx, connection, req)),
            RequestKind::SaslAuthenticate(req) => ready(sasl::handle_authenticate(broker, &ctx, connection, req).await),
            request if quotas_apply => {
                let quota_ctx = ctx.clone();
                let ((response, handler_throttle), busy) = quota::Busy::new(dispatch(broker, ctx, request)).await;
                if timed {
                    throttle::after(broker, &quota_ctx, busy);
                }
                connection.throttle_ms = quota_ctx.throttle_time_ms.max(handler_throttle);
                response
            }
            request => dispatch(broker, ctx, request).await.0,
        }
    }
    .instrument(span.clone())
    .await;
    let handled = Instant::now();
    let response = Box::pin(
        async move {
            let out = response.await;
            metrics.requests.get_or_create(&ApiLabels { api }).inc();
            metrics
                .request_duration
                .get_or_create(&ApiLabels { api })
                .observe(started.elapsed().as_secs_f64());
            out
        }
        .instrument(span.clone()),
    );
    Ok(Queued {
        response,
        trace: RequestTrace::new(span, api, request_bytes, arrival, handled),
    })
}

/// Handles a request other than SASL's; returns its response, and the
/// throttle its handler set on its own (Fetch's).
async fn dispatch(broker: &Arc<Broker>, ctx: RequestContext, request: RequestKind) -> (ResponseFuture, i32) {
    let b = broker;
    let bytes = match request {
        // Produce alone pipelines: its effect (the append) is done when
        // `handle` returns, and only the wait for durability is left.
        RequestKind::Produce(req) => return (produce::handle(broker, ctx, req).await, 0),
        RequestKind::ApiVersions(_) => encode_response(&ctx, &metadata::api_versions_response(0)),
        // Fetch's response carries its share of the response memory budget.
        RequestKind::Fetch(req) => {
            let response = fetch::handle(b, &ctx, req).await;
            let throttle = response.throttle_ms;
            return (ready(response), throttle);
        }
        RequestKind::Metadata(req) => metadata::handle_metadata(b, &ctx, req).await,
        RequestKind::DescribeTopicPartitions(req) => describe_topic_partitions::handle(broker, &ctx, req),
        RequestKind::DescribeCluster(req) => metadata::handle_describe_cluster(broker, &ctx, req),
        RequestKind::ListConfigResources(_) => configs::handle_list_client_metrics_resources(broker, &ctx),
        RequestKind::FindCoordinator(req) => metadata::handle_find_coordinator(broker, &ctx, req).await,
        RequestKind::ListOffsets(req) => offsets::handle_list_offsets(b, &ctx, req).await,
        RequestKind::OffsetForLeaderEpoch(req) => offsets::handle_offset_for_leader_epoch(broker, &ctx, req),
        RequestKind::InitProducerId(req) => offsets::handle_init_producer_id(b, &ctx, req).await,
        RequestKind::CreateTopics(req) => topics::handle_create_topics(b, &ctx, req).await,
        RequestKind::DeleteTopics(req) => topics::handle_delete_topics(b, &ctx, req).await,
        RequestKind::DeleteRecords(req) => delete_records::handle(b, &ctx, req).await,
        RequestKind::CreatePartitions(req) => topics::handle_create_partitions(b, &ctx, req).await,
        RequestKind::DescribeConfigs(req) => configs::handle_describe_configs(broker, &ctx, req),
        RequestKind::AlterConfigs(req) => configs::handle_alter_configs(b, &ctx, req).await,
        RequestKind::IncrementalAlterConfigs(req) => configs::handle_incremental_alter_configs(b, &ctx, req).await,
        RequestKind::JoinGroup(req) => return (held_for_rebalance(groups::handle_join(b, &ctx, req)).await, 0),
        RequestKind::SyncGroup(req) => return (held_for_rebalance(groups::handle_sync(b, &ctx, req)).await, 0),
        RequestKind::Heartbeat(req) => groups::handle_heartbeat(broker, &ctx, req),
        RequestKind::LeaveGroup(req) => groups::handle_leave(broker, &ctx, req),
        RequestKind::OffsetCommit(req) => groups::handle_offset_commit(b, &ctx, req).await,
        RequestKind::OffsetFetch(req) => offset_fetch::handle(broker, &ctx, req),
        RequestKind::ListGroups(req) => groups::handle_list_groups(broker, &ctx, req),
        RequestKind::ConsumerGroupHeartbeat(req) => consumer_groups::handle_heartbeat(broker, &ctx, req),
        RequestKind::ConsumerGroupDescribe(req) => consumer_groups::handle_describe(broker, &ctx, req),
        RequestKind::DescribeGroups(req) => groups::handle_describe_groups(broker, &ctx, req),
        RequestKind::DeleteGroups(req) => groups::handle_delete_groups(b, &ctx, req).await,
        RequestKind::OffsetDelete(req) => groups::handle_offset_delete(b, &ctx, req).await,
        RequestKind::AddPartitionsToTxn(req) => transactions::handle_add_partitions(broker, &ctx, req).await,
        RequestKind::AddOffsetsToTxn(req) => transactions::handle_add_offsets(broker, &ctx, req).await,
        RequestKind::TxnOffsetCommit(req) => transactions::handle_txn_offset_commit(broker, &ctx, req).await,
        RequestKind::EndTxn(req) => transactions::handle_end(b, &ctx, req).await,
        RequestKind::WriteTxnMarkers(req) => write_txn_markers::handle(broker, &ctx, req).await,
        RequestKind::DescribeTransactions(req) => transactions::handle_describe(broker, &ctx, req),
        RequestKind::ListTransactions(req) => transactions::handle_list(broker, &ctx, req),
        RequestKind::CreateAcls(req) => acls::handle_create(b, &ctx, req).await,
        RequestKind::DescribeAcls(req) => acls::handle_describe(broker, &ctx, req),
        RequestKind::DeleteAcls(req) => acls::handle_delete(b, &ctx, req).await,
        RequestKind::DescribeUserScramCredentials(req) => sasl::handle_describe_scram(broker, &ctx, req),
        RequestKind::AlterUserScramCredentials(req) => sasl::handle_alter_scram(b, &ctx, req).await,
        RequestKind::DescribeProducers(req) => describe_producers::handle(broker, &ctx, req),
        RequestKind::DescribeClientQuotas(req) => quotas::handle_describe(broker, &ctx, req),
        RequestKind::AlterClientQuotas(req) => quotas::handle_alter(b, &ctx, req).await,
        // `versions::supported` lets through only the APIs above.
        _ => return (Box::pin(std::future::ready(None)), 0),
    };
    (ready(bytes), 0)
}

/// JoinGroup and SyncGroup are held until their group's rebalance
/// completes, as the client asked: all their time is waiting by design,
/// not slowness.
async fn held_for_rebalance(handling: impl Future<Output = Bytes>) -> ResponseFuture {
    let started = Instant::now();
    let mut response = Response::from(handling.await);
    response.waits.by_design = started.elapsed();
    Box::pin(std::future::ready(Some(response)))
}

/// `StrBytes` from an owned string, for response fields.
pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    fn frame_of<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(5);
        header.encode(&mut buf, key.request_header_version(version)).unwrap();
        req.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn well_formed_request_decodes() {
        let frame = frame_of(ApiKey::Metadata, 9, &MetadataRequest::default());
        match decode_request(frame).unwrap() {
            Decoded::Request {
                api_key,
                version,
                correlation_id,
                ..
            } => {
                assert_eq!((api_key, version, correlation_id), (ApiKey::Metadata, 9, 5));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(decode_request(Bytes::from_static(b"abc")), Err(FrameError::TooShort(3))));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1])),
            Err(FrameError::UnknownApiKey(999))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1])),
            Err(FrameError::UnsupportedVersion { .. })
        ));
        // AlterPartition (56) is a controller API we do not serve.
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 56, 0, 0, 0, 0, 0, 1])),
            Err(FrameError::UnsupportedApi { .. })
        ));
        let mut huge = vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
        huge.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(
            matches!(decode_request(Bytes::from(huge)), Err(FrameError::Decode { .. })),
            "2^31 topics in 4 bytes"
        );
    }

    #[test]
    fn newer_api_versions_is_answered_not_refused() {
        let frame = Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 7, 0xff, 0xff]);
        assert!(matches!(
            decode_request(frame).unwrap(),
            Decoded::ApiVersionsTooNew { correlation_id: 7 }
        ));
    }

    #[test]
    fn every_decodable_version_of_every_api_survives_truncation() {
        // Encode a default request of each advertised version, then decode
        // every prefix of it: errors are fine, panics and aborts are not.
        for (key, min, max) in versions::SUPPORTED {
            for version in *min..=*max {
                let mut buf = BytesMut::new();
                let header = RequestHeader::default()
                    .with_request_api_key(*key as i16)
                    .with_request_api_version(version);
                header.encode(&mut buf, key.request_header_version(version)).unwrap();
                let full = buf.freeze();
                for cut in 0..full.len() {
                    let _ = decode_request(full.slice(..cut));
                }
            }
        }
    }
}
