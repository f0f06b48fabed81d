//! A sink whose credentials and TLS come from Secrets: a password login over TLS to Cassandra and
//! SASL_SSL to Kafka, from pods. The Cassandra password is rotated under load (the role's password
//! changed, then the Secret): the workers roll onto the new Secret and nothing is lost or repeated.

use std::time::Duration;

use cassandra_sink_tests::node::{Node, workers};
use cassandra_sink_tests::scenario::Scenario;
use cassandra_sink_tests::{Settings, env_or, fixtures};

fn credentials(name: &str, username: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name} }}\ntype: Opaque\n\
         stringData: {{ username: {username}, password: {password} }}\n"
    )
}

fn ca(name: &str) -> anyhow::Result<String> {
    let ca = std::fs::read_to_string(env_or("LOCALENV_TLS_CA", ""))?;
    let indented = ca
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect::<String>();
    Ok(format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name} }}\ntype: Opaque\n\
         stringData:\n  ca.crt: |\n{indented}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_based_sink_survives_a_rotated_password() -> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let (node, namespace) = Node::with_operator("secrets")?;

    // The scenario's keyspace on the password-protected node, and a role of the sink's own (the local
    // node authenticates, and lets any role that logged in do anything).
    let settings = Settings {
        cassandra: env_or("CASSANDRA_AUTH_CONTACT_POINTS", "127.0.0.1:9043"),
        ..Settings::from_env()
    };
    let admin = fixtures::cassandra_auth().await?;
    let mut scenario = Scenario::on(settings, admin, "secrets", 2, "").await?;
    scenario.sink_id = format!("{namespace}/values");
    let keyspace = scenario.keyspace.clone();
    let role = format!("{keyspace}_sink");
    scenario
        .session
        .query_unpaged(
            format!("CREATE ROLE {role} WITH PASSWORD = 'first-password' AND LOGIN = true"),
            (),
        )
        .await?;

    let sasl_user = env_or("KAFKA_SASL_USERNAME", "sink");
    let sasl_password = env_or("KAFKA_SASL_PASSWORD", "sink-secret");
    let manifest = [
        credentials("cassandra-credentials", &role, "first-password"),
        ca("cassandra-tls")?,
        credentials("kafka-credentials", &sasl_user, &sasl_password),
        ca("kafka-tls")?,
        format!(
            r#"apiVersion: cassandra-sink.io/v1alpha1
kind: CassandraSink
metadata:
  name: values
spec:
  cassandra:
    contactPoints: ["{cassandra}"]
    localDatacenter: datacenter1
    credentialsSecret: cassandra-credentials
    tls: {{ secretName: cassandra-tls }}
  createQuery: "CREATE TABLE IF NOT EXISTS {keyspace}.values (id text PRIMARY KEY, counter int, seq bigint);"
  insertQuery: "INSERT INTO {keyspace}.values (id, counter, seq) VALUES (?, ?, ?);"
  committer: {{ keyspace: {keyspace}, table: checkpoints }}
  source:
    kafka:
      bootstrapServers: ["{kafka}"]
      topic: {topic}
      securityProtocol: SASL_SSL
      sasl: {{ mechanism: PLAIN, secretName: kafka-credentials }}
      tls: {{ secretName: kafka-tls }}
  checkpoint: {{ interval: 500ms }}
  parallelism: 2
"#,
            cassandra = node.cassandra_auth,
            kafka = node.kafka_sasl_ssl,
            topic = scenario.topic,
        ),
    ]
    .join("---\n");
    node.apply(&namespace, &manifest)?;
    node.wait_ready(&namespace, "values")?;
    scenario.produce(1_500, 100).await?;
    let before = node.pods(&namespace, &workers("values"))?;

    // Rotation: the role's password changes, then the Secret; the workers roll onto it.
    let (produced, rotated) = tokio::join!(scenario.produce(3_000, 100), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        rotate_password(&node, &namespace, &role).await
    });
    produced?;
    rotated?;
    node.wait_for(
        "workers started after the rotation",
        Duration::from_secs(240),
        || {
            let now = node.pods(&namespace, &workers("values"))?;
            Ok((now.len() == 2 && now.iter().all(|pod| !before.contains(pod))).then_some(()))
        },
    )?;
    node.wait_workers(&namespace, "values", 2)?;
    node.wait_ready(&namespace, "values")?;
    scenario
        .wait_until_caught_up(Duration::from_secs(240))
        .await?;
    scenario.assert_applied_once("values").await?;

    node.uninstall(&namespace)?;
    scenario
        .session
        .query_unpaged(format!("DROP ROLE {role}"), ())
        .await?;
    scenario.clean_up().await
}

/// Changes the role's password in Cassandra through a session of its own, then writes the Secret.
async fn rotate_password(node: &Node, namespace: &str, role: &str) -> anyhow::Result<()> {
    let admin = fixtures::cassandra_auth().await?;
    admin
        .query_unpaged(
            format!("ALTER ROLE {role} WITH PASSWORD = 'second-password'"),
            (),
        )
        .await?;
    node.apply(
        namespace,
        &credentials("cassandra-credentials", role, "second-password"),
    )?;
    Ok(())
}
