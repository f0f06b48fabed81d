//! The write loop: buffers records per claimed partition, seals a checkpoint every interval (or when the
//! buffer is full), records it as pending, writes it with offset-derived timestamps, and commits it
//! only once every write has been acknowledged. See [`crate::checkpoint`] for the protocol.
//!
//! # Guarantees
//! * A checkpoint commits only after all its writes (and dead-letter rows) landed; on a Cassandra fault
//!   the same checkpoint is retried with the same timestamps until it lands or the worker stops. The
//!   loop never moves past a checkpoint that did not fully land.
//! * A fenced partition (another worker claimed it) is dropped at once: its pending or commit
//!   transaction failed, so nothing more is written or committed for it.
//!
//! # Caveats
//! Readers may see a checkpoint's rows before its commit: Cassandra has no multi-partition isolation.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::mpsc;

use crate::cassandra::{Failure, classify};
use crate::checkpoint::{Claim, PartitionBuffer, Sealed, now_micros};
use crate::committer::{Committer, CommitterError};
use crate::config::OnInvalidRecord;
use crate::dead_letter::{DeadLetter, Rejected};
use crate::mapping::{Plan, SourceRecord};
use crate::metrics::Metrics;
use crate::source::{OwnedRecord, Source, SourceError, SourceEvent};

/// Why the write loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A record does not fit and `onInvalidRecord` is `fail`.
    #[error(
        "invalid record at partition {partition} offset {offset}: {reason} (onInvalidRecord: fail stops \
         the sink; nothing from its checkpoint was committed)"
    )]
    InvalidRecord {
        /// Partition.
        partition: i32,
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
}

/// Everything the loop writes with.
pub struct Writer {
    /// Data session.
    pub session: Arc<Session>,
    /// The user's statement, prepared.
    pub statement: PreparedStatement,
    /// Record → bind values.
    pub plan: Plan,
    /// Committer rows.
    pub committer: Arc<Committer>,
    /// Invalid records' destination.
    pub dead_letter: DeadLetter,
    /// What to do with invalid records.
    pub on_invalid: OnInvalidRecord,
    /// Most writes in flight at once.
    pub max_in_flight: usize,
    /// Metrics and readiness.
    pub metrics: Arc<Metrics>,
    /// Source topic.
    pub topic: String,
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

/// The loop's state: claimed partitions and their buffers.
pub struct Loop {
    writer: Writer,
    limits: Limits,
    owned: BTreeMap<i32, Owned>,
    buffered_records: usize,
    buffered_bytes: usize,
    checkpoint_id: u64,
}

enum Step {
    Continue,
    Stop,
}

impl Loop {
    /// A loop that owns nothing yet.
    pub fn new(writer: Writer, limits: Limits) -> Self {
        Self {
            writer,
            limits,
            owned: BTreeMap::new(),
            buffered_records: 0,
            buffered_bytes: 0,
            checkpoint_id: 0,
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
        self.writer.metrics.set_ready(true);
        loop {
            let step = tokio::select! {
                biased;
                () = &mut shutdown => {
                    tracing::info!("shutting down: committing what is buffered");
                    self.checkpoint(source, None).await?;
                    Step::Stop
                }
                event = events.recv() => match event {
                    None => Step::Stop,
                    Some(event) => self.handle(event, source).await?,
                },
                () = tokio::time::sleep_until(next_seal) => {
                    next_seal = tokio::time::Instant::now() + self.limits.interval;
                    self.checkpoint(source, None).await?;
                    Step::Continue
                }
            };
            if let Step::Stop = step {
                return Ok(());
            }
            let recovery_ready = self
                .owned
                .values()
                .any(|owned| owned.buffer.recovery_complete());
            if self.buffered_records >= self.limits.max_records
                || self.buffered_bytes >= self.limits.max_bytes
                || recovery_ready
            {
                self.checkpoint(source, None).await?;
                next_seal = tokio::time::Instant::now() + self.limits.interval;
            }
        }
    }

    async fn handle(&mut self, event: SourceEvent, source: &Source) -> Result<Step, SinkError> {
        match event {
            SourceEvent::Assigned(claims) => {
                for claim in claims {
                    self.owned.insert(
                        claim.partition,
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
                self.checkpoint(source, Some(&partitions)).await?;
                for partition in &partitions {
                    self.drop_partition(*partition);
                }
                let _ = done.send(());
            }
            SourceEvent::Record(record) => {
                self.writer.metrics.records_read.inc();
                if let Some(owned) = self.owned.get_mut(&record.partition) {
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

    fn drop_partition(&mut self, partition: i32) {
        if let Some(owned) = self.owned.remove(&partition) {
            self.buffered_records = self.buffered_records.saturating_sub(owned.buffer.len());
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

    /// Seals, records, writes and commits one checkpoint over all partitions, or over `only`.
    async fn checkpoint(&mut self, source: &Source, only: Option<&[i32]>) -> Result<(), SinkError> {
        let started = Instant::now();
        let now = now_micros();
        let mut sealed: Vec<(i64, Sealed<OwnedRecord>)> = Vec::new();
        for (partition, owned) in &mut self.owned {
            if only.is_some_and(|only| !only.contains(partition)) {
                continue;
            }
            if let Some(range) = owned.buffer.seal(now) {
                sealed.push((owned.claim.epoch, range));
            }
        }
        if sealed.is_empty() {
            return Ok(());
        }
        self.checkpoint_id += 1;
        let records: usize = sealed.iter().map(|(_, s)| s.records.len()).sum();
        let bytes: usize = sealed
            .iter()
            .flat_map(|(_, s)| s.records.iter().map(|(_, record)| record.size()))
            .sum();
        self.buffered_records = self.buffered_records.saturating_sub(records);
        self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);

        // Bind every record first: under `fail`, an invalid record stops the sink before anything of
        // this checkpoint is recorded or written.
        let mut writes = Vec::with_capacity(records);
        let mut rejected = Vec::new();
        for (_, range) in &sealed {
            for (offset, record) in &range.records {
                let timestamp = range.pending.timestamp_of(*offset);
                let view = SourceRecord {
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    headers: &record.headers,
                    timestamp_ms: record.timestamp_ms,
                    partition: record.partition,
                    offset: *offset,
                };
                match self.writer.plan.bind(&view) {
                    Ok(values) => writes.push((record, timestamp, values)),
                    Err(invalid) => self.reject(
                        record,
                        invalid.kind(),
                        invalid.to_string(),
                        timestamp,
                        &mut rejected,
                    )?,
                }
            }
        }

        // Record pending ranges; a fenced partition is dropped with its records.
        let mut fenced = Vec::new();
        for (epoch, range) in &sealed {
            if range.recovery {
                continue;
            }
            let result = self
                .retry("record pending checkpoint", || {
                    self.writer
                        .committer
                        .record_pending(range.partition, *epoch, &range.pending)
                })
                .await;
            if let Err(error) = result {
                self.fenced(range.partition, &error);
                fenced.push(range.partition);
            }
        }
        crate::fault::point("after-pending");
        writes.retain(|(record, _, _)| !fenced.contains(&record.partition));
        rejected.retain(|r| !fenced.contains(&r.record.partition));

        // Write everything, bounded in flight; records Cassandra itself refuses are rejected too.
        let refused = self.write_all(&writes).await;
        for (index, reason) in refused {
            let (record, timestamp, _) = &writes[index];
            self.reject(
                record,
                "rejected_by_cassandra",
                reason,
                *timestamp,
                &mut rejected,
            )?;
        }
        for record in &rejected {
            self.retry("write dead letter", || {
                self.writer.dead_letter.write(record)
            })
            .await?;
            self.writer.metrics.records_dead_lettered.inc();
            self.writer.metrics.error(record.kind);
            tracing::warn!(
                partition = record.record.partition,
                offset = record.record.offset,
                kind = record.kind,
                reason = %record.reason,
                "invalid record dead-lettered"
            );
        }

        crate::fault::point("before-commit");
        // Commit each partition whose range fully landed.
        let commit_started = Instant::now();
        let now_ms = now_micros() / 1000;
        let mut committed = 0usize;
        let mut written = 0usize;
        for (epoch, range) in &sealed {
            if fenced.contains(&range.partition) {
                continue;
            }
            let Some(owned) = self.owned.get(&range.partition) else {
                continue;
            };
            let total = owned.records_committed + range.records.len() as i64;
            let result = self
                .retry("commit", || {
                    self.writer.committer.commit(
                        range.partition,
                        &self.writer.topic,
                        *epoch,
                        range.pending.end,
                        total,
                        now_ms,
                    )
                })
                .await;
            match result {
                Ok(()) => {
                    if let Some(owned) = self.owned.get_mut(&range.partition) {
                        owned.records_committed = total;
                        owned.claim.committed = Some(range.pending.end);
                    }
                    committed += range.records.len();
                    written += range.records.len()
                        - rejected
                            .iter()
                            .filter(|r| r.record.partition == range.partition)
                            .count();
                    source.report_position(range.partition, range.pending.end);
                }
                Err(error) => {
                    self.fenced(range.partition, &error);
                    fenced.push(range.partition);
                }
            }
        }
        crate::fault::point("after-commit");
        for partition in fenced {
            self.drop_partition(partition);
        }
        let metrics = &self.writer.metrics;
        metrics
            .commit_latency
            .observe(commit_started.elapsed().as_secs_f64());
        metrics
            .checkpoint_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.records_written.inc_by(written as u64);
        metrics.commit_lag.dec_by(records as i64);
        metrics.checkpoints.inc();
        metrics.committed_at(now_ms);
        let ranges: Vec<String> = sealed
            .iter()
            .map(|(_, s)| format!("{}:{}..{}", s.partition, s.pending.start, s.pending.end))
            .collect();
        tracing::info!(
            checkpoint = self.checkpoint_id,
            records = committed,
            dead_lettered = rejected.len(),
            ranges = %ranges.join(" "),
            millis = started.elapsed().as_millis() as u64,
            "checkpoint committed"
        );
        Ok(())
    }

    fn reject(
        &self,
        record: &OwnedRecord,
        kind: &'static str,
        reason: String,
        write_timestamp: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(), SinkError> {
        if self.writer.on_invalid == OnInvalidRecord::Fail {
            self.writer.metrics.error(kind);
            return Err(SinkError::InvalidRecord {
                partition: record.partition,
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

    fn fenced(&self, partition: i32, error: &CommitterError) {
        tracing::warn!(partition, %error, "partition lost to another worker; dropping it");
        self.writer.metrics.error("fenced");
    }

    /// Writes every record with its timestamp; returns the records Cassandra refused for good, by
    /// index, with the reason. Transient failures are retried until they succeed.
    async fn write_all(
        &self,
        writes: &[(&OwnedRecord, i64, crate::mapping::BoundValues)],
    ) -> Vec<(usize, String)> {
        let writer = &self.writer;
        let acknowledged = std::sync::atomic::AtomicUsize::new(0);
        let acknowledged = &acknowledged;
        let half = writes.len() / 2;
        let results = futures::stream::iter(writes.iter().enumerate())
            .map(|(index, (_, timestamp, values))| async move {
                let mut statement = writer.statement.clone();
                statement.set_timestamp(Some(*timestamp));
                let mut backoff = Duration::from_millis(100);
                loop {
                    writer.metrics.requests_in_flight.inc();
                    let result = writer.session.execute_unpaged(&statement, values).await;
                    writer.metrics.requests_in_flight.dec();
                    match result {
                        Ok(_) => {
                            if acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
                                == half
                            {
                                crate::fault::point("mid-write");
                            }
                            return None;
                        }
                        Err(error) => match classify(&error) {
                            Failure::Rejected(reason) => return Some((index, reason)),
                            Failure::Transient(message) => {
                                writer.metrics.error("cassandra_unavailable");
                                writer.metrics.set_ready(false);
                                tracing::warn!(%message, "write failed; retrying the same write");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(10));
                            }
                        },
                    }
                }
            })
            .buffer_unordered(writer.max_in_flight)
            .filter_map(|refused| async move { refused })
            .collect::<Vec<_>>()
            .await;
        writer.metrics.set_ready(true);
        results
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
                    self.writer.metrics.set_ready(true);
                    return Ok(value);
                }
                Err(error) if error.transient() => {
                    self.writer.metrics.set_ready(false);
                    self.writer.metrics.error("cassandra_unavailable");
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
