//! The `http_server` source: receives events over HTTP, from Segment libraries and log shippers.
//!
//! - Segment's tracking API shape: `POST /v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`,
//!   `/v1/group`, `/v1/alias` and `/v1/batch`, with the write key as the HTTP Basic user.
//! - A plain path (`path`, default `/events`) taking newline-delimited JSON or a JSON array, as the
//!   HTTP outputs of log shippers send.
//!
//! [`body`] parses bodies, [`acks`] collects a request's outcomes, `connections` accepts and limits
//! connections, and `server` handles requests.

pub mod acks;
pub mod body;
mod connections;
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{SourceContext, SourceError, DEFAULT_MAX_LINE_BYTES};

/// Settings of the `http_server` source.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerSourceConfig {
    /// Address and port to listen on, such as `127.0.0.1:8080` or `0.0.0.0:8080`.
    pub address: SocketAddr,
    /// Segment write keys accepted on the `/v1/*` paths, as the HTTP Basic user or the body's
    /// `writeKey`. An unknown key gets 401. Empty (the default) accepts any key, with a warning.
    #[serde(default)]
    pub write_keys: Vec<String>,
    /// The plain ingestion path. Default `/events`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Authentication of the plain path: `bearer_token`, or `username` and `password`. Default none.
    #[serde(default)]
    pub auth: Option<PlainAuth>,
    /// Maximum request body in bytes, compressed and after decompression. Larger bodies get 413.
    /// Default 4194304 (4 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Maximum length of one NDJSON line in bytes. Longer lines are dead-lettered with the reason
    /// `line_too_long`. Default 1048576 (1 MiB).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// When `true`, the response to a request is sent only once every event of it has its final
    /// outcome: 200 when all were delivered or skipped, otherwise a non-2xx listing each failed event.
    /// When `false` (the default), the response is sent as soon as the events enter the pipeline.
    #[serde(default)]
    pub acknowledgements: bool,
    /// With `acknowledgements`, the longest a request waits for its outcomes before it gets 503, so
    /// that the client retries. Default 30.
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: f64,
    /// Connections served at once at most. Further connections wait in the operating system's
    /// listen backlog until one closes. Default 128.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client gets to send a request's headers, counted from the first read of each
    /// request. An idle keep-alive connection is closed after as long. Default 10.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: f64,
    /// Seconds a client gets to send a request's whole body once its headers are read. A slower
    /// request gets 408 and its connection is closed. Default 30.
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: f64,
    /// Events one request may carry, after batches are expanded. A request with more gets 413,
    /// because every event takes far more memory than its text. Default 10000.
    #[serde(default = "default_max_events_per_request")]
    pub max_events_per_request: usize,
}

/// Authentication of the plain ingestion path.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainAuth {
    /// A token expected as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A user name expected with HTTP Basic authentication, together with `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password of `username`.
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for HttpServerSourceConfig {
    /// Formats the settings without the write keys and credentials.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HttpServerSourceConfig")
            .field("address", &self.address)
            .field("write_keys", &format_args!("<{} redacted>", self.write_keys.len()))
            .field("path", &self.path)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("acknowledgements", &self.acknowledgements)
            .field("ack_timeout_secs", &self.ack_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("body_read_timeout_secs", &self.body_read_timeout_secs)
            .field("max_events_per_request", &self.max_events_per_request)
            .finish()
    }
}

fn default_path() -> String {
    "/events".to_owned()
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

fn default_ack_timeout_secs() -> f64 {
    30.0
}

/// Returns the default of `max_connections`. A sidecar's clients, Segment libraries and log
/// shippers, keep a few connections each. Each connection reads one body of `max_body_bytes` at
/// most (plus its decompressed copy), so the limit also bounds the memory that request bodies take.
fn default_max_connections() -> usize {
    128
}

/// Returns the default of `max_events_per_request`: as many as one batch envelope may expand into,
/// which is more than fit in the 500 KB batch requests that Segment's HTTP Tracking API takes.
fn default_max_events_per_request() -> usize {
    crate::sources::decode::MAX_BATCH_MESSAGES
}

/// Returns the default of `header_read_timeout_secs`. Request headers are a few hundred bytes that clients
/// send at once, so ten seconds is generous on any network.
fn default_header_read_timeout_secs() -> f64 {
    10.0
}

/// Returns the default of `body_read_timeout_secs`. Segment's HTTP Tracking API takes batch requests
/// of 500 KB at most, and 30 seconds is enough for a whole 4 MiB body at about 1.2 Mbit/s.
fn default_body_read_timeout_secs() -> f64 {
    30.0
}

/// The Segment tracking API calls the source accepts, by the last path segment.
pub const SEGMENT_CALLS: &[&str] = &["track", "identify", "page", "screen", "group", "alias", "batch"];

impl HttpServerSourceConfig {
    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.path.starts_with('/') || self.path.starts_with("/v1/") {
            errors.push(format!(
                "invalid value for `path`: `{}`; give a path that starts with `/` and is not under `/v1/`, such as `/events`",
                self.path
            ));
        }
        if self.write_keys.iter().any(String::is_empty) {
            errors.push("`write_keys` contains an empty key; remove it or set its variable".to_owned());
        }
        if let Some(auth) = &self.auth {
            let basic = auth.username.is_some() || auth.password.is_some();
            match (&auth.bearer_token, basic) {
                (Some(_), true) => {
                    errors.push("`auth`: set either `bearer_token` or `username` and `password`, not both".to_owned())
                }
                (None, false) => {
                    errors.push("`auth` is empty; set `bearer_token`, or `username` and `password`".to_owned())
                }
                (None, true) if auth.username.is_none() || auth.password.is_none() => {
                    errors.push("`auth`: set both `username` and `password`".to_owned())
                }
                _ => {}
            }
        }
        if self.max_body_bytes == 0 {
            errors.push("invalid value for `max_body_bytes`: 0; give a number of bytes above 0".to_owned());
        }
        if self.max_line_bytes == 0 {
            errors.push("invalid value for `max_line_bytes`: 0; give a number of bytes above 0".to_owned());
        }
        if self.max_events_per_request == 0 {
            errors.push("invalid value for `max_events_per_request`: 0; give a number of events above 0".to_owned());
        }
        if self.max_connections == 0 || self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            errors.push(format!(
                "invalid value for `max_connections`: {}; give a number of connections above 0",
                self.max_connections
            ));
        }
        for (option, seconds) in [
            ("ack_timeout_secs", self.ack_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
        ] {
            if Duration::try_from_secs_f64(seconds).is_err() || seconds <= 0.0 {
                errors.push(format!("invalid value for `{option}`: {seconds}; give a positive number of seconds"));
            }
        }
        errors
    }

    /// Serves requests until shutdown, then finishes the requests in flight.
    pub async fn run(&self, context: SourceContext) -> Result<(), SourceError> {
        server::serve(self.clone(), context).await
    }
}
