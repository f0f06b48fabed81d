//! Avro records in the Confluent wire format, with their schemas in a real schema registry (Apicurio
//! Registry's Confluent-compatible API, started by `scripts/localenv.sh up`): decoded into the same
//! field paths as JSON, a schema that gained a field read with the field's default, tombstones
//! deleting, and records that are not Avro, or name a schema the registry lacks, dead-lettered with
//! the reason.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::{Record, Value};
use cassandra_sink_tests::fixtures;
use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

const V1: &str = r#"{"type":"record","name":"User","namespace":"shop","fields":[
  {"name":"id","type":"long"},
  {"name":"name","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"User","namespace":"shop","fields":[
  {"name":"id","type":"long"},
  {"name":"name","type":"string"},
  {"name":"email","type":"string","default":"unknown"}]}"#;

/// The registry's Confluent-compatible API.
fn registry_url() -> String {
    cassandra_sink_tests::env_or(
        "SCHEMA_REGISTRY_URL",
        "http://127.0.0.1:18081/apis/ccompat/v7",
    )
}

/// Registers `schema` under `subject` as a producer's serializer does; returns its id. Asked again
/// when it fails: two tests registering the same schema at once can both try to store its content,
/// and the registry refuses the second (a unique-index violation in its storage) until the first is in.
fn register(subject: &str, schema: &str) -> anyhow::Result<u32> {
    let body = serde_json::json!({ "schema": schema }).to_string();
    let mut failures = Vec::new();
    for _ in 0..5 {
        let output = Command::new("curl")
            .args(["-fsS", "-X", "POST", "-H"])
            .arg("Content-Type: application/vnd.schemaregistry.v1+json")
            .arg("--data-binary")
            .arg(&body)
            .arg(format!("{}/subjects/{subject}/versions", registry_url()))
            .output()?;
        if output.status.success() {
            let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            return answer["id"]
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| anyhow::anyhow!("no id in the registry's answer: {answer}"));
        }
        failures.push(String::from_utf8_lossy(&output.stderr).into_owned());
        std::thread::sleep(Duration::from_millis(300));
    }
    anyhow::bail!("registering {subject}: {failures:?}")
}

/// Writes the worker configuration: Avro values (and keys when `avro_keys`) from `registry` (with
/// `reader`, e.g. `readerSchema: latest`) into `users (id, name)`, and `email` too when `with_email`,
/// then `more` YAML (`$KEYSPACE` stands for the scenario's keyspace).
fn configure(
    scenario: &Scenario,
    registry: &str,
    reader: &str,
    with_email: bool,
    avro_keys: bool,
    more: &str,
) -> anyhow::Result<()> {
    let key_format = if avro_keys { "avro" } else { "json" };
    let (column, names, marker, field) = if with_email {
        (", email text", ", email", ", ?", ", value.email")
    } else {
        ("", "", "", "")
    };
    std::fs::write(
        &scenario.config,
        format!(
            r#"sinkId: {sink_id}
cassandra:
  contactPoints: ["{cassandra}"]
  localDatacenter: datacenter1
committer: {{ keyspace: {keyspace}, table: checkpoints }}
source:
  kafka:
    bootstrapServers: ["{kafka}"]
    topic: {topic}
    valueFormat: avro
    keyFormat: {key_format}
    schemaRegistry: {{ url: "{registry}", {reader} }}
checkpoint: {{ interval: 100ms }}
createQuery: CREATE TABLE IF NOT EXISTS {keyspace}.users (id bigint PRIMARY KEY, name text{column})
insertQuery: INSERT INTO {keyspace}.users (id, name{names}) VALUES (?, ?{marker})
mapping: {{ fields: [value.id, value.name{field}] }}{more}
"#,
            sink_id = scenario.sink_id,
            cassandra = scenario.settings.cassandra,
            keyspace = scenario.keyspace,
            kafka = scenario.settings.kafka,
            topic = scenario.topic,
            more = more.replace("$KEYSPACE", &scenario.keyspace),
        ),
    )?;
    Ok(())
}

/// Runs a worker until it has committed everything produced, then reads `users (id, name)`.
async fn sink_and_read(scenario: &Scenario) -> anyhow::Result<Vec<(i64, String)>> {
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());
    let mut rows: Vec<(i64, String)> = scenario
        .session
        .query_unpaged(
            format!("SELECT id, name FROM {}.users", scenario.keyspace),
            (),
        )
        .await?
        .into_rows_result()?
        .rows::<(i64, String)>()?
        .collect::<Result<_, _>>()?;
    rows.sort();
    Ok(rows)
}

/// One record in the Confluent wire format.
fn framed(id: u32, schema: &str, fields: &[(&str, Value)]) -> anyhow::Result<Vec<u8>> {
    let schema = Schema::parse_str(schema)?;
    let mut record = Record::new(&schema).ok_or_else(|| anyhow::anyhow!("not a record schema"))?;
    for (name, value) in fields {
        record.put(name, value.clone());
    }
    let mut bytes = vec![0u8];
    bytes.extend(id.to_be_bytes());
    bytes.extend(apache_avro::to_avro_datum(&schema, record)?);
    Ok(bytes)
}

#[tokio::test]
async fn avro_records_land_once_read_into_the_newest_schema_and_bad_ones_are_dead_lettered()
-> anyhow::Result<()> {
    let scenario = Scenario::new("avro", 1, "").await?;
    let subject = format!("{}-value", scenario.topic);
    let v1 = register(&subject, V1)?;
    let v2 = register(&subject, V2)?;
    assert_ne!(v1, v2, "a new version gets a new id");

    configure(
        &scenario,
        &registry_url(),
        "readerSchema: latest",
        true,
        false,
        "\ndelete: { query: \"DELETE FROM $KEYSPACE.users WHERE id = ?\", mapping: { fields: [key] } }\n\
         onInvalidRecord: dead-letter",
    )?;

    let user = |id: i64, name: &str| {
        vec![
            ("id", Value::Long(id)),
            ("name", Value::String(name.into())),
        ]
    };
    let with_email = |id: i64, name: &str, email: &str| {
        let mut fields = user(id, name);
        fields.push(("email", Value::String(email.into())));
        fields
    };
    let producer = fixtures::producer(&scenario.settings)?;
    let topic = &scenario.topic;
    // Written before the field was added, and after; an update, a delete, and two records that are
    // not Avro the registry can read.
    fixtures::send(&producer, topic, 0, "1", &framed(v1, V1, &user(1, "ada"))?).await?;
    fixtures::send(&producer, topic, 0, "2", &framed(v1, V1, &user(2, "bob"))?).await?;
    fixtures::send(&producer, topic, 0, "3", &framed(v1, V1, &user(3, "cy"))?).await?;
    fixtures::send(
        &producer,
        topic,
        0,
        "4",
        &framed(v2, V2, &with_email(4, "dee", "d@x"))?,
    )
    .await?;
    fixtures::send(
        &producer,
        topic,
        0,
        "1",
        &framed(v2, V2, &with_email(1, "ada", "a@x"))?,
    )
    .await?;
    fixtures::send_tombstone(&producer, topic, 0, "2").await?;
    fixtures::send(&producer, topic, 0, "5", br#"{"id":5,"name":"json"}"#).await?;
    fixtures::send(
        &producer,
        topic,
        0,
        "6",
        &framed(999_999, V1, &user(6, "ghost"))?,
    )
    .await?;

    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    let dead_lettered = worker.metric("cassandra_sink_records_dead_lettered_total");
    assert!(worker.terminate(Duration::from_secs(30)).success());

    let rows: BTreeMap<i64, (String, Option<String>)> = scenario
        .session
        .query_unpaged(
            format!("SELECT id, name, email FROM {}.users", scenario.keyspace),
            (),
        )
        .await?
        .into_rows_result()?
        .rows::<(i64, String, Option<String>)>()?
        .map(|row| row.map(|(id, name, email)| (id, (name, email))))
        .collect::<Result<_, _>>()?;
    let expected = BTreeMap::from([
        (1, ("ada".to_owned(), Some("a@x".to_owned()))),
        // Written with v1, read into v2: the added field's default.
        (3, ("cy".to_owned(), Some("unknown".to_owned()))),
        (4, ("dee".to_owned(), Some("d@x".to_owned()))),
    ]);
    assert_eq!(
        rows, expected,
        "row 2 deleted by its tombstone, 5 and 6 dead-lettered"
    );
    assert_eq!(dead_lettered, Some(2.0));

    let dead: Vec<(i64, String, String)> = scenario
        .dead_letters()
        .await?
        .into_iter()
        .map(|(offset, kind, reason, _)| (offset, kind, reason))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!((dead[0].0, dead[0].1.as_str()), (6, "invalid_avro"));
    assert!(dead[0].2.contains("first byte is 123"), "{dead:?}");
    assert_eq!((dead[1].0, dead[1].1.as_str()), (7, "invalid_avro"));
    assert!(
        dead[1]
            .2
            .contains("schema id 999999: the registry has no schema with this id"),
        "{dead:?}"
    );
    scenario.clean_up().await
}

#[tokio::test]
async fn a_worker_started_before_its_registry_waits_for_it_and_then_reads() -> anyhow::Result<()> {
    let scenario = Scenario::new("avro_wait", 1, "").await?;
    let subject = format!("{}-value", scenario.topic);
    let id = register(&subject, V1)?;
    // A port nothing listens on stands for a registry still starting: the worker must neither exit
    // nor read a record until the registry answers.
    let absent = format!(
        "http://127.0.0.1:{}",
        cassandra_sink_tests::worker::free_port()
    );
    let config = |registry: &str| configure(&scenario, registry, "", false, false, "");
    config(&absent)?;
    let producer = fixtures::producer(&scenario.settings)?;
    fixtures::send(
        &producer,
        &scenario.topic,
        0,
        "1",
        &framed(
            id,
            V1,
            &[
                ("id", Value::Long(1)),
                ("name", Value::String("ada".into())),
            ],
        )?,
    )
    .await?;
    let mut waiting = Worker::start(&scenario.config, "waiting", &[]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        waiting.wait(Duration::from_millis(10)),
        None,
        "the worker waits, it does not exit"
    );
    assert!(
        waiting
            .log_text()
            .contains("schema registry unavailable; retrying"),
        "{}",
        waiting.log_text()
    );
    waiting.kill();

    config(&registry_url())?;
    let rows = sink_and_read(&scenario).await?;
    assert_eq!(rows, vec![(1, "ada".to_owned())]);
    scenario.clean_up().await
}

#[tokio::test]
async fn an_avro_key_fills_its_column_whole_and_its_tombstone_deletes() -> anyhow::Result<()> {
    use rdkafka::producer::FutureRecord;

    let scenario = Scenario::new("avro_key", 1, "").await?;
    let key_id = register(&format!("{}-key", scenario.topic), r#""long""#)?;
    let value_id = register(&format!("{}-value", scenario.topic), V1)?;
    configure(
        &scenario,
        &registry_url(),
        "",
        false,
        true,
        "\ndelete: { query: \"DELETE FROM $KEYSPACE.users WHERE id = ?\", mapping: { fields: [key] } }",
    )?;
    let key = |id: i64| -> anyhow::Result<Vec<u8>> {
        let mut bytes = vec![0u8];
        bytes.extend(key_id.to_be_bytes());
        bytes.extend(apache_avro::to_avro_datum(
            &Schema::parse_str(r#""long""#)?,
            Value::Long(id),
        )?);
        Ok(bytes)
    };
    let producer = fixtures::producer(&scenario.settings)?;
    let user = |id: i64, name: &str| {
        vec![
            ("id", Value::Long(id)),
            ("name", Value::String(name.into())),
        ]
    };
    for (id, value) in [
        (1, Some(framed(value_id, V1, &user(1, "ada"))?)),
        (2, Some(framed(value_id, V1, &user(2, "bob"))?)),
        (2, None),
    ] {
        let key = key(id)?;
        let record = FutureRecord::<[u8], [u8]>::to(&scenario.topic)
            .partition(0)
            .key(&key);
        let record = match &value {
            Some(value) => record.payload(value),
            None => record,
        };
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("producing: {error}"))?;
    }
    let rows = sink_and_read(&scenario).await?;
    assert_eq!(
        rows,
        vec![(1, "ada".to_owned())],
        "user 2 deleted by the tombstone of its Avro key"
    );
    scenario.clean_up().await
}
