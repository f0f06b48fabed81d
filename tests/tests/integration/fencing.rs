//! P3: a worker that lost a partition can never commit for it again and cannot make the table regress.

use std::sync::Arc;
use std::time::Duration;

use cassandra_sink_tests::worker::Worker;
use cassandra_sink_worker::checkpoint::{Pending, SourcePartition, next_base, now_micros};
use cassandra_sink_worker::committer::{self, Committer, CommitterError};
use scylla::statement::Consistency;

use cassandra_sink_tests::scenario::{RegressionWatch, Scenario};

#[tokio::test]
async fn a_fenced_owner_can_neither_record_nor_commit_and_its_late_writes_lose()
-> anyhow::Result<()> {
    let scenario = Scenario::new("fence", 1, "").await?;
    let session = Arc::new(cassandra_sink_tests::fixtures::cassandra(&scenario.settings).await?);
    for cql in committer::schema(&scenario.keyspace, "checkpoints") {
        session.query_unpaged(cql, ()).await?;
    }
    session.await_schema_agreement().await?;
    let committer = |owner: &'static str| {
        let session = session.clone();
        let keyspace = scenario.keyspace.clone();
        let sink = scenario.sink_id.clone();
        async move {
            Committer::new(
                session,
                &keyspace,
                "checkpoints",
                &sink,
                owner,
                Consistency::LocalQuorum,
                scylla::statement::SerialConsistency::LocalSerial,
            )
            .await
        }
    };
    let old = committer("old").await?;
    let new = committer("new").await?;
    let partition = SourcePartition::new(scenario.topic.as_str(), 0);

    let first = old.claim(&partition).await?;
    assert_eq!(first.epoch, 1);
    let old_range = Pending {
        start: 0,
        end: 10,
        base_timestamp: next_base(first.ceiling, now_micros()),
    };
    old.record_pending(&partition, first.epoch, 0, &old_range)
        .await?;

    // Another worker takes the partition (a rebalance, or Kubernetes replacing a pod it thinks dead).
    let second = new.claim(&partition).await?;
    assert_eq!(second.epoch, 2);
    assert_eq!(
        second.pending,
        Some(old_range),
        "the new owner sees the pending range"
    );
    assert!(
        second.ceiling >= old_range.ceiling(),
        "and the timestamps the old owner may use"
    );

    let late = Pending {
        start: 10,
        end: 20,
        base_timestamp: old_range.ceiling() + 1,
    };
    match old.record_pending(&partition, first.epoch, 0, &late).await {
        Err(CommitterError::Fenced {
            partition: fenced,
            ours: 1,
            current: Some(2),
        }) if fenced == partition => {}
        other => {
            panic!("the old owner recorded a pending range after losing the partition: {other:?}")
        }
    }
    match old.commit(&partition, first.epoch, 0, 10, 10, 0).await {
        Err(CommitterError::Fenced { .. }) => {}
        other => panic!("the old owner committed after losing the partition: {other:?}"),
    }

    // Every timestamp the new owner uses is above every timestamp the old one may still write with,
    // so a zombie's late write loses in Cassandra whatever order they arrive in.
    let new_range = Pending {
        start: 0,
        end: 10,
        base_timestamp: next_base(second.ceiling, 0),
    };
    assert!(new_range.base_timestamp > old_range.ceiling());
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {}.cells (id text PRIMARY KEY, v text)",
                scenario.keyspace
            ),
            (),
        )
        .await?;
    session.await_schema_agreement().await?;
    let insert = format!(
        "INSERT INTO {}.cells (id, v) VALUES ('k', ?) USING TIMESTAMP ?",
        scenario.keyspace
    );
    session
        .query_unpaged(insert.as_str(), ("new", new_range.timestamp_of(0)))
        .await?;
    session
        .query_unpaged(insert.as_str(), ("zombie", old_range.timestamp_of(9)))
        .await?;
    let (value,) = session
        .query_unpaged(
            format!("SELECT v FROM {}.cells WHERE id = 'k'", scenario.keyspace),
            (),
        )
        .await?
        .into_rows_result()?
        .single_row::<(String,)>()?;
    assert_eq!(value, "new");

    new.record_pending(&partition, second.epoch, 0, &new_range)
        .await?;
    new.commit(&partition, second.epoch, 0, 10, 10, 0).await?;
    let positions = new.positions().await?;
    assert_eq!(positions.len(), 1);
    assert_eq!((positions[0].committed, positions[0].epoch), (Some(10), 2));

    // The same commit again (a retry, or a second copy sent to another replica) finds its own count
    // there: success, nothing changes.
    new.commit(&partition, second.epoch, 0, 10, 10, 0).await?;
    // A late copy of an earlier transaction of the same owner, delivered after later ones (a frozen
    // coordinator that wakes up), applies nothing: the committed offset and the ceiling stay.
    let earlier = Pending {
        start: 0,
        end: 4,
        base_timestamp: 1,
    };
    assert!(
        new.record_pending(&partition, second.epoch, 0, &earlier)
            .await
            .is_err(),
        "a late pending record applied"
    );
    assert!(
        new.commit(&partition, second.epoch, 0, 4, 4, 0)
            .await
            .is_err(),
        "a late commit applied"
    );
    let after = new.claim(&partition).await?;
    assert_eq!(
        (after.committed, after.pending, after.records_committed),
        (Some(10), None, 10),
        "a late transaction changed the row"
    );
    assert!(after.ceiling >= new_range.ceiling());

    // Resetting a position fences whoever runs the partition.
    new.reset(&partition, 5).await?;
    assert!(matches!(
        new.commit(&partition, after.epoch, 10, 20, 20, 0).await,
        Err(CommitterError::Fenced { .. })
    ));
    assert_eq!(new.positions().await?[0].committed, Some(5));
    scenario.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_that_wakes_after_losing_its_partition_changes_nothing()
-> anyhow::Result<()> {
    zombie_wakes("zombie", "", None).await
}

/// The same with deletes and a fan-out table: a zombie's late writes cannot bring back a row its
/// successor deleted, and its late deletes cannot remove a row its successor wrote, in either table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_neither_resurrects_deleted_rows_nor_deletes_newer_ones() -> anyhow::Result<()> {
    let extra = format!(
        "{}{}",
        Scenario::DELETE_ON_TOMBSTONE,
        Scenario::FAN_OUT_TO_MIRROR
    );
    zombie_wakes("zombiedel", &extra, Some(3)).await
}

async fn zombie_wakes(name: &str, extra: &str, delete_every: Option<i32>) -> anyhow::Result<()> {
    let mut scenario = Scenario::new(
        name,
        1,
        &format!("checkpoint: {{ interval: 100ms, maxRecords: 100 }}\n{extra}"),
    )
    .await?;
    if extra.contains("mirror") {
        scenario.create_mirror().await?;
    }
    scenario.produce_updates(800, 20, delete_every).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let env_a = Scenario::worker_env(&format!("{name}-a"));
    let env_b = Scenario::worker_env(&format!("{name}-b"));
    let env_a: Vec<(&str, &str)> = env_a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env_b: Vec<(&str, &str)> = env_b.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let zombie = Worker::start(&scenario.config, "worker-a", &env_a);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    // More records, and freeze A while it works on them: a pod that Kubernetes thinks is gone.
    scenario.produce_updates(400, 20, delete_every).await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    zombie.freeze();
    let successor = Worker::start(&scenario.config, "worker-b", &env_b);
    scenario.produce_updates(400, 20, delete_every).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    let epoch_b = scenario.committed().await?[&0].1;
    assert!(epoch_b >= 2, "B claimed the partition after A");

    // A wakes up with its old epoch and a checkpoint in hand.
    zombie.thaw();
    tokio::time::sleep(Duration::from_secs(3)).await;
    scenario.produce_updates(200, 20, delete_every).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    let log_a = zombie.log_text();
    assert!(successor.terminate(Duration::from_secs(30)).success());
    let _ = zombie.terminate(Duration::from_secs(30));
    let regressions = watch.finish().await?;
    assert!(
        regressions.is_empty(),
        "the table went back: {regressions:?}\nA's log:\n{log_a}"
    );
    assert_eq!(scenario.table().await?, scenario.expected);
    if extra.contains("mirror") {
        assert_eq!(scenario.table_named("mirror").await?, scenario.expected);
    }
    let committed = scenario.committed().await?;
    assert_eq!(
        committed[&0].2,
        Some(scenario.produced),
        "every record counted once: {committed:?}"
    );
    scenario.clean_up().await
}
