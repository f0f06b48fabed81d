//! `kubectl scale csink/... --replicas 3` and back to 1 while records arrive: partitions move between
//! worker pods (each move a claim that fences the previous owner) and nothing is lost or repeated.

use std::time::Duration;

use cassandra_sink_tests::node::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_to_three_workers_and_back_under_load_keeps_exactly_once() -> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let (node, namespace) = Node::with_operator("scale")?;
    let mut scenario = node.ready_sink(&namespace, "scale", 3, 1).await?;
    scenario.produce(1_500, 150).await?;

    let scale = |replicas: &str| {
        node.kubectl(&[
            "scale",
            "cassandrasink/values",
            "-n",
            &namespace,
            &format!("--replicas={replicas}"),
        ])
    };
    let (produced, scaled) = tokio::join!(scenario.produce(3_000, 150), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        scale("3")
    });
    produced?;
    scaled?;
    node.wait_workers(&namespace, "values", 3)?;
    node.wait_ready(&namespace, "values")?;
    let (produced, scaled) = tokio::join!(scenario.produce(3_000, 150), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        scale("1")
    });
    produced?;
    scaled?;
    node.wait_workers(&namespace, "values", 1)?;

    scenario
        .wait_until_caught_up(Duration::from_secs(240))
        .await?;
    let committed = scenario.assert_applied_once("values").await?;
    // Every partition changed hands at least twice (one worker → three → one): each move a claim.
    for (partition, (_, epoch, _)) in &committed {
        assert!(
            *epoch >= 2,
            "partition {partition} was claimed only {epoch} times: {committed:?}"
        );
    }
    let parallelism = node.kubectl(&[
        "get",
        "cassandrasink",
        "values",
        "-n",
        &namespace,
        "-o",
        "jsonpath={.spec.parallelism}",
    ])?;
    assert_eq!(parallelism, "1");
    node.uninstall(&namespace)?;
    scenario.clean_up().await
}
