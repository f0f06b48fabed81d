//! The sink's DDL, run by the operator once per change of what it creates, instead of by every worker
//! on every start: N workers racing the same CREATE TABLE on a multi-node Cassandra can leave nodes
//! disagreeing about the table's identity, and a typo in `createQuery` would otherwise show only as
//! crash-looping pods. The digest of what was run is kept in `status.appliedSchema`; the workers are
//! rendered `manageSchema: false`.

use cassandra_sink_worker::config::SinkConfig;
use cassandra_sink_worker::schema::{self, SchemaError};

use crate::access::Secrets;
use crate::build::hash;
use crate::committer::{CommitterError, Sessions};
use crate::crd::CassandraSink;
use crate::validate::Problem;

/// Why the DDL could not be run.
#[derive(Debug, thiserror::Error)]
pub enum SchemaStepError {
    /// No session on a cluster (unreachable, refused credentials, unreadable Secret).
    #[error(transparent)]
    Session(#[from] CommitterError),
    /// Cassandra refused a statement.
    #[error(transparent)]
    Refused(#[from] SchemaError),
}

impl SchemaStepError {
    /// The condition problem this error shows as.
    pub fn problem(&self) -> Problem {
        match self {
            SchemaStepError::Session(CommitterError::Access(error)) => Problem {
                reason: "SecretUnreadable",
                message: format!("the operator cannot run the sink's DDL: {error}"),
            },
            SchemaStepError::Session(error) => Problem {
                reason: "CassandraUnreachable",
                message: format!(
                    "the operator cannot run the sink's DDL: {error}; it retries, and starts the \
                     workers once the tables exist"
                ),
            },
            SchemaStepError::Refused(error) => Problem {
                reason: "SchemaFailed",
                message: format!(
                    "Cassandra refused the sink's DDL: {error}; correct spec.createQuery (or create \
                     the missing keyspace), the operator retries"
                ),
            },
        }
    }
}

/// The statements the DDL runs and where, as a digest: when it changes, the DDL runs again.
pub fn digest(config: &SinkConfig) -> String {
    let committer_points = config
        .committer
        .cassandra
        .as_ref()
        .map(|cluster| cluster.contact_points.join(","))
        .unwrap_or_default();
    hash(&format!(
        "{}|{}|{:?}|{}.{}|{:?}",
        config.cassandra.contact_points.join(","),
        committer_points,
        config.create_query,
        config.committer.keyspace,
        config.committer.table,
        schema::dead_letter_table(config),
    ))
}

/// Runs the sink's DDL through the operator's sessions.
pub async fn run(
    secrets: &Secrets,
    sessions: &Sessions,
    sink: &CassandraSink,
    config: &SinkConfig,
) -> Result<(), SchemaStepError> {
    let data = sessions.data_session(secrets, sink).await?;
    let committer = sessions.committer_session(secrets, sink).await?;
    schema::apply(config, &data, &committer).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::sink_config;
    use crate::crd::tests_support::seed_sink;

    #[test]
    fn the_digest_changes_with_what_the_ddl_creates_and_only_with_that() {
        let base = seed_sink();
        let digest_of = |sink: &CassandraSink| digest(&sink_config(sink).expect("config"));
        let mut scaled = base.clone();
        scaled.spec.parallelism = 7;
        scaled.spec.insert_query = "INSERT INTO example.values (id) VALUES (?)".to_owned();
        assert_eq!(digest_of(&base), digest_of(&scaled));

        let mut created = base.clone();
        created.spec.create_query =
            Some("CREATE TABLE example.other (id text PRIMARY KEY)".to_owned());
        assert_ne!(digest_of(&base), digest_of(&created));

        let mut committer = base.clone();
        committer.spec.committer.table = "positions2".to_owned();
        assert_ne!(digest_of(&base), digest_of(&committer));

        let mut moved = base.clone();
        moved.spec.cassandra.contact_points = vec!["other.db.svc:9042".to_owned()];
        assert_ne!(digest_of(&base), digest_of(&moved));
    }
}
