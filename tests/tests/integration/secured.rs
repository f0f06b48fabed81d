//! Security against real servers: the worker over TLS to Cassandra (CA-verified, host name checked)
//! and SASL_SSL (PLAIN) to Kafka, and refusing a Cassandra whose certificate its CA did not sign. The
//! local Cassandra accepts TLS and plain clients on one port, Kafka has a SASL_SSL listener
//! (`scripts/localenv/tls.sh`).

use std::time::Duration;

use cassandra_sink_tests::env_or;
use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::worker::Worker;

/// Points the scenario's worker at Cassandra over TLS with `ca`, and at Kafka's SASL_SSL listener.
fn secure(scenario: &Scenario, ca: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&scenario.config)?;
    let secured = text
        .replace(
            "localDatacenter: datacenter1",
            &format!("localDatacenter: datacenter1\n  tls: {{ caFile: \"{ca}\" }}"),
        )
        .replace(
            &format!("bootstrapServers: [\"{}\"]", scenario.settings.kafka),
            &format!(
                "bootstrapServers: [\"{}\"], security: {{ protocol: SASL_SSL, sasl: {{ mechanism: \
                 PLAIN, username: {{ env: KAFKA_SASL_USERNAME }}, password: {{ env: \
                 KAFKA_SASL_PASSWORD }} }}, tls: {{ caFile: \"{}\" }} }}",
                env_or("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS", "127.0.0.1:9094"),
                env_or("LOCALENV_TLS_CA", "")
            ),
        );
    anyhow::ensure!(
        secured != text,
        "the scenario's configuration changed shape"
    );
    std::fs::write(&scenario.config, secured)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_over_cassandra_tls_and_kafka_sasl_ssl() -> anyhow::Result<()> {
    let mut scenario = Scenario::new("secured", 2, "checkpoint: { interval: 200ms }\n").await?;
    secure(&scenario, &env_or("LOCALENV_TLS_CA", ""))?;
    scenario.produce(400, 25).await?;
    let worker = Worker::start(&scenario.config, "worker", &[]);
    scenario
        .wait_until_caught_up(Duration::from_secs(60))
        .await?;
    assert!(worker.terminate(Duration::from_secs(30)).success());
    scenario.assert_applied_once("values").await?;
    scenario.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cassandra_certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
    let scenario = Scenario::new("untrusted", 1, "").await?;
    // A CA that did not sign the server's certificate: the API server's.
    let other_ca = std::path::Path::new(&env_or("KUBECONFIG", ""))
        .parent()
        .map(|state| state.join("pki/ca.crt"))
        .unwrap_or_default();
    anyhow::ensure!(other_ca.exists(), "{} is missing", other_ca.display());
    secure(&scenario, &other_ca.display().to_string())?;
    let mut worker = Worker::start(&scenario.config, "worker", &[]);
    let log = worker.wait_for_failure(Duration::from_secs(60));
    assert!(
        log.contains("reason=TlsFailed") && log.to_lowercase().contains("certificate"),
        "{log}"
    );
    scenario.clean_up().await
}

/// A worker configuration on the password-protected node, its password read from `password_file`.
fn password_config(keyspace: &str, topic: &str, password_file: &std::path::Path) -> String {
    format!(
        r#"sinkId: tests/{keyspace}
cassandra:
  contactPoints: ["{node}"]
  localDatacenter: datacenter1
  credentials: {{ username: {{ env: CASSANDRA_AUTH_USERNAME }}, password: {{ file: "{password}" }} }}
createQuery: "CREATE TABLE IF NOT EXISTS {keyspace}.values (id text PRIMARY KEY, counter int);"
insertQuery: "INSERT INTO {keyspace}.values (id, counter) VALUES (?, ?);"
committer: {{ keyspace: {keyspace}, table: checkpoints }}
source: {{ kafka: {{ bootstrapServers: ["{kafka}"], topic: {topic} }} }}
checkpoint: {{ interval: 200ms }}
"#,
        node = env_or("CASSANDRA_AUTH_CONTACT_POINTS", "127.0.0.1:9043"),
        password = password_file.display(),
        kafka = cassandra_sink_tests::Settings::from_env().kafka,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_logs_in_with_a_password_and_a_wrong_one_is_refused() -> anyhow::Result<()> {
    use cassandra_sink_tests::{fixtures, unique_name};

    let settings = cassandra_sink_tests::Settings::from_env();
    let session = fixtures::cassandra_auth().await?;
    let keyspace = unique_name("password");
    fixtures::create_keyspace(&session, &keyspace).await?;
    let topic = keyspace.replace('_', "-");
    fixtures::create_topic(&settings, &topic, 1).await?;
    let producer = fixtures::producer(&settings)?;
    for index in 0..60 {
        let value = format!("[\"id{}\", {index}]", index % 6);
        fixtures::send(&producer, &topic, 0, "k", value.as_bytes()).await?;
    }
    let dir = std::env::temp_dir().join(&keyspace);
    std::fs::create_dir_all(&dir)?;

    // The right password (from a file, the username from the environment): every key's last value.
    let password = dir.join("password");
    std::fs::write(
        &password,
        format!("{}\n", env_or("CASSANDRA_AUTH_PASSWORD", "cassandra")),
    )?;
    let config = dir.join("sink.yaml");
    std::fs::write(&config, password_config(&keyspace, &topic, &password))?;
    let worker = Worker::start(&config, "worker", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let expected: Vec<(String, i32)> = (0..6).map(|id| (format!("id{id}"), 54 + id)).collect();
    loop {
        let mut rows: Vec<(String, i32)> = session
            .query_unpaged(format!("SELECT id, counter FROM {keyspace}.values"), ())
            .await
            .ok()
            .and_then(|result| result.into_rows_result().ok())
            .map(|rows| {
                rows.rows::<(String, i32)>()
                    .map(|rows| rows.filter_map(Result::ok).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        rows.sort();
        if rows == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{rows:?}\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(worker.terminate(Duration::from_secs(30)).success());

    // A wrong password: the worker stops at once (retrying cannot cure it) and says why.
    std::fs::write(&password, "not-the-password\n")?;
    let mut refused = Worker::start(&config, "refused", &[]);
    let log = refused.wait_for_failure(Duration::from_secs(60));
    assert!(
        log.contains("reason=Unauthorized") && log.to_lowercase().contains("password"),
        "{log}"
    );

    fixtures::drop_keyspace(&session, &keyspace).await?;
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}
