//! `cassandra-sink-demo`: the seed's example end to end on the local servers. It creates the seed's
//! table, runs a worker on a fresh topic, feeds it a generated stream that updates the same keys many
//! times, shows progress every second, kills the worker once half-way (and starts another), and ends by
//! checking that the table holds exactly the last value sent for every key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cassandra_sink_tests::Settings;
use cassandra_sink_tests::fixtures::{self, create_topic};
use cassandra_sink_tests::worker::Worker;

const RECORDS: usize = 20_000;
const KEYS: usize = 500;
const PARTITIONS: i32 = 3;

fn worker_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?
        .parent()
        .context("binary folder")?
        .join("cassandra-sink-worker");
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: cargo build -p cassandra-sink-worker",
        binary.display()
    );
    Ok(binary)
}

async fn committed(
    session: &scylla::client::session::Session,
    sink_id: &str,
) -> anyhow::Result<i64> {
    Ok(
        fixtures::committed(session, "example", "checkpoints", sink_id, PARTITIONS)
            .await
            .unwrap_or_default()
            .values()
            .filter_map(|(offset, _, _)| *offset)
            .sum(),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let session = fixtures::cassandra(&settings).await?;
    let (datacenter,) = session
        .query_unpaged("SELECT data_center FROM system.local", ())
        .await?
        .into_rows_result()?
        .single_row::<(String,)>()?;
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS example WITH replication = \
                 {{'class': 'NetworkTopologyStrategy', '{datacenter}': 1}}"
            ),
            (),
        )
        .await?;
    session
        .query_unpaged("DROP TABLE IF EXISTS example.values", ())
        .await?;
    session.await_schema_agreement().await?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let topic = format!("values-{run}");
    create_topic(&settings, &topic, PARTITIONS).await?;
    let sink_id = format!("demo/{topic}");
    let dir = std::env::temp_dir().join(format!("cassandra-sink-demo-{run}"));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("sink.yaml");
    std::fs::write(
        &config,
        format!(
            "sinkId: {sink_id}\ncassandra: {{ contactPoints: [\"{cassandra}\"], localDatacenter: {datacenter} }}\n\
             createQuery: \"CREATE TABLE example.values (id text PRIMARY KEY, counter int);\"\n\
             insertQuery: \"INSERT INTO example.values (id, counter) VALUES (?, ?);\"\n\
             committer: {{ keyspace: example, table: checkpoints }}\n\
             source: {{ kafka: {{ bootstrapServers: [\"{kafka}\"], topic: {topic} }} }}\n\
             checkpoint: {{ interval: 500ms }}\n",
            cassandra = settings.cassandra,
            kafka = settings.kafka,
        ),
    )?;
    println!(
        "sink {sink_id}: topic {topic} ({PARTITIONS} partitions) -> example.values, committer example.checkpoints"
    );
    println!("config {}", config.display());

    let binary = worker_binary()?;
    let mut worker = Worker::start_binary(&binary, &config, "worker-1", &[]);
    let producer = fixtures::producer(&settings)?;
    let mut expected: BTreeMap<String, i32> = BTreeMap::new();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut killed = false;
    const BATCH: usize = 400;
    for batch in 0..RECORDS / BATCH {
        // A batch is enqueued in order (the producer is idempotent, so order per partition holds),
        // then a pause: a steady stream rather than one burst.
        let mut sends = Vec::with_capacity(BATCH);
        for index in batch * BATCH..(batch + 1) * BATCH {
            let id = format!("key-{}", index % KEYS);
            let counter = (index / KEYS) as i32;
            let value = serde_json::json!([id, counter]).to_string();
            let partition = (index % KEYS) as i32 % PARTITIONS;
            expected.insert(id.clone(), counter);
            let producer = &producer;
            let topic = &topic;
            sends.push(async move {
                fixtures::send(producer, topic, partition, &id, value.as_bytes()).await
            });
        }
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let produced = (batch + 1) * BATCH;
        if !killed && produced >= RECORDS / 2 {
            println!(
                "{:>5.1}s  kill -9 the worker mid-stream, start another",
                started.elapsed().as_secs_f64()
            );
            worker.kill();
            worker = Worker::start_binary(&binary, &config, "worker-2", &[]);
            killed = true;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            println!(
                "{:>5.1}s  produced {:>6}  committed {:>6}",
                started.elapsed().as_secs_f64(),
                produced,
                committed(&session, &sink_id).await?
            );
            last_report = Instant::now();
        }
    }
    loop {
        let done = committed(&session, &sink_id).await?;
        println!(
            "{:>5.1}s  produced {RECORDS:>6}  committed {done:>6}",
            started.elapsed().as_secs_f64()
        );
        if done as usize >= RECORDS {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "not caught up:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = worker.terminate(Duration::from_secs(30));
    anyhow::ensure!(
        status.success(),
        "the worker did not stop cleanly: {status:?}"
    );

    let rows = session
        .query_unpaged("SELECT id, counter FROM example.values", ())
        .await?
        .into_rows_result()?
        .rows::<(String, i32)>()?
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    anyhow::ensure!(
        rows == expected,
        "example.values differs from the last value sent per key ({} rows, {} keys)",
        rows.len(),
        expected.len()
    );
    println!(
        "OK: example.values holds exactly the last value of each of the {KEYS} keys from {RECORDS} records, \
         despite a kill -9 mid-stream"
    );
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}
