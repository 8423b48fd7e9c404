//! Admin HTTP: `/healthz`, `/readyz`, `/metrics` (Prometheus text) and JSON
//! admin endpoints under `/v1/`.

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
}

impl HttpState {
    fn broker(&self) -> Result<&Arc<Broker>, ApiError> {
        self.broker
            .get()
            .ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the broker is still starting".into()))
    }
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/topics", get(list_topics))
        .route("/v1/topics/{name}", get(get_topic))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into()) })
        .with_state(state)
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
