//! The retry rule: which outcomes are retried, how long to wait, and when to give up.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::time::Instant;

use super::http::AttemptOutcome;
use super::settings::positive_secs;

/// Bounds on the retries of one request.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub retry_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time from the first attempt after which no retry starts.
    pub max_duration: Duration,
}

/// The meaning of an HTTP status for the request that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    /// Any 2xx: the server accepted the request.
    Success,
    /// A temporary failure: 408, 429 and 5xx except 501.
    Retryable,
    /// Anything else: the server rejected the request as sent, so sending it again cannot succeed.
    Rejected,
}

/// Classifies an HTTP status code.
pub(crate) fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        408 | 429 => StatusClass::Retryable,
        501 => StatusClass::Rejected,
        500..=599 => StatusClass::Retryable,
        _ => StatusClass::Rejected,
    }
}

/// Parses a `Retry-After` value, delta-seconds or an HTTP date, into the wait it requests.
///
/// A date in the past requests no wait. Returns `None` for a value that is neither form.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

impl RetryPolicy {
    /// Builds a policy from the `request.retry_*` settings, recording a problem for each invalid one.
    pub fn from_settings(
        retry_attempts: u32,
        initial_backoff_secs: f64,
        max_backoff_secs: f64,
        max_duration_secs: f64,
        problems: &mut Vec<String>,
    ) -> RetryPolicy {
        let initial_backoff = positive_secs("request.retry_initial_backoff_secs", initial_backoff_secs, problems);
        let max_backoff = positive_secs("request.retry_max_backoff_secs", max_backoff_secs, problems);
        let max_duration = positive_secs("request.retry_max_duration_secs", max_duration_secs, problems);
        if max_backoff < initial_backoff {
            problems.push(format!(
                "`request.retry_max_backoff_secs` is {max_backoff_secs}, but it must be at least \
                 `request.retry_initial_backoff_secs` ({initial_backoff_secs})"
            ));
        }
        RetryPolicy { retry_attempts, initial_backoff, max_backoff, max_duration }
    }

    /// Returns the upper bound of the wait before retry number `retry` (1 for the first retry):
    /// `initial_backoff × 2^(retry − 1)`, at most `max_backoff`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(62) as i32;
        let ceiling_secs = self.initial_backoff.as_secs_f64() * 2f64.powi(exponent);
        if ceiling_secs >= self.max_backoff.as_secs_f64() {
            return self.max_backoff;
        }
        Duration::from_secs_f64(ceiling_secs)
    }

    /// Draws the wait before retry number `retry` uniformly from zero to its ceiling (full jitter).
    pub fn jittered_backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling_secs = self.backoff_ceiling(retry).as_secs_f64();
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling_secs))
    }

    /// Decides the wait before retry number `retry`, or `None` when the request must not be retried
    /// again.
    ///
    /// A `Retry-After` wait replaces the jittered backoff but is capped at `max_backoff`, so that one
    /// response cannot hold a request longer than the user allows for any single wait. No retry
    /// starts after `max_duration` from the first attempt: a wait that would end later ends the
    /// retries at once instead of waiting for a retry that would not be made.
    pub fn next_wait(
        &self,
        retry: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if retry > self.retry_attempts {
            return None;
        }
        let wait = match retry_after {
            Some(requested) => requested.min(self.max_backoff),
            None => self.jittered_backoff(retry, rng),
        };
        if elapsed.saturating_add(wait) > self.max_duration {
            return None;
        }
        Some(wait)
    }
}

/// The last outcome of a request after its retries.
#[derive(Debug)]
pub(crate) struct Finished {
    pub outcome: AttemptOutcome,
    /// Attempts made, the first included.
    pub attempts: u32,
}

/// Sends a request through `send`, retrying retryable outcomes as `policy` allows.
///
/// `send` must send the same bytes to `endpoint` on every call. Each retry is logged with
/// `component_id` and the endpoint. Returns the first outcome that is not retryable, or the last
/// outcome when the retries are exhausted.
pub(crate) async fn send_with_retries<F, Fut>(
    policy: &RetryPolicy,
    component_id: &str,
    endpoint: &reqwest::Url,
    mut send: F,
) -> Finished
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AttemptOutcome>,
{
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt_started = Instant::now();
        let outcome = send().await;
        let status = match &outcome {
            AttemptOutcome::Response(response) => Some(response.status),
            AttemptOutcome::Failed { .. } => None,
        };
        crate::observability::metrics::http_attempt(component_id, status, attempt_started.elapsed());
        if !outcome.is_retryable() {
            return Finished { outcome, attempts };
        }

        // The random generator is created per decision because it must not live across an await
        // (the thread-local generator is not `Send`).
        let wait = policy.next_wait(attempts, started.elapsed(), outcome.retry_after(), &mut rand::rng());
        let Some(wait) = wait else {
            return Finished { outcome, attempts };
        };
        crate::observability::metrics::http_retry(component_id);
        tracing::warn!(
            component_id,
            %endpoint,
            outcome = %outcome,
            attempt = attempts,
            wait_secs = wait.as_secs_f64(),
            "request failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::super::http::HttpResponse;

    fn policy(retry_attempts: u32, initial_secs: f64, max_secs: f64, max_duration_secs: f64) -> RetryPolicy {
        RetryPolicy {
            retry_attempts,
            initial_backoff: Duration::from_secs_f64(initial_secs),
            max_backoff: Duration::from_secs_f64(max_secs),
            max_duration: Duration::from_secs_f64(max_duration_secs),
        }
    }

    fn response(status: u16, retry_after: Option<u64>) -> AttemptOutcome {
        AttemptOutcome::Response(HttpResponse {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: String::new(),
        })
    }

    #[test]
    fn classify_status_table() {
        let cases = [
            (200, StatusClass::Success),
            (202, StatusClass::Success),
            (204, StatusClass::Success),
            (299, StatusClass::Success),
            (301, StatusClass::Rejected),
            (400, StatusClass::Rejected),
            (401, StatusClass::Rejected),
            (404, StatusClass::Rejected),
            (408, StatusClass::Retryable),
            (413, StatusClass::Rejected),
            (422, StatusClass::Rejected),
            (429, StatusClass::Retryable),
            (500, StatusClass::Retryable),
            (501, StatusClass::Rejected),
            (502, StatusClass::Retryable),
            (503, StatusClass::Retryable),
            (504, StatusClass::Retryable),
            (599, StatusClass::Retryable),
        ];
        for (status, expected) in cases {
            assert_eq!(classify_status(status), expected, "status {status}");
        }
    }

    #[test]
    fn retry_after_parses_seconds() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_parses_http_date() {
        // 1994-11-06T08:49:37Z is 784111777 seconds after the epoch.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 - 30);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_past_date_is_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 + 5);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_rejects_other_text() {
        let now = SystemTime::UNIX_EPOCH;
        for value in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn backoff_ceiling_doubles_to_cap() {
        let policy = policy(10, 0.5, 3.0, 600.0);
        let expected_millis = [500, 1000, 2000, 3000, 3000];
        for (retry, millis) in (1..).zip(expected_millis) {
            assert_eq!(policy.backoff_ceiling(retry), Duration::from_millis(millis), "retry {retry}");
        }
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(3));
    }

    #[test]
    fn jittered_backoff_within_ceiling() {
        let policy = policy(10, 1.0, 8.0, 600.0);
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 1..=6 {
            let ceiling = policy.backoff_ceiling(retry);
            let samples: Vec<Duration> = (0..200).map(|_| policy.jittered_backoff(retry, &mut rng)).collect();
            assert!(samples.iter().all(|wait| *wait <= ceiling), "retry {retry} above {ceiling:?}");
            // Full jitter spreads waits over the whole range, not just near the ceiling.
            assert!(samples.iter().any(|wait| *wait < ceiling / 4), "retry {retry}: no short wait");
            assert!(samples.iter().any(|wait| *wait > ceiling * 3 / 4), "retry {retry}: no long wait");
        }
    }

    #[test]
    fn next_wait_caps_retry_after() {
        let policy = policy(10, 1.0, 60.0, 600.0);
        let mut rng = StdRng::seed_from_u64(1);
        let wait = policy.next_wait(1, Duration::ZERO, Some(Duration::from_secs(7)), &mut rng);
        assert_eq!(wait, Some(Duration::from_secs(7)));
        let wait = policy.next_wait(1, Duration::ZERO, Some(Duration::from_secs(3600)), &mut rng);
        assert_eq!(wait, Some(Duration::from_secs(60)));
    }

    #[test]
    fn next_wait_stops_after_attempts() {
        let policy = policy(3, 1.0, 60.0, 600.0);
        let mut rng = StdRng::seed_from_u64(1);
        let retry_after = Some(Duration::from_secs(1));
        assert_eq!(policy.next_wait(3, Duration::ZERO, retry_after, &mut rng), Some(Duration::from_secs(1)));
        assert_eq!(policy.next_wait(4, Duration::ZERO, retry_after, &mut rng), None);
    }

    #[test]
    fn next_wait_stops_at_max_duration() {
        let policy = policy(10, 1.0, 60.0, 100.0);
        let mut rng = StdRng::seed_from_u64(1);
        let retry_after = Some(Duration::from_secs(10));
        assert_eq!(policy.next_wait(2, Duration::from_secs(90), retry_after, &mut rng), Some(Duration::from_secs(10)));
        assert_eq!(policy.next_wait(2, Duration::from_secs(91), retry_after, &mut rng), None);
    }

    /// Runs `send_with_retries` against scripted outcomes and returns the result with the time of each
    /// attempt relative to the first. Needs a paused clock for exact times.
    async fn run_script(policy: &RetryPolicy, script: Vec<AttemptOutcome>) -> (Finished, Vec<Duration>) {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let times = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let finished =
            send_with_retries(policy, "test", &reqwest::Url::parse("http://127.0.0.1:9/v1/events").unwrap(), || {
                let script = script.clone();
                let times = times.clone();
                async move {
                    times.lock().expect("not poisoned").push(start.elapsed());
                    script.lock().expect("not poisoned").pop_front().unwrap_or_else(|| response(503, None))
                }
            })
            .await;
        let times = times.lock().expect("not poisoned").clone();
        (finished, times)
    }

    #[tokio::test(start_paused = true)]
    async fn driver_waits_retry_after() {
        let policy = policy(5, 0.001, 60.0, 600.0);
        let script = vec![response(429, Some(7)), response(503, Some(2)), response(204, None)];
        let (finished, times) = run_script(&policy, script).await;

        assert_eq!(finished.attempts, 3);
        assert!(matches!(finished.outcome, AttemptOutcome::Response(HttpResponse { status: 204, .. })));
        assert_eq!(times, [Duration::ZERO, Duration::from_secs(7), Duration::from_secs(9)]);
    }

    #[tokio::test(start_paused = true)]
    async fn driver_caps_retry_after() {
        let policy = policy(5, 0.001, 10.0, 600.0);
        let (finished, times) = run_script(&policy, vec![response(429, Some(3600)), response(200, None)]).await;

        assert_eq!(finished.attempts, 2);
        assert_eq!(times, [Duration::ZERO, Duration::from_secs(10)]);
    }

    #[tokio::test(start_paused = true)]
    async fn driver_stops_after_attempts() {
        let policy = policy(3, 0.001, 0.001, 600.0);
        let (finished, times) = run_script(&policy, Vec::new()).await;

        assert_eq!(finished.attempts, 4);
        assert_eq!(times.len(), 4);
        assert!(matches!(finished.outcome, AttemptOutcome::Response(HttpResponse { status: 503, .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn driver_stops_at_max_duration() {
        let policy = policy(100, 1.0, 60.0, 10.0);
        let script = (0..10).map(|_| response(503, Some(4))).collect();
        let (finished, times) = run_script(&policy, script).await;

        // Attempts at 0, 4 and 8 seconds; a fourth would start at 12, past the 10 second limit.
        assert_eq!(finished.attempts, 3);
        assert_eq!(times, [Duration::ZERO, Duration::from_secs(4), Duration::from_secs(8)]);
    }

    #[tokio::test(start_paused = true)]
    async fn driver_jitter_within_ceilings() {
        let policy = policy(5, 1.0, 4.0, 600.0);
        let (finished, times) = run_script(&policy, Vec::new()).await;

        assert_eq!(finished.attempts, 6);
        let ceilings = [1, 2, 4, 4, 4].map(Duration::from_secs);
        for (index, ceiling) in ceilings.iter().enumerate() {
            let wait = times[index + 1] - times[index];
            assert!(wait <= *ceiling, "wait {index} is {wait:?}, above {ceiling:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn driver_returns_rejection_at_once() {
        let policy = policy(5, 1.0, 4.0, 600.0);
        let (finished, times) = run_script(&policy, vec![response(400, None)]).await;

        assert_eq!(finished.attempts, 1);
        assert_eq!(times, [Duration::ZERO]);
        assert!(matches!(finished.outcome, AttemptOutcome::Response(HttpResponse { status: 400, .. })));
    }
}
