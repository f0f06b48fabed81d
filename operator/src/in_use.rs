//! A cache whose entries live exactly as long as a sink uses them. The operator's sessions on the
//! sinks' Cassandra clusters and its Kafka clients are keyed by cluster and credentials version, and
//! shared by every sink with the same key. Each sink says which key it uses for each purpose on every
//! reconcile; an entry goes (and its connections close with it) as soon as no sink uses it: when its
//! last sink moved to another key (a rotated Secret, a changed contact point) or was deleted.
//!
//! A reconcile that was under way when its sink was deleted may still ask for a connection after the
//! deletion was seen; a deleted sink is therefore remembered for [`REMEMBER_GONE`], and what it asks
//! for meanwhile is handed out but not kept.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use prometheus_client::metrics::gauge::Gauge;

use crate::crd::CassandraSink;

/// How long a deleted sink is remembered: far longer than any reconcile takes (each of its requests
/// times out within seconds).
pub const REMEMBER_GONE: Duration = Duration::from_secs(600);

/// A sink as a user of connections: `<namespace>/<uid>`, so a sink deleted and created again under
/// the same name is a new user.
pub fn user(sink: &CassandraSink) -> String {
    format!(
        "{}/{}",
        sink.namespace().unwrap_or_default(),
        sink.uid().unwrap_or_default()
    )
}

/// Entries by key, and which key each sink uses for each purpose.
#[derive(Debug)]
pub struct InUse<V> {
    entries: BTreeMap<String, V>,
    /// (user, purpose) → key.
    users: BTreeMap<(String, &'static str), String>,
    /// Users released as deleted, and when.
    gone: BTreeMap<String, Instant>,
    /// Set to the number of entries after every change.
    gauge: Gauge,
}

impl<V> InUse<V> {
    /// An empty cache that keeps `gauge` equal to its number of entries.
    pub fn new(gauge: Gauge) -> Self {
        Self {
            entries: BTreeMap::new(),
            users: BTreeMap::new(),
            gone: BTreeMap::new(),
            gauge,
        }
    }

    /// Records that `sink` uses `key` for `purpose`. The key it used for that purpose before is
    /// released, and its entry dropped when no other sink uses it.
    pub fn use_by(&mut self, sink: &str, purpose: &'static str, key: &str) {
        if self.gone.contains_key(sink) {
            return;
        }
        let before = self
            .users
            .insert((sink.to_owned(), purpose), key.to_owned());
        if before.is_some_and(|before| before != key) {
            self.drop_unused();
        }
    }

    /// Records that `sink` no longer uses anything for `purpose`; the entry it used is dropped when no
    /// other sink uses it.
    pub fn stop_using(&mut self, sink: &str, purpose: &'static str) {
        if self.users.remove(&(sink.to_owned(), purpose)).is_some() {
            self.drop_unused();
        }
    }

    /// The entry for `key`.
    pub fn get(&mut self, key: &str) -> Option<&mut V> {
        self.entries.get_mut(key)
    }

    /// The entry for `key`, made by `make` when absent, if a sink uses `key` ([`InUse::use_by`]).
    /// `None` when none does: the asking sink was deleted (its last reconcile may still run), and an
    /// entry made for it would stay with no sink to release it.
    pub fn entry(&mut self, key: &str, make: impl FnOnce() -> V) -> Option<&mut V> {
        if !self.entries.contains_key(key) {
            if !self.is_used(key) {
                return None;
            }
            self.entries.insert(key.to_owned(), make());
            self.gauge.set(self.entries.len() as i64);
        }
        self.entries.get_mut(key)
    }

    /// Keeps `value` for `key`, if a sink still uses that key (it may have moved on, or been
    /// deleted, while the value was being made); else drops it.
    pub fn insert(&mut self, key: &str, value: V) {
        if self.is_used(key) {
            self.entries.insert(key.to_owned(), value);
            self.gauge.set(self.entries.len() as i64);
        }
    }

    /// Forgets what the sinks `gone` says are gone used, and drops the entries no sink uses now.
    /// Until [`REMEMBER_GONE`] after `now`, what those sinks ask for is not kept.
    pub fn release(&mut self, gone: &Gone, now: Instant) {
        self.gone
            .retain(|_, when| now.saturating_duration_since(*when) < REMEMBER_GONE);
        if let Gone::One(sink) = gone {
            self.gone.insert(sink.clone(), now);
        }
        let mut released = Vec::new();
        self.users.retain(|(sink, _), _| {
            let keep = !gone.includes(sink);
            if !keep {
                released.push(sink.clone());
            }
            keep
        });
        for sink in released {
            self.gone.insert(sink, now);
        }
        self.drop_unused();
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn is_used(&self, key: &str) -> bool {
        self.users.values().any(|used| used == key)
    }

    fn drop_unused(&mut self) {
        let used: BTreeSet<&String> = self.users.values().collect();
        self.entries.retain(|key, _| used.contains(key));
        self.gauge.set(self.entries.len() as i64);
    }
}

/// Which sinks are gone, as a watch of sinks tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// One sink, as a [`user`]: it was deleted.
    One(String),
    /// Every sink in the watch's scope (one namespace, or all of them) but the listed ones: the watch
    /// listed its sinks again, and a deletion may have happened while it was not watching.
    AllBut {
        /// The watch's namespace; `None` for all of them.
        namespace: Option<String>,
        /// The sinks that exist, as [`user`]s.
        live: BTreeSet<String>,
    },
}

impl Gone {
    /// True when the sink `sink` (a [`user`]) is gone.
    pub fn includes(&self, sink: &str) -> bool {
        match self {
            Gone::One(id) => id == sink,
            Gone::AllBut { namespace, live } => {
                let in_scope = namespace.as_ref().is_none_or(|namespace| {
                    sink.strip_prefix(namespace.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                });
                in_scope && !live.contains(sink)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (InUse<u32>, Gauge) {
        let gauge = Gauge::default();
        (InUse::new(gauge.clone()), gauge)
    }

    #[test]
    fn a_rotated_key_goes_once_its_last_sink_moved_on() {
        let (mut cache, gauge) = cache();
        for sink in ["ns/a", "ns/b"] {
            cache.use_by(sink, "data", "cluster|secret@1");
        }
        cache.insert("cluster|secret@1", 1);
        assert_eq!(gauge.get(), 1);
        // The Secret rotated: a moves to the new version, b still uses the old one.
        cache.use_by("ns/a", "data", "cluster|secret@2");
        cache.insert("cluster|secret@2", 2);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("cluster|secret@1").copied(), Some(1));
        cache.use_by("ns/b", "data", "cluster|secret@2");
        assert!(cache.get("cluster|secret@1").is_none(), "no sink uses it");
        assert_eq!(cache.get("cluster|secret@2").copied(), Some(2));
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn an_entry_stays_while_any_purpose_of_any_sink_uses_it() {
        let (mut cache, _) = cache();
        cache.use_by("ns/a", "data", "k");
        cache.use_by("ns/a", "committer", "k");
        cache.insert("k", 1);
        cache.use_by("ns/a", "data", "other");
        assert!(cache.get("k").is_some(), "the committer still uses it");
        cache.use_by("ns/a", "committer", "other");
        assert!(cache.get("k").is_none());
        cache.insert("other", 2);
        cache.stop_using("ns/a", "data");
        assert!(cache.get("other").is_some(), "the committer still uses it");
        cache.stop_using("ns/a", "committer");
        assert!(cache.is_empty());
    }

    #[test]
    fn a_deleted_sink_releases_its_entries() {
        let (mut cache, gauge) = cache();
        cache.use_by("ns/a", "data", "shared");
        cache.use_by("ns/b", "data", "shared");
        cache.use_by("ns/a", "committer", "own");
        cache.insert("shared", 1);
        cache.insert("own", 2);
        cache.release(&Gone::One("ns/a".to_owned()), Instant::now());
        assert_eq!(cache.get("shared").copied(), Some(1), "b uses it");
        assert!(cache.get("own").is_none());
        cache.release(&Gone::One("ns/b".to_owned()), Instant::now());
        assert!(cache.is_empty());
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn a_deleted_sink_still_reconciling_is_not_kept_as_a_user_for_a_while() {
        let (mut cache, _) = cache();
        let deleted = Instant::now();
        cache.release(&Gone::One("ns/uid-1".to_owned()), deleted);
        // Its last reconcile, under way when the deletion was seen, asks for a session.
        cache.use_by("ns/uid-1", "committer", "k");
        cache.insert("k", 1);
        assert!(cache.is_empty());
        // Much later, remembered no more (a uid never comes back).
        cache.release(
            &Gone::One("ns/uid-2".to_owned()),
            deleted + REMEMBER_GONE + Duration::from_secs(1),
        );
        assert_eq!(cache.gone.len(), 1);
    }

    #[test]
    fn a_deleted_sink_still_reconciling_makes_no_entry() {
        let (mut cache, gauge) = cache();
        cache.use_by("ns/a", "source", "k");
        cache.release(&Gone::One("ns/a".to_owned()), Instant::now());
        // Its last reconcile, queued before the deletion, runs after it.
        cache.use_by("ns/a", "source", "k");
        assert!(cache.entry("k", || 1).is_none());
        assert!(cache.is_empty());
        assert_eq!(gauge.get(), 0);
        // A sink that uses the key gets one, made once.
        cache.use_by("ns/b", "source", "k");
        *cache.entry("k", || 1).expect("b uses k") += 1;
        assert_eq!(cache.entry("k", || 10).copied(), Some(2));
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn a_value_made_for_a_key_no_sink_uses_any_more_is_not_kept() {
        let (mut cache, gauge) = cache();
        cache.use_by("ns/a", "data", "k");
        // Deleted while its session was being opened.
        cache.release(&Gone::One("ns/a".to_owned()), Instant::now());
        cache.insert("k", 1);
        assert!(cache.is_empty());
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn a_relist_releases_only_the_absent_sinks_of_its_own_namespace() {
        let (mut cache, _) = cache();
        for (sink, key) in [
            ("one/kept", "a"),
            ("one/deleted", "b"),
            ("onebis/elsewhere", "c"),
            ("two/elsewhere", "d"),
        ] {
            cache.use_by(sink, "data", key);
            cache.insert(key, 0);
        }
        cache.release(
            &Gone::AllBut {
                namespace: Some("one".to_owned()),
                live: ["one/kept".to_owned()].into(),
            },
            Instant::now(),
        );
        let kept: Vec<&String> = cache.entries.keys().collect();
        assert_eq!(kept, ["a", "c", "d"]);
        cache.release(
            &Gone::AllBut {
                namespace: None,
                live: ["one/kept".to_owned()].into(),
            },
            Instant::now(),
        );
        let kept: Vec<&String> = cache.entries.keys().collect();
        assert_eq!(kept, ["a"]);
    }
}
