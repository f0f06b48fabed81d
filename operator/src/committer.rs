//! The operator's view of a sink's committer table: progress for the status, and deleting the rows when
//! a sink with `deletionPolicy: Delete` goes away.
//!
//! Sessions are cached per cluster and credentials version, so a reconcile costs one small
//! single-partition read. Reading progress is best effort: a cluster the operator cannot reach leaves
//! the previous progress in place (the workers' readiness tells whether they can write).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cassandra_sink_worker::cassandra::connect_with;
use cassandra_sink_worker::config::{CassandraConfig, HumanDuration};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;
use tokio::sync::Mutex;

use crate::crd::{CassandraConnection, CassandraSink, Progress};

/// Errors reaching the committer table.
#[derive(Debug, thiserror::Error)]
pub enum CommitterError {
    /// The cluster uses TLS, whose files the operator does not mount.
    #[error("the operator does not read committer tables over TLS yet")]
    Tls,
    /// The credentials Secret could not be read.
    #[error("reading Secret {name}: {message}")]
    Secret {
        /// Secret name.
        name: String,
        /// What failed.
        message: String,
    },
    /// Connecting or querying failed.
    #[error("committer table {table}: {message}")]
    Cassandra {
        /// `keyspace.table`.
        table: String,
        /// The driver's message.
        message: String,
    },
}

/// Cached sessions, one per cluster and credentials, and recent failures to connect.
#[derive(Default)]
pub struct Sessions {
    cache: Mutex<BTreeMap<String, Arc<Session>>>,
    failures: Mutex<BTreeMap<String, std::time::Instant>>,
}

/// After a failed connection, how long the operator waits before trying that cluster again, so that
/// reconciles of sinks on an unreachable cluster stay fast.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// How long connecting may take before the operator gives up for this reconcile.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn credentials(
    client: &Client,
    namespace: &str,
    secret: &str,
) -> Result<(String, String, String), CommitterError> {
    let error = |message: String| CommitterError::Secret {
        name: secret.to_owned(),
        message,
    };
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(secret)
        .await
        .map_err(|e| error(e.to_string()))?;
    let value = |key: &str| -> Result<String, CommitterError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| bytes.0.clone())
            .ok_or_else(|| error(format!("no key {key}")))?;
        String::from_utf8(bytes).map_err(|e| error(e.to_string()))
    };
    Ok((
        value("username")?,
        value("password")?,
        secret.metadata.resource_version.clone().unwrap_or_default(),
    ))
}

impl Sessions {
    /// A session on the cluster that holds the sink's committer table.
    pub async fn committer_session(
        &self,
        client: &Client,
        sink: &CassandraSink,
    ) -> Result<Arc<Session>, CommitterError> {
        let connection: &CassandraConnection = sink
            .spec
            .committer
            .cassandra
            .as_ref()
            .unwrap_or(&sink.spec.cassandra);
        if connection.tls.is_some() {
            return Err(CommitterError::Tls);
        }
        let namespace = sink.namespace().unwrap_or_default();
        let secret = match &connection.credentials_secret {
            Some(name) => Some(credentials(client, &namespace, name).await?),
            None => None,
        };
        let key = format!(
            "{}|{}|{}",
            connection.contact_points.join(","),
            connection.local_datacenter.clone().unwrap_or_default(),
            secret
                .as_ref()
                .map(|(user, _, version)| format!("{user}@{version}"))
                .unwrap_or_default()
        );
        if let Some(session) = self.cache.lock().await.get(&key) {
            return Ok(session.clone());
        }
        let table = format!(
            "{}.{}",
            sink.spec.committer.keyspace, sink.spec.committer.table
        );
        if let Some(failed) = self.failures.lock().await.get(&key)
            && failed.elapsed() < RETRY_AFTER
        {
            return Err(CommitterError::Cassandra {
                table,
                message: format!(
                    "{} was unreachable {:.0?} ago; next attempt after {RETRY_AFTER:?}",
                    connection.contact_points.join(","),
                    failed.elapsed()
                ),
            });
        }
        let config = CassandraConfig {
            contact_points: connection.contact_points.clone(),
            local_datacenter: connection.local_datacenter.clone(),
            credentials: None,
            tls: None,
            consistency: connection.consistency,
            request_timeout: HumanDuration(CONNECT_TIMEOUT),
        };
        // No lock is held while connecting: reconciles of other sinks go on meanwhile.
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connect_with(&config, secret.map(|(user, password, _)| (user, password))),
        )
        .await
        .map_err(|_| {
            format!(
                "no answer from {} within {CONNECT_TIMEOUT:?}",
                connection.contact_points.join(",")
            )
        })
        .and_then(|result| result.map_err(|error| error.to_string()));
        match connected {
            Ok(session) => {
                let session = Arc::new(session);
                self.failures.lock().await.remove(&key);
                self.cache.lock().await.insert(key, session.clone());
                Ok(session)
            }
            Err(message) => {
                self.failures
                    .lock()
                    .await
                    .insert(key, std::time::Instant::now());
                Err(CommitterError::Cassandra { table, message })
            }
        }
    }
}

fn sink_id(sink: &CassandraSink) -> String {
    format!(
        "{}/{}",
        sink.namespace().unwrap_or_default(),
        sink.name_any()
    )
}

/// Records committed over all partitions and the newest commit time, from the positions table.
pub async fn progress(session: &Session, sink: &CassandraSink) -> Result<Progress, CommitterError> {
    let table = format!(
        "{}.{}_positions",
        sink.spec.committer.keyspace, sink.spec.committer.table
    );
    let error = |message: String| CommitterError::Cassandra {
        table: table.clone(),
        message,
    };
    let rows = session
        .query_unpaged(
            format!("SELECT records_committed, committed_at FROM {table} WHERE sink_id = ?"),
            (sink_id(sink),),
        )
        .await
        .map_err(|e| error(e.to_string()))?
        .into_rows_result()
        .map_err(|e| error(e.to_string()))?;
    let mut progress = Progress::default();
    let mut newest: Option<i64> = None;
    for row in rows
        .rows::<(Option<i64>, Option<CqlTimestamp>)>()
        .map_err(|e| error(e.to_string()))?
    {
        let (records, at) = row.map_err(|e| error(e.to_string()))?;
        progress.records_committed += records.unwrap_or(0);
        newest = newest.max(at.map(|at| at.0));
    }
    progress.last_commit_time = newest
        .and_then(|millis| k8s_openapi::jiff::Timestamp::from_millisecond(millis).ok())
        .map(|time| time.to_string());
    Ok(progress)
}

/// Deletes the sink's rows from the committer table and its positions table (`deletionPolicy: Delete`).
/// The data table and dead letters are left alone.
pub async fn delete(session: &Session, sink: &CassandraSink) -> Result<usize, CommitterError> {
    let keyspace = &sink.spec.committer.keyspace;
    let table = &sink.spec.committer.table;
    let qualified = format!("{keyspace}.{table}");
    let error = |message: String| CommitterError::Cassandra {
        table: qualified.clone(),
        message,
    };
    let id = sink_id(sink);
    // The committer rows are keyed by (sink, partition); claimed-but-never-committed partitions have no
    // positions row, so the rows are found on the committer table itself (small: a row per partition).
    let rows = session
        .query_unpaged(
            format!("SELECT source_partition FROM {qualified} WHERE sink_id = ? ALLOW FILTERING"),
            (&id,),
        )
        .await
        .map_err(|e| error(e.to_string()))?
        .into_rows_result()
        .map_err(|e| error(e.to_string()))?;
    let partitions: Vec<i32> = rows
        .rows::<(i32,)>()
        .map_err(|e| error(e.to_string()))?
        .filter_map(Result::ok)
        .map(|(partition,)| partition)
        .collect();
    for partition in &partitions {
        session
            .query_unpaged(
                format!("DELETE FROM {qualified} WHERE sink_id = ? AND source_partition = ?"),
                (&id, *partition),
            )
            .await
            .map_err(|e| error(e.to_string()))?;
    }
    session
        .query_unpaged(
            format!("DELETE FROM {qualified}_positions WHERE sink_id = ?"),
            (&id,),
        )
        .await
        .map_err(|e| error(e.to_string()))?;
    Ok(partitions.len())
}
