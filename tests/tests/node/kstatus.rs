//! What standard tools make of a sink's status, computed from the objects the operator wrote, read
//! live: kstatus (sigs.k8s.io/cli-utils, as Flux uses it), `kubectl wait`, and Argo CD's health
//! check (gitops/argocd/health.lua in Lua 5.4). Through a statement Cassandra refuses, its fix, a
//! stop, and a worker that stops for good (its positions behind what Kafka still holds).

use std::process::{Command, Stdio};
use std::time::Duration;

use cassandra_sink_tests::env_or;
use cassandra_sink_tests::fixtures;
use cassandra_sink_tests::node::{Node, ensure_images, repository, sink, workers};
use cassandra_sink_tests::scenario::Scenario;

/// kstatus's verdict (`Current`, `InProgress`, `Failed`…) on the sink as the API server has it now.
fn kstatus(node: &Node, namespace: &str) -> anyhow::Result<String> {
    let json = node.kubectl(&[
        "get",
        "cassandrasink",
        "values",
        "-n",
        namespace,
        "-o",
        "json",
    ])?;
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
    let json = node.kubectl(&[
        "get",
        "cassandrasink",
        "values",
        "-n",
        namespace,
        "-o",
        "json",
    ])?;
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

fn wait_condition(node: &Node, namespace: &str, condition: &str) -> anyhow::Result<()> {
    node.kubectl(&[
        "wait",
        &format!("--for=condition={condition}"),
        "cassandrasink/values",
        "-n",
        namespace,
        "--timeout=240s",
    ])
    .map(drop)
}

fn patch(node: &Node, namespace: &str, spec: &str) -> anyhow::Result<()> {
    node.kubectl(&[
        "patch",
        "cassandrasink",
        "values",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{spec}}}"#),
    ])
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_kubectl_wait_and_argo_cd_read_each_state_of_a_sink() -> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let node = Node::from_env();
    ensure_images()?;
    let namespace = node.namespace("kstatus")?;
    node.install_operator(&namespace, "sink-operator", &[])?;
    let mut scenario = Scenario::new("kstatus", 1, "").await?;
    scenario.sink_id = format!("{namespace}/values");

    // A column Cassandra does not know: Failed for kstatus, Stalled for kubectl, Degraded for Argo.
    let manifest = sink(&node, &scenario, "values", "  parallelism: 1\n")
        .replace("(id, counter, seq) VALUES", "(id, countr, seq) VALUES");
    node.apply(&namespace, &manifest)?;
    wait_condition(&node, &namespace, "Stalled")?;
    kstatus_until(&node, &namespace, "Failed")?;
    assert_eq!(argo_health(&node, &namespace)?, "Degraded");
    assert!(node.pods(&namespace, &workers("values"))?.is_empty());

    // Corrected: in progress while the worker starts, then current.
    let fixed = scenario.keyspace.clone();
    patch(
        &node,
        &namespace,
        &format!(
            r#"{{"insertQuery":"INSERT INTO {fixed}.values (id, counter, seq) VALUES (?, ?, ?)"}}"#
        ),
    )?;
    let seen = kstatus_until(&node, &namespace, "Current")?;
    assert!(seen.contains(&"InProgress".to_owned()), "{seen:?}");
    wait_condition(&node, &namespace, "Ready")?;
    assert_eq!(argo_health(&node, &namespace)?, "Healthy");
    scenario.produce(500, 50).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(120))
        .await?;

    // Stopped: current once the worker is gone, which is what the spec asks.
    patch(&node, &namespace, r#"{"state":"stopped"}"#)?;
    kstatus_until(&node, &namespace, "Current")?;
    wait_condition(&node, &namespace, "Ready")?;
    assert!(node.pods(&namespace, &workers("values"))?.is_empty());
    assert_eq!(argo_health(&node, &namespace)?, "Suspended");

    // Positions reset to the start, and the start deleted from Kafka (retention would): the worker
    // finds its range gone and stops for good; the sink says so instead of crash-looping quietly.
    node.kubectl(&[
        "annotate",
        "cassandrasink",
        "values",
        "-n",
        &namespace,
        "cassandra-sink.io/reset-positions=earliest",
    ])?;
    node.kubectl(&[
        "wait",
        "--for=jsonpath={.status.positionsReset.phase}=Applied",
        "cassandrasink/values",
        "-n",
        &namespace,
        "--timeout=120s",
    ])?;
    fixtures::delete_records(&scenario.settings, &scenario.topic, 0, 100).await?;
    patch(&node, &namespace, r#"{"state":"running"}"#)?;
    wait_condition(&node, &namespace, "Stalled")?;
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
    node.helm(&["uninstall", "sink-operator", "-n", &namespace, "--wait"])?;
    node.delete_namespace(&namespace)?;
    scenario.clean_up().await
}
