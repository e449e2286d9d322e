//! The HTTP side of the sink: one POST of a prepared body per attempt.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use flate2::write::GzEncoder;
use reqwest::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Client, Url};

use super::config::Compression;
use crate::sinks::util::http::{describe_error, read_response, AttemptOutcome};

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
