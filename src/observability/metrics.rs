//! Metric names and per-component handles.
//!
//! Names follow Vector's component metrics where one exists (`component_received_events_total`,
//! `component_sent_events_total`, `component_discarded_events_total`, `component_errors_total`). Every
//! component metric carries the labels `component_id`, `component_kind` and `component_type`.
//!
//! Metrics go through the `metrics` facade: without a recorder (no `[api]` table, or a library caller
//! that installs none) every update is a no-op.

use metrics::{counter, histogram, Counter, Label};

/// The kind of a component, as the `component_kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// A source.
    Source,
    /// A transform.
    Transform,
    /// A sink.
    Sink,
}

impl ComponentKind {
    fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        }
    }
}

/// The metric handles of one component.
#[derive(Clone)]
pub struct ComponentMetrics {
    labels: Vec<Label>,
    received_events: Counter,
    received_bytes: Counter,
    sent_events: Counter,
    sent_bytes: Counter,
}

impl std::fmt::Debug for ComponentMetrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ComponentMetrics").field("labels", &self.labels).finish()
    }
}

impl ComponentMetrics {
    /// Registers the metrics of the component `id` of `kind` and `component_type`.
    pub fn new(kind: ComponentKind, id: &str, component_type: &str) -> ComponentMetrics {
        let labels = vec![
            Label::new("component_id", id.to_owned()),
            Label::new("component_kind", kind.as_str()),
            Label::new("component_type", component_type.to_owned()),
        ];
        ComponentMetrics {
            received_events: counter!("component_received_events_total", labels.clone()),
            received_bytes: counter!("component_received_bytes_total", labels.clone()),
            sent_events: counter!("component_sent_events_total", labels.clone()),
            sent_bytes: counter!("component_sent_bytes_total", labels.clone()),
            labels,
        }
    }

    /// Counts events received, and the bytes they took as input (0 when unknown).
    pub fn received(&self, events: u64, bytes: u64) {
        self.received_events.increment(events);
        self.received_bytes.increment(bytes);
    }

    /// Counts events sent on, and the bytes written or sent for them (0 when unknown).
    pub fn sent(&self, events: u64, bytes: u64) {
        self.sent_events.increment(events);
        self.sent_bytes.increment(bytes);
    }

    /// Counts events sent on a named output of a transform, such as `dropped`.
    pub fn sent_to_output(&self, output: &'static str, events: u64) {
        if events > 0 {
            counter!("component_sent_events_total", self.with(&[("output", output)])).increment(events);
        }
    }

    /// Counts events not passed on: dead-lettered (`intentional = false`) or skipped on purpose.
    pub fn discarded(&self, reason: &str, intentional: bool, events: u64) {
        let intentional = if intentional { "true" } else { "false" };
        let labels = self.with(&[("reason", reason), ("intentional", intentional)]);
        counter!("component_discarded_events_total", labels).increment(events);
    }

    /// Counts an error of `error_type`, such as `request_failed` or `write_failed`.
    pub fn error(&self, error_type: &str) {
        counter!("component_errors_total", self.with(&[("error_type", error_type)])).increment(1);
    }

    /// Records the size of a request batch in events and in encoded bytes.
    pub fn batch(&self, events: usize, bytes: usize) {
        histogram!("component_batch_events", self.labels.clone()).record(events as f64);
        histogram!("component_batch_bytes", self.labels.clone()).record(bytes as f64);
    }

    /// Registers a named counter that is specific to one component type, with labels added to the
    /// component's. A component that counts per event keeps the handle: looking a counter up by its
    /// labels took more than 1,000 instructions each time (`valgrind --tool=callgrind`).
    pub fn counter(&self, name: &'static str, extra: &[(&'static str, &str)]) -> Counter {
        counter!(name, self.with(extra))
    }

    fn with(&self, extra: &[(&'static str, &str)]) -> Vec<Label> {
        let mut labels = self.labels.clone();
        labels.extend(extra.iter().map(|(key, value)| Label::new(*key, value.to_string())));
        labels
    }
}

/// Records one HTTP request attempt of a sink: the response status (or `error` when no response
/// arrived) and the round-trip time.
pub fn http_attempt(component_id: &str, status: Option<u16>, elapsed: std::time::Duration) {
    let component_id = component_id.to_owned();
    counter!("http_client_requests_sent_total", "component_id" => component_id.clone()).increment(1);
    let status = status.map_or_else(|| "error".to_owned(), |status| status.to_string());
    counter!("http_client_responses_total", "component_id" => component_id.clone(), "status" => status).increment(1);
    histogram!("http_client_rtt_seconds", "component_id" => component_id).record(elapsed.as_secs_f64());
}

/// Counts one retry of an HTTP request of a sink.
pub fn http_retry(component_id: &str) {
    counter!("http_client_retries_total", "component_id" => component_id.to_owned()).increment(1);
}
