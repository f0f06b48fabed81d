//! The `cassandra-sink-operator` command.

use cassandra_sink_operator::build::Settings;
use std::net::SocketAddr;
use std::sync::Arc;

use cassandra_sink_operator::metrics::{self, Metrics};
use cassandra_sink_operator::{controller, leader};
use clap::Parser;

/// jemalloc: the operator's memory comes and goes with reconciles on many threads (the async workers,
/// the blocking pool for Kafka offset reads), where glibc keeps an arena per thread and returns little.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Keeps sink workers matching each CassandraSink.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Watch only these namespaces, comma-separated (default: all namespaces).
    #[arg(
        long = "namespace",
        env = "CASSANDRA_SINK_NAMESPACE",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
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
    /// Run without leader election (only when a single replica can ever run).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader-election Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "cassandra-sink-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (defaults to the host name, i.e. the pod name).
    #[arg(long, env = "HOSTNAME")]
    identity: Option<String>,
    /// Log as JSON lines (for log collectors).
    #[arg(long, env = "CASSANDRA_SINK_LOG_JSON")]
    log_json: bool,
    /// Address of /healthz and /metrics.
    #[arg(
        long,
        env = "CASSANDRA_SINK_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    listen: SocketAddr,
    /// How often a running sink's progress is read from its committer table (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    progress_interval: std::time::Duration,
    /// Most reconciles at once (per watched namespace).
    #[arg(long, default_value_t = 32)]
    max_concurrent_reconciles: u16,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    // kube's rustls needs a process-wide crypto provider (ring, as kube's feature selects).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await?;
    tracing::info!(namespaces = ?cli.namespaces, image = %cli.worker_image, "starting");
    let metrics = Arc::new(Metrics::new());
    let server = tokio::spawn(metrics::serve(cli.listen, metrics.clone()));
    let work = controller::run(
        client.clone(),
        Settings {
            worker_image: cli.worker_image,
            image_pull_policy: cli.image_pull_policy,
        },
        cli.namespaces,
        metrics,
        cli.progress_interval,
        cli.max_concurrent_reconciles,
    );
    if cli.no_leader_election {
        work.await;
        server.abort();
        return Ok(());
    }
    let election = leader::Election {
        name: cli.lease_name,
        namespace: cli.lease_namespace,
        identity: cli
            .identity
            .unwrap_or_else(|| format!("cassandra-sink-operator-{}", std::process::id())),
        duration_seconds: cli.lease_seconds,
    };
    let result = leader::while_leader(client, election, work).await;
    server.abort();
    Ok(result?)
}
