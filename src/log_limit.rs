//! Rate limiting of log lines that can repeat once per event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The maximum number of keys a limiter remembers. Keys can come from input (an unknown event key per message), so
/// without a bound the map would grow with the input.
const MAX_KEYS: usize = 1024;

/// Lets one log line per key through per interval and counts the occurrences in between.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    entries: HashMap<String, (Instant, u64)>,
}

impl LogLimiter {
    /// Creates a limiter that lets one line per key through every `interval`.
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter { interval, entries: HashMap::new() }
    }

    /// Records one occurrence of `key`. Returns the number of occurrences to report, this one included,
    /// when a line is due, or `None` while the key is being suppressed.
    pub fn check(&mut self, key: &str) -> Option<u64> {
        let now = Instant::now();
        match self.entries.get_mut(key) {
            Some((last, count)) => {
                *count += 1;
                if now.duration_since(*last) < self.interval {
                    return None;
                }
                let total = *count;
                *last = now;
                *count = 0;
                Some(total)
            }
            None => {
                if self.entries.len() >= MAX_KEYS {
                    // Keys whose interval has passed would log again anyway; when none has, forgetting
                    // all of them costs at most one extra line per key.
                    let interval = self.interval;
                    self.entries.retain(|_, (last, _)| now.duration_since(*last) < interval);
                    if self.entries.len() >= MAX_KEYS {
                        self.entries.clear();
                    }
                }
                self.entries.insert(key.to_owned(), (now, 0));
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_logged_then_suppressed() {
        let mut limiter = LogLimiter::new(Duration::from_secs(60));
        assert_eq!(limiter.check("unknown_event_key"), Some(1));
        assert_eq!(limiter.check("unknown_event_key"), None);
        assert_eq!(limiter.check("missing_user_id"), Some(1));
    }

    #[test]
    fn remembered_keys_bounded() {
        let mut limiter = LogLimiter::new(Duration::from_secs(60));
        for index in 0..10 * MAX_KEYS {
            limiter.check(&format!("key-{index}"));
        }
        assert!(limiter.entries.len() <= MAX_KEYS, "{} keys remembered", limiter.entries.len());
    }

    #[test]
    fn count_reported_after_interval() {
        let mut limiter = LogLimiter::new(Duration::ZERO);
        assert_eq!(limiter.check("a"), Some(1));
        assert_eq!(limiter.check("a"), Some(1));
    }
}
