//! Routing with `localDatacenter` set over a keyspace that places replicas without regard to
//! datacenters (`SimpleStrategy`, what most quick starts create): on a one-datacenter cluster the
//! writes land, exactly once, and the driver does not warn on every request that strict confinement
//! could leave some tokens without a node (it did, hundreds of lines a minute per worker).

use std::time::Duration;

use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_strategy_keyspace_is_written_without_a_warning_per_request() -> anyhow::Result<()>
{
    let mut scenario = Scenario::new("simple", 2, "checkpoint: { interval: 200ms }\n").await?;
    scenario
        .session
        .query_unpaged(
            format!(
                "ALTER KEYSPACE {} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
                scenario.keyspace
            ),
            (),
        )
        .await?;
    scenario.produce(600, 20).await?;
    let environment = Scenario::worker_env("simple-0");
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Worker::start(&scenario.config, "simple-0", &environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    scenario.assert_applied_once("values").await?;
    let log = worker.log_text();
    assert!(
        log.contains("checkpoint committed"),
        "the worker committed: {log}"
    );
    let warnings = log
        .lines()
        .filter(|line| line.contains("SimpleStrategy"))
        .count();
    assert_eq!(warnings, 0, "no warning about SimpleStrategy:\n{log}");
    worker.terminate(Duration::from_secs(10));
    scenario.clean_up().await
}
