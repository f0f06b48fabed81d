//! `cassandra-sink-bench`: the worker end to end against the Cassandra write ceiling, in one run on the
//! same local servers, so the figures are ratios on the same noisy machine.
//!
//! (a) the ceiling: the scylla driver writing the same rows, prepared, at the best of several
//!     concurrencies, with no Kafka and no checkpoints;
//! (b) the worker (release build, exactly-once) draining a pre-filled topic of the same records;
//! (c) recovery: the stall when one of two workers is killed or stopped under a steady flow.
//!
//! Prints records/s of both, b/a, p50/p99 checkpoint commit latency, the worker's peak RSS and CPU,
//! and the stall of each kind of stop.

mod recovery;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cassandra_sink_tests::fixtures::{self, create_keyspace, create_topic};
use cassandra_sink_tests::worker::Worker;
use cassandra_sink_tests::{Settings, unique_name};
use clap::Parser;
use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Benchmark of the sink worker against the Cassandra write ceiling.
#[derive(Debug, Clone, Parser)]
struct Options {
    /// Records to write in each part.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Distinct primary keys the records update.
    #[arg(long, default_value_t = 20_000)]
    keys: usize,
    /// Kafka partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Concurrencies tried for the ceiling.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    concurrency: Vec<usize>,
    /// The worker's `checkpoint.maxRecords`.
    #[arg(long, default_value_t = 10_000)]
    max_records: usize,
    /// Print the worker's whole log, not only its checkpoint lines.
    #[arg(long)]
    worker_log: bool,
    /// Run only part (c), recovery.
    #[arg(long)]
    recovery_only: bool,
    /// The worker binary (a release build).
    #[arg(long, default_value = "target/release/cassandra-sink-worker")]
    worker: PathBuf,
}

fn record(index: usize, keys: usize) -> (String, i32, i64) {
    (
        format!("id{}", index % keys),
        (index / keys) as i32,
        index as i64,
    )
}

/// CPU seconds spent by each process that shares the machine in a measured part.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSplit {
    cassandra: f64,
    kafka: f64,
    client: f64,
}

impl CpuSplit {
    /// Now, for Cassandra and Kafka (from the local servers' pid files) and `client`.
    fn sample(client: u32) -> Self {
        let server = |variable: &str| {
            std::env::var(variable)
                .ok()
                .and_then(|file| std::fs::read_to_string(file).ok())
                .and_then(|pid| pid.trim().parse::<u32>().ok())
                .and_then(|pid| usage(pid).ok())
                .map_or(0.0, |(_, cpu)| cpu)
        };
        Self {
            cassandra: server("CASSANDRA_PID_FILE"),
            kafka: server("KAFKA_PID_FILE"),
            client: usage(client).map_or(0.0, |(_, cpu)| cpu),
        }
    }

    /// CPU seconds per 100,000 records between `self` and `later`.
    fn per_100k(self, later: Self, records: usize) -> Self {
        let scale = 100_000.0 / records as f64;
        Self {
            cassandra: (later.cassandra - self.cassandra) * scale,
            kafka: (later.kafka - self.kafka) * scale,
            client: (later.client - self.client) * scale,
        }
    }
}

impl std::fmt::Display for CpuSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cassandra {:.2} s, Kafka {:.2} s, client {:.2} s",
            self.cassandra, self.kafka, self.client
        )
    }
}

async fn ceiling(
    session: &scylla::client::session::Session,
    keyspace: &str,
    table: &str,
    options: &Options,
) -> anyhow::Result<(usize, f64, CpuSplit)> {
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.{table} (id, counter, seq) VALUES (?, ?, ?)"
        ))
        .await?;
    insert.set_consistency(scylla::statement::Consistency::LocalQuorum);
    insert.set_is_idempotent(true);
    let mut best = (0, 0.0, CpuSplit::default());
    for &concurrency in &options.concurrency {
        let started = Instant::now();
        let cpu_before = CpuSplit::sample(std::process::id());
        let insert = &insert;
        let failures = futures::stream::iter(0..options.records)
            .map(|index| async move {
                let mut statement = insert.clone();
                statement.set_timestamp(Some(1_000_000 + index as i64));
                session
                    .execute_unpaged(&statement, record(index, options.keys))
                    .await
                    .is_err()
            })
            .buffer_unordered(concurrency)
            .filter(|failed| futures::future::ready(*failed))
            .count()
            .await;
        anyhow::ensure!(failures == 0, "{failures} ceiling writes failed");
        let rate = options.records as f64 / started.elapsed().as_secs_f64();
        let cpu = cpu_before.per_100k(CpuSplit::sample(std::process::id()), options.records);
        eprintln!(
            "  ceiling at concurrency {concurrency}: {rate:.0} records/s; CPU per 100k: {cpu}"
        );
        if rate > best.1 {
            best = (concurrency, rate, cpu);
        }
    }
    Ok(best)
}

async fn prefill(settings: &Settings, topic: &str, options: &Options) -> anyhow::Result<()> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .create()?;
    let producer = &producer;
    let failures = futures::stream::iter(0..options.records)
        .map(|index| async move {
            let (id, counter, seq) = record(index, options.keys);
            let value = serde_json::json!([id, counter, seq]).to_string();
            let partition = (index % options.keys) as i32 % options.partitions;
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key(&id)
                        .payload(&value),
                    Duration::from_secs(60),
                )
                .await
                .is_err()
        })
        .buffer_unordered(10_000)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    anyhow::ensure!(failures == 0, "{failures} records could not be produced");
    Ok(())
}

/// Peak resident set (VmHWM) in MiB and CPU seconds (user + system) of a process.
fn usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_kib: f64 = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .context("no VmHWM")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields after the command: state is index 0, utime 11, stime 12 (in clock ticks).
    let ticks: f64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(user, system)| Some(user.parse::<f64>().ok()? + system.parse::<f64>().ok()?))
        .context("no CPU times")?;
    Ok((peak_kib / 1024.0, ticks / 100.0))
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[rank]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    anyhow::ensure!(
        options.worker.is_file(),
        "{} is missing: cargo build --release -p cassandra-sink-worker",
        options.worker.display()
    );
    let settings = Settings::from_env();
    let session = fixtures::cassandra(&settings).await?;
    let keyspace = unique_name("bench");
    create_keyspace(&session, &keyspace).await?;
    for table in ["ceiling", "values"] {
        session
            .query_unpaged(
                format!(
                    "CREATE TABLE {keyspace}.{table} (id text PRIMARY KEY, counter int, seq bigint)"
                ),
                (),
            )
            .await?;
    }
    session.await_schema_agreement().await?;
    if !options.recovery_only {
        throughput(&settings, &session, &keyspace, &options).await?;
    }
    eprintln!("(c) recovery: one of two workers stopped under a steady flow");
    let stalls = recovery::run(
        &settings,
        &session,
        &keyspace,
        options.partitions,
        &options.worker,
    )
    .await?;
    if options.recovery_only {
        println!("| measure | value |");
        println!("| --- | --- |");
    }
    for stall in stalls {
        println!(
            "| (c) stall: {} | {:.2} s ({} partitions) |",
            stall.what,
            stall.stall.as_secs_f64(),
            stall.partitions
        );
    }
    cassandra_sink_tests::fixtures::drop_keyspace(&session, &keyspace).await?;
    Ok(())
}

/// Parts (a) and (b), with their rows of the table.
async fn throughput(
    settings: &Settings,
    session: &scylla::client::session::Session,
    keyspace: &str,
    options: &Options,
) -> anyhow::Result<()> {
    let topic = keyspace.replace('_', "-");
    create_topic(settings, &topic, options.partitions).await?;

    // A first write of a key costs Cassandra more than an update of it, so both tables get every key
    // before anything is measured: the driver and the worker then find their tables in the same state.
    eprintln!("warming Cassandra and both tables up (not measured)");
    ceiling(session, keyspace, "ceiling", options).await?;
    let once = Options {
        concurrency: vec![256],
        ..options.clone()
    };
    ceiling(session, keyspace, "values", &once).await?;
    eprintln!(
        "(a1) write ceiling: the driver alone, {} records",
        options.records
    );
    let (best_concurrency, first_ceiling, ceiling_cpu) =
        ceiling(session, keyspace, "ceiling", options).await?;

    eprintln!("pre-filling topic {topic} with {} records", options.records);
    prefill(settings, &topic, options).await?;

    eprintln!("(b) worker, exactly-once, draining the topic");
    let dir = std::env::temp_dir().join(keyspace);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("sink.yaml");
    let sink_id = format!("bench/{keyspace}");
    std::fs::write(
        &config,
        format!(
            "sinkId: {sink_id}\ncassandra: {{ contactPoints: [\"{cassandra}\"], localDatacenter: datacenter1 }}\n\
             insertQuery: \"INSERT INTO {keyspace}.values (id, counter, seq) VALUES (?, ?, ?)\"\n\
             committer: {{ keyspace: {keyspace}, table: checkpoints }}\n\
             source: {{ kafka: {{ bootstrapServers: [\"{kafka}\"], topic: {topic} }} }}\n\
             checkpoint: {{ interval: 1s, maxRecords: {max_records} }}\nguarantee: exactly-once\n",
            cassandra = settings.cassandra,
            kafka = settings.kafka,
            max_records = options.max_records,
        ),
    )?;
    let started = Instant::now();
    // The worker's own CPU starts at zero; the servers' is taken from here.
    let servers_before = CpuSplit {
        client: 0.0,
        ..CpuSplit::sample(std::process::id())
    };
    let worker = Worker::start_binary(&options.worker, &config, "bench", &[]);
    let mut first_commit: Option<(Instant, i64, CpuSplit)> = None;
    loop {
        let committed: i64 = fixtures::committed(
            session,
            keyspace,
            "checkpoints",
            &sink_id,
            options.partitions,
        )
        .await
        .unwrap_or_default()
        .values()
        .filter_map(|(offset, _, _)| *offset)
        .sum();
        if committed > 0 && first_commit.is_none() {
            first_commit = Some((Instant::now(), committed, CpuSplit::sample(worker.pid())));
        }
        if committed as usize >= options.records {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the worker did not finish in 15 minutes:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let (peak_mib, cpu_seconds) = usage(worker.pid())?;
    let worker_end = CpuSplit::sample(worker.pid());
    let worker_cpu = servers_before.per_100k(worker_end, options.records);
    let log = worker.log_text();
    assert!(worker.terminate(Duration::from_secs(30)).success());
    let worker_rate = options.records as f64 / elapsed.as_secs_f64();
    eprintln!("(a2) write ceiling again, after the worker");
    let again = Options {
        concurrency: vec![best_concurrency],
        ..options.clone()
    };
    let (_, second_ceiling, _) = ceiling(session, keyspace, "ceiling", &again).await?;
    // The machine drifts between runs: compare the worker with the ceiling measured around it.
    let ceiling_rate = (first_ceiling + second_ceiling) / 2.0;
    for line in log
        .lines()
        .filter(|line| options.worker_log || line.contains("checkpoint committed"))
    {
        eprintln!(
            "  {}",
            line.split("cassandra_sink_worker::sink:")
                .nth(1)
                .unwrap_or(line)
                .trim()
        );
    }
    let mut commits: Vec<f64> = log
        .lines()
        .filter_map(|line| line.split("commit_micros=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map(|micros| micros / 1000.0)
        .collect();
    commits.sort_by(f64::total_cmp);

    // The sink's table must equal the driver's: same rows, last update of each key.
    let count = |table: &'static str| {
        let session = &session;
        let keyspace = &keyspace;
        async move {
            let rows = session
                .query_unpaged(
                    format!("SELECT id, counter, seq FROM {keyspace}.{table}"),
                    (),
                )
                .await?
                .into_rows_result()?
                .rows::<(String, i32, i64)>()?
                .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
            anyhow::Ok(rows)
        }
    };
    anyhow::ensure!(
        count("values").await? == count("ceiling").await?,
        "the sink's table differs"
    );

    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| records | {} over {} keys, {} partitions |",
        options.records, options.keys, options.partitions
    );
    println!(
        "| (a) driver write ceiling, before / after (b) | {first_ceiling:.0} / {second_ceiling:.0} records/s (concurrency {best_concurrency}); mean {ceiling_rate:.0} |"
    );
    println!(
        "| (b) worker end to end, exactly-once | {worker_rate:.0} records/s ({:.1} s incl. start-up) |",
        elapsed.as_secs_f64()
    );
    if let Some((first, at_first, cpu_at_first)) = first_commit {
        let steady = elapsed.as_secs_f64() - (first - started).as_secs_f64();
        let steady_rate = (options.records as f64 - at_first as f64) / steady;
        println!(
            "| (b') worker after its first commit (start-up excluded) | {steady_rate:.0} records/s over {steady:.1} s; first commit {:.2} s after start |",
            (first - started).as_secs_f64()
        );
        println!("| b'/a | {:.2} |", steady_rate / ceiling_rate);
        println!(
            "| CPU per 100,000 records, (b') | {} (the worker) |",
            cpu_at_first.per_100k(worker_end, options.records - at_first as usize)
        );
    }
    println!("| b/a | {:.2} |", worker_rate / ceiling_rate);
    println!(
        "| checkpoint commit latency p50 / p99 | {:.1} ms / {:.1} ms ({} checkpoints) |",
        percentile(&commits, 0.5),
        percentile(&commits, 0.99),
        commits.len()
    );
    println!("| worker peak RSS | {peak_mib:.1} MiB |");
    println!(
        "| worker CPU | {cpu_seconds:.1} s over {:.1} s ({:.2} cores) |",
        elapsed.as_secs_f64(),
        cpu_seconds / elapsed.as_secs_f64()
    );
    println!("| CPU per 100,000 records, (a) at its best | {ceiling_cpu} (the driver) |");
    println!("| CPU per 100,000 records, (b) | {worker_cpu} (the worker) |");
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}
