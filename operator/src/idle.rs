//! A cache whose entries go when nothing has used them for a while: the operator's sessions on the
//! sinks' Cassandra clusters and its Kafka clients are keyed by cluster and credentials version, so a
//! rotated Secret or a deleted sink leaves an entry no reconcile asks for again. Every sink in use is
//! reconciled at least every `--progress-interval`, far below [`IDLE`], so what is in use stays.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an entry may go unused before it is dropped (and its connections closed with it).
pub const IDLE: Duration = Duration::from_secs(600);

/// Entries by key, each with when it was last used.
#[derive(Debug)]
pub struct IdleCache<V> {
    entries: BTreeMap<String, (V, Instant)>,
    idle: Duration,
}

impl<V> Default for IdleCache<V> {
    fn default() -> Self {
        Self::new(IDLE)
    }
}

impl<V> IdleCache<V> {
    /// An empty cache that drops entries unused for `idle`.
    pub fn new(idle: Duration) -> Self {
        Self {
            entries: BTreeMap::new(),
            idle,
        }
    }

    /// The entry for `key`, marked used at `now`; idle entries are dropped first.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<&mut V> {
        self.sweep(now);
        let (value, used) = self.entries.get_mut(key)?;
        *used = now;
        Some(value)
    }

    /// The entry for `key`, made by `make` when absent, marked used at `now`.
    pub fn entry(&mut self, key: &str, now: Instant, make: impl FnOnce() -> V) -> &mut V {
        self.sweep(now);
        let (value, used) = self
            .entries
            .entry(key.to_owned())
            .or_insert_with(|| (make(), now));
        *used = now;
        value
    }

    /// Stores `value` for `key`, used at `now`.
    pub fn insert(&mut self, key: &str, value: V, now: Instant) {
        self.sweep(now);
        self.entries.insert(key.to_owned(), (value, now));
    }

    /// Drops `key`.
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn sweep(&mut self, now: Instant) {
        let idle = self.idle;
        self.entries
            .retain(|_, (_, used)| now.saturating_duration_since(*used) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_in_use_stay_and_idle_ones_go() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut cache = IdleCache::new(10 * minute);
        cache.insert("cluster|secret-v1", 1, start);
        cache.insert("cluster|other-sink", 2, start);
        // A rotation: the sink now asks for v2 every reconcile; v1 is never asked for again.
        for step in 1..=12 {
            let now = start + step * minute;
            cache.entry("cluster|secret-v2", now, || 3);
            if step <= 9 {
                assert!(
                    cache.get("cluster|other-sink", now).is_some(),
                    "in use at {step}"
                );
            }
        }
        // Minute 12: v1 has been idle for 12 minutes, the other sink's entry for 3.
        let now = start + 12 * minute;
        assert!(
            cache.get("cluster|secret-v1", now).is_none(),
            "rotated away"
        );
        assert_eq!(cache.len(), 2);
        // Minute 20: the other sink's entry, unused since minute 9, goes too.
        let later = start + 20 * minute;
        assert!(
            cache.get("cluster|other-sink", later).is_none(),
            "unused since minute 9"
        );
        assert_eq!(cache.get("cluster|secret-v2", later).copied(), Some(3));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn an_entry_is_made_once() {
        let now = Instant::now();
        let mut cache = IdleCache::default();
        let mut made = 0;
        for _ in 0..3 {
            cache.entry("k", now, || {
                made += 1;
                made
            });
        }
        assert_eq!(made, 1);
        cache.remove("k");
        assert!(cache.is_empty());
    }
}
