//! The HTTP side of the sink: one POST of a prepared body per attempt.

use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flate2::write::GzEncoder;
use reqwest::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Url};

use super::config::Compression;
use super::retry::{classify_status, parse_retry_after, StatusClass};

/// The maximum number of response body bytes kept for logs and dead-letter records.
pub(super) const MAX_RESPONSE_BYTES: usize = 1024;

/// The response to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HttpResponse {
    pub status: u16,
    /// The wait that the `Retry-After` header requests, when present and valid.
    pub retry_after: Option<Duration>,
    /// The start of the response body, at most [`MAX_RESPONSE_BYTES`] bytes, invalid UTF-8 replaced.
    pub body: String,
}

/// The outcome of one attempt of a request.
#[derive(Debug)]
pub(super) enum AttemptOutcome {
    /// The server responded, with any status.
    Response(HttpResponse),
    /// No response: connecting, sending or receiving failed, or the attempt timed out.
    Failed { error: String },
}

impl AttemptOutcome {
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

/// A request body ready to send, identical on every attempt.
#[derive(Debug, Clone)]
pub(super) struct PreparedBody {
    pub bytes: Bytes,
    pub gzip: bool,
}

/// Sends Event API requests.
#[derive(Debug)]
pub(super) struct HttpService {
    client: Client,
    strict: bool,
    compression: Compression,
}

impl HttpService {
    /// Creates the service. `timeout` bounds each attempt, from connecting to the end of the response.
    pub fn new(timeout: Duration, strict: bool, compression: Compression) -> Result<HttpService, reqwest::Error> {
        let client = Client::builder()
            .timeout(timeout)
            .user_agent(concat!("optimizely-relay/", env!("CARGO_PKG_VERSION")))
            // A redirected POST may turn into a GET without a body, so a 3xx counts as a rejection
            // instead of being followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HttpService { client, strict, compression })
    }

    /// Compresses `body` when configured. Called once per request so that every retry sends the
    /// same bytes.
    pub fn prepare(&self, body: Bytes) -> PreparedBody {
        match self.compression {
            Compression::None => PreparedBody { bytes: body, gzip: false },
            Compression::Gzip => PreparedBody { bytes: gzip(&body), gzip: true },
        }
    }

    /// Sends one attempt of a request.
    pub async fn send(&self, url: &Url, body: &PreparedBody) -> AttemptOutcome {
        let mut request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.bytes.clone());
        if body.gzip {
            request = request.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if self.strict {
            request = request.header("X-Optimizely-Strict", HeaderValue::from_static("true"));
        }

        match request.send().await {
            Ok(response) => AttemptOutcome::Response(read_response(response).await),
            Err(error) => AttemptOutcome::Failed { error: describe_error(&error) },
        }
    }
}

/// Reads the status, `Retry-After` and the start of the body. Stops reading after
/// [`MAX_RESPONSE_BYTES`] so that a large error page costs no more memory than that.
async fn read_response(mut response: reqwest::Response) -> HttpResponse {
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
fn describe_error(error: &reqwest::Error) -> String {
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

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::default());
    // `Write` for `Vec` never returns an error, and flate2 1.1 returns a compression error only for a
    // misused stream, so neither call fails on any input.
    encoder.write_all(body).expect("gzip into memory cannot fail");
    Bytes::from(encoder.finish().expect("gzip into memory cannot fail"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn prepare_gzip_round_trips() {
        let service = HttpService::new(Duration::from_secs(1), true, Compression::Gzip).expect("client builds");
        let body = Bytes::from_static(br#"{"visitors":[]}"#);
        let prepared = service.prepare(body.clone());

        assert!(prepared.gzip);
        let mut decoded = Vec::new();
        GzDecoder::new(&prepared.bytes[..]).read_to_end(&mut decoded).expect("valid gzip");
        assert_eq!(decoded, body);
    }

    #[test]
    fn prepare_without_compression_keeps_bytes() {
        let service = HttpService::new(Duration::from_secs(1), true, Compression::None).expect("client builds");
        let body = Bytes::from_static(br#"{"visitors":[]}"#);
        let prepared = service.prepare(body.clone());

        assert!(!prepared.gzip);
        assert_eq!(prepared.bytes, body);
    }
}
