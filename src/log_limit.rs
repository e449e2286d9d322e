//! Rate limiting of log lines that can repeat once per event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The maximum number of keys a limiter remembers. Keys can come from input (an unknown event key per message), so
/// without a bound the map would grow with the input.
const MAX_KEYS: usize = 1024;

/// The maximum number of keys of one group that get lines of their own per interval. Later keys of
/// the group share the group's line, so input with a new key in every event (a different unknown
/// event name in each message) logs at most this many lines and one more per interval. The
/// end-to-end benchmark's workload has such a name in 1% of its messages: before the cap, the relay
/// wrote 10,000 warnings to standard error per million events.
const MAX_KEYS_PER_GROUP: u32 = 10;

/// Lets one log line per key through per interval and counts the occurrences in between.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    entries: HashMap<String, (Instant, u64)>,
    /// For each group, when its interval started and how many of its keys got a line in it.
    groups: HashMap<String, (Instant, u32)>,
}

impl LogLimiter {
    /// Creates a limiter that lets one line per key through every `interval`.
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter { interval, entries: HashMap::new(), groups: HashMap::new() }
    }

    /// Records one occurrence of `key`, which belongs to `group`, as [`LogLimiter::check`] does.
    /// A key that is new when `MAX_KEYS_PER_GROUP` keys of its group got a line in this interval
    /// counts toward the line of `group` itself instead.
    pub fn check_in_group(&mut self, group: &str, key: &str) -> Option<u64> {
        if self.entries.contains_key(key) {
            return self.check(key);
        }
        let now = Instant::now();
        let (started, admitted) = match self.groups.get_mut(group) {
            Some(entry) => entry,
            None => self.groups.entry(group.to_owned()).or_insert((now, 0)),
        };
        if now.duration_since(*started) >= self.interval {
            *started = now;
            *admitted = 0;
        }
        if *admitted < MAX_KEYS_PER_GROUP {
            *admitted += 1;
            self.check(key)
        } else {
            self.check(group)
        }
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
    fn group_cap_shares_one_line() {
        let mut limiter = LogLimiter::new(Duration::from_secs(60));
        for index in 0..MAX_KEYS_PER_GROUP {
            assert_eq!(limiter.check_in_group("unknown", &format!("unknown:{index}")), Some(1), "key {index}");
        }
        assert_eq!(limiter.check_in_group("unknown", "unknown:new-1"), Some(1), "the group's own line");
        assert_eq!(limiter.check_in_group("unknown", "unknown:new-2"), None);
        assert_eq!(limiter.check_in_group("unknown", "unknown:0"), None, "a key with a line stays suppressed");
        assert_eq!(limiter.check_in_group("other", "other:1"), Some(1), "groups are capped apart");
        assert!(limiter.entries.len() <= MAX_KEYS_PER_GROUP as usize + 2, "{} keys remembered", limiter.entries.len());
    }

    #[test]
    fn group_cap_resets_each_interval() {
        let mut limiter = LogLimiter::new(Duration::ZERO);
        for index in 0..3 * MAX_KEYS_PER_GROUP {
            assert_eq!(limiter.check_in_group("unknown", &format!("unknown:{index}")), Some(1), "key {index}");
        }
    }

    #[test]
    fn count_reported_after_interval() {
        let mut limiter = LogLimiter::new(Duration::ZERO);
        assert_eq!(limiter.check("a"), Some(1));
        assert_eq!(limiter.check("a"), Some(1));
    }
}
