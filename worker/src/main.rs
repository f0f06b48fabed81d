//! The `cassandra-sink-worker` command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cassandra_sink_worker::config::SinkConfig;
use cassandra_sink_worker::metrics::Metrics;
use cassandra_sink_worker::{http, startup};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

/// jemalloc: its thread caches and decay return freed memory to the system, where glibc grows an
/// arena per thread; the worker's memory budget is small (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Moves a Kafka topic into Apache Cassandra exactly once.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        env = "CASSANDRA_SINK_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the sink until SIGTERM or SIGINT, then commits what landed and releases its partitions.
    Run {
        /// The sink configuration (YAML). Keys can be overridden by CASSANDRA_SINK__<KEY>__<KEY>=value.
        #[arg(long, env = "CASSANDRA_SINK_CONFIG")]
        config: PathBuf,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, env = "CASSANDRA_SINK_LISTEN", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Name of this worker in the committer table (defaults to the host name and process id).
        #[arg(long, env = "CASSANDRA_SINK_WORKER_ID")]
        worker_id: Option<String>,
    },
    /// Reads and checks a sink configuration and its statement, then prints the configuration with every
    /// default filled in. Needs no server.
    Check {
        /// The sink configuration (YAML).
        #[arg(long, env = "CASSANDRA_SINK_CONFIG")]
        config: PathBuf,
    },
    /// Lists the committed position of every partition.
    Positions {
        /// The sink configuration (YAML).
        #[arg(long, env = "CASSANDRA_SINK_CONFIG")]
        config: PathBuf,
    },
    /// Sets a partition's committed position (stop the sink first; a running worker is fenced).
    ResetPosition {
        /// The sink configuration (YAML).
        #[arg(long, env = "CASSANDRA_SINK_CONFIG")]
        config: PathBuf,
        /// Kafka partition.
        #[arg(long)]
        partition: i32,
        /// Next offset to apply.
        #[arg(long)]
        offset: i64,
    },
}

fn load(path: &Path) -> anyhow::Result<SinkConfig> {
    Ok(SinkConfig::from_file_with_overrides(
        path,
        std::env::vars(),
    )?)
}

fn worker_id(explicit: Option<String>) -> String {
    explicit.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "worker".to_owned());
        format!("{host}-{}", std::process::id())
    })
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled, so a SIGTERM during start-up is not the default (fatal) action.
fn termination() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// A future that can be awaited from several places.
fn futures_shared(
    future: impl std::future::Future<Output = ()> + Send + 'static,
) -> futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
    use futures::FutureExt;
    let boxed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(future);
    boxed.shared()
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs in files and collectors stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { config } => {
            let parsed = load(&config)?;
            startup::check_statement(&parsed)?;
            let rendered = serde_saphyr::to_string(&parsed)
                .with_context(|| format!("rendering {}", config.display()))?;
            print!("{rendered}");
        }
        Command::Run {
            config,
            listen,
            worker_id: id,
        } => {
            let shutdown = termination()?;
            let parsed = load(&config)?;
            let metrics = Arc::new(Metrics::new());
            let (stop, stopped) = watch::channel(false);
            let mut http_stopped = stopped.clone();
            let server = tokio::spawn(http::serve(listen, metrics.clone(), async move {
                let _ = http_stopped.wait_for(|stop| *stop).await;
            }));
            let id = worker_id(id);
            tracing::info!(sink = %parsed.sink_id, worker = %id, topic = %parsed.source.kafka.topic, "starting");
            // One shutdown future for both phases: a signal during start-up ends it cleanly too.
            let shutdown = futures_shared(shutdown);
            let result = tokio::select! {
                prepared = startup::prepare(&parsed, &id, metrics.clone()) => match prepared {
                    Ok(prepared) => prepared.run(shutdown.clone()).await,
                    Err(error) => Err(error),
                },
                () = shutdown.clone() => {
                    tracing::info!("stopped during start-up");
                    Ok(())
                }
            };
            let _ = stop.send(true);
            drop(stopped);
            let _ = server.await;
            if let Err(error) = result {
                tracing::error!(reason = %error.reason(), %error, "sink stopped");
                return Err(error.into());
            }
            tracing::info!("stopped cleanly");
        }
        Command::Positions { config } => {
            let parsed = load(&config)?;
            let prepared =
                startup::prepare(&parsed, &worker_id(None), Arc::new(Metrics::new())).await?;
            println!(
                "{:>9} {:>16} {:>16} {:>6}",
                "partition", "committed", "records", "epoch"
            );
            for position in prepared.committer().positions().await? {
                let committed = position
                    .committed
                    .map_or_else(|| "-".to_owned(), |offset| offset.to_string());
                println!(
                    "{:>9} {:>16} {:>16} {:>6}",
                    position.partition, committed, position.records_committed, position.epoch
                );
            }
        }
        Command::ResetPosition {
            config,
            partition,
            offset,
        } => {
            let parsed = load(&config)?;
            let prepared =
                startup::prepare(&parsed, &worker_id(None), Arc::new(Metrics::new())).await?;
            prepared
                .committer()
                .reset(partition, &parsed.source.kafka.topic, offset)
                .await?;
            println!("partition {partition}: committed position set to {offset}");
        }
    }
    Ok(())
}
