//! P1, P2 and P4 end to end: workers killed with SIGKILL at random moments and aborted at injected
//! points of the protocol, records updating the same keys many times, and at the end a table that
//! equals the last update of every key, positions at Kafka's end, and every record counted once.

use std::collections::BTreeMap;
use std::time::Duration;

use cassandra_sink_tests::scenario::{RegressionWatch, Scenario};
use cassandra_sink_tests::worker::Worker;

/// A small deterministic generator, seeded from the clock and printed so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        let seed = std::env::var("TEST_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_nanos() as u64)
                    .unwrap_or(7)
            });
        eprintln!("TEST_SEED={seed}");
        Self(seed)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(low + (self.0 >> 33) % (high - low))
    }
}

/// Checks the table, the record count, and that each partition was claimed at least as often as the
/// workers' logs say (`claims[partition]`, or `all` for partitions not listed).
async fn assert_final_state(
    scenario: &Scenario,
    claims: &BTreeMap<i32, i64>,
    all: i64,
) -> anyhow::Result<()> {
    let committed = scenario.assert_applied_once("values").await?;
    for (partition, (_, epoch, _)) in &committed {
        let claims_at_least = claims.get(partition).copied().unwrap_or(all);
        assert!(
            *epoch >= claims_at_least,
            "partition {partition} was claimed {epoch} times, expected at least {claims_at_least}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_repeats_nothing() -> anyhow::Result<()> {
    killed_at_random_moments("killed", "", None).await
}

/// The same with every fourth update of a key a tombstone that deletes its row, and every record
/// fanned out to a second table: across kills and replays a row is deleted, written again and deleted
/// again, and must end in both tables as its last record left it (a replayed older write never brings
/// a deleted row back, a replayed delete never removes a newer row, no table is left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_with_deletes_and_fan_out_ends_right_in_every_table()
-> anyhow::Result<()> {
    let extra = format!(
        "{}{}",
        Scenario::DELETE_ON_TOMBSTONE,
        Scenario::FAN_OUT_TO_MIRROR
    );
    killed_at_random_moments("killeddel", &extra, Some(4)).await
}

async fn killed_at_random_moments(
    name: &str,
    extra: &str,
    delete_every: Option<i32>,
) -> anyhow::Result<()> {
    let mut scenario = Scenario::new(
        name,
        3,
        &format!("checkpoint: {{ interval: 200ms, maxRecords: 400 }}\n{extra}"),
    )
    .await?;
    if extra.contains("mirror") {
        scenario.create_mirror().await?;
    }
    scenario.produce_updates(1500, 40, delete_every).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let mut dice = Dice::new();
    let environment = Scenario::worker_env(&format!("{name}-0"));
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // TEST_KILL_ROUNDS raises the number of kills for a longer soak.
    let kills: i64 = std::env::var("TEST_KILL_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(5);
    // Claims per partition that the workers logged (each bumped that partition's epoch). The final
    // worker may claim nothing: the killed ones can have committed everything already.
    let mut claimed: BTreeMap<i32, i64> = (0..scenario.partitions).map(|p| (p, 0)).collect();
    let topic = scenario.topic.clone();
    let count_claims = |claimed: &mut BTreeMap<i32, i64>, log: &str| {
        for (partition, count) in claimed.iter_mut() {
            if log.contains(&format!("partition claimed partition={topic}/{partition} ")) {
                *count += 1;
            }
        }
    };
    for round in 0..kills {
        let worker = Worker::start(&scenario.config, &format!("worker-{round}"), &environment);
        // Keep the stream moving while the worker runs, so kills land mid-checkpoint.
        scenario.produce_updates(300, 40, delete_every).await?;
        tokio::time::sleep(dice.millis(300, 2500)).await;
        count_claims(&mut claimed, &worker.log_text());
        worker.kill();
    }
    let worker = Worker::start(&scenario.config, "worker-final", &environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    count_claims(&mut claimed, &worker.log_text());
    let status = worker.terminate(Duration::from_secs(30));
    assert!(status.success(), "graceful stop failed: {status:?}");
    let regressions = watch.finish().await?;
    assert!(
        regressions.is_empty(),
        "a reader saw rows go back: {regressions:?}"
    );
    assert_final_state(&scenario, &claimed, 1).await?;
    if extra.contains("mirror") {
        assert_eq!(
            scenario.table_named("mirror").await?,
            scenario.expected,
            "the fan-out table differs"
        );
    }
    scenario.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_at_each_protocol_step_recover_from_the_committer_table() -> anyhow::Result<()> {
    let mut scenario = Scenario::new(
        "aborted",
        2,
        "checkpoint: { interval: 100ms, maxRecords: 150 }\n",
    )
    .await?;
    scenario.produce(2400, 30).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let environment = Scenario::worker_env("aborted-0");
    let mut recovered = 0;
    for (round, point) in [
        "after-pending",
        "mid-write",
        "before-commit",
        "after-commit",
    ]
    .iter()
    .enumerate()
    {
        let fault = format!("{point}:3");
        let mut with_fault: Vec<(&str, &str)> =
            environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
        with_fault.push(("CASSANDRA_SINK_FAULT", fault.as_str()));
        let mut worker = Worker::start(&scenario.config, &format!("worker-{round}"), &with_fault);
        let log = worker.wait_for_failure(Duration::from_secs(60));
        assert!(
            log.contains(&format!("aborting at {point}")),
            "expected an abort at {point}:\n{log}"
        );
        if round > 0 && log.contains("pending=Some") {
            recovered += 1;
        }
        scenario.produce(200, 30).await?;
    }
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Worker::start(&scenario.config, "worker-final", &environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    if worker.log_text().contains("pending=Some") {
        recovered += 1;
    }
    assert!(worker.terminate(Duration::from_secs(30)).success());
    assert!(
        recovered >= 2,
        "aborts after the pending record must leave pending ranges that the next worker recovers"
    );
    let regressions = watch.finish().await?;
    assert!(
        regressions.is_empty(),
        "a reader saw rows go back: {regressions:?}"
    );
    assert_final_state(&scenario, &BTreeMap::new(), 5).await?;
    scenario.clean_up().await
}
