//! P5: statements that cannot be exactly-once in Cassandra are refused under `guarantee: exactly-once`
//! with the reason, and accepted under `at-least-once`, which then runs them.

use std::process::Command;
use std::time::Duration;

use cassandra_sink_tests::worker::{Worker, binary};

use cassandra_sink_tests::scenario::Scenario;

fn check(config: &std::path::Path) -> (bool, String) {
    let output = Command::new(binary())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run the worker binary");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn each_non_idempotent_statement_is_refused_with_its_reason() {
    let dir = std::env::temp_dir().join(cassandra_sink_tests::unique_name("p5"));
    std::fs::create_dir_all(&dir).expect("folder");
    let cases = [
        ("UPDATE ks.hits SET n = n + ? WHERE id = ?", "increments"),
        (
            "UPDATE ks.t SET events = events + ['x'] WHERE id = ?",
            "appending or prepending to list `events`",
        ),
        (
            "UPDATE ks.t SET events = ? + events WHERE id = ?",
            "appending or prepending",
        ),
        (
            "INSERT INTO ks.t (id, at) VALUES (?, now())",
            "`now()` is evaluated by the server",
        ),
        ("INSERT INTO ks.t (id, u) VALUES (?, uuid())", "`uuid()`"),
        (
            "INSERT INTO ks.t (id, v) VALUES (?, ?) USING TIMESTAMP 5",
            "`USING TIMESTAMP`",
        ),
        (
            "INSERT INTO ks.t (id, v) VALUES (?, ?) IF NOT EXISTS",
            "conditional",
        ),
    ];
    for (statement, reason) in cases {
        let config = dir.join("sink.yaml");
        let base = format!(
            "sinkId: t/p5\ncassandra: {{ contactPoints: [\"127.0.0.1:9042\"] }}\n\
             insertQuery: \"{statement}\"\ncommitter: {{ keyspace: ks, table: checkpoints }}\n\
             source: {{ kafka: {{ bootstrapServers: [\"127.0.0.1:9092\"], topic: t }} }}\n"
        );
        std::fs::write(&config, &base).expect("config");
        let (accepted, message) = check(&config);
        assert!(!accepted, "exactly-once accepted {statement}");
        assert!(
            message.contains("cannot be applied exactly once") && message.contains(reason),
            "{statement}: {message}"
        );
        std::fs::write(&config, format!("{base}guarantee: at-least-once\n")).expect("config");
        let (accepted, message) = check(&config);
        assert!(accepted, "at-least-once refused {statement}: {message}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_runs_a_counter_update_that_exactly_once_refuses() -> anyhow::Result<()> {
    let mut scenario = Scenario::new("counter", 1, "checkpoint: { interval: 100ms }\n").await?;
    let keyspace = scenario.keyspace.clone();
    let counter_config = |guarantee: &str| {
        format!(
            "sinkId: {sink}\ncassandra: {{ contactPoints: [\"{cassandra}\"] }}\n\
             createQuery: \"CREATE TABLE IF NOT EXISTS {keyspace}.hits (id text PRIMARY KEY, n counter)\"\n\
             insertQuery: \"UPDATE {keyspace}.hits SET n = n + ? WHERE id = ?\"\n\
             committer: {{ keyspace: {keyspace}, table: checkpoints }}\n\
             source: {{ kafka: {{ bootstrapServers: [\"{kafka}\"], topic: {topic} }} }}\n\
             checkpoint: {{ interval: 100ms }}\nguarantee: {guarantee}\n",
            sink = scenario.sink_id,
            cassandra = scenario.settings.cassandra,
            kafka = scenario.settings.kafka,
            topic = scenario.topic,
        )
    };
    let exactly_once = counter_config("exactly-once");
    let at_least_once = counter_config("at-least-once");
    std::fs::write(&scenario.config, exactly_once)?;
    let mut refused = Worker::start(&scenario.config, "refused", &[]);
    let log = refused.wait_for_failure(Duration::from_secs(30));
    assert!(log.contains("reason=NotExactlyOnce"), "{log}");

    for index in 0..50 {
        let value = format!("[1, \"id{}\"]", index % 5);
        scenario.produce_raw(&[value.as_bytes()]).await?;
    }
    std::fs::write(&scenario.config, at_least_once)?;
    let worker = Worker::start(&scenario.config, "counting", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());
    let counts = scenario
        .session
        .query_unpaged(format!("SELECT id, n FROM {keyspace}.hits"), ())
        .await?
        .into_rows_result()?
        .rows::<(String, scylla::value::Counter)>()?
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(counts.len(), 5);
    assert!(counts.iter().all(|(_, n)| n.0 == 10), "{counts:?}");
    scenario.clean_up().await
}

/// The shapes of INSERT a person gets wrong, each refused offline by `check` with `InvalidStatement`
/// and the part it could not read; a backtrace never follows the message, whatever RUST_BACKTRACE says.
#[test]
fn check_refuses_each_malformed_statement_naming_what_it_could_not_read() {
    let dir = std::env::temp_dir().join(cassandra_sink_tests::unique_name("shape"));
    std::fs::create_dir_all(&dir).expect("folder");
    let cases = [
        (
            "INSERT INTO ks.values (id, counter) VALUES (?, ?",
            "closing the VALUES list",
        ),
        (
            "INSERT INTO ks.values (id counter) VALUES (?, ?)",
            "found `counter",
        ),
        (
            "INSERT INTO ks.values (id, counter) VALUES (?)",
            "2 values, one per column",
        ),
        (
            "INSERT INTO ks.values (id, counter) VALUES (?, ?) garbage",
            "found `garbage`",
        ),
        (
            "INSERT INTO ks.values (id, counter) VALUS (?, ?)",
            "found `VALUS",
        ),
        ("INSERT INTO (id, counter) VALUES (?, ?)", "a table name"),
        (
            "INSERT ks.values (id, counter) VALUES (?, ?)",
            "INTO after INSERT",
        ),
        (
            "INSERT INTO ks.values (id, counter) VALUES ?, ?",
            "opening the VALUES list",
        ),
        (
            "INSERT INTO ks.values VALUES (?, ?)",
            "opening the column list",
        ),
    ];
    for (statement, part) in cases {
        let config = dir.join("sink.yaml");
        std::fs::write(
            &config,
            format!(
                "sinkId: t/shape\ncassandra: {{ contactPoints: [\"127.0.0.1:9042\"] }}\n\
                 insertQuery: \"{statement}\"\ncommitter: {{ keyspace: ks, table: checkpoints }}\n\
                 source: {{ kafka: {{ bootstrapServers: [\"127.0.0.1:9092\"], topic: t }} }}\n"
            ),
        )
        .expect("config");
        let output = Command::new(binary())
            .args(["check", "--config"])
            .arg(&config)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run the worker binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{statement} was accepted");
        assert!(
            stderr.contains("reason=InvalidStatement") && stderr.contains(part),
            "{statement}: {stderr}"
        );
        assert!(
            !stderr.contains("backtrace") && !stderr.contains("  0: "),
            "{statement}: a backtrace follows the message:\n{stderr}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
