//! The sink checked against its live cluster before any worker runs: the DDL (`createQuery`, the
//! committer, positions and dead-letter tables), then a PREPARE of `insertQuery` (and `delete.query`,
//! and each `fanOut` statement) with each mapping compiled against what Cassandra says of its markers. Once per change of what they depend on: the
//! digest of it is kept in `status.appliedSchema`; the workers are rendered `manageSchema: false`.
//!
//! Why the operator and not each worker: N workers racing the same CREATE TABLE on a multi-node
//! Cassandra can leave the nodes disagreeing about the table's identity, and a statement Cassandra
//! refuses would otherwise show only as crash-looping pods. Here it is a condition naming the field
//! and quoting Cassandra, and no worker is started.
//!
//! Failures are told apart: Cassandra refusing something (a syntax error, an unknown column or
//! keyspace, a type that does not fit, a missing permission, credentials or a certificate) waits for
//! a person (permanent reasons); a cluster that does not answer is retried by the operator.

use cassandra_sink_worker::cassandra::{is_refusal, prepare_db_error};
use cassandra_sink_worker::config::SinkConfig;
use cassandra_sink_worker::durability::{self, VerifyError};
use cassandra_sink_worker::prepared::{PrepareStatementError, prepare_statement, statements};
use cassandra_sink_worker::schema::{self, SchemaError};
use cassandra_sink_worker::statement;
use scylla::errors::{DbError, PrepareError, RequestAttemptError};

use crate::access::Secrets;
use crate::build::{hash, sink_config};
use crate::committer::{CommitterError, Sessions};
use crate::crd::CassandraSink;
use crate::reason::Reason;
use crate::validate::Problem;

/// What the check depends on, as a digest: when it changes, it runs again.
pub fn digest(config: &SinkConfig) -> String {
    let committer_points = config
        .committer
        .cassandra
        .as_ref()
        .map(|cluster| cluster.contact_points.join(","))
        .unwrap_or_default();
    // The committer DDL itself is part of it: a release that adds a table (the positions mirror by
    // topic) runs the DDL again for every sink on its first reconcile.
    let committer_ddl = cassandra_sink_worker::committer::schema(
        &config.committer.keyspace,
        &config.committer.table,
    );
    hash(&format!(
        "{}|{}|{:?}|{}.{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        config.cassandra.contact_points.join(","),
        committer_points,
        config.create_query,
        config.committer.keyspace,
        config.committer.table,
        schema::dead_letter_table(config),
        config.insert_query,
        config.mapping,
        config.guarantee,
        config.delete,
        config.fan_out,
        committer_ddl,
        config.topic_statements,
    ))
}

/// Runs the DDL and checks the statement unless `checked` is the digest of the current spec; returns
/// the digest, or the problem that keeps the sink from running.
pub async fn ensure(
    secrets: &Secrets,
    sessions: &Sessions,
    sink: &CassandraSink,
    checked: Option<&str>,
) -> Result<String, Problem> {
    let config = sink_config(sink).map_err(|error| Problem {
        reason: Reason::InvalidIdentifier,
        message: error.to_string(),
    })?;
    let digest = digest(&config);
    if checked != Some(digest.as_str()) {
        check(secrets, sessions, sink, &config).await?;
    }
    // Until the spec changes the data cluster is not asked again, so its session need not stay open
    // for this sink (a failed check keeps it: the operator asks again on its timer).
    sessions.data_checked(sink).await;
    Ok(digest)
}

/// The DDL, then a PREPARE of `insertQuery` and the mapping compiled against its markers.
async fn check(
    secrets: &Secrets,
    sessions: &Sessions,
    sink: &CassandraSink,
    config: &SinkConfig,
) -> Result<(), Problem> {
    let data = sessions
        .data_session(secrets, sink)
        .await
        .map_err(|error| session_problem(&error))?;
    let committer = sessions
        .committer_session(secrets, sink)
        .await
        .map_err(|error| session_problem(&error))?;
    schema::apply(config, &data, &committer)
        .await
        .map_err(|error| schema_problem(&error))?;
    // validate() has refused what the text alone shows wrong; this is what needs the cluster.
    let mut keyspaces: Vec<String> = Vec::new();
    for set in config.statement_sets() {
        let place = format!("spec.{}", set.place());
        for which in statements(&set) {
            let (role, text, _) = which;
            let analysis = statement::analyze(text).map_err(|error| Problem {
                reason: Reason::InvalidStatement,
                message: format!("{place}{role}: {error}"),
            })?;
            let (prepared, _) = prepare_statement(&data, config, which, &analysis)
                .await
                .map_err(|error| statement_problem(&error, &place))?;
            let keyspace = prepared
                .get_variable_col_specs()
                .iter()
                .next()
                .map(|spec| spec.table_spec().ks_name().to_owned());
            keyspaces.extend(keyspace.filter(|keyspace| !keyspaces.contains(keyspace)));
        }
    }
    let keyspaces: Vec<&str> = keyspaces.iter().map(String::as_str).collect();
    durability::verify(config, &data, &committer, &keyspaces)
        .await
        .map_err(|error| durability_problem(&error))?;
    tracing::info!(sink = %config.sink_id, "schema applied and statements prepared");
    Ok(())
}

/// A consistency level the keyspaces' replication does not allow, or replication that could not be
/// read.
fn durability_problem(error: &VerifyError) -> Problem {
    match error {
        VerifyError::Unsafe(unsafe_level) => Problem {
            reason: Reason::UnsafeConsistency,
            message: format!("spec.{unsafe_level}"),
        },
        VerifyError::Read(read) => Problem {
            reason: Reason::CassandraUnreachable,
            message: format!(
                "the operator could not read the keyspaces' replication: {read}; it retries"
            ),
        },
    }
}

/// A session that could not be had.
fn session_problem(error: &CommitterError) -> Problem {
    let reason = match error {
        CommitterError::Access(_) => Reason::SecretUnreadable,
        error if error.is_unauthorized() => Reason::Unauthorized,
        error if error.is_permanent() => Reason::TlsFailed,
        _ => Reason::CassandraUnreachable,
    };
    let advice = match reason {
        Reason::SecretUnreadable => "check the operator's RBAC (secrets: get) in this namespace",
        Reason::Unauthorized => "check the username and password in the credentials Secret",
        Reason::TlsFailed => "check the CA in the TLS Secret, and verifyHostname",
        _ => "the operator retries, and starts the workers once the cluster answers",
    };
    Problem {
        reason,
        message: format!("the operator cannot reach the sink's Cassandra: {error}; {advice}"),
    }
}

/// A DDL statement that failed.
fn schema_problem(error: &SchemaError) -> Problem {
    if error.is_unauthorized() {
        Problem {
            reason: Reason::Unauthorized,
            message: format!(
                "Cassandra refused the sink's DDL for lack of permission: {error}; grant the sink's \
                 role CREATE on the keyspaces of spec.createQuery and spec.committer"
            ),
        }
    } else if error.is_refusal() {
        Problem {
            reason: Reason::SchemaFailed,
            message: format!(
                "Cassandra refused the sink's DDL: {error}; correct spec.createQuery or create the \
                 keyspace it and spec.committer.keyspace name"
            ),
        }
    } else {
        Problem {
            reason: Reason::CassandraUnreachable,
            message: format!(
                "the sink's DDL did not complete: {error}; the operator retries, and starts the \
                 workers once the tables exist"
            ),
        }
    }
}

/// Cassandra's own words in a refused PREPARE, when it answered.
fn cassandra_says(error: &PrepareError) -> String {
    match error {
        PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(_, message),
        } => message.clone(),
        other => other.to_string(),
    }
}

/// A statement or its mapping, refused; `place` is where its set is (`spec.`, or
/// `spec.topicStatements.<topic>.`).
fn statement_problem(error: &PrepareStatementError, place: &str) -> Problem {
    let role = error.role();
    match error {
        PrepareStatementError::Prepare {
            source: prepare, ..
        } => match prepare_db_error(prepare) {
            Some(DbError::Unauthorized) => Problem {
                reason: Reason::Unauthorized,
                message: format!(
                    "Cassandra refused to prepare {place}{role} for lack of permission: {}; \
                     grant the sink's role MODIFY on its table",
                    cassandra_says(prepare)
                ),
            },
            Some(db) if is_refusal(db) => Problem {
                reason: Reason::InvalidStatement,
                message: format!(
                    "Cassandra refused {place}{role}: {}",
                    cassandra_says(prepare)
                ),
            },
            _ => Problem {
                reason: Reason::CassandraUnreachable,
                message: format!(
                    "{place}{role} could not be prepared now: {prepare}; the operator retries"
                ),
            },
        },
        PrepareStatementError::NotExactlyOnce { .. } => Problem {
            reason: Reason::NotExactlyOnce,
            message: format!("{place}{error}"),
        },
        PrepareStatementError::Mapping { source, .. } => Problem {
            reason: Reason::InvalidMapping,
            message: format!(
                "{place}{} does not fit {place}{role} as Cassandra prepared it: {source}",
                role.mapping_field()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::tests_support::seed_sink;

    #[test]
    fn the_digest_changes_with_what_is_checked_and_only_with_that() {
        let base = seed_sink();
        let digest_of = |sink: &CassandraSink| digest(&sink_config(sink).expect("config"));
        let mut scaled = base.clone();
        scaled.spec.parallelism = 7;
        scaled.spec.state = crate::crd::SinkState::Paused;
        assert_eq!(digest_of(&base), digest_of(&scaled));

        let mut created = base.clone();
        created.spec.create_query =
            Some("CREATE TABLE example.other (id text PRIMARY KEY)".to_owned());
        let mut committer = base.clone();
        committer.spec.committer.table = "positions2".to_owned();
        let mut moved = base.clone();
        moved.spec.cassandra.contact_points = vec!["other.db.svc:9042".to_owned()];
        let mut statement = base.clone();
        statement.spec.insert_query = "INSERT INTO example.values (id) VALUES (?)".to_owned();
        let mut guarantee = base.clone();
        guarantee.spec.guarantee = cassandra_sink_worker::config::Guarantee::AtLeastOnce;
        for changed in [created, committer, moved, statement, guarantee] {
            assert_ne!(digest_of(&base), digest_of(&changed));
        }
    }
}
