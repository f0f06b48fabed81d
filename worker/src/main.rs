//! The `cassandra-sink-worker` command.

use std::path::PathBuf;

use anyhow::Context;
use cassandra_sink_worker::config::SinkConfig;
use clap::{Parser, Subcommand};

/// Moves a Kafka topic into Apache Cassandra exactly once.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reads and checks a sink configuration, then prints it with every default filled in.
    Check {
        /// The sink configuration (YAML).
        #[arg(long, env = "CASSANDRA_SINK_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            let parsed = SinkConfig::from_file(&config)?;
            let rendered = serde_saphyr::to_string(&parsed)
                .with_context(|| format!("rendering {}", config.display()))?;
            print!("{rendered}");
        }
    }
    Ok(())
}
