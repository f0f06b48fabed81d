//! A Kafka broker lost and back under a writing worker: the leader of a partition it reads, and the
//! coordinator of its consumer group.

use cassandra_sink_tests::Settings;
use cassandra_sink_tests::nodes::{coordinator_of, leader_of_partition_0};
use cassandra_sink_tests::scenario::RegressionWatch;
use cassandra_sink_tests::worker::Worker;

use crate::{ONE_AT_A_TIME, finish, first_commit, goes_on_without, scenario};

/// The leader of a partition the worker reads killed -9 mid-stream: a replica in sync takes over
/// (three copies, `min.insync.replicas` 2), the worker follows it and goes on; when the broker is
/// back, more records; nothing lost, nothing twice, nothing goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_leader_killed_mid_stream_then_back_loses_nothing() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = scenario(Settings::cluster(), "leaderloss", 3).await?;
    scenario.produce(1500, 40).await?;
    let leader = leader_of_partition_0(&scenario.settings, &scenario.topic)?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    first_commit(&scenario, &worker).await?;
    goes_on_without(&mut scenario, &worker, &[leader]).await?;
    finish(scenario, worker, watch).await
}

/// The broker that coordinates the worker's consumer group killed -9 mid-stream: for the broker's
/// session timeout no broker coordinates the group, the worker's own Kafka session runs out and it
/// hands its partitions back, then it rejoins the group under the new coordinator, claims them again
/// and goes on; when the broker is back, more records; nothing lost, nothing twice, nothing goes
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_coordinator_killed_mid_stream_then_back_loses_nothing() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = scenario(Settings::cluster(), "coordloss", 3).await?;
    scenario.produce(1500, 40).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    first_commit(&scenario, &worker).await?;
    // Asked once the group exists: Kafka creates its offsets topic for the first group.
    let group = cassandra_sink_worker::config::default_group_id(&scenario.sink_id);
    let coordinator = coordinator_of(&scenario.settings, &group)?;
    goes_on_without(&mut scenario, &worker, &[coordinator]).await?;
    finish(scenario, worker, watch).await
}
