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

/// Two workers under one name (a misconfiguration: the operator names each after its pod) fence each
/// other in the consumer group. The first fence each takes for a lost group coordinator and answers by
/// joining again; the next one, within two minutes, stops that worker, saying why. The other goes on,
/// and exactly-once holds through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_under_one_name_stop_one_saying_why() -> anyhow::Result<()> {
    let mut scenario = Scenario::new("namesake", 2, "checkpoint: { interval: 200ms }\n").await?;
    scenario.produce(400, 20).await?;
    let mut first = Worker::start(&scenario.config, "twin", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    // The same configuration in a folder of its own, so that each worker has its own log.
    let elsewhere = scenario.dir.join("second");
    std::fs::create_dir_all(&elsewhere)?;
    let copy = elsewhere.join("sink.yaml");
    std::fs::copy(&scenario.config, &copy)?;
    let mut second = Worker::start(&copy, "twin", &[]);

    let deadline = Instant::now() + Duration::from_secs(90);
    let (stopped, survivor) = loop {
        if let Some(status) = first.wait(Duration::from_millis(250)) {
            break ((status, first.log_text()), second);
        }
        if let Some(status) = second.wait(Duration::from_millis(250)) {
            break ((status, second.log_text()), first);
        }
        assert!(
            Instant::now() < deadline,
            "neither worker stopped in 90 s:\n{}\n---\n{}",
            first.log_text(),
            second.log_text()
        );
    };
    let (status, log) = stopped;
    assert!(!status.success(), "exited with {status}:\n{log}");
    assert!(
        log.contains("joining again with a new consumer")
            && log.contains("another worker of this sink runs under the same name (worker id)"),
        "the stopped worker does not say it was fenced twice by a namesake:\n{log}"
    );

    scenario.produce(400, 20).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await
        .map_err(|error| anyhow::anyhow!("{error}\n{}", survivor.log_text()))?;
    scenario.assert_applied_once("values").await?;
    assert!(survivor.terminate(Duration::from_secs(30)).success());
    scenario.clean_up().await
}
