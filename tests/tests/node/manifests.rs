//! `kubectl apply -f deploy/cassandra-sink-operator.yaml`, the plain manifests (the operator watching
//! every namespace), then a sink in a namespace of its own: the same result as with Helm.

use std::time::Duration;

use cassandra_sink_tests::node::{Node, ensure_images, repository};

const MANIFESTS: &str = "deploy/cassandra-sink-operator.yaml";
const SYSTEM: &str = "cassandra-sink-system";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_manifests_run_a_sink_exactly_once() -> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let node = Node::from_env();
    ensure_images()?;
    let manifests = repository().join(MANIFESTS).display().to_string();
    // Server-side, taking over fields an earlier Helm install of the CRD owns, as an upgrade would.
    node.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &manifests,
    ])?;
    node.kubectl(&[
        "rollout",
        "status",
        "deployment/cassandra-sink-operator",
        "-n",
        SYSTEM,
        "--timeout=180s",
    ])?;

    let namespace = node.namespace("manifests")?;
    let mut scenario = node.ready_sink(&namespace, "manifests", 2, 2).await?;
    scenario.produce(4_000, 100).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(240))
        .await?;
    scenario.assert_applied_once("values").await?;

    node.delete_namespace(&namespace)?;
    // Everything the manifests made but the CRD (other tests' sinks may still use it).
    node.kubectl(&["delete", "namespace", SYSTEM, "--timeout=120s"])?;
    node.kubectl(&[
        "delete",
        "clusterrole,clusterrolebinding",
        "cassandra-sink-operator",
        "--ignore-not-found",
    ])?;
    scenario.clean_up().await
}
