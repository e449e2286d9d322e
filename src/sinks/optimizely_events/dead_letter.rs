//! Dead-letter reasons and records of the sink.

use serde_json::{Map, Value};

use super::batch::BatchError;
use crate::ack::EventStatus;
use crate::event::{DeadLetter, Event, Payload};
use crate::sinks::util::http::{record_details, AttemptOutcome, HttpResponse};

/// The reason the sink dead-lettered an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The request body of the event alone exceeds `batch.max_bytes`, or the Event API responded with 413
    /// to a request holding only this event.
    EventTooLarge,
    /// The Event API rejected a request holding only this event with a status that is not retried.
    EventRejected,
    /// Every allowed attempt failed with a connection error, a timeout or a retryable status.
    RetriesExhausted,
    /// The event is not a conversion.
    UnsupportedEvent,
    /// The event's endpoint is not a valid http or https URL.
    InvalidEndpoint,
    /// The event could not be encoded as JSON.
    EncodingFailed,
}

impl Reason {
    /// Returns the machine-readable reason written to the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EventTooLarge => "event_too_large",
            Reason::EventRejected => "event_rejected",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::UnsupportedEvent => "unsupported_event",
            Reason::InvalidEndpoint => "invalid_endpoint",
            Reason::EncodingFailed => "encoding_failed",
        }
    }
}

/// The cause of a failed delivery of one or more events, as the record shows it.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub reason: Reason,
    pub message: String,
    /// The last HTTP status, when the server responded.
    pub status: Option<u16>,
    /// Attempts made, or 0 when the event was never sent.
    pub attempts: u32,
    /// The start of the last response body.
    pub response: Option<String>,
    /// The last transport error.
    pub error: Option<String>,
}

impl Failure {
    /// Describes an event that the batcher did not accept and that is therefore never sent.
    pub fn from_batch_error(error: &BatchError) -> Failure {
        let (reason, message) = match error {
            BatchError::Unsupported { kind } => (
                Reason::UnsupportedEvent,
                format!(
                    "the optimizely_events sink accepts only conversions, but received a {kind}; \
                     connect the sink to the default output of an `optimizely` transform"
                ),
            ),
            BatchError::TooLarge { body_len, max_bytes } => (
                Reason::EventTooLarge,
                format!(
                    "the request body for this conversion alone is {body_len} bytes, above batch.max_bytes \
                     ({max_bytes}); shorten its tags or attributes, or raise batch.max_bytes up to 3500000"
                ),
            ),
            BatchError::InvalidEndpoint { endpoint, reason } => (
                Reason::InvalidEndpoint,
                format!(
                    "the conversion's endpoint `{endpoint}` is not an absolute http or https URL ({reason}); \
                     fix the endpoint in the transform or set the sink's `endpoint` setting"
                ),
            ),
            BatchError::Encoding { error } => {
                (Reason::EncodingFailed, format!("the conversion could not be encoded as JSON: {error}"))
            }
        };
        Failure { reason, message, status: None, attempts: 0, response: None, error: None }
    }

    /// Describes a request whose retries ended without success.
    pub fn exhausted(outcome: &AttemptOutcome, attempts: u32) -> Failure {
        let message = format!(
            "delivery failed after {attempts} attempts, the last with {outcome}; check the Event API's \
             availability and the network path to the endpoint, then replay the event"
        );
        Failure::from_outcome(Reason::RetriesExhausted, message, outcome, attempts)
    }

    /// Describes a request holding one event that the Event API rejected.
    pub fn rejected(response: &HttpResponse, attempts: u32) -> Failure {
        let status = response.status;
        let (reason, message) = if status == 413 {
            let message = "the Event API rejected this conversion alone with HTTP status 413 (payload too large); \
                           shorten its tags or attributes, then replay it";
            (Reason::EventTooLarge, message.to_owned())
        } else {
            let message = format!(
                "the Event API rejected this conversion with HTTP status {status}; the `response` field \
                 shows the API's reason, fix the event or the mapping, then replay it"
            );
            (Reason::EventRejected, message)
        };
        Failure::from_outcome(reason, message, &AttemptOutcome::Response(response.clone()), attempts)
    }

    fn from_outcome(reason: Reason, message: String, outcome: &AttemptOutcome, attempts: u32) -> Failure {
        let (status, response, error) = outcome.record_fields();
        Failure { reason, message, status, attempts, response, error }
    }

    fn details(&self) -> Map<String, Value> {
        record_details(self.status, self.attempts, self.response.as_deref(), self.error.as_deref())
    }
}

/// Turns `event` into its dead-letter record and marks it dead-lettered.
///
/// The status is raised here, before the record reaches the dead-letter output, so that the sink
/// writing the record (which finalizes with `Delivered`) cannot hide the outcome from the source.
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
    Event { payload: Payload::DeadLetter(record), finalizer: event.finalizer, origin: event.origin }
}
