//! Cassandra is real: a CQL round trip through the scylla driver the worker uses.

use cassandra_sink_tests::fixtures::{cassandra, create_keyspace};
use cassandra_sink_tests::{Settings, unique_name};

#[tokio::test]
async fn cql_round_trip_through_the_scylla_driver() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let session = cassandra(&settings).await?;
    let keyspace = unique_name("smoke");
    create_keyspace(&session, &keyspace).await?;
    session
        .query_unpaged(
            format!("CREATE TABLE {keyspace}.values (id text PRIMARY KEY, counter int)"),
            (),
        )
        .await?;
    session.await_schema_agreement().await?;

    let insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.values (id, counter) VALUES (?, ?)"
        ))
        .await?;
    for (id, counter) in [("a", 1_i32), ("b", 2), ("a", 3)] {
        session.execute_unpaged(&insert, (id, counter)).await?;
    }

    let mut rows = session
        .query_unpaged(format!("SELECT id, counter FROM {keyspace}.values"), ())
        .await?
        .into_rows_result()?
        .rows::<(String, i32)>()?
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort();
    assert_eq!(rows, vec![("a".to_owned(), 3), ("b".to_owned(), 2)]);

    // The server is a real Cassandra 5.0, not something that merely speaks the protocol.
    let (version,) = session
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await?
        .into_rows_result()?
        .single_row::<(String,)>()?;
    assert!(version.starts_with("5.0"), "release_version is {version}");

    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await?;
    Ok(())
}
