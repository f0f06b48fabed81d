//! The `cassandra-sink-operator` command.

use cassandra_sink_operator::build::Settings;
use cassandra_sink_operator::controller;
use clap::Parser;

/// Keeps sink workers matching each CassandraSink.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CASSANDRA_SINK_NAMESPACE")]
    namespace: Option<String>,
    /// The worker image.
    #[arg(long, env = "CASSANDRA_SINK_WORKER_IMAGE", default_value = concat!("cassandra-sink-worker:", env!("CARGO_PKG_VERSION")))]
    worker_image: String,
    /// The worker image's pull policy.
    #[arg(
        long,
        env = "CASSANDRA_SINK_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    image_pull_policy: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // kube's rustls needs a process-wide crypto provider (ring, as kube's feature selects).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await?;
    tracing::info!(namespace = ?cli.namespace, image = %cli.worker_image, "starting");
    controller::run(
        client,
        Settings {
            worker_image: cli.worker_image,
            image_pull_policy: cli.image_pull_policy,
        },
        cli.namespace,
    )
    .await;
    Ok(())
}
