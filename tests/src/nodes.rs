//! The local clusters' nodes (`scripts/localenv.sh cluster up`), stopped the ways a node stops in
//! production: killed (-9) or frozen (SIGSTOP), and brought back. Shared by the cluster tests and the
//! benchmark's node-loss part.

use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{Settings, env_or};

/// The pid `scripts/localenv.sh` recorded for a cluster node (`cluster-cassandra-2`,
/// `cluster-kafka-1`, ...).
pub fn pid_of(node: &str) -> String {
    let path = std::path::Path::new(&env_or("LOCALENV_PID_DIR", ".localenv/pids"))
        .join(format!("{node}.pid"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .trim()
        .to_owned()
}

/// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to a cluster node.
pub fn signal(node: &str, signal: &str) {
    let pid = pid_of(node);
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {node} ({pid})");
}

/// Starts stopped nodes again, side by side, and waits until each is ready (`scripts/localenv.sh
/// cluster start`).
pub fn start(nodes: &[&str]) {
    let script = env_or("LOCALENV_SCRIPT", "scripts/localenv.sh");
    let status = Command::new("bash")
        .args([script.as_str(), "cluster", "start"])
        .args(nodes)
        .status()
        .expect("run localenv.sh");
    assert!(status.success(), "{nodes:?} did not start again");
}

/// Nodes killed (-9) or frozen (SIGSTOP), brought back when dropped: killed ones started again,
/// frozen ones thawed. Dropped on a failed assertion too, so the next user finds the cluster whole.
pub struct Down {
    killed: Vec<&'static str>,
    frozen: Vec<&'static str>,
}

impl Down {
    /// Kills `nodes` with SIGKILL: no goodbye to their peers or clients.
    pub fn kill(nodes: &[&'static str]) -> Self {
        for node in nodes {
            signal(node, "-KILL");
        }
        Down {
            killed: nodes.to_vec(),
            frozen: Vec::new(),
        }
    }

    /// Freezes `nodes` with SIGSTOP: their connections stay open and requests sent to them wait.
    pub fn freeze(nodes: &[&'static str]) -> Self {
        for node in nodes {
            signal(node, "-STOP");
        }
        Down {
            killed: Vec::new(),
            frozen: nodes.to_vec(),
        }
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        for node in &self.frozen {
            signal(node, "-CONT");
        }
        if !self.killed.is_empty() {
            // A killed process may take a moment to be reaped before its port is free.
            std::thread::sleep(Duration::from_millis(500));
            start(&self.killed);
        }
    }
}

/// The broker that leads partition 0 of `topic`, as `cluster-kafka-<id>`.
pub fn leader_of_partition_0(settings: &Settings, topic: &str) -> anyhow::Result<&'static str> {
    leader_of(settings, topic, 0)
}

/// The broker that coordinates consumer group `group`, as `cluster-kafka-<id>`: the leader of the
/// group's partition of `__consumer_offsets`.
pub fn coordinator_of(settings: &Settings, group: &str) -> anyhow::Result<&'static str> {
    leader_of(
        settings,
        "__consumer_offsets",
        offsets_partition(group, OFFSETS_PARTITIONS),
    )
}

/// Partitions of `__consumer_offsets`: Kafka's default `offsets.topic.num.partitions`, which
/// `scripts/localenv/cluster.sh` leaves alone.
const OFFSETS_PARTITIONS: i32 = 50;

/// The partition of `__consumer_offsets` that holds `group`, as Kafka places it: the absolute value
/// of Java's `String.hashCode` of the name (0 for `i32::MIN`), modulo the partition count.
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let absolute = if hash == i32::MIN { 0 } else { hash.abs() };
    absolute % partitions
}

/// The broker that leads `partition` of `topic`, as `cluster-kafka-<id>`.
fn leader_of(settings: &Settings, topic: &str, partition: i32) -> anyhow::Result<&'static str> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let leader = metadata
        .topics()
        .first()
        .and_then(|found| found.partitions().iter().find(|p| p.id() == partition))
        .map(|found| found.leader())
        .ok_or_else(|| anyhow::anyhow!("no metadata for {topic}/{partition}"))?;
    match leader {
        1 => Ok("cluster-kafka-1"),
        2 => Ok("cluster-kafka-2"),
        3 => Ok("cluster-kafka-3"),
        other => anyhow::bail!("{topic}/{partition} is led by broker {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::offsets_partition;

    #[test]
    fn a_group_lands_where_kafka_puts_it() {
        // Java: "".hashCode() == 0, "a".hashCode() == 97, "hello".hashCode() == 99162322,
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(offsets_partition("", 50), 0);
        assert_eq!(offsets_partition("a", 50), 97 % 50);
        assert_eq!(offsets_partition("hello", 50), 99_162_322 % 50);
        assert_eq!(offsets_partition("polygenelubricants", 50), 0);
        // Java: "zzzzzz".hashCode() == -685785664, placed by its absolute value.
        assert_eq!(offsets_partition("zzzzzz", 50), 685_785_664 % 50);
    }
}
