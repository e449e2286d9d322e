//! The HTTP server of the `http_server` source and its request handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};

use super::acks::{EventOutcome, RequestAcks};
use super::body::{decode_body, parse_plain, parse_segment, BodyError, BodyRejection, ParsedBody, Position};
use super::connections::{serve_connections, ConnectionLimits};
use super::{HttpServerSourceConfig, SEGMENT_CALLS};
use crate::ack::{AckReceiver, EventFinalizer, EventStatus};
use crate::event::Event;
use crate::log_limit::LogLimiter;
use crate::observability::{ComponentKind, ComponentMetrics};
use crate::sources::{SourceContext, SourceError};
use crate::topology::{Output, RunStats};

/// The seconds a client is asked to wait in `Retry-After` when the pipeline is full.
const RETRY_AFTER_SECS: &str = "1";

struct Shared {
    config: HttpServerSourceConfig,
    id: String,
    output: tokio::sync::Mutex<Output>,
    stats: Arc<RunStats>,
    limiter: std::sync::Mutex<LogLimiter>,
    metrics: ComponentMetrics,
}

/// Listens on the configured address and responds to requests until `context.shutdown` is cancelled, then
/// stops accepting connections and finishes the requests in flight.
pub(super) async fn serve(config: HttpServerSourceConfig, context: SourceContext) -> Result<(), SourceError> {
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .map_err(|error| SourceError::Read { what: format!("the listening address {}", config.address), error })?;
    let address = listener.local_addr().map(|address| address.to_string()).unwrap_or_default();
    tracing::info!(component_id = %context.id, %address, path = %config.path, acknowledgements = config.acknowledgements, "listening");
    if config.write_keys.is_empty() {
        tracing::warn!(component_id = %context.id, "no `write_keys` are set, so the /v1/* paths accept any write key");
    }

    let max_body_bytes = config.max_body_bytes;
    let path = config.path.clone();
    let limits = ConnectionLimits {
        max_connections: config.max_connections,
        header_read_timeout: Duration::from_secs_f64(config.header_read_timeout_secs),
    };
    let shared = Arc::new(Shared {
        config,
        id: context.id.clone(),
        output: tokio::sync::Mutex::new(context.output),
        stats: context.stats,
        limiter: std::sync::Mutex::new(LogLimiter::new(Duration::from_secs(60))),
        metrics: ComponentMetrics::new(ComponentKind::Source, &context.id, "http_server"),
    });
    let router = Router::new()
        .route("/v1/{call}", post(segment_call))
        .route(&path, post(plain_call))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), read_body))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(shared);

    serve_connections(listener, router, limits, &context.id, context.shutdown.clone()).await;
    tracing::info!(component_id = %context.id, "stopped listening");
    Ok(())
}

/// Reads the whole request body, at most `max_body_bytes` of it, within `body_read_timeout_secs`,
/// before the handler runs. So a client that sends its body slowly, or never finishes it, keeps its
/// connection for a bounded time and gets 408.
async fn read_body(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let timeout = Duration::from_secs_f64(shared.config.body_read_timeout_secs);
    let limited = Limited::new(body, shared.config.max_body_bytes);

    let bytes = match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<LengthLimitError>() => {
            shared.warn("too_large", "rejected a body larger than max_body_bytes");
            let message = format!("the body is larger than max_body_bytes ({})", shared.config.max_body_bytes);
            return closing(failure(StatusCode::PAYLOAD_TOO_LARGE, &message));
        }
        Ok(Err(error)) => {
            shared.warn("body_read_failed", "reading a request body failed");
            return closing(failure(StatusCode::BAD_REQUEST, &format!("reading the body failed: {error}")));
        }
        Err(_) => {
            shared.warn(
                "body_read_timeout",
                "closed a connection whose body did not arrive within body_read_timeout_secs",
            );
            let message = format!(
                "the body did not arrive within body_read_timeout_secs ({} s)",
                shared.config.body_read_timeout_secs
            );
            return closing(failure(StatusCode::REQUEST_TIMEOUT, &message));
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// Marks a response as the last one of its connection, for requests whose body was not read to its
/// end, since the rest of such a body would be taken for the next request.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn segment_call(
    State(shared): State<Arc<Shared>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !SEGMENT_CALLS.contains(&call.as_str()) {
        let message = format!("unknown call `/v1/{call}`; the calls are /v1/{}", SEGMENT_CALLS.join(", /v1/"));
        return failure(StatusCode::NOT_FOUND, &message);
    }
    let decoded = match shared.decode(&headers, &body) {
        Ok(decoded) => decoded,
        Err(response) => return *response,
    };

    let (parsed, body_key) = parse_segment(&call, &decoded);
    let key = basic_credentials(&headers).map(|(user, _)| user).or(body_key);
    let known = key.as_ref().is_some_and(|key| shared.config.write_keys.contains(key));
    if !shared.config.write_keys.is_empty() && !known {
        shared.warn("unauthorized", "rejected a request with a missing or unknown write key");
        return unauthorized();
    }
    shared.ingest(parsed).await
}

async fn plain_call(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !shared.authorized(&headers) {
        shared.warn("unauthorized", "rejected a request with missing or wrong credentials");
        return unauthorized();
    }
    let decoded = match shared.decode(&headers, &body) {
        Ok(decoded) => decoded,
        Err(response) => return *response,
    };
    let parsed = parse_plain(&decoded, shared.config.max_line_bytes);
    shared.ingest(parsed).await
}

impl Shared {
    fn decode(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Box<Response>> {
        let encoding = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok());
        decode_body(encoding, body, self.config.max_body_bytes).map_err(|rejection| {
            Box::new(match rejection {
                BodyRejection::TooLarge => {
                    self.warn("too_large", "rejected a body that decompresses to more than max_body_bytes");
                    let message = format!(
                        "the body is larger than max_body_bytes ({}) after decompression",
                        self.config.max_body_bytes
                    );
                    failure(StatusCode::PAYLOAD_TOO_LARGE, &message)
                }
                BodyRejection::UnsupportedEncoding(encoding) => failure(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("unsupported Content-Encoding `{encoding}`; send the body as is or gzip-compressed"),
                ),
                BodyRejection::InvalidGzip(error) => {
                    failure(StatusCode::BAD_REQUEST, &format!("the body is not valid gzip data: {error}"))
                }
            })
        })
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(auth) = &self.config.auth else { return true };
        if let Some(token) = &auth.bearer_token {
            let expected = format!("Bearer {token}");
            return headers.get(header::AUTHORIZATION).is_some_and(|value| value.as_bytes() == expected.as_bytes());
        }
        match (basic_credentials(headers), &auth.username, &auth.password) {
            (Some((user, password)), Some(expected_user), Some(expected_password)) => {
                user == *expected_user && password == *expected_password
            }
            _ => false,
        }
    }

    /// Sends the parsed events into the pipeline and responds: at once, or with acknowledgements once
    /// every event has its outcome.
    async fn ingest(&self, parsed: ParsedBody) -> Response {
        let ParsedBody { payloads, errors } = parsed;
        if !errors.is_empty() {
            self.warn("invalid_json", &format!("a request had {} invalid lines or items", errors.len()));
        }
        let count = payloads.len();
        if count == 0 {
            return respond(StatusCode::OK, json!({"success": true, "accepted": 0}));
        }
        if count > self.config.max_events_per_request {
            self.warn("too_many_events", "rejected a request with more events than max_events_per_request");
            let message = format!(
                "the request carries {count} events, more than max_events_per_request ({}); send smaller requests",
                self.config.max_events_per_request
            );
            return failure(StatusCode::PAYLOAD_TOO_LARGE, &message);
        }

        let positions: Vec<Position> = payloads.iter().map(|(position, _)| *position).collect();
        let acks = self.config.acknowledgements.then(|| RequestAcks::new(self.stats.clone(), count));
        let receiver: Arc<dyn AckReceiver> = match &acks {
            Some(acks) => acks.clone(),
            None => self.stats.clone(),
        };
        {
            let mut output = self.output.lock().await;
            // Checked before any event is created, so a rejected request leaves no trace in the counts.
            if !output.has_room(count) {
                self.warn("pipeline_full", "answered 503 because the pipeline is full");
                return pipeline_full();
            }
            let events: Vec<Event> = payloads
                .into_iter()
                .enumerate()
                .map(|(index, (_, payload))| {
                    Event::with_finalizer(payload, EventFinalizer::new(receiver.clone(), index as u64))
                })
                .collect();
            self.stats.add_received(count as u64);
            self.metrics.received(count as u64, 0);
            if output.send(events).await.is_err() {
                return failure(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is shutting down; retry later");
            }
        }

        match acks {
            None if errors.is_empty() => respond(StatusCode::OK, json!({"success": true, "accepted": count})),
            None => respond(
                StatusCode::BAD_REQUEST,
                json!({"success": false, "accepted": count, "errors": error_list(&errors)}),
            ),
            Some(acks) => {
                let timeout = Duration::from_secs_f64(self.config.ack_timeout_secs);
                let outcomes = acks.wait(timeout).await;
                acknowledged_response(count, &errors, &positions, &outcomes)
            }
        }
    }

    fn warn(&self, kind: &str, message: &str) {
        self.metrics.error(kind);
        let due = self.limiter.lock().map(|mut limiter| limiter.check(kind)).unwrap_or(None);
        if let Some(count) = due {
            tracing::warn!(component_id = %self.id, kind, count, "{message}");
        }
    }
}

/// Builds the response to an acknowledged request: 400 when parts were not valid JSON, 503 when an event
/// is undelivered or still open (so the client retries), 422 when an event was dead-lettered, and 200
/// when every event was delivered or skipped.
fn acknowledged_response(
    count: usize,
    errors: &[BodyError],
    positions: &[Position],
    outcomes: &[Option<EventOutcome>],
) -> Response {
    let mut failed = Vec::new();
    let mut retry = false;
    let mut dead_lettered = false;
    for (position, outcome) in positions.iter().zip(outcomes) {
        let (status, reason) = match outcome {
            Some(EventOutcome { status: EventStatus::Delivered | EventStatus::Skipped, .. }) => continue,
            Some(EventOutcome { status, reason }) => (status.as_str(), reason.clone()),
            None => ("pending", Some("no outcome within ack_timeout_secs".to_owned())),
        };
        retry |= status == "undelivered" || status == "pending";
        dead_lettered |= status == "dead_lettered";
        let mut entry = position_json(*position);
        entry["status"] = json!(status);
        if let Some(reason) = reason {
            entry["reason"] = json!(reason);
        }
        failed.push(entry);
    }

    let status = if !errors.is_empty() {
        StatusCode::BAD_REQUEST
    } else if retry {
        StatusCode::SERVICE_UNAVAILABLE
    } else if dead_lettered {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        return respond(StatusCode::OK, json!({"success": true, "accepted": count}));
    };
    let mut body = json!({"success": false, "accepted": count, "events": failed});
    if !errors.is_empty() {
        body["errors"] = json!(error_list(errors));
    }
    let mut response = respond(status, body);
    if retry {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

fn position_json(position: Position) -> Value {
    match position {
        Position::Line(line) => json!({"line": line}),
        Position::Index(index) => json!({"index": index}),
    }
}

fn error_list(errors: &[BodyError]) -> Vec<Value> {
    errors
        .iter()
        .map(|error| {
            let mut entry = position_json(error.position);
            entry["message"] = json!(error.message);
            entry
        })
        .collect()
}

/// Returns the user and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    Some((user.to_owned(), password.to_owned()))
}

fn respond(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn failure(status: StatusCode, message: &str) -> Response {
    respond(status, json!({"success": false, "message": message}))
}

/// Responds with 401 and no detail, so the response reveals nothing about valid keys.
fn unauthorized() -> Response {
    respond(StatusCode::UNAUTHORIZED, json!({"success": false}))
}

fn pipeline_full() -> Response {
    let mut response = failure(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is full; retry later");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    response
}
