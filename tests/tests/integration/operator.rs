//! The operator against the real kube-apiserver (no kubelet: the test plays the Deployment controller
//! by writing Deployment status): children created and updated from the spec, drift put back, status
//! conditions that tell the truth, an invalid spec shown as a condition instead of workers.

use std::future::Future;
use std::time::{Duration, Instant};

use cassandra_sink_operator::build::Settings;
use cassandra_sink_operator::controller;
use cassandra_sink_operator::crd::CassandraSink;
use cassandra_sink_tests::unique_name;
use cassandra_sink_worker::config::SinkConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client of the local API server, with the CassandraSink CRD installed.
async fn client_with_crd() -> anyhow::Result<Client> {
    cassandra_sink_tests::install_crypto_provider();
    let client = Client::try_default().await?;
    cassandra_sink_tests::cluster::install_crd(&client).await?;
    Ok(client)
}

/// Merges `spec` into the sink's spec, as `kubectl patch --type merge` does.
async fn patch_spec(
    sinks: &Api<CassandraSink>,
    name: &str,
    spec: serde_json::Value,
) -> kube::Result<CassandraSink> {
    sinks
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
}

fn condition(sink: &CassandraSink, kind: &str) -> Option<(String, String)> {
    sink.status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == kind)
        .map(|condition| (condition.status.clone(), condition.reason.clone()))
}

/// Waits until sink `name` is Degraded for `reason`, and returns the condition's message.
async fn degraded_for(sinks: &Api<CassandraSink>, name: &str, reason: &str) -> String {
    eventually(reason, Duration::from_secs(30), || async {
        let sink = sinks.get(name).await.ok()?;
        sink.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == reason)
            .map(|c| c.message)
    })
    .await
}

/// Deletes a test's namespaces and drops its keyspace. (Without a namespace controller here the
/// namespaces only get a deletion timestamp; fresh names keep tests apart.)
async fn clean_up(
    client: &Client,
    namespaces: &[&str],
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for namespace in namespaces {
        api.delete(namespace, &DeleteParams::default()).await?;
    }
    cassandra_sink_tests::fixtures::drop_keyspace(session, keyspace).await
}

/// Runs the controller in this process, on one namespace, reading progress every second.
fn spawn_controller(
    client: &Client,
    namespace: &str,
    metrics: std::sync::Arc<cassandra_sink_operator::metrics::Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(controller::run(
        client.clone(),
        Settings {
            worker_image: "cassandra-sink-worker:test".to_owned(),
            image_pull_policy: "Never".to_owned(),
        },
        vec![namespace.to_owned()],
        metrics,
        Duration::from_secs(1),
        8,
    ))
}

/// A sink on the local servers whose table and committer live in `keyspace` (`example.` in `insert`
/// stands for it). The operator runs the DDL and prepares the insert before it starts workers, so
/// the keyspace must exist; the createQuery makes the table.
fn sink(keyspace: &str, name: &str, insert: &str) -> anyhow::Result<CassandraSink> {
    let servers = cassandra_sink_tests::Settings::from_env();
    Ok(serde_json::from_value(json!({
        "apiVersion": "cassandra-sink.io/v1alpha1",
        "kind": "CassandraSink",
        "metadata": { "name": name },
        "spec": {
            "cassandra": { "contactPoints": [servers.cassandra], "localDatacenter": "datacenter1" },
            "createQuery": format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.values (id text PRIMARY KEY, counter int)"
            ),
            "insertQuery": insert.replace("example.", &format!("{keyspace}.")),
            "committer": { "keyspace": keyspace, "table": "checkpoints" },
            "source": { "kafka": { "bootstrapServers": [servers.kafka], "topic": topic_of(keyspace) } }
        }
    }))?)
}

/// The topic of the sinks [`sink`] makes: named after the test's keyspace, so that tests share none. It
/// exists only where a test creates it.
fn topic_of(keyspace: &str) -> String {
    keyspace.replace('_', "-")
}

/// A test's own keyspace and a namespace named after it, with the controller running on that
/// namespace.
struct Fixture {
    client: Client,
    session: scylla::client::session::Session,
    keyspace: String,
    namespace: String,
    controller: tokio::task::JoinHandle<()>,
    metrics: std::sync::Arc<cassandra_sink_operator::metrics::Metrics>,
    sinks: Api<CassandraSink>,
    deployments: Api<Deployment>,
}

impl Fixture {
    async fn new(prefix: &str) -> anyhow::Result<Self> {
        let client = client_with_crd().await?;
        let (session, keyspace) = keyspace(prefix).await?;
        let namespace = keyspace.replace('_', "-");
        cassandra_sink_tests::cluster::create_namespace(&client, &namespace).await?;
        let metrics = std::sync::Arc::new(cassandra_sink_operator::metrics::Metrics::new());
        let controller = spawn_controller(&client, &namespace, metrics.clone());
        Ok(Self {
            metrics,
            sinks: Api::namespaced(client.clone(), &namespace),
            deployments: Api::namespaced(client.clone(), &namespace),
            client,
            session,
            keyspace,
            namespace,
            controller,
        })
    }

    /// Stops the controller and removes the namespace and keyspace.
    async fn finish(self) -> anyhow::Result<()> {
        self.controller.abort();
        clean_up(
            &self.client,
            &[&self.namespace],
            &self.session,
            &self.keyspace,
        )
        .await
    }
}

/// A fresh keyspace on the local Cassandra, and a session on it.
async fn keyspace(prefix: &str) -> anyhow::Result<(scylla::client::session::Session, String)> {
    let servers = cassandra_sink_tests::Settings::from_env();
    let session = cassandra_sink_tests::fixtures::cassandra(&servers).await?;
    let keyspace = unique_name(prefix);
    cassandra_sink_tests::fixtures::create_keyspace(&session, &keyspace).await?;
    Ok((session, keyspace))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reconciles_children_and_tells_the_truth_in_status() -> anyhow::Result<()> {
    let client = client_with_crd().await?;
    let (session, keyspace) = keyspace("operator").await?;
    let namespace = keyspace.replace('_', "-");
    cassandra_sink_tests::cluster::create_namespace(&client, &namespace).await?;
    cassandra_sink_tests::fixtures::create_topic(
        &cassandra_sink_tests::Settings::from_env(),
        &topic_of(&keyspace),
        1,
    )
    .await?;
    let metrics = std::sync::Arc::new(cassandra_sink_operator::metrics::Metrics::new());
    let controller = spawn_controller(&client, &namespace, metrics.clone());

    let sinks: Api<CassandraSink> = Api::namespaced(client.clone(), &namespace);

    // What the schema can check statically, the API server refuses at once (CEL and schema rules).
    let refused = sinks
        .create(
            &PostParams::default(),
            &sink(&keyspace, "select", "SELECT * FROM example.values")?,
        )
        .await;
    match refused {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status
                    .message
                    .contains("insertQuery must be an INSERT, UPDATE or DELETE statement"),
                "{}",
                status.message
            );
        }
        other => panic!("a SELECT was accepted: {other:?}"),
    }
    // A delete statement that is not a DELETE, and tombstones told to delete with no statement.
    let mut deleting = sink(
        &keyspace,
        "deleting",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    deleting.spec.delete = Some(serde_json::from_value(json!({
        "query": "INSERT INTO example.values (id) VALUES (?)",
        "mapping": { "fields": ["key"] },
    }))?);
    let mut tombstones = deleting.clone();
    tombstones.metadata.name = Some("tombstones".to_owned());
    tombstones.spec.delete = None;
    tombstones.spec.on_tombstone = Some(cassandra_sink_worker::config::OnTombstone::Delete);
    for (refused, words) in [
        (deleting, "delete.query must be a DELETE statement"),
        (tombstones, "onTombstone: delete needs a delete statement"),
    ] {
        match sinks.create(&PostParams::default(), &refused).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422);
                assert!(status.message.contains(words), "{}", status.message);
            }
            other => panic!("{words}: accepted: {other:?}"),
        }
    }
    // Topics named more than one way.
    let mut both = sink(
        &keyspace,
        "both",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    both.spec.source.kafka.topics = vec!["other".to_owned()];
    match sinks.create(&PostParams::default(), &both).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status
                    .message
                    .contains("set exactly one of topic, topics and topicPattern"),
                "{}",
                status.message
            );
        }
        other => panic!("topic and topics were accepted together: {other:?}"),
    }
    let mut zero = sink(
        &keyspace,
        "zero",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    zero.spec.parallelism = 0;
    zero.spec.committer.table = "check-points".to_owned();
    match sinks.create(&PostParams::default(), &zero).await {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains("spec.parallelism"),
                "{}",
                status.message
            );
            assert!(
                status.message.contains("spec.committer.table"),
                "{}",
                status.message
            );
        }
        other => panic!("parallelism 0 was accepted: {other:?}"),
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    sinks
        .create(
            &PostParams::default(),
            &sink(
                &keyspace,
                "values",
                "INSERT INTO example.values (id, counter) VALUES (?, ?);",
            )?,
        )
        .await?;

    // Children from the spec; the worker configuration is what the worker parses.
    let deployment = eventually("the worker Deployment", Duration::from_secs(30), || async {
        deployments.get_opt("values-worker").await.ok().flatten()
    })
    .await;
    assert_eq!(
        deployment.spec.as_ref().and_then(|spec| spec.replicas),
        Some(1)
    );
    let config_map = config_maps.get("values-worker-config").await?;
    let yaml = &config_map.data.unwrap_or_default()["sink.yaml"];
    let config = SinkConfig::from_yaml(yaml, std::path::Path::new("sink.yaml"))?;
    assert_eq!(config.sink_id, format!("{namespace}/values"));
    assert!(
        !config.manage_schema,
        "the operator runs the DDL, not each worker"
    );
    // The operator created the committer tables before it made the workers.
    let tables: Vec<String> = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (&keyspace,),
        )
        .await?
        .into_rows_result()?
        .rows::<(String,)>()?
        .map(|row| row.map(|(table,)| table))
        .collect::<Result<_, _>>()?;
    for table in [
        "checkpoints",
        "checkpoints_topic_positions",
        "checkpoints_dead_letter",
    ] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }

    // No worker is running yet: not Ready, and the status says why, for this generation.
    let status = eventually("a status", Duration::from_secs(30), || async {
        let sink = sinks.get("values").await.ok()?;
        condition(&sink, "Ready").map(|ready| (ready, sink))
    })
    .await;
    assert_eq!(status.0, ("False".to_owned(), "WorkersNotReady".to_owned()));
    assert_eq!(
        status.1.status.as_ref().and_then(|s| s.observed_generation),
        Some(1)
    );

    // The spec changes parallelism; the Deployment follows.
    patch_spec(&sinks, "values", json!({ "parallelism": 3 })).await?;
    let deployment = eventually("3 replicas", Duration::from_secs(30), || async {
        let deployment = deployments.get("values-worker").await.ok()?;
        (deployment.spec.as_ref()?.replicas == Some(3)).then_some(deployment)
    })
    .await;

    // Play the Deployment controller: three ready workers of the current template.
    let generation = deployment.metadata.generation;
    deployments
        .patch_status(
            "values-worker",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": {
                "observedGeneration": generation, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3
            }})),
        )
        .await?;
    let ready = eventually("Ready", Duration::from_secs(30), || async {
        let sink = sinks.get("values").await.ok()?;
        let ready = condition(&sink, "Ready")?;
        (ready.0 == "True").then_some(sink)
    })
    .await;
    assert_eq!(ready.status.as_ref().map(|s| s.replicas), Some(3));
    assert_eq!(
        ready.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );

    // Someone edits the Deployment by hand: the operator puts it back.
    deployments
        .patch(
            "values-worker",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "values-worker" },
                "spec": { "replicas": 7 }
            })),
        )
        .await?;
    eventually("the drift healed", Duration::from_secs(30), || async {
        let deployment = deployments.get("values-worker").await.ok()?;
        (deployment.spec.as_ref()?.replicas == Some(3)).then_some(())
    })
    .await;

    // A statement that cannot be exactly-once: a Degraded condition naming why, and no workers.
    sinks
        .create(
            &PostParams::default(),
            &sink(
                &keyspace,
                "counts",
                "UPDATE example.hits SET n = n + ? WHERE id = ?",
            )?,
        )
        .await?;
    let degraded = eventually("Degraded", Duration::from_secs(30), || async {
        let sink = sinks.get("counts").await.ok()?;
        let degraded = condition(&sink, "Degraded")?;
        (degraded.0 == "True").then_some(sink)
    })
    .await;
    assert_eq!(
        condition(&degraded, "Degraded").map(|c| c.1),
        Some("NotExactlyOnce".to_owned())
    );
    let message = degraded
        .status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .map(|c| c.message.clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    assert!(message.contains("at-least-once"), "{message}");
    assert!(deployments.get_opt("counts-worker").await?.is_none());
    // The transition is an Event too, for `kubectl describe` and event collectors.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    eventually(
        "a NotExactlyOnce event",
        Duration::from_secs(30),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|event| {
                    event.reason.as_deref() == Some("NotExactlyOnce")
                        && event.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some("counts")
                        && event.type_.as_deref() == Some("Warning")
                })
                .map(|_| ())
        },
    )
    .await;
    assert!(
        metrics
            .encode()
            .contains("cassandra_sink_operator_reconciles_total"),
        "reconciles are counted"
    );
    assert!(metrics.reconciles.get() > 0);

    // A Secret that does not exist yet: Degraded, naming it; once created, the workers appear; when it
    // changes, they roll.
    let mut secured = sink(
        &keyspace,
        "secured",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    secured.spec.cassandra.credentials_secret = Some("cassandra-creds".to_owned());
    sinks.create(&PostParams::default(), &secured).await?;
    let message = degraded_for(&sinks, "secured", "SecretMissing").await;
    assert!(
        message.contains("spec.cassandra.credentialsSecret") && message.contains("cassandra-creds"),
        "{message}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = |password: &str| -> anyhow::Result<Secret> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "cassandra-creds" },
            "stringData": { "username": "sink", "password": password }
        }))?)
    };
    secrets
        .create(&PostParams::default(), &secret("first")?)
        .await?;
    let hash = |deployment: &Deployment| {
        deployment
            .spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("cassandra-sink.io/secrets-hash")
            .cloned()
    };
    let first = eventually(
        "workers once the Secret exists",
        Duration::from_secs(30),
        || async {
            let deployment = deployments.get_opt("secured-worker").await.ok().flatten()?;
            hash(&deployment)
        },
    )
    .await;
    secrets
        .replace("cassandra-creds", &PostParams::default(), &{
            let mut next = secrets.get("cassandra-creds").await?;
            next.string_data = Some([("password".to_owned(), "second".to_owned())].into());
            next
        })
        .await?;
    eventually(
        "a rollout after the Secret changed",
        Duration::from_secs(30),
        || async {
            let deployment = deployments.get("secured-worker").await.ok()?;
            (hash(&deployment)? != first).then_some(())
        },
    )
    .await;

    // A createQuery Cassandra refuses: Degraded with Cassandra's reason and no workers; once it is
    // corrected, the operator runs it and the workers appear.
    let mut ddl = sink(
        &keyspace,
        "ddl",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    ddl.spec.create_query =
        Some("CREATE TABLE no_such_keyspace.values (id text PRIMARY KEY)".to_owned());
    sinks.create(&PostParams::default(), &ddl).await?;
    let message = degraded_for(&sinks, "ddl", "SchemaFailed").await;
    assert!(
        message.contains("createQuery") && message.contains("no_such_keyspace"),
        "{message}"
    );
    assert!(deployments.get_opt("ddl-worker").await?.is_none());
    patch_spec(
        &sinks,
        "ddl",
        json!({ "createQuery": format!("CREATE TABLE {keyspace}.created (id text PRIMARY KEY)") }),
    )
    .await?;
    let applied = eventually(
        "workers once the DDL runs",
        Duration::from_secs(30),
        || async {
            deployments.get_opt("ddl-worker").await.ok().flatten()?;
            sinks.get("ddl").await.ok()?.status?.applied_schema
        },
    )
    .await;
    assert!(!applied.is_empty());
    session
        .query_unpaged(format!("SELECT id FROM {keyspace}.created"), ())
        .await?;

    // Stopping scales the workers to zero and says so.
    patch_spec(&sinks, "values", json!({ "state": "stopped" })).await?;
    let stopped = eventually("Stopped", Duration::from_secs(30), || async {
        let deployment = deployments.get("values-worker").await.ok()?;
        let sink = sinks.get("values").await.ok()?;
        (deployment.spec.as_ref()?.replicas == Some(0) && condition(&sink, "Ready")?.1 == "Stopped")
            .then_some(sink)
    })
    .await;
    assert_eq!(
        condition(&stopped, "Ready").map(|c| c.0),
        Some("False".to_owned())
    );

    // Paused is stopped for a while: no workers, and the status says paused.
    patch_spec(&sinks, "values", json!({ "state": "paused" })).await?;
    eventually("Paused", Duration::from_secs(30), || async {
        let deployment = deployments.get("values-worker").await.ok()?;
        let sink = sinks.get("values").await.ok()?;
        (deployment.spec.as_ref()?.replicas == Some(0) && condition(&sink, "Ready")?.1 == "Paused")
            .then_some(())
    })
    .await;
    // Resuming brings back `parallelism` workers, with the same configuration (positions kept).
    let config_before = config_maps.get("values-worker-config").await?.data;
    patch_spec(&sinks, "values", json!({ "state": "running" })).await?;
    eventually("resumed", Duration::from_secs(30), || async {
        let deployment = deployments.get("values-worker").await.ok()?;
        let sink = sinks.get("values").await.ok()?;
        (deployment.spec.as_ref()?.replicas == Some(3) && condition(&sink, "Ready")?.1 != "Paused")
            .then_some(())
    })
    .await;
    assert_eq!(
        config_maps.get("values-worker-config").await?.data,
        config_before
    );

    // An operator restart rewrites nothing: same Deployment generation and resource versions.
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    settle().await;
    let deployment_before = deployments.get("values-worker").await?.metadata;
    let sink_before = sinks.get("values").await?.metadata.resource_version;
    controller.abort();
    let restarted = spawn_controller(
        &client,
        &namespace,
        std::sync::Arc::new(cassandra_sink_operator::metrics::Metrics::new()),
    );
    settle().await;
    let deployment_after = deployments.get("values-worker").await?.metadata;
    assert_eq!(deployment_before.generation, deployment_after.generation);
    assert_eq!(
        deployment_before.resource_version,
        deployment_after.resource_version
    );
    assert_eq!(
        sink_before,
        sinks.get("values").await?.metadata.resource_version
    );

    restarted.abort();
    clean_up(&client, &[&namespace], &session, &keyspace).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operator_processes_elect_one_leader_and_fail_over() -> anyhow::Result<()> {
    use std::process::{Command, Stdio};

    let client = client_with_crd().await?;
    let (session, keyspace) = keyspace("leader").await?;
    let namespace = keyspace.replace('_', "-");
    cassandra_sink_tests::cluster::create_namespace(&client, &namespace).await?;
    let dir = std::env::temp_dir().join(&namespace);
    std::fs::create_dir_all(&dir)?;
    let start = |identity: &str| -> anyhow::Result<std::process::Child> {
        let log = std::fs::File::create(dir.join(format!("{identity}.log")))?;
        Ok(Command::new(cassandra_sink_tests::worker::project_binary(
            "cassandra-sink-operator",
        ))
        .args(["--namespace", &namespace, "--lease-namespace", &namespace])
        .args(["--identity", identity, "--lease-seconds", "4"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?)
    };
    let log = |identity: &str| {
        std::fs::read_to_string(dir.join(format!("{identity}.log"))).unwrap_or_default()
    };
    let mut first = start("replica-a")?;
    let mut second = start("replica-b")?;

    let leader = eventually("a leader", Duration::from_secs(30), || async {
        ["replica-a", "replica-b"]
            .into_iter()
            .find(|identity| log(identity).contains("leading: reconciling"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaders = ["replica-a", "replica-b"]
        .iter()
        .filter(|identity| log(identity).contains("leading: reconciling"))
        .count();
    assert_eq!(leaders, 1, "exactly one replica leads");

    let sinks: Api<CassandraSink> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    sinks
        .create(
            &PostParams::default(),
            &sink(
                &keyspace,
                "one",
                "INSERT INTO example.values (id, counter) VALUES (?, ?)",
            )?,
        )
        .await?;
    eventually("the leader reconciles", Duration::from_secs(30), || async {
        deployments.get_opt("one-worker").await.ok().flatten()
    })
    .await;

    // The leader dies; the other takes the lease and reconciles.
    let (dead, survivor, other) = if leader == "replica-a" {
        (&mut first, &mut second, "replica-b")
    } else {
        (&mut second, &mut first, "replica-a")
    };
    dead.kill()?;
    dead.wait()?;
    eventually("fail-over", Duration::from_secs(30), || async {
        log(other).contains("leading: reconciling").then_some(())
    })
    .await;
    sinks
        .create(
            &PostParams::default(),
            &sink(
                &keyspace,
                "two",
                "INSERT INTO example.values (id, counter) VALUES (?, ?)",
            )?,
        )
        .await?;
    eventually(
        "the new leader reconciles",
        Duration::from_secs(30),
        || async { deployments.get_opt("two-worker").await.ok().flatten() },
    )
    .await;
    survivor.kill()?;
    survivor.wait()?;
    clean_up(&client, &[&namespace], &session, &keyspace).await?;
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_comes_from_the_committer_table_and_deletion_applies_the_policy()
-> anyhow::Result<()> {
    use cassandra_sink_tests::fixtures;
    use cassandra_sink_tests::worker::Worker;

    let client = client_with_crd().await?;
    let servers = cassandra_sink_tests::Settings::from_env();
    let keyspace = unique_name("progress");
    let session = fixtures::cassandra(&servers).await?;
    fixtures::create_keyspace(&session, &keyspace).await?;
    let topic = keyspace.replace('_', "-");
    fixtures::create_topic(&servers, &topic, 1).await?;
    let namespace = topic.clone();
    cassandra_sink_tests::cluster::create_namespace(&client, &namespace).await?;
    let controller = spawn_controller(
        &client,
        &namespace,
        std::sync::Arc::new(cassandra_sink_operator::metrics::Metrics::new()),
    );
    let sinks: Api<CassandraSink> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let dir = std::env::temp_dir().join(&keyspace);
    std::fs::create_dir_all(&dir)?;
    let mut workers = Vec::new();
    for (name, policy) in [("kept", "Retain"), ("removed", "Delete")] {
        let sink: CassandraSink = serde_json::from_value(json!({
            "apiVersion": "cassandra-sink.io/v1alpha1",
            "kind": "CassandraSink",
            "metadata": { "name": name },
            "spec": {
                "cassandra": { "contactPoints": [servers.cassandra], "localDatacenter": "datacenter1" },
                "createQuery": format!("CREATE TABLE IF NOT EXISTS {keyspace}.values (id text PRIMARY KEY, counter int)"),
                "insertQuery": format!("INSERT INTO {keyspace}.values (id, counter) VALUES (?, ?)"),
                "committer": { "keyspace": keyspace, "table": "checkpoints" },
                "source": { "kafka": { "bootstrapServers": [servers.kafka], "topic": topic } },
                "checkpoint": { "interval": "200ms" },
                "deletionPolicy": policy
            }
        }))?;
        sinks.create(&PostParams::default(), &sink).await?;
        // Play the kubelet: run the worker with the configuration the operator rendered.
        let config = eventually(
            "the rendered configuration",
            Duration::from_secs(30),
            || async {
                config_maps
                    .get_opt(&format!("{name}-worker-config"))
                    .await
                    .ok()
                    .flatten()?
                    .data?
                    .get("sink.yaml")
                    .cloned()
            },
        )
        .await;
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config)?;
        workers.push(Worker::start(&path, name, &[]));
    }
    let producer = fixtures::producer(&servers)?;
    for index in 0..50 {
        let value = format!("[\"id{}\", {index}]", index % 7);
        fixtures::send(&producer, &topic, 0, "k", value.as_bytes()).await?;
    }

    // The operator reads progress from the committer table into the status.
    for name in ["kept", "removed"] {
        eventually(
            "progress in the status",
            Duration::from_secs(60),
            || async {
                let sink = sinks.get(name).await.ok()?;
                let progress = sink.status?.progress?;
                let partition = progress.partitions.first()?;
                // Everything produced is committed: no lag, position at the end of the partition.
                (progress.records_committed == 50
                    && progress.last_commit_time.is_some()
                    && progress.lag == Some(0)
                    && partition.committed_offset == Some(50)
                    && partition.end_offset == Some(50))
                .then_some(())
            },
        )
        .await;
    }
    for worker in workers {
        assert!(worker.terminate(Duration::from_secs(30)).success());
    }

    // Records produced while no worker runs show as lag.
    for index in 50..60 {
        let value = format!("[\"id{}\", {index}]", index % 7);
        fixtures::send(&producer, &topic, 0, "k", value.as_bytes()).await?;
    }
    eventually("a lag of 10", Duration::from_secs(30), || async {
        let progress = sinks.get("kept").await.ok()?.status?.progress?;
        (progress.lag == Some(10)).then_some(())
    })
    .await;

    // A reset asked for while the sink runs waits for it to be stopped.
    let annotate = |value: &'static str| {
        let sinks = &sinks;
        async move {
            sinks
                .patch(
                    "kept",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "metadata": { "annotations": {
                        "cassandra-sink.io/reset-positions": value } } })),
                )
                .await
        }
    };
    let reset_phase = |wanted: &'static str| {
        let sinks = &sinks;
        async move {
            let reset = sinks.get("kept").await.ok()?.status?.positions_reset?;
            (reset.phase == wanted).then_some(reset)
        }
    };
    annotate("0=20").await?;
    let waiting = eventually("a waiting reset", Duration::from_secs(30), || {
        reset_phase("Waiting")
    })
    .await;
    assert!(
        waiting
            .message
            .contains("set spec.state to stopped; the reset is applied once its workers are gone"),
        "{}",
        waiting.message
    );
    let epoch_before = sinks
        .get("kept")
        .await?
        .status
        .and_then(|s| s.progress)
        .and_then(|p| p.partitions.first().and_then(|p| p.epoch))
        .unwrap_or_default();

    // Stopped, and (playing the Deployment controller) its workers gone: the reset is applied, the
    // partition's epoch moves on (fencing any straggler) and the status lists the new position.
    patch_spec(&sinks, "kept", json!({ "state": "stopped" })).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let stopped = eventually("zero replicas", Duration::from_secs(30), || async {
        let deployment = deployments.get("kept-worker").await.ok()?;
        (deployment.spec.as_ref()?.replicas == Some(0)).then_some(deployment)
    })
    .await;
    deployments
        .patch_status(
            "kept-worker",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": {
                "observedGeneration": stopped.metadata.generation, "replicas": 0
            }})),
        )
        .await?;
    let applied = eventually("an applied reset", Duration::from_secs(30), || {
        reset_phase("Applied")
    })
    .await;
    assert!(applied.message.contains("0→20"), "{}", applied.message);
    let partition = eventually(
        "the reset position in the status",
        Duration::from_secs(30),
        || async {
            let progress = sinks.get("kept").await.ok()?.status?.progress?;
            let partition = progress.partitions.first()?.clone();
            (partition.committed_offset == Some(20) && progress.lag == Some(40))
                .then_some(partition)
        },
    )
    .await;
    assert!(partition.epoch.unwrap_or_default() > epoch_before);
    // The committer row itself (the source of truth the workers resume from) says 20.
    let row = fixtures::committed(
        &session,
        &keyspace,
        "checkpoints",
        (&format!("{namespace}/kept"), &topic),
        1,
    )
    .await?;
    assert_eq!(row[&0].0, Some(20));

    // An offset Kafka does not hold is refused, saying what Kafka holds.
    annotate("0=1000").await?;
    let refused = eventually("a refused reset", Duration::from_secs(30), || {
        reset_phase("Refused")
    })
    .await;
    assert!(refused.message.contains("0..=60"), "{}", refused.message);

    // Deleting applies each sink's deletion policy to its committer rows: those keyed by sink and
    // topic, and one an earlier release keyed by the sink alone.
    let rows = |name: &'static str| {
        let session = &session;
        let keyspace = &keyspace;
        let namespace = &namespace;
        let topic = &topic;
        async move {
            let id = format!("{namespace}/{name}");
            let mut count = 0;
            for key in [
                cassandra_sink_worker::committer::row_key(&id, topic),
                id.clone(),
            ] {
                count += session
                    .query_unpaged(
                        format!("SELECT source_partition FROM {keyspace}.checkpoints WHERE sink_id = ? ALLOW FILTERING"),
                        (key,),
                    )
                    .await?
                    .into_rows_result()?
                    .rows::<(i32,)>()?
                    .count();
            }
            anyhow::Ok(count)
        }
    };
    session
        .query_unpaged(
            format!(
                "INSERT INTO {keyspace}.checkpoints (sink_id, source_partition, topic, epoch) \
                 VALUES (?, 5, ?, 1)"
            ),
            (format!("{namespace}/removed"), &topic),
        )
        .await?;
    assert_eq!(rows("kept").await?, 1);
    assert_eq!(rows("removed").await?, 2);
    for name in ["kept", "removed"] {
        sinks.delete(name, &DeleteParams::default()).await?;
        eventually(
            "the sink gone after its finalizer ran",
            Duration::from_secs(30),
            || async { sinks.get_opt(name).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
    assert_eq!(rows("kept").await?, 1, "Retain keeps the positions");
    assert_eq!(rows("removed").await?, 0, "Delete removes them");

    controller.abort();
    clean_up(&client, &[&namespace], &session, &keyspace).await?;
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_watches_only_the_namespaces_it_is_given() -> anyhow::Result<()> {
    let client = client_with_crd().await?;
    let (session, keyspace) = keyspace("scoped").await?;
    let base = keyspace.replace('_', "-");
    let [first, second, unwatched] = ["a", "b", "c"].map(|suffix| format!("{base}-{suffix}"));
    for namespace in [&first, &second, &unwatched] {
        cassandra_sink_tests::cluster::create_namespace(&client, namespace).await?;
    }
    let controller = tokio::spawn(controller::run(
        client.clone(),
        Settings {
            worker_image: "cassandra-sink-worker:test".to_owned(),
            image_pull_policy: "Never".to_owned(),
        },
        vec![first.clone(), second.clone()],
        std::sync::Arc::new(cassandra_sink_operator::metrics::Metrics::new()),
        Duration::from_secs(1),
        8,
    ));
    for namespace in [&first, &second, &unwatched] {
        Api::<CassandraSink>::namespaced(client.clone(), namespace)
            .create(
                &PostParams::default(),
                &sink(
                    &keyspace,
                    "scoped",
                    "INSERT INTO example.values (id, counter) VALUES (?, ?)",
                )?,
            )
            .await?;
    }
    for namespace in [&first, &second] {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        eventually(
            "workers in a watched namespace",
            Duration::from_secs(30),
            || async { deployments.get_opt("scoped-worker").await.ok().flatten() },
        )
        .await;
    }
    // Both watched namespaces are done; the third, given the same time, is left alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unwatched_deployments: Api<Deployment> = Api::namespaced(client.clone(), &unwatched);
    assert!(
        unwatched_deployments
            .get_opt("scoped-worker")
            .await?
            .is_none()
    );
    let untouched = Api::<CassandraSink>::namespaced(client.clone(), &unwatched)
        .get("scoped")
        .await?;
    assert!(untouched.status.is_none(), "{:?}", untouched.status);

    controller.abort();
    clean_up(&client, &[&first, &second, &unwatched], &session, &keyspace).await?;
    Ok(())
}

/// A sink over TLS to the local Cassandra (CA from Secret `cassandra_tls`) and SASL_SSL to the local
/// Kafka (credentials and CA from the Secrets `kafka`), its table named after it in `keyspace`.
fn secured_sink(
    keyspace: &str,
    topic: &str,
    name: &str,
    cassandra_tls: &str,
    (kafka_sasl, kafka_tls): (&str, &str),
) -> anyhow::Result<CassandraSink> {
    let servers = cassandra_sink_tests::Settings::from_env();
    Ok(serde_json::from_value(json!({
        "apiVersion": "cassandra-sink.io/v1alpha1",
        "kind": "CassandraSink",
        "metadata": { "name": name },
        "spec": {
            "cassandra": {
                "contactPoints": [servers.cassandra], "localDatacenter": "datacenter1",
                "tls": { "secretName": cassandra_tls }
            },
            "createQuery": format!("CREATE TABLE IF NOT EXISTS {keyspace}.{name} (id text PRIMARY KEY, counter int)"),
            "insertQuery": format!("INSERT INTO {keyspace}.{name} (id, counter) VALUES (?, ?)"),
            "committer": { "keyspace": keyspace, "table": "checkpoints" },
            "source": { "kafka": {
                "bootstrapServers": [cassandra_sink_tests::env_or("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS", "127.0.0.1:9094")],
                "topic": topic,
                "securityProtocol": "SASL_SSL",
                "sasl": { "mechanism": "PLAIN", "secretName": kafka_sasl },
                "tls": { "secretName": kafka_tls }
            } }
        }
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reaches_secured_servers_with_the_sinks_secrets() -> anyhow::Result<()> {
    use cassandra_sink_tests::{env_or, fixtures};

    let client = client_with_crd().await?;
    let servers = cassandra_sink_tests::Settings::from_env();
    let (session, keyspace) = keyspace("secured").await?;
    let topic = keyspace.replace('_', "-");
    fixtures::create_topic(&servers, &topic, 2).await?;
    let producer = fixtures::producer(&servers)?;
    for index in 0..5 {
        fixtures::send(&producer, &topic, index % 2, "k", b"[\"a\", 1]").await?;
    }
    let namespace = topic.clone();
    cassandra_sink_tests::cluster::create_namespace(&client, &namespace).await?;
    let ca = std::fs::read_to_string(env_or("LOCALENV_TLS_CA", ""))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for (name, data) in [
        ("cassandra-tls", json!({ "ca.crt": ca })),
        ("kafka-tls", json!({ "ca.crt": ca })),
        (
            "kafka-sasl",
            json!({ "username": env_or("KAFKA_SASL_USERNAME", "sink"),
                    "password": env_or("KAFKA_SASL_PASSWORD", "sink-secret") }),
        ),
        (
            "cassandra-password",
            json!({ "username": env_or("CASSANDRA_AUTH_USERNAME", "cassandra"),
                    "password": env_or("CASSANDRA_AUTH_PASSWORD", "cassandra") }),
        ),
        (
            "wrong-password",
            json!({ "username": env_or("CASSANDRA_AUTH_USERNAME", "cassandra"),
                    "password": "not-the-password" }),
        ),
        (
            "kafka-wrong-sasl",
            json!({ "username": env_or("KAFKA_SASL_USERNAME", "sink"),
                    "password": "not-the-password" }),
        ),
        // A CA that did not sign the servers' certificate: the API server's.
        (
            "wrong-ca",
            json!({ "ca.crt": std::fs::read_to_string(
                std::path::Path::new(&env_or("KUBECONFIG", ""))
                    .parent()
                    .map(|state| state.join("pki/ca.crt"))
                    .unwrap_or_default(),
            )? }),
        ),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": name }, "stringData": data
                }))?,
            )
            .await?;
    }
    let controller = spawn_controller(
        &client,
        &namespace,
        std::sync::Arc::new(cassandra_sink_operator::metrics::Metrics::new()),
    );
    let secured = |name: &str, cassandra_ca: &str| {
        secured_sink(
            &keyspace,
            &topic,
            name,
            cassandra_ca,
            ("kafka-sasl", "kafka-tls"),
        )
    };
    let sinks: Api<CassandraSink> = Api::namespaced(client.clone(), &namespace);
    sinks
        .create(
            &PostParams::default(),
            &secured("trusted", "cassandra-tls")?,
        )
        .await?;
    sinks
        .create(&PostParams::default(), &secured("untrusted", "wrong-ca")?)
        .await?;

    // Over TLS the operator ran the DDL (so the workers exist) and over SASL_SSL it read the lag.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    eventually(
        "workers of the trusted sink",
        Duration::from_secs(30),
        || async { deployments.get_opt("trusted-worker").await.ok().flatten() },
    )
    .await;
    session
        .query_unpaged(format!("SELECT id FROM {keyspace}.trusted"), ())
        .await?;
    eventually("the lag over SASL_SSL", Duration::from_secs(30), || async {
        let progress = sinks.get("trusted").await.ok()?.status?.progress?;
        (progress.lag == Some(5) && progress.partitions.len() == 2).then_some(())
    })
    .await;
    // The workers get the CA and no client certificate: the Secret holds none.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let yaml = config_maps
        .get("trusted-worker-config")
        .await?
        .data
        .unwrap_or_default()["sink.yaml"]
        .clone();
    let config = SinkConfig::from_yaml(&yaml, std::path::Path::new("sink.yaml"))?;
    let tls = config.cassandra.tls.expect("TLS towards Cassandra");
    assert!(tls.ca_file.is_some() && tls.cert_file.is_none() && tls.key_file.is_none());

    // A certificate its CA did not sign: refused, said in the condition (stalled: retrying cannot
    // cure it), no workers.
    let message = true_for(&sinks, "untrusted", "Stalled", "TlsFailed")
        .await
        .to_lowercase();
    assert!(message.contains("certificate"), "{message}");
    assert!(deployments.get_opt("untrusted-worker").await?.is_none());

    // The password-protected node: the operator logs in with the sink's credentials Secret to run
    // the DDL; a wrong password is a condition that says so.
    let auth_session = fixtures::cassandra_auth().await?;
    fixtures::create_keyspace(&auth_session, &keyspace).await?;
    for (name, secret) in [
        ("authed", "cassandra-password"),
        ("refused", "wrong-password"),
    ] {
        let mut sink = secured(name, "cassandra-tls")?;
        sink.spec.cassandra.contact_points =
            vec![env_or("CASSANDRA_AUTH_CONTACT_POINTS", "127.0.0.1:9043")];
        sink.spec.cassandra.tls = None;
        sink.spec.cassandra.credentials_secret = Some(secret.to_owned());
        sinks.create(&PostParams::default(), &sink).await?;
    }
    eventually(
        "workers of the sink that logged in",
        Duration::from_secs(30),
        || async { deployments.get_opt("authed-worker").await.ok().flatten() },
    )
    .await;
    auth_session
        .query_unpaged(format!("SELECT id FROM {keyspace}.authed"), ())
        .await?;
    let message = true_for(&sinks, "refused", "Stalled", "Unauthorized")
        .await
        .to_lowercase();
    assert!(message.contains("password"), "{message}");
    assert!(deployments.get_opt("refused-worker").await?.is_none());
    fixtures::drop_keyspace(&auth_session, &keyspace).await?;

    // Kafka refusing the SASL password: stalled, saying so, no workers.
    let mut kafka_refused = secured("kafkarefused", "cassandra-tls")?;
    if let Some(sasl) = kafka_refused.spec.source.kafka.sasl.as_mut() {
        sasl.secret_name = "kafka-wrong-sasl".to_owned();
    }
    sinks.create(&PostParams::default(), &kafka_refused).await?;
    let message = true_for(&sinks, "kafkarefused", "Stalled", "KafkaRefused").await;
    assert!(message.contains("spec.source.kafka"), "{message}");
    assert!(deployments.get_opt("kafkarefused-worker").await?.is_none());

    controller.abort();
    clean_up(&client, &[&namespace], &session, &keyspace).await?;
    Ok(())
}

/// The message of condition `kind` once it is True for `reason`.
async fn true_for(sinks: &Api<CassandraSink>, name: &str, kind: &str, reason: &str) -> String {
    eventually(
        &format!("{name}: {kind}={reason}"),
        Duration::from_secs(30),
        || async {
            let sink = sinks.get(name).await.ok()?;
            sink.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == kind && c.status == "True" && c.reason == reason)
                .map(|c| c.message)
        },
    )
    .await
}

/// Statements that read well but that Cassandra refuses: the operator prepares `insertQuery` (and
/// `delete.query`) on the live cluster before any worker runs, so each stalls the sink with Cassandra's own words and no
/// Deployment is made; corrected, the sink goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_cassandra_refuses_stall_the_sink_before_any_worker_runs() -> anyhow::Result<()>
{
    let fixture = Fixture::new("refused").await?;
    let (sinks, keyspace) = (&fixture.sinks, &fixture.keyspace);
    let deployments = &fixture.deployments;

    let valid = format!("INSERT INTO {keyspace}.values (id, counter) VALUES (?, ?)");
    // (name, insertQuery, mapping, delete, reason, words the message must hold)
    let cases = [
        (
            "column",
            "INSERT INTO example.values (id, countr) VALUES (?, ?)",
            None,
            None,
            "InvalidStatement",
            vec!["spec.insertQuery", "countr"],
        ),
        (
            "keyspace",
            "INSERT INTO nosuchkeyspace.values (id, counter) VALUES (?, ?)",
            None,
            None,
            "InvalidStatement",
            vec!["spec.insertQuery", "nosuchkeyspace"],
        ),
        (
            "type",
            "INSERT INTO example.values (id, counter) VALUES (?, 'seven')",
            None,
            None,
            "InvalidStatement",
            vec!["spec.insertQuery", "seven", "int"],
        ),
        (
            "mapping",
            "INSERT INTO example.values (id, counter) VALUES (?, ?)",
            Some(json!({ "fields": ["value.id"] })),
            None,
            "InvalidMapping",
            vec!["spec.mapping", "1 field paths", "2 bind markers"],
        ),
        (
            "deletecolumn",
            valid.as_str(),
            None,
            Some(json!({
                "query": format!("DELETE FROM {keyspace}.values WHERE ident = ?"),
                "mapping": { "fields": ["key"] },
            })),
            "InvalidStatement",
            vec!["spec.delete.query", "ident"],
        ),
        (
            "deletemapping",
            valid.as_str(),
            None,
            Some(json!({
                "query": format!("DELETE FROM {keyspace}.values WHERE id = ?"),
                "mapping": { "fields": ["key", "value.extra"] },
            })),
            "InvalidMapping",
            vec![
                "spec.delete.mapping",
                "spec.delete.query",
                "2 field paths",
                "1 bind markers",
            ],
        ),
    ];
    for (name, insert, mapping, delete, _, _) in &cases {
        let mut sink = sink(keyspace, name, insert)?;
        if let Some(mapping) = mapping {
            sink.spec.mapping = serde_json::from_value(mapping.clone())?;
        }
        if let Some(delete) = delete {
            sink.spec.delete = Some(serde_json::from_value(delete.clone())?);
        }
        sinks.create(&PostParams::default(), &sink).await?;
    }
    for (name, insert, _, _, reason, words) in &cases {
        let message = true_for(sinks, name, "Stalled", reason).await;
        for word in words {
            assert!(message.contains(word), "{name} ({insert}): {message}");
        }
        assert!(
            deployments
                .get_opt(&format!("{name}-worker"))
                .await?
                .is_none(),
            "{name}: workers were started"
        );
    }
    // What `kubectl wait` users see.
    let kubectl = cassandra_sink_tests::env_or("KUBECTL", "kubectl");
    let waited = std::process::Command::new(&kubectl)
        .args([
            "wait",
            "--for=condition=Stalled",
            "cassandrasink/column",
            "-n",
        ])
        .arg(&fixture.namespace)
        .arg("--timeout=30s")
        .output()?;
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // Corrected, the sink is no longer stalled and gets its workers.
    patch_spec(
        sinks,
        "column",
        json!({ "insertQuery": format!("INSERT INTO {keyspace}.values (id, counter) VALUES (?, ?)") }),
    )
    .await?;
    eventually(
        "workers once corrected",
        Duration::from_secs(30),
        || async { deployments.get_opt("column-worker").await.ok().flatten() },
    )
    .await;
    // The status is written at the end of the reconcile that made the Deployment, after it has read
    // the sink's progress: it follows the Deployment, not necessarily at once.
    eventually(
        "not stalled once corrected",
        Duration::from_secs(30),
        || async {
            let corrected = sinks.get("column").await.ok()?;
            (condition(&corrected, "Stalled")?.0 == "False").then_some(())
        },
    )
    .await;

    fixture.finish().await
}

/// Consistency levels the keyspaces' replication cannot keep exactly-once stall the sink before any
/// worker runs, with the setting, the keyspace and why in the message; corrected, it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistency_the_replication_cannot_keep_stalls_the_sink() -> anyhow::Result<()> {
    let fixture = Fixture::new("unsafecl").await?;
    let (sinks, keyspace) = (&fixture.sinks, &fixture.keyspace);
    // Three copies in the one datacenter (a single node accepts the keyspace; nothing is written).
    let copies = format!("{keyspace}_three");
    cassandra_sink_tests::fixtures::create_keyspace_with(
        &fixture.session,
        &copies,
        &[("datacenter1".to_owned(), 3)],
    )
    .await?;
    let mut one = sink(
        keyspace,
        "one",
        &format!("INSERT INTO {copies}.values (id, counter) VALUES (?, ?)"),
    )?;
    one.spec.create_query = Some(format!(
        "CREATE TABLE IF NOT EXISTS {copies}.values (id text PRIMARY KEY, counter int)"
    ));
    one.spec.cassandra.consistency = serde_json::from_value(json!("ONE"))?;
    let mut three = sink(
        keyspace,
        "three",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    three.spec.cassandra.consistency = serde_json::from_value(json!("THREE"))?;
    for sink in [&one, &three] {
        sinks.create(&PostParams::default(), sink).await?;
    }
    let cases = [
        (
            "one",
            vec![
                "spec.cassandra.consistency ONE",
                copies.as_str(),
                "3 copies",
            ],
        ),
        (
            "three",
            vec![
                "spec.cassandra.consistency THREE",
                "needs 3",
                keyspace.as_str(),
            ],
        ),
    ];
    for (name, words) in &cases {
        let message = true_for(sinks, name, "Stalled", "UnsafeConsistency").await;
        for word in words {
            assert!(message.contains(word), "{name}: `{word}` not in {message}");
        }
        assert!(
            fixture
                .deployments
                .get_opt(&format!("{name}-worker"))
                .await?
                .is_none(),
            "{name}: workers were started"
        );
    }
    patch_spec(
        sinks,
        "three",
        json!({ "cassandra": { "consistency": "LOCAL_QUORUM" } }),
    )
    .await?;
    eventually(
        "workers once corrected",
        Duration::from_secs(30),
        || async {
            fixture
                .deployments
                .get_opt("three-worker")
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    cassandra_sink_tests::fixtures::drop_keyspace(&fixture.session, &copies).await?;
    fixture.finish().await
}

/// The finalizer is on a sink only while deleting it has something to do: added for
/// `deletionPolicy: Delete`, removed when switched back to `Retain`, so deleting a sink that keeps
/// its positions never waits for the operator (a `helm uninstall` first leaves nothing stuck).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finalizer_is_there_only_while_the_deletion_policy_needs_it() -> anyhow::Result<()> {
    let fixture = Fixture::new("finalizer").await?;
    let (sinks, keyspace) = (&fixture.sinks, &fixture.keyspace);
    sinks
        .create(
            &PostParams::default(),
            &sink(
                keyspace,
                "kept",
                "INSERT INTO example.values (id, counter) VALUES (?, ?)",
            )?,
        )
        .await?;
    let finalizers = |sink: &CassandraSink| sink.metadata.finalizers.clone().unwrap_or_default();
    // Reconciled (it has a status), with no finalizer under the default Retain.
    let reconciled = eventually("a status", Duration::from_secs(30), || async {
        sinks
            .get("kept")
            .await
            .ok()
            .filter(|sink| sink.status.is_some())
    })
    .await;
    assert!(finalizers(&reconciled).is_empty(), "{reconciled:?}");

    patch_spec(sinks, "kept", json!({ "deletionPolicy": "Delete" })).await?;
    eventually(
        "the finalizer for Delete",
        Duration::from_secs(30),
        || async {
            let sink = sinks.get("kept").await.ok()?;
            finalizers(&sink)
                .contains(&controller::FINALIZER.to_owned())
                .then_some(())
        },
    )
    .await;
    patch_spec(sinks, "kept", json!({ "deletionPolicy": "Retain" })).await?;
    eventually(
        "no finalizer for Retain",
        Duration::from_secs(30),
        || async {
            let sink = sinks.get("kept").await.ok()?;
            finalizers(&sink).is_empty().then_some(())
        },
    )
    .await;

    // With the operator gone, deleting the sink completes at once.
    fixture.controller.abort();
    sinks.delete("kept", &DeleteParams::default()).await?;
    eventually("the sink gone", Duration::from_secs(10), || async {
        sinks.get_opt("kept").await.ok()?.is_none().then_some(())
    })
    .await;
    fixture.finish().await
}

/// Worker resources come from the spec; a memory limit that cannot hold two checkpoints of
/// `checkpoint.maxBytes` is refused before any worker could be killed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_resources_come_from_the_spec_and_must_hold_the_checkpoints() -> anyhow::Result<()> {
    let fixture = Fixture::new("resources").await?;
    let (sinks, keyspace) = (&fixture.sinks, &fixture.keyspace);
    let deployments = &fixture.deployments;
    let mut sized = sink(
        keyspace,
        "sized",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    sized.spec.resources = Some(serde_json::from_value(
        json!({ "limits": { "memory": "128Mi" }, "requests": { "cpu": 1 } }),
    )?);
    sinks.create(&PostParams::default(), &sized).await?;
    let message = true_for(sinks, "sized", "Stalled", "InsufficientMemory").await;
    assert!(
        message.contains("at least 192 MiB") && message.contains("checkpoint.maxBytes"),
        "{message}"
    );
    assert!(deployments.get_opt("sized-worker").await?.is_none());

    patch_spec(
        sinks,
        "sized",
        json!({ "resources": { "limits": { "memory": "512Mi" } } }),
    )
    .await?;
    let deployment = eventually("workers once it fits", Duration::from_secs(30), || async {
        deployments.get_opt("sized-worker").await.ok().flatten()
    })
    .await;
    let resources = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.containers.into_iter().next())
        .and_then(|container| container.resources)
        .expect("worker resources");
    let quantity = |map: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                    key: &str| {
        map.as_ref()
            .and_then(|map| map.get(key))
            .map(|quantity| quantity.0.clone())
    };
    assert_eq!(
        quantity(&resources.limits, "memory").as_deref(),
        Some("512Mi")
    );
    assert_eq!(quantity(&resources.requests, "cpu").as_deref(), Some("1"));
    assert_eq!(
        quantity(&resources.requests, "memory").as_deref(),
        Some("128Mi")
    );

    fixture.finish().await
}

/// The operator's sessions and Kafka clients are shared by the sinks with the same cluster and
/// credentials, and closed as soon as no sink uses them: when a Secret rotates (each sink moves to a
/// connection with the new version) and when the last sink using one is deleted. Before, they stayed
/// for as long as the operator ran (then ten idle minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_closed_as_soon_as_no_sink_uses_them() -> anyhow::Result<()> {
    use cassandra_sink_tests::{env_or, fixtures};

    let fixture = Fixture::new("connections").await?;
    let (sinks, keyspace) = (&fixture.sinks, &fixture.keyspace);
    let servers = cassandra_sink_tests::Settings::from_env();
    let topic = fixture.namespace.clone();
    fixtures::create_topic(&servers, &topic, 1).await?;
    let ca = std::fs::read_to_string(env_or("LOCALENV_TLS_CA", ""))?;
    let secrets: Api<Secret> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let secret = |name: &str, data: serde_json::Value, turn: u32| -> anyhow::Result<Secret> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name, "annotations": { "turn": turn.to_string() } },
            "stringData": data
        }))?)
    };
    let tls = json!({ "ca.crt": ca });
    let sasl = json!({ "username": env_or("KAFKA_SASL_USERNAME", "sink"),
                       "password": env_or("KAFKA_SASL_PASSWORD", "sink-secret") });
    secrets
        .create(&PostParams::default(), &secret("tls", tls.clone(), 1)?)
        .await?;
    secrets
        .create(&PostParams::default(), &secret("sasl", sasl.clone(), 1)?)
        .await?;
    for name in ["first", "second"] {
        let secured = secured_sink(keyspace, &topic, name, "tls", ("sasl", "tls"))?;
        sinks.create(&PostParams::default(), &secured).await?;
    }
    let open = || connections(&fixture.metrics);
    // Both sinks reconciled over TLS and SASL_SSL (their lag read): one session and one client,
    // shared.
    for name in ["first", "second"] {
        eventually(
            &format!("the lag of {name}"),
            Duration::from_secs(30),
            || async {
                let progress = sinks.get(name).await.ok()?.status?.progress?;
                progress.lag.is_some().then_some(())
            },
        )
        .await;
    }
    assert_eq!(open(), (1, 1));

    // The Secrets rotate (a new resource version each): each sink moves to connections of the new
    // version, which its workers roll to; the old ones are closed.
    let secrets_hash = |deployment: Deployment| {
        deployment
            .spec?
            .template
            .metadata?
            .annotations?
            .get("cassandra-sink.io/secrets-hash")
            .cloned()
    };
    let before = secrets_hash(fixture.deployments.get("first-worker").await?);
    secrets
        .replace("tls", &PostParams::default(), &secret("tls", tls, 2)?)
        .await?;
    secrets
        .replace("sasl", &PostParams::default(), &secret("sasl", sasl, 2)?)
        .await?;
    for name in ["first", "second"] {
        eventually(
            &format!("{name}'s workers rolled to the rotated Secrets"),
            Duration::from_secs(30),
            || async {
                let hash = secrets_hash(
                    fixture
                        .deployments
                        .get(&format!("{name}-worker"))
                        .await
                        .ok()?,
                );
                (hash.is_some() && hash != before).then_some(())
            },
        )
        .await;
    }
    connections_reach(
        &fixture.metrics,
        (1, 1),
        "the old versions' session and client still open",
    )
    .await;

    // A deleted sink (no finalizer under Retain) lets go of what it shared only when the other one
    // is deleted too.
    sinks.delete("first", &DeleteParams::default()).await?;
    eventually("first gone", Duration::from_secs(10), || async {
        sinks.get_opt("first").await.ok()?.is_none().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(open(), (1, 1), "second still uses them");
    sinks.delete("second", &DeleteParams::default()).await?;
    connections_reach(
        &fixture.metrics,
        (0, 0),
        "connections still open once no sink is left",
    )
    .await;
    fixture.finish().await
}

/// The operator's connection gauges: (Cassandra sessions, Kafka clients).
fn connections(metrics: &cassandra_sink_operator::metrics::Metrics) -> (i64, i64) {
    (
        metrics.cassandra_sessions.get(),
        metrics.kafka_clients.get(),
    )
}

/// Waits until the operator's connection gauges read `wanted`; fails with `what` and what they read
/// after 15 s.
async fn connections_reach(
    metrics: &cassandra_sink_operator::metrics::Metrics,
    wanted: (i64, i64),
    what: &str,
) {
    let open = || connections(metrics);
    let reached = tokio::time::timeout(Duration::from_secs(15), async {
        while open() != wanted {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{what}: (sessions, clients) = {:?}",
        open()
    );
}

/// A topic that does not exist is said on the status (`TopicMissing`, naming it), without stalling
/// the sink: its workers run and wait, and the sink goes on once the topic is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_said_on_the_status_until_it_is_created() -> anyhow::Result<()> {
    let fixture = Fixture::new("topicmissing").await?;
    let (sinks, keyspace) = (&fixture.sinks, &fixture.keyspace);
    let topic = format!("{}-later", fixture.namespace);
    let mut waiting = sink(
        keyspace,
        "waiting",
        "INSERT INTO example.values (id, counter) VALUES (?, ?)",
    )?;
    waiting.spec.source.kafka.topic = Some(topic.clone());
    sinks.create(&PostParams::default(), &waiting).await?;
    let message = true_for(sinks, "waiting", "Reconciling", "TopicMissing").await;
    assert!(message.contains(&topic), "{message}");
    let status = sinks.get("waiting").await?.status.unwrap_or_default();
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .find(|condition| condition.type_ == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} condition"))
    };
    assert_eq!(
        (
            condition("Ready").status.as_str(),
            condition("Ready").reason.as_str()
        ),
        ("False", "TopicMissing")
    );
    assert_eq!(
        condition("Stalled").status,
        "False",
        "it may be created any time"
    );
    assert!(
        fixture
            .deployments
            .get_opt("waiting-worker")
            .await?
            .is_some(),
        "the workers run and wait for the topic"
    );

    cassandra_sink_tests::fixtures::create_topic(
        &cassandra_sink_tests::Settings::from_env(),
        &topic,
        1,
    )
    .await?;
    eventually("the topic found", Duration::from_secs(30), || async {
        let status = sinks.get("waiting").await.ok()?.status?;
        let found = status
            .conditions
            .iter()
            .all(|condition| condition.reason != "TopicMissing");
        (found && status.progress?.partitions.len() == 1).then_some(())
    })
    .await;
    fixture.finish().await
}

/// A sink reading several topics shows each topic's partitions in its status, with their lag; a
/// pattern that would read the sink's own dead letters is refused before any worker starts, and so
/// is a topic's own statement that Cassandra refuses, named with its topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_topics_show_in_the_status_by_topic_and_partition() -> anyhow::Result<()> {
    use cassandra_sink_tests::fixtures;
    use cassandra_sink_tests::worker::Worker;

    let fixture = Fixture::new("severaltopics").await?;
    let (sinks, keyspace) = (&fixture.sinks, &fixture.keyspace);
    let servers = cassandra_sink_tests::Settings::from_env();
    let base = fixture.namespace.clone();
    let (orders, refunds) = (format!("{base}-orders"), format!("{base}-refunds"));
    fixtures::create_topic(&servers, &orders, 1).await?;
    fixtures::create_topic(&servers, &refunds, 2).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let spec = |source: serde_json::Value, extra: serde_json::Value| {
        let mut spec = json!({
            "cassandra": { "contactPoints": [servers.cassandra], "localDatacenter": "datacenter1" },
            "createQuery": format!("CREATE TABLE IF NOT EXISTS {keyspace}.values (id text PRIMARY KEY, counter int)"),
            "insertQuery": format!("INSERT INTO {keyspace}.values (id, counter) VALUES (?, ?)"),
            "committer": { "keyspace": keyspace, "table": "checkpoints" },
            "source": { "kafka": source },
            "checkpoint": { "interval": "200ms" },
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        spec
    };
    let several: CassandraSink = serde_json::from_value(json!({
        "apiVersion": "cassandra-sink.io/v1alpha1",
        "kind": "CassandraSink",
        "metadata": { "name": "several" },
        "spec": spec(
            json!({ "bootstrapServers": [servers.kafka], "topics": [orders, refunds] }),
            json!({}),
        ),
    }))?;
    sinks.create(&PostParams::default(), &several).await?;
    let config = eventually(
        "the rendered configuration",
        Duration::from_secs(30),
        || async {
            config_maps
                .get_opt("several-worker-config")
                .await
                .ok()
                .flatten()?
                .data?
                .get("sink.yaml")
                .cloned()
        },
    )
    .await;
    let dir = std::env::temp_dir().join(keyspace);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("several.yaml");
    std::fs::write(&path, config)?;
    let worker = Worker::start(&path, "several", &[]);
    let producer = fixtures::producer(&servers)?;
    for (topic, partition, count) in [(&orders, 0, 10), (&refunds, 0, 5), (&refunds, 1, 7)] {
        for index in 0..count {
            let value = format!("[\"{topic}-{partition}-{}\", {index}]", index % 3);
            fixtures::send(&producer, topic, partition, "k", value.as_bytes()).await?;
        }
    }
    let progress = eventually("both topics committed", Duration::from_secs(60), || async {
        let progress = sinks.get("several").await.ok()?.status?.progress?;
        (progress.records_committed == 22 && progress.lag == Some(0)).then_some(progress)
    })
    .await;
    let partitions: Vec<(String, i32, Option<i64>, Option<i64>)> = progress
        .partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition, p.committed_offset, p.lag))
        .collect();
    assert_eq!(
        partitions,
        vec![
            (orders.clone(), 0, Some(10), Some(0)),
            (refunds.clone(), 0, Some(5), Some(0)),
            (refunds.clone(), 1, Some(7), Some(0)),
        ]
    );
    assert!(worker.terminate(Duration::from_secs(30)).success());

    // A pattern that matches the dead-letter topic would read the sink's own invalid records.
    let looping: CassandraSink = serde_json::from_value(json!({
        "apiVersion": "cassandra-sink.io/v1alpha1",
        "kind": "CassandraSink",
        "metadata": { "name": "looping" },
        "spec": spec(
            json!({ "bootstrapServers": [servers.kafka], "topicPattern": format!("{base}-.*") }),
            json!({ "deadLetter": { "topic": format!("{base}-dead") } }),
        ),
    }))?;
    sinks.create(&PostParams::default(), &looping).await?;
    let message = degraded_for(sinks, "looping", "InvalidTopics").await;
    assert!(
        message.contains(&format!("dead-letter topic {base}-dead")),
        "{message}"
    );

    // A topic's own statement is prepared on the cluster like the sink's, and named when refused.
    let own: CassandraSink = serde_json::from_value(json!({
        "apiVersion": "cassandra-sink.io/v1alpha1",
        "kind": "CassandraSink",
        "metadata": { "name": "own" },
        "spec": spec(
            json!({ "bootstrapServers": [servers.kafka], "topics": [orders, refunds] }),
            json!({ "topicStatements": { refunds.clone(): {
                "insertQuery": format!("INSERT INTO {keyspace}.nothere (id, counter) VALUES (?, ?)")
            } } }),
        ),
    }))?;
    sinks.create(&PostParams::default(), &own).await?;
    let message = degraded_for(sinks, "own", "InvalidStatement").await;
    assert!(
        message.contains(&format!(
            "Cassandra refused spec.topicStatements.{refunds}.insertQuery"
        )),
        "{message}"
    );
    std::fs::remove_dir_all(dir).ok();
    fixture.finish().await
}
