//! Shared helpers for the integration tests: where the real servers are, and unique names so tests can
//! run side by side without seeing each other's keyspaces, topics or namespaces.
//!
//! The servers come from `scripts/localenv.sh up`; its `env` command prints the variables read here.
//! Nothing here falls back to a fake: a test whose server is missing fails with the address it tried.

pub mod cluster;
pub mod fixtures;
pub mod node;
pub mod nodes;
pub mod scenario;
pub mod worker;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the local servers listen, read from the environment with the local defaults of
/// `scripts/localenv.sh`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cassandra contact point, `host:port`.
    pub cassandra: String,
    /// Kafka bootstrap servers, comma separated.
    pub kafka: String,
    /// How keyspaces and topics are replicated, when the servers are the local clusters; one copy
    /// in the node's datacenter otherwise.
    pub cluster: Option<ClusterLayout>,
}

/// Replication on the local clusters (`scripts/localenv.sh cluster up`).
#[derive(Debug, Clone)]
pub struct ClusterLayout {
    /// The datacenter workers and tests write in.
    pub datacenter: String,
    /// Copies of a keyspace in each datacenter.
    pub keyspace_copies: Vec<(String, u32)>,
    /// Copies of each topic partition.
    pub topic_copies: i32,
}

impl Settings {
    /// Reads `CASSANDRA_CONTACT_POINTS` and `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn from_env() -> Self {
        Self {
            cassandra: env_or("CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042"),
            kafka: env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            cluster: None,
        }
    }

    /// The local clusters (`eval "$(scripts/localenv.sh cluster env)"`): keyspaces with three copies
    /// in dc1, topics with three copies.
    pub fn cluster() -> Self {
        Self {
            cassandra: env_or(
                "CLUSTER_CASSANDRA_CONTACT_POINTS",
                "127.0.1.1:9142,127.0.1.2:9142,127.0.1.3:9142",
            ),
            kafka: env_or(
                "CLUSTER_KAFKA_BOOTSTRAP_SERVERS",
                "127.0.2.1:9192,127.0.2.2:9192,127.0.2.3:9192",
            ),
            cluster: Some(ClusterLayout {
                datacenter: "dc1".to_owned(),
                keyspace_copies: vec![("dc1".to_owned(), 3)],
                topic_copies: 3,
            }),
        }
    }

    /// Cassandra's contact points, one by one.
    pub fn contact_points(&self) -> Vec<String> {
        self.cassandra
            .split(',')
            .map(|point| point.trim().to_owned())
            .collect()
    }

    /// The contact points as the items of a YAML flow list: `"a:9042", "b:9042"`.
    pub fn contact_points_yaml(&self) -> String {
        self.contact_points()
            .iter()
            .map(|point| format!("\"{point}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The datacenter workers write in.
    pub fn datacenter(&self) -> &str {
        self.cluster
            .as_ref()
            .map_or("datacenter1", |layout| layout.datacenter.as_str())
    }
}

/// Selects ring as the process's TLS crypto provider. The scylla driver's rustls brings aws-lc-rs too,
/// and with two providers linked rustls cannot pick one for kube's client by itself.
pub fn install_crypto_provider() {
    // Err means one is installed already (another test got there first): nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The value of an environment variable, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A name that no other test run on this machine uses: `prefix`, the process id, a counter and the time.
/// Lower case letters, digits and `_` only, so it is a valid CQL identifier; callers that need a DNS
/// label replace `_` with `-`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() % 1_000_000)
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{millis}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_cql_identifiers() {
        let first = unique_name("ks");
        let second = unique_name("ks");
        assert_ne!(first, second);
        for name in [first, second] {
            assert!(
                name.len() <= 48,
                "{name} is longer than a CQL keyspace name may be"
            );
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name} is not a plain CQL identifier"
            );
        }
    }
}
