//! Cassandra or Kafka unavailable: the worker retries, reports not ready, loses nothing and resumes by
//! itself.
//!
//! A test binary of its own because it freezes the shared Cassandra (SIGSTOP) and kills the shared
//! Kafka: cargo runs test binaries one after another, so no other test is talking to them meanwhile,
//! and the two tests here take turns through [`ONE_OUTAGE_AT_A_TIME`].

use std::process::Command;
use std::time::{Duration, Instant};

use cassandra_sink_tests::env_or;
use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

/// After an outage: more records arrive, the worker catches up by itself and is ready again, and the
/// table and the record count show nothing lost or applied twice.
async fn resumes_without_loss(
    mut scenario: Scenario,
    worker: Worker,
    timeout: Duration,
) -> anyhow::Result<()> {
    scenario.produce(300, 30).await?;
    scenario.wait_until_caught_up(timeout).await?;
    assert!(
        readyz_reaches(&worker, 200, Duration::from_secs(20)).await,
        "not ready again:\n{}",
        worker.log_text()
    );
    assert!(worker.terminate(Duration::from_secs(30)).success());
    scenario.assert_applied_once("values").await?;
    scenario.clean_up().await
}

/// Polls the worker's `/readyz` until it answers `status`, for at most `timeout`; whether it did.
async fn readyz_reaches(worker: &Worker, status: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if worker.get("/readyz").map(|(answered, _)| answered) == Some(status) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The tests here each break a shared server; they must not overlap.
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends a signal to a local server whose pid `scripts/localenv.sh` recorded in the file that the
/// environment variable `pid_file` names.
fn signal_server(pid_file: &str, signal: &str) {
    let path = env_or(pid_file, "");
    let pid = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{pid_file} ({path:?}): {error}"));
    let status = Command::new("kill")
        .args([signal, pid.trim()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A server outage, ended when dropped: even if an assertion fails while the server is down.
struct Outage(fn());

impl Outage {
    fn begin(start: fn(), end: fn()) -> Self {
        start();
        Outage(end)
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_cassandra_makes_the_worker_unready_and_it_resumes_without_loss()
-> anyhow::Result<()> {
    let _turn = ONE_OUTAGE_AT_A_TIME.lock().await;
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

    let saw_unready = {
        let _frozen = Outage::begin(
            || signal_server("CASSANDRA_PID_FILE", "-STOP"),
            || signal_server("CASSANDRA_PID_FILE", "-CONT"),
        );
        scenario.produce(300, 30).await?;
        readyz_reaches(&worker, 503, Duration::from_secs(20)).await
    };
    assert!(
        saw_unready,
        "the worker stayed ready while Cassandra was frozen:\n{}",
        worker.log_text()
    );

    resumes_without_loss(scenario, worker, Duration::from_secs(90)).await
}

/// Starts the local Kafka again and waits until it is ready.
fn start_kafka() {
    let script = env_or("LOCALENV_SCRIPT", "");
    let status = Command::new("bash")
        .args([script.as_str(), "start", "kafka"])
        .status()
        .expect("run localenv.sh");
    assert!(status.success(), "{script} start kafka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_kafka_makes_the_worker_unready_and_it_resumes_without_loss() -> anyhow::Result<()>
{
    let _turn = ONE_OUTAGE_AT_A_TIME.lock().await;
    let mut scenario =
        Scenario::new("kafka_outage", 2, "checkpoint: { interval: 200ms }\n").await?;
    scenario.produce(300, 30).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert_eq!(worker.get("/readyz").map(|(status, _)| status), Some(200));

    let saw_unready = {
        // SIGKILL: a crash, not a shutdown.
        let _down = Outage::begin(|| signal_server("KAFKA_PID_FILE", "-KILL"), start_kafka);
        let saw_unready = readyz_reaches(&worker, 503, Duration::from_secs(30)).await;
        // The worker lives through the outage: it retries instead of exiting.
        assert!(worker.get("/healthz").is_some(), "{}", worker.log_text());
        saw_unready
    };
    assert!(
        saw_unready,
        "the worker stayed ready while Kafka was down:\n{}",
        worker.log_text()
    );

    // Kafka is back: the worker reads on by itself, with nothing lost or applied twice.
    resumes_without_loss(scenario, worker, Duration::from_secs(120)).await
}

/// Starts the local Cassandra again and waits until it is ready.
fn start_cassandra() {
    let script = env_or("LOCALENV_SCRIPT", "");
    let status = Command::new("bash")
        .args([script.as_str(), "start", "cassandra"])
        .status()
        .expect("run localenv.sh");
    assert!(status.success(), "{script} start cassandra");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_killed_mid_stream_loses_nothing_and_a_worker_started_meanwhile_waits()
-> anyhow::Result<()> {
    let _turn = ONE_OUTAGE_AT_A_TIME.lock().await;
    let mut scenario =
        Scenario::new("cassandra_crash", 2, "checkpoint: { interval: 200ms }\n").await?;
    let text = std::fs::read_to_string(&scenario.config)?.replace(
        "localDatacenter: datacenter1",
        "localDatacenter: datacenter1\n  requestTimeout: 2s",
    );
    std::fs::write(&scenario.config, text)?;
    scenario.produce(300, 30).await?;
    let first = Worker::start(&scenario.config, "first", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;

    {
        // SIGKILL: a crash, with the scenario's keyspace and tables created moments ago; the local
        // Cassandra syncs its system tables, so it comes back with them.
        let down = Outage::begin(
            || signal_server("CASSANDRA_PID_FILE", "-KILL"),
            start_cassandra,
        );
        scenario.produce(300, 30).await?;
        assert!(
            readyz_reaches(&first, 503, Duration::from_secs(30)).await,
            "the worker stayed ready while Cassandra was down:\n{}",
            first.log_text()
        );
        // A worker that starts now finds no Cassandra: it waits, unready, instead of exiting.
        let mut second = Worker::start(&scenario.config, "second", &[]);
        assert!(
            second.wait(Duration::from_secs(10)).is_none(),
            "the worker started during the outage exited:\n{}",
            second.log_text()
        );
        assert!(
            readyz_reaches(&second, 503, Duration::from_secs(5)).await,
            "{}",
            second.log_text()
        );
        assert!(
            second
                .log_text()
                .contains("Cassandra unreachable; retrying")
        );
        // Cassandra comes back; the second worker connects by itself.
        drop(down);
        assert!(
            readyz_reaches(&second, 200, Duration::from_secs(120)).await,
            "the waiting worker did not start once Cassandra was back:\n{}",
            second.log_text()
        );
        scenario.produce(300, 30).await?;
        scenario
            .wait_until_caught_up(Duration::from_secs(120))
            .await?;
        assert!(second.terminate(Duration::from_secs(30)).success());
    }
    resumes_without_loss(scenario, first, Duration::from_secs(120)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_kafka_is_down_waits_unready_and_starts_when_it_is_back()
-> anyhow::Result<()> {
    let _turn = ONE_OUTAGE_AT_A_TIME.lock().await;
    let mut scenario =
        Scenario::new("kafka_absent", 2, "checkpoint: { interval: 200ms }\n").await?;
    scenario.produce(300, 30).await?;
    let worker = {
        let _down = Outage::begin(|| signal_server("KAFKA_PID_FILE", "-KILL"), start_kafka);
        let mut worker = Worker::start(&scenario.config, "worker", &[]);
        assert!(
            worker.wait(Duration::from_secs(10)).is_none(),
            "the worker exited while Kafka was down:\n{}",
            worker.log_text()
        );
        assert!(
            readyz_reaches(&worker, 503, Duration::from_secs(5)).await,
            "{}",
            worker.log_text()
        );
        worker
    };
    resumes_without_loss(scenario, worker, Duration::from_secs(120)).await
}
