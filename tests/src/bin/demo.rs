//! `cassandra-sink-demo`: the seed's example end to end on the local servers, through the operator.
//!
//! It starts the operator against the local API server and applies a `CassandraSink` (the seed's table
//! and statement). The operator renders the worker Deployment and its configuration; with no kubelet
//! here, the demo plays it: it runs the workers as local processes with exactly the configuration the
//! operator rendered, and reports their readiness in the Deployment's status. It then feeds a generated
//! stream that updates the same keys many times, shows progress every second, kills one worker with -9
//! half-way (and starts it again), and ends by checking that the table holds exactly the last value sent
//! for every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use cassandra_sink_operator::crd::CassandraSink;
use cassandra_sink_tests::Settings;
use cassandra_sink_tests::fixtures::{self, create_topic};
use cassandra_sink_tests::worker::{Worker, free_port};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const RECORDS: usize = 20_000;
const KEYS: usize = 500;
const PARTITIONS: i32 = 3;
const WORKERS: usize = 2;
const NAMESPACE: &str = "demo";

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?
        .parent()
        .context("binary folder")?
        .join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: cargo build --bins",
        binary.display()
    );
    Ok(binary)
}

async fn committed(session: &scylla::client::session::Session, sink_id: &str) -> i64 {
    fixtures::committed(session, "example", "checkpoints", sink_id, PARTITIONS)
        .await
        .unwrap_or_default()
        .values()
        .filter_map(|(offset, _, _)| *offset)
        .sum()
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_operator(dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("operator.log"))?;
    Ok(Command::new(sibling_binary("cassandra-sink-operator")?)
        .args([
            "--namespace",
            NAMESPACE,
            "--lease-namespace",
            NAMESPACE,
            "--identity",
            "demo",
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--worker-image", "cassandra-sink-worker:0.1.0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?)
}

async fn sink_status(sinks: &Api<CassandraSink>, name: &str) -> String {
    let Ok(sink) = sinks.get(name).await else {
        return "?".to_owned();
    };
    sink.status
        .map(|status| {
            status
                .conditions
                .iter()
                .map(|c| format!("{}={} ({})", c.type_, c.status, c.reason))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cassandra_sink_tests::install_crypto_provider();
    let settings = Settings::from_env();
    let session = fixtures::cassandra(&settings).await?;
    let datacenter = fixtures::datacenter(&session).await?;
    fixtures::create_keyspace(&session, "example").await?;
    session
        .query_unpaged("DROP TABLE IF EXISTS example.values", ())
        .await?;
    session.await_schema_agreement().await?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let name = format!("values-{run}");
    create_topic(&settings, &name, PARTITIONS).await?;
    let dir = std::env::temp_dir().join(format!("cassandra-sink-demo-{run}"));
    std::fs::create_dir_all(&dir)?;

    // The CRD, a namespace, the operator.
    let client = kube::Client::try_default().await?;
    cassandra_sink_tests::cluster::install_crd(&client).await?;
    cassandra_sink_tests::cluster::create_namespace(&client, NAMESPACE).await?;
    let mut operator = start_operator(&dir)?;
    println!(
        "operator started (log {})",
        dir.join("operator.log").display()
    );

    // The user's part: one CassandraSink.
    let sinks: Api<CassandraSink> = Api::namespaced(client.clone(), NAMESPACE);
    let sink: CassandraSink = serde_json::from_value(json!({
        "apiVersion": "cassandra-sink.io/v1alpha1",
        "kind": "CassandraSink",
        "metadata": { "name": name },
        "spec": {
            "cassandra": { "contactPoints": [settings.cassandra], "localDatacenter": datacenter },
            "createQuery": "CREATE TABLE IF NOT EXISTS example.values (id text PRIMARY KEY, counter int);",
            "insertQuery": "INSERT INTO example.values (id, counter) VALUES (?, ?);",
            "committer": { "keyspace": "example", "table": "checkpoints" },
            "source": { "kafka": { "bootstrapServers": [settings.kafka], "topic": name } },
            "checkpoint": { "interval": "500ms" },
            "parallelism": WORKERS
        }
    }))?;
    sinks.create(&PostParams::default(), &sink).await?;
    println!(
        "applied CassandraSink {NAMESPACE}/{name} (topic {name}, {PARTITIONS} partitions -> example.values)"
    );

    // The operator's part: the Deployment and the rendered worker configuration.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment_name = format!("{name}-worker");
    let deployment = wait_for("the worker Deployment", || async {
        deployments.get_opt(&deployment_name).await.ok().flatten()
    })
    .await?;
    let config = wait_for("the worker configuration", || async {
        let map = config_maps
            .get_opt(&format!("{name}-worker-config"))
            .await
            .ok()
            .flatten()?;
        map.data?.get("sink.yaml").cloned()
    })
    .await?;
    let config_path = dir.join("sink.yaml");
    std::fs::write(&config_path, &config)?;
    println!(
        "operator rendered Deployment {deployment_name} ({} replicas) and its configuration; status: {}",
        deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or_default(),
        sink_status(&sinks, &name).await
    );

    // Playing the kubelet: the workers run as local processes with the rendered configuration.
    let binary = sibling_binary("cassandra-sink-worker")?;
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|index| {
            Worker::start_binary(
                &binary,
                &config_path,
                &format!("{deployment_name}-{index}"),
                &[],
            )
        })
        .collect();
    wait_for("the workers to be ready", || async {
        workers
            .iter()
            .all(|worker| worker.get("/readyz").map(|(status, _)| status) == Some(200))
            .then_some(())
    })
    .await?;
    // Playing the Deployment controller: report the ready workers; the operator turns it into Ready.
    let generation = deployments.get(&deployment_name).await?.metadata.generation;
    deployments
        .patch_status(
            &deployment_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": {
                "observedGeneration": generation, "replicas": WORKERS,
                "updatedReplicas": WORKERS, "readyReplicas": WORKERS
            }})),
        )
        .await?;
    wait_for("the sink to be Ready", || async {
        sink_status(&sinks, &name)
            .await
            .contains("Ready=True")
            .then_some(())
    })
    .await?;
    println!(
        "workers ready; status: {}",
        sink_status(&sinks, &name).await
    );

    let sink_id = format!("{NAMESPACE}/{name}");
    let producer = fixtures::producer(&settings)?;
    let mut expected: BTreeMap<String, i32> = BTreeMap::new();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut killed = false;
    const BATCH: usize = 400;
    for batch in 0..RECORDS / BATCH {
        // A batch is enqueued in order (the producer is idempotent, so order per partition holds),
        // then a pause: a steady stream rather than one burst.
        let mut sends = Vec::with_capacity(BATCH);
        for index in batch * BATCH..(batch + 1) * BATCH {
            let id = format!("key-{}", index % KEYS);
            let counter = (index / KEYS) as i32;
            let value = serde_json::json!([id, counter]).to_string();
            let partition = (index % KEYS) as i32 % PARTITIONS;
            expected.insert(id.clone(), counter);
            let producer = &producer;
            let topic = &name;
            sends.push(async move {
                fixtures::send(producer, topic, partition, &id, value.as_bytes()).await
            });
        }
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let produced = (batch + 1) * BATCH;
        if !killed && produced >= RECORDS / 2 {
            println!(
                "{:>5.1}s  kill -9 one worker mid-stream, start it again",
                started.elapsed().as_secs_f64()
            );
            let victim = workers.remove(0);
            victim.kill();
            workers.push(Worker::start_binary(
                &binary,
                &config_path,
                &format!("{deployment_name}-0"),
                &[],
            ));
            killed = true;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            println!(
                "{:>5.1}s  produced {:>6}  committed {:>6}",
                started.elapsed().as_secs_f64(),
                produced,
                committed(&session, &sink_id).await
            );
            last_report = Instant::now();
        }
    }
    loop {
        let done = committed(&session, &sink_id).await;
        println!(
            "{:>5.1}s  produced {RECORDS:>6}  committed {done:>6}",
            started.elapsed().as_secs_f64()
        );
        if done as usize >= RECORDS {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "not caught up"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for worker in workers {
        let status = worker.terminate(Duration::from_secs(30));
        anyhow::ensure!(
            status.success(),
            "a worker did not stop cleanly: {status:?}"
        );
    }

    let rows = session
        .query_unpaged("SELECT id, counter FROM example.values", ())
        .await?
        .into_rows_result()?
        .rows::<(String, i32)>()?
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    anyhow::ensure!(
        rows == expected,
        "example.values differs from the last value sent per key ({} rows, {} keys)",
        rows.len(),
        expected.len()
    );
    println!(
        "OK: example.values holds exactly the last value of each of the {KEYS} keys from {RECORDS} records, \
         despite a kill -9 mid-stream"
    );
    sinks.delete(&name, &DeleteParams::default()).await?;
    operator.kill()?;
    operator.wait()?;
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}
