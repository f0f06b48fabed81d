//! Exactly-once on the local clusters (`scripts/localenv.sh cluster up`): three Cassandra nodes in
//! dc1 and one in dc2, three Kafka brokers, keyspaces with three copies and topics with three copies
//! and `min.insync.replicas` 2. Nodes are killed (-9), frozen and restarted while a worker writes,
//! and each test compares the table with what was produced (keys updated many times).
//!
//! A test binary of its own: the tests break shared nodes, so they take turns through
//! [`ONE_AT_A_TIME`], and every node a test stops is started again when its [`Down`] is dropped,
//! even when an assertion failed first.

mod datacenters;
mod kafka;
mod node_loss;

use std::time::{Duration, Instant};

use cassandra_sink_tests::nodes::Down;
use cassandra_sink_tests::scenario::{RegressionWatch, Scenario};
use cassandra_sink_tests::worker::Worker;
use cassandra_sink_tests::{Settings, env_or, fixtures};
use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
use scylla::statement::{Consistency, Statement};

/// The tests here each break shared nodes; they must not overlap.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scenario on the clusters: keyspace and committer replicated as `settings` says, topics with
/// three copies, checkpoints small and frequent.
async fn scenario(settings: Settings, name: &str, partitions: i32) -> anyhow::Result<Scenario> {
    let session = fixtures::cassandra(&settings).await?;
    Scenario::on(
        settings,
        session,
        name,
        partitions,
        "checkpoint: { interval: 200ms, maxRecords: 300 }\n",
    )
    .await
}

/// Ends the test: more records, the worker catches up and is ready, no reader saw a row go back,
/// and the table and the record count show nothing lost or applied twice.
async fn finish(
    mut scenario: Scenario,
    worker: Worker,
    watch: RegressionWatch,
) -> anyhow::Result<()> {
    scenario.produce(600, 40).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(120))
        .await?;
    assert!(
        readyz_reaches(&worker, 200, Duration::from_secs(30))
            .await
            .is_some(),
        "not ready again:\n{}",
        worker.log_text()
    );
    assert!(worker.terminate(Duration::from_secs(30)).success());
    let regressions = watch.finish().await?;
    assert!(
        regressions.is_empty(),
        "a reader saw rows go back: {regressions:?}"
    );
    scenario.assert_applied_once("values").await?;
    scenario.clean_up().await
}

/// Kills `nodes` (-9), produces more, waits until the worker has committed all of it while they are
/// down, and checks it is ready then; they are started again on return.
async fn goes_on_without(
    scenario: &mut Scenario,
    worker: &Worker,
    nodes: &[&'static str],
) -> anyhow::Result<()> {
    let _down = Down::kill(nodes);
    scenario.produce(1500, 40).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(120))
        .await
        .map_err(|error| anyhow::anyhow!("{error}\n{}", worker.log_text()))?;
    let ready = readyz_reaches(worker, 200, Duration::from_secs(10)).await;
    anyhow::ensure!(ready.is_some(), "not ready with {nodes:?} down");
    Ok(())
}

/// Polls the worker's `/readyz` until it answers `status`, for at most `timeout`; the body it
/// answered with, if it did.
async fn readyz_reaches(worker: &Worker, status: u16, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((answered, body)) = worker.get("/readyz")
            && answered == status
        {
            return Some(body);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `cql` sent to Cassandra cluster node `n` (1-based) alone, at `consistency`: for node-local
/// tables, and for reads from a node that survived.
fn on_node(cql: &str, n: u32, consistency: Consistency) -> Statement {
    let address = format!("127.0.1.{n}:{}", env_or("CLUSTER_CASSANDRA_PORT", "9142"));
    let mut statement = Statement::new(cql);
    statement.set_consistency(consistency);
    statement.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
        NodeIdentifier::NodeAddress(address.parse().expect("a socket address")),
        None,
    )));
    statement
}

/// Waits until the worker has committed a first checkpoint.
async fn first_commit(scenario: &Scenario, worker: &Worker) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let committed = scenario.committed().await.unwrap_or_default();
        if committed.values().any(|(offset, _, _)| offset.is_some()) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no commit in 90 s:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
