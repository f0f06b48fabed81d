//! The sink's DDL: the user's `createQuery`, the committer table with its positions mirror, and the
//! dead-letter table. A standalone worker runs it on each start; under the operator the operator runs
//! it once per change of the spec and the workers skip it (`manageSchema: false`), because N workers
//! racing the same CREATE TABLE on a multi-node cluster can leave the nodes disagreeing about the
//! table's identity.

use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError, SchemaAgreementError};

use crate::committer;
use crate::config::{DeadLetterConfig, SinkConfig};

/// Why the DDL did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A statement failed.
    #[error("{what} failed: {source}")]
    Statement {
        /// Which statement (`createQuery`, `creating the committer table`…).
        what: &'static str,
        /// The driver's error, with Cassandra's answer when it gave one.
        source: Box<ExecutionError>,
    },
    /// The nodes did not come to agree on the new schema in time.
    #[error("waiting for the nodes to agree on the schema: {0}")]
    Agreement(#[source] Box<SchemaAgreementError>),
}

impl SchemaError {
    /// True when Cassandra refused a statement (wrong, or not permitted), which running it again
    /// will not change; false when it was out of reach or slow.
    pub fn is_refusal(&self) -> bool {
        match self {
            SchemaError::Statement { source, .. } => {
                crate::cassandra::db_error(source).is_some_and(crate::cassandra::is_refusal)
            }
            SchemaError::Agreement(_) => false,
        }
    }

    /// True when Cassandra refused a statement for lack of permission.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            SchemaError::Statement { source, .. }
                if matches!(crate::cassandra::db_error(source), Some(DbError::Unauthorized))
        )
    }
}

/// The dead-letter table's keyspace and name, or `None` when invalid records go to a topic.
pub fn dead_letter_table(config: &SinkConfig) -> Option<(String, String)> {
    match &config.dead_letter {
        None => Some((
            config.committer.keyspace.clone(),
            format!("{}_dead_letter", config.committer.table),
        )),
        Some(DeadLetterConfig::Table { keyspace, table }) => Some((
            keyspace
                .clone()
                .unwrap_or_else(|| config.committer.keyspace.clone()),
            table.clone(),
        )),
        Some(DeadLetterConfig::Topic(_)) => None,
    }
}

/// The dead-letter table, created if absent.
pub fn dead_letter_schema(keyspace: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.{table} (sink_id text, source_partition int, \
         source_offset bigint, topic text, record_key blob, record_value blob, record_timestamp timestamp, \
         kind text, reason text, PRIMARY KEY ((sink_id, source_partition), source_offset))"
    )
}

/// Runs one DDL statement; "already exists" is success (an earlier run created it).
async fn ddl(session: &Session, what: &'static str, cql: &str) -> Result<(), SchemaError> {
    match session.query_unpaged(cql, ()).await {
        Ok(_) => Ok(()),
        Err(ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::AlreadyExists { .. },
            _,
        ))) => Ok(()),
        Err(error) => Err(SchemaError::Statement {
            what,
            source: Box::new(error),
        }),
    }
}

/// Runs the sink's DDL: `createQuery` on the data cluster, the committer and dead-letter tables on the
/// committer cluster, then waits until every node agrees on the schema.
pub async fn apply(
    config: &SinkConfig,
    data: &Session,
    committer_cluster: &Session,
) -> Result<(), SchemaError> {
    if let Some(create) = &config.create_query {
        ddl(data, "createQuery", create).await?;
    }
    for cql in committer::schema(&config.committer.keyspace, &config.committer.table) {
        ddl(committer_cluster, "creating the committer table", &cql).await?;
    }
    if let Some((keyspace, table)) = dead_letter_table(config) {
        ddl(
            committer_cluster,
            "creating the dead-letter table",
            &dead_letter_schema(&keyspace, &table),
        )
        .await?;
    }
    for session in [data, committer_cluster] {
        session
            .await_schema_agreement()
            .await
            .map_err(|error| SchemaError::Agreement(Box::new(error)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dead_letter: &str) -> SinkConfig {
        SinkConfig::from_yaml(
            &format!(
                "sinkId: a/b\ncassandra: {{ contactPoints: [localhost] }}\n\
                 insertQuery: INSERT INTO ks.t (a) VALUES (?)\n\
                 committer: {{ keyspace: ks, table: checkpoints }}\n\
                 source: {{ kafka: {{ bootstrapServers: [k:9092], topic: t }} }}\n{dead_letter}"
            ),
            std::path::Path::new("test.yaml"),
        )
        .expect("test config parses")
    }

    #[test]
    fn the_dead_letter_table_defaults_beside_the_committer() {
        assert_eq!(
            dead_letter_table(&config("")),
            Some(("ks".to_owned(), "checkpoints_dead_letter".to_owned()))
        );
        assert_eq!(
            dead_letter_table(&config("deadLetter: { table: { table: bad } }")),
            Some(("ks".to_owned(), "bad".to_owned()))
        );
        assert_eq!(
            dead_letter_table(&config("deadLetter: { topic: bad }")),
            None
        );
    }
}
