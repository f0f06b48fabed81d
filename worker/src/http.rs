//! `/healthz`, `/readyz` and `/metrics` for probes and Prometheus.
//!
//! * `/healthz` answers 200 while the process serves requests (liveness).
//! * `/readyz` answers 200 once the sink is connected and committing, 503 while it retries against an
//!   unavailable Cassandra, while every Kafka broker is down, or before it has started (readiness);
//!   a 503's body says which, with Cassandra's error.
//! * `/metrics` is the Prometheus text format.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// The router, separate from serving so tests can drive it.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(prometheus))
        .with_state(metrics)
}

async fn ready(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.unready_reason() {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn prometheus(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound (taken, or not an address of this host).
    #[error("cannot listen on {address} for /healthz, /readyz and /metrics: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving /healthz, /readyz and /metrics failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds the endpoint's address; a failure is the caller's to report, before anything else starts.
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| HttpError::Bind { address, source })
}

/// Serves the endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    }
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(HttpError::Serve)
}
