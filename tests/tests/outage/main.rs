//! Cassandra unavailable: the worker retries, reports not ready, loses nothing and resumes by itself.
//!
//! A test binary of its own because it freezes the shared Cassandra (SIGSTOP): cargo runs test binaries
//! one after another, so no other test is talking to Cassandra meanwhile.

use std::process::Command;
use std::time::{Duration, Instant};

use cassandra_sink_tests::env_or;
use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

/// Sends a signal to the local Cassandra, whose pid `scripts/localenv.sh` recorded.
fn signal_cassandra(signal: &str) {
    let pid_file = env_or("CASSANDRA_PID_FILE", "");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|error| panic!("CASSANDRA_PID_FILE ({pid_file:?}): {error}"));
    let status = Command::new("kill")
        .args([signal, pid.trim()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Thaws Cassandra even if an assertion fails while it is frozen.
struct Frozen;

impl Frozen {
    fn new() -> Self {
        signal_cassandra("-STOP");
        Frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal_cassandra("-CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_cassandra_makes_the_worker_unready_and_it_resumes_without_loss()
-> anyhow::Result<()> {
    let mut scenario = Scenario::new("outage", 2, "checkpoint: { interval: 200ms }\n").await?;
    // A short request timeout so the outage shows within the test's time.
    let text = std::fs::read_to_string(&scenario.config)?.replace(
        "localDatacenter: datacenter1",
        "localDatacenter: datacenter1\n  requestTimeout: 2s",
    );
    std::fs::write(&scenario.config, text)?;
    scenario.produce(300, 30).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert_eq!(worker.get("/readyz").map(|(status, _)| status), Some(200));

    let mut saw_unready = false;
    {
        let _frozen = Frozen::new();
        scenario.produce(300, 30).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !saw_unready {
            saw_unready = worker.get("/readyz").map(|(status, _)| status) == Some(503);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(
        saw_unready,
        "the worker stayed ready while Cassandra was frozen:\n{}",
        worker.log_text()
    );

    scenario.produce(300, 30).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.get("/readyz").map(|(status, _)| status) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "not ready again:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(worker.terminate(Duration::from_secs(30)).success());
    assert_eq!(scenario.table().await?, scenario.expected);
    let committed = scenario.committed().await?;
    let counted: i64 = committed
        .values()
        .map(|(_, _, records)| records.unwrap_or(0))
        .sum();
    assert_eq!(counted, scenario.produced);
    scenario.clean_up().await
}
