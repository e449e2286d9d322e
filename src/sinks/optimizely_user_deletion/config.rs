//! Settings of the `optimizely_user_deletion` sink, their defaults and their validation.

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::sinks::util::retry::RetryPolicy;
use crate::sinks::util::settings::{parse_endpoint, positive_secs};

/// The Subject Access Request endpoint of Optimizely's REST API.
pub const DEFAULT_ENDPOINT: &str = "https://api.optimizely.com/v2/subject-access-requests";

/// Maximum `dedupe_window_secs`: one day.
const MAX_DEDUPE_WINDOW_SECS: f64 = 86_400.0;

/// Settings of an `optimizely_user_deletion` sink (`type = "optimizely_user_deletion"`).
///
/// Every `_secs` setting takes seconds, fractions allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizelyUserDeletionConfig {
    /// URL that receives one `POST` per deletion. Default
    /// `https://api.optimizely.com/v2/subject-access-requests`. Set it to send through a proxy or to a
    /// test server. Must be an `http` or `https` URL.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,

    /// Optimizely personal access token, sent as `Authorization: Bearer <token>`. Required. Give it
    /// from the environment, as `personal_access_token = "${OPTIMIZELY_PERSONAL_ACCESS_TOKEN}"`. It is
    /// never written to logs, errors or dead-letter records.
    #[serde(default)]
    pub personal_access_token: Option<PersonalAccessToken>,

    /// The kind of identifier the deletion names. Default `fullstack_id`, the visitor id that
    /// Optimizely Feature Experimentation (Full Stack) SDKs use.
    #[serde(default)]
    pub identifier_type: IdentifierType,

    /// Seconds during which a deletion of an identifier whose deletion the API already accepted is not
    /// sent again. A deletion of an identifier whose request is still running is never sent twice.
    /// 0 turns both off and sends every request. Default 3600.
    #[serde(default = "default_dedupe_window_secs")]
    pub dedupe_window_secs: f64,

    /// Request concurrency, timeouts and retries.
    #[serde(default)]
    pub request: DeletionRequestConfig,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

fn default_dedupe_window_secs() -> f64 {
    3600.0
}

/// An Optimizely personal access token. Its `Debug` output hides the value.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct PersonalAccessToken(String);

impl PersonalAccessToken {
    /// Wraps a token value.
    pub fn new(token: impl Into<String>) -> PersonalAccessToken {
        PersonalAccessToken(token.into())
    }

    /// Returns the token value, for the `Authorization` header and for removing the token from
    /// response text.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonalAccessToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("PersonalAccessToken(<redacted>)")
    }
}

/// The `identifier_type` of a deletion request, as the Subject Access Request API names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierType {
    /// The user id given to Feature Experimentation (Full Stack) SDKs.
    #[default]
    FullstackId,
    /// An id of targeting records in Optimizely.
    DcpId,
    /// A visitor's email address.
    Email,
    /// The user cookie that Optimizely generates.
    OptimizelyEndUserId,
    /// Any other identifier uploaded to Optimizely.
    Other,
}

/// Request settings of the `optimizely_user_deletion` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeletionRequestConfig {
    /// Maximum number of deletion requests in flight at once. Default 2.
    pub concurrency: usize,

    /// Maximum time in seconds for one attempt, from connecting to reading the response. An attempt
    /// that times out is retried. Default 30.
    pub timeout_secs: f64,

    /// Maximum number of retries after the first attempt. Default 10.
    pub retry_attempts: u32,

    /// Upper bound in seconds of the wait before the first retry. Each later retry doubles the bound,
    /// and the wait is a random duration between 0 and the bound (full jitter). Default 1.
    pub retry_initial_backoff_secs: f64,

    /// Maximum wait in seconds before one retry, also the cap of a `Retry-After` wait. Default 60.
    pub retry_max_backoff_secs: f64,

    /// Maximum time in seconds from the first attempt to the start of the last retry. Default 600.
    pub retry_max_duration_secs: f64,
}

impl Default for DeletionRequestConfig {
    fn default() -> DeletionRequestConfig {
        DeletionRequestConfig {
            concurrency: 2,
            timeout_secs: 30.0,
            retry_attempts: 10,
            retry_initial_backoff_secs: 1.0,
            retry_max_backoff_secs: 60.0,
            retry_max_duration_secs: 600.0,
        }
    }
}

/// An error building an `optimizely_user_deletion` sink or client.
pub use crate::sinks::SinkBuildError as BuildError;

/// The settings in the types the sink works with, after validation.
#[derive(Debug, Clone)]
pub(super) struct ValidConfig {
    pub endpoint: Url,
    pub token: PersonalAccessToken,
    /// `Bearer <token>`, marked sensitive so that `Debug` output and HTTP/2 header compression
    /// treat it as a secret.
    pub authorization: HeaderValue,
    pub identifier_type: IdentifierType,
    /// `None` when `dedupe_window_secs` is 0.
    pub dedupe_window: Option<Duration>,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    pub request_timeout: Duration,
}

impl OptimizelyUserDeletionConfig {
    /// Returns every problem with the settings, each naming the setting and the fix; empty when the
    /// settings are valid. No problem repeats the token.
    pub fn problems(&self) -> Vec<String> {
        self.validate().err().unwrap_or_default()
    }

    /// Checks every setting and converts the settings to the sink's types.
    pub(super) fn validate(&self) -> Result<ValidConfig, Vec<String>> {
        let mut problems = Vec::new();

        let endpoint = match parse_endpoint(&self.endpoint) {
            Ok(url) => Some(url),
            Err(reason) => {
                problems.push(format!(
                    "`endpoint` is `{}`, but it must be an absolute http or https URL ({reason})",
                    self.endpoint
                ));
                None
            }
        };
        let authorization = self.validate_token(&mut problems);
        let dedupe_window = self.validate_dedupe_window(&mut problems);
        let request = &self.request;
        let retry = RetryPolicy::from_settings(
            request.retry_attempts,
            request.retry_initial_backoff_secs,
            request.retry_max_backoff_secs,
            request.retry_max_duration_secs,
            &mut problems,
        );
        let request_timeout = positive_secs("request.timeout_secs", request.timeout_secs, &mut problems);
        if request.concurrency == 0 {
            problems.push("`request.concurrency` is 0, but it must be 1 or more".to_owned());
        }

        match (endpoint, authorization, &self.personal_access_token) {
            (Some(endpoint), Some(authorization), Some(token)) if problems.is_empty() => Ok(ValidConfig {
                endpoint,
                token: token.clone(),
                authorization,
                identifier_type: self.identifier_type,
                dedupe_window,
                retry,
                concurrency: request.concurrency,
                request_timeout,
            }),
            _ => Err(problems),
        }
    }

    /// Builds the `Authorization` header value, recording a problem when the token is missing, blank
    /// or not valid in a header. The messages never contain the token.
    fn validate_token(&self, problems: &mut Vec<String>) -> Option<HeaderValue> {
        let Some(token) = &self.personal_access_token else {
            problems.push(
                "missing required option `personal_access_token`; set it to an Optimizely personal access \
                 token, usually from the environment: personal_access_token = \"${OPTIMIZELY_PERSONAL_ACCESS_TOKEN}\""
                    .to_owned(),
            );
            return None;
        };
        if token.expose().trim().is_empty() {
            problems.push(
                "`personal_access_token` is empty; set it to an Optimizely personal access token, and check \
                 that the environment variable it is read from is set"
                    .to_owned(),
            );
            return None;
        }
        match HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
            Ok(mut value) => {
                value.set_sensitive(true);
                Some(value)
            }
            Err(_) => {
                problems.push(
                    "`personal_access_token` contains characters that an HTTP header cannot carry, such as a \
                     line break (the value is not shown because it is a secret); copy the token again"
                        .to_owned(),
                );
                None
            }
        }
    }

    fn validate_dedupe_window(&self, problems: &mut Vec<String>) -> Option<Duration> {
        let secs = self.dedupe_window_secs;
        if !(secs.is_finite() && (0.0..=MAX_DEDUPE_WINDOW_SECS).contains(&secs)) {
            problems.push(format!(
                "`dedupe_window_secs` is {secs}, but it must be a number of seconds from 0 (off) to \
                 {MAX_DEDUPE_WINDOW_SECS}"
            ));
            return None;
        }
        (secs > 0.0).then(|| Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "pat-config-test-4f1c";

    fn parse(text: &str) -> OptimizelyUserDeletionConfig {
        toml::from_str(text).expect("valid TOML for the sink")
    }

    #[test]
    fn config_defaults() {
        let config = parse(&format!("personal_access_token = \"{TOKEN}\""));
        let valid = config.validate().expect("defaults are valid");

        assert_eq!(valid.endpoint.as_str(), "https://api.optimizely.com/v2/subject-access-requests");
        assert_eq!(valid.identifier_type, IdentifierType::FullstackId);
        assert_eq!(valid.dedupe_window, Some(Duration::from_secs(3600)));
        assert_eq!(valid.concurrency, 2);
        assert_eq!(valid.request_timeout, Duration::from_secs(30));
        assert_eq!(valid.retry.retry_attempts, 10);
        assert_eq!(valid.retry.initial_backoff, Duration::from_secs(1));
        assert_eq!(valid.retry.max_backoff, Duration::from_secs(60));
        assert_eq!(valid.retry.max_duration, Duration::from_secs(600));
        assert_eq!(valid.authorization.to_str().unwrap(), format!("Bearer {TOKEN}"));
        assert!(valid.authorization.is_sensitive());
    }

    #[test]
    fn config_reads_every_setting() {
        let config = parse(&format!(
            r#"
            endpoint = "http://127.0.0.1:9/v2/subject-access-requests"
            personal_access_token = "{TOKEN}"
            identifier_type = "optimizely_end_user_id"
            dedupe_window_secs = 0
            [request]
            concurrency = 1
            timeout_secs = 5
            retry_attempts = 3
            retry_initial_backoff_secs = 0.25
            retry_max_backoff_secs = 2
            retry_max_duration_secs = 30
            "#
        ));
        let valid = config.validate().expect("valid values");

        assert_eq!(valid.endpoint.as_str(), "http://127.0.0.1:9/v2/subject-access-requests");
        assert_eq!(valid.identifier_type, IdentifierType::OptimizelyEndUserId);
        assert_eq!(valid.dedupe_window, None);
        assert_eq!(valid.concurrency, 1);
        assert_eq!(valid.request_timeout, Duration::from_secs(5));
        assert_eq!(valid.retry.retry_attempts, 3);
        assert_eq!(valid.retry.initial_backoff, Duration::from_millis(250));
        assert_eq!(valid.retry.max_backoff, Duration::from_secs(2));
        assert_eq!(valid.retry.max_duration, Duration::from_secs(30));
    }

    #[test]
    fn identifier_types_accepted() {
        let cases = [
            ("fullstack_id", IdentifierType::FullstackId),
            ("dcp_id", IdentifierType::DcpId),
            ("email", IdentifierType::Email),
            ("optimizely_end_user_id", IdentifierType::OptimizelyEndUserId),
            ("other", IdentifierType::Other),
        ];
        for (text, expected) in cases {
            let config = parse(&format!("personal_access_token = \"{TOKEN}\"\nidentifier_type = \"{text}\""));
            assert_eq!(config.identifier_type, expected, "{text}");
        }
    }

    #[test]
    fn unknown_identifier_type_rejected() {
        let error = toml::from_str::<OptimizelyUserDeletionConfig>("identifier_type = \"user_id\"")
            .expect_err("user_id is not an identifier type");
        assert!(error.to_string().contains("unknown variant `user_id`"), "{error}");
    }

    #[test]
    fn missing_token_rejected() {
        let problems = parse("").validate().expect_err("the token is required");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("missing required option `personal_access_token`"), "{}", problems[0]);
    }

    #[test]
    fn blank_token_rejected() {
        for token in ["", "   "] {
            let problems = parse(&format!("personal_access_token = \"{token}\"")).validate().expect_err("blank");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with("`personal_access_token` is empty"), "{}", problems[0]);
        }
    }

    #[test]
    fn token_with_line_break_rejected_unshown() {
        let config = parse(&format!("personal_access_token = \"{TOKEN}\\n\""));
        let problems = config.validate().expect_err("a line break cannot go into a header");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`personal_access_token`"), "{}", problems[0]);
        assert!(!problems[0].contains(TOKEN), "{}", problems[0]);
    }

    #[test]
    fn validate_lists_every_problem() {
        let config = parse(
            r#"
            endpoint = "ftp://example.com/"
            dedupe_window_secs = -1
            [request]
            concurrency = 0
            timeout_secs = 0
            retry_initial_backoff_secs = 5
            retry_max_backoff_secs = 2
            "#,
        );
        let problems = config.validate().expect_err("every value is invalid");

        let settings = [
            "`endpoint`",
            "missing required option `personal_access_token`",
            "`dedupe_window_secs`",
            "`request.retry_max_backoff_secs`",
            "`request.timeout_secs`",
            "`request.concurrency`",
        ];
        assert_eq!(problems.len(), settings.len(), "{problems:#?}");
        for setting in settings {
            assert!(problems.iter().any(|problem| problem.starts_with(setting)), "{setting} missing: {problems:#?}");
        }
    }

    #[test]
    fn debug_output_hides_token() {
        let config = parse(&format!("personal_access_token = \"{TOKEN}\""));
        let valid = config.validate().expect("valid");

        let config_debug = format!("{config:?}");
        let valid_debug = format!("{valid:?}");
        assert!(!config_debug.contains(TOKEN), "{config_debug}");
        assert!(!valid_debug.contains(TOKEN), "{valid_debug}");
        assert!(config_debug.contains("<redacted>"), "{config_debug}");
    }
}
