//! `insertQuery` as Cassandra prepares it, and the mapping compiled against what Cassandra says of its
//! markers: the columns' types, counters (refused under exactly-once), the partition key.
//!
//! The worker does this on start; the operator does it on the live cluster before it starts any
//! worker, so a statement Cassandra refuses is a condition on the sink rather than crash-looping pods.

use scylla::client::session::Session;
use scylla::cluster::metadata::{ColumnType, NativeType};
use scylla::errors::PrepareError;
use scylla::statement::prepared::PreparedStatement;

use crate::config::{Guarantee, SinkConfig};
use crate::mapping::{MarkerSpec, Plan, PlanError};
use crate::statement::{Analysis, NotIdempotent};

/// Why `insertQuery` cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum PrepareInsertError {
    /// Cassandra did not prepare it: refused (unknown table or column, bad syntax, a permission) or
    /// out of reach.
    #[error("Cassandra could not prepare insertQuery: {0}")]
    Prepare(#[source] PrepareError),
    /// Under exactly-once, a marker binds a counter column.
    #[error(
        "insertQuery cannot be applied exactly once: {0}. Use an idempotent statement, or set \
         `guarantee: at-least-once` to accept duplicates after a crash"
    )]
    NotExactlyOnce(NotIdempotent),
    /// The mapping does not fit the prepared markers.
    #[error("mapping: {0}")]
    Mapping(#[from] PlanError),
}

/// Prepares `insertQuery` on `session` and compiles the mapping against its markers.
pub async fn prepare_insert(
    session: &Session,
    config: &SinkConfig,
    analysis: &Analysis,
) -> Result<(PreparedStatement, Plan), PrepareInsertError> {
    let statement = session
        .prepare(config.insert_query.as_str())
        .await
        .map_err(PrepareInsertError::Prepare)?;
    let specs = marker_specs(&statement);
    if config.guarantee == Guarantee::ExactlyOnce
        && let Some(counter) = specs
            .iter()
            .find(|spec| spec.typ == ColumnType::Native(NativeType::Counter))
    {
        return Err(PrepareInsertError::NotExactlyOnce(
            NotIdempotent::Increment(counter.name.clone()),
        ));
    }
    let plan = Plan::compile(
        &config.mapping,
        &analysis.markers,
        specs,
        config.limits.null_means_unset,
        config.limits.max_record_bytes as usize,
    )?;
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
