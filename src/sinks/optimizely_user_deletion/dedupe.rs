//! The identifiers deleted within the dedupe window, so that a repeated deletion is not sent again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Maximum number of identifiers remembered at once. When more were deleted within one window, the oldest are
/// forgotten first, so a repeated deletion of one of them is sent again: a duplicate request, never a
/// lost one. With identifiers of at most 355 characters, the stored text stays below 3.6 MB for ASCII
/// identifiers and below 14.2 MB when every character takes 4 bytes.
pub(super) const MAX_REMEMBERED_IDENTIFIERS: usize = 10_000;

/// Identifiers whose deletion the API accepted, each with the time of acceptance.
#[derive(Debug)]
pub(super) struct RecentDeletions {
    window: Duration,
    max_entries: usize,
    deleted_at: HashMap<Arc<str>, Instant>,
    /// Identifiers in the order they were recorded, for expiry and eviction. An identifier recorded
    /// again also has an older entry here, which is skipped because its time no longer matches.
    order: VecDeque<(Instant, Arc<str>)>,
}

impl RecentDeletions {
    /// Creates an empty record that remembers each identifier for `window`.
    pub fn new(window: Duration, max_entries: usize) -> RecentDeletions {
        RecentDeletions { window, max_entries, deleted_at: HashMap::new(), order: VecDeque::new() }
    }

    /// Returns whether `identifier` was deleted less than the window before `now`.
    pub fn contains(&mut self, identifier: &str, now: Instant) -> bool {
        self.expire(now);
        self.deleted_at.contains_key(identifier)
    }

    /// Records that the API accepted the deletion of `identifier` at `now`.
    pub fn insert(&mut self, identifier: &str, now: Instant) {
        self.expire(now);
        let identifier: Arc<str> = Arc::from(identifier);
        self.deleted_at.insert(identifier.clone(), now);
        self.order.push_back((now, identifier));
        while self.deleted_at.len() > self.max_entries {
            self.pop_oldest();
        }
    }

    /// Returns how many identifiers are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.deleted_at.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((recorded_at, _)) = self.order.front() {
            if now.saturating_duration_since(*recorded_at) < self.window {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        let Some((recorded_at, identifier)) = self.order.pop_front() else {
            return;
        };
        if self.deleted_at.get(&identifier) == Some(&recorded_at) {
            self.deleted_at.remove(&identifier);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn remembered_within_window() {
        let start = Instant::now();
        let mut recent = RecentDeletions::new(HOUR, 10);
        recent.insert("user-1", start);

        assert!(recent.contains("user-1", start + Duration::from_secs(3599)));
        assert!(!recent.contains("user-2", start));
    }

    #[test]
    fn forgotten_after_window() {
        let start = Instant::now();
        let mut recent = RecentDeletions::new(HOUR, 10);
        recent.insert("user-1", start);

        assert!(!recent.contains("user-1", start + HOUR));
        assert_eq!(recent.len(), 0);
    }

    #[test]
    fn recorded_again_restarts_window() {
        let start = Instant::now();
        let mut recent = RecentDeletions::new(HOUR, 10);
        recent.insert("user-1", start);
        recent.insert("user-1", start + Duration::from_secs(1800));

        assert!(recent.contains("user-1", start + Duration::from_secs(3700)));
        assert!(!recent.contains("user-1", start + Duration::from_secs(5400)));
    }

    #[test]
    fn oldest_evicted_beyond_max_entries() {
        let start = Instant::now();
        let mut recent = RecentDeletions::new(HOUR, 2);
        for (offset, identifier) in ["a", "b", "c"].iter().enumerate() {
            recent.insert(identifier, start + Duration::from_secs(offset as u64));
        }

        assert_eq!(recent.len(), 2);
        assert!(!recent.contains("a", start + Duration::from_secs(3)));
        assert!(recent.contains("b", start + Duration::from_secs(3)));
        assert!(recent.contains("c", start + Duration::from_secs(3)));
    }
}
