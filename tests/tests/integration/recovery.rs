//! A worker with a stable name (the operator gives each its pod's) is a static member of the consumer
//! group: killed with SIGKILL and restarted under the same name, as the kubelet restarts a crashed
//! container in its pod, it takes its partitions back as soon as it rejoins, instead of after the
//! group's session timeout, and exactly-once holds through it.

use std::time::{Duration, Instant};

use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_under_its_name_takes_its_partitions_back_before_the_session_timeout()
-> anyhow::Result<()> {
    let mut scenario = Scenario::new("restarted", 2, "checkpoint: { interval: 200ms }\n").await?;
    // A long session timeout, so that waiting for it and not waiting cannot be mistaken for each
    // other on a slow machine. No `group.instance.id`: the worker's name gives it.
    let environment = [(
        "CASSANDRA_SINK__SOURCE__KAFKA__PROPERTIES",
        "{session.timeout.ms: \"30000\"}",
    )];
    scenario.produce(400, 20).await?;
    let worker = Worker::start(&scenario.config, "restarted-0", &environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    worker.kill();
    scenario.produce(400, 20).await?;
    let killed = Instant::now();
    let worker = Worker::start(&scenario.config, "restarted-0", &environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the restarted worker waited {took:?}, as if for the 30 s session timeout:\n{}",
        worker.log_text()
    );
    scenario.assert_applied_once("values").await?;
    worker.terminate(Duration::from_secs(10));
    scenario.clean_up().await
}
