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

/// CPU seconds of each thread of a process, with its name, at one moment: where a server's CPU goes
/// (request stages, event loops, commit log, garbage collector, compiler), from `/proc` alone.
#[derive(Debug, Clone, Default)]
pub struct Threads(BTreeMap<u32, (String, f64)>);

/// Cassandra's request stages share one pool of threads, each renamed after the stage it serves at
/// the moment: a thread's CPU cannot be told apart by stage, so they count as one group.
const SHARED_POOL_STAGES: [&str; 6] = [
    "Native-Transport-Requests",
    "MutationStage",
    "ReadStage",
    "CounterMutationStage",
    "ViewMutationStage",
    "RequestResponseStage",
];

/// The group the shared pool's threads are counted in.
const SHARED_POOL: &str = "request stages (shared pool)";

impl Threads {
    /// Now, for the process whose pid `pid_file` holds; empty when it cannot be read.
    pub fn sample(pid_file: Option<&std::path::Path>) -> Self {
        let Some(pid) = pid_file
            .and_then(|file| std::fs::read_to_string(file).ok())
            .and_then(|pid| pid.trim().parse::<u32>().ok())
        else {
            return Self::default();
        };
        let mut threads = BTreeMap::new();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let path = task.path();
            let Some(tid) = task.file_name().to_str().and_then(|tid| tid.parse().ok()) else {
                continue;
            };
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(path.join("comm")),
                std::fs::read_to_string(path.join("stat")),
            ) else {
                continue;
            };
            if let Some(seconds) = cpu_seconds(&stat) {
                threads.insert(tid, (name.trim().to_owned(), seconds));
            }
        }
        Self(threads)
    }

    /// CPU seconds from `self` to `later` per 100,000 records by group of threads, for the `top`
    /// groups that spent the most, largest first, and the rest summed. A thread is counted by its
    /// name in `later`; the CPU of threads that ended in between is not counted.
    pub fn per_100k(&self, later: &Self, records: usize, top: usize) -> String {
        let scale = 100_000.0 / records as f64;
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for (tid, (name, after)) in &later.0 {
            let before = self.0.get(tid).map_or(0.0, |(_, seconds)| *seconds);
            *groups.entry(group_of(name)).or_insert(0.0) += (after - before) * scale;
        }
        let mut spent: Vec<(String, f64)> = groups
            .into_iter()
            .filter(|(_, seconds)| *seconds > 0.0)
            .collect();
        spent.sort_by(|a, b| b.1.total_cmp(&a.1));
        let rest: f64 = spent.iter().skip(top).map(|(_, seconds)| seconds).sum();
        let mut shown: Vec<String> = spent
            .iter()
            .take(top)
            .map(|(name, seconds)| format!("{name} {seconds:.2}"))
            .collect();
        if rest > 0.0 {
            shown.push(format!("other {rest:.2}"));
        }
        shown.join(", ")
    }
}

/// A thread's group: its name without the numbers that tell threads of one pool apart
/// (`GC Thread#3` is `GC Thread`), and [`SHARED_POOL`] for the request stages. Names are cut at 15
/// bytes (`Native-Transpor`), so a stage is recognised by a prefix.
fn group_of(name: &str) -> String {
    let name =
        name.trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '-' | '#' | ':' | ' '));
    if !name.is_empty()
        && SHARED_POOL_STAGES
            .iter()
            .any(|stage| stage.starts_with(name) || name.starts_with(stage))
    {
        return SHARED_POOL.to_owned();
    }
    name.to_owned()
}

/// User plus system CPU seconds from a `/proc/…/stat` line (clock ticks of 1/100 s): the fields after
/// the command, state at index 0, utime at 11, stime at 12.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_of_one_pool_are_one_group() {
        assert_eq!(group_of("Native-Transpor"), SHARED_POOL);
        assert_eq!(group_of("MutationStage-12"), SHARED_POOL);
        assert_eq!(group_of("ReadStage-1"), SHARED_POOL);
        assert_eq!(group_of("epollEventLoopG"), "epollEventLoopG");
        assert_eq!(group_of("GC Thread#3"), "GC Thread");
        assert_eq!(group_of("C2 CompilerThre"), "C2 CompilerThre");
    }

    #[test]
    fn cpu_is_user_plus_system_after_the_name() {
        // A name with a space and a parenthesis, as `comm` allows.
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn a_thread_counts_what_it_spent_in_between_under_its_last_name() {
        let thread = |name: &str, seconds: f64| (name.to_owned(), seconds);
        let before = Threads([(1, thread("MutationStage-1", 5.0)), (2, thread("b", 1.0))].into());
        let after = Threads(
            [
                // Renamed while serving another stage: still one group, counted from 5 s.
                (1, thread("ReadStage-1", 6.0)),
                (2, thread("b", 4.0)),
                // Started in between.
                (3, thread("c-1", 0.5)),
            ]
            .into(),
        );
        assert_eq!(
            before.per_100k(&after, 200_000, 2),
            format!("b 1.50, {SHARED_POOL} 0.50, other 0.25")
        );
    }
}
