//! The sink's statements (`insertQuery`, `delete.query`) as Cassandra prepares them, and each mapping
//! compiled against what Cassandra says of its markers: the columns' types, counters (refused under
//! exactly-once), the partition key.
//!
//! The worker does this on start; the operator does it on the live cluster before it starts any
//! worker, so a statement Cassandra refuses is a condition on the sink rather than crash-looping pods.

use scylla::client::session::Session;
use scylla::cluster::metadata::{ColumnType, NativeType};
use scylla::errors::PrepareError;
use scylla::statement::prepared::PreparedStatement;

use crate::config::{Guarantee, Mapping, SinkConfig, Statements};
use crate::mapping::{MarkerSpec, Plan, PlanError};
use crate::statement::{Analysis, NotIdempotent, Role, StatementKind};

/// Why one of the sink's statements cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum PrepareStatementError {
    /// Cassandra did not prepare it: refused (unknown table or column, bad syntax, a permission) or
    /// out of reach.
    #[error("Cassandra could not prepare {role}: {source}")]
    Prepare {
        /// Which statement.
        role: Role,
        /// The driver's error (boxed: it is large, and this error travels up every start-up path).
        #[source]
        source: Box<PrepareError>,
    },
    /// Under exactly-once, a marker binds a counter column.
    #[error(
        "{role} cannot be applied exactly once: {reason}. Use an idempotent statement, or set \
         `guarantee: at-least-once` to accept duplicates after a crash"
    )]
    NotExactlyOnce {
        /// Which statement.
        role: Role,
        /// Why.
        reason: NotIdempotent,
    },
    /// The mapping does not fit the prepared markers.
    #[error("{}: {source}", role.mapping_field())]
    Mapping {
        /// Whose mapping.
        role: Role,
        /// What does not fit.
        #[source]
        source: PlanError,
    },
}

impl PrepareStatementError {
    /// Which statement failed.
    pub fn role(&self) -> Role {
        match self {
            PrepareStatementError::Prepare { role, .. }
            | PrepareStatementError::NotExactlyOnce { role, .. }
            | PrepareStatementError::Mapping { role, .. } => *role,
        }
    }
}

/// The text and mapping of each statement of a set (the sink's own, or a topic's): `insertQuery`,
/// then `delete.query` if set, then the `fanOut` statements. The worker's statements are kept in this
/// order.
pub fn statements<'a>(set: &Statements<'a>) -> Vec<(Role, &'a str, &'a Mapping)> {
    std::iter::once((Role::Insert, set.insert_query, set.mapping))
        .chain(
            set.delete
                .map(|delete| (Role::Delete, delete.query.as_str(), &delete.mapping)),
        )
        .chain(
            set.fan_out
                .iter()
                .enumerate()
                .map(|(index, fan)| (Role::FanOut(index), fan.query.as_str(), &fan.mapping)),
        )
        .collect()
}

/// Prepares one of the sink's statements (`text`, of `role`) on `session` and compiles `mapping`
/// against its markers. `analysis` is what [`crate::statement::check_role`] found in the text. Every
/// marker of a DELETE needs a value: they all select the rows to delete.
pub async fn prepare_statement(
    session: &Session,
    config: &SinkConfig,
    (role, text, mapping): (Role, &str, &Mapping),
    analysis: &Analysis,
) -> Result<(PreparedStatement, Plan), PrepareStatementError> {
    let statement =
        session
            .prepare(text)
            .await
            .map_err(|source| PrepareStatementError::Prepare {
                role,
                source: Box::new(source),
            })?;
    let specs = marker_specs(&statement);
    if config.guarantee == Guarantee::ExactlyOnce
        && let Some(counter) = specs
            .iter()
            .find(|spec| spec.typ == ColumnType::Native(NativeType::Counter))
    {
        return Err(PrepareStatementError::NotExactlyOnce {
            role,
            reason: NotIdempotent::Increment(counter.name.clone()),
        });
    }
    let plan = Plan::compile(
        mapping,
        &analysis.markers,
        specs,
        config.limits.null_means_unset,
        config.limits.max_record_bytes as usize,
    )
    .map_err(|source| PrepareStatementError::Mapping { role, source })?;
    let plan = match analysis.kind {
        StatementKind::Delete => plan.all_required(),
        StatementKind::Insert | StatementKind::Update => plan,
    };
    Ok((statement, plan))
}

/// The prepared statement's markers, with partition-key flags.
fn marker_specs(prepared: &PreparedStatement) -> Vec<MarkerSpec> {
    let key_indexes: Vec<usize> = prepared
        .get_variable_pk_indexes()
        .iter()
        .map(|index| index.index as usize)
        .collect();
    prepared
        .get_variable_col_specs()
        .iter()
        .enumerate()
        .map(|(index, spec)| MarkerSpec {
            name: spec.name().to_owned(),
            typ: spec.typ().clone().into_owned(),
            partition_key: key_indexes.contains(&index),
        })
        .collect()
}
