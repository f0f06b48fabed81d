//! The write loop: buffers records per claimed partition, seals a checkpoint every interval (or when the
//! buffer is full), records it as pending, writes it with offset-derived timestamps, and commits it
//! only once every write has been acknowledged. See [`crate::checkpoint`] for the protocol.
//!
//! One checkpoint is in flight at a time, written by its own task, while the loop goes on reading
//! records into the next one (up to a checkpoint's worth): consumption and writing overlap.
//!
//! # Guarantees
//! * A checkpoint commits only after all its writes (and dead-letter rows) landed, but for the writes
//!   left out behind a later write of the same row that landed ([`crate::supersede`]); on a Cassandra
//!   fault the same checkpoint is retried with the same timestamps until it lands or the worker stops.
//!   The loop never moves past a checkpoint that did not fully land.
//! * A fenced partition (another worker claimed it) is dropped at once: its pending or commit
//!   transaction failed, so nothing more is written or committed for it.
//!
//! # Caveats
//! Readers may see a checkpoint's rows before its commit: Cassandra has no multi-partition isolation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use scylla::client::session::Session;
use scylla::routing::Token;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::action::{Action, Rules};
use crate::avro::Schemas;
use crate::batching::{self, BatchLimits, WriteKey};
use crate::cassandra::{Failure, classify};
use crate::checkpoint::{Claim, PartitionBuffer, Sealed, Sizable, SourcePartition, now_micros};
use crate::committer::{Committer, CommitterError};
use crate::config::OnInvalidRecord;
use crate::dead_letter::{DeadLetter, Rejected};
use crate::mapping::{BoundValues, InvalidRecord, Parsed, Plan, SourceRecord};
use crate::metrics::Metrics;
use crate::routing::{Router, Table};
use crate::source::{OwnedRecord, Source, SourceError, SourceEvent};
use crate::supersede::{Decision, MarkerSet, RowKey, Superseding, Write, WriteId};

/// Why the write loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A record does not fit and `onInvalidRecord` is `fail`.
    #[error(
        "invalid record at partition {partition} offset {offset}: {reason} (onInvalidRecord: fail stops \
         the sink; nothing from its checkpoint was committed)"
    )]
    InvalidRecord {
        /// Topic and partition.
        partition: SourcePartition,
        /// Offset.
        offset: i64,
        /// Why.
        reason: String,
    },
    /// The Kafka source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The dead-letter destination failed for good.
    #[error(transparent)]
    DeadLetter(#[from] crate::dead_letter::DeadLetterError),
    /// The schema registry refused the sink (its credentials or permissions).
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// Everything the loop writes with.
pub struct Writer {
    /// Data session.
    pub session: Arc<Session>,
    /// Every statement of every set, prepared: each set's in the order of
    /// [`crate::prepared::statements`] (`insertQuery` first, then `delete.query` if set, then the
    /// fan-out statements), the sink's own set first.
    pub targets: Vec<Target>,
    /// The sets of statements: the sink's own first, then each of `topicStatements`.
    pub sets: Vec<StatementSet>,
    /// The set of each topic that has its own (others run set 0).
    pub set_of_topic: HashMap<String, usize>,
    /// Committer rows.
    pub committer: Arc<Committer>,
    /// Invalid records' destination.
    pub dead_letter: DeadLetter,
    /// What to do with invalid records.
    pub on_invalid: OnInvalidRecord,
    /// Most requests in flight at once, over all nodes.
    pub max_in_flight: usize,
    /// Chooses each write's replica and bounds requests in flight per node.
    pub router: Router,
    /// Size bounds of an unlogged batch, for the statements whose table has clustering columns;
    /// `None` turns batching off.
    pub batch_limits: Option<BatchLimits>,
    /// Metrics and readiness.
    pub metrics: Arc<Metrics>,
    /// The schema registry, when keys or values are Avro.
    pub registry: Option<Arc<crate::registry::Registry>>,
}

/// One set of statements (the sink's own, or a topic's): which of them a record runs, and where they
/// are in [`Writer::targets`].
pub struct StatementSet {
    /// Which statements a record runs; indexes are relative to `targets.start`.
    pub rules: Rules,
    /// The set's statements in [`Writer::targets`].
    pub targets: std::ops::Range<usize>,
}

/// A prepared statement, the plan that fills its markers from a record, and what batching needs.
pub struct Target {
    /// The statement.
    pub statement: PreparedStatement,
    /// Record → bind values.
    pub plan: Plan,
    /// The table it writes.
    pub table: Table,
    /// Indexes of the markers that fill clustering columns, when the table has some: rows of one
    /// partition may then share a batch.
    pub clustering_markers: Option<Vec<usize>>,
    /// A DELETE: it may remove more than one row, so it is never batched (see [`crate::batching`]).
    pub deletes: bool,
    /// The markers that fill the primary key of the row this statement writes, in key order, when a
    /// later write of it to the same row replaces all an earlier one wrote (an INSERT Cassandra applies
    /// idempotently, every key column a marker), and `supersededWrites` is `skip`: such writes may be
    /// left out (see [`crate::supersede`]). `None` for every other statement.
    pub row_markers: Option<Vec<usize>>,
}

/// A bound write waiting to be sent.
struct Bound {
    /// Index into the checkpoint's records.
    index: usize,
    /// Index into [`Writer::targets`].
    target: usize,
    values: BoundValues,
    token: Option<Token>,
    timestamp: i64,
}

/// A record refused for good: its index, the kind and the reason.
type Refused = (usize, &'static str, String);

/// A record sent on its own: its index, what it did (`None`: refused when bound), and the refusals of
/// its writes.
type RecordSent = (usize, Option<Action>, Vec<(WriteId, Refused)>);

/// What [`Writer::write_all`] achieved.
#[derive(Default)]
struct Landed {
    /// Records refused for good, each once.
    refused: Vec<Refused>,
    /// The index of each record that ran no statement.
    skipped: Vec<usize>,
    /// The index of each record whose delete landed.
    deleted: Vec<usize>,
}

impl Landed {
    /// Sums up a checkpoint's writes: what each record did (`None`: refused when bound) and the
    /// refusals, of which a record keeps its first.
    fn new(actions: &[Option<Action>], refusals: impl IntoIterator<Item = Refused>) -> Self {
        let mut landed = Landed::default();
        let mut refused_records = std::collections::HashSet::new();
        for refusal in refusals {
            if refused_records.insert(refusal.0) {
                landed.refused.push(refusal);
            }
        }
        for (index, action) in actions.iter().enumerate() {
            match action {
                _ if refused_records.contains(&index) => {}
                Some(Action::Skip) => landed.skipped.push(index),
                Some(Action::Delete) => landed.deleted.push(index),
                Some(Action::Write) | None => {}
            }
        }
        landed
    }
}

/// Checkpoint triggers.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest time records wait.
    pub interval: Duration,
    /// Most records in a checkpoint.
    pub max_records: usize,
    /// Most bytes in a checkpoint.
    pub max_bytes: usize,
}

struct Owned {
    claim: Claim,
    buffer: PartitionBuffer<OwnedRecord>,
    records_committed: i64,
}

/// Sealed ranges on their way to Cassandra.
struct Checkpoint {
    id: u64,
    sealed_at: Instant,
    /// `(epoch, range, records committed before it)`.
    ranges: Vec<(i64, Sealed<OwnedRecord>, i64)>,
}

/// What a checkpoint achieved.
struct Outcome {
    /// `(partition, committed end, records committed in total)`.
    committed: Vec<(SourcePartition, i64, i64)>,
    /// Partitions another worker took.
    fenced: Vec<SourcePartition>,
    /// Records taken out of the buffers by this checkpoint.
    records: usize,
}

/// The loop's state: claimed partitions and their buffers.
pub struct Loop {
    writer: Arc<Writer>,
    limits: Limits,
    owned: BTreeMap<SourcePartition, Owned>,
    buffered_records: usize,
    buffered_bytes: usize,
    checkpoint_id: u64,
    in_flight: Option<JoinHandle<Result<Outcome, SinkError>>>,
}

enum Step {
    Continue,
    Stop,
}

impl Loop {
    /// A loop that owns nothing yet.
    pub fn new(writer: Writer, limits: Limits) -> Self {
        Self {
            writer: Arc::new(writer),
            limits,
            owned: BTreeMap::new(),
            buffered_records: 0,
            buffered_bytes: 0,
            checkpoint_id: 0,
            in_flight: None,
        }
    }

    /// Runs until `shutdown` completes (then commits what is buffered), the source ends, or an error
    /// stops the sink.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SourceEvent>,
        source: &Source,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SinkError> {
        tokio::pin!(shutdown);
        let mut next_seal = tokio::time::Instant::now() + self.limits.interval;
        let mut seal_due = false;
        self.writer.metrics.set_ready(true);
        loop {
            // Read ahead by at most one checkpoint's worth while another is in flight.
            let room = self.buffered_records < self.limits.max_records
                && self.buffered_bytes < self.limits.max_bytes;
            let step = tokio::select! {
                biased;
                () = &mut shutdown => {
                    tracing::info!("shutting down: committing what is buffered");
                    self.finish_in_flight(source).await?;
                    self.checkpoint_now(source, None).await?;
                    Step::Stop
                }
                outcome = async { self.in_flight.as_mut().expect("guarded by the condition").await },
                    if self.in_flight.is_some() =>
                {
                    self.in_flight = None;
                    self.apply(flatten(outcome)?, source);
                    Step::Continue
                }
                event = events.recv(), if room => match event {
                    None => Step::Stop,
                    Some(event) => self.handle(event, source).await?,
                },
                () = tokio::time::sleep_until(next_seal) => {
                    next_seal = tokio::time::Instant::now() + self.limits.interval;
                    seal_due = true;
                    Step::Continue
                }
            };
            if let Step::Stop = step {
                self.finish_in_flight(source).await?;
                return Ok(());
            }
            let full = !room
                || self.buffered_records >= self.limits.max_records
                || self.buffered_bytes >= self.limits.max_bytes;
            let recovery_ready = self
                .owned
                .values()
                .any(|owned| owned.buffer.recovery_complete());
            if self.in_flight.is_none()
                && (seal_due || full || recovery_ready)
                && let Some(checkpoint) = self.seal(None)
            {
                seal_due = false;
                next_seal = tokio::time::Instant::now() + self.limits.interval;
                let writer = self.writer.clone();
                self.in_flight = Some(tokio::spawn(writer.execute(checkpoint)));
            }
        }
    }

    async fn handle(&mut self, event: SourceEvent, source: &Source) -> Result<Step, SinkError> {
        match event {
            SourceEvent::Assigned(claims) => {
                for claim in claims {
                    self.owned.insert(
                        claim.partition.clone(),
                        Owned {
                            buffer: PartitionBuffer::new(&claim),
                            records_committed: claim.records_committed,
                            claim,
                        },
                    );
                }
                self.writer
                    .metrics
                    .partitions_owned
                    .set(self.owned.len() as i64);
            }
            SourceEvent::Revoked { partitions, done } => {
                // Hand over cleanly: the checkpoint in flight and what is buffered for these
                // partitions are committed before another worker may take them.
                self.finish_in_flight(source).await?;
                self.checkpoint_now(source, Some(&partitions)).await?;
                for partition in &partitions {
                    self.drop_partition(partition);
                }
                let _ = done.send(());
            }
            SourceEvent::Record(record) => {
                self.writer.metrics.records_read.inc();
                let from = SourcePartition {
                    topic: record.topic.clone(),
                    partition: record.partition,
                };
                if let Some(owned) = self.owned.get_mut(&from) {
                    let size = record.size();
                    if owned.buffer.push(record.offset, record) {
                        self.buffered_records += 1;
                        self.buffered_bytes += size;
                        self.writer.metrics.commit_lag.inc();
                    }
                }
            }
            SourceEvent::Failed(error) => return Err(error.into()),
        }
        Ok(Step::Continue)
    }

    fn drop_partition(&mut self, partition: &SourcePartition) {
        if let Some(owned) = self.owned.remove(partition) {
            let bytes: usize = owned.buffer.sizes().sum();
            self.buffered_records = self.buffered_records.saturating_sub(owned.buffer.len());
            self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
            self.writer
                .metrics
                .commit_lag
                .dec_by(owned.buffer.len() as i64);
        }
        self.writer
            .metrics
            .partitions_owned
            .set(self.owned.len() as i64);
    }

    /// Waits for the checkpoint in flight, if any, and applies its outcome.
    async fn finish_in_flight(&mut self, source: &Source) -> Result<(), SinkError> {
        if let Some(task) = self.in_flight.take() {
            let outcome = flatten(task.await)?;
            self.apply(outcome, source);
        }
        Ok(())
    }

    /// Seals and runs a checkpoint to the end, here and now (hand-over and shutdown).
    async fn checkpoint_now(
        &mut self,
        source: &Source,
        only: Option<&[SourcePartition]>,
    ) -> Result<(), SinkError> {
        if let Some(checkpoint) = self.seal(only) {
            let outcome = self.writer.clone().execute(checkpoint).await?;
            self.apply(outcome, source);
        }
        Ok(())
    }

    /// Seals the buffers of all partitions, or of `only`, into a checkpoint.
    fn seal(&mut self, only: Option<&[SourcePartition]>) -> Option<Checkpoint> {
        let now = now_micros();
        let mut ranges = Vec::new();
        for (partition, owned) in &mut self.owned {
            if only.is_some_and(|only| !only.contains(partition)) {
                continue;
            }
            if let Some(range) = owned.buffer.seal(now) {
                ranges.push((owned.claim.epoch, range, owned.records_committed));
            }
        }
        if ranges.is_empty() {
            return None;
        }
        let records: usize = ranges.iter().map(|(_, range, _)| range.records.len()).sum();
        let bytes: usize = ranges
            .iter()
            .flat_map(|(_, range, _)| range.records.iter().map(|(_, record)| record.size()))
            .sum();
        self.buffered_records = self.buffered_records.saturating_sub(records);
        self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
        self.checkpoint_id += 1;
        Some(Checkpoint {
            id: self.checkpoint_id,
            sealed_at: Instant::now(),
            ranges,
        })
    }

    /// Records what a checkpoint committed, and drops the partitions it found fenced.
    fn apply(&mut self, outcome: Outcome, source: &Source) {
        for (partition, end, total) in &outcome.committed {
            if let Some(owned) = self.owned.get_mut(partition) {
                owned.records_committed = *total;
                owned.claim.committed = Some(*end);
            }
            source.report_position(partition, *end);
        }
        self.writer
            .metrics
            .commit_lag
            .dec_by(outcome.records as i64);
        for partition in &outcome.fenced {
            self.drop_partition(partition);
        }
    }
}

/// The mapping's view of a buffered record.
fn view(record: &OwnedRecord) -> SourceRecord<'_> {
    SourceRecord {
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        headers: &record.headers,
        timestamp_ms: record.timestamp_ms,
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
    }
}

/// A task's result, with a panic in it turned into a panic here (a bug, not a condition to handle).
fn flatten(
    joined: Result<Result<Outcome, SinkError>, tokio::task::JoinError>,
) -> Result<Outcome, SinkError> {
    match joined {
        Ok(result) => result,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

impl Writer {
    /// Binds, records as pending, writes and commits one checkpoint.
    async fn execute(self: Arc<Self>, checkpoint: Checkpoint) -> Result<Outcome, SinkError> {
        let Checkpoint {
            id,
            sealed_at: started,
            ranges,
        } = checkpoint;
        let records: usize = ranges.iter().map(|(_, range, _)| range.records.len()).sum();

        // Records are bound to values as they are written, so a checkpoint's bound values never sit in
        // memory all at once. Under `fail`, a first pass finds an invalid record before anything of this
        // checkpoint is recorded or written.
        let mut writes: Vec<(&OwnedRecord, i64)> = Vec::with_capacity(records);
        for (_, range, _) in &ranges {
            for (offset, record) in &range.records {
                writes.push((record, range.pending.timestamp_of(*offset)));
            }
        }
        // Every schema the checkpoint's Avro records name, looked up before any of them is bound.
        let schemas = match &self.registry {
            Some(registry) => Some(
                registry
                    .prepare(writes.iter().map(|(record, _)| view(record)))
                    .await?,
            ),
            None => None,
        };
        let schemas = schemas.as_deref();
        if self.on_invalid == OnInvalidRecord::Fail {
            for (record, _) in &writes {
                if let Err(invalid) = self.values(&view(record), schemas) {
                    self.metrics.error(invalid.kind());
                    return Err(SinkError::InvalidRecord {
                        partition: SourcePartition::new(record.topic.clone(), record.partition),
                        offset: record.offset,
                        reason: invalid.to_string(),
                    });
                }
            }
        }
        let mut rejected = Vec::new();

        // Record pending ranges; a fenced partition is dropped with its records.
        let pending_started = Instant::now();
        // Each partition has its own committer row, so their transactions run side by side.
        let mut fenced = Vec::new();
        let this = &*self;
        let pending = ranges.iter().filter(|(_, range, _)| !range.recovery).map(
            |(epoch, range, before)| async move {
                let result = this
                    .retry("record pending checkpoint", || {
                        this.committer.record_pending(
                            &range.partition,
                            *epoch,
                            *before,
                            &range.pending,
                        )
                    })
                    .await;
                (&range.partition, result)
            },
        );
        for (partition, result) in futures::future::join_all(pending).await {
            if let Err(error) = result {
                self.fenced(partition, &error);
                fenced.push(partition.clone());
            }
        }
        crate::fault::point("after-pending");
        let pending_time = pending_started.elapsed();
        writes.retain(|(record, _)| !fenced.iter().any(|partition| record.is_from(partition)));
        let write_started = Instant::now();

        // Write everything, bounded in flight; records that do not fit, or that Cassandra itself
        // refuses, are rejected.
        let Landed {
            refused,
            skipped,
            deleted,
        } = self.write_all(&writes, schemas).await;
        for (index, kind, reason) in refused {
            let (record, timestamp) = writes[index];
            self.reject(record, kind, reason, timestamp, &mut rejected)?;
        }
        for record in &rejected {
            self.retry("write dead letter", || self.dead_letter.write(record))
                .await?;
            self.metrics.records_dead_lettered.inc();
            self.metrics.error(record.kind);
            tracing::warn!(
                topic = %record.record.topic,
                partition = record.record.partition,
                offset = record.record.offset,
                kind = record.kind,
                reason = %record.reason,
                "invalid record dead-lettered"
            );
        }

        let write_time = write_started.elapsed();
        crate::fault::point("before-commit");
        // Commit each partition whose range fully landed.
        let commit_started = Instant::now();
        let now_ms = now_micros() / 1000;
        let mut committed = Vec::new();
        let mut committed_records = 0usize;
        let mut written = 0usize;
        let (mut deleted_records, mut skipped_records) = (0usize, 0usize);
        let commits = ranges
            .iter()
            .filter(|(_, range, _)| !fenced.contains(&range.partition))
            .map(|(epoch, range, before)| async move {
                let total = before + range.records.len() as i64;
                let result = this
                    .retry("commit", || {
                        this.committer.commit(
                            &range.partition,
                            *epoch,
                            *before,
                            range.pending.end,
                            total,
                            now_ms,
                        )
                    })
                    .await;
                (range, total, result)
            });
        for (range, total, result) in futures::future::join_all(commits).await {
            match result {
                Ok(()) => {
                    committed.push((range.partition.clone(), range.pending.end, total));
                    committed_records += range.records.len();
                    let in_range = |&index: &usize| writes[index].0.is_from(&range.partition);
                    let range_skipped = skipped.iter().filter(|index| in_range(index)).count();
                    written += range.records.len()
                        - rejected
                            .iter()
                            .filter(|r| r.record.is_from(&range.partition))
                            .count()
                        - range_skipped;
                    deleted_records += deleted.iter().filter(|index| in_range(index)).count();
                    skipped_records += range_skipped;
                }
                Err(error) => {
                    self.fenced(&range.partition, &error);
                    fenced.push(range.partition.clone());
                }
            }
        }
        crate::fault::point("after-commit");
        let commit_time = commit_started.elapsed();
        let metrics = &self.metrics;
        metrics.commit_latency.observe(commit_time.as_secs_f64());
        metrics
            .checkpoint_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.records_written.inc_by(written as u64);
        metrics.records_deleted.inc_by(deleted_records as u64);
        metrics.records_skipped.inc_by(skipped_records as u64);
        metrics.checkpoints.inc();
        metrics.committed_at(now_ms);
        let described: Vec<String> = ranges
            .iter()
            .map(|(_, s, _)| format!("{}:{}..{}", s.partition, s.pending.start, s.pending.end))
            .collect();
        tracing::info!(
            checkpoint = id,
            records = committed_records,
            deleted = deleted_records,
            skipped = skipped_records,
            dead_lettered = rejected.len(),
            ranges = %described.join(" "),
            millis = started.elapsed().as_millis() as u64,
            pending_micros = pending_time.as_micros() as u64,
            write_micros = write_time.as_micros() as u64,
            commit_micros = commit_time.as_micros() as u64,
            "checkpoint committed"
        );
        Ok(Outcome {
            committed,
            fenced,
            records,
        })
    }

    fn reject(
        &self,
        record: &OwnedRecord,
        kind: &'static str,
        reason: String,
        write_timestamp: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(), SinkError> {
        if self.on_invalid == OnInvalidRecord::Fail {
            self.metrics.error(kind);
            return Err(SinkError::InvalidRecord {
                partition: SourcePartition::new(record.topic.clone(), record.partition),
                offset: record.offset,
                reason,
            });
        }
        rejected.push(Rejected {
            record: record.clone(),
            kind,
            reason,
            write_timestamp,
        });
        Ok(())
    }

    fn fenced(&self, partition: &SourcePartition, error: &CommitterError) {
        tracing::warn!(%partition, %error, "partition lost to another worker; dropping it");
        self.metrics.error("fenced");
    }

    /// Runs every record's statements with its timestamp; returns the records refused for good, by
    /// index, with the reason, and the Kafka partitions of the records that deleted or ran nothing.
    /// A record whose statements cannot all be bound runs none of them. Transient failures are
    /// retried until they succeed. Rows of one partition travel in unlogged batches (see
    /// [`crate::batching`]); each request waits for room on the replica it is sent to (see
    /// [`crate::routing`]).
    async fn write_all(&self, writes: &[(&OwnedRecord, i64)], schemas: Option<&Schemas>) -> Landed {
        let acknowledged = std::sync::atomic::AtomicUsize::new(0);
        let half = writes.len() / 2;
        let acknowledged = &acknowledged;
        let landed = move |count: usize| {
            let before = acknowledged.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            if before < half && before + count >= half {
                crate::fault::point("mid-write");
            }
        };
        let batching = self.batch_limits.filter(|_| {
            self.targets
                .iter()
                .any(|target| target.clustering_markers.is_some())
        });
        // Records are offered latest first: only the first write of a row seen can leave earlier
        // ones out (see [`crate::supersede`]).
        let mut superseding = Superseding::default();
        let mut actions = vec![None; writes.len()];
        let mut refusals = Vec::new();
        let sent_refused: Vec<(WriteId, Refused)> = if let Some(limits) = batching {
            // Grouping needs every write's keys first: bind them all, then send the groups.
            let mut bound = Vec::with_capacity(writes.len());
            for index in (0..writes.len()).rev() {
                match self.bind(writes, index, schemas) {
                    Ok((done, writes)) => {
                        actions[index] = Some(done);
                        bound.extend(writes.into_iter().filter(|write| {
                            self.decide(&mut superseding, write) == Decision::Send
                        }));
                    }
                    Err(invalid) => refusals.push(invalid),
                }
            }
            // Back in offset order, which grouping keeps.
            bound.reverse();
            // Writes left out are done: the fault point halfway still comes halfway through.
            landed(writes.len().saturating_sub(bound.len()));
            // Groups never mix Kafka partitions: number each topic and partition of the checkpoint.
            let mut sources: HashMap<(&str, i32), usize> = HashMap::new();
            let keys: Vec<WriteKey> = bound
                .iter()
                .map(|write| {
                    let record = writes[write.index].0;
                    let next = sources.len();
                    let source = *sources
                        .entry((&record.topic, record.partition))
                        .or_insert(next);
                    self.write_key(record, source, write)
                })
                .collect();
            let groups = batching::group(&keys, limits);
            let bound = &bound;
            let results: Vec<Vec<(WriteId, Refused)>> = futures::stream::iter(groups)
                .map(|members| async move {
                    let result = self.send_group(bound, &members).await;
                    landed(members.len());
                    result
                })
                .buffer_unordered(self.max_in_flight)
                .collect()
                .await;
            results.into_iter().flatten().collect()
        } else {
            // Record by record, bound as they are sent, so that a checkpoint's bound values never sit
            // in memory all at once and binding overlaps writing.
            let superseding = &mut superseding;
            let invalid = &mut refusals;
            let results: Vec<RecordSent> = futures::stream::iter((0..writes.len()).rev())
                .map(|index| {
                    let bound = match self.bind(writes, index, schemas) {
                        Ok((action, bound)) => {
                            let sent: Vec<Bound> = bound
                                .into_iter()
                                .filter(|write| self.decide(superseding, write) == Decision::Send)
                                .collect();
                            Some((action, sent))
                        }
                        Err(refused) => {
                            invalid.push(refused);
                            None
                        }
                    };
                    async move {
                        let Some((action, bound)) = bound else {
                            return (index, None, Vec::new());
                        };
                        let sent = bound.iter().map(|write| self.send_one(write));
                        let refused: Vec<(WriteId, Refused)> = futures::future::join_all(sent)
                            .await
                            .into_iter()
                            .flatten()
                            .collect();
                        landed(1);
                        (index, Some(action), refused)
                    }
                })
                .buffer_unordered(self.max_in_flight)
                .collect()
                .await;
            let mut sent_refused = Vec::new();
            for (index, action, refused) in results {
                actions[index] = action;
                sent_refused.extend(refused);
            }
            sent_refused
        };
        let mut refused_writes = HashSet::new();
        for (write, refused) in sent_refused {
            refused_writes.insert(write);
            refusals.push(refused);
        }
        refusals.extend(
            self.send_behind(writes, schemas, superseding, refused_writes)
                .await,
        );
        self.metrics.set_ready(true);
        Landed::new(&actions, refusals)
    }

    /// Steps 2 and 3 of [`crate::supersede`] for one bound write: a write of a statement that cannot
    /// be superseded, or whose key cannot be read, is always sent.
    fn decide(&self, superseding: &mut Superseding, write: &Bound) -> Decision {
        match self.offered(write) {
            Some(offered) => superseding.decide(offered),
            None => Decision::Send,
        }
    }

    /// The decision's view of a bound write: its row as the bytes Cassandra would get for its key
    /// markers, and the markers it sets. `None` when its statement cannot be superseded or a key marker
    /// is unset or null (Cassandra refuses that write; it must be sent to be refused).
    fn offered(&self, write: &Bound) -> Option<Write> {
        use scylla::serialize::value::SerializeValue;
        use scylla::serialize::writers::CellWriter;
        use scylla::value::MaybeUnset;
        let target = &self.targets[write.target];
        let markers = target.row_markers.as_ref()?;
        let specs = target.statement.get_variable_col_specs();
        let mut cells = Vec::new();
        for &marker in markers {
            let MaybeUnset::Set(Some(value)) = write.values.get(marker)? else {
                return None;
            };
            let typ = specs.get_by_index(marker)?.typ();
            value.serialize(typ, CellWriter::new(&mut cells)).ok()?;
        }
        Some(Write {
            id: WriteId {
                record: write.index,
                target: write.target,
            },
            row: RowKey::new(write.target, &cells),
            timestamp: write.timestamp,
            sets: MarkerSet::new(
                write
                    .values
                    .iter()
                    .map(|value| matches!(value, MaybeUnset::Set(_))),
            ),
        })
    }

    /// Step 4 of [`crate::supersede`]: the writes left out behind a write Cassandra refused are bound
    /// again and decided among themselves, round after round, until no superseder is refused. Counts
    /// the writes left out for good; returns the refusals of these rounds.
    async fn send_behind(
        &self,
        writes: &[(&OwnedRecord, i64)],
        schemas: Option<&Schemas>,
        mut superseding: Superseding,
        mut refused: HashSet<WriteId>,
    ) -> Vec<Refused> {
        let mut refusals = Vec::new();
        let mut skipped = superseding.skipped();
        loop {
            let behind = superseding.behind(&refused);
            if behind.is_empty() {
                break;
            }
            skipped -= behind.len();
            superseding = Superseding::default();
            refused.clear();
            let mut sends = Vec::new();
            for id in behind {
                // It bound before, and binding is a function of the record alone; were it to fail
                // now, the record is refused with the reason rather than left unwritten.
                let bound = match self.bind(writes, id.record, schemas) {
                    Ok((_, bound)) => bound,
                    Err(refused) => {
                        refusals.push(refused);
                        continue;
                    }
                };
                sends.extend(bound.into_iter().filter(|write| {
                    write.target == id.target
                        && self.decide(&mut superseding, write) == Decision::Send
                }));
            }
            skipped += superseding.skipped();
            let sends = &sends;
            let results: Vec<Option<(WriteId, Refused)>> = futures::stream::iter(0..sends.len())
                .map(|index| async move { self.send_one(&sends[index]).await })
                .buffer_unordered(self.max_in_flight)
                .collect()
                .await;
            for (write, refusal) in results.into_iter().flatten() {
                refused.insert(write);
                refusals.push(refusal);
            }
        }
        self.metrics.writes_superseded.inc_by(skipped as u64);
        refusals
    }

    /// What a record does, and the values of each statement it runs (by index into the targets).
    /// One statement that cannot be bound makes the whole record invalid: none of them runs.
    fn values(
        &self,
        record: &SourceRecord<'_>,
        schemas: Option<&Schemas>,
    ) -> Result<(Action, Vec<(usize, BoundValues)>), InvalidRecord> {
        let set = self
            .set_of_topic
            .get(record.topic)
            .map_or(&self.sets[0], |&index| &self.sets[index]);
        // One parse of the key and value serves the rules and every statement of the record.
        let mut parsed = match schemas {
            Some(schemas) => schemas.parse(record)?,
            None => Parsed::default(),
        };
        let action = set.rules.decide_in(record, &mut parsed)?;
        let mut chosen = Vec::new();
        for index in set.targets.clone() {
            if set
                .rules
                .runs_in(index - set.targets.start, action, record, &mut parsed)?
            {
                chosen.push((
                    index,
                    self.targets[index].plan.bind_in(record, &mut parsed)?,
                ));
            }
        }
        Ok((action, chosen))
    }

    /// Binds a record's statements and computes their tokens; a record that does not fit comes back
    /// refused, with its kind and reason.
    fn bind(
        &self,
        writes: &[(&OwnedRecord, i64)],
        index: usize,
        schemas: Option<&Schemas>,
    ) -> Result<(Action, Vec<Bound>), Refused> {
        let (record, timestamp) = writes[index];
        let (action, chosen) = self
            .values(&view(record), schemas)
            .map_err(|invalid| (index, invalid.kind(), invalid.to_string()))?;
        let bound = chosen
            .into_iter()
            .map(|(target, values)| {
                // A token that cannot be computed only means the driver routes the write itself.
                let token = self.targets[target]
                    .statement
                    .calculate_token(&values)
                    .ok()
                    .flatten();
                Bound {
                    index,
                    target,
                    values,
                    token,
                    timestamp,
                }
            })
            .collect();
        Ok((action, bound))
    }

    /// What grouping needs of a bound write: its partition (table and token) and its row within it.
    /// Only tables with clustering columns batch; a delete may remove more than one row, so it is
    /// never batched and closes the groups it could be reordered against.
    fn write_key(&self, record: &OwnedRecord, source: usize, write: &Bound) -> WriteKey {
        use std::hash::{Hash, Hasher};
        let target = &self.targets[write.target];
        let mut partition = std::collections::hash_map::DefaultHasher::new();
        (&target.table.keyspace, &target.table.name).hash(&mut partition);
        write.token.map(|token| token.value()).hash(&mut partition);
        let partition_key = write.token.map(|_| partition.finish());
        let mut row = std::collections::hash_map::DefaultHasher::new();
        partition_key.hash(&mut row);
        for &marker in target.clustering_markers.iter().flatten() {
            // Debug text identifies a value exactly (CqlValue has floats, so no Hash).
            format!("{:?}", write.values.get(marker)).hash(&mut row);
        }
        WriteKey {
            source,
            // A table without clustering columns has one row per partition: nothing to batch.
            partition_key: partition_key
                .filter(|_| target.deletes || target.clustering_markers.is_some()),
            row: row.finish(),
            bytes: record.value.as_ref().map_or(0, Vec::len)
                + record.key.as_ref().map_or(0, Vec::len),
            alone: target.deletes,
        }
    }

    /// Sends one group: a single write, or an unlogged batch stamped with its last row's timestamp.
    /// A batch Cassandra refuses is split into single writes, so that only the offending record is
    /// refused. Returns the records refused for good.
    async fn send_group(&self, bound: &[Bound], members: &[usize]) -> Vec<(WriteId, Refused)> {
        if let [single] = members {
            return self.send_one(&bound[*single]).await.into_iter().collect();
        }
        let last = &bound[members[members.len() - 1]];
        let values: Vec<&BoundValues> = members.iter().map(|&m| &bound[m].values).collect();
        let last_target = &self.targets[last.target];
        let statement = &last_target.statement;
        let refused = self
            .send(&last_target.table, last.token, last.timestamp, |profile| {
                let mut batch = Batch::new(BatchType::Unlogged);
                for &member in members {
                    batch.append_statement(self.targets[bound[member].target].statement.clone());
                }
                if let Some(consistency) = statement.get_consistency() {
                    batch.set_consistency(consistency);
                }
                batch.set_is_idempotent(statement.get_is_idempotent());
                batch.set_timestamp(Some(last.timestamp));
                batch.set_execution_profile_handle(profile);
                let session = self.session.clone();
                let values = &values;
                async move { session.batch(&batch, values).await.map(drop) }
            })
            .await;
        if refused.is_none() {
            self.metrics.batches.inc();
            return Vec::new();
        }
        let mut refused = Vec::new();
        for &member in members {
            refused.extend(Box::pin(self.send_group(bound, &[member])).await);
        }
        refused
    }

    /// Sends one write on its own, stamped with its timestamp; returns its refusal, if Cassandra
    /// refuses it for good.
    async fn send_one(&self, write: &Bound) -> Option<(WriteId, Refused)> {
        let target = &self.targets[write.target];
        self.send(&target.table, write.token, write.timestamp, |profile| {
            let mut statement = target.statement.clone();
            statement.set_timestamp(Some(write.timestamp));
            statement.set_execution_profile_handle(profile);
            let session = self.session.clone();
            async move {
                session
                    .execute_unpaged(&statement, &write.values)
                    .await
                    .map(drop)
            }
        })
        .await
        .map(|reason| {
            let id = WriteId {
                record: write.index,
                target: write.target,
            };
            (id, (write.index, "rejected_by_cassandra", reason))
        })
    }

    /// Sends one request to a replica of `token` with room for it, retrying transient failures with
    /// backoff; returns Cassandra's reason when it refuses the request for good.
    async fn send<F, Fut>(
        &self,
        table: &Table,
        token: Option<Token>,
        timestamp: i64,
        request: F,
    ) -> Option<String>
    where
        F: Fn(Option<scylla::client::execution_profile::ExecutionProfileHandle>) -> Fut,
        Fut: Future<Output = Result<(), scylla::errors::ExecutionError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            let route = self
                .router
                .route(&self.session, token.map(|token| (table, token)))
                .await;
            self.metrics.requests_in_flight.inc();
            let result = request(route.profile.clone()).await;
            self.metrics.requests_in_flight.dec();
            match result {
                Ok(()) => {
                    route.succeeded();
                    return None;
                }
                Err(error) => match classify(&error) {
                    Failure::Rejected(reason) => return Some(reason),
                    Failure::Transient(message) => {
                        // The retry goes to another replica while this one is passed over.
                        route.failed();
                        drop(route);
                        self.metrics.error("cassandra_unavailable");
                        self.metrics
                            .set_unready(format!("a write to Cassandra failed: {message}"));
                        tracing::warn!(%message, timestamp, "write failed; retrying the same write");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                },
            }
        }
    }

    /// Retries a committer or dead-letter operation while Cassandra is unavailable; returns a fencing
    /// error (or other final error) at once.
    async fn retry<T, E, F, Fut>(&self, operation: &'static str, mut attempt: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: RetryClass + std::fmt::Display,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match attempt().await {
                Ok(value) => {
                    self.metrics.set_ready(true);
                    return Ok(value);
                }
                Err(error) if error.transient() => {
                    self.metrics
                        .set_unready(format!("{operation} failed in Cassandra: {error}"));
                    self.metrics.error("cassandra_unavailable");
                    tracing::warn!(%error, operation, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Whether an error is worth retrying.
pub trait RetryClass {
    /// True when the same request may succeed later.
    fn transient(&self) -> bool;
}

impl RetryClass for CommitterError {
    fn transient(&self) -> bool {
        matches!(self, CommitterError::Cassandra { .. })
    }
}

/// Dead-letter writes are retried until they land: an invalid record is never dropped.
impl RetryClass for crate::dead_letter::DeadLetterError {
    fn transient(&self) -> bool {
        true
    }
}
