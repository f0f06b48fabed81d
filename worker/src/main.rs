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
    /// Lists the committed position of every topic and partition.
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
        /// Kafka topic; may be left out when the sink reads one topic.
        #[arg(long)]
        topic: Option<String>,
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

/// Where Kubernetes reads a container's termination message (the pod's default
/// `terminationMessagePath`); it shows in `kubectl describe pod` and the operator puts it in the sink's
/// status.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// Leaves `reason=…: message` for Kubernetes when running in a pod (the file exists there only).
fn termination_message(reason: &str, error: &dyn std::fmt::Display) {
    if Path::new(TERMINATION_LOG).exists() {
        // Kubernetes keeps at most 4096 bytes of it.
        let mut message = format!("reason={reason}: {error}");
        let mut end = message.len().min(4000);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        if let Err(failure) = std::fs::write(TERMINATION_LOG, message) {
            tracing::warn!(%failure, "cannot write the termination message");
        }
    }
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

/// Runs the command; a failure is printed as its message and causes (`error: …`), never with a
/// backtrace, whatever `RUST_BACKTRACE` says: what went wrong is a configuration or a server, and
/// the message says which.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The committer table's cluster, connected once without waiting (for the commands a person runs).
async fn committer_session(
    config: &SinkConfig,
) -> anyhow::Result<Arc<scylla::client::session::Session>> {
    let cluster = config
        .committer
        .cassandra
        .as_ref()
        .unwrap_or(&config.cassandra);
    Ok(Arc::new(
        cassandra_sink_worker::cassandra::connect(cluster).await?,
    ))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { config } => {
            let parsed = load(&config)?;
            if let Err(error) = startup::check_statements(&parsed) {
                anyhow::bail!("reason={}: {error}", error.reason());
            }
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
            let mut parsed = load(&config)?;
            cassandra_sink_worker::source::join_as(&mut parsed.source.kafka, id.as_deref());
            let metrics = Arc::new(Metrics::new());
            let (stop, stopped) = watch::channel(false);
            let mut http_stopped = stopped.clone();
            // Bound before anything else: without its probes a worker is only ever restarted.
            let listener = match http::bind(listen).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(reason = "ListenFailed", %error, "sink stopped");
                    return Err(error.into());
                }
            };
            let server = tokio::spawn(http::serve(listener, metrics.clone(), async move {
                let _ = http_stopped.wait_for(|stop| *stop).await;
            }));
            let id = worker_id(id);
            let topics = cassandra_sink_worker::topics::subscription(&parsed.source.kafka)
                .map(|subscription| subscription.describe())
                .unwrap_or_default();
            tracing::info!(sink = %parsed.sink_id, worker = %id, %topics, "starting");
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
            let served = server.await;
            if let Err(error) = result {
                tracing::error!(reason = %error.reason(), %error, "sink stopped");
                termination_message(error.reason(), &error);
                return Err(error.into());
            }
            match served {
                Ok(Ok(())) => tracing::info!("stopped cleanly"),
                Ok(Err(error)) => {
                    tracing::error!(reason = "ListenFailed", %error, "the HTTP server failed");
                    return Err(error.into());
                }
                Err(error) => return Err(error.into()),
            }
        }
        Command::Positions { config } => {
            // Read-only: no DDL, no prepared statements, nothing claimed.
            let parsed = load(&config)?;
            let session = committer_session(&parsed).await?;
            let positions = cassandra_sink_worker::committer::read_positions(
                &session,
                &parsed.committer.keyspace,
                &parsed.committer.table,
                &parsed.sink_id,
            )
            .await?;
            let width = positions
                .iter()
                .map(|position| position.topic.len())
                .max()
                .unwrap_or(0)
                .max("topic".len());
            println!(
                "{:<width$} {:>9} {:>16} {:>16} {:>6}",
                "topic", "partition", "committed", "records", "epoch"
            );
            for position in positions {
                let committed = position
                    .committed
                    .map_or_else(|| "-".to_owned(), |offset| offset.to_string());
                println!(
                    "{:<width$} {:>9} {:>16} {:>16} {:>6}",
                    position.topic,
                    position.partition,
                    committed,
                    position.records_committed,
                    position.epoch
                );
            }
        }
        Command::ResetPosition {
            config,
            topic,
            partition,
            offset,
        } => {
            let parsed = load(&config)?;
            let topic = match (topic, &parsed.source.kafka.topic) {
                (Some(topic), _) => topic,
                (None, Some(only)) => only.clone(),
                (None, None) => {
                    anyhow::bail!("this sink reads several topics: name one with --topic")
                }
            };
            let partition =
                cassandra_sink_worker::checkpoint::SourcePartition::new(topic, partition);
            let cluster = parsed
                .committer
                .cassandra
                .as_ref()
                .unwrap_or(&parsed.cassandra);
            let committer = cassandra_sink_worker::committer::Committer::new(
                committer_session(&parsed).await?,
                &parsed.committer.keyspace,
                &parsed.committer.table,
                &parsed.sink_id,
                &worker_id(None),
                cassandra_sink_worker::cassandra::driver_consistency(cluster.consistency),
                cassandra_sink_worker::cassandra::driver_serial(
                    parsed.committer.serial_consistency,
                ),
            )
            .await?;
            committer.reset(&partition, offset).await?;
            println!("partition {partition}: committed position set to {offset}");
        }
    }
    Ok(())
}
