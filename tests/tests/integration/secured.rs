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
    assert_eq!(scenario.table().await?, scenario.expected);
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
    let status = worker
        .wait(Duration::from_secs(60))
        .expect("the worker gives up on an untrusted Cassandra");
    assert!(!status.success());
    let log = worker.log_text();
    assert!(
        log.contains("CassandraUnreachable") && log.to_lowercase().contains("certificate"),
        "{log}"
    );
    scenario.clean_up().await
}
