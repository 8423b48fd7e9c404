//! Admin HTTP: `/healthz`, `/readyz`, `/metrics` (Prometheus text) and JSON
//! admin endpoints under `/v1/`.

pub mod tls;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use std::sync::OnceLock;

use crate::broker::Broker;
use crate::metrics::Metrics;

/// An admin error: a status and `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Serialize)]
struct PartitionView {
    partition: i32,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    size_bytes: u64,
    segments: usize,
}

#[derive(Serialize)]
struct TopicView {
    name: String,
    id: String,
    partitions: Vec<PartitionView>,
    configs: std::collections::BTreeMap<String, String>,
}

/// What the HTTP server sees. It starts before the broker has recovered its
/// logs, so `/healthz` answers during recovery and `/readyz` says 503.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub broker: OnceLock<Arc<Broker>>,
    /// The bearer token `/metrics` and `/v1` require, when one is configured.
    pub token: Option<String>,
}

impl HttpState {
    fn broker(&self) -> Result<&Arc<Broker>, ApiError> {
        self.broker
            .get()
            .ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the broker is still starting".into()))
    }
}

pub fn router(state: Arc<HttpState>) -> Router {
    // Probes stay open: the kubelet has no token.
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(cluster))
        .route("/v1/topics", get(list_topics))
        .route("/v1/topics/{name}", get(get_topic))
        .nest("/iceberg", crate::iceberg::catalog::router())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into()) })
        .with_state(state)
}

/// Refuses a request without `Authorization: Bearer <token>` when a token
/// is configured (compared in constant time).
async fn require_token(State(state): State<Arc<HttpState>>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(token) = &state.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), token.as_bytes()).is_err() {
            let mut refused = ApiError(StatusCode::UNAUTHORIZED, "a bearer token is required".into()).into_response();
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            return refused;
        }
    }
    next.run(request).await
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    match state.broker.get() {
        Some(broker) if broker.is_ready() => (StatusCode::OK, "ready\n").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    if let Some(broker) = state.broker.get() {
        broker.update_gauges();
    }
    let body = state.metrics.encode();
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        body,
    )
        .into_response()
}

fn view(topic: &crate::broker::Topic) -> TopicView {
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let log = p.lock_log();
            PartitionView {
                partition: p.index,
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.next_offset(),
                high_watermark: p.high_watermark(),
                size_bytes: log.size_bytes(),
                segments: log.segment_count(),
            }
        })
        .collect();
    TopicView {
        name: topic.name.clone(),
        id: topic.id.to_string(),
        partitions,
        configs: topic.overrides(),
    }
}

#[derive(Serialize)]
struct BrokerView {
    id: i32,
    address: String,
    http: String,
    /// The broker epoch (its etcd registration's create_revision); 0 on a single node.
    epoch: i64,
}

#[derive(Serialize)]
struct PartitionStateView {
    topic: String,
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline_replicas: Vec<i32>,
}

#[derive(Serialize)]
struct ClusterView {
    cluster: String,
    /// `etcd` or `single-node`.
    mode: &'static str,
    broker_id: i32,
    /// The controller's broker id, -1 while none is elected.
    controller: i32,
    brokers: Vec<BrokerView>,
    partitions: Vec<PartitionStateView>,
}

/// The brokers and every partition's leader, epoch, replicas and ISR, as
/// this broker sees them (from etcd in a cluster).
async fn cluster(State(state): State<Arc<HttpState>>) -> Result<Json<ClusterView>, ApiError> {
    let broker = state.broker()?;
    let me = broker.config.broker_id;
    let Some(link) = &broker.cluster else {
        let (host, port) = broker.config.advertised();
        let partitions = broker
            .topics()
            .iter()
            .flat_map(|t| {
                (0..t.partition_count()).map(|p| PartitionStateView {
                    topic: t.name.clone(),
                    partition: p,
                    leader: me,
                    leader_epoch: broker.leader_epoch,
                    replicas: vec![me],
                    isr: vec![me],
                    offline_replicas: Vec::new(),
                })
            })
            .collect();
        return Ok(Json(ClusterView {
            cluster: broker.config.cluster.clone(),
            mode: "single-node",
            broker_id: me,
            controller: me,
            brokers: vec![BrokerView {
                id: me,
                address: format!("{host}:{port}"),
                http: broker.config.http_listen.to_string(),
                epoch: 0,
            }],
            partitions,
        }));
    };
    let image = link.image();
    let brokers = image
        .brokers
        .iter()
        .map(|(id, (r, epoch))| BrokerView {
            id: *id,
            address: r.advertised.clone(),
            http: r.http.clone(),
            epoch: *epoch,
        })
        .collect();
    let mut partitions = Vec::new();
    for topic in image.topics.values() {
        for p in 0..topic.partitions {
            let Some((s, _)) = image.partitions.get(&(topic.id.clone(), p)) else {
                continue;
            };
            partitions.push(PartitionStateView {
                topic: topic.name.clone(),
                partition: p,
                leader: s.leader,
                leader_epoch: s.leader_epoch,
                replicas: s.replicas.clone(),
                isr: s.isr.clone(),
                offline_replicas: s.replicas.iter().copied().filter(|r| !image.brokers.contains_key(r)).collect(),
            });
        }
    }
    Ok(Json(ClusterView {
        cluster: broker.config.cluster.clone(),
        mode: "etcd",
        broker_id: me,
        controller: image.controller.map_or(-1, |(id, _)| id),
        brokers,
        partitions,
    }))
}

async fn list_topics(State(state): State<Arc<HttpState>>) -> Result<Json<Vec<TopicView>>, ApiError> {
    Ok(Json(state.broker()?.topics().iter().map(|t| view(t)).collect()))
}

async fn get_topic(State(state): State<Arc<HttpState>>, Path(name): Path<String>) -> Result<Json<TopicView>, ApiError> {
    let broker = state.broker()?;
    crate::broker::validate_topic_name(&name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let topic = broker
        .topic(&name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("unknown topic {name}")))?;
    Ok(Json(view(&topic)))
}
