//! The API server: `GET /metrics` in Prometheus text format and `GET /health`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::topology::RunStats;
use crate::transforms::optimizely::datafile_refresh::DatafileStatus;

/// Settings of the API server (`[api]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port of the API server, such as `127.0.0.1:9598`. Metrics are collected only when
    /// this table is set.
    pub address: SocketAddr,
}

/// The data the API server reports.
pub struct ApiState {
    /// The recorder's handle, rendered on `/metrics`.
    pub handle: PrometheusHandle,
    /// Event counts by outcome.
    pub stats: Arc<RunStats>,
    /// The datafile status of each refreshed transform, by component id.
    pub datafiles: Vec<(String, Arc<Mutex<DatafileStatus>>)>,
    /// Set once every source has stopped and the pipeline drains.
    pub draining: Arc<AtomicBool>,
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState, shutdown: CancellationToken) {
    let address = listener.local_addr().map(|address| address.to_string()).unwrap_or_default();
    tracing::info!(%address, "API server listening on /metrics and /health");
    let router =
        Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state(Arc::new(state));
    let result = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(error) = result {
        tracing::error!(%address, %error, "API server failed");
    }
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    // Values that are state rather than counts are set at scrape time, so they are never stale.
    let summary = state.stats.summary();
    for (outcome, value) in [
        ("received", summary.received),
        ("sent", summary.sent),
        ("dead_lettered", summary.dead_lettered),
        ("skipped", summary.skipped),
        ("undelivered", summary.undelivered),
        ("pending", summary.pending()),
    ] {
        gauge!("pipeline_events", "outcome" => outcome).set(value as f64);
    }
    for (component_id, status) in &state.datafiles {
        let status = status.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        gauge!("datafile_age_seconds", "component_id" => component_id.clone()).set(status.age().as_secs_f64());
        gauge!("datafile_consecutive_failures", "component_id" => component_id.clone())
            .set(f64::from(status.consecutive_failures));
        gauge!("datafile_revision", "component_id" => component_id.clone())
            .set(status.revision.parse::<f64>().unwrap_or(f64::NAN));
    }

    let body = state.handle.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "draining"}))).into_response()
    } else {
        (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
    }
}
