//! Two datacenters: dc1 with three nodes, where the worker runs (`localDatacenter: dc1`), and dc2
//! with one, replicated to but never written through.

use std::time::Duration;

use cassandra_sink_tests::scenario::RegressionWatch;
use cassandra_sink_tests::worker::Worker;
use cassandra_sink_tests::{ClusterLayout, Settings};
use scylla::statement::Consistency;

use crate::{ONE_AT_A_TIME, finish, goes_on_without, on_node, scenario};

/// Writes to `keyspace.table` that node `n` coordinated, from Cassandra's own per-node metrics
/// (`system_views.coordinator_write_latency`, the table behind `nodetool tablestats`' coordinator
/// figures): 0 when it coordinated none.
async fn coordinated_writes(
    session: &scylla::client::session::Session,
    n: u32,
    keyspace: &str,
    table: &str,
) -> anyhow::Result<i64> {
    let statement = on_node(
        "SELECT count FROM system_views.coordinator_write_latency WHERE keyspace_name = ? \
         AND table_name = ?",
        n,
        Consistency::One,
    );
    Ok(session
        .query_unpaged(statement, (keyspace, table))
        .await?
        .into_rows_result()?
        .maybe_first_row::<(i64,)>()?
        .map_or(0, |(count,)| count))
}

/// Every write and commit goes through dc1's nodes, none through dc2's (whose node holds a copy of
/// everything); with dc2 down the sink goes on; everything lands once and nothing goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_goes_to_the_local_datacenter_and_the_remote_one_may_be_down()
-> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let settings = Settings {
        cluster: Some(ClusterLayout {
            datacenter: "dc1".to_owned(),
            keyspace_copies: vec![("dc1".to_owned(), 3), ("dc2".to_owned(), 1)],
            topic_copies: 3,
        }),
        ..Settings::cluster()
    };
    let mut scenario = scenario(settings, "twodcs", 3).await?;
    scenario.produce(1500, 40).await?;
    let watch = RegressionWatch::start(&scenario.settings, &scenario.keyspace).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(90))
        .await?;
    let keyspace = scenario.keyspace.clone();
    let mut local = 0;
    for n in 1..=3 {
        local += coordinated_writes(&scenario.session, n, &keyspace, "values").await?;
    }
    assert!(
        local > 0,
        "dc1 coordinated no write: the metric is not read"
    );
    for table in ["values", "checkpoints"] {
        assert_eq!(
            coordinated_writes(&scenario.session, 4, &keyspace, table).await?,
            0,
            "dc2's node coordinated writes to {table}"
        );
    }
    goes_on_without(&mut scenario, &worker, &["cluster-cassandra-4"]).await?;
    finish(scenario, worker, watch).await
}
