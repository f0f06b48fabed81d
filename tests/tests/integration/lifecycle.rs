//! The worker's life: a graceful stop commits what it buffered, and a range Kafka no longer holds
//! stops it with a clear error instead of a silent skip.

use std::time::Duration;

use cassandra_sink_tests::fixtures::delete_records;
use cassandra_sink_tests::worker::Worker;

use cassandra_sink_tests::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_what_is_buffered_and_releases_the_partitions() -> anyhow::Result<()> {
    // Checkpoints only by time, and not for a minute: whatever is committed was committed by the stop.
    let mut scenario = Scenario::new(
        "sigterm",
        2,
        "checkpoint: { interval: 60s, maxRecords: 1000000 }\n",
    )
    .await?;
    scenario.produce(500, 25).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while worker.metric("cassandra_sink_records_read_total") != Some(500.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(worker.get("/readyz").map(|(status, _)| status), Some(200));
    assert!(
        scenario
            .committed()
            .await?
            .values()
            .all(|(offset, _, _)| offset.is_none())
    );
    let log = worker.log.clone();
    let status = worker.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(log)?;
    assert!(text.contains("partitions released"), "{text}");
    scenario
        .wait_until_caught_up(Duration::from_secs(1))
        .await?;
    assert_eq!(scenario.table().await?, scenario.expected);
    scenario.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_deleted_from_kafka_stops_the_sink_instead_of_skipping_it() -> anyhow::Result<()> {
    let mut scenario = Scenario::new("gone", 1, "checkpoint: { interval: 100ms }\n").await?;
    scenario.produce(100, 10).await?;
    let worker = Worker::start(&scenario.config, "first", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());

    // Records 100..200 arrive while the sink is stopped; retention removes 100..150 before it is back.
    scenario.produce(100, 10).await?;
    delete_records(&scenario.settings, &scenario.topic, 0, 150).await?;
    let mut worker = Worker::start(&scenario.config, "second", &[]);
    let log = worker.wait_for_failure(Duration::from_secs(60));
    assert!(
        log.contains("offsets 100..150 are no longer in Kafka") && log.contains("reason=RangeGone"),
        "{log}"
    );
    assert_eq!(
        scenario.committed().await?[&0].0,
        Some(100),
        "nothing skipped"
    );
    scenario.clean_up().await
}

/// librdkafka refusing to start the claimed partitions (an injected fault at the assign step): the
/// write loop is never told it owns them, so the worker stops with the reason instead of running on,
/// ready and idle, believing it owns partitions it does not read; a restart takes them properly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_assign_never_leaves_the_worker_owning_a_partition() -> anyhow::Result<()> {
    let mut scenario = Scenario::new("assign", 2, "checkpoint: { interval: 100ms }\n").await?;
    scenario.produce(200, 20).await?;
    let mut refused = Worker::start(
        &scenario.config,
        "refused",
        &[("CASSANDRA_SINK_FAULT", "assign:1")],
    );
    let log = refused.wait_for_failure(Duration::from_secs(60));
    assert!(
        log.contains("cannot start reading the assigned partitions")
            && log.contains("reason=KafkaFailed"),
        "{log}"
    );
    assert!(
        scenario
            .committed()
            .await?
            .values()
            .all(|(offset, _, _)| offset.is_none()),
        "the refused worker committed"
    );
    let worker = Worker::start(&scenario.config, "second", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());
    scenario.assert_applied_once("values").await?;
    scenario.clean_up().await
}

/// A port the worker cannot listen on for its probes stops it at once with the reason: without
/// `/healthz` and `/readyz` a kubelet would only ever restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_port_that_cannot_be_bound_stops_the_worker_with_the_reason() -> anyhow::Result<()>
{
    let scenario = Scenario::new("listen", 1, "").await?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let output = std::process::Command::new(cassandra_sink_tests::worker::binary())
        .args(["run", "--config"])
        .arg(&scenario.config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_BACKTRACE", "1")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("ListenFailed") && stderr.contains(&format!("127.0.0.1:{port}")),
        "{stderr}"
    );
    drop(taken);
    scenario.clean_up().await
}

/// `positions` only reads: against a sink whose tables were never made it fails, and makes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_positions_command_never_changes_the_schema() -> anyhow::Result<()> {
    let scenario = Scenario::new("positions", 1, "").await?;
    let output = std::process::Command::new(cassandra_sink_tests::worker::binary())
        .args(["positions", "--config"])
        .arg(&scenario.config)
        .output()?;
    assert!(
        !output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let tables = scenario
        .session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (&scenario.keyspace,),
        )
        .await?
        .into_rows_result()?
        .rows::<(String,)>()?
        .collect::<Result<Vec<_>, _>>()?;
    assert!(tables.is_empty(), "positions created {tables:?}");
    scenario.clean_up().await
}
