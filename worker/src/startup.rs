//! From a configuration to a running write loop: check the statement, connect, run the DDL, prepare,
//! check the mapping against the prepared markers, and start the Kafka source.
//!
//! Everything that can be wrong with a configuration is found here, before any record is read, and
//! reported with what to change.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;

use crate::action::{Rules, RulesError};
use crate::avro::Formats;
use crate::batching::BatchLimits;
use crate::cassandra::{
    ConnectError, connect, driver_consistency, driver_serial, settle_datacenter_routing,
};
use crate::committer::{Committer, CommitterError};
use crate::config::{CassandraConfig, DeadLetterConfig, SinkConfig, Statements, SupersededWrites};
use crate::dead_letter::{DeadLetter, DeadLetterError};
use crate::durability::{self, VerifyError, Warning};
use crate::encoding::{self, EncodingError};
use crate::metrics::Metrics;
use crate::prepared::{self, PrepareStatementError};
use crate::registry::{Registry, RegistryError};
use crate::routing::Table;
use crate::routing::{Router, RouterSettings};
use crate::schema::{self, SchemaError};
use crate::sink::{Limits, Loop, SinkError, StatementSet, Target, Writer};
use crate::source::{Source, SourceError};
use crate::statement::{self, Role, RoleError, StatementKind};
use crate::topics::{self, Subscription, TopicsError};

/// Why the sink cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A statement is not usable in its role, or cannot be exactly-once (P5).
    #[error(transparent)]
    Statement(#[from] RoleError),
    /// The rules that choose a record's statement cannot work.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The topics to read are not named right.
    #[error(transparent)]
    Topics(#[from] TopicsError),
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A DDL statement failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Cassandra could not prepare a statement, or its mapping does not fit what it prepared.
    #[error(transparent)]
    Prepare(#[from] PrepareStatementError),
    /// The committer table failed.
    #[error(transparent)]
    Committer(#[from] CommitterError),
    /// The dead-letter destination failed.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// The Kafka source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// One of a topic's own statements (`topicStatements.<topic>`) cannot be used.
    #[error("topicStatements.{topic}: {source}")]
    Topic {
        /// The topic.
        topic: String,
        /// What is wrong with its statements.
        source: Box<StartError>,
    },
    /// The write loop stopped with an error.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A consistency level that the keyspace's replication makes unsafe or impossible, or the
    /// replication could not be read.
    #[error(transparent)]
    Durability(#[from] VerifyError),
    /// A key or value format that cannot work (Avro without a registry, a registry URL that is not one).
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// The schema registry refused the sink's credentials, or its credentials or TLS files cannot be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl StartError {
    /// A short, stable reason for status conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::Topic { source, .. } => source.reason(),
            StartError::Statement(RoleError::NotExactlyOnce { .. }) => "NotExactlyOnce",
            StartError::Statement(_) => "InvalidStatement",
            StartError::Rules(RulesError::Path { .. }) => "InvalidMapping",
            StartError::Rules(
                RulesError::TombstoneWithoutDelete | RulesError::FanOutWithoutDelete(_),
            ) => "InvalidStatement",
            StartError::Topics(_) => "InvalidTopics",
            StartError::Connect(error) if error.is_unauthorized() => "Unauthorized",
            StartError::Connect(ConnectError::Secret { .. }) => "CredentialsUnreadable",
            StartError::Connect(error) if error.is_permanent() => "TlsFailed",
            StartError::Connect(_) => "CassandraUnreachable",
            StartError::Schema(error) if error.is_refusal() || error.is_unauthorized() => {
                "SchemaFailed"
            }
            StartError::Schema(_) => "CassandraUnreachable",
            StartError::Prepare(PrepareStatementError::Prepare { source, .. })
                if crate::cassandra::prepare_db_error(source).is_none() =>
            {
                "CassandraUnreachable"
            }
            StartError::Prepare(PrepareStatementError::Prepare { .. }) => "InvalidStatement",
            StartError::Prepare(PrepareStatementError::NotExactlyOnce { .. }) => "NotExactlyOnce",
            StartError::Prepare(PrepareStatementError::Mapping { .. }) => "InvalidMapping",
            StartError::Committer(_) => "CommitterFailed",
            StartError::DeadLetter(_) => "DeadLetterFailed",
            StartError::Source(SourceError::RangeGone(_))
            | StartError::Sink(SinkError::Source(SourceError::RangeGone(_))) => "RangeGone",
            StartError::Source(SourceError::OutOfRange { .. })
            | StartError::Sink(SinkError::Source(SourceError::OutOfRange { .. })) => "RangeGone",
            StartError::Source(_) | StartError::Sink(SinkError::Source(_)) => "KafkaFailed",
            StartError::Sink(SinkError::InvalidRecord { .. }) => "InvalidRecord",
            StartError::Sink(SinkError::DeadLetter(_)) => "DeadLetterFailed",
            StartError::Durability(VerifyError::Unsafe(_)) => "UnsafeConsistency",
            StartError::Durability(VerifyError::Read(_)) => "CassandraUnreachable",
            StartError::Encoding(_) => "InvalidFormat",
            StartError::Registry(_) | StartError::Sink(SinkError::Registry(_)) => {
                "SchemaRegistryRefused"
            }
        }
    }
}

/// What [`check_statements`] found: for each set of statements (in the order of
/// [`SinkConfig::statement_sets`]), each statement's analysis and the compiled rules.
#[derive(Debug)]
pub struct Checked {
    /// Each set's analyses (in the order of [`prepared::statements`]) and rules.
    pub sets: Vec<(Vec<statement::Analysis>, Rules)>,
    /// The topics the sink reads.
    pub subscription: Subscription,
}

/// An error of a topic's own statements names the topic; the sink's own are as they are.
fn in_set(set: &Statements<'_>, error: impl Into<StartError>) -> StartError {
    match set.topic {
        Some(topic) => StartError::Topic {
            topic: topic.to_owned(),
            source: Box::new(error.into()),
        },
        None => error.into(),
    }
}

/// Checks the sink's statements and rules without a server: each statement's shape and role, P5
/// under exactly-once, the rules that choose a record's statements, and the topics it reads.
pub fn check_statements(config: &SinkConfig) -> Result<Checked, StartError> {
    let dead_letter_topic = match &config.dead_letter {
        Some(DeadLetterConfig::Topic(topic)) => Some(topic.as_str()),
        _ => None,
    };
    let subscription = topics::check(&config.sink_id, &config.source.kafka, dead_letter_topic)?;
    encoding::check(&config.source.kafka)?;
    topics::check_statement_topics(&subscription, config.topic_statements.keys())?;
    let mut sets = Vec::new();
    for set in config.statement_sets() {
        let analyses = prepared::statements(&set)
            .into_iter()
            .map(|(role, text, _)| statement::check_role(text, role, config.guarantee))
            .collect::<Result<_, _>>()
            .map_err(|error| in_set(&set, error))?;
        let rules = Rules::compile_set(&set).map_err(|error| in_set(&set, error))?;
        sets.push((analyses, rules));
    }
    Ok(Checked { sets, subscription })
}

/// Prepares one statement for writing: consistency, whether the driver may retry it on its own, and
/// the table it writes.
async fn prepare_target(
    session: &Session,
    config: &SinkConfig,
    which: (Role, &str, &crate::config::Mapping),
    analysis: &statement::Analysis,
) -> Result<Target, StartError> {
    let (mut statement, plan) =
        prepared::prepare_statement(session, config, which, analysis).await?;
    statement.set_consistency(driver_consistency(config.cassandra.consistency));
    statement.set_is_idempotent(analysis.not_idempotent.is_empty());
    let table = statement
        .get_table_spec()
        .map(|spec| Table {
            keyspace: spec.ks_name().to_owned(),
            name: spec.table_name().to_owned(),
        })
        .unwrap_or_default();
    Ok(Target {
        statement,
        plan,
        table,
        clustering_markers: None,
        deletes: analysis.kind == StatementKind::Delete,
        // Filled in once the schema is known (`row_markers`), for the INSERTs this allows.
        row_markers: (analysis.kind == StatementKind::Insert
            && analysis.not_idempotent.is_empty()
            && config.superseded_writes == SupersededWrites::Skip)
            .then(Vec::new),
    })
}

/// The markers that fill the primary key of the row an INSERT writes ([`key_markers`]), read from
/// the table's schema and the prepared statement's markers.
fn row_markers(session: &Session, target: &Target) -> Option<Vec<usize>> {
    let state = session.get_cluster_state();
    let table = state
        .get_keyspace(&target.table.keyspace)?
        .tables
        .get(&target.table.name)?;
    let key: Vec<&str> = table
        .partition_key
        .iter()
        .chain(&table.clustering_key)
        .map(String::as_str)
        .collect();
    let specs = target.statement.get_variable_col_specs();
    let markers: Vec<&str> = specs.iter().map(|spec| spec.name()).collect();
    key_markers(&key, &markers)
}

/// The index of the marker that fills each primary-key column (`key`, in key order), given the column
/// each marker fills (`markers`), when every key column is filled by exactly one marker; `None`
/// otherwise (`INSERT … JSON ?`, whose one marker is not a column, or a key column given as a literal
/// or through a function), and then no write of the statement is ever left out.
fn key_markers(key: &[&str], markers: &[&str]) -> Option<Vec<usize>> {
    let found = key
        .iter()
        .map(|column| {
            let mut filling = markers
                .iter()
                .enumerate()
                .filter(|(_, name)| *name == column)
                .map(|(index, _)| index);
            match (filling.next(), filling.next()) {
                (Some(index), None) => Some(index),
                _ => None,
            }
        })
        .collect::<Option<Vec<usize>>>()?;
    // A table always has a partition key; metadata without one names no row.
    (!found.is_empty()).then_some(found)
}

/// The markers of a statement that fill clustering columns, when its table has some: rows of one
/// partition can then be several, and share a batch. Without clustering columns a partition is one row
/// and nothing is batched.
fn clustering_markers(session: &Session, target: &Target) -> Option<Vec<usize>> {
    let state = session.get_cluster_state();
    let clustering = &state
        .get_keyspace(&target.table.keyspace)?
        .tables
        .get(&target.table.name)?
        .clustering_key;
    if clustering.is_empty() {
        return None;
    }
    Some(
        target
            .statement
            .get_variable_col_specs()
            .iter()
            .enumerate()
            .filter(|(_, spec)| clustering.iter().any(|column| column == spec.name()))
            .map(|(index, _)| index)
            .collect(),
    )
}

/// [`settle_datacenter_routing`] on the schema as it is now (the DDL may just have created the
/// keyspaces' tables), saying once what the user should know.
async fn settle_routing(
    session: &Session,
    cluster: &CassandraConfig,
    keyspaces: &[&str],
) -> Arc<dyn scylla::policies::load_balancing::LoadBalancingPolicy> {
    if let Err(error) = session.refresh_metadata().await {
        tracing::debug!(%error, "schema metadata not refreshed");
    }
    let (policy, warning) = settle_datacenter_routing(session, cluster, keyspaces);
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    policy
}

/// Connects, waiting out a cluster that does not answer yet: a worker started during a Cassandra
/// outage stays up and unready, and connects when the cluster is back, instead of exiting (which a
/// kubelet answers with a back-off that grows to minutes). Credentials or certificates that Cassandra
/// refuses are final: retrying cannot cure them.
async fn connect_patiently(cluster: &CassandraConfig) -> Result<Session, StartError> {
    let mut pause = Duration::from_secs(1);
    loop {
        match connect(cluster).await {
            Ok(session) => return Ok(session),
            Err(error) if error.is_permanent() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?pause, "Cassandra unreachable; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_CONNECT_PAUSE);
            }
        }
    }
}

/// The longest pause between two attempts to connect.
const MAX_CONNECT_PAUSE: Duration = Duration::from_secs(30);

/// A prepared session, committer and loop, ready to run.
pub struct Prepared {
    sink: Loop,
    source_config: crate::config::KafkaSource,
    subscription: Subscription,
    group_id: String,
    committer: Arc<Committer>,
    metrics: Arc<Metrics>,
    /// The data session (for health checks and tests).
    pub session: Arc<Session>,
}

/// Connects, runs the DDL and prepares everything; reads no record yet.
pub async fn prepare(
    config: &SinkConfig,
    owner: &str,
    metrics: Arc<Metrics>,
) -> Result<Prepared, StartError> {
    let started = std::time::Instant::now();
    let checked = check_statements(config)?;
    let registry = match &config.source.kafka.schema_registry {
        Some(settings) => {
            let registry = Registry::new(
                settings,
                Formats {
                    key: config.source.kafka.key_format,
                    value: config.source.kafka.value_format,
                },
            )?;
            registry.check_patiently().await?;
            Some(Arc::new(registry))
        }
        None => None,
    };
    let session = Arc::new(connect_patiently(&config.cassandra).await?);
    let committer_session = match &config.committer.cassandra {
        Some(cluster) => Arc::new(connect_patiently(cluster).await?),
        None => session.clone(),
    };

    let connected = started.elapsed();
    if config.manage_schema {
        apply_schema_patiently(config, &session, &committer_session).await?;
    }
    let schema_ready = started.elapsed();
    let keyspace = &config.committer.keyspace;
    let table = &config.committer.table;

    // Every set's statements in one list; each set knows its range in it.
    let mut targets = Vec::new();
    let mut sets = Vec::with_capacity(checked.sets.len());
    let mut set_of_topic = HashMap::new();
    for (set, (analyses, rules)) in config.statement_sets().into_iter().zip(checked.sets) {
        let first = targets.len();
        for (which, analysis) in prepared::statements(&set).into_iter().zip(&analyses) {
            let target = prepare_target(&session, config, which, analysis)
                .await
                .map_err(|error| in_set(&set, error))?;
            targets.push(target);
        }
        if let Some(topic) = set.topic {
            set_of_topic.insert(topic.to_owned(), sets.len());
        }
        sets.push(StatementSet {
            rules,
            targets: first..targets.len(),
        });
    }

    let data_keyspaces: Vec<&str> = targets
        .iter()
        .map(|target| target.table.keyspace.as_str())
        .collect();
    check_durability(config, &session, &committer_session, &data_keyspaces).await?;
    let dead_letter = match &config.dead_letter {
        Some(DeadLetterConfig::Topic(topic)) => {
            let producer = crate::source::client_config(&config.source.kafka, &config.group_id())?
                .create()
                .map_err(|error| DeadLetterError::Topic {
                    topic: topic.clone(),
                    message: error.to_string(),
                })?;
            DeadLetter::Topic {
                producer,
                topic: topic.clone(),
                sink_id: config.sink_id.clone(),
            }
        }
        _ => {
            let (dl_keyspace, dl_table) = schema::dead_letter_table(config).unwrap_or_default();
            DeadLetter::table(
                committer_session.clone(),
                &dl_keyspace,
                &dl_table,
                &config.sink_id,
            )
            .await?
        }
    };

    let nodes = session.get_cluster_state().get_nodes_info().len().max(1);
    // Each session's routing, now that the keyspaces it writes are known.
    let dead_letter_keyspace = schema::dead_letter_table(config).map(|(keyspace, _)| keyspace);
    let committer_keyspaces: Vec<&str> = std::iter::once(keyspace.as_str())
        .chain(dead_letter_keyspace.as_deref())
        .collect();
    let mut data_keyspaces: Vec<&str> = Vec::new();
    for target in &targets {
        if !data_keyspaces.contains(&target.table.keyspace.as_str()) {
            data_keyspaces.push(&target.table.keyspace);
        }
    }
    match &config.committer.cassandra {
        Some(cluster) => {
            settle_routing(&committer_session, cluster, &committer_keyspaces).await;
        }
        None => data_keyspaces.extend(&committer_keyspaces),
    }
    let policy = settle_routing(&session, &config.cassandra, &data_keyspaces).await;
    // After the routing is settled: the committer's own profile (sent again to the next replica when
    // slow) starts from the session's default as it is now.
    let committer_consistency = config
        .committer
        .cassandra
        .as_ref()
        .map_or(config.cassandra.consistency, |cluster| cluster.consistency);
    let committer = Arc::new(
        Committer::new(
            committer_session.clone(),
            keyspace,
            table,
            &config.sink_id,
            owner,
            driver_consistency(committer_consistency),
            driver_serial(config.committer.serial_consistency),
        )
        .await?,
    );
    let router = Router::new(RouterSettings {
        per_node: config.limits.max_in_flight_per_node as usize,
        local_datacenter: config.cassandra.local_datacenter.clone(),
        consistency: driver_consistency(config.cassandra.consistency),
        request_timeout: config.cassandra.request_timeout.0,
        policy,
    });
    // The schema as refreshed by the routing above: the DDL may just have created the tables.
    for target in &mut targets {
        target.clustering_markers = clustering_markers(&session, target);
        if target.row_markers.is_some() {
            target.row_markers = row_markers(&session, target);
        }
    }
    let batch_limits = (config.limits.max_batch_rows > 1).then_some(BatchLimits {
        rows: config.limits.max_batch_rows as usize,
        bytes: config.limits.max_batch_bytes as usize,
    });
    let writer_metrics = metrics.clone();
    let writer = Writer {
        session: session.clone(),
        targets,
        sets,
        set_of_topic,
        committer: committer.clone(),
        dead_letter,
        on_invalid: config.on_invalid_record,
        max_in_flight: config.limits.max_in_flight_per_node as usize * nodes,
        router,
        batch_limits,
        metrics: metrics.clone(),
        registry,
    };
    let limits = Limits {
        interval: config.checkpoint.interval.0,
        max_records: config.checkpoint.max_records as usize,
        max_bytes: config.checkpoint.max_bytes as usize,
    };
    tracing::info!(
        nodes,
        connect_millis = connected.as_millis() as u64,
        schema_millis = (schema_ready - connected).as_millis() as u64,
        millis = started.elapsed().as_millis() as u64,
        manage_schema = config.manage_schema,
        "connected to Cassandra and prepared"
    );
    Ok(Prepared {
        sink: Loop::new(writer, limits),
        source_config: config.source.kafka.clone(),
        subscription: checked.subscription,
        group_id: config.group_id(),
        committer,
        metrics: writer_metrics,
        session,
    })
}

/// Runs the DDL, again while Cassandra fails it for a reason that may pass (a node lost mid-statement,
/// a timeout, schema agreement not reached), for up to two minutes; a refusal is returned at once.
async fn apply_schema_patiently(
    config: &SinkConfig,
    session: &Session,
    committer_session: &Session,
) -> Result<(), StartError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut backoff = Duration::from_millis(500);
    loop {
        match schema::apply(config, session, committer_session).await {
            Ok(()) => return Ok(()),
            Err(error)
                if !error.is_refusal()
                    && !error.is_unauthorized()
                    && std::time::Instant::now() < deadline =>
            {
                tracing::warn!(%error, "the DDL did not complete; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Refuses consistency levels with which the loss of one node could lose a record whose checkpoint
/// is committed, or that can never succeed (see [`durability`]); logs what deserves a warning.
async fn check_durability(
    config: &SinkConfig,
    session: &Session,
    committer_session: &Session,
    data_keyspaces: &[&str],
) -> Result<(), StartError> {
    let warnings = durability::verify(config, session, committer_session, data_keyspaces).await?;
    for warning in warnings {
        match warning {
            Warning::SingleCopy { keyspace } => tracing::warn!(
                keyspace,
                "the keyspace keeps one copy of each row: losing its node loses data whatever the \
                 consistency; a production keyspace keeps three"
            ),
            Warning::Unjudged { keyspace, class } => tracing::warn!(
                keyspace,
                class,
                "replication strategy not judged: the consistency is taken as safe"
            ),
        }
    }
    Ok(())
}

impl Prepared {
    /// The committer, for listing or resetting positions.
    pub fn committer(&self) -> Arc<Committer> {
        self.committer.clone()
    }

    /// Joins the consumer group and runs the write loop until `shutdown` completes or an error stops
    /// it; on the way out the last buffered records are committed and partitions released.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let (mut source, events) = Source::start(
            &self.source_config,
            self.subscription,
            &self.group_id,
            self.committer.clone(),
            self.metrics.clone(),
        )?;
        let result = self.sink.run(events, &source, shutdown).await;
        source.stop();
        result.map_err(StartError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINK: &str = "sinkId: shop/payments\n\
        cassandra: {contactPoints: [\"127.0.0.1\"]}\n\
        insertQuery: INSERT INTO shop.payments (id, amount) VALUES (?, ?)\n\
        committer: {keyspace: shop, table: checkpoints}\n\
        source: {kafka: {bootstrapServers: [\"127.0.0.1:9092\"], topics: [payments, refunds]}}\n";

    fn check(extra: &str) -> Result<Checked, StartError> {
        let config = SinkConfig::from_yaml(&format!("{SINK}{extra}"), std::path::Path::new("t"))
            .expect("parses");
        check_statements(&config)
    }

    #[test]
    fn a_row_is_named_by_the_markers_that_fill_its_key_in_key_order() {
        // INSERT INTO t (v, c, p) VALUES (?, ?, ?) USING TTL ? on PRIMARY KEY ((p), c).
        assert_eq!(
            key_markers(&["p", "c"], &["v", "c", "p", "[ttl]"]),
            Some(vec![2, 1])
        );
    }

    #[test]
    fn a_key_column_without_exactly_one_marker_names_no_row() {
        // INSERT … JSON ?: the one marker is no column.
        assert_eq!(key_markers(&["id"], &["[json]"]), None);
        // A clustering column given as a literal.
        assert_eq!(key_markers(&["p", "c"], &["p", "v"]), None);
        // Named twice (a statement Cassandra would refuse; never a guess).
        assert_eq!(key_markers(&["id"], &["id", "id"]), None);
        assert_eq!(key_markers(&[], &["v"]), None);
    }

    #[test]
    fn each_topic_with_statements_of_its_own_is_checked_as_a_set_of_its_own() {
        let checked = check(
            "topicStatements:\n  refunds:\n    insertQuery: INSERT INTO shop.refunds (id) VALUES (?)\n    \
             delete: {query: \"DELETE FROM shop.refunds WHERE id = ?\", mapping: {fields: [key]}}\n",
        )
        .expect("valid");
        let sizes: Vec<usize> = checked
            .sets
            .iter()
            .map(|(analyses, _)| analyses.len())
            .collect();
        assert_eq!(sizes, vec![1, 2], "the sink's own set, then the topic's");
    }

    #[test]
    fn a_topics_statement_that_cannot_be_exactly_once_is_refused_naming_the_topic() {
        let error = check(
            "topicStatements:\n  refunds:\n    insertQuery: UPDATE shop.totals SET n = n + ? WHERE id = ?\n",
        )
        .expect_err("a counter increment");
        assert_eq!(error.reason(), "NotExactlyOnce");
        assert!(
            error
                .to_string()
                .starts_with("topicStatements.refunds: insertQuery"),
            "{error}"
        );
        let error = check(
            "topicStatements:\n  refunds:\n    insertQuery: INSERT INTO shop.refunds (id) VALUES (?)\n    \
             onTombstone: delete\n",
        )
        .expect_err("no delete statement");
        assert_eq!(error.reason(), "InvalidStatement");
        assert!(
            error
                .to_string()
                .contains("topicStatements.refunds: onTombstone"),
            "{error}"
        );
    }

    #[test]
    fn statements_for_a_topic_the_sink_does_not_read_are_refused() {
        let error = check(
            "topicStatements:\n  refund:\n    insertQuery: INSERT INTO shop.refunds (id) VALUES (?)\n",
        )
        .expect_err("a misspelt topic");
        assert_eq!(error.reason(), "InvalidTopics");
        assert!(
            error
                .to_string()
                .starts_with("topicStatements.refund: the sink does not read"),
            "{error}"
        );
    }
}
