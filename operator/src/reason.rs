//! Every `reason` a condition of a CassandraSink can carry, in one enum: the status is written from it,
//! the metrics and events label with it, and docs/troubleshooting.md is checked against it by a test,
//! so a reason cannot appear without being explained there.

use std::fmt;

/// Why a condition has its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `spec.cassandra.contactPoints` is empty.
    NoContactPoints,
    /// `spec.source.kafka.bootstrapServers` is empty.
    NoBootstrapServers,
    /// `spec.parallelism` is below 1.
    InvalidParallelism,
    /// A keyspace or table name is not a plain CQL identifier.
    InvalidIdentifier,
    /// A statement cannot be read, or Cassandra refused to prepare it.
    InvalidStatement,
    /// The statement cannot be applied exactly once (P5).
    NotExactlyOnce,
    /// The mapping does not fit the prepared statement's markers.
    InvalidMapping,
    /// The topics to read are not named right (a name Kafka refuses, more than one way of naming
    /// them, a pattern that is no regular expression or that matches the dead-letter topic).
    InvalidTopics,
    /// The key or value format cannot work: Avro without a schema registry, a registry no Avro part
    /// uses, or a registry URL that is not an `http(s)://` base URL.
    InvalidFormat,
    /// A consistency level that the keyspace's replication makes unsafe (a committed checkpoint
    /// lost with one node) or impossible.
    UnsafeConsistency,
    /// The checkpoint limits cannot fit in the workers' memory limit.
    InsufficientMemory,
    /// A Secret named by the spec does not exist.
    SecretMissing,
    /// A Secret lacks a key the workers read.
    SecretKeyMissing,
    /// The operator cannot read a Secret it needs (its RBAC).
    SecretUnreadable,
    /// Cassandra refused the sink's DDL.
    SchemaFailed,
    /// Cassandra refused the credentials or a permission the sink needs.
    Unauthorized,
    /// A TLS handshake with Cassandra failed on a certificate.
    TlsFailed,
    /// The operator cannot reach the sink's Cassandra now.
    CassandraUnreachable,
    /// Kafka refused the sink's credentials or certificate, or librdkafka a property.
    KafkaRefused,
    /// The brokers answered, but the sink's topic does not exist (yet): the workers wait for it.
    TopicMissing,
    /// A worker stopped on a failure that restarting it cannot cure (the message quotes it).
    WorkerFailed,
    /// Every worker of the current spec is ready.
    WorkersReady,
    /// Some workers are starting, rolling or not ready.
    WorkersNotReady,
    /// The Deployment is being brought to the spec.
    RollingOut,
    /// The Deployment matches the spec.
    RolledOut,
    /// Nothing is wrong.
    AsExpected,
    /// `spec.state: paused`.
    Paused,
    /// `spec.state: stopped`.
    Stopped,
    /// Paused or stopped, and workers are still committing and leaving.
    Stopping,
}

impl Reason {
    /// Every reason, in the order of docs/troubleshooting.md's table.
    pub const ALL: [Reason; 29] = [
        Reason::NoContactPoints,
        Reason::NoBootstrapServers,
        Reason::InvalidParallelism,
        Reason::InvalidIdentifier,
        Reason::InvalidStatement,
        Reason::NotExactlyOnce,
        Reason::InvalidMapping,
        Reason::InvalidTopics,
        Reason::InvalidFormat,
        Reason::UnsafeConsistency,
        Reason::InsufficientMemory,
        Reason::SecretMissing,
        Reason::SecretKeyMissing,
        Reason::SecretUnreadable,
        Reason::SchemaFailed,
        Reason::Unauthorized,
        Reason::TlsFailed,
        Reason::CassandraUnreachable,
        Reason::KafkaRefused,
        Reason::TopicMissing,
        Reason::WorkerFailed,
        Reason::WorkersReady,
        Reason::WorkersNotReady,
        Reason::RollingOut,
        Reason::RolledOut,
        Reason::AsExpected,
        Reason::Paused,
        Reason::Stopped,
        Reason::Stopping,
    ];

    /// The CamelCase text written into conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoContactPoints => "NoContactPoints",
            Reason::NoBootstrapServers => "NoBootstrapServers",
            Reason::InvalidParallelism => "InvalidParallelism",
            Reason::InvalidIdentifier => "InvalidIdentifier",
            Reason::InvalidStatement => "InvalidStatement",
            Reason::NotExactlyOnce => "NotExactlyOnce",
            Reason::InvalidMapping => "InvalidMapping",
            Reason::InvalidTopics => "InvalidTopics",
            Reason::InvalidFormat => "InvalidFormat",
            Reason::UnsafeConsistency => "UnsafeConsistency",
            Reason::InsufficientMemory => "InsufficientMemory",
            Reason::SecretMissing => "SecretMissing",
            Reason::SecretKeyMissing => "SecretKeyMissing",
            Reason::SecretUnreadable => "SecretUnreadable",
            Reason::SchemaFailed => "SchemaFailed",
            Reason::Unauthorized => "Unauthorized",
            Reason::TlsFailed => "TlsFailed",
            Reason::CassandraUnreachable => "CassandraUnreachable",
            Reason::KafkaRefused => "KafkaRefused",
            Reason::TopicMissing => "TopicMissing",
            Reason::WorkerFailed => "WorkerFailed",
            Reason::WorkersReady => "WorkersReady",
            Reason::WorkersNotReady => "WorkersNotReady",
            Reason::RollingOut => "RollingOut",
            Reason::RolledOut => "RolledOut",
            Reason::AsExpected => "AsExpected",
            Reason::Paused => "Paused",
            Reason::Stopped => "Stopped",
            Reason::Stopping => "Stopping",
        }
    }

    /// True when the sink cannot go on until a person changes something (the spec, a Secret, a grant
    /// in Cassandra): it is then `Stalled`, which tools such as Flux and kstatus report as failed.
    /// The others are retried by the operator and the workers by themselves.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Reason::NoContactPoints
                | Reason::NoBootstrapServers
                | Reason::InvalidParallelism
                | Reason::InvalidIdentifier
                | Reason::InvalidStatement
                | Reason::NotExactlyOnce
                | Reason::InvalidMapping
                | Reason::InvalidTopics
                | Reason::InvalidFormat
                | Reason::UnsafeConsistency
                | Reason::InsufficientMemory
                | Reason::SecretMissing
                | Reason::SecretKeyMissing
                | Reason::SecretUnreadable
                | Reason::SchemaFailed
                | Reason::Unauthorized
                | Reason::TlsFailed
                | Reason::KafkaRefused
                | Reason::WorkerFailed
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_and_spelt_as_its_name() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            assert!(seen.insert(reason), "{reason:?} is listed twice");
            assert_eq!(format!("{reason:?}"), reason.as_str());
        }
    }

    /// docs/troubleshooting.md explains every condition reason, and no reason that does not exist.
    #[test]
    fn the_troubleshooting_page_explains_exactly_these_reasons() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/troubleshooting.md");
        let page = std::fs::read_to_string(&path).expect("docs/troubleshooting.md");
        let section = page
            .split("## Condition reasons")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a `## Condition reasons` section");
        let documented: std::collections::BTreeSet<String> = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .flat_map(|line| {
                let first = line.split('|').nth(1).unwrap_or_default();
                first
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let known: std::collections::BTreeSet<String> = Reason::ALL
            .iter()
            .map(|reason| reason.as_str().to_owned())
            .collect();
        assert_eq!(
            documented, known,
            "docs/troubleshooting.md's condition reasons differ from operator/src/reason.rs"
        );
    }
}
