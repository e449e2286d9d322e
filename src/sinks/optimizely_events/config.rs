//! Settings of the `optimizely_events` sink, their defaults and their validation.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::batch::BatchLimits;
use crate::sinks::util::retry::RetryPolicy;
use crate::sinks::util::settings::{parse_endpoint, positive_secs};

/// The Event API's maximum request body, in bytes, before any compression.
pub const MAX_BODY_BYTES: usize = 3_500_000;

/// Settings of an `optimizely_events` sink (`type = "optimizely_events"`).
///
/// Every `_secs` setting takes seconds, fractions allowed, above 0 and at most 86400 (one day).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizelyEventsConfig {
    /// URL that receives every request of this sink, in place of the endpoint each conversion carries
    /// (`https://logx.optimizely.com/v1/events`, or `https://eu.logx.optimizely.com/v1/events` for EU
    /// datafiles). Set it to send through a proxy or to a test server. Must be an `http` or `https` URL.
    #[serde(default)]
    pub endpoint: Option<String>,

    /// Whether requests carry the header `X-Optimizely-Strict: true`. With it, the Event API rejects an
    /// invalid request with 400 instead of accepting and silently discarding it, so the sink can
    /// dead-letter the offending events. Default `true`.
    #[serde(default = "default_strict")]
    pub strict: bool,

    /// Request body compression: `"gzip"` or `"none"`. Default `"none"`.
    #[serde(default)]
    pub compression: Option<Compression>,

    /// When a request is sent: the first limit reached closes the batch.
    #[serde(default)]
    pub batch: BatchConfig,

    /// Request concurrency, timeouts and retries.
    #[serde(default)]
    pub request: RequestConfig,
}

fn default_strict() -> bool {
    true
}

/// Request body compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Send the JSON body as it is.
    #[default]
    None,
    /// Compress the body with gzip and send `Content-Encoding: gzip`.
    Gzip,
}

/// Batch limits of the `optimizely_events` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Maximum number of conversions (visitors) in one request. Default 500.
    pub max_events: usize,

    /// Maximum size in bytes of the encoded JSON body of one request, measured before compression.
    /// Default and maximum 3500000, the Event API's body limit. A conversion whose request body alone
    /// exceeds it is dead-lettered with the reason `event_too_large`.
    pub max_bytes: usize,

    /// Maximum time in seconds that a batch waits for more conversions, counted from its first
    /// conversion. Default 1.
    pub timeout_secs: f64,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig { max_events: 500, max_bytes: MAX_BODY_BYTES, timeout_secs: 1.0 }
    }
}

/// Request settings of the `optimizely_events` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestConfig {
    /// Maximum number of requests in flight at once. Default 4.
    pub concurrency: usize,

    /// Maximum time in seconds for one attempt of a request, from connecting to reading the response.
    /// An attempt that times out is retried. Default 30.
    pub timeout_secs: f64,

    /// Maximum number of retries after the first attempt of a request. Default 10: with the default
    /// backoff, the waits of one request add up to at most 303 seconds, and about half that on average.
    pub retry_attempts: u32,

    /// Upper bound in seconds of the wait before the first retry. Each later retry doubles the bound,
    /// and the actual wait is a random duration between 0 and the bound (full jitter), so that many
    /// failing requests do not retry in step. Default 1.
    pub retry_initial_backoff_secs: f64,

    /// Maximum wait in seconds before one retry. It also caps a wait that the server asks for with
    /// `Retry-After`. Default 60.
    pub retry_max_backoff_secs: f64,

    /// Maximum time in seconds from the first attempt of a request to the start of its last retry.
    /// A retry whose wait would end later is not made: the request's conversions are dead-lettered
    /// with the reason `retries_exhausted`. Default 600.
    pub retry_max_duration_secs: f64,
}

impl Default for RequestConfig {
    fn default() -> RequestConfig {
        RequestConfig {
            concurrency: 4,
            timeout_secs: 30.0,
            retry_attempts: 10,
            retry_initial_backoff_secs: 1.0,
            retry_max_backoff_secs: 60.0,
            retry_max_duration_secs: 600.0,
        }
    }
}

/// An error building an `optimizely_events` sink.
pub use crate::sinks::SinkBuildError as BuildError;

/// The settings in the types the sink works with, after validation.
#[derive(Debug, Clone)]
pub(super) struct ValidConfig {
    pub endpoint: Option<Url>,
    pub strict: bool,
    pub compression: Compression,
    pub limits: BatchLimits,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    pub request_timeout: Duration,
}

impl OptimizelyEventsConfig {
    /// Returns every problem with the settings, each naming the setting, its value and the accepted
    /// range; empty when the settings are valid.
    pub fn problems(&self) -> Vec<String> {
        self.validate().err().unwrap_or_default()
    }

    /// Checks every setting and converts the settings to the sink's types.
    ///
    /// Returns all problems at once, each naming the setting, its value and the accepted range.
    pub(super) fn validate(&self) -> Result<ValidConfig, Vec<String>> {
        let mut problems = Vec::new();

        let endpoint = self.endpoint.as_deref().and_then(|text| match parse_endpoint(text) {
            Ok(url) => Some(url),
            Err(reason) => {
                problems
                    .push(format!("`endpoint` is `{text}`, but it must be an absolute http or https URL ({reason})"));
                None
            }
        });
        let limits = self.batch.validate(&mut problems);
        let retry = self.request.validate_retry(&mut problems);
        let request_timeout = positive_secs("request.timeout_secs", self.request.timeout_secs, &mut problems);
        if self.request.concurrency == 0 {
            problems.push("`request.concurrency` is 0, but it must be 1 or more".to_owned());
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ValidConfig {
            endpoint,
            strict: self.strict,
            compression: self.compression.unwrap_or_default(),
            limits,
            retry,
            concurrency: self.request.concurrency,
            request_timeout,
        })
    }
}

impl BatchConfig {
    fn validate(&self, problems: &mut Vec<String>) -> BatchLimits {
        if self.max_events == 0 {
            problems.push("`batch.max_events` is 0, but it must be 1 or more".to_owned());
        }
        if self.max_bytes == 0 || self.max_bytes > MAX_BODY_BYTES {
            problems.push(format!(
                "`batch.max_bytes` is {}, but it must be between 1 and {MAX_BODY_BYTES} (the Event API's body limit)",
                self.max_bytes
            ));
        }
        let timeout = positive_secs("batch.timeout_secs", self.timeout_secs, problems);
        BatchLimits { max_events: self.max_events, max_bytes: self.max_bytes, timeout }
    }
}

impl RequestConfig {
    fn validate_retry(&self, problems: &mut Vec<String>) -> RetryPolicy {
        RetryPolicy::from_settings(
            self.retry_attempts,
            self.retry_initial_backoff_secs,
            self.retry_max_backoff_secs,
            self.retry_max_duration_secs,
            problems,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OptimizelyEventsConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn config_defaults() {
        let config = parse("").expect("an empty table is a valid configuration");
        let valid = config.validate().expect("defaults are valid");

        assert_eq!(valid.endpoint, None);
        assert!(valid.strict);
        assert_eq!(valid.compression, Compression::None);
        assert_eq!(valid.limits.max_events, 500);
        assert_eq!(valid.limits.max_bytes, 3_500_000);
        assert_eq!(valid.limits.timeout, Duration::from_secs(1));
        assert_eq!(valid.concurrency, 4);
        assert_eq!(valid.request_timeout, Duration::from_secs(30));
        assert_eq!(valid.retry.retry_attempts, 10);
        assert_eq!(valid.retry.initial_backoff, Duration::from_secs(1));
        assert_eq!(valid.retry.max_backoff, Duration::from_secs(60));
        assert_eq!(valid.retry.max_duration, Duration::from_secs(600));
    }

    #[test]
    fn config_reads_every_setting() {
        let config = parse(
            r#"
            endpoint = "http://127.0.0.1:8080/v1/events"
            strict = false
            compression = "gzip"
            [batch]
            max_events = 10
            max_bytes = 2000
            timeout_secs = 0.5
            [request]
            concurrency = 2
            timeout_secs = 5
            retry_attempts = 3
            retry_initial_backoff_secs = 0.25
            retry_max_backoff_secs = 2
            retry_max_duration_secs = 30
            "#,
        )
        .expect("valid TOML");
        let valid = config.validate().expect("valid values");

        assert_eq!(valid.endpoint.map(String::from).as_deref(), Some("http://127.0.0.1:8080/v1/events"));
        assert!(!valid.strict);
        assert_eq!(valid.compression, Compression::Gzip);
        assert_eq!(valid.limits.max_events, 10);
        assert_eq!(valid.limits.max_bytes, 2000);
        assert_eq!(valid.limits.timeout, Duration::from_millis(500));
        assert_eq!(valid.concurrency, 2);
        assert_eq!(valid.request_timeout, Duration::from_secs(5));
        assert_eq!(valid.retry.retry_attempts, 3);
        assert_eq!(valid.retry.initial_backoff, Duration::from_millis(250));
        assert_eq!(valid.retry.max_backoff, Duration::from_secs(2));
        assert_eq!(valid.retry.max_duration, Duration::from_secs(30));
    }

    #[test]
    fn config_rejects_unknown_keys() {
        for text in ["retries = 3", "[batch]\nmax_event = 3", "[request]\ntimeout = 3"] {
            let error = parse(text).expect_err(text);
            assert!(error.to_string().contains("unknown field"), "{text}: {error}");
        }
    }

    #[test]
    fn config_rejects_unknown_compression() {
        let error = parse(r#"compression = "zstd""#).expect_err("zstd is not supported");
        assert!(error.to_string().contains("unknown variant"), "{error}");
    }

    #[test]
    fn validate_rejects_max_bytes_over_limit() {
        let config = parse("[batch]\nmax_bytes = 3500001").expect("valid TOML");
        let problems = config.validate().expect_err("above the Event API limit");
        assert_eq!(
            problems,
            vec!["`batch.max_bytes` is 3500001, but it must be between 1 and 3500000 (the Event API's body limit)"]
        );
    }

    #[test]
    fn validate_lists_every_problem() {
        let config = parse(
            r#"
            endpoint = "ftp://example.com/"
            [batch]
            max_events = 0
            max_bytes = 0
            timeout_secs = -1
            [request]
            concurrency = 0
            timeout_secs = 0
            retry_initial_backoff_secs = 5
            retry_max_backoff_secs = 2
            retry_max_duration_secs = 100000
            "#,
        )
        .expect("valid TOML");
        let problems = config.validate().expect_err("every value is invalid");

        assert_eq!(problems.len(), 8, "{problems:#?}");
        let settings = [
            "`endpoint`",
            "`batch.max_events`",
            "`batch.max_bytes`",
            "`batch.timeout_secs`",
            "`request.retry_max_backoff_secs`",
            "`request.retry_max_duration_secs`",
            "`request.timeout_secs`",
            "`request.concurrency`",
        ];
        for setting in settings {
            assert!(problems.iter().any(|problem| problem.starts_with(setting)), "{setting} missing: {problems:#?}");
        }
    }
}
