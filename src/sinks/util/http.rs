//! The HTTP side of a sink request: the response to one attempt, read within a size limit, and the
//! description of a transport error.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;

use super::retry::{classify_status, parse_retry_after, StatusClass};

/// The maximum number of response body bytes kept for logs and dead-letter records.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024;

/// The response to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpResponse {
    pub status: u16,
    /// The wait that the `Retry-After` header requests, when present and valid.
    pub retry_after: Option<Duration>,
    /// The start of the response body, at most [`MAX_RESPONSE_BYTES`] bytes, invalid UTF-8 replaced.
    pub body: String,
}

/// The outcome of one attempt of a request.
#[derive(Debug)]
pub(crate) enum AttemptOutcome {
    /// The server responded, with any status.
    Response(HttpResponse),
    /// No response: connecting, sending or receiving failed, or the attempt timed out.
    Failed { error: String },
}

impl AttemptOutcome {
    /// Splits the outcome into the fields of a dead-letter record: the status and the body of a
    /// response, or the transport error.
    pub fn record_fields(&self) -> (Option<u16>, Option<String>, Option<String>) {
        match self {
            AttemptOutcome::Response(response) => (Some(response.status), Some(response.body.clone()), None),
            AttemptOutcome::Failed { error } => (None, None, Some(error.clone())),
        }
    }

    /// Returns whether another attempt may succeed: transport failures and retryable statuses.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptOutcome::Response(response) => classify_status(response.status) == StatusClass::Retryable,
            AttemptOutcome::Failed { .. } => true,
        }
    }

    /// Returns the wait that the server requested before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptOutcome::Response(response) => response.retry_after,
            AttemptOutcome::Failed { .. } => None,
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Response(response) => write!(formatter, "HTTP status {}", response.status),
            AttemptOutcome::Failed { error } => write!(formatter, "{error}"),
        }
    }
}

/// Reads the status, `Retry-After` and the start of the body. Stops reading after
/// [`MAX_RESPONSE_BYTES`] so that a large error page costs no more memory than that.
pub(crate) async fn read_response(mut response: reqwest::Response) -> HttpResponse {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));

    let mut body = Vec::new();
    // A body that fails to arrive after the status does not change the outcome, which the status
    // decides, so the error ends the reading and nothing more.
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_RESPONSE_BYTES);
    HttpResponse { status, retry_after, body: String::from_utf8_lossy(&body).into_owned() }
}

/// Describes a transport error with its causes, such as "timed out" or "connection refused".
pub(crate) fn describe_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Builds the details of a dead-letter record of an API sink: `status` (or `null`) and `attempts`,
/// then `response` and `error` where known.
pub fn record_details(
    status: Option<u16>,
    attempts: u32,
    response: Option<&str>,
    error: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;

    let mut details = serde_json::Map::new();
    details.insert("status".to_owned(), status.map_or(Value::Null, Value::from));
    details.insert("attempts".to_owned(), Value::from(attempts));
    if let Some(response) = response {
        details.insert("response".to_owned(), Value::String(response.to_owned()));
    }
    if let Some(error) = error {
        details.insert("error".to_owned(), Value::String(error.to_owned()));
    }
    details
}
