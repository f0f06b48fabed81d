//! Several topics per sink: positions kept per topic and partition through kills, a pattern that picks
//! up a topic created later, and the upgrade of committer rows an earlier (one-topic) release left.

use std::time::Duration;

use cassandra_sink_tests::fixtures;
use cassandra_sink_tests::scenario::{RegressionWatch, Scenario};
use cassandra_sink_tests::worker::Worker;
use cassandra_sink_worker::committer::{MOVED, row_key};

/// Two topics with different partition counts (so partition numbers repeat across topics) into one
/// table, with deletes, through SIGKILLs: every id ends as its last record left it, every record is
/// counted once, and each topic's partitions have their own committed positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_topics_with_different_partition_counts_land_exactly_once_through_kills()
-> anyhow::Result<()> {
    let mut scenario = Scenario::several(
        "topicskilled",
        &[3, 2],
        &format!(
            "checkpoint: {{ interval: 200ms, maxRecords: 400 }}\n{}",
            Scenario::DELETE_ON_TOMBSTONE
        ),
    )
    .await?;
    scenario.produce_updates(1200, 30, Some(5)).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let environment = Scenario::worker_env("topicskilled-0");
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (round, pause) in [700u64, 1500, 2300].into_iter().enumerate() {
        let worker = Worker::start(&scenario.config, &format!("worker-{round}"), &environment);
        scenario.produce_updates(300, 30, Some(5)).await?;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        worker.kill();
    }
    let worker = Worker::start(&scenario.config, "worker-final", &environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());
    let regressions = watch.finish().await?;
    assert!(
        regressions.is_empty(),
        "a reader saw rows go back: {regressions:?}"
    );
    scenario.assert_applied_once("values").await?;
    let committed = scenario.committed_by_topic().await?;
    let positions: Vec<(String, i32)> = committed.keys().cloned().collect();
    let expected: Vec<(String, i32)> = scenario
        .topics
        .iter()
        .flat_map(|(topic, partitions)| (0..*partitions).map(move |p| (topic.clone(), p)))
        .collect();
    assert_eq!(positions, expected, "a position per topic and partition");

    // The positions mirror lists them by topic too, under the sink id.
    let mirrored = scenario
        .session
        .query_unpaged(
            format!(
                "SELECT topic, source_partition, committed_offset FROM {}.checkpoints_topic_positions \
                 WHERE sink_id = ?",
                scenario.keyspace
            ),
            (&scenario.sink_id,),
        )
        .await?
        .into_rows_result()?
        .rows::<(String, i32, Option<i64>)>()?
        .collect::<Result<Vec<_>, _>>()?;
    let from_rows: Vec<(String, i32, Option<i64>)> = committed
        .iter()
        .map(|((topic, partition), (offset, _, _))| (topic.clone(), *partition, *offset))
        .collect();
    assert_eq!(mirrored, from_rows);
    scenario.clean_up().await
}

/// A pattern reads every topic whose whole name matches, and a matching topic created while the sink
/// runs; a topic whose name only starts like the pattern is not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_reads_every_matching_topic_and_one_created_later() -> anyhow::Result<()> {
    let mut scenario =
        Scenario::several("topicpattern", &[2, 1], "checkpoint: { interval: 200ms }\n").await?;
    let base = scenario.keyspace.replace('_', "-");
    let listed = format!(
        "topics: [{}]",
        scenario
            .topics
            .iter()
            .map(|(topic, _)| topic.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = std::fs::read_to_string(&scenario.config)?;
    assert!(config.contains(&listed), "{config}");
    std::fs::write(
        &scenario.config,
        config.replace(
            &listed,
            &format!(
                "topicPattern: \"{base}-t[0-9]+\", \
                 properties: {{ topic.metadata.refresh.interval.ms: \"1000\" }}"
            ),
        ),
    )?;
    // Not matched as a whole: never read (its record would be a row the table must not have).
    let outside = format!("{base}-t0-old");
    fixtures::create_topic(&scenario.settings, &outside, 1).await?;
    let producer = fixtures::producer(&scenario.settings)?;
    fixtures::send(&producer, &outside, 0, "x", br#"["outside", 1, 0]"#).await?;

    scenario.produce(400, 20).await?;
    let worker = Worker::start(&scenario.config, "pattern", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    let added = scenario.add_topic(3).await?;
    scenario.produce(600, 20).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    let log = worker.log_text();
    assert!(worker.terminate(Duration::from_secs(30)).success());
    assert!(
        log.contains(&format!("partition claimed partition={added}/2 ")),
        "the new topic's partitions were claimed:\n{log}"
    );
    assert!(!log.contains(&outside), "{outside} was read:\n{log}");
    scenario.assert_applied_once("values").await?;
    scenario.clean_up().await
}

/// The committer rows of the one-topic release, keyed by the bare sink id: the state a release before
/// several topics left after a SIGKILL (committed positions, and pending ranges the kill left).
struct Legacy {
    /// `(partition, epoch, committed offset)` of each row.
    rows: Vec<(i32, i64, Option<i64>)>,
}

/// Rewrites the committer rows of `scenario`'s topic into the layout of the one-topic release: the
/// same columns under the bare sink id (that release's key), the new-layout rows and mirror gone,
/// and its positions mirror, `<table>_positions`, in their place.
async fn to_single_topic_layout(scenario: &Scenario) -> anyhow::Result<Legacy> {
    let session = &scenario.session;
    let keyspace = &scenario.keyspace;
    let key = row_key(&scenario.sink_id, &scenario.topic);
    type Columns = (
        i32,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let mut rows: Vec<Columns> = Vec::new();
    for partition in 0..scenario.partitions {
        let row = session
            .query_unpaged(
                format!(
                    "SELECT source_partition, epoch, owner, committed_offset, pending_start, \
                     pending_end, pending_base, timestamp_ceiling, records_committed \
                     FROM {keyspace}.checkpoints WHERE sink_id = ? AND source_partition = ?"
                ),
                (&key, partition),
            )
            .await?
            .into_rows_result()?
            .maybe_first_row::<Columns>()?;
        rows.extend(row);
    }
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {keyspace}.checkpoints_positions (sink_id text, source_partition int, \
                 topic text, epoch bigint, committed_offset bigint, records_committed bigint, \
                 committed_at timestamp, PRIMARY KEY ((sink_id), source_partition))"
            ),
            (),
        )
        .await?;
    session.await_schema_agreement().await?;
    for (partition, epoch, owner, committed, start, end, base, ceiling, records) in &rows {
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.checkpoints (sink_id, source_partition, topic, epoch, \
                     owner, committed_offset, pending_start, pending_end, pending_base, \
                     timestamp_ceiling, records_committed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (
                    &scenario.sink_id,
                    partition,
                    &scenario.topic,
                    epoch,
                    owner,
                    committed,
                    start,
                    end,
                    base,
                    ceiling,
                    records,
                ),
            )
            .await?;
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.checkpoints_positions (sink_id, source_partition, topic, \
                     epoch, committed_offset, records_committed) VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    &scenario.sink_id,
                    partition,
                    &scenario.topic,
                    epoch,
                    committed,
                    records,
                ),
            )
            .await?;
        session
            .query_unpaged(
                format!(
                    "DELETE FROM {keyspace}.checkpoints WHERE sink_id = ? AND source_partition = ?"
                ),
                (&key, partition),
            )
            .await?;
    }
    session
        .query_unpaged(
            format!("DELETE FROM {keyspace}.checkpoints_topic_positions WHERE sink_id = ?"),
            (&scenario.sink_id,),
        )
        .await?;
    Ok(Legacy {
        rows: rows
            .iter()
            .map(|row| (row.0, row.1.unwrap_or(0), row.3))
            .collect(),
    })
}

/// Produces more, runs this release's worker until it has caught up, and checks that it claimed each
/// partition at the position the one-topic release left (`legacy`: partition, epoch, committed): the
/// moved row's epoch bumped once by the claim, and its committed offset (a pending range, if the kill
/// left one, resumes before it).
async fn continue_after_the_upgrade(
    scenario: &mut Scenario,
    legacy: &[(i32, i64, Option<i64>)],
    environment: &[(&str, &str)],
) -> anyhow::Result<()> {
    scenario.produce(600, 40).await?;
    let worker = Worker::start(&scenario.config, "upgraded", environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    let log = worker.log_text();
    assert!(worker.terminate(Duration::from_secs(30)).success());
    for (partition, epoch, committed) in legacy {
        let claimed = format!(
            "partition claimed partition={}/{partition} epoch={} committed={committed:?}",
            scenario.topic,
            epoch + 2
        );
        assert!(log.contains(&claimed), "expected `{claimed}` in:\n{log}");
    }
    Ok(())
}

/// A sink the one-topic release committed (and was killed in, mid-checkpoint) continues after the
/// upgrade from exactly where that release stood: each partition resumes at its old committed
/// position (or replays its pending range with the same timestamps), an old-release worker still
/// holding a row is fenced, rows never go back, and every record is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_of_the_one_topic_release_continues_exactly_once_after_the_upgrade()
-> anyhow::Result<()> {
    let mut scenario = Scenario::new(
        "upgraded",
        3,
        "checkpoint: { interval: 200ms, maxRecords: 300 }\n",
    )
    .await?;
    scenario.produce(3000, 40).await?;
    let environment = Scenario::worker_env("upgraded-0");
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Worker::start(&scenario.config, "before", &environment);
    // Killed once every partition has committed something, and the stream is not done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let committed = scenario.committed().await.unwrap_or_default();
        if committed.len() == scenario.partitions as usize
            && committed.values().all(|(offset, _, _)| offset.is_some())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no commits: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.kill();
    fixtures::settled_under(
        &scenario.session,
        &scenario.keyspace,
        "checkpoints",
        &row_key(&scenario.sink_id, &scenario.topic),
        scenario.partitions,
    )
    .await?;
    let legacy = to_single_topic_layout(&scenario).await?;
    assert_eq!(legacy.rows.len(), scenario.partitions as usize);
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    continue_after_the_upgrade(&mut scenario, &legacy.rows, &environment).await?;
    // The old rows are fenced: a worker of the old release still holding one commits nothing, and
    // one claiming it anew finds a position past anything Kafka holds (it stops, writing nothing).
    for (partition, epoch, _) in &legacy.rows {
        let (committed, pending) = scenario
            .session
            .query_unpaged(
                format!(
                    "SELECT committed_offset, pending_start FROM {}.checkpoints WHERE sink_id = ? \
                     AND source_partition = ?",
                    scenario.keyspace
                ),
                (&scenario.sink_id, partition),
            )
            .await?
            .into_rows_result()?
            .single_row::<(Option<i64>, Option<i64>)>()?;
        assert_eq!(
            (committed, pending),
            (Some(MOVED), None),
            "partition {partition}"
        );
        let applied = scenario
            .session
            .query_unpaged(
                format!(
                    "UPDATE {}.checkpoints SET committed_offset = 0 WHERE sink_id = ? AND \
                     source_partition = ? IF epoch = ?",
                    scenario.keyspace
                ),
                (&scenario.sink_id, partition, epoch),
            )
            .await?
            .into_rows_result()?
            .first_row::<(bool, Option<i64>)>()?;
        assert_eq!(applied, (false, Some(epoch + 2)), "partition {partition}");
    }
    let regressions = watch.finish().await?;
    assert!(
        regressions.is_empty(),
        "a reader saw rows go back: {regressions:?}"
    );
    scenario.assert_applied_once("values").await?;
    scenario.clean_up().await
}

/// The same upgrade with the real thing: the previous release's worker (one topic per sink, built by
/// scripts/previous-release.sh) commits part of a stream and is killed -9; this release continues from
/// the rows it left, exactly once; and the previous release started again on the moved rows stops
/// without writing anything (as in a rolling upgrade that mixes releases in one consumer group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_release_killed_mid_stream_then_this_one_apply_every_record_once()
-> anyhow::Result<()> {
    let previous = cassandra_sink_tests::worker::previous_release();
    let mut scenario = Scenario::new(
        "prevrelease",
        3,
        "checkpoint: { interval: 200ms, maxRecords: 300 }\n",
    )
    .await?;
    scenario.produce(3000, 40).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let environment = Scenario::worker_env("prevrelease-0");
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let old = Worker::start_binary(&previous, &scenario.config, "previous", &environment);
    // The previous release keys its rows by the sink id alone.
    let legacy_rows = || {
        fixtures::committed_under(
            &scenario.session,
            &scenario.keyspace,
            "checkpoints",
            &scenario.sink_id,
            scenario.partitions,
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let committed = legacy_rows().await.unwrap_or_default();
        if committed.len() == scenario.partitions as usize
            && committed.values().all(|(offset, _, _)| offset.is_some())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the previous release committed nothing: {committed:?}\n{}",
            old.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    old.kill();
    let legacy: Vec<(i32, i64, Option<i64>)> = fixtures::settled_under(
        &scenario.session,
        &scenario.keyspace,
        "checkpoints",
        &scenario.sink_id,
        scenario.partitions,
    )
    .await?
    .into_iter()
    .map(|(partition, (committed, epoch, _))| (partition, epoch, committed))
    .collect();
    continue_after_the_upgrade(&mut scenario, &legacy, &environment).await?;
    scenario.assert_applied_once("values").await?;

    // The previous release again, on the moved rows: it stops, and the table does not change.
    let before = scenario.table().await?;
    let mut again =
        Worker::start_binary(&previous, &scenario.config, "previous-again", &environment);
    let log = again.wait_for_failure(Duration::from_secs(60));
    assert!(log.contains("reason=RangeGone"), "{log}");
    assert_eq!(
        scenario.table().await?,
        before,
        "the previous release wrote"
    );
    let regressions = watch.finish().await?;
    assert!(
        regressions.is_empty(),
        "a reader saw rows go back: {regressions:?}"
    );
    scenario.clean_up().await
}

/// A topic with statements of its own (`topicStatements`) runs them instead of the sink's: one
/// topic's records fill `values`, the other's `mirror`, through a SIGKILL, each exactly once, and
/// neither table gets the other topic's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_topic_runs_its_own_statements_exactly_once() -> anyhow::Result<()> {
    let mut scenario = Scenario::several(
        "topicown",
        &[2, 3],
        "checkpoint: { interval: 200ms, maxRecords: 300 }\n",
    )
    .await?;
    scenario.create_mirror().await?;
    let own = scenario.topics[1].0.clone();
    let mut config = std::fs::read_to_string(&scenario.config)?;
    config.push_str(&format!(
        "topicStatements:\n  {own}:\n    insertQuery: \"INSERT INTO {}.mirror (id, counter, seq) \
         VALUES (?, ?, ?)\"\n",
        scenario.keyspace
    ));
    std::fs::write(&scenario.config, config)?;
    scenario.produce(1200, 30).await?;
    let environment = Scenario::worker_env("topicown-0");
    let environment: Vec<(&str, &str)> =
        environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Worker::start(&scenario.config, "first", &environment);
    scenario.produce(300, 30).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    worker.kill();
    let worker = Worker::start(&scenario.config, "second", &environment);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());

    // Ids of the second topic are `t1-id…` (see Scenario::several).
    let (mirrored, written): (Vec<_>, Vec<_>) = scenario
        .expected
        .clone()
        .into_iter()
        .partition(|(id, _)| id.starts_with("t1-"));
    assert!(!mirrored.is_empty() && !written.is_empty());
    assert_eq!(
        scenario.table().await?,
        written.into_iter().collect(),
        "the sink's own statement"
    );
    assert_eq!(
        scenario.table_named("mirror").await?,
        mirrored.into_iter().collect(),
        "{own}'s own statement"
    );
    let counted: i64 = scenario
        .committed_by_topic()
        .await?
        .values()
        .map(|(_, _, records)| records.unwrap_or(0))
        .sum();
    assert_eq!(counted, scenario.produced);
    scenario.clean_up().await
}
