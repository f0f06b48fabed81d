//! Prometheus metrics of the operator, and the HTTP endpoint that serves them with `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of `cassandra_sink_operator_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error's kind, see [`crate::controller::ReconcileError::kind`].
    pub kind: String,
}

/// The operator's metrics.
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Counter,
    /// Failed reconciles by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Seconds one reconcile took.
    pub duration: Histogram,
    /// Sessions open on the sinks' Cassandra clusters, one per cluster and credentials in use.
    pub cassandra_sessions: Gauge,
    /// Clients of the sinks' Kafka clusters, one per cluster and credentials in use.
    pub kafka_clients: Gauge,
    registry: Registry,
}

impl Metrics {
    /// Registers every metric under the `cassandra_sink_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cassandra_sink_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let cassandra_sessions = Gauge::default();
        registry.register(
            "cassandra_sessions",
            "Sessions open on the sinks' Cassandra clusters (one per cluster and credentials a sink uses)",
            cassandra_sessions.clone(),
        );
        let kafka_clients = Gauge::default();
        registry.register(
            "kafka_clients",
            "Clients of the sinks' Kafka clusters (one per cluster and credentials a sink uses)",
            kafka_clients.clone(),
        );
        Self {
            reconciles,
            errors,
            duration,
            cassandra_sessions,
            kafka_clients,
            registry,
        }
    }

    /// Counts a failed reconcile.
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
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

/// Serves `/healthz` and `/metrics` on `address` until the process ends.
pub async fn serve(address: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move { metrics.encode() }),
        )
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_metrics_are_exposed_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.reconciles.inc();
        metrics.error("kube");
        metrics.cassandra_sessions.set(2);
        let text = metrics.encode();
        assert!(
            text.contains("cassandra_sink_operator_cassandra_sessions 2"),
            "{text}"
        );
        assert!(
            text.contains("cassandra_sink_operator_kafka_clients 0"),
            "{text}"
        );
        assert!(
            text.contains("cassandra_sink_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("cassandra_sink_operator_reconcile_errors_total{kind=\"kube\"} 1"),
            "{text}"
        );
    }
}
