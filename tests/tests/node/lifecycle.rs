//! Pause, stop, a position reset and resume through the API, on real pods; then `kubectl delete csink`
//! under the default deletion policy (Retain): the sink goes at once and its positions stay.

use std::time::Duration;

use cassandra_sink_tests::node::Node;

fn set_state(node: &Node, namespace: &str, state: &str) -> anyhow::Result<()> {
    node.patch_sink(namespace, "values", serde_json::json!({ "state": state }))
}

/// The workers are gone and the sink says so (Progressing False once nothing is left to stop).
fn wait_halted(node: &Node, namespace: &str) -> anyhow::Result<()> {
    node.wait_workers(namespace, "values", 0)?;
    node.wait_condition(namespace, "values", "Progressing=False")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stop_reset_and_resume_work_on_pods() -> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let (node, namespace) = Node::with_operator("lifecycle")?;
    let mut scenario = node.ready_sink(&namespace, "lifecycle", 2, 2).await?;
    scenario.produce(1_500, 100).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(180))
        .await?;

    // Paused: no worker runs and nothing more is committed, whatever arrives.
    set_state(&node, &namespace, "paused")?;
    wait_halted(&node, &namespace)?;
    let paused_at = scenario.committed().await?;
    scenario.produce(1_000, 100).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scenario.committed().await?,
        paused_at,
        "committed while paused"
    );

    // Resumed: the workers come back and pick up where the committer table says.
    set_state(&node, &namespace, "running")?;
    node.wait_ready(&namespace, "values")?;
    scenario
        .wait_until_caught_up(Duration::from_secs(180))
        .await?;
    let before_reset = scenario.assert_applied_once("values").await?;

    // Stopped, then every position reset to the earliest offset Kafka holds.
    set_state(&node, &namespace, "stopped")?;
    wait_halted(&node, &namespace)?;
    node.reset_positions(&namespace, "values", "earliest")?;
    let reset = scenario.committed().await?;
    for (partition, (offset, epoch, _)) in &reset {
        assert_eq!(*offset, Some(0), "partition {partition}: {reset:?}");
        assert!(
            *epoch > before_reset[partition].1,
            "partition {partition}'s epoch did not move on: {reset:?}"
        );
    }

    // Running again: the whole topic is applied again, and the table ends as it was.
    set_state(&node, &namespace, "running")?;
    node.wait_ready(&namespace, "values")?;
    scenario
        .wait_until_caught_up(Duration::from_secs(180))
        .await?;
    assert_eq!(scenario.table().await?, scenario.expected);

    // The default deletion policy keeps the positions, and deleting does not wait on anything.
    node.kubectl(&[
        "delete",
        "cassandrasink",
        "values",
        "-n",
        &namespace,
        "--timeout=60s",
    ])?;
    assert_eq!(
        scenario.committed().await?.len(),
        2,
        "positions were not kept"
    );
    node.uninstall(&namespace)?;
    scenario.clean_up().await
}
