//! Part (d): Flink's own Cassandra sink on the same topic, the same Cassandra and a table in the same
//! state, run as a Flink job in a local MiniCluster (`tests/flink`, built by `scripts/bench.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use cassandra_sink_tests::Settings;
use futures::TryStreamExt;
use scylla::client::session::Session;

use crate::data::stale_keys;
use crate::{CpuSplit, tables};

/// Which of Flink's Cassandra sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `enableWriteAheadLog(new CassandraCommitter(…))`: Flink's exactly-once sink.
    WriteAheadLog,
    /// The plain sink: at least once.
    Plain,
}

impl Mode {
    /// The job's `--mode`, also the table's suffix.
    pub fn name(self) -> &'static str {
        match self {
            Mode::WriteAheadLog => "wal",
            Mode::Plain => "plain",
        }
    }

    /// The table this sink writes.
    pub fn table(self) -> String {
        format!("flink_{}", self.name())
    }
}

/// What one Flink run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// The sink.
    pub mode: Mode,
    /// From `java` starting to its exit, JVM and MiniCluster start-up included.
    pub wall: Duration,
    /// The job's own runtime, as Flink reports it.
    pub net_runtime: Duration,
    /// CPU seconds of the Flink process.
    pub cpu_seconds: f64,
    /// Peak resident set of the Flink process, MiB.
    pub peak_rss_mib: f64,
    /// Cassandra's CPU seconds per 100,000 records during the run.
    pub cassandra_per_100k: f64,
    /// Keys whose row is not their last update.
    pub stale: usize,
    /// Rows of `CassandraCommitter`'s table (write-ahead log only): one per sink subtask that committed.
    pub committer_rows: usize,
}

/// The pre-filled topic every sink drains, and what each must leave in its table.
pub struct Drain<'a> {
    /// The topic.
    pub topic: &'a str,
    /// Records in it.
    pub records: usize,
    /// The last update of every key.
    pub expected: &'a BTreeMap<String, (i32, i64)>,
}

/// Runs Flink's `mode` sink over the topic into `keyspace.<mode's table>` and checks the table.
/// `job` is `tests/flink/target` (classes and lib).
pub async fn run(
    settings: &Settings,
    session: &Session,
    keyspace: &str,
    drain: &Drain<'_>,
    mode: Mode,
    job: &Path,
) -> anyhow::Result<Run> {
    let Drain {
        topic,
        records,
        expected,
    } = *drain;
    let (host, port) = settings
        .cassandra
        .split(',')
        .next()
        .and_then(|point| point.rsplit_once(':'))
        .unwrap_or((settings.cassandra.as_str(), "9042"));
    let committer_tables_before = committer_tables(session, keyspace).await?;
    let classpath = format!(
        "{}:{}/*",
        job.join("classes").display(),
        job.join("lib").display()
    );
    let log_dir = std::env::temp_dir().join(format!("{keyspace}-flink-{}", mode.name()));
    std::fs::create_dir_all(&log_dir)?;
    let (stdout_path, stderr_path) = (log_dir.join("stdout"), log_dir.join("stderr"));
    let before = CpuSplit::sample(std::process::id());
    let started = Instant::now();
    let mut child = std::process::Command::new("java")
        .args(["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp"])
        .arg(&classpath)
        .arg("bench.FlinkSinkJob")
        .args(["--bootstrap", &settings.kafka, "--topic", topic])
        .args(["--cassandra-host", host, "--cassandra-port", port])
        .args(["--keyspace", keyspace, "--table", &mode.table()])
        .args(["--mode", mode.name(), "--parallelism", "2"])
        .args(["--checkpoint-ms", "1000"])
        .arg("--checkpoint-dir")
        .arg(log_dir.join("checkpoints"))
        .stdout(Stdio::from(std::fs::File::create(&stdout_path)?))
        .stderr(Stdio::from(std::fs::File::create(&stderr_path)?))
        .spawn()
        .context("java could not be started")?;
    let deadline = started + Duration::from_secs(1_800);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("the Flink job did not finish in 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed();
    let cassandra_per_100k = before
        .per_100k(CpuSplit::sample(std::process::id()), records)
        .cassandra;
    let stdout = std::fs::read_to_string(&stdout_path)?;
    let stderr = std::fs::read_to_string(&stderr_path)?;
    std::fs::remove_dir_all(&log_dir).ok();
    let figures = stdout
        .lines()
        .find_map(|line| line.strip_prefix("flink-sink-job: "))
        .with_context(|| {
            format!("the Flink job ({status}) printed no figures:\n{stdout}\n{stderr}")
        })?;
    let figure = |name: &str| -> anyhow::Result<f64> {
        figures
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("no {name} in {figures:?}"))
    };
    let errors = stderr.lines().filter(|line| line.contains("ERROR")).count();
    if errors > 0 {
        eprintln!(
            "  Flink ({}) logged {errors} errors; the first:",
            mode.name()
        );
        for line in stderr.lines().filter(|line| line.contains("ERROR")).take(3) {
            eprintln!("    {line}");
        }
    }

    let committer_rows = match mode {
        Mode::Plain => 0,
        Mode::WriteAheadLog => {
            let after = committer_tables(session, keyspace).await?;
            let created: Vec<_> = after.difference(&committer_tables_before).collect();
            anyhow::ensure!(
                created.len() == 1,
                "expected the job to create one CassandraCommitter table, found {created:?}"
            );
            let rows = count_rows(session, keyspace, created[0]).await?;
            anyhow::ensure!(
                rows > 0,
                "CassandraCommitter's table {keyspace}.{} is empty: the write-ahead log never committed",
                created[0]
            );
            rows
        }
    };
    let actual = tables::read(session, keyspace, &mode.table()).await?;
    Ok(Run {
        mode,
        wall,
        net_runtime: Duration::from_millis(figure("net_runtime_ms")? as u64),
        cpu_seconds: figure("cpu_seconds")?,
        peak_rss_mib: figure("peak_rss_mib")?,
        cassandra_per_100k,
        stale: stale_keys(expected, &actual),
        committer_rows,
    })
}

/// `CassandraCommitter` names its table `checkpoints_<job id>`.
async fn committer_tables(session: &Session, keyspace: &str) -> anyhow::Result<BTreeSet<String>> {
    let tables = session
        .query_iter(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await?
        .rows_stream::<(String,)>()?
        .try_filter_map(
            |(table,)| async move { Ok(table.starts_with("checkpoints_").then_some(table)) },
        )
        .try_collect()
        .await?;
    Ok(tables)
}

async fn count_rows(session: &Session, keyspace: &str, table: &str) -> anyhow::Result<usize> {
    let (count,) = session
        .query_unpaged(format!("SELECT count(*) FROM {keyspace}.{table}"), ())
        .await?
        .into_rows_result()?
        .single_row::<(i64,)>()?;
    Ok(count as usize)
}
