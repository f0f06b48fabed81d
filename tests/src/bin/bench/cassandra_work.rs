//! What Cassandra did during a part, from its own metrics: the tasks each of its thread pools
//! completed (`system_views.thread_pools`). Two parts that write the same rows should show the same
//! mutations; any other work (lightweight transactions, reads, flushes, compactions) is what one part
//! makes Cassandra do beyond the rows.
//!
//! Flushes and compactions run behind the writes that caused them; [`settle`] waits them out before
//! a part starts, so that no part pays for the one before it. The memtables and heap an earlier part
//! leaves behind weigh on the next one too; [`Reset`] empties them first where it can.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use futures::TryStreamExt;
use scylla::client::session::Session;

/// Completed tasks of every thread pool, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Work(BTreeMap<String, i64>);

impl Work {
    /// Now.
    pub async fn sample(session: &Session) -> anyhow::Result<Self> {
        let pools = session
            .query_iter(
                "SELECT name, completed_tasks FROM system_views.thread_pools",
                (),
            )
            .await?
            .rows_stream::<(String, i64)>()?
            .try_collect()
            .await?;
        Ok(Self(pools))
    }

    /// Tasks completed from `self` to `later` per 100,000 records, for the pools that did any.
    pub fn per_100k(&self, later: &Self, records: usize) -> String {
        let scale = 100_000.0 / records as f64;
        later
            .0
            .iter()
            .filter_map(|(pool, after)| {
                let done = after - self.0.get(pool).copied().unwrap_or(0);
                (done > 0).then(|| format!("{pool} {:.0}", done as f64 * scale))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The pools whose work lags behind the writes that caused it.
const BACKGROUND: [&str; 4] = [
    "CompactionExecutor",
    "MemtableFlushWriter",
    "MemtablePostFlush",
    "PerDiskMemtableFlushWriter_0",
];

/// Waits until Cassandra has no flush or compaction running or queued, seen twice in a row half a
/// second apart (at most two minutes); returns how long that took.
pub async fn settle(session: &Session) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut quiet = 0;
    while quiet < 2 && started.elapsed() < Duration::from_secs(120) {
        let busy: Vec<(String, i32, i32)> = session
            .query_iter(
                "SELECT name, active_tasks, pending_tasks FROM system_views.thread_pools",
                (),
            )
            .await?
            .rows_stream::<(String, i32, i32)>()?
            .try_collect()
            .await?;
        let background = busy
            .iter()
            .filter(|(pool, active, pending)| {
                BACKGROUND.contains(&pool.as_str()) && (*active > 0 || *pending > 0)
            })
            .count();
        quiet = if background == 0 { quiet + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(started.elapsed())
}

/// Empties the single local node's memtables (`nodetool flush`, through `scripts/localenv.sh`, over
/// its loopback JMX port) and collects its heap (`jcmd <pid> GC.run`), so that every part starts from
/// the same state rather than from the memtables and garbage of the part before it.
#[derive(Debug, Clone)]
pub struct Reset {
    localenv: PathBuf,
    cassandra_pid_file: PathBuf,
}

impl Reset {
    /// From `LOCALENV_SCRIPT` and `CASSANDRA_PID_FILE` (`scripts/localenv.sh env`); none on the local
    /// clusters, whose nodes open no JMX port.
    pub fn from_env(cluster: bool) -> Option<Self> {
        if cluster {
            return None;
        }
        Some(Self {
            localenv: std::env::var_os("LOCALENV_SCRIPT")?.into(),
            cassandra_pid_file: std::env::var_os("CASSANDRA_PID_FILE")?.into(),
        })
    }

    /// Flushes every table, then runs a full garbage collection.
    pub async fn run(&self) -> anyhow::Result<()> {
        let reset = self.clone();
        tokio::task::spawn_blocking(move || reset.run_blocking()).await?
    }

    fn run_blocking(&self) -> anyhow::Result<()> {
        let flush = Command::new(&self.localenv)
            .args(["nodetool", "flush"])
            .output()
            .with_context(|| format!("running {} nodetool flush", self.localenv.display()))?;
        anyhow::ensure!(
            flush.status.success(),
            "nodetool flush failed: {}",
            String::from_utf8_lossy(&flush.stderr)
        );
        let pid = std::fs::read_to_string(&self.cassandra_pid_file)
            .with_context(|| format!("reading {}", self.cassandra_pid_file.display()))?;
        let gc = Command::new("jcmd")
            .args([pid.trim(), "GC.run"])
            .output()
            .context("running jcmd (the JDK's) for a garbage collection in Cassandra")?;
        anyhow::ensure!(
            gc.status.success(),
            "jcmd GC.run failed: {}",
            String::from_utf8_lossy(&gc.stdout)
        );
        Ok(())
    }
}
