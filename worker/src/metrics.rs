//! Prometheus metrics of the worker, exposed on `/metrics` by [`crate::http`].

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of `cassandra_sink_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// A short, stable kind such as `invalid_json`, `cassandra_unavailable`, `fenced`.
    pub kind: String,
}

/// Every metric of the worker, and the readiness flag.
pub struct Metrics {
    /// Records taken from Kafka.
    pub records_read: Counter,
    /// Records written to Cassandra by committed checkpoints.
    pub records_written: Counter,
    /// Records set aside as invalid.
    pub records_dead_lettered: Counter,
    /// Records that ran the delete statement, by committed checkpoints (also in `records_written`).
    pub records_deleted: Counter,
    /// Records that ran no statement (ignored tombstones, records `ignoreWhen` matched), committed.
    pub records_skipped: Counter,
    /// Checkpoints committed.
    pub checkpoints: Counter,
    /// Unlogged batches (rows of one partition) written.
    pub batches: Counter,
    /// Writes left out because a later record of the same checkpoint replaced their row entirely.
    pub writes_superseded: Counter,
    /// Seconds from sealing a checkpoint to its commit.
    pub checkpoint_duration: Histogram,
    /// Seconds the commit transactions of a checkpoint took.
    pub commit_latency: Histogram,
    /// Write requests in flight.
    pub requests_in_flight: Gauge,
    /// Partitions this worker owns.
    pub partitions_owned: Gauge,
    /// Records read but not yet committed.
    pub commit_lag: Gauge,
    /// Errors by kind.
    pub errors: Family<ErrorLabels, Counter>,
    registry: Registry,
    ready: AtomicBool,
    /// What the write loop waits for while it is not ready.
    unready_reason: std::sync::Mutex<String>,
    kafka_available: AtomicBool,
    last_commit_ms: AtomicI64,
}

impl Metrics {
    /// Registers every metric under the `cassandra_sink` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cassandra_sink");
        let records_read = Counter::default();
        let records_written = Counter::default();
        let records_dead_lettered = Counter::default();
        let records_deleted = Counter::default();
        let records_skipped = Counter::default();
        let checkpoints = Counter::default();
        let batches = Counter::default();
        let writes_superseded = Counter::default();
        let checkpoint_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let commit_latency = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let requests_in_flight = Gauge::default();
        let partitions_owned = Gauge::default();
        let commit_lag = Gauge::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "records_read",
            "Records taken from Kafka",
            records_read.clone(),
        );
        registry.register(
            "records_written",
            "Records written to Cassandra by committed checkpoints",
            records_written.clone(),
        );
        registry.register(
            "batches",
            "Unlogged batches of rows sharing a partition key, written",
            batches.clone(),
        );
        registry.register(
            "writes_superseded",
            "Writes left out because a later record of the same checkpoint replaced their row entirely",
            writes_superseded.clone(),
        );
        registry.register(
            "records_dead_lettered",
            "Records set aside as invalid, with their reason",
            records_dead_lettered.clone(),
        );
        registry.register(
            "records_deleted",
            "Records that deleted rows, by committed checkpoints (counted in records_written too)",
            records_deleted.clone(),
        );
        registry.register(
            "records_skipped",
            "Records that ran no statement (ignored tombstones, records ignoreWhen matched), committed",
            records_skipped.clone(),
        );
        registry.register("checkpoints", "Checkpoints committed", checkpoints.clone());
        registry.register(
            "checkpoint_duration_seconds",
            "From sealing a checkpoint to its commit",
            checkpoint_duration.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "The commit transactions of one checkpoint",
            commit_latency.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Cassandra write requests in flight",
            requests_in_flight.clone(),
        );
        registry.register(
            "partitions_owned",
            "Kafka partitions this worker has claimed",
            partitions_owned.clone(),
        );
        registry.register(
            "commit_lag_records",
            "Records read but not yet committed",
            commit_lag.clone(),
        );
        registry.register("errors", "Errors by kind", errors.clone());
        Self {
            records_read,
            records_written,
            records_dead_lettered,
            records_deleted,
            records_skipped,
            checkpoints,
            batches,
            writes_superseded,
            checkpoint_duration,
            commit_latency,
            requests_in_flight,
            partitions_owned,
            commit_lag,
            errors,
            registry,
            ready: AtomicBool::new(false),
            unready_reason: std::sync::Mutex::new(String::new()),
            kafka_available: AtomicBool::new(true),
            last_commit_ms: AtomicI64::new(0),
        }
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Marks the write loop ready (connected to Cassandra and committing) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the write loop not ready, with what it waits for (`/readyz` says it).
    pub fn set_unready(&self, reason: String) {
        if let Ok(mut unready) = self.unready_reason.lock() {
            *unready = reason;
        }
        self.ready.store(false, Ordering::Relaxed);
    }

    /// Why the worker is not ready, in a few words; `None` when it is.
    pub fn unready_reason(&self) -> Option<String> {
        if !self.kafka_available() {
            return Some("every Kafka broker is unreachable".to_owned());
        }
        if self.ready.load(Ordering::Relaxed) {
            return None;
        }
        let reason = self
            .unready_reason
            .lock()
            .map(|reason| reason.clone())
            .unwrap_or_default();
        Some(if reason.is_empty() {
            "starting".to_owned()
        } else {
            reason
        })
    }

    /// Marks Kafka reachable or not (all brokers down).
    pub fn set_kafka_available(&self, available: bool) {
        self.kafka_available.store(available, Ordering::Relaxed);
    }

    /// True while Kafka is reachable.
    pub fn kafka_available(&self) -> bool {
        self.kafka_available.load(Ordering::Relaxed)
    }

    /// True when the write loop is ready and Kafka reachable.
    pub fn is_ready(&self) -> bool {
        self.unready_reason().is_none()
    }

    /// Remembers when the last checkpoint committed.
    pub fn committed_at(&self, now_ms: i64) {
        self.last_commit_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Milliseconds since the epoch of the last commit, 0 if none.
    pub fn last_commit_ms(&self) -> i64 {
        self.last_commit_ms.load(Ordering::Relaxed)
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.records_written.inc_by(3);
        metrics.error("invalid_json");
        let text = metrics.encode();
        assert!(
            text.contains("cassandra_sink_records_written_total 3"),
            "{text}"
        );
        assert!(
            text.contains("cassandra_sink_errors_total{kind=\"invalid_json\"} 1"),
            "{text}"
        );
    }
}
