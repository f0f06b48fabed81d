//! A Kafka broker lost and back under a writing worker.

use std::time::Duration;

use cassandra_sink_tests::Settings;
use cassandra_sink_tests::scenario::RegressionWatch;
use cassandra_sink_tests::worker::Worker;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{ONE_AT_A_TIME, finish, first_commit, goes_on_without, scenario};

/// The broker that leads partition 0 of `topic`, as `cluster-kafka-<id>`.
fn leader_of_partition_0(settings: &Settings, topic: &str) -> anyhow::Result<&'static str> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let leader = metadata
        .topics()
        .first()
        .and_then(|topic| topic.partitions().first())
        .map(|partition| partition.leader())
        .ok_or_else(|| anyhow::anyhow!("no metadata for {topic}"))?;
    match leader {
        1 => Ok("cluster-kafka-1"),
        2 => Ok("cluster-kafka-2"),
        3 => Ok("cluster-kafka-3"),
        other => anyhow::bail!("partition 0 of {topic} is led by broker {other}"),
    }
}

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
