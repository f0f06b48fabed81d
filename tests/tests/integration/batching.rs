//! Rows that share a partition travel in unlogged batches, and exactly-once holds through them: a
//! table with one Cassandra partition per Kafka partition and many clustering rows, each updated many
//! times, workers killed with SIGKILL mid-stream, and at the end the table equals the last update of
//! every row while the worker's metrics show that batches were written.

use std::time::Duration;

use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

/// The scenario's table turned wide: the Kafka partition is the Cassandra partition key and the id a
/// clustering column, so every checkpoint has many rows per partition, repeated ids among them.
fn widen(scenario: &Scenario) -> anyhow::Result<()> {
    let keyspace = &scenario.keyspace;
    let text = std::fs::read_to_string(&scenario.config)?;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with("createQuery:") && !line.starts_with("insertQuery:"))
        .map(str::to_owned)
        .collect();
    lines.push(format!(
        "createQuery: \"CREATE TABLE IF NOT EXISTS {keyspace}.wide (p int, id text, counter int, \
         seq bigint, PRIMARY KEY (p, id));\""
    ));
    lines.push(format!(
        "insertQuery: \"INSERT INTO {keyspace}.wide (p, id, counter, seq) VALUES (?, ?, ?, ?);\""
    ));
    lines.push("mapping: { fields: [partition, value.0, value.1, value.2] }".to_owned());
    lines.push("limits: { maxBatchRows: 8 }".to_owned());
    lines.push("checkpoint: { interval: 200ms, maxRecords: 400 }".to_owned());
    std::fs::write(&scenario.config, lines.join("\n") + "\n")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_one_partition_keep_exactly_once_through_kills() -> anyhow::Result<()> {
    let mut scenario = Scenario::new("batching", 2, "").await?;
    widen(&scenario)?;
    scenario.produce(1200, 30).await?;
    let environment = Scenario::worker_env("batching-0");
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (round, pause) in [700u64, 1500, 400].into_iter().enumerate() {
        let worker = Worker::start(&scenario.config, &format!("worker-{round}"), &environment);
        scenario.produce(300, 30).await?;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        worker.kill();
    }
    let worker = Worker::start(&scenario.config, "worker-final", &environment);
    // More records for the final worker, whose metrics must show batches.
    scenario.produce(600, 30).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    let metrics = worker
        .get("/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let batches: f64 = metrics
        .lines()
        .find(|line| line.starts_with("cassandra_sink_batches_total "))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    assert!(worker.terminate(Duration::from_secs(30)).success());
    scenario.assert_applied_once("wide").await?;
    assert!(batches > 0.0, "the final worker wrote no batch:\n{metrics}");
    scenario.clean_up().await
}
