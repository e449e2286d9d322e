//! The outcome of one deletion request, the dead-letter reasons and the records of failed deletions.

use serde_json::{Map, Value};

use crate::ack::EventStatus;
use crate::event::{DeadLetter, Event};
use crate::sinks::util::http::{record_details, AttemptOutcome};

/// Maximum length in characters of the response excerpt that a failure message quotes. The record's
/// `response` field keeps up to 1 KiB.
const MESSAGE_EXCERPT_CHARS: usize = 200;

/// The final outcome of one deletion request, after its retries.
#[derive(Debug, Clone, PartialEq)]
pub enum DeletionOutcome {
    /// The API accepted the request with a 2xx status (201 Created, as documented).
    Deleted {
        /// The HTTP status of the accepted attempt.
        status: u16,
        /// Attempts made, the first included.
        attempts: u32,
    },
    /// The request was not accepted, or was never sent.
    Failed(Failure),
}

/// The reason a deletion request was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The API responded 401 or 403: the token is invalid, revoked or lacks permission.
    Unauthorized,
    /// The API rejected the request with another status that is not retried, such as 400.
    Rejected,
    /// Every allowed attempt failed with a connection error, a timeout or a retryable status.
    RetriesExhausted,
    /// The identifier is blank or longer than the API accepts, so the request is never sent.
    InvalidIdentifier,
    /// The event is not a deletion request.
    UnsupportedEvent,
}

impl Reason {
    /// Returns the machine-readable reason written to the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthorized => "request_unauthorized",
            Reason::Rejected => "request_rejected",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::InvalidIdentifier => "invalid_identifier",
            Reason::UnsupportedEvent => "unsupported_event",
        }
    }
}

/// The cause of a failed deletion, as the dead-letter record and the `delete-user` command show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The dead-letter reason.
    pub reason: Reason,
    /// The failure and the check to make, starting with the HTTP status or the transport error.
    pub message: String,
    /// The last HTTP status, when the server responded.
    pub status: Option<u16>,
    /// Attempts made, or 0 when the request was never sent.
    pub attempts: u32,
    /// The start of the last response body, with the token removed.
    pub response: Option<String>,
    /// The last transport error, with the token removed.
    pub error: Option<String>,
}

impl Failure {
    /// Describes a request that was never sent because of its identifier.
    pub(super) fn invalid_identifier(message: String) -> Failure {
        Failure { reason: Reason::InvalidIdentifier, message, status: None, attempts: 0, response: None, error: None }
    }

    /// Describes an event that is not a deletion request.
    pub(super) fn unsupported(kind: &str) -> Failure {
        let message = format!(
            "the optimizely_user_deletion sink accepts only deletion requests, but received a {kind}; \
             connect the sink to the `deletions` output of an `optimizely` transform"
        );
        Failure { reason: Reason::UnsupportedEvent, message, status: None, attempts: 0, response: None, error: None }
    }

    /// Describes the last outcome of a request that did not succeed: a rejection, or a retryable
    /// outcome after the retries ran out.
    pub(super) fn from_outcome(outcome: &AttemptOutcome, attempts: u32) -> Failure {
        let (reason, message) = match outcome {
            _ if outcome.is_retryable() => (Reason::RetriesExhausted, exhausted_message(outcome, attempts)),
            AttemptOutcome::Response(response) if matches!(response.status, 401 | 403) => {
                (Reason::Unauthorized, unauthorized_message(response.status))
            }
            AttemptOutcome::Response(response) => (Reason::Rejected, rejected_message(response.status, &response.body)),
            AttemptOutcome::Failed { .. } => (Reason::RetriesExhausted, exhausted_message(outcome, attempts)),
        };
        let (status, response, error) = outcome.record_fields();
        Failure { reason, message, status, attempts, response, error }
    }

    fn details(&self) -> Map<String, Value> {
        record_details(self.status, self.attempts, self.response.as_deref(), self.error.as_deref())
    }
}

/// Formats a status with its standard reason phrase, such as `403 Forbidden`.
fn status_text(status: u16) -> String {
    let phrase = reqwest::StatusCode::from_u16(status).ok().and_then(|code| code.canonical_reason());
    match phrase {
        Some(phrase) => format!("{status} {phrase}"),
        None => status.to_string(),
    }
}

fn unauthorized_message(status: u16) -> String {
    let check = if status == 401 {
        "the API did not accept the personal access token; check that `personal_access_token` holds a current, \
         unrevoked token"
    } else {
        "the token's user may not create deletion requests; check the token's permissions, and that its user \
         belongs to the Optimizely account whose visitor data is deleted"
    };
    format!("{} from the Subject Access Request API: {check}, then replay the deletion", status_text(status))
}

fn rejected_message(status: u16, body: &str) -> String {
    let excerpt = excerpt(body);
    let response = if excerpt.is_empty() { "an empty response".to_owned() } else { format!("response `{excerpt}`") };
    format!(
        "{} from the Subject Access Request API, {response}; check the identifier and `identifier_type`, \
         then replay the deletion",
        status_text(status)
    )
}

fn exhausted_message(outcome: &AttemptOutcome, attempts: u32) -> String {
    let last = match outcome {
        AttemptOutcome::Response(response) => status_text(response.status),
        AttemptOutcome::Failed { error } => error.clone(),
    };
    format!(
        "{last} after {attempts} attempts (retries exhausted); check the availability of the Subject Access \
         Request API and the network path to the endpoint, then replay the deletion"
    )
}

/// Returns the start of a response body on one line, for a message.
fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MESSAGE_EXCERPT_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MESSAGE_EXCERPT_CHARS).collect();
    cut.push('…');
    cut
}

/// Turns a deletion event into its dead-letter record and marks it dead-lettered.
///
/// The record's `event` is the deletion request, `{"identifier": ...}`. The status is raised before
/// the record reaches the dead-letter output, so that the sink writing the record (which finalizes
/// with `Delivered`) cannot hide the outcome from the source.
pub(super) fn dead_letter(event: Event, component_id: &str, failure: &Failure) -> Event {
    event.finalizer.update_with_reason(EventStatus::DeadLettered, failure.reason.as_str());
    let mut record = DeadLetter {
        reason: failure.reason.as_str().to_owned(),
        message: failure.message.clone(),
        component: component_id.to_owned(),
        event: event.payload.to_json(),
        details: failure.details(),
    };
    record.details.extend(crate::event::origin_details(event.origin.as_deref()));
    Event { payload: crate::event::Payload::DeadLetter(record), finalizer: event.finalizer, origin: event.origin }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::util::http::HttpResponse;

    fn response(status: u16, body: &str) -> AttemptOutcome {
        AttemptOutcome::Response(HttpResponse { status, retry_after: None, body: body.to_owned() })
    }

    #[test]
    fn forbidden_names_status_and_permissions() {
        let failure = Failure::from_outcome(&response(403, ""), 1);

        assert_eq!(failure.reason, Reason::Unauthorized);
        assert_eq!(failure.status, Some(403));
        assert!(
            failure.message.starts_with("403 Forbidden from the Subject Access Request API"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("permissions"), "{}", failure.message);
    }

    #[test]
    fn unauthorized_names_token_option() {
        let failure = Failure::from_outcome(&response(401, ""), 1);

        assert_eq!(failure.reason, Reason::Unauthorized);
        assert!(failure.message.starts_with("401 Unauthorized"), "{}", failure.message);
        assert!(failure.message.contains("`personal_access_token`"), "{}", failure.message);
    }

    #[test]
    fn rejection_quotes_body_excerpt() {
        let body = format!("{{\"message\":\"bad\n  identifier\"}}{}", "x".repeat(300));
        let failure = Failure::from_outcome(&response(400, &body), 1);

        assert_eq!(failure.reason, Reason::Rejected);
        assert_eq!(failure.response.as_deref(), Some(body.as_str()));
        assert!(failure.message.starts_with("400 Bad Request"), "{}", failure.message);
        assert!(failure.message.contains("{\"message\":\"bad identifier\"}"), "{}", failure.message);
        assert!(failure.message.contains('…'), "{}", failure.message);
        assert!(!failure.message.contains(&"x".repeat(200)), "{}", failure.message);
    }

    #[test]
    fn exhaustion_names_last_outcome() {
        let failure = Failure::from_outcome(&response(503, ""), 11);
        assert_eq!(failure.reason, Reason::RetriesExhausted);
        assert!(failure.message.starts_with("503 Service Unavailable after 11 attempts"), "{}", failure.message);

        let failed = AttemptOutcome::Failed { error: "connection failed: refused".to_owned() };
        let failure = Failure::from_outcome(&failed, 3);
        assert_eq!(failure.status, None);
        assert_eq!(failure.error.as_deref(), Some("connection failed: refused"));
        assert!(failure.message.starts_with("connection failed: refused after 3 attempts"), "{}", failure.message);
    }
}
