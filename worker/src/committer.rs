//! The committer table: one row per (sink, topic, Kafka partition), each its own Cassandra partition,
//! updated only through lightweight transactions conditional on the epoch. See [`crate::checkpoint`]
//! for the protocol; this module is its I/O.
//!
//! A row's key is `(sink_id, source_partition)` with `sink_id` holding [`row_key`], `<sink id>#<topic>`
//! (a Kafka topic name has no `#`, and a sink id may not have one), so the table keeps the layout
//! earlier releases created and no schema change is needed to read several topics.
//!
//! # Upgrade from one topic per sink
//! Releases that read one topic per sink keyed rows by the bare sink id. The first claim of a
//! partition that has no row under its new key moves the old row (same sink id and partition, same
//! topic) over, in four steps:
//! 1. bump the old row's epoch conditional on the epoch read: a worker of the old release still
//!    running on it is fenced from then on, exactly as if another worker had claimed the partition;
//! 2. read the old row again, now that nothing else can change it (if another claimant bumped it in
//!    between, start over);
//! 3. insert the new row with the old row's committed offset, pending range, timestamp ceiling and
//!    records, `IF NOT EXISTS`;
//! 4. mark the old row moved: its committed offset becomes [`MOVED`] and its pending range is
//!    cleared, with its epoch bumped again. A worker of the old release that claims it afterwards (a
//!    rolling upgrade mixing releases in one consumer group) resumes at an offset Kafka does not hold
//!    and stops with its out-of-range error instead of writing from a stale position.
//!
//! Then the claim goes on as usual on the new row. A crash before step 3 leaves the new row absent,
//! so the next claim does the steps again; a crash between steps 3 and 4 leaves the old row fenced
//! but unmarked (only an old release started on it again would notice). The moved position keeps
//! its pending range and ceiling, so replays after the upgrade write the same cells with the same
//! timestamps. Going back to the old release is not supported.
//!
//! # Late transactions
//! A pending record and a commit are conditional on the epoch and on `records_committed` being what
//! it was before the range (the count of records committed, which every commit raises). So a
//! transaction that reaches Cassandra late — sent to a coordinator that froze or lost its connection,
//! given up on by this worker and retried elsewhere, then delivered after later transactions of the
//! same owner — finds the count moved on and applies nothing: it cannot set a committed offset back or
//! lower the timestamp ceiling. That is what lets the driver send a transaction a second time to
//! another replica when the first is slow to answer (speculative execution, [`Committer::new`]): a
//! retry of a commit that had landed reads as success (same epoch, the count it set).
//!
//! A second, plain table `<table>_topic_positions` mirrors each claim and commit, clustered by topic
//! and partition under the sink id, so that listing a sink's positions is one cheap single-partition
//! read (the operator's status, `positions list` and the clean-up of a deleted sink use it). It is
//! informational: the LWT rows are the source of truth. (`<table>_positions`, its predecessor keyed
//! by partition alone, is no longer written.)

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlTimestamp, CqlValue, Row};

use crate::checkpoint::{Claim, Pending, SourcePartition};

/// Errors of the committer table.
#[derive(Debug, thiserror::Error)]
pub enum CommitterError {
    /// Another worker claimed the partition since this one did: this worker must stop using it.
    #[error(
        "partition {partition} was claimed by another worker (epoch {current:?} replaced ours, {ours}); \
         this worker no longer owns it"
    )]
    Fenced {
        /// Kafka topic and partition.
        partition: SourcePartition,
        /// The epoch this worker held.
        ours: i64,
        /// The epoch in the row now, if the row still exists.
        current: Option<i64>,
    },
    /// Claiming kept losing races with other workers.
    #[error("partition {partition}: could not claim the committer row after {attempts} attempts")]
    Contended {
        /// Kafka topic and partition.
        partition: SourcePartition,
        /// Attempts made.
        attempts: u32,
    },
    /// Cassandra refused or failed a request.
    #[error("committer table {table}: {operation} failed: {source}")]
    Cassandra {
        /// The table.
        table: String,
        /// What was attempted.
        operation: &'static str,
        /// The driver's error (an `ExecutionError`, a `PrepareError`, a rows error…).
        source: BoxedError,
    },
}

/// A driver error of any of the kinds a committer request can end with, kept whole.
pub type BoxedError = Box<dyn std::error::Error + Send + Sync>;

impl CommitterError {
    /// True when Cassandra refused the request (the table is gone or not permitted, a type changed):
    /// the same request will fail again until a person changes something.
    pub fn is_refusal(&self) -> bool {
        match self {
            CommitterError::Cassandra { source, .. } => {
                if let Some(error) = source.downcast_ref::<scylla::errors::ExecutionError>() {
                    crate::cassandra::db_error(error).is_some_and(crate::cassandra::is_refusal)
                } else if let Some(error) = source.downcast_ref::<scylla::errors::PrepareError>() {
                    crate::cassandra::prepare_db_error(error)
                        .is_some_and(crate::cassandra::is_refusal)
                } else {
                    // A reply that does not have the committer table's shape.
                    source
                        .downcast_ref::<scylla::errors::IntoRowsResultError>()
                        .is_some()
                        || source.downcast_ref::<scylla::errors::RowsError>().is_some()
                        || source
                            .downcast_ref::<scylla::errors::DeserializationError>()
                            .is_some()
                }
            }
            CommitterError::Fenced { .. } | CommitterError::Contended { .. } => false,
        }
    }
}

/// A committed position as listed for operators and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Next offset to apply.
    pub committed: Option<i64>,
    /// Records covered by committed checkpoints.
    pub records_committed: i64,
    /// The epoch of the last commit.
    pub epoch: i64,
    /// When it was committed (milliseconds since the epoch).
    pub committed_at_ms: Option<i64>,
}

/// Prepared statements on one sink's committer rows.
pub struct Committer {
    session: Arc<Session>,
    table: String,
    sink_id: String,
    owner: String,
    select: PreparedStatement,
    select_legacy: PreparedStatement,
    insert_new: PreparedStatement,
    insert_moved: PreparedStatement,
    mark_moved: PreparedStatement,
    bump_epoch: PreparedStatement,
    /// Sets a row's missing record count to 0, so the conditions on it can hold.
    count_from_zero: PreparedStatement,
    record_pending: PreparedStatement,
    commit: PreparedStatement,
    mirror: PreparedStatement,
    list: PreparedStatement,
    reset: PreparedStatement,
}

/// The separator between the sink id and the topic in a row's key.
pub const KEY_SEPARATOR: char = '#';

/// The committed offset of a row an earlier release kept, once moved to its new key: past any offset
/// Kafka holds, so that release can never resume from it.
pub const MOVED: i64 = i64::MAX;

/// The committer-table key of a sink's rows for one topic: `<sink id>#<topic>`.
pub fn row_key(sink_id: &str, topic: &str) -> String {
    format!("{sink_id}{KEY_SEPARATOR}{topic}")
}

/// The committer table and its positions mirror, created if absent.
pub fn schema(keyspace: &str, table: &str) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{table} (\
             sink_id text, source_partition int, topic text, epoch bigint, owner text, \
             committed_offset bigint, pending_start bigint, pending_end bigint, pending_base bigint, \
             timestamp_ceiling bigint, records_committed bigint, committed_at timestamp, \
             PRIMARY KEY ((sink_id, source_partition)))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{table}_topic_positions (\
             sink_id text, topic text, source_partition int, epoch bigint, committed_offset bigint, \
             records_committed bigint, committed_at timestamp, \
             PRIMARY KEY ((sink_id), topic, source_partition))"
        ),
    ]
}

/// The query listing a sink's positions (one single-partition read of the positions table).
fn positions_query(qualified: &str) -> String {
    format!(
        "SELECT topic, source_partition, committed_offset, records_committed, epoch, committed_at \
         FROM {qualified}_topic_positions WHERE sink_id = ?"
    )
}

/// The positions in a reply to [`positions_query`].
fn positions_from(
    result: scylla::response::query_result::QueryResult,
) -> Result<Vec<Position>, BoxedError> {
    type Columns = (
        String,
        i32,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<CqlTimestamp>,
    );
    let rows = result.into_rows_result()?;
    let mut positions = Vec::new();
    for row in rows.rows::<Columns>()? {
        let (topic, partition, committed, records, epoch, at) = row?;
        positions.push(Position {
            topic,
            partition,
            committed,
            records_committed: records.unwrap_or(0),
            epoch: epoch.unwrap_or(0),
            committed_at_ms: at.map(|at| at.0),
        });
    }
    Ok(positions)
}

/// Every position of `sink_id` in `<keyspace>.<table>_topic_positions`, without preparing anything (for the
/// operator, which reads many sinks' tables once in a while).
pub async fn read_positions(
    session: &Session,
    keyspace: &str,
    table: &str,
    sink_id: &str,
) -> Result<Vec<Position>, CommitterError> {
    let qualified = format!("{keyspace}.{table}");
    let error = |source: BoxedError| CommitterError::Cassandra {
        table: qualified.clone(),
        operation: "list positions",
        source,
    };
    let result = session
        .query_unpaged(positions_query(&qualified), (sink_id,))
        .await
        .map_err(|e| error(e.into()))?;
    positions_from(result).map_err(error)
}

/// How many times a claim retries after losing a race to another claimant.
const CLAIM_ATTEMPTS: u32 = 20;

impl Committer {
    /// Prepares the statements. The tables must exist (see [`schema`]).
    pub async fn new(
        session: Arc<Session>,
        keyspace: &str,
        table: &str,
        sink_id: &str,
        owner: &str,
        consistency: Consistency,
        serial: SerialConsistency,
    ) -> Result<Self, CommitterError> {
        let qualified = format!("{keyspace}.{table}");
        let key = "WHERE sink_id = ? AND source_partition = ?";
        let prepare = |operation: &'static str, cql: String, serial_read: bool| {
            let session = session.clone();
            let qualified = qualified.clone();
            async move {
                let mut statement =
                    session
                        .prepare(cql)
                        .await
                        .map_err(|error| CommitterError::Cassandra {
                            table: qualified,
                            operation,
                            source: error.into(),
                        })?;
                // A serial read completes any transaction in progress on the row: it sees what
                // the last transaction decided, never an older value (the claim and fencing rely on
                // it). It runs among the same replicas as the transactions.
                statement.set_consistency(match (serial_read, serial) {
                    (false, _) => consistency,
                    (true, SerialConsistency::Serial) => Consistency::Serial,
                    (true, SerialConsistency::LocalSerial) => Consistency::LocalSerial,
                });
                statement.set_serial_consistency(Some(serial));
                Ok::<_, CommitterError>(statement)
            }
        };
        let columns = "epoch, committed_offset, pending_start, pending_end, pending_base, \
                       timestamp_ceiling, records_committed";
        let mut committer = Self {
            select: prepare(
                "read",
                format!("SELECT {columns} FROM {qualified} {key}"),
                true,
            )
            .await?,
            select_legacy: prepare(
                "read the row of an earlier release",
                format!("SELECT {columns}, topic FROM {qualified} {key}"),
                true,
            )
            .await?,
            insert_new: prepare(
                "claim",
                format!(
                    "INSERT INTO {qualified} (sink_id, source_partition, topic, epoch, owner, \
                     timestamp_ceiling, records_committed) VALUES (?, ?, ?, 1, ?, 0, 0) IF NOT EXISTS"
                ),
                false,
            )
            .await?,
            insert_moved: prepare(
                "move the row of an earlier release",
                format!(
                    "INSERT INTO {qualified} (sink_id, source_partition, topic, {columns}, owner) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
                ),
                false,
            )
            .await?,
            mark_moved: prepare(
                "mark the row of an earlier release moved",
                format!(
                    "UPDATE {qualified} SET epoch = ?, owner = ?, committed_offset = ?, \
                     pending_start = null, pending_end = null, pending_base = null {key} IF epoch = ?"
                ),
                false,
            )
            .await?,
            bump_epoch: prepare(
                "claim",
                format!("UPDATE {qualified} SET epoch = ?, owner = ? {key} IF epoch = ?"),
                false,
            )
            .await?,
            record_pending: prepare(
                "record pending checkpoint",
                format!(
                    "UPDATE {qualified} SET pending_start = ?, pending_end = ?, pending_base = ?, \
                     timestamp_ceiling = ? {key} IF epoch = ? AND records_committed = ?"
                ),
                false,
            )
            .await?,
            commit: prepare(
                "commit",
                format!(
                    "UPDATE {qualified} SET committed_offset = ?, pending_start = null, \
                     pending_end = null, pending_base = null, records_committed = ?, committed_at = ? \
                     {key} IF epoch = ? AND records_committed = ?"
                ),
                false,
            )
            .await?,
            count_from_zero: prepare(
                "claim",
                format!(
                    "UPDATE {qualified} SET records_committed = 0 {key} IF epoch = ? AND \
                     records_committed = null"
                ),
                false,
            )
            .await?,
            mirror: prepare(
                "mirror position",
                format!(
                    "INSERT INTO {qualified}_topic_positions (sink_id, topic, source_partition, epoch, \
                     committed_offset, records_committed, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                false,
            )
            .await?,
            list: prepare("list positions", positions_query(&qualified), false)
            .await?,
            reset: prepare(
                "reset position",
                format!(
                    "UPDATE {qualified} SET committed_offset = ?, pending_start = null, pending_end = null, \
                     pending_base = null, epoch = ?, owner = ? {key} IF epoch = ?"
                ),
                false,
            )
            .await?,
            session: session.clone(),
            table: qualified,
            sink_id: sink_id.to_owned(),
            owner: owner.to_owned(),
        };
        // A pending record and a commit may be sent a second time, to the next replica, when the
        // first coordinator is slow to answer (frozen, overloaded): without that, a commit would
        // wait on a frozen node for as long as it stays frozen. A late or second copy applies nothing
        // (see "Late transactions" above), so both are idempotent in the driver's sense; so is the
        // mirror's plain write of the same values.
        let defaults = session.get_default_execution_profile_handle();
        let timeout = defaults
            .to_profile()
            .get_request_timeout()
            .unwrap_or(Duration::from_secs(12));
        let speculative = defaults
            .pointee_to_builder()
            .speculative_execution_policy(Some(Arc::new(SimpleSpeculativeExecutionPolicy {
                max_retry_count: 2,
                retry_interval: (timeout / 8)
                    .clamp(Duration::from_millis(250), Duration::from_secs(2)),
            })))
            .build()
            .into_handle();
        for statement in [
            &mut committer.record_pending,
            &mut committer.commit,
            &mut committer.mirror,
        ] {
            statement.set_is_idempotent(true);
            statement.set_execution_profile_handle(Some(speculative.clone()));
        }
        Ok(committer)
    }

    fn error(&self, operation: &'static str, error: impl Into<BoxedError>) -> CommitterError {
        CommitterError::Cassandra {
            table: self.table.clone(),
            operation,
            source: error.into(),
        }
    }

    /// The row key of `partition`'s topic.
    fn key(&self, partition: &SourcePartition) -> String {
        row_key(&self.sink_id, &partition.topic)
    }

    /// The first row of a serial read, if any.
    async fn read_row(
        &self,
        operation: &'static str,
        statement: &PreparedStatement,
        key: &str,
        partition: i32,
    ) -> Result<Option<Row>, CommitterError> {
        let result = self
            .session
            .execute_unpaged(statement, (key, partition))
            .await
            .map_err(|error| self.error(operation, error))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| self.error(operation, error))?;
        rows.maybe_first_row::<Row>()
            .map_err(|error| self.error(operation, error))
    }

    async fn read(&self, partition: &SourcePartition) -> Result<Option<Row>, CommitterError> {
        self.read_row(
            "read",
            &self.select,
            &self.key(partition),
            partition.partition,
        )
        .await
    }

    /// The row an earlier release kept for this partition under the bare sink id, if it was for the
    /// same topic and not moved already.
    async fn read_legacy(
        &self,
        partition: &SourcePartition,
    ) -> Result<Option<ClaimRow>, CommitterError> {
        let row = self
            .read_row(
                "read the row of an earlier release",
                &self.select_legacy,
                &self.sink_id,
                partition.partition,
            )
            .await?;
        Ok(row.and_then(|row| {
            let same_topic = matches!(
                row.columns.get(7),
                Some(Some(CqlValue::Text(topic))) if *topic == *partition.topic
            );
            let state = ClaimRow::from_row(&row);
            (same_topic && state.committed != Some(MOVED)).then_some(state)
        }))
    }

    /// Runs a conditional statement; `Ok(true)` when applied.
    async fn conditional(
        &self,
        operation: &'static str,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<(bool, Option<Row>), CommitterError> {
        let result = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(|error| self.error(operation, error))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| self.error(operation, error))?;
        let row = rows
            .maybe_first_row::<Row>()
            .map_err(|error| self.error(operation, error))?
            .ok_or_else(|| self.error(operation, "no [applied] row in the reply"))?;
        let applied = matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true))));
        Ok((applied, Some(row)))
    }

    /// Claims a partition: bumps its epoch (creating the row for a new partition, or moving the row an
    /// earlier release kept) and reads where it stands. Retries when another claimant wins a race;
    /// every earlier holder is fenced afterwards.
    pub async fn claim(&self, partition: &SourcePartition) -> Result<Claim, CommitterError> {
        let key = self.key(partition);
        let number = partition.partition;
        for _ in 0..CLAIM_ATTEMPTS {
            let Some(row) = self.read(partition).await? else {
                if let Some(legacy) = self.read_legacy(partition).await? {
                    self.move_legacy(partition, &legacy).await?;
                    continue;
                }
                let (applied, _) = self
                    .conditional(
                        "claim",
                        &self.insert_new,
                        (&key, number, &*partition.topic, &self.owner),
                    )
                    .await?;
                if applied {
                    let at = CqlTimestamp(crate::checkpoint::now_micros() / 1000);
                    self.mirror(partition, 1, None, 0, at).await?;
                    return Ok(Claim {
                        partition: partition.clone(),
                        epoch: 1,
                        committed: None,
                        pending: None,
                        ceiling: 0,
                        records_committed: 0,
                    });
                }
                continue;
            };
            let epoch = ClaimRow::from_row(&row).epoch.unwrap_or(0);
            let (applied, _) = self
                .conditional(
                    "claim",
                    &self.bump_epoch,
                    (epoch + 1, &self.owner, &key, number, epoch),
                )
                .await?;
            if !applied {
                continue;
            }
            // Read again: a transaction of the previous owner may have landed between the first
            // read and the bump; from the bump on, none can.
            let Some(row) = self.read(partition).await? else {
                continue;
            };
            let state = ClaimRow::from_row(&row);
            if state.epoch != Some(epoch + 1) {
                continue;
            }
            if state.records_committed.is_none() {
                self.conditional("claim", &self.count_from_zero, (&key, number, epoch + 1))
                    .await?;
            }
            return Ok(state.into_claim(partition.clone(), epoch + 1));
        }
        Err(CommitterError::Contended {
            partition: partition.clone(),
            attempts: CLAIM_ATTEMPTS,
        })
    }

    /// Moves the row an earlier release kept for this partition to its key (see the module's
    /// upgrade steps). Returns without moving when another claimant got in between; the caller
    /// reads again either way.
    async fn move_legacy(
        &self,
        partition: &SourcePartition,
        legacy: &ClaimRow,
    ) -> Result<(), CommitterError> {
        let key = self.key(partition);
        let epoch = legacy.epoch.unwrap_or(0);
        let moved_by = format!("{} (moved to {key})", self.owner);
        // 1. Fence the old release's worker, if one still runs on the row.
        let (applied, _) = self
            .conditional(
                "fence the row of an earlier release",
                &self.bump_epoch,
                (
                    epoch + 1,
                    &moved_by,
                    &self.sink_id,
                    partition.partition,
                    epoch,
                ),
            )
            .await?;
        if !applied {
            return Ok(());
        }
        // 2. Read it again: a commit may have landed between the first read and the fence.
        let Some(fenced) = self.read_legacy(partition).await? else {
            return Ok(());
        };
        if fenced.epoch != Some(epoch + 1) {
            return Ok(());
        }
        // 3. The same position under the new key, at the fenced epoch (the claim bumps it again).
        let (applied, _) = self
            .conditional(
                "move the row of an earlier release",
                &self.insert_moved,
                (
                    &key,
                    partition.partition,
                    &*partition.topic,
                    epoch + 1,
                    fenced.committed,
                    fenced.pending_start,
                    fenced.pending_end,
                    fenced.pending_base,
                    fenced.ceiling.unwrap_or(0),
                    fenced.records_committed.unwrap_or(0),
                    &self.owner,
                ),
            )
            .await?;
        if applied {
            let at = CqlTimestamp(crate::checkpoint::now_micros() / 1000);
            self.mirror(
                partition,
                epoch + 1,
                fenced.committed,
                fenced.records_committed.unwrap_or(0),
                at,
            )
            .await?;
        }
        // 4. Mark the old row moved, under whatever epoch it has now (an old release may have
        // claimed it since step 1: it is fenced by this bump too).
        let mut current = epoch + 1;
        for _ in 0..CLAIM_ATTEMPTS {
            let (applied, reply) = self
                .conditional(
                    "mark the row of an earlier release moved",
                    &self.mark_moved,
                    (
                        current + 1,
                        &moved_by,
                        MOVED,
                        &self.sink_id,
                        partition.partition,
                        current,
                    ),
                )
                .await?;
            if applied {
                return Ok(());
            }
            match epoch_in_reply(reply) {
                Some(epoch) => current = epoch,
                None => return Ok(()),
            }
        }
        Err(CommitterError::Contended {
            partition: partition.clone(),
            attempts: CLAIM_ATTEMPTS,
        })
    }

    fn fenced(&self, partition: &SourcePartition, ours: i64, reply: Option<Row>) -> CommitterError {
        CommitterError::Fenced {
            partition: partition.clone(),
            ours,
            current: epoch_in_reply(reply),
        }
    }

    /// Records a sealed range as pending and raises the timestamp ceiling, if this worker still holds
    /// `epoch`. Must succeed before any of the range's data is written.
    ///
    /// `records_before` is the row's record count as this worker last committed it (or claimed it):
    /// a late copy of this transaction, delivered after the range's commit, applies nothing.
    pub async fn record_pending(
        &self,
        partition: &SourcePartition,
        epoch: i64,
        records_before: i64,
        pending: &Pending,
    ) -> Result<(), CommitterError> {
        let (applied, reply) = self
            .conditional(
                "record pending checkpoint",
                &self.record_pending,
                (
                    pending.start,
                    pending.end,
                    pending.base_timestamp,
                    pending.ceiling(),
                    self.key(partition),
                    partition.partition,
                    epoch,
                    records_before,
                ),
            )
            .await?;
        if applied {
            Ok(())
        } else {
            Err(self.fenced(partition, epoch, reply))
        }
    }

    /// Commits a range whose writes were all acknowledged, if this worker still holds `epoch` and the
    /// row still counts `records_before` (raised to `records_committed` by this commit). A commit that
    /// finds its own count already there landed before (a retry, or a second copy sent to another
    /// replica): that is success.
    pub async fn commit(
        &self,
        partition: &SourcePartition,
        epoch: i64,
        records_before: i64,
        end: i64,
        records_committed: i64,
        now_ms: i64,
    ) -> Result<(), CommitterError> {
        let at = CqlTimestamp(now_ms);
        let (applied, reply) = self
            .conditional(
                "commit",
                &self.commit,
                (
                    end,
                    records_committed,
                    at,
                    self.key(partition),
                    partition.partition,
                    epoch,
                    records_before,
                ),
            )
            .await?;
        if !applied && !landed_before(reply.as_ref(), epoch, records_committed) {
            return Err(self.fenced(partition, epoch, reply));
        }
        self.mirror(partition, epoch, Some(end), records_committed, at)
            .await?;
        Ok(())
    }

    /// Copies a position into the positions table that listings read.
    async fn mirror(
        &self,
        partition: &SourcePartition,
        epoch: i64,
        offset: Option<i64>,
        records_committed: i64,
        at: CqlTimestamp,
    ) -> Result<(), CommitterError> {
        self.session
            .execute_unpaged(
                &self.mirror,
                (
                    &self.sink_id,
                    &*partition.topic,
                    partition.partition,
                    epoch,
                    offset,
                    records_committed,
                    at,
                ),
            )
            .await
            .map_err(|error| self.error("mirror position", error))?;
        Ok(())
    }

    /// Every position of this sink, by topic and partition.
    pub async fn positions(&self) -> Result<Vec<Position>, CommitterError> {
        let result = self
            .session
            .execute_unpaged(&self.list, (&self.sink_id,))
            .await
            .map_err(|error| self.error("list positions", error))?;
        positions_from(result).map_err(|error| self.error("list positions", error))
    }

    /// Sets a partition's committed offset (for an operator resetting a stopped sink). Claims the row
    /// with a new epoch in the same transaction, so a worker still running on it is fenced.
    pub async fn reset(
        &self,
        partition: &SourcePartition,
        offset: i64,
    ) -> Result<(), CommitterError> {
        let claim = self.claim(partition).await?;
        let (applied, reply) = self
            .conditional(
                "reset position",
                &self.reset,
                (
                    offset,
                    claim.epoch + 1,
                    &self.owner,
                    self.key(partition),
                    partition.partition,
                    claim.epoch,
                ),
            )
            .await?;
        if !applied {
            return Err(self.fenced(partition, claim.epoch, reply));
        }
        let now = CqlTimestamp(crate::checkpoint::now_micros() / 1000);
        self.mirror(
            partition,
            claim.epoch + 1,
            Some(offset),
            claim.records_committed,
            now,
        )
        .await?;
        Ok(())
    }
}

/// The epoch in the reply to a transaction conditional on it that was not applied: a rejected LWT
/// returns the current values of the columns in its condition, after `[applied]`.
/// Whether a commit's refused reply shows the commit itself already applied: the row at this worker's
/// epoch, counting the records this commit sets (the count only grows, and only its owner raises it).
fn landed_before(reply: Option<&Row>, epoch: i64, records_committed: i64) -> bool {
    bigint_in_reply(reply, 1) == Some(epoch) && bigint_in_reply(reply, 2) == Some(records_committed)
}

fn epoch_in_reply(reply: Option<Row>) -> Option<i64> {
    bigint_in_reply(reply.as_ref(), 1)
}

/// Column `index` of a conditional reply (`[applied]` first, then the condition's columns).
fn bigint_in_reply(reply: Option<&Row>, index: usize) -> Option<i64> {
    match reply.and_then(|row| row.columns.get(index)) {
        Some(Some(CqlValue::BigInt(value))) => Some(*value),
        _ => None,
    }
}

/// The columns a claim reads, in the order of the SELECT.
struct ClaimRow {
    epoch: Option<i64>,
    committed: Option<i64>,
    pending_start: Option<i64>,
    pending_end: Option<i64>,
    pending_base: Option<i64>,
    ceiling: Option<i64>,
    records_committed: Option<i64>,
}

impl ClaimRow {
    fn from_row(row: &Row) -> Self {
        let column = |index: usize| match row.columns.get(index) {
            Some(Some(CqlValue::BigInt(value))) => Some(*value),
            _ => None,
        };
        Self {
            epoch: column(0),
            committed: column(1),
            pending_start: column(2),
            pending_end: column(3),
            pending_base: column(4),
            ceiling: column(5),
            records_committed: column(6),
        }
    }

    fn into_claim(self, partition: SourcePartition, epoch: i64) -> Claim {
        let pending = match (self.pending_start, self.pending_end, self.pending_base) {
            (Some(start), Some(end), Some(base_timestamp)) => Some(Pending {
                start,
                end,
                base_timestamp,
            }),
            _ => None,
        };
        Claim {
            partition,
            epoch,
            committed: self.committed,
            pending,
            ceiling: self.ceiling.unwrap_or(0),
            records_committed: self.records_committed.unwrap_or(0),
        }
    }
}
