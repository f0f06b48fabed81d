//! A worker process killed with SIGKILL on the node — a crash, not a pod deletion: the kubelet restarts
//! its container in the same pod, under the same name, and the worker takes its partitions back as
//! soon as it rejoins its consumer group (a static member named after the pod) instead of after the
//! group's session timeout. Nothing is lost or repeated.

use std::time::{Duration, Instant};

use cassandra_sink_tests::node::{Node, workers};

/// The host pid of the worker process in pod `uid` (the node's kubelet uses cgroupfs: the pod's
/// cgroup path holds `pod<uid>`).
fn worker_pid(uid: &str) -> anyhow::Result<u32> {
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let command = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cgroup.contains(&format!("pod{uid}"))
            && String::from_utf8_lossy(&command).contains("cassandra-sink-worker")
        {
            return Ok(pid);
        }
    }
    anyhow::bail!("no worker process in pod {uid}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_on_the_node_takes_its_partitions_back_in_its_pod()
-> anyhow::Result<()> {
    let _turn = super::one_at_a_time().await;
    let (node, namespace) = Node::with_operator("crash")?;
    let mut scenario = node.ready_sink(&namespace, "crash", 2, 1).await?;
    // A long session timeout, so that waiting for it and not waiting cannot be mistaken for each
    // other on a slow machine.
    node.patch_sink(
        &namespace,
        "values",
        serde_json::json!({ "source": { "kafka": { "properties": { "session.timeout.ms": "30000" } } } }),
    )?;
    node.kubectl(&[
        "rollout",
        "status",
        "deployment/values-worker",
        "-n",
        &namespace,
        "--timeout=240s",
    ])?;
    node.wait_workers(&namespace, "values", 1)?;
    scenario.produce(1_000, 100).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(120))
        .await?;

    let pods = node.pods(&namespace, &workers("values"))?;
    let [pod] = pods.as_slice() else {
        anyhow::bail!("one worker pod expected: {pods:?}");
    };
    let field = |path: &str| {
        node.kubectl(&[
            "get",
            "pod",
            pod,
            "-n",
            &namespace,
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let uid = field("{.metadata.uid}")?;
    let pid = worker_pid(uid.trim())?;
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -9 {pid}");
    scenario.produce(1_000, 100).await?;
    scenario
        .wait_until_caught_up(Duration::from_secs(120))
        .await?;
    let took = killed.elapsed();

    // The same pod, its container restarted once, caught up well before a 30 s session timeout.
    let restarts = field("{.status.containerStatuses[0].restartCount}")?;
    assert_eq!(restarts.trim(), "1", "{}", node.describe(&namespace));
    assert!(
        took < Duration::from_secs(15),
        "the restarted worker caught up {took:?} after the kill, as if it waited for the session \
         timeout:\n{}",
        node.logs(&namespace, &workers("values"))
    );
    scenario.assert_applied_once("values").await?;
    node.uninstall(&namespace)?;
    scenario.clean_up().await
}
