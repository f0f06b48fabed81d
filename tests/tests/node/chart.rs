//! The user's first path: `helm install` of the chart, the seed's example as a CassandraSink, worker
//! pods that become Ready, data exactly once through a worker pod and the operator pod killed
//! mid-stream, then `kubectl delete csink` and `helm uninstall` leaving nothing behind.

use std::process::Command;
use std::time::Duration;

use cassandra_sink_tests::node::{Node, OPERATOR, seed_sink, workers};
use cassandra_sink_tests::scenario::Scenario;

/// `kubectl auth can-i VERB RESOURCE` as the operator's ServiceAccount: "yes" or "no".
fn operator_can(
    node: &Node,
    namespace: &str,
    verb: &str,
    resource: &str,
    scope: &[&str],
) -> String {
    let output = Command::new(cassandra_sink_tests::env_or("KUBECTL", "kubectl"))
        .arg("--kubeconfig")
        .arg(&node.kubeconfig)
        .args(["auth", "can-i", verb, resource])
        .args(scope)
        .arg(format!(
            "--as=system:serviceaccount:{namespace}:sink-operator"
        ))
        .output()
        .expect("run kubectl auth can-i");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_seed_example_exactly_once_through_pod_kills() -> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let (node, namespace) = Node::with_operator("chart")?;

    // The operator pod runs as the chart's ServiceAccount, with what the chart grants and no more.
    let operators = node.pods(&namespace, OPERATOR)?;
    assert_eq!(operators.len(), 1, "{operators:?}");
    let account = node.kubectl(&[
        "get",
        "pod",
        &operators[0],
        "-n",
        &namespace,
        "-o",
        "jsonpath={.spec.serviceAccountName}",
    ])?;
    assert_eq!(account, "sink-operator");
    let here = ["-n", namespace.as_str()];
    assert_eq!(
        operator_can(&node, &namespace, "patch", "cassandrasinks", &here),
        "yes"
    );
    assert_eq!(
        operator_can(&node, &namespace, "list", "secrets", &["-A"]),
        "no"
    );
    assert_eq!(
        operator_can(&node, &namespace, "create", "pods", &here),
        "no"
    );

    // The seed's example, adapted only for addresses and names.
    let mut scenario = Scenario::new("chart", 3, "").await?.seed_shaped();
    scenario.sink_id = format!("{namespace}/values");
    node.apply(
        &namespace,
        &seed_sink(&node, &scenario.keyspace, &scenario.topic, "values")?,
    )?;
    node.wait_ready(&namespace, "values")?;
    node.wait_workers(&namespace, "values", 3)?;

    // A stream that updates 200 keys many times; a worker pod dies mid-stream, then the operator's.
    scenario.produce(2_000, 200).await?;
    let killed = node.pods(&namespace, &workers("values"))?;
    node.kill_pod(&namespace, &killed[0])?;
    scenario.produce(2_000, 200).await?;
    node.kill_pod(&namespace, &operators[0])?;
    scenario.produce(2_000, 200).await?;

    let caught_up = scenario
        .wait_until_caught_up(Duration::from_secs(240))
        .await;
    if let Err(error) = caught_up {
        anyhow::bail!(
            "{error}\n{}\n{}",
            node.describe(&namespace),
            node.logs(&namespace, &workers("values"))
        );
    }
    scenario.assert_applied_once("values").await?;
    // The killed pods were replaced, by pods of their own.
    node.wait_workers(&namespace, "values", 3)?;
    let operators_now = node.pods(&namespace, OPERATOR)?;
    assert!(
        operators_now.len() == 1 && operators_now[0] != operators[0],
        "{operators_now:?}"
    );
    node.wait_ready(&namespace, "values")?;

    // Deleted with deletionPolicy Delete: the committer rows go, so do the workers, and nothing
    // is left Terminating.
    node.patch_sink(
        &namespace,
        "values",
        serde_json::json!({ "deletionPolicy": "Delete" }),
    )?;
    node.kubectl(&[
        "delete",
        "cassandrasink",
        "values",
        "-n",
        &namespace,
        "--timeout=120s",
    ])?;
    assert!(
        scenario.committed().await?.is_empty(),
        "committer rows left"
    );
    node.wait_for("the workers to be gone", Duration::from_secs(120), || {
        Ok(node
            .pods(&namespace, &workers("values"))?
            .is_empty()
            .then_some(()))
    })?;
    node.uninstall(&namespace)?;
    scenario.clean_up().await
}
