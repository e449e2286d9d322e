//! The HTTP client of the Subject Access Request API: one `POST` per deletion, with retries.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Url};
use serde::Serialize;

use super::config::{BuildError, IdentifierType, OptimizelyUserDeletionConfig, PersonalAccessToken, ValidConfig};
use super::outcome::{DeletionOutcome, Failure};
use crate::sinks::util::http::{describe_error, read_response, AttemptOutcome};
use crate::sinks::util::retry::{classify_status, send_with_retries, RetryPolicy, StatusClass};

/// Maximum length in characters of an identifier that the Subject Access Request API accepts, as its
/// API reference documents for the `identifier` field.
pub const MAX_IDENTIFIER_CHARS: usize = 355;

/// The text that replaces the token wherever a response or an error repeats it.
const REDACTED: &str = "[redacted]";

/// The body of a deletion request. The field order is the order on the wire.
#[derive(Serialize)]
struct RequestBody<'a> {
    data_type: &'static str,
    identifier: &'a str,
    identifier_type: IdentifierType,
    request_type: &'static str,
}

/// Sends deletion requests to the Subject Access Request API, retrying as the settings allow.
///
/// The sink and the `delete-user` command share it. Its `Debug` output hides the token.
#[derive(Debug)]
pub struct DeletionClient {
    component_id: String,
    client: Client,
    endpoint: Url,
    authorization: HeaderValue,
    token: PersonalAccessToken,
    identifier_type: IdentifierType,
    retry: RetryPolicy,
    concurrency: usize,
}

impl DeletionClient {
    /// Validates `config` and builds the HTTP client for the sink `component_id`.
    pub fn new(component_id: String, config: &OptimizelyUserDeletionConfig) -> Result<DeletionClient, BuildError> {
        let valid = match config.validate() {
            Ok(valid) => valid,
            Err(problems) => return Err(BuildError::InvalidConfig { component_id, problems }),
        };
        DeletionClient::from_valid(component_id, valid)
    }

    pub(super) fn from_valid(component_id: String, valid: ValidConfig) -> Result<DeletionClient, BuildError> {
        let client = match build_http_client(valid.request_timeout) {
            Ok(client) => client,
            Err(source) => return Err(BuildError::HttpClient { component_id, source }),
        };
        Ok(DeletionClient {
            component_id,
            client,
            endpoint: valid.endpoint,
            authorization: valid.authorization,
            token: valid.token,
            identifier_type: valid.identifier_type,
            retry: valid.retry,
            concurrency: valid.concurrency,
        })
    }

    /// Returns the id of the sink whose settings the client uses.
    pub fn component_id(&self) -> &str {
        &self.component_id
    }

    /// Returns the `request.concurrency` setting: requests in flight at most.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Requests the deletion of the visitor data of `identifier`, retrying connection errors,
    /// timeouts, 408, 429 and 5xx except 501.
    ///
    /// A blank identifier, or one longer than [`MAX_IDENTIFIER_CHARS`], fails without a request.
    pub async fn delete(&self, identifier: &str) -> DeletionOutcome {
        if let Err(failure) = check_identifier(identifier) {
            return DeletionOutcome::Failed(failure);
        }
        let body = encode_body(identifier, self.identifier_type);

        let finished =
            send_with_retries(&self.retry, &self.component_id, &self.endpoint, || self.send_once(&body)).await;
        let outcome = self.redact(finished.outcome);
        match &outcome {
            AttemptOutcome::Response(response) if classify_status(response.status) == StatusClass::Success => {
                DeletionOutcome::Deleted { status: response.status, attempts: finished.attempts }
            }
            _ => DeletionOutcome::Failed(Failure::from_outcome(&outcome, finished.attempts)),
        }
    }

    async fn send_once(&self, body: &[u8]) -> AttemptOutcome {
        let request = self
            .client
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.to_vec());
        match request.send().await {
            Ok(response) => AttemptOutcome::Response(read_response(response).await),
            Err(error) => AttemptOutcome::Failed { error: describe_error(&error) },
        }
    }

    /// Removes the token from the response body and the error text, in case a server or a proxy
    /// repeats the request's headers.
    fn redact(&self, outcome: AttemptOutcome) -> AttemptOutcome {
        let token = self.token.expose();
        match outcome {
            AttemptOutcome::Response(mut response) => {
                response.body = redact_token(&response.body, token);
                AttemptOutcome::Response(response)
            }
            AttemptOutcome::Failed { error } => AttemptOutcome::Failed { error: redact_token(&error, token) },
        }
    }
}

fn build_http_client(timeout: Duration) -> Result<Client, reqwest::Error> {
    Client::builder()
        .timeout(timeout)
        .user_agent(concat!("optimizely-relay/", env!("CARGO_PKG_VERSION")))
        // A redirect could carry the `Authorization` header to another host, and a redirected POST
        // may turn into a GET, so a 3xx counts as a rejection instead of being followed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

fn check_identifier(identifier: &str) -> Result<(), Failure> {
    if identifier.trim().is_empty() {
        let message = "the identifier is blank, so no deletion request was sent; the user needs a \
                       userId or anonymousId"
            .to_owned();
        return Err(Failure::invalid_identifier(message));
    }
    let chars = identifier.chars().count();
    if chars > MAX_IDENTIFIER_CHARS {
        let message = format!(
            "the identifier has {chars} characters, more than the {MAX_IDENTIFIER_CHARS} that the Subject \
             Access Request API accepts, so no deletion request was sent"
        );
        return Err(Failure::invalid_identifier(message));
    }
    Ok(())
}

/// Encodes `{"data_type":"visitor","identifier":...,"identifier_type":...,"request_type":"delete"}`.
fn encode_body(identifier: &str, identifier_type: IdentifierType) -> Vec<u8> {
    let body = RequestBody { data_type: "visitor", identifier, identifier_type, request_type: "delete" };
    // A struct of strings and a unit enum always serializes.
    serde_json::to_vec(&body).expect("the request body serializes")
}

/// Replaces every occurrence of `token` in `text`, and a cut-off start of the token at the end of
/// `text`, which a body truncated at the size limit can leave.
fn redact_token(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_owned();
    }
    let mut redacted = text.replace(token, REDACTED);

    // Only a tail of 4 or more characters counts, so that a body ending in a common character is
    // not cut.
    let tail_start = (1..token.len())
        .rev()
        .filter(|length| *length >= 4 && token.is_char_boundary(*length))
        .find(|length| redacted.ends_with(&token[..*length]));
    if let Some(length) = tail_start {
        redacted.truncate(redacted.len() - length);
        redacted.push_str(REDACTED);
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_matches_api_shape() {
        let body = encode_body("user-1", IdentifierType::FullstackId);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"data_type":"visitor","identifier":"user-1","identifier_type":"fullstack_id","request_type":"delete"}"#
        );
    }

    #[test]
    fn body_escapes_identifier() {
        let body = encode_body("a\"b\\c", IdentifierType::Email);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"data_type":"visitor","identifier":"a\"b\\c","identifier_type":"email","request_type":"delete"}"#
        );
    }

    #[test]
    fn identifier_length_limit() {
        assert!(check_identifier(&"é".repeat(MAX_IDENTIFIER_CHARS)).is_ok());

        let failure = check_identifier(&"a".repeat(MAX_IDENTIFIER_CHARS + 1)).unwrap_err();
        assert!(failure.message.contains("356 characters"), "{}", failure.message);
        assert_eq!(failure.attempts, 0);
    }

    #[test]
    fn blank_identifier_rejected() {
        for identifier in ["", " \t"] {
            let failure = check_identifier(identifier).unwrap_err();
            assert!(failure.message.starts_with("the identifier is blank"), "{}", failure.message);
        }
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        let text = "Bearer pat-secret-1234 and pat-secret-1234";
        assert_eq!(redact_token(text, "pat-secret-1234"), "Bearer [redacted] and [redacted]");
    }

    #[test]
    fn redact_removes_truncated_tail() {
        assert_eq!(redact_token("header: Bearer pat-sec", "pat-secret-1234"), "header: Bearer [redacted]");
        assert_eq!(redact_token("ends with pat", "pat-secret-1234"), "ends with pat");
        assert_eq!(redact_token("no token here", "pat-secret-1234"), "no token here");
    }
}
