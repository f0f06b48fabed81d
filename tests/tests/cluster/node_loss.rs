//! Cassandra nodes lost and back under a writing worker: one node (the sink goes on), two nodes
//! (it stops committing, says why, and resumes by itself), and a frozen coordinator holding a
//! zombie's requests while another worker takes its partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use cassandra_sink_tests::Settings;
use cassandra_sink_tests::nodes::Down;
use cassandra_sink_tests::scenario::{RegressionWatch, Scenario};
use cassandra_sink_tests::worker::Worker;
use scylla::statement::Consistency;

use crate::{
    ONE_AT_A_TIME, finish, first_commit, goes_on_without, on_node, readyz_reaches, scenario,
};

/// One of three replicas killed -9 mid-stream: LOCAL_QUORUM still has two, so the worker keeps
/// committing while the node is down (it catches up with a stream produced after the kill) and
/// after it is back; nothing lost, nothing twice, nothing goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cassandra_node_killed_mid_stream_then_back_loses_nothing() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = scenario(Settings::cluster(), "onenode", 3).await?;
    scenario.produce(1500, 40).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    // Killed while the worker is busy with the first records: once it has committed something.
    first_commit(&scenario, &worker).await?;
    goes_on_without(&mut scenario, &worker, &["cluster-cassandra-2"]).await?;
    finish(scenario, worker, watch).await
}

/// The committer rows as the one surviving node has them, read at ONE from it alone.
async fn committed_on_node_1(scenario: &Scenario) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let key = cassandra_sink_worker::committer::row_key(&scenario.sink_id, &scenario.topic);
    let mut committed = BTreeMap::new();
    for partition in 0..scenario.partitions {
        let statement = on_node(
            &format!(
                "SELECT committed_offset FROM {}.checkpoints WHERE sink_id = ? AND \
                 source_partition = ?",
                scenario.keyspace
            ),
            1,
            Consistency::One,
        );
        let row = scenario
            .session
            .query_unpaged(statement, (&key, partition))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?;
        committed.insert(partition, row.and_then(|(offset,)| offset));
    }
    Ok(committed)
}

/// Two of three replicas killed: no quorum. The worker stops committing (the surviving node's
/// committer rows do not move while records wait), reports not ready with Cassandra's error on
/// `/readyz`, stays up, and resumes by itself when the nodes return; nothing lost or twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cassandra_nodes_down_stop_commits_until_they_return() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = scenario(Settings::cluster(), "twonodes", 3).await?;
    // Requests that fail fast, so the outage shows within the test's time.
    let text = std::fs::read_to_string(&scenario.config)?.replace(
        "localDatacenter: dc1",
        "localDatacenter: dc1\n  requestTimeout: 2s",
    );
    std::fs::write(&scenario.config, text)?;
    scenario.produce(900, 40).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let mut worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    {
        let _down = Down::kill(&["cluster-cassandra-2", "cluster-cassandra-3"]);
        scenario.produce(900, 40).await?;
        let body = readyz_reaches(&worker, 503, Duration::from_secs(60)).await;
        let body = body.unwrap_or_else(|| {
            panic!(
                "still ready with two of three nodes down:\n{}",
                worker.log_text()
            )
        });
        assert!(
            body.contains("Cassandra"),
            "/readyz does not say what it waits for: {body}"
        );
        // Nothing commits on the one node left: its rows stay where they were while records wait.
        let before = committed_on_node_1(&scenario).await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(
            committed_on_node_1(&scenario).await?,
            before,
            "a checkpoint committed without a quorum"
        );
        assert!(
            worker.wait(Duration::from_millis(10)).is_none(),
            "the worker exited instead of waiting:\n{}",
            worker.log_text()
        );
    }
    finish(scenario, worker, watch).await
}

/// A zombie whose coordinator is cut off mid-commit: worker A is frozen with requests in flight to a
/// node that is frozen too (SIGSTOP: its requests neither fail nor land), B takes A's partitions and
/// commits past them; then the node wakes and delivers A's late requests, and A wakes with its old
/// epoch. Whatever A still sends is fenced: no reader sees a row go back, and every record counts
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_whose_coordinator_was_frozen_mid_commit_is_fenced() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = scenario(Settings::cluster(), "frozencoord", 2).await?;
    let text = std::fs::read_to_string(&scenario.config)?.replace(
        "localDatacenter: dc1",
        "localDatacenter: dc1\n  requestTimeout: 3s",
    );
    std::fs::write(&scenario.config, text)?;
    scenario.produce(900, 40).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let env_a = Scenario::worker_env("frozencoord-a");
    let env_b = Scenario::worker_env("frozencoord-b");
    let env_a: Vec<(&str, &str)> = env_a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env_b: Vec<(&str, &str)> = env_b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let zombie = Worker::start(&scenario.config, "worker-a", &env_a);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    scenario.produce(900, 40).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let successor;
    {
        let _frozen = Down::freeze(&["cluster-cassandra-3"]);
        zombie.freeze();
        successor = Worker::start(&scenario.config, "worker-b", &env_b);
        scenario.produce(600, 40).await?;
        scenario
            .wait_until_caught_up(Duration::from_secs(150))
            .await
            .map_err(|error| anyhow::anyhow!("{error}\n{}", successor.log_text()))?;
    }
    // The node delivers what it held; then A wakes with its old epoch and a checkpoint in hand.
    tokio::time::sleep(Duration::from_secs(2)).await;
    zombie.thaw();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = zombie.terminate(Duration::from_secs(30));
    let committed = scenario.committed().await?;
    assert!(
        committed.values().all(|(_, epoch, _)| *epoch >= 2),
        "B claimed every partition after A: {committed:?}"
    );
    finish(scenario, successor, watch).await
}

/// A frozen replica holds nothing back for long: a write that timed out on it goes to another
/// replica on its retry (the node is passed over meanwhile), and the committer's transactions go to
/// another replica after a short wait, so checkpoints keep committing while it is frozen (without
/// that, the sink waits for the node: at most one checkpoint in the window); requests in flight never
/// exceed the per-node bound times the nodes; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_does_not_hold_the_others_back() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = scenario(Settings::cluster(), "slownode", 3).await?;
    let text = std::fs::read_to_string(&scenario.config)?.replace(
        "localDatacenter: dc1",
        "localDatacenter: dc1\n  requestTimeout: 3s",
    ) + "limits: { maxInFlightPerNode: 8 }\n";
    std::fs::write(&scenario.config, text)?;
    scenario.produce(600, 40).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    let mut most_in_flight: f64 = 0.0;
    let checkpoints = || {
        worker
            .metric("cassandra_sink_checkpoints_total")
            .unwrap_or(0.0)
    };
    {
        let _frozen = Down::freeze(&["cluster-cassandra-2"]);
        let before = checkpoints();
        scenario.produce(1500, 40).await?;
        let until = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < until {
            most_in_flight = most_in_flight.max(
                worker
                    .metric("cassandra_sink_requests_in_flight")
                    .unwrap_or(0.0),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let committed = checkpoints() - before;
        assert!(
            committed >= 3.0,
            "{committed} checkpoints in 15 s with one replica of three frozen:\n{}",
            worker.log_text()
        );
    }
    let nodes = scenario.session.get_cluster_state().get_nodes_info().len() as f64;
    assert!(
        most_in_flight <= 8.0 * nodes,
        "{most_in_flight} requests in flight, above 8 per node on {nodes} nodes"
    );
    finish(scenario, worker, watch).await
}
