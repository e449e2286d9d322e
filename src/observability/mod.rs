//! Metrics in Prometheus text format, the health endpoint, and the progress line.
//!
//! [`metrics`] defines the metric names and per-component handles. [`api`] serves `GET /metrics` and
//! `GET /health` on the opt-in `[api] address`. [`progress`] formats the progress line of finite runs.

pub mod api;
pub mod metrics;
pub mod progress;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use self::metrics::{ComponentKind, ComponentMetrics};

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Bucket bounds of request round-trip times, in seconds.
const RTT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Bucket bounds of batch sizes in events.
const BATCH_EVENT_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
/// Bucket bounds of batch sizes in bytes.
const BATCH_BYTE_BUCKETS: &[f64] = &[1e3, 1e4, 1e5, 5e5, 1e6, 2e6, 3.5e6];

/// Installs the process-wide Prometheus recorder, once, and returns its handle.
///
/// A process has one metrics recorder, so every topology of a process shares it. Fails when another
/// recorder was installed first, such as a library caller's own.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("http_client_rtt_seconds".to_owned()), RTT_BUCKETS)
                .and_then(|builder| {
                    builder
                        .set_buckets_for_metric(Matcher::Full("component_batch_events".to_owned()), BATCH_EVENT_BUCKETS)
                })
                .and_then(|builder| {
                    builder
                        .set_buckets_for_metric(Matcher::Full("component_batch_bytes".to_owned()), BATCH_BYTE_BUCKETS)
                })
                .map_err(|error| error.to_string())?;
            builder
                .install_recorder()
                .map_err(|error| format!("cannot install the metrics recorder: {error}; another recorder is installed"))
        })
        .clone()
}
