//! Writes left out because a later record of the same checkpoint replaces their row (`supersededWrites:
//! skip`, the default): the table ends as if every write had landed, also when Cassandra refuses the
//! write that replaced the others, and `supersededWrites: write` sends every write. The kill tests of
//! `exactly_once` and `batching` run with the default too: their keys are updated many times within
//! each checkpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

/// Three rows, each updated three times within one checkpoint; a negative TTL, which Cassandra
/// refuses for good, makes k2's last write and k3's last two invalid: `[id, counter, seq, ttl]`.
const RECORDS: [&[u8]; 9] = [
    br#"["k1", 1, 0, 0]"#,
    br#"["k2", 1, 1, 0]"#,
    br#"["k3", 1, 2, 0]"#,
    br#"["k1", 2, 3, 0]"#,
    br#"["k2", 2, 4, 0]"#,
    br#"["k3", 2, 5, -1]"#,
    br#"["k1", 3, 6, 0]"#,
    br#"["k2", 3, 7, -1]"#,
    br#"["k3", 3, 8, -1]"#,
];

/// What a run leaves: the table (id → counter, seq) and the offsets dead-lettered, with their kind.
type Outcome = (BTreeMap<String, (i32, i64)>, Vec<(i64, String)>);

/// Runs [`RECORDS`] through one worker with `supersededWrites: mode`; returns the table, the offsets
/// dead-lettered with their kind, and the worker's count of writes left out.
async fn run(mode: &str) -> anyhow::Result<(Outcome, f64)> {
    // One checkpoint for all nine: they are in Kafka before the worker starts, and the interval is
    // long enough for one poll to bring them all.
    let mut scenario = Scenario::new(
        &format!("supersede{mode}"),
        1,
        &format!("checkpoint: {{ interval: 5s }}\nsupersededWrites: {mode}\n"),
    )
    .await?;
    let text = std::fs::read_to_string(&scenario.config)?
        .replace("VALUES (?, ?, ?);", "VALUES (?, ?, ?) USING TTL ?;");
    std::fs::write(&scenario.config, text)?;
    scenario.produce_raw(&RECORDS).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    let superseded = worker
        .metric("cassandra_sink_writes_superseded_total")
        .unwrap_or(-1.0);
    let checkpoints = worker.metric("cassandra_sink_checkpoints_total");
    assert!(worker.terminate(Duration::from_secs(30)).success());
    assert_eq!(
        checkpoints,
        Some(1.0),
        "the nine records make one checkpoint"
    );
    let table = scenario.table().await?;
    let dead_lettered = scenario
        .dead_letters()
        .await?
        .into_iter()
        .map(|(offset, kind, _, _)| (offset, kind))
        .collect();
    let committed = scenario.committed().await?;
    assert_eq!(committed[&0].0, Some(9), "every record is committed");
    scenario.clean_up().await?;
    Ok(((table, dead_lettered), superseded))
}

/// The rows as the valid records leave them, in offset order: k1 at its last update, k2 at its
/// second (its third is refused), k3 at its first (its second and third are refused).
fn expected() -> Outcome {
    (
        BTreeMap::from([
            ("k1".to_owned(), (3, 6)),
            ("k2".to_owned(), (2, 4)),
            ("k3".to_owned(), (1, 2)),
        ]),
        [5, 7, 8]
            .into_iter()
            .map(|offset| (offset, "rejected_by_cassandra".to_owned()))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_writes_are_left_out_and_a_refused_last_write_brings_back_the_one_before()
-> anyhow::Result<()> {
    let (outcome, superseded) = run("skip").await?;
    assert_eq!(outcome, expected());
    // k1: its first two writes. k2: its first, behind its second once the third was refused. k3:
    // none, since its second and third writes were refused in turn.
    assert_eq!(superseded, 3.0, "writes left out");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_writes_write_sends_every_write_and_ends_the_same() -> anyhow::Result<()> {
    let (outcome, superseded) = run("write").await?;
    assert_eq!(outcome, expected());
    assert_eq!(superseded, 0.0, "writes left out");
    Ok(())
}
