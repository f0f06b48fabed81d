//! `cassandra-sink-operator-bench`: the operator at scale on the local API server. Creates N
//! CassandraSinks (1,000 by default), waits until the operator has applied every Deployment, then
//! changes the parallelism of a sample of sinks one at a time and measures, for each, the time from the
//! spec change to the Deployment carrying it. Prints p50/p99/max of that latency and the operator's peak
//! RSS. The operator binary is given (a release build).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cassandra_sink_operator::crd::CassandraSink;
use cassandra_sink_tests::worker::free_port;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Operator scale benchmark.
#[derive(Debug, Parser)]
struct Options {
    /// CassandraSinks to create.
    #[arg(long, default_value_t = 1000)]
    sinks: usize,
    /// Spec changes to time.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// The operator binary (a release build).
    #[arg(long, default_value = "target/release/cassandra-sink-operator")]
    operator: PathBuf,
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    anyhow::ensure!(
        options.operator.is_file(),
        "{} is missing",
        options.operator.display()
    );
    cassandra_sink_tests::install_crypto_provider();
    let client = kube::Client::try_default().await?;

    cassandra_sink_tests::cluster::install_crd(&client).await?;
    // The operator runs each sink's DDL before it starts workers, so the sinks point at the local
    // Cassandra (one keyspace, one committer table shared by all) and Kafka (topics absent: no lag).
    let servers = cassandra_sink_tests::Settings::from_env();
    let session = cassandra_sink_tests::fixtures::cassandra(&servers).await?;
    let keyspace = cassandra_sink_tests::unique_name("scale");
    cassandra_sink_tests::fixtures::create_keyspace(&session, &keyspace).await?;
    let namespace = keyspace.replace('_', "-");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    cassandra_sink_tests::cluster::create_namespace(&client, &namespace).await?;

    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("{namespace}-operator.log")))?;
    let mut operator = Command::new(&options.operator)
        .args([
            "--namespace",
            &namespace,
            "--lease-namespace",
            &namespace,
            "--identity",
            "bench",
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--progress-interval", "10m"])
        .env(
            "RUST_LOG",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;

    let sinks: Api<CassandraSink> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let started = Instant::now();
    eprintln!("creating {} CassandraSinks in {namespace}", options.sinks);
    let created = futures::stream::iter(0..options.sinks)
        .map(|index| {
            let sinks = sinks.clone();
            let (servers, keyspace) = (&servers, &keyspace);
            async move {
                let sink: CassandraSink = serde_json::from_value(json!({
                    "apiVersion": "cassandra-sink.io/v1alpha1",
                    "kind": "CassandraSink",
                    "metadata": { "name": format!("sink-{index:04}") },
                    "spec": {
                        "cassandra": { "contactPoints": [servers.cassandra], "localDatacenter": "datacenter1" },
                        "insertQuery": format!("INSERT INTO {keyspace}.t (id, v) VALUES (?, ?)"),
                        "committer": { "keyspace": keyspace, "table": "checkpoints" },
                        "source": { "kafka": { "bootstrapServers": [servers.kafka], "topic": format!("t{index}") } }
                    }
                }))
                .expect("a valid sink");
                sinks.create(&PostParams::default(), &sink).await.is_ok()
            }
        })
        .buffer_unordered(32)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    anyhow::ensure!(created == options.sinks, "created only {created} sinks");
    loop {
        let count = deployments
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if count >= options.sinks {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "only {count} Deployments after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle = started.elapsed();
    eprintln!(
        "all {} Deployments applied after {:.1} s; timing {} spec changes",
        options.sinks,
        settle.as_secs_f64(),
        options.changes
    );

    let mut latencies = Vec::with_capacity(options.changes);
    for change in 0..options.changes {
        let name = format!("sink-{:04}", (change * 7919) % options.sinks);
        let replicas = 2 + (change % 5) as i32;
        let begin = Instant::now();
        sinks
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "parallelism": replicas } })),
            )
            .await?;
        let deployment = format!("{name}-worker");
        loop {
            let current = deployments.get(&deployment).await?;
            if current.spec.and_then(|spec| spec.replicas) == Some(replicas) {
                break;
            }
            anyhow::ensure!(
                begin.elapsed() < Duration::from_secs(60),
                "{deployment} not updated in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(begin.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let rss = peak_rss_mib(operator.id());

    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| CassandraSinks | {} (all children applied {:.1} s after the first was created) |",
        options.sinks,
        settle.as_secs_f64()
    );
    println!(
        "| spec change → Deployment applied, p50 / p99 / max | {:.0} / {:.0} / {:.0} ms ({} changes) |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );
    println!("| operator peak RSS | {rss:.1} MiB |");

    // Delete the sinks while the operator still runs, so that it lifts its finalizers; their children
    // and the namespace go too where a garbage collector and namespace controller run.
    sinks
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && !sinks
            .list_metadata(&ListParams::default())
            .await?
            .items
            .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;
    operator.kill()?;
    operator.wait()?;
    cassandra_sink_tests::fixtures::drop_keyspace(&session, &keyspace).await?;
    Ok(())
}
