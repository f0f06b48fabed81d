//! What standard tools make of a sink's status, computed from the objects the operator wrote, read
//! live: kstatus (sigs.k8s.io/cli-utils, as Flux uses it), `kubectl wait`, and Argo CD's health
//! check (gitops/argocd/health.lua in Lua 5.4). Through a statement Cassandra refuses, its fix, a
//! stop, and a worker that stops for good (its positions behind what Kafka still holds).

use std::process::{Command, Stdio};
use std::time::Duration;

use cassandra_sink_tests::env_or;
use cassandra_sink_tests::fixtures;
use cassandra_sink_tests::node::{Node, repository, sink, workers};
use cassandra_sink_tests::scenario::Scenario;

/// kstatus's verdict (`Current`, `InProgress`, `Failed`…) on the sink as the API server has it now.
fn kstatus(node: &Node, namespace: &str) -> anyhow::Result<String> {
    let json = node.sink_json(namespace, "values")?;
    let mut child = Command::new(env_or("KSTATUS", "kstatus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), json.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "kstatus: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Waits until kstatus computes `wanted` (the first word of its verdict); returns every verdict seen.
fn kstatus_until(node: &Node, namespace: &str, wanted: &str) -> anyhow::Result<Vec<String>> {
    let mut seen: Vec<String> = Vec::new();
    node.wait_for(
        &format!("kstatus {wanted}"),
        Duration::from_secs(240),
        || {
            let verdict = kstatus(node, namespace)?;
            let status = verdict.split(' ').next().unwrap_or_default().to_owned();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            Ok((status == wanted).then_some(()))
        },
    )
    .map_err(|error| anyhow::anyhow!("{error}; seen {seen:?}\n{}", node.describe(namespace)))?;
    Ok(seen)
}

/// A JSON value as a Lua table constructor.
fn lua(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "nil".to_owned(),
        serde_json::Value::Bool(flag) => flag.to_string(),
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::String(text) => format!("{text:?}"),
        serde_json::Value::Array(items) => {
            format!(
                "{{{}}}",
                items.iter().map(lua).collect::<Vec<_>>().join(", ")
            )
        }
        serde_json::Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(key, value)| format!("[{key:?}] = {}", lua(value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Argo CD's verdict from gitops/argocd/health.lua on the sink as the API server has it now.
fn argo_health(node: &Node, namespace: &str) -> anyhow::Result<String> {
    let json = node.sink_json(namespace, "values")?;
    let object: serde_json::Value = serde_json::from_str(&json)?;
    let script = format!(
        "obj = {}\nlocal hs = dofile({:?})\nprint(hs.status)",
        lua(&object),
        repository()
            .join("gitops/argocd/health.lua")
            .display()
            .to_string()
    );
    let output = Command::new("lua5.4").args(["-e", &script]).output()?;
    anyhow::ensure!(
        output.status.success(),
        "lua5.4: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_kubectl_wait_and_argo_cd_read_each_state_of_a_sink() -> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let (node, namespace) = Node::with_operator("kstatus")?;
    let mut scenario = Scenario::new("kstatus", 1, "").await?;
    scenario.sink_id = format!("{namespace}/values");

    // A column Cassandra does not know: Failed for kstatus, Stalled for kubectl, Degraded for Argo.
    let manifest = sink(&node, &scenario, "values", "  parallelism: 1\n")
        .replace("(id, counter, seq) VALUES", "(id, countr, seq) VALUES");
    node.apply(&namespace, &manifest)?;
    node.wait_condition(&namespace, "values", "Stalled")?;
    kstatus_until(&node, &namespace, "Failed")?;
    assert_eq!(argo_health(&node, &namespace)?, "Degraded");
    assert!(node.pods(&namespace, &workers("values"))?.is_empty());

    // Corrected: in progress while the worker starts, then current.
    let keyspace = &scenario.keyspace;
    node.patch_sink(
        &namespace,
        "values",
        serde_json::json!({
            "insertQuery": format!("INSERT INTO {keyspace}.values (id, counter, seq) VALUES (?, ?, ?)")
        }),
    )?;
    let seen = kstatus_until(&node, &namespace, "Current")?;
    assert!(seen.contains(&"InProgress".to_owned()), "{seen:?}");
    node.wait_condition(&namespace, "values", "Ready")?;
    assert_eq!(argo_health(&node, &namespace)?, "Healthy");
    scenario.produce(500, 50).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(120))
        .await?;

    // Stopped: current once the worker is gone, which is what the spec asks.
    node.patch_sink(
        &namespace,
        "values",
        serde_json::json!({ "state": "stopped" }),
    )?;
    kstatus_until(&node, &namespace, "Current")?;
    node.wait_condition(&namespace, "values", "Ready")?;
    assert!(node.pods(&namespace, &workers("values"))?.is_empty());
    assert_eq!(argo_health(&node, &namespace)?, "Suspended");

    // Positions reset to the start, and the start deleted from Kafka (retention would): the worker
    // finds its range gone and stops for good; the sink says so instead of crash-looping quietly.
    node.reset_positions(&namespace, "values", "earliest")?;
    fixtures::delete_records(&scenario.settings, &scenario.topic, 0, 100).await?;
    node.patch_sink(
        &namespace,
        "values",
        serde_json::json!({ "state": "running" }),
    )?;
    node.wait_condition(&namespace, "values", "Stalled")?;
    kstatus_until(&node, &namespace, "Failed")?;
    let message = node.kubectl(&[
        "get",
        "cassandrasink",
        "values",
        "-n",
        &namespace,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Stalled\")].message}",
    ])?;
    assert!(
        message.contains("reason=RangeGone") && message.contains("worker pod"),
        "{message}"
    );
    assert_eq!(argo_health(&node, &namespace)?, "Degraded");

    node.kubectl(&["delete", "cassandrasink", "values", "-n", &namespace])?;
    node.uninstall(&namespace)?;
    scenario.clean_up().await
}
