//! Shared helpers for the integration tests: where the real servers are, and unique names so tests can
//! run side by side without seeing each other's keyspaces, topics or namespaces.
//!
//! The servers come from `scripts/localenv.sh up`; its `env` command prints the variables read here.
//! Nothing here falls back to a fake: a test whose server is missing fails with the address it tried.

pub mod cluster;
pub mod fixtures;
pub mod node;
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
}

impl Settings {
    /// Reads `CASSANDRA_CONTACT_POINTS` and `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn from_env() -> Self {
        Self {
            cassandra: env_or("CASSANDRA_CONTACT_POINTS", "127.0.0.1:9042"),
            kafka: env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        }
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
