//! The operator's view of a sink's committer table: positions for the status, resets of a stopped
//! sink's positions, and deleting the rows when a sink with `deletionPolicy: Delete` goes away.
//!
//! Sessions are cached per cluster and credentials version, so a reconcile costs one small
//! single-partition read. Reading progress is best effort: a cluster the operator cannot reach leaves
//! the previous progress in place (the workers' readiness tells whether they can write).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cassandra_sink_worker::cassandra::{
    ConnectError, connect_with, driver_consistency, driver_serial, permit_datacenter_failover,
};
use cassandra_sink_worker::checkpoint::SourcePartition;
use cassandra_sink_worker::committer::{
    BoxedError, Committer, CommitterError as WorkerCommitterError, KEY_SEPARATOR, Position,
    read_positions,
};
use cassandra_sink_worker::config::{CassandraConfig, HumanDuration};
use futures::StreamExt;
use kube::ResourceExt;
use scylla::client::session::Session;
use tokio::sync::Mutex;

use crate::access::{self, AccessError, Secrets};
use crate::crd::{CassandraConnection, CassandraSink};
use crate::in_use::{self, Gone, InUse};

/// Errors reaching a sink's Cassandra, or its committer table there.
#[derive(Debug, thiserror::Error)]
pub enum CommitterError {
    /// A credentials or TLS Secret could not be read.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Connecting failed.
    #[error("{what}: {source}")]
    Connect {
        /// What the session was for: `committer table ks.t`, or `the data cluster`.
        what: String,
        /// Why.
        source: ConnectError,
    },
    /// Connecting took longer than the operator waits.
    #[error("{what}: no answer from {contact_points} within {CONNECT_TIMEOUT:?}")]
    Timeout {
        /// What the session was for.
        what: String,
        /// The contact points tried.
        contact_points: String,
    },
    /// Connecting failed a short while ago; the operator does not try again yet.
    #[error("{what}: {} ({:.0?} ago; next attempt after {RETRY_AFTER:?})", failure.message, failure.at.elapsed())]
    Recent {
        /// What the session was for.
        what: String,
        /// How it failed.
        failure: Failure,
    },
    /// A request on the committer table failed.
    #[error("{what}: {source}")]
    Query {
        /// The table.
        what: String,
        /// The worker library's error, with the driver's inside.
        source: WorkerCommitterError,
    },
}

impl CommitterError {
    /// True when trying again cannot help until a person changes something: a Secret the operator
    /// may not read, credentials or a certificate Cassandra refuses, a request it refuses.
    pub fn is_permanent(&self) -> bool {
        match self {
            CommitterError::Access(_) => true,
            CommitterError::Connect { source, .. } => source.is_permanent(),
            CommitterError::Timeout { .. } => false,
            CommitterError::Recent { failure, .. } => failure.permanent,
            CommitterError::Query { source, .. } => source.is_refusal(),
        }
    }

    /// True when Cassandra refused the credentials.
    pub fn is_unauthorized(&self) -> bool {
        match self {
            CommitterError::Connect { source, .. } => source.is_unauthorized(),
            CommitterError::Recent { failure, .. } => failure.unauthorized,
            _ => false,
        }
    }
}

/// A failure to connect, remembered for [`RETRY_AFTER`].
#[derive(Debug, Clone)]
pub struct Failure {
    /// When.
    at: std::time::Instant,
    /// The error's text.
    message: String,
    /// Its classification.
    permanent: bool,
    unauthorized: bool,
}

/// Cached sessions, one per cluster and credentials, and recent failures to connect. A session is
/// closed as soon as no sink uses it (its Secret rotated, its sinks deleted).
pub struct Sessions {
    cache: Mutex<InUse<Arc<Session>>>,
    /// When connecting last failed, and why.
    failures: Mutex<BTreeMap<String, Failure>>,
}

impl Sessions {
    /// No session yet; `open` is kept equal to the number of sessions open.
    pub fn new(open: prometheus_client::metrics::gauge::Gauge) -> Self {
        Self {
            cache: Mutex::new(InUse::new(open)),
            failures: Mutex::default(),
        }
    }

    /// Records that the sink has checked its data cluster ([`crate::schema::ensure`]) and needs no
    /// session there until its spec changes; the session is closed unless another use keeps it (the
    /// committer table on the same cluster, another sink).
    pub async fn data_checked(&self, sink: &CassandraSink) {
        self.cache
            .lock()
            .await
            .stop_using(&in_use::user(sink), "data");
    }

    /// Closes the sessions only sinks that are `gone` used.
    pub async fn release(&self, gone: &Gone) {
        self.cache
            .lock()
            .await
            .release(gone, std::time::Instant::now());
    }
}

/// After a failed connection, how long the operator waits before trying that cluster again, so that
/// reconciles of sinks on an unreachable cluster stay fast.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// How long connecting may take before the operator gives up for this reconcile.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Sessions {
    /// A session on the cluster that holds the sink's committer table.
    pub async fn committer_session(
        &self,
        secrets: &Secrets,
        sink: &CassandraSink,
    ) -> Result<Arc<Session>, CommitterError> {
        self.session(
            secrets,
            (sink, "committer"),
            committer_connection(sink),
            committer_table(sink),
        )
        .await
    }

    /// A session on the cluster that receives the sink's data.
    pub async fn data_session(
        &self,
        secrets: &Secrets,
        sink: &CassandraSink,
    ) -> Result<Arc<Session>, CommitterError> {
        self.session(
            secrets,
            (sink, "data"),
            &sink.spec.cassandra,
            "the data cluster".to_owned(),
        )
        .await
    }

    /// A session on `connection`, from the cache when one is open with the same credentials and TLS.
    /// `(sink, purpose)` says who asks and what for; `what` names the table the session is for, in
    /// errors.
    async fn session(
        &self,
        secrets: &Secrets,
        (sink, purpose): (&CassandraSink, &'static str),
        connection: &CassandraConnection,
        what: String,
    ) -> Result<Arc<Session>, CommitterError> {
        let namespace = secrets.namespace();
        let (access, version) = access::cassandra(secrets, connection).await?;
        let key = format!(
            "{}|{}|{namespace}|{version}",
            connection.contact_points.join(","),
            connection.local_datacenter.clone().unwrap_or_default(),
        );
        {
            let mut cache = self.cache.lock().await;
            cache.use_by(&in_use::user(sink), purpose, &key);
            if let Some(session) = cache.get(&key) {
                return Ok(session.clone());
            }
        }
        self.failures
            .lock()
            .await
            .retain(|_, failure| failure.at.elapsed() < RETRY_AFTER);
        if let Some(failure) = self.failures.lock().await.get(&key)
            && failure.at.elapsed() < RETRY_AFTER
        {
            return Err(CommitterError::Recent {
                what,
                failure: failure.clone(),
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
        let connected =
            match tokio::time::timeout(CONNECT_TIMEOUT, connect_with(&config, access)).await {
                Err(_) => Err(CommitterError::Timeout {
                    what,
                    contact_points: connection.contact_points.join(","),
                }),
                Ok(result) => result.map_err(|source| CommitterError::Connect { what, source }),
            };
        match connected {
            Ok(session) => {
                permit_datacenter_failover(&session, &config);
                let session = Arc::new(session);
                self.failures.lock().await.remove(&key);
                self.cache.lock().await.insert(&key, session.clone());
                Ok(session)
            }
            Err(error) => {
                let failure = Failure {
                    at: std::time::Instant::now(),
                    message: match &error {
                        CommitterError::Connect { source, .. } => source.to_string(),
                        other => other.to_string(),
                    },
                    permanent: error.is_permanent(),
                    unauthorized: error.is_unauthorized(),
                };
                self.failures.lock().await.insert(key, failure);
                Err(error)
            }
        }
    }
}

fn sink_id(sink: &CassandraSink) -> String {
    crate::build::sink_id(&sink.namespace().unwrap_or_default(), &sink.name_any())
}

/// The cluster that holds the committer table: its own, or the data cluster.
fn committer_connection(sink: &CassandraSink) -> &CassandraConnection {
    sink.spec
        .committer
        .cassandra
        .as_ref()
        .unwrap_or(&sink.spec.cassandra)
}

/// The committer table as errors name it.
fn committer_table(sink: &CassandraSink) -> String {
    format!(
        "committer table {}.{}",
        sink.spec.committer.keyspace, sink.spec.committer.table
    )
}

/// Every row of the sink's positions table.
pub async fn positions(
    session: &Session,
    sink: &CassandraSink,
) -> Result<Vec<Position>, CommitterError> {
    read_positions(
        session,
        &sink.spec.committer.keyspace,
        &sink.spec.committer.table,
        &sink_id(sink),
    )
    .await
    .map_err(|source| CommitterError::Query {
        what: committer_table(sink),
        source,
    })
}

/// Sets each listed partition's committed position. Each reset claims the partition's row with a new
/// epoch, so a worker still holding it is fenced and cannot commit over the reset.
pub async fn reset(
    session: Arc<Session>,
    sink: &CassandraSink,
    offsets: &BTreeMap<SourcePartition, i64>,
) -> Result<(), CommitterError> {
    let error = |source: WorkerCommitterError| CommitterError::Query {
        what: committer_table(sink),
        source,
    };
    let committer = Committer::new(
        session,
        &sink.spec.committer.keyspace,
        &sink.spec.committer.table,
        &sink_id(sink),
        "cassandra-sink-operator",
        driver_consistency(committer_connection(sink).consistency),
        driver_serial(sink.spec.committer.serial_consistency.unwrap_or_default()),
    )
    .await
    .map_err(error)?;
    for (partition, &offset) in offsets {
        committer.reset(partition, offset).await.map_err(error)?;
    }
    Ok(())
}

/// Deletes the sink's rows from the committer table and its positions table (`deletionPolicy: Delete`).
/// The data table and dead letters are left alone.
pub async fn delete(session: &Session, sink: &CassandraSink) -> Result<usize, CommitterError> {
    let keyspace = &sink.spec.committer.keyspace;
    let table = &sink.spec.committer.table;
    let qualified = format!("{keyspace}.{table}");
    let error = |operation: &'static str, source: BoxedError| CommitterError::Query {
        what: committer_table(sink),
        source: WorkerCommitterError::Cassandra {
            table: qualified.clone(),
            operation,
            source,
        },
    };
    let id = sink_id(sink);
    // The sink's committer rows are keyed `<sink id>#<topic>` (and by the bare sink id when an
    // earlier release wrote them), with the partition in the key too, so no query names them all:
    // the table is read whole (small: a row per sink, topic and partition) and the sink's rows picked.
    let own = format!("{id}{KEY_SEPARATOR}");
    let mut rows = session
        .query_iter(
            format!("SELECT sink_id, source_partition FROM {qualified}"),
            (),
        )
        .await
        .map_err(|e| error("list partitions", e.into()))?
        .rows_stream::<(String, i32)>()
        .map_err(|e| error("list partitions", e.into()))?;
    let mut keys: Vec<(String, i32)> = Vec::new();
    while let Some(row) = rows.next().await {
        let (key, partition) = row.map_err(|e| error("list partitions", e.into()))?;
        if key == id || key.starts_with(&own) {
            keys.push((key, partition));
        }
    }
    for (key, partition) in &keys {
        session
            .query_unpaged(
                format!("DELETE FROM {qualified} WHERE sink_id = ? AND source_partition = ?"),
                (key, *partition),
            )
            .await
            .map_err(|e| error("delete a row", e.into()))?;
    }
    // The positions mirror, and the one earlier releases wrote where it still exists.
    let tables = session
        .get_cluster_state()
        .get_keyspace(keyspace)
        .map(|described| described.tables.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for mirror in ["topic_positions", "positions"] {
        let name = format!("{table}_{mirror}");
        if mirror == "positions" && !tables.contains(&name) {
            continue;
        }
        session
            .query_unpaged(
                format!("DELETE FROM {keyspace}.{name} WHERE sink_id = ?"),
                (&id,),
            )
            .await
            .map_err(|e| error("delete the positions", e.into()))?;
    }
    Ok(keys.len())
}
