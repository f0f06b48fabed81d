//! `cassandra-sink-demo`: the seed's example end to end on a real Kubernetes node
//! (`scripts/localenv.sh up --node`), the way a user runs the product.
//!
//! The operator is installed with `helm install` into the namespace `demo` and runs as a pod under
//! the chart's ServiceAccount; the seed's example (`examples/seed.yaml`, pointed at the local
//! servers) is applied as a CassandraSink; the operator creates the table and starts three worker
//! pods. A generated stream updates the same keys many times while progress is shown every second;
//! half-way one worker pod is killed (`kubectl delete pod --grace-period=0 --force`). The demo ends
//! by checking that `example.values` holds exactly the last value sent for every key, and leaves the
//! sink running for a look around with kubectl.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cassandra_sink_tests::Settings;
use cassandra_sink_tests::fixtures::{self, create_topic};
use cassandra_sink_tests::node::{Node, ensure_images, seed_sink, workers};
use scylla::client::session::Session;

const RECORDS: usize = 30_000;
const KEYS: usize = 500;
const PARTITIONS: i32 = 3;
const NAMESPACE: &str = "demo";
const SINK: &str = "values";
const RELEASE: &str = "cassandra-sink-operator";

/// Committed offset and owner of each partition, from the committer table.
async fn positions(session: &Session, sink_id: &str, topic: &str) -> BTreeMap<i32, (i64, String)> {
    let key = cassandra_sink_worker::committer::row_key(sink_id, topic);
    let mut positions = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let row = session
            .query_unpaged(
                "SELECT committed_offset, owner FROM example.checkpoints \
                 WHERE sink_id = ? AND source_partition = ?",
                (&key, partition),
            )
            .await
            .ok()
            .and_then(|result| result.into_rows_result().ok())
            .and_then(|rows| {
                rows.maybe_first_row::<(Option<i64>, Option<String>)>()
                    .ok()
                    .flatten()
            });
        if let Some((offset, owner)) = row {
            positions.insert(partition, (offset.unwrap_or(0), owner.unwrap_or_default()));
        }
    }
    positions
}

/// A worker pod killed mid-stream: when, and the partitions it owned with their committed offsets.
struct Kill {
    at: Instant,
    victim: String,
    owned: Vec<(i32, i64)>,
}

impl Kill {
    /// The stall, once every partition the killed pod owned has been committed again by another
    /// worker: from the kill to that commit.
    fn stall(&self, now: &BTreeMap<i32, (i64, String)>) -> Option<Duration> {
        self.owned
            .iter()
            .all(|(partition, offset)| {
                now.get(partition)
                    .is_some_and(|(moved, owner)| moved > offset && *owner != self.victim)
            })
            .then(|| self.at.elapsed())
    }
}

fn committed(positions: &BTreeMap<i32, (i64, String)>) -> i64 {
    positions.values().map(|(offset, _)| offset).sum()
}

/// The sink's printer columns, as `kubectl get csink` shows them.
fn sink_line(node: &Node) -> String {
    node.kubectl(&[
        "get",
        "cassandrasink",
        SINK,
        "-n",
        NAMESPACE,
        "--no-headers",
    ])
    .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
    .unwrap_or_else(|_| "?".to_owned())
}

/// A clean namespace: the previous run's release and sink go first.
fn fresh_namespace(node: &Node) -> anyhow::Result<()> {
    let exists = node.kubectl(&[
        "get",
        "namespace",
        NAMESPACE,
        "--ignore-not-found",
        "-o",
        "name",
    ])?;
    if !exists.trim().is_empty() {
        println!("removing the previous run's namespace {NAMESPACE}");
        node.kubectl(&[
            "delete",
            "cassandrasinks",
            "--all",
            "-n",
            NAMESPACE,
            "--timeout=60s",
        ])?;
        node.helm(&[
            "uninstall",
            RELEASE,
            "-n",
            NAMESPACE,
            "--wait",
            "--ignore-not-found",
        ])?;
        node.delete_namespace(NAMESPACE)?;
    }
    node.kubectl(&["create", "namespace", NAMESPACE])?;
    node.kubectl(&[
        "label",
        "namespace",
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    Ok(())
}

/// The next record of the stream, `["key-N", counter]`: 500 keys, each updated again and again, each
/// key always on the same partition. Counts it and remembers the key's last value.
fn record(produced: &mut usize, expected: &mut BTreeMap<String, i32>) -> (String, String, i32) {
    let index = *produced;
    let id = format!("key-{}", index % KEYS);
    let counter = (index / KEYS) as i32;
    let value = serde_json::json!([id, counter]).to_string();
    let partition = (index % KEYS) as i32 % PARTITIONS;
    expected.insert(id.clone(), counter);
    *produced += 1;
    (id, value, partition)
}

fn elapsed(started: Instant) -> String {
    format!("{:>6.1}s", started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cassandra_sink_tests::install_crypto_provider();
    let node = Node::from_env();
    let settings = Settings::from_env();
    let session = fixtures::cassandra(&settings).await?;

    println!("building the operator and worker images and importing them into the node");
    ensure_images()?;
    fresh_namespace(&node)?;

    // The seed's keyspace and a new topic; the tables are the operator's to create. A previous
    // run's committer rows (sink demo/values, kept by the default deletionPolicy: Retain) would point
    // at that run's topic.
    fixtures::create_keyspace(&session, "example").await?;
    for table in [
        "values",
        "checkpoints",
        "checkpoints_positions",
        "checkpoints_topic_positions",
        "checkpoints_dead_letter",
    ] {
        session
            .query_unpaged(format!("DROP TABLE IF EXISTS example.{table}"), ())
            .await?;
    }
    session.await_schema_agreement().await?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let topic = format!("values-{run}");
    create_topic(&settings, &topic, PARTITIONS).await?;
    let producer = fixtures::producer(&settings)?;
    let mut expected: BTreeMap<String, i32> = BTreeMap::new();
    let mut produced = 0;
    // One record per partition before anything runs, so the first checkpoint can commit at once.
    for _ in 0..PARTITIONS {
        let (id, value, partition) = record(&mut produced, &mut expected);
        fixtures::send(&producer, &topic, partition, &id, value.as_bytes()).await?;
    }

    let started = Instant::now();
    println!(
        "{} helm install {RELEASE} (namespace {NAMESPACE}, waiting for the operator pod)",
        elapsed(started)
    );
    node.install_operator(NAMESPACE, RELEASE, &[])?;
    println!(
        "{} operator Ready; applying the seed's example as CassandraSink {NAMESPACE}/{SINK}",
        elapsed(started)
    );
    node.apply(NAMESPACE, &seed_sink(&node, "example", &topic, SINK)?)?;
    let sink_id = format!("{NAMESPACE}/{SINK}");
    loop {
        if committed(&positions(&session, &sink_id, &topic).await) >= i64::from(PARTITIONS) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint committed after 300 s:\n{}",
            node.describe(NAMESPACE)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_commit = started.elapsed();
    println!(
        "{} first checkpoint committed ({:.1}s after helm install); sink: {}",
        elapsed(started),
        first_commit.as_secs_f64(),
        sink_line(&node)
    );
    node.wait_ready(NAMESPACE, SINK)?;
    println!(
        "{} kubectl wait --for=condition=Ready: {}",
        elapsed(started),
        sink_line(&node)
    );

    const BATCH: usize = 500;
    let mut last_report = Instant::now();
    let mut kill: Option<Kill> = None;
    let mut stall: Option<Duration> = None;
    while produced < RECORDS {
        // A batch is enqueued in order (the producer is idempotent, so order per partition holds),
        // then a pause: a steady stream rather than one burst.
        let mut sends = Vec::with_capacity(BATCH);
        for _ in 0..BATCH.min(RECORDS - produced) {
            let (id, value, partition) = record(&mut produced, &mut expected);
            let producer = &producer;
            let topic = &topic;
            sends.push(async move {
                fixtures::send(producer, topic, partition, &id, value.as_bytes()).await
            });
        }
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = positions(&session, &sink_id, &topic).await;
        if kill.is_none() && produced >= RECORDS / 2 {
            let pods = node.pods(NAMESPACE, &workers(SINK))?;
            let victim = pods.first().cloned().unwrap_or_default();
            let owned: Vec<(i32, i64)> = now
                .iter()
                .filter(|(_, (_, owner))| *owner == victim)
                .map(|(partition, (offset, _))| (*partition, *offset))
                .collect();
            println!(
                "{} kubectl delete pod {victim} --grace-period=0 --force (it owned partitions {:?})",
                elapsed(started),
                owned
                    .iter()
                    .map(|(partition, _)| partition)
                    .collect::<Vec<_>>()
            );
            node.kill_pod(NAMESPACE, &victim)?;
            kill = Some(Kill {
                at: Instant::now(),
                victim,
                owned,
            });
        }
        if stall.is_none()
            && let Some(measured) = kill.as_ref().and_then(|kill| kill.stall(&now))
        {
            stall = Some(measured);
            println!(
                "{} its partitions commit again, under another worker, {:.1}s after the kill",
                elapsed(started),
                measured.as_secs_f64()
            );
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            println!(
                "{} produced {produced:>6}  committed {:>6}  sink: {}",
                elapsed(started),
                committed(&now),
                sink_line(&node)
            );
            last_report = Instant::now();
        }
    }
    loop {
        let now = positions(&session, &sink_id, &topic).await;
        if stall.is_none()
            && let Some(measured) = kill.as_ref().and_then(|kill| kill.stall(&now))
        {
            stall = Some(measured);
        }
        let done = committed(&now);
        println!(
            "{} produced {produced:>6}  committed {done:>6}  sink: {}",
            elapsed(started),
            sink_line(&node)
        );
        if done as usize >= RECORDS {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not caught up:\n{}\n{}",
            node.describe(NAMESPACE),
            node.logs(NAMESPACE, &workers(SINK))
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
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
        "OK: example.values holds exactly the last value of each of the {KEYS} keys from {RECORDS} \
         records, despite a worker pod killed mid-stream"
    );
    println!(
        "measured: helm install -> first committed checkpoint {:.1}s; worker pod killed -> its \
         partitions committing again {}",
        first_commit.as_secs_f64(),
        stall.map_or_else(
            || "not seen (the other workers had finished its partitions)".to_owned(),
            |stall| format!("{:.1}s", stall.as_secs_f64())
        )
    );
    println!("sink: {}", sink_line(&node));
    Ok(())
}
