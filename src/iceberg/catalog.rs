//! The read-only Iceberg REST catalog (the Apache Iceberg REST OpenAPI
//! spec), served under `/iceberg` on the admin HTTP port: one namespace
//! (`iceberg_namespace`, the cluster's name by default), one table per
//! topic whose table is enabled, named as the topic. Loading a table gives
//! the newest metadata in the bucket and the storage settings an engine
//! needs to read it. Engines cannot write: the broker owns the tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::location::TableLocation;
use super::table;
use crate::broker::Broker;
use crate::http::HttpState;

/// The spec's `ErrorModel`, inside `{"error": ...}`.
pub struct CatalogError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl CatalogError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    fn no_namespace(ns: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchNamespaceException",
            format!("Namespace does not exist: {ns}"),
        )
    }

    fn no_table(ns: &str, table: &str, why: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchTableException",
            format!("Table does not exist: {ns}.{table} ({why})"),
        )
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "code": self.status.as_u16()}});
        (self.status, Json(body)).into_response()
    }
}

type Shared = State<Arc<HttpState>>;

pub fn router() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(list_namespaces).post(read_only))
        .route("/v1/namespaces/{ns}", get(load_namespace).head(namespace_exists).delete(read_only))
        .route("/v1/namespaces/{ns}/tables", get(list_tables).post(read_only))
        .route(
            "/v1/namespaces/{ns}/tables/{table}",
            get(load_table).head(table_exists).post(read_only).delete(read_only),
        )
        .route("/v1/namespaces/{ns}/properties", post(read_only))
        .route("/v1/namespaces/{ns}/register", post(read_only))
        .route("/v1/tables/rename", post(read_only))
        .route("/v1/transactions/commit", post(read_only))
        .fallback(|| async { CatalogError::new(StatusCode::NOT_FOUND, "NotFoundException", "no such catalog endpoint") })
}

fn broker(state: &HttpState) -> Result<&Arc<Broker>, CatalogError> {
    state.broker.get().ok_or_else(|| {
        CatalogError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "the broker is still starting",
        )
    })
}

fn namespace(broker: &Broker) -> &str {
    broker.config.iceberg_namespace.as_deref().unwrap_or(&broker.config.cluster)
}

/// The namespace in a path, which must be ours (one level; levels would
/// be separated by 0x1F).
fn check_namespace<'a>(broker: &'a Broker, ns: &str) -> Result<&'a str, CatalogError> {
    let ours = namespace(broker);
    if ns == ours {
        Ok(ours)
    } else {
        Err(CatalogError::no_namespace(ns))
    }
}

/// Topics that have a table: user topics with `archive.iceberg.enabled`.
fn has_table(topic: &crate::broker::Topic) -> bool {
    !topic.name.starts_with("__") && topic.config().iceberg_enabled
}

async fn config() -> Json<serde_json::Value> {
    Json(json!({"defaults": {}, "overrides": {}}))
}

#[derive(Deserialize)]
struct ParentQuery {
    parent: Option<String>,
}

async fn list_namespaces(State(state): Shared, Query(q): Query<ParentQuery>) -> Result<Json<serde_json::Value>, CatalogError> {
    let broker = broker(&state)?;
    match q.parent {
        // Ours has no children.
        Some(parent) => {
            check_namespace(broker, &parent)?;
            Ok(Json(json!({"namespaces": []})))
        }
        None => Ok(Json(json!({"namespaces": [[namespace(broker)]]}))),
    }
}

async fn load_namespace(State(state): Shared, Path(ns): Path<String>) -> Result<Json<serde_json::Value>, CatalogError> {
    let broker = broker(&state)?;
    let ns = check_namespace(broker, &ns)?;
    Ok(Json(json!({"namespace": [ns], "properties": {"owner": "sediment"}})))
}

async fn namespace_exists(State(state): Shared, Path(ns): Path<String>) -> Result<StatusCode, CatalogError> {
    check_namespace(broker(&state)?, &ns).map(|_| StatusCode::NO_CONTENT)
}

async fn list_tables(State(state): Shared, Path(ns): Path<String>) -> Result<Json<serde_json::Value>, CatalogError> {
    let broker = broker(&state)?;
    let ns = check_namespace(broker, &ns)?;
    let mut names: Vec<String> = broker.topics().iter().filter(|t| has_table(t)).map(|t| t.name.clone()).collect();
    names.sort();
    let identifiers: Vec<_> = names.iter().map(|n| json!({"namespace": [ns], "name": n})).collect();
    Ok(Json(json!({"identifiers": identifiers})))
}

async fn find_table(broker: &Broker, ns: &str, name: &str) -> Result<(String, bytes::Bytes), CatalogError> {
    let ns = check_namespace(broker, ns)?;
    let topic = broker
        .topic(name)
        .ok_or_else(|| CatalogError::no_table(ns, name, "no such topic"))?;
    if !has_table(&topic) {
        return Err(CatalogError::no_table(ns, name, "archive.iceberg.enabled is false"));
    }
    let loc = TableLocation::new(&broker.archive.url, name);
    match table::newest_metadata(broker.archive.store.as_ref(), &loc).await {
        Ok(Some((version, bytes))) => Ok((loc.url(&loc.metadata_key(version)), bytes)),
        Ok(None) => Err(CatalogError::no_table(ns, name, "nothing archived yet")),
        Err(e) => Err(CatalogError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            format!("cannot read the table's metadata: {e}"),
        )),
    }
}

async fn load_table(State(state): Shared, Path((ns, name)): Path<(String, String)>) -> Result<Json<serde_json::Value>, CatalogError> {
    let broker = broker(&state)?;
    let (location, bytes) = find_table(broker, &ns, &name).await?;
    let metadata: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        CatalogError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("the table's newest metadata is unreadable ({e}); the next commit rebuilds it"),
        )
    })?;
    let config = storage_config(&broker.archive.url, broker.config.iceberg_vend_credentials, |k| {
        std::env::var(k).ok()
    });
    Ok(Json(json!({"metadata-location": location, "metadata": metadata, "config": config})))
}

async fn table_exists(State(state): Shared, Path((ns, name)): Path<(String, String)>) -> Result<StatusCode, CatalogError> {
    find_table(broker(&state)?, &ns, &name).await.map(|_| StatusCode::NO_CONTENT)
}

async fn read_only() -> CatalogError {
    CatalogError::new(
        StatusCode::NOT_ACCEPTABLE,
        "UnsupportedOperationException",
        "this catalog is read-only: Sediment commits its tables as it archives",
    )
}

/// Settings an engine needs to read the bucket, in the property names
/// pyiceberg, Spark and Trino take from a catalog's `config`: the S3
/// endpoint, region and addressing style the broker itself uses (its
/// `AWS_*` environment). Credentials only when `vend` is set.
pub fn storage_config(archive_url: &str, vend: bool, env: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    let mut config = BTreeMap::new();
    if !(archive_url.starts_with("s3://") || archive_url.starts_with("s3a://")) {
        return config;
    }
    if let Some(endpoint) = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT")) {
        config.insert("s3.endpoint".to_string(), endpoint);
    }
    if let Some(region) = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
        config.insert("s3.region".to_string(), region.clone());
        config.insert("client.region".to_string(), region);
    }
    let virtual_hosted = env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    config.insert("s3.path-style-access".to_string(), (!virtual_hosted).to_string());
    if vend {
        for (var, key) in [
            ("AWS_ACCESS_KEY_ID", "s3.access-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "s3.secret-access-key"),
            ("AWS_SESSION_TOKEN", "s3.session-token"),
        ] {
            if let Some(value) = env(var) {
                config.insert(key.to_string(), value);
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_config_passes_the_endpoint_and_credentials_only_when_asked() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".to_string()),
            "AWS_REGION" => Some("eu-west-1".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("id".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            _ => None,
        };
        let plain = storage_config("s3://b/p", false, env);
        assert_eq!(plain["s3.endpoint"], "http://127.0.0.1:9000");
        assert_eq!(plain["s3.path-style-access"], "true");
        assert_eq!(plain["client.region"], "eu-west-1");
        assert!(!plain.contains_key("s3.secret-access-key"));
        let vended = storage_config("s3://b/p", true, env);
        assert_eq!(vended["s3.secret-access-key"], "secret");
        assert!(storage_config("file:///tmp/a", true, env).is_empty());
    }
}
