//! Bad input (design §4): every kind of record that does not fit goes to the dead-letter table with its
//! coordinates and reason, is counted, and the worker keeps going; under `onInvalidRecord: fail` the
//! worker stops with the reason and commits nothing past the bad record.

use std::collections::BTreeMap;
use std::time::Duration;

use cassandra_sink_tests::worker::Worker;

use cassandra_sink_tests::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_invalid_record_is_dead_lettered_with_its_reason() -> anyhow::Result<()> {
    let mut scenario = Scenario::new(
        "badinput",
        1,
        "checkpoint: { interval: 100ms }\nlimits: { maxRecordBytes: 100000 }\n",
    )
    .await?;
    let oversized = format!("[\"big\", 1, 5, \"{}\"]", "x".repeat(150_000));
    let huge_key = format!("[\"{}\", 1, 9]", "k".repeat(70_000));
    scenario
        .produce_raw(&[
            br#"["ok1", 1, 1]"#,
            b"{not json",
            br#"["missing", 1]"#,
            br#"["extra", 1, 2, 3]"#,
            br#"["wrongtype", "seven", 3]"#,
            br#"["range", 3000000000, 4]"#,
            oversized.as_bytes(),
            br#"[null, 1, 6]"#,
            huge_key.as_bytes(),
            br#"["ok2", 2, 7]"#,
        ])
        .await?;
    // Without a delete statement, a tombstone has nothing to write.
    scenario.produce_tombstone("ok1").await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    let dead_lettered = worker.metric("cassandra_sink_records_dead_lettered_total");
    let ready = worker.get("/readyz").map(|(status, _)| status);
    assert!(worker.terminate(Duration::from_secs(30)).success());

    let table = scenario.table().await?;
    assert_eq!(
        table,
        BTreeMap::from([("ok1".to_owned(), (1, 1)), ("ok2".to_owned(), (2, 7))]),
        "only the valid records are written"
    );
    let rows = scenario.dead_letters().await?;
    let kinds: Vec<(i64, &str)> = rows
        .iter()
        .map(|(offset, kind, _, _)| (*offset, kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, "invalid_json"),
            (2, "wrong_field_count"),
            (3, "wrong_field_count"),
            (4, "wrong_type"),
            (5, "wrong_type"),
            (6, "oversized"),
            (7, "missing_field"),
            (8, "rejected_by_cassandra"),
            (10, "tombstone"),
        ]
    );
    let reasons: Vec<&str> = rows
        .iter()
        .map(|(_, _, reason, _)| reason.as_str())
        .collect();
    assert!(reasons[0].contains("not valid JSON"), "{}", reasons[0]);
    assert!(reasons[1].contains("3 elements, got 2"), "{}", reasons[1]);
    assert!(reasons[3].contains("`counter` (int)"), "{}", reasons[3]);
    assert!(reasons[4].contains("out of range"), "{}", reasons[4]);
    assert!(
        reasons[5].contains("over the limit of 100000"),
        "{}",
        reasons[5]
    );
    assert!(reasons[6].contains("primary key"), "{}", reasons[6]);
    assert!(reasons[8].contains("onTombstone"), "{}", reasons[8]);
    assert_eq!(rows[8].3, None, "a tombstone is kept as one");
    assert_eq!(
        rows[0].3.as_deref(),
        Some(&b"{not json"[..]),
        "the record itself is kept"
    );
    assert_eq!(
        dead_lettered,
        Some(9.0),
        "dead-lettered records are counted"
    );
    assert_eq!(
        ready,
        Some(200),
        "invalid records do not make the worker unready"
    );
    let committed = scenario.committed().await?;
    assert_eq!(committed[&0].0, Some(11), "nothing is skipped or held back");
    assert_eq!(committed[&0].2, Some(11));
    scenario.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_invalid_record_fail_stops_with_the_reason_before_the_bad_record() -> anyhow::Result<()>
{
    let mut scenario = Scenario::new(
        "failmode",
        1,
        "onInvalidRecord: fail\ncheckpoint: { interval: 100ms, maxRecords: 1 }\n",
    )
    .await?;
    scenario
        .produce_raw(&[
            br#"["a", 1, 1]"#,
            br#"["b", 2, 2]"#,
            br#"["c", "two", 3]"#,
            br#"["d", 4, 4]"#,
        ])
        .await?;
    let mut worker = Worker::start(&scenario.config, "worker", &[]);
    let log = worker.wait_for_failure(Duration::from_secs(60));
    assert!(
        log.contains(&format!(
            "invalid record at partition {}/0 offset 2",
            scenario.topic
        )) && log.contains("reason=InvalidRecord"),
        "{log}"
    );
    let committed = scenario.committed().await?;
    assert_eq!(
        committed[&0].0,
        Some(2),
        "committed up to, never past, the bad record"
    );
    assert!(!scenario.table().await?.contains_key("d"));
    scenario.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_can_go_to_a_dead_letter_topic_with_their_coordinates() -> anyhow::Result<()>
{
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;

    let scenario_name = "dltopic";
    let mut scenario = Scenario::new(scenario_name, 1, "checkpoint: { interval: 100ms }\n").await?;
    let dead_letters = format!("{}-rejects", scenario.topic);
    cassandra_sink_tests::fixtures::create_topic(&scenario.settings, &dead_letters, 1).await?;
    let mut text = std::fs::read_to_string(&scenario.config)?;
    text.push_str(&format!("deadLetter: {{ topic: {dead_letters} }}\n"));
    std::fs::write(&scenario.config, text)?;
    scenario
        .produce_raw(&[br#"["ok", 1, 1]"#, b"{broken", br#"["ok", 2, 2]"#])
        .await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());
    assert_eq!(scenario.table().await?["ok"], (2, 2));

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &scenario.settings.kafka)
        .set("group.id", &dead_letters)
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&dead_letters])?;
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
    assert_eq!(message.payload(), Some(&b"{broken"[..]));
    let headers: BTreeMap<String, String> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(headers["cassandra-sink.partition"], "0");
    assert_eq!(headers["cassandra-sink.offset"], "1");
    assert_eq!(headers["cassandra-sink.kind"], "invalid_json");
    assert!(headers["cassandra-sink.reason"].contains("not valid JSON"));
    assert_eq!(headers["cassandra-sink.topic"], scenario.topic);
    scenario.clean_up().await
}

/// Consistency levels the keyspaces' replication cannot keep exactly-once: the worker refuses them
/// before it reads a record, naming the setting, the keyspace and why; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_the_replication_cannot_keep_is_refused_at_start() -> anyhow::Result<()> {
    let mut scenario = Scenario::new("unsafecl", 1, "").await?;
    scenario.produce(10, 5).await?;
    // A keyspace with three copies (a single node accepts it; nothing is written to it here).
    let copies = format!("{}_three", scenario.keyspace);
    cassandra_sink_tests::fixtures::create_keyspace_with(
        &scenario.session,
        &copies,
        &[("datacenter1".to_owned(), 3)],
    )
    .await?;
    let original = std::fs::read_to_string(&scenario.config)?;
    let cases = [
        // One acknowledgement of three copies: lost with that node.
        (
            original
                .replace(
                    "localDatacenter: datacenter1",
                    "localDatacenter: datacenter1\n  consistency: ONE",
                )
                .replace(
                    &format!("{}.values", scenario.keyspace),
                    &format!("{copies}.values"),
                ),
            vec!["cassandra.consistency ONE", &copies, "3 copies"],
        ),
        // More acknowledgements than the one copy there is.
        (
            original.replace(
                "localDatacenter: datacenter1",
                "localDatacenter: datacenter1\n  consistency: THREE",
            ),
            vec!["cassandra.consistency THREE", "needs 3", &scenario.keyspace],
        ),
    ];
    for (config, words) in cases {
        std::fs::write(&scenario.config, config)?;
        let mut worker = Worker::start(&scenario.config, "worker", &[]);
        let log = worker.wait_for_failure(Duration::from_secs(60));
        assert!(log.contains("reason=UnsafeConsistency"), "{log}");
        for word in words {
            assert!(log.contains(word), "`{word}` not in:\n{log}");
        }
    }
    assert!(scenario.table().await.unwrap_or_default().is_empty());
    cassandra_sink_tests::fixtures::drop_keyspace(&scenario.session, &copies).await?;
    scenario.clean_up().await
}
