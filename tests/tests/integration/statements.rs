//! A sink's statements end to end: a change-data-capture stream (Debezium's envelope: `op` with
//! `before` and `after`) whose `d` records delete and whose tombstones are ignored, deletes of whole
//! partitions among batched rows of a table with clustering columns, and records fanned out to several
//! tables by rules.

use std::time::Duration;

use cassandra_sink_tests::fixtures;
use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;
use scylla::deserialize::row::DeserializeRow;

/// Writes the worker configuration of a scenario with its own statements.
fn configure(scenario: &Scenario, statements: &str) -> anyhow::Result<()> {
    std::fs::write(
        &scenario.config,
        format!(
            r#"sinkId: {sink_id}
cassandra:
  contactPoints: ["{cassandra}"]
  localDatacenter: datacenter1
committer: {{ keyspace: {keyspace}, table: checkpoints }}
source:
  kafka: {{ bootstrapServers: ["{kafka}"], topic: {topic} }}
checkpoint: {{ interval: 100ms }}
{statements}"#,
            sink_id = scenario.sink_id,
            cassandra = scenario.settings.cassandra,
            keyspace = scenario.keyspace,
            kafka = scenario.settings.kafka,
            topic = scenario.topic,
            statements = statements.replace("$KEYSPACE", &scenario.keyspace),
        ),
    )?;
    Ok(())
}

/// Produces `(key, value)` records to partition 0, in order (`None` is a tombstone), then runs a
/// worker until it has committed them all and stops it; returns the worker's `metrics` at the end.
async fn sink_them(
    scenario: &Scenario,
    records: &[(&str, Option<String>)],
    metrics: &[&str],
) -> anyhow::Result<Vec<Option<f64>>> {
    let producer = fixtures::producer(&scenario.settings)?;
    for (key, value) in records {
        match value {
            Some(value) => {
                fixtures::send(&producer, &scenario.topic, 0, key, value.as_bytes()).await?
            }
            None => fixtures::send_tombstone(&producer, &scenario.topic, 0, key).await?,
        }
    }
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    let values = metrics.iter().map(|name| worker.metric(name)).collect();
    assert!(worker.terminate(Duration::from_secs(30)).success());
    Ok(values)
}

/// The rows of `SELECT {columns} FROM <keyspace>.{table}`, sorted.
async fn rows<T>(scenario: &Scenario, columns: &str, table: &str) -> anyhow::Result<Vec<T>>
where
    T: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata> + Ord,
{
    let mut rows: Vec<T> = scenario
        .session
        .query_unpaged(
            format!("SELECT {columns} FROM {}.{table}", scenario.keyspace),
            (),
        )
        .await?
        .into_rows_result()?
        .rows::<T>()?
        .collect::<Result<_, _>>()?;
    rows.sort();
    Ok(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_data_capture_stream_upserts_deletes_and_ignores_tombstones() -> anyhow::Result<()>
{
    let scenario = Scenario::new("cdc", 1, "").await?;
    configure(
        &scenario,
        r#"createQuery: "CREATE TABLE IF NOT EXISTS $KEYSPACE.users (id int PRIMARY KEY, name text, version int)"
insertQuery: "INSERT INTO $KEYSPACE.users (id, name, version) VALUES (:id, :name, :version)"
mapping: { named: { id: value.after.id, name: value.after.name, version: value.after.version } }
delete:
  query: "DELETE FROM $KEYSPACE.users WHERE id = :id"
  mapping: { named: { id: value.before.id } }
  when: { field: value.op, equals: [d] }
onTombstone: ignore
ignoreWhen:
  - { field: value.op, equals: [t, m] }
  - { field: value.ddl }
"#,
    )?;
    let upsert = |op: &str, id: i32, name: &str, version: i32| {
        format!(
            r#"{{"op":"{op}","before":null,"after":{{"id":{id},"name":"{name}","version":{version}}}}}"#
        )
    };
    let delete = |id: i32| format!(r#"{{"op":"d","before":{{"id":{id}}},"after":null}}"#);
    let records = [
        ("1", Some(upsert("r", 1, "ada", 1))),
        ("2", Some(upsert("c", 2, "bob", 1))),
        ("1", Some(upsert("u", 1, "ada lovelace", 2))),
        ("2", Some(delete(2))),
        ("2", None),
        ("3", Some(upsert("c", 3, "cy", 1))),
        ("2", Some(upsert("c", 2, "bob again", 3))),
        ("1", Some(delete(1))),
        ("1", None),
        ("3", Some(upsert("u", 3, "cyd", 2))),
        (
            "3",
            Some(r#"{"op":"t","before":null,"after":null}"#.to_owned()),
        ),
        (
            "3",
            Some(r#"{"ddl":"ALTER TABLE users ADD age int","tableChanges":[]}"#.to_owned()),
        ),
    ];
    let counts = sink_them(
        &scenario,
        &records,
        &[
            "cassandra_sink_records_deleted_total",
            "cassandra_sink_records_skipped_total",
            "cassandra_sink_records_dead_lettered_total",
        ],
    )
    .await?;

    assert_eq!(
        rows::<(i32, String, i32)>(&scenario, "id, name, version", "users").await?,
        vec![(2, "bob again".to_owned(), 3), (3, "cyd".to_owned(), 2)],
        "each row as its last change left it: 1 deleted, 2 deleted and created again"
    );
    assert_eq!(
        counts,
        vec![Some(2.0), Some(4.0), Some(0.0)],
        "two `d` records deleted, two tombstones, a truncate and a schema change ignored, nothing \
         dead-lettered"
    );
    let committed = scenario.committed().await?;
    assert_eq!(committed[&0].0, Some(12), "ignored records are committed");
    assert_eq!(committed[&0].2, Some(12));
    scenario.clean_up().await
}

/// A delete of a whole partition among rows of that partition, all in one checkpoint: rows before the
/// delete are gone, rows after it stay, although rows of one partition travel in batches stamped with
/// their last row's timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_delete_among_batched_rows_removes_exactly_the_rows_before_it()
-> anyhow::Result<()> {
    let scenario = Scenario::new("partdel", 1, "").await?;
    configure(
        &scenario,
        r#"createQuery: "CREATE TABLE IF NOT EXISTS $KEYSPACE.items (owner text, item int, qty int, PRIMARY KEY (owner, item))"
insertQuery: "INSERT INTO $KEYSPACE.items (owner, item, qty) VALUES (?, ?, ?)"
mapping: { fields: [value.owner, value.item, value.qty] }
delete:
  query: "DELETE FROM $KEYSPACE.items WHERE owner = ?"
  mapping: { fields: [value.owner] }
  when: { field: value.op, equals: [clear] }
"#,
    )?;
    let row = |owner: &str, item: i32| format!(r#"{{"owner":"{owner}","item":{item},"qty":1}}"#);
    let clear = |owner: &str| format!(r#"{{"op":"clear","owner":"{owner}"}}"#);
    let mut values = Vec::new();
    values.extend((1..=5).map(|item| row("u1", item)));
    values.extend((1..=3).map(|item| row("u2", item)));
    values.push(clear("u1"));
    values.extend((6..=8).map(|item| row("u1", item)));
    values.push(row("u2", 4));
    values.push(clear("u2"));
    values.push(row("u2", 5));
    let records: Vec<(&str, Option<String>)> =
        values.into_iter().map(|value| ("k", Some(value))).collect();
    let batches = sink_them(&scenario, &records, &["cassandra_sink_batches_total"]).await?[0];
    assert_eq!(
        rows::<(String, i32)>(&scenario, "owner, item", "items").await?,
        vec![
            ("u1".to_owned(), 6),
            ("u1".to_owned(), 7),
            ("u1".to_owned(), 8),
            ("u2".to_owned(), 5),
        ]
    );
    assert!(
        batches.is_some_and(|batches| batches >= 1.0),
        "rows of one partition were batched: {batches:?}"
    );
    scenario.clean_up().await
}

/// One record, several tables: every write also lands in a history table (clustering rows, batched)
/// and, for snapshot reads only (`when`), in a table by name; a delete removes the row and its whole
/// history. A record one of whose statements cannot be filled runs none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanned_out_record_lands_in_every_table_its_rules_choose_or_in_none() -> anyhow::Result<()>
{
    let scenario = Scenario::new("fanout", 1, "").await?;
    for table in [
        "history (id int, version int, name text, PRIMARY KEY (id, version))",
        "by_name (name text PRIMARY KEY, id int)",
    ] {
        scenario
            .session
            .query_unpaged(format!("CREATE TABLE {}.{table}", scenario.keyspace), ())
            .await?;
    }
    scenario.session.await_schema_agreement().await?;
    configure(
        &scenario,
        r#"createQuery: "CREATE TABLE IF NOT EXISTS $KEYSPACE.users (id int PRIMARY KEY, name text, version int)"
insertQuery: "INSERT INTO $KEYSPACE.users (id, name, version) VALUES (?, ?, ?)"
mapping: { fields: [value.after.id, value.after.name, value.after.version] }
delete:
  query: "DELETE FROM $KEYSPACE.users WHERE id = ?"
  mapping: { fields: [value.before.id] }
  when: { field: value.op, equals: [d] }
onTombstone: ignore
fanOut:
  - query: "INSERT INTO $KEYSPACE.history (id, version, name) VALUES (?, ?, ?)"
    mapping: { fields: [value.after.id, value.after.version, value.after.name] }
  - query: "DELETE FROM $KEYSPACE.history WHERE id = ?"
    mapping: { fields: [value.before.id] }
    on: delete
  - query: "INSERT INTO $KEYSPACE.by_name (name, id) VALUES (?, ?)"
    mapping: { fields: [value.after.name, value.after.id] }
    when: { field: value.op, equals: [r] }
"#,
    )?;
    let change = |op: &str, id: i32, name: Option<&str>, version: i32| {
        let name = name.map_or("null".to_owned(), |name| format!("\"{name}\""));
        format!(
            r#"{{"op":"{op}","before":{{"id":{id}}},"after":{{"id":{id},"name":{name},"version":{version}}}}}"#
        )
    };
    let records = [
        ("1", Some(change("r", 1, Some("ada"), 1))),
        ("2", Some(change("c", 2, Some("bob"), 1))),
        ("1", Some(change("u", 1, Some("ada l"), 2))),
        ("2", Some(change("u", 2, Some("bob b"), 2))),
        ("2", Some(change("d", 2, None, 2))),
        ("2", None),
        ("2", Some(change("c", 2, Some("bo"), 3))),
        ("1", Some(change("u", 1, Some("ada m"), 3))),
        // A snapshot row without a name: its by_name row cannot be filled, so it lands nowhere.
        ("5", Some(change("r", 5, None, 1))),
    ];
    let counts = sink_them(
        &scenario,
        &records,
        &[
            "cassandra_sink_records_deleted_total",
            "cassandra_sink_records_dead_lettered_total",
        ],
    )
    .await?;
    assert_eq!(
        rows::<(i32, i32)>(&scenario, "id, version", "users").await?,
        vec![(1, 3), (2, 3)],
        "users: the last change of each id"
    );
    assert_eq!(
        rows::<(i32, i32)>(&scenario, "id, version", "history").await?,
        vec![(1, 1), (1, 2), (1, 3), (2, 3)],
        "history: every write, and for 2 only what came after its delete"
    );
    assert_eq!(
        rows::<(String, i32)>(&scenario, "name, id", "by_name").await?,
        vec![("ada".to_owned(), 1)],
        "by_name: only the snapshot read that could fill it"
    );
    assert_eq!(
        counts,
        vec![Some(1.0), Some(1.0)],
        "one delete, one record dead-lettered"
    );
    scenario.clean_up().await
}
