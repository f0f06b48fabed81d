//! `cassandra-sink-bench`: the worker end to end against the Cassandra write ceiling, in one run on the
//! same local servers, so the figures are ratios on the same noisy machine.
//!
//! (a) the ceiling: the scylla driver writing the same rows, prepared, at the best of several
//!     concurrencies, with no Kafka and no checkpoints;
//! (b) the worker (release build, exactly-once) draining a pre-filled topic of the same records;
//! (c) recovery: the stall when one of two workers is killed or stopped under a steady flow;
//! (d) Flink's own Cassandra sink, with its write-ahead log and plain, draining the same topic into a
//!     table in the same state.
//!
//! Prints records/s of each, b/a, p50/p99 checkpoint commit latency, peak RSS and CPU of each client,
//! Cassandra's CPU per record under each, how many keys each left at an earlier update, and the stall
//! of each kind of stop.

mod beside;
mod cassandra_work;
mod data;
mod flink;
mod recovery;
mod rounds;
mod scaling;
mod tables;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cassandra_sink_tests::fixtures::{self, create_keyspace, create_topic};
use cassandra_sink_tests::worker::Worker;
use cassandra_sink_tests::{Settings, unique_name};
use clap::Parser;
use data::Shape;
use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Benchmark of the sink worker against the Cassandra write ceiling and Flink's Cassandra sink.
#[derive(Debug, Clone, Parser)]
struct Options {
    /// Records to write in each part [default: 1,000,000; 200,000 with --quick].
    #[arg(long)]
    records: Option<usize>,
    /// Distinct primary keys the records update [default: 100,000; 20,000 with --quick].
    #[arg(long)]
    keys: Option<usize>,
    /// Kafka partitions of the topic [default: 6; 4 with --quick].
    #[arg(long)]
    partitions: Option<i32>,
    /// A smaller run for development: 200,000 records, 20,000 keys, 4 partitions, no Flink.
    #[arg(long)]
    quick: bool,
    /// Concurrencies tried for the ceiling.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    concurrency: Vec<usize>,
    /// Worker passes of part (b), each followed by a ceiling pass, so that each is compared with the
    /// ceiling measured just before and just after it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// The order the ceiling writes the records in: `topic` (the order they were produced) or
    /// `partitions` (each Kafka partition's records in turn, as a consumer draining them sees them).
    #[arg(long, value_enum, default_value = "topic")]
    ceiling_order: CeilingOrder,
    /// Run every measured ceiling pass (a1, a2, …) with a Kafka reader beside it, reading and parsing
    /// the topic as a sink does (the topic is then filled before the first one): what sharing the
    /// cores with a sink's reading costs Cassandra, apart from what the sink writes.
    #[arg(long)]
    ceiling_beside_reader: bool,
    /// The worker's `supersededWrites`: `skip` (its default) leaves out a write whose row a later
    /// record of the same checkpoint replaces, which the benchmark's records (each key updated ten
    /// times within 10,000 records) have many of; `write` sends every record's write, the write path
    /// the driver's ceiling measures.
    #[arg(long, value_enum, default_value = "skip")]
    superseded_writes: SupersededWrites,
    /// The worker's `checkpoint.maxRecords`.
    #[arg(long, default_value_t = 10_000)]
    max_records: usize,
    /// The worker's `limits.maxInFlightPerNode` [default: the worker's own default].
    #[arg(long)]
    in_flight_per_node: Option<usize>,
    /// Print the worker's whole log, not only its checkpoint lines.
    #[arg(long)]
    worker_log: bool,
    /// Run only part (c), recovery.
    #[arg(long)]
    recovery_only: bool,
    /// Run only part (e), how cost grows with partitions and workers, and write its chart.
    #[arg(long, conflicts_with_all = ["recovery_only", "quick"])]
    scaling: bool,
    /// Where part (e) writes its chart (SVG).
    #[arg(long, default_value = "docs/images/scaling.svg")]
    chart: PathBuf,
    /// Leave out part (d), Flink.
    #[arg(long)]
    skip_flink: bool,
    /// Run on the local clusters (`scripts/localenv.sh cluster up`): three Cassandra nodes, keyspace
    /// with three copies in dc1, topics with three copies; CPU summed over each cluster's nodes.
    #[arg(long)]
    cluster: bool,
    /// Leave out part (c), recovery.
    #[arg(long, conflicts_with = "recovery_only")]
    skip_recovery: bool,
    /// The worker binary (a release build).
    #[arg(long, default_value = "target/release/cassandra-sink-worker")]
    worker: PathBuf,
    /// The Flink job, built: `classes` and `lib` (`mvn -f tests/flink/pom.xml compile
    /// dependency:copy-dependencies`).
    #[arg(long, default_value = "tests/flink/target")]
    flink_job: PathBuf,
}

/// The worker's `supersededWrites`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SupersededWrites {
    Skip,
    Write,
}

impl SupersededWrites {
    /// As the sink's configuration spells it.
    fn name(self) -> &'static str {
        match self {
            SupersededWrites::Skip => "skip",
            SupersededWrites::Write => "write",
        }
    }
}

/// The order of the ceiling's writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CeilingOrder {
    Topic,
    Partitions,
}

/// The options with the sizes settled.
#[derive(Debug, Clone)]
struct Bench {
    shape: Shape,
    partitions: i32,
    concurrency: Vec<usize>,
    ceiling_order: CeilingOrder,
    ceiling_beside_reader: bool,
    rounds: u32,
    superseded_writes: SupersededWrites,
    max_records: usize,
    in_flight_per_node: Option<usize>,
    worker_log: bool,
    worker: PathBuf,
    flink_job: Option<PathBuf>,
}

impl Bench {
    fn new(options: Options) -> anyhow::Result<Self> {
        let (records, keys, partitions) = if options.quick {
            (200_000, 20_000, 4)
        } else {
            (1_000_000, 100_000, 6)
        };
        Ok(Self {
            shape: Shape::new(
                options.records.unwrap_or(records),
                options.keys.unwrap_or(keys),
            )?,
            partitions: options.partitions.unwrap_or(partitions),
            concurrency: options.concurrency,
            rounds: options.rounds,
            superseded_writes: options.superseded_writes,
            ceiling_order: options.ceiling_order,
            ceiling_beside_reader: options.ceiling_beside_reader,
            max_records: options.max_records,
            in_flight_per_node: options.in_flight_per_node,
            worker_log: options.worker_log,
            worker: options.worker,
            // Flink's job is given one Cassandra node and broker: it runs on the single servers only.
            flink_job: (!options.quick && !options.skip_flink && !options.cluster)
                .then_some(options.flink_job),
        })
    }

    fn records(&self) -> usize {
        self.shape.records
    }
}

/// CPU seconds spent by each process that shares the machine in a measured part.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSplit {
    cassandra: f64,
    kafka: f64,
    client: f64,
}

/// Pid files of the servers whose CPU is counted: the single nodes' (`CASSANDRA_PID_FILE`,
/// `KAFKA_PID_FILE`), or with `--cluster` every cluster node's (`LOCALENV_PID_DIR`).
static SERVER_PID_FILES: std::sync::OnceLock<(Vec<PathBuf>, Vec<PathBuf>)> =
    std::sync::OnceLock::new();

fn server_pid_files(cluster: bool) -> (Vec<PathBuf>, Vec<PathBuf>) {
    if !cluster {
        let file = |variable: &str| std::env::var(variable).map(PathBuf::from).ok();
        return (
            file("CASSANDRA_PID_FILE").into_iter().collect(),
            file("KAFKA_PID_FILE").into_iter().collect(),
        );
    }
    let dir = PathBuf::from(cassandra_sink_tests::env_or(
        "LOCALENV_PID_DIR",
        ".localenv/pids",
    ));
    let named = |prefix: &str| {
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| {
                        path.file_name()
                            .and_then(|name| name.to_str())
                            .is_some_and(|name| name.starts_with(prefix))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    (named("cluster-cassandra-"), named("cluster-kafka-"))
}

impl CpuSplit {
    /// Now, for Cassandra and Kafka (from the local servers' pid files, summed over a cluster's
    /// nodes) and `client`.
    fn sample(client: u32) -> Self {
        let cpu = |files: &[PathBuf]| -> f64 {
            files
                .iter()
                .filter_map(|file| std::fs::read_to_string(file).ok())
                .filter_map(|pid| pid.trim().parse::<u32>().ok())
                .filter_map(|pid| usage(pid).ok())
                .map(|(_, cpu)| cpu)
                .sum()
        };
        let (cassandra, kafka) = SERVER_PID_FILES.get_or_init(|| server_pid_files(false));
        Self {
            cassandra: cpu(cassandra),
            kafka: cpu(kafka),
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

/// Passes of the driver alone writing every record into `table` at each of `concurrencies`, with a
/// Kafka reader of `beside` running beside each pass when given; the best pass's concurrency, rate
/// and CPU.
async fn ceiling(
    session: &scylla::client::session::Session,
    (keyspace, table): (&str, &str),
    bench: &Bench,
    concurrencies: &[usize],
    beside: Option<&beside::Topic>,
) -> anyhow::Result<(usize, f64, CpuSplit)> {
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.{table} (id, counter, seq) VALUES (?, ?, ?)"
        ))
        .await?;
    insert.set_consistency(scylla::statement::Consistency::LocalQuorum);
    insert.set_is_idempotent(true);
    let mut order: Vec<usize> = (0..bench.records()).collect();
    if let CeilingOrder::Partitions = bench.ceiling_order {
        // Stable: each partition's records keep their topic order.
        order.sort_by_key(|&index| bench.shape.partition(index, bench.partitions));
    }
    let mut best = (0, 0.0, CpuSplit::default());
    for &concurrency in concurrencies {
        settle(session).await?;
        let started = Instant::now();
        let cpu_before = CpuSplit::sample(std::process::id());
        let work_before = cassandra_work::Work::sample(session).await?;
        let threads_before = cassandra_threads();
        let reader = beside
            .map(|topic| beside::Running::start(topic, bench.records()))
            .transpose()?;
        let (insert, reader_ref) = (&insert, reader.as_ref());
        let failures = futures::stream::iter(order.iter().copied())
            .map(|index| async move {
                let mut statement = insert.clone();
                statement.set_timestamp(Some(1_000_000 + index as i64));
                let failed = session
                    .execute_unpaged(&statement, bench.shape.record(index))
                    .await
                    .is_err();
                if let Some(reader) = reader_ref {
                    reader.written();
                }
                failed
            })
            .buffer_unordered(concurrency)
            .filter(|failed| futures::future::ready(*failed))
            .count()
            .await;
        anyhow::ensure!(failures == 0, "{failures} ceiling writes failed");
        let rate = bench.records() as f64 / started.elapsed().as_secs_f64();
        if let Some(reader) = reader {
            let read = reader.stop().await?;
            eprintln!("  a Kafka reader beside it read and parsed {read} records");
        }
        let cpu = cpu_before.per_100k(CpuSplit::sample(std::process::id()), bench.records());
        eprintln!(
            "  ceiling at concurrency {concurrency}: {rate:.0} records/s; CPU per 100k: {cpu}"
        );
        eprintln!(
            "    Cassandra's CPU per 100k by thread: {}",
            threads_before.per_100k(&cassandra_threads(), bench.records(), THREAD_GROUPS)
        );
        eprintln!(
            "    Cassandra's tasks per 100k: {}",
            work_before.per_100k(
                &cassandra_work::Work::sample(session).await?,
                bench.records()
            )
        );
        if rate > best.1 {
            best = (concurrency, rate, cpu);
        }
    }
    Ok(best)
}

async fn prefill(settings: &Settings, topic: &str, bench: &Bench) -> anyhow::Result<()> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .create()?;
    let producer = &producer;
    let failures = futures::stream::iter(0..bench.records())
        .map(|index| async move {
            let (id, counter, seq) = bench.shape.record(index);
            let value = serde_json::json!([id, counter, seq]).to_string();
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(bench.shape.partition(index, bench.partitions))
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

/// Writes `<dir>/sink.yaml` (making the folder) for a sink of the benchmark's rows into `table`
/// (`keyspace.name`) from `topic`, committing in the keyspace's `checkpoints`, with `extra` YAML
/// appended; returns its path.
fn sink_config(
    settings: &Settings,
    dir: &std::path::Path,
    sink_id: &str,
    table: &str,
    topic: &str,
    extra: &str,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let keyspace = table.split('.').next().unwrap_or(table);
    let config = dir.join("sink.yaml");
    std::fs::write(
        &config,
        format!(
            "sinkId: {sink_id}\ncassandra: {{ contactPoints: [{cassandra}], localDatacenter: {datacenter} }}\n\
             insertQuery: \"INSERT INTO {table} (id, counter, seq) VALUES (?, ?, ?)\"\n\
             committer: {{ keyspace: {keyspace}, table: checkpoints }}\n\
             source: {{ kafka: {{ bootstrapServers: [\"{kafka}\"], topic: {topic} }} }}\n{extra}",
            cassandra = settings.contact_points_yaml(),
            datacenter = settings.datacenter(),
            kafka = settings.kafka,
        ),
    )?;
    Ok(config)
}

/// How many of Cassandra's thread groups are named in a part's CPU by thread.
const THREAD_GROUPS: usize = 8;

/// CPU of the single local Cassandra node's threads by name (none with `--cluster`).
fn cassandra_threads() -> cassandra_work::Threads {
    let (cassandra, _) = SERVER_PID_FILES.get_or_init(|| server_pid_files(false));
    match cassandra.as_slice() {
        [one] => cassandra_work::Threads::sample(Some(one)),
        _ => cassandra_work::Threads::default(),
    }
}

/// How memtables and heap are emptied before each part, when they can be: set once in `main`.
static RESET: std::sync::OnceLock<Option<cassandra_work::Reset>> = std::sync::OnceLock::new();

/// Empties Cassandra's memtables and heap where it can ([`cassandra_work::Reset`]), then waits until
/// it has finished the flushes and compactions of what came before, and says so when that took a
/// while.
async fn settle(session: &scylla::client::session::Session) -> anyhow::Result<()> {
    if let Some(reset) = RESET.get().and_then(Option::as_ref) {
        reset.run().await?;
    }
    let waited = cassandra_work::settle(session).await?;
    if waited > Duration::from_secs(2) {
        eprintln!(
            "  waited {:.1} s for Cassandra's flushes and compactions",
            waited.as_secs_f64()
        );
    }
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
    let cpu = cassandra_work::cpu_seconds(&stat).context("no CPU times")?;
    Ok((peak_kib / 1024.0, cpu))
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
    let (recovery_only, skip_recovery) = (options.recovery_only, options.skip_recovery);
    let (scaling, chart) = (options.scaling, options.chart.clone());
    let cluster = options.cluster;
    let _ = SERVER_PID_FILES.set(server_pid_files(cluster));
    let reset = cassandra_work::Reset::from_env(cluster);
    if reset.is_none() {
        eprintln!(
            "memtables are not flushed between parts (no LOCALENV_SCRIPT and CASSANDRA_PID_FILE, or --cluster)"
        );
    }
    let _ = RESET.set(reset);
    let bench = Bench::new(options)?;
    anyhow::ensure!(
        bench.worker.is_file(),
        "{} is missing: cargo build --release -p cassandra-sink-worker",
        bench.worker.display()
    );
    if let Some(job) = bench
        .flink_job
        .as_ref()
        .filter(|_| !recovery_only && !scaling)
    {
        anyhow::ensure!(
            job.join("classes").is_dir() && job.join("lib").is_dir(),
            "the Flink job is not built in {}: mvn -f tests/flink/pom.xml compile dependency:copy-dependencies",
            job.display()
        );
    }
    let settings = if cluster {
        Settings::cluster()
    } else {
        Settings::from_env()
    };
    let session = fixtures::cassandra(&settings).await?;
    let keyspace = unique_name("bench");
    match &settings.cluster {
        Some(layout) => {
            fixtures::create_keyspace_with(&session, &keyspace, &layout.keyspace_copies).await?
        }
        None => create_keyspace(&session, &keyspace).await?,
    }
    let tables = ["ceiling", "flink_wal", "flink_plain", "scaling"]
        .map(String::from)
        .into_iter()
        .chain((1..=bench.rounds).map(rounds::table));
    for table in tables {
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
    if scaling {
        eprintln!("warming Cassandra and the table up (not measured)");
        ceiling(&session, (&keyspace, "scaling"), &bench, &[256], None).await?;
        let points = scaling::run(&settings, &session, &keyspace, "scaling", &bench).await?;
        print!("{}", scaling::table(&points));
        let caption = format!(
            "scripts/bench.sh -- --scaling: {} records over {} keys per configuration, {} cores",
            bench.records(),
            bench.shape.keys,
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        if let Some(folder) = chart.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(&chart, scaling::chart(&points, &caption))?;
        eprintln!("chart written to {}", chart.display());
        cassandra_sink_tests::fixtures::drop_keyspace(&session, &keyspace).await?;
        return Ok(());
    }
    if !recovery_only {
        throughput(&settings, &session, &keyspace, &bench).await?;
    }
    if !skip_recovery {
        eprintln!("(c) recovery: one of two workers stopped under a steady flow");
        let stalls = recovery::run(
            &settings,
            &session,
            &keyspace,
            bench.partitions,
            &bench.worker,
        )
        .await?;
        println!();
        println!("| recovery (c) | stall |");
        println!("| --- | --- |");
        for stall in stalls {
            println!(
                "| {} | {:.2} s ({} partitions) |",
                stall.what,
                stall.stall.as_secs_f64(),
                stall.partitions
            );
        }
    }
    cassandra_sink_tests::fixtures::drop_keyspace(&session, &keyspace).await?;
    Ok(())
}

/// What part (b) measured of the worker.
struct WorkerRun {
    elapsed: Duration,
    peak_mib: f64,
    cpu_seconds: f64,
    cpu: CpuSplit,
    /// When the first commit was seen, how many records it had committed, and the CPU per 100,000
    /// records from then to the end.
    first_commit: Option<(Duration, i64, CpuSplit)>,
    /// CPU seconds (not per record) each process spent from the worker's start to its first commit.
    start_up: Option<CpuSplit>,
    /// Writes the worker left out because a later record of their checkpoint replaced their row.
    superseded: f64,
    commits: Vec<f64>,
}

/// Part (b): one release worker drains the pre-filled topic, exactly once.
async fn worker(
    settings: &Settings,
    session: &scylla::client::session::Session,
    keyspace: &str,
    topic: &str,
    table: &str,
    bench: &Bench,
) -> anyhow::Result<WorkerRun> {
    let dir = std::env::temp_dir().join(format!("{keyspace}-{table}"));
    let sink_id = format!("bench/{keyspace}/{table}");
    let limits = bench
        .in_flight_per_node
        .map(|bound| format!("limits: {{ maxInFlightPerNode: {bound} }}\n"))
        .unwrap_or_default();
    let config = sink_config(
        settings,
        &dir,
        &sink_id,
        &format!("{keyspace}.{table}"),
        topic,
        &format!(
            "checkpoint: {{ interval: 1s, maxRecords: {} }}\nguarantee: exactly-once\n\
             supersededWrites: {}\n{limits}",
            bench.max_records,
            bench.superseded_writes.name()
        ),
    )?;
    settle(session).await?;
    let started = Instant::now();
    // The worker's own CPU starts at zero; the servers' is taken from here.
    let servers_before = CpuSplit {
        client: 0.0,
        ..CpuSplit::sample(std::process::id())
    };
    let work_before = cassandra_work::Work::sample(session).await?;
    let threads_before = cassandra_threads();
    let worker = Worker::start_binary(&bench.worker, &config, "bench", &[]);
    let mut progress = tables::Committed::new(
        keyspace,
        &cassandra_sink_worker::committer::row_key(&sink_id, topic),
        bench.partitions,
    );
    let mut first_commit = None;
    let mut work_at_first = None;
    loop {
        let committed = progress.records(session).await.unwrap_or_default();
        if committed > 0 && first_commit.is_none() {
            work_at_first = Some(cassandra_work::Work::sample(session).await?);
            first_commit = Some((started.elapsed(), committed, CpuSplit::sample(worker.pid())));
        }
        if committed as usize >= bench.records() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the worker did not finish in 15 minutes:\n{}",
            worker.log_text()
        );
        // Reading the committer costs Cassandra too: often enough to time the end within a few
        // percent, rarely enough to stay out of what is measured.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let work_after = cassandra_work::Work::sample(session).await?;
    let threads_after = cassandra_threads();
    let (peak_mib, cpu_seconds) = usage(worker.pid())?;
    eprintln!(
        "  Cassandra's CPU per 100k by thread, start to end: {}",
        threads_before.per_100k(&threads_after, bench.records(), THREAD_GROUPS)
    );
    eprintln!(
        "  Cassandra's tasks per 100k, start to end: {}",
        work_before.per_100k(&work_after, bench.records())
    );
    if let (Some(at_first), Some((_, committed, _))) = (&work_at_first, &first_commit) {
        eprintln!(
            "  Cassandra's tasks from the start to the first commit: {}",
            work_before.per_100k(at_first, 100_000)
        );
        eprintln!(
            "  Cassandra's tasks per 100k, first commit to end: {}",
            at_first.per_100k(&work_after, bench.records() - *committed as usize)
        );
    }
    let worker_end = CpuSplit::sample(worker.pid());
    let superseded = worker
        .metric("cassandra_sink_writes_superseded_total")
        .context("the worker's metrics have no cassandra_sink_writes_superseded_total")?;
    let log = worker.log_text();
    assert!(worker.terminate(Duration::from_secs(30)).success());
    for line in log
        .lines()
        .filter(|line| bench.worker_log || line.contains("checkpoint committed"))
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
    std::fs::remove_dir_all(dir).ok();
    Ok(WorkerRun {
        elapsed,
        peak_mib,
        cpu_seconds,
        cpu: servers_before.per_100k(worker_end, bench.records()),
        start_up: first_commit
            .as_ref()
            .map(|(_, _, at_first)| servers_before.per_100k(*at_first, 100_000)),
        first_commit: first_commit.map(|(at, committed, cpu)| {
            (
                at,
                committed,
                cpu.per_100k(worker_end, bench.records() - committed as usize),
            )
        }),
        commits,
        superseded,
    })
}

/// Parts (a), (b) and (d), with their tables.
async fn throughput(
    settings: &Settings,
    session: &scylla::client::session::Session,
    keyspace: &str,
    bench: &Bench,
) -> anyhow::Result<()> {
    let topic = keyspace.replace('_', "-");
    create_topic(settings, &topic, bench.partitions).await?;
    let worker_tables: Vec<String> = (1..=bench.rounds).map(rounds::table).collect();
    let mut tables: Vec<&str> = vec!["ceiling"];
    tables.extend(worker_tables.iter().map(String::as_str));
    if bench.flink_job.is_some() {
        tables.extend(["flink_wal", "flink_plain"]);
    }

    // A first write of a key costs Cassandra more than an update of it, so every table gets every key
    // before anything is measured: each sink then finds its table in the same state.
    eprintln!("warming Cassandra and the tables up (not measured)");
    for table in &tables {
        ceiling(session, (keyspace, table), bench, &[256], None).await?;
    }
    let reader = bench.ceiling_beside_reader.then(|| beside::Topic {
        bootstrap: settings.kafka.clone(),
        name: topic.clone(),
        partitions: bench.partitions,
    });
    if reader.is_some() {
        eprintln!("pre-filling topic {topic} with {} records", bench.records());
        prefill(settings, &topic, bench).await?;
    }
    eprintln!(
        "(a1) write ceiling: the driver alone{}, {} records",
        if reader.is_some() {
            ", a Kafka reader beside it"
        } else {
            ""
        },
        bench.records()
    );
    let (best_concurrency, first_rate, first_cpu) = ceiling(
        session,
        (keyspace, "ceiling"),
        bench,
        &bench.concurrency,
        reader.as_ref(),
    )
    .await?;

    if reader.is_none() {
        eprintln!("pre-filling topic {topic} with {} records", bench.records());
        prefill(settings, &topic, bench).await?;
    }

    // The machine drifts within a run: each pass of the worker or of Flink is compared with the
    // ceiling passes just before and just after it, Flink's between the worker's rounds, and several
    // rounds show how far the ratios spread.
    let expected = bench.shape.last_rows();
    let flink_modes = match bench.flink_job {
        Some(_) => vec![flink::Mode::WriteAheadLog, flink::Mode::Plain],
        None => vec![],
    };
    let mut passes = Vec::new();
    let mut flink_passes = Vec::new();
    let mut before = rounds::Ceiling {
        rate: first_rate,
        cpu: first_cpu,
    };
    for (step, subject) in (2..).zip(rounds::schedule(bench.rounds, &flink_modes)) {
        let pass = match subject {
            rounds::Subject::Worker(round) => {
                let table = rounds::table(round);
                eprintln!(
                    "(b{round}) worker, exactly-once, supersededWrites: {}, draining the topic into \
                     {table}",
                    bench.superseded_writes.name()
                );
                rounds::Pass::Worker(
                    worker(settings, session, keyspace, &topic, &table, bench).await?,
                )
            }
            rounds::Subject::Flink(mode) => {
                eprintln!(
                    "(d) Flink's Cassandra sink ({}), draining the same topic into {}",
                    mode.name(),
                    mode.table()
                );
                let drain = flink::Drain {
                    topic: &topic,
                    records: bench.records(),
                    expected: &expected,
                };
                settle(session).await?;
                let job = bench.flink_job.as_ref().context("no Flink job")?;
                let run = flink::run(settings, session, keyspace, &drain, mode, job).await?;
                eprintln!(
                    "  {:.1} s, {} keys not at their last update",
                    run.wall.as_secs_f64(),
                    run.stale
                );
                rounds::Pass::Flink(run)
            }
        };
        eprintln!("(a{step}) write ceiling again");
        let (_, rate, cpu) = ceiling(
            session,
            (keyspace, "ceiling"),
            bench,
            &[best_concurrency],
            reader.as_ref(),
        )
        .await?;
        let after = rounds::Ceiling { rate, cpu };
        match pass {
            rounds::Pass::Worker(run) => passes.push(rounds::Round { run, before, after }),
            rounds::Pass::Flink(run) => flink_passes.push(rounds::FlinkPass { run, before, after }),
        }
        before = after;
    }

    // Every key must hold its last update: the driver's table by its timestamps, the worker's by
    // exactly-once, in every round.
    for table in std::iter::once("ceiling".to_owned()).chain(worker_tables) {
        let stale = data::stale_keys(&expected, &tables::read(session, keyspace, &table).await?);
        anyhow::ensure!(
            stale == 0,
            "{stale} keys of table {table} are not at their last update"
        );
    }

    println!(
        "records: {} over {} keys, {} partitions; worker with supersededWrites: {}; ceiling at \
         concurrency {best_concurrency}{}",
        bench.records(),
        bench.shape.keys,
        bench.partitions,
        bench.superseded_writes.name(),
        if reader.is_some() {
            ", a Kafka reader beside it"
        } else {
            ""
        }
    );
    println!();
    print!("{}", rounds::table_of(&passes, bench.records()));
    if flink_passes.is_empty() {
        return Ok(());
    }
    println!();
    print!(
        "{}",
        rounds::side_by_side(&passes, &flink_passes, bench.records(), bench.shape.keys)
    );
    Ok(())
}
