//! `helm upgrade` to a new worker image under load: the operator pod is replaced, renders the worker
//! Deployment with the new image, and the workers roll one pod at a time; nothing is lost or repeated.

use std::process::Command;
use std::time::Duration;

use cassandra_sink_tests::node::{Node, repository, run, workers};
use cassandra_sink_tests::worker::project_binary;

/// The worker image again, under a new tag, imported into the node: what a user's CI would publish.
fn import_worker_image(tag: &str) -> anyhow::Result<String> {
    let image = format!("cassandra-sink-worker:{tag}");
    let archive = std::env::temp_dir().join(format!("cassandra-sink-worker-{tag}.oci.tar"));
    run(Command::new("python3")
        .arg(repository().join("scripts/oci_image.py"))
        .arg(project_binary("cassandra-sink-worker"))
        .arg(&image)
        .arg(&archive))?;
    run(Command::new(repository().join("scripts/localenv.sh"))
        .arg("import")
        .arg(&archive))?;
    std::fs::remove_file(archive).ok();
    Ok(image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_upgrade_to_a_new_worker_image_rolls_the_workers_without_loss() -> anyhow::Result<()>
{
    let _turn = super::one_at_a_time().await;
    let (node, namespace) = Node::with_operator("upgrade")?;
    let image = import_worker_image("0.1.0-upgrade")?;
    let mut scenario = node.ready_sink(&namespace, "upgrade", 2, 2).await?;
    let before = node.pods(&namespace, &workers("values"))?;
    scenario.produce(1_500, 100).await?;

    let chart = Node::chart();
    let (produced, upgraded) = tokio::join!(scenario.produce(4_000, 100), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        node.helm(&[
            "upgrade",
            "sink-operator",
            &chart,
            "-n",
            &namespace,
            "--reuse-values",
            "--set",
            "workerImage.tag=0.1.0-upgrade",
            "--wait",
            "--timeout",
            "180s",
        ])
    });
    produced?;
    upgraded?;

    // Every worker pod is new and runs the new image.
    node.wait_for("the workers on the new image", Duration::from_secs(240), || {
        let images = node.kubectl(&[
            "get",
            "pods",
            "-n",
            &namespace,
            "-l",
            &workers("values"),
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])?;
        let pods: Vec<Vec<&str>> = images.lines().map(|line| line.split(' ').collect()).collect();
        Ok((pods.len() == 2
            && pods.iter().all(|pod| {
                !before.iter().any(|old| old == pod[0]) && pod[1] == image && pod[2] == "True"
            }))
        .then_some(()))
    })?;
    scenario
        .wait_until_caught_up(Duration::from_secs(240))
        .await?;
    scenario.assert_applied_once("values").await?;
    node.uninstall(&namespace)?;
    scenario.clean_up().await
}
