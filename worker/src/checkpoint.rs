//! The decisions of the exactly-once protocol, apart from any I/O: where a claimed partition resumes,
//! how records are grouped into checkpoint ranges, and which write timestamp each record gets.
//!
//! # The protocol
//! Per Kafka partition (of each topic the sink reads: a [`SourcePartition`]) there is one committer row (its own Cassandra partition, so lightweight
//! transactions on different partitions never contend). A worker:
//! 1. **claims** the row with a lightweight transaction that bumps its `epoch` (the fencing token),
//!    then reads (serially) the committed offset, any pending range, the timestamp ceiling and the
//!    count of records committed;
//! 2. **seals** a checkpoint: a contiguous offset range `[start, end)` of buffered records;
//! 3. records it as **pending** (range, base timestamp, new ceiling) conditional on its epoch and on
//!    the count, *before* writing any data;
//! 4. **writes** every record with write timestamp `base + (offset − start)`, concurrently;
//! 5. **commits** `committed = end` and the raised count, conditional on its epoch and on the count
//!    before the range, once every write is acknowledged.
//!
//! # Guarantees
//! * Timestamps strictly increase with the offset across checkpoints and owners: a new base is above
//!   the persisted ceiling, and the ceiling is raised in the pending record before the timestamps are
//!   used. So a replayed or late record never overwrites a newer one (last write wins in Cassandra).
//! * A pending range found at claim time is rewritten with exactly its recorded base, so the recovery
//!   writes identical cells rather than newer ones: nothing a reader saw can regress.
//! * A range that Kafka no longer holds is an error ([`RangeGone`]), never a silent skip.
//! * A transaction of steps 3 or 5 that reaches Cassandra late (after later ones of the same owner)
//!   applies nothing: the count it is conditional on has moved on. So a committed offset never goes
//!   back and the ceiling is never lowered, and such a transaction may be sent again to another
//!   coordinator when the first does not answer.
//!
//! # Assumptions
//! Offsets within a partition increase; the source is read from a claimed position in offset order.
//! Compaction may leave gaps, but never removes the last record of a key, so a pending range's final
//! record or a later one is always delivered again.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// One partition of one topic: the unit a worker claims, checkpoints, commits and is fenced on.
/// Positions are keyed by it, so topics with the same partition numbers never share a position.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePartition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition within it.
    pub partition: i32,
}

impl SourcePartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// `topic/partition`, as logs and errors name it.
impl fmt::Display for SourcePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A sealed range recorded in the committer row before its data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// First offset of the range.
    pub start: i64,
    /// One past the last offset of the range.
    pub end: i64,
    /// Write timestamp (microseconds) of the record at `start`.
    pub base_timestamp: i64,
}

impl Pending {
    /// The write timestamp of the record at `offset`, which must lie in the range.
    pub fn timestamp_of(&self, offset: i64) -> i64 {
        debug_assert!(self.start <= offset && offset < self.end);
        self.base_timestamp + (offset - self.start)
    }

    /// The highest timestamp this range may use.
    pub fn ceiling(&self) -> i64 {
        self.base_timestamp + (self.end - self.start) - 1
    }
}

/// What a claim read from the committer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Kafka topic and partition.
    pub partition: SourcePartition,
    /// The epoch this worker now holds.
    pub epoch: i64,
    /// Next offset to apply; `None` when nothing was ever committed.
    pub committed: Option<i64>,
    /// A range recorded as pending by a previous owner (or by this worker before a crash).
    pub pending: Option<Pending>,
    /// Highest write timestamp any owner may have used.
    pub ceiling: i64,
    /// Records covered by committed checkpoints so far.
    pub records_committed: i64,
}

/// Where to start reading a claimed partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The earliest offset Kafka holds (a partition never committed).
    Beginning,
    /// This offset.
    Offset(i64),
}

/// Records the sink must apply that Kafka no longer holds (retention or deletion ran ahead of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "partition {partition}: offsets {from}..{earliest} are no longer in Kafka (its earliest offset is \
     {earliest}), but the committer table says they were never applied; stopping rather than skipping \
     them. Restore the data, or reset this sink's position to {earliest} to accept the loss"
)]
pub struct RangeGone {
    /// Kafka topic and partition.
    pub partition: SourcePartition,
    /// First offset the sink still needs.
    pub from: i64,
    /// Earliest offset Kafka holds.
    pub earliest: i64,
}

impl Claim {
    /// Where to resume, given the earliest offset Kafka holds for the partition.
    pub fn resume(&self, earliest_in_kafka: i64) -> Result<StartAt, RangeGone> {
        let needed = match (self.pending, self.committed) {
            (Some(pending), _) => Some(pending.start),
            (None, committed) => committed,
        };
        match needed {
            None => Ok(StartAt::Beginning),
            Some(from) if from < earliest_in_kafka => Err(RangeGone {
                partition: self.partition.clone(),
                from,
                earliest: earliest_in_kafka,
            }),
            Some(from) => Ok(StartAt::Offset(from)),
        }
    }
}

/// The base timestamp for a new range: above everything any owner may have used, and not below the
/// wall clock, so the sink's writes also win over rows written earlier by other clients.
pub fn next_base(ceiling: i64, now_micros: i64) -> i64 {
    ceiling.saturating_add(1).max(now_micros)
}

/// Microseconds since the epoch by this machine's clock.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

/// Something whose size in bytes counts against checkpoint limits.
pub trait Sizable {
    /// Bytes.
    fn size(&self) -> usize;
}

/// A sealed range and its records, ready to be recorded as pending and written.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed<R> {
    /// Kafka topic and partition.
    pub partition: SourcePartition,
    /// Range and timestamps.
    pub pending: Pending,
    /// True when this range rewrites a pending range found at claim time (already recorded).
    pub recovery: bool,
    /// `(offset, record)` in offset order.
    pub records: Vec<(i64, R)>,
}

/// Buffered records of one claimed partition.
#[derive(Debug, Clone)]
pub struct PartitionBuffer<R> {
    partition: SourcePartition,
    /// The next offset expected; records below it are duplicates (a re-fetch after a seek).
    position: Option<i64>,
    ceiling: i64,
    recovering: Option<Pending>,
    records: Vec<(i64, R)>,
}

impl<R> PartitionBuffer<R> {
    /// A buffer for a claimed partition, resuming where the claim says.
    pub fn new(claim: &Claim) -> Self {
        Self {
            partition: claim.partition.clone(),
            position: claim.pending.map(|p| p.start).or(claim.committed),
            ceiling: claim.ceiling,
            recovering: claim.pending,
            records: Vec::new(),
        }
    }

    /// Adds a record; returns false (and drops it) when its offset was already buffered or applied.
    pub fn push(&mut self, offset: i64, record: R) -> bool {
        if self.position.is_some_and(|position| offset < position) {
            return false;
        }
        self.position = Some(offset + 1);
        self.records.push((offset, record));
        true
    }

    /// Sizes of the buffered records, by a measure the caller chooses.
    pub fn sizes(&self) -> impl Iterator<Item = usize> + '_
    where
        R: Sized + Sizable,
    {
        self.records.iter().map(|(_, record)| record.size())
    }

    /// Records buffered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// True while a pending range found at claim time has not been sealed again.
    pub fn is_recovering(&self) -> bool {
        self.recovering.is_some()
    }

    /// True when a recovering partition has seen the pending range's last offset (or a later one),
    /// so its recovery range can be sealed.
    pub fn recovery_complete(&self) -> bool {
        match (self.recovering, self.records.last()) {
            (Some(pending), Some((offset, _))) => *offset >= pending.end - 1,
            _ => false,
        }
    }

    /// Seals what is buffered into a range, or returns `None` when there is nothing to seal yet.
    /// A recovering partition seals exactly its pending range (same start, end and base) once it is
    /// complete, and nothing before that; later records stay buffered for the next checkpoint.
    pub fn seal(&mut self, now_micros: i64) -> Option<Sealed<R>> {
        if let Some(pending) = self.recovering {
            if !self.recovery_complete() {
                return None;
            }
            let split = self
                .records
                .partition_point(|(offset, _)| *offset < pending.end);
            let rest = self.records.split_off(split);
            let records = std::mem::replace(&mut self.records, rest);
            self.recovering = None;
            self.ceiling = self.ceiling.max(pending.ceiling());
            return Some(Sealed {
                partition: self.partition.clone(),
                pending,
                recovery: true,
                records,
            });
        }
        let start = self.records.first()?.0;
        let end = self.records.last()?.0 + 1;
        let pending = Pending {
            start,
            end,
            base_timestamp: next_base(self.ceiling, now_micros),
        };
        self.ceiling = pending.ceiling();
        Some(Sealed {
            partition: self.partition.clone(),
            pending,
            recovery: false,
            records: std::mem::take(&mut self.records),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(committed: Option<i64>, pending: Option<Pending>, ceiling: i64) -> Claim {
        Claim {
            partition: SourcePartition::new("values", 0),
            epoch: 1,
            committed,
            pending,
            ceiling,
            records_committed: 0,
        }
    }

    #[test]
    fn timestamps_follow_offsets_within_a_range() {
        let pending = Pending {
            start: 100,
            end: 110,
            base_timestamp: 5_000,
        };
        assert_eq!(pending.timestamp_of(100), 5_000);
        assert_eq!(pending.timestamp_of(109), 5_009);
        assert_eq!(pending.ceiling(), 5_009);
    }

    #[test]
    fn a_new_base_is_above_the_ceiling_even_when_the_clock_is_behind() {
        assert_eq!(next_base(1_000, 500), 1_001, "clock behind the ceiling");
        assert_eq!(next_base(1_000, 9_000), 9_000, "clock ahead");
        assert_eq!(next_base(i64::MAX, 0), i64::MAX, "no overflow");
    }

    #[test]
    fn resume_prefers_a_pending_range_and_refuses_a_gone_one() {
        let pending = Pending {
            start: 40,
            end: 50,
            base_timestamp: 1,
        };
        assert_eq!(claim(None, None, 0).resume(7), Ok(StartAt::Beginning));
        assert_eq!(claim(Some(40), None, 0).resume(0), Ok(StartAt::Offset(40)));
        assert_eq!(
            claim(Some(40), Some(pending), 0).resume(40),
            Ok(StartAt::Offset(40))
        );
        let gone = claim(Some(40), None, 0).resume(45).expect_err("range gone");
        assert_eq!(
            gone,
            RangeGone {
                partition: SourcePartition::new("values", 0),
                from: 40,
                earliest: 45
            }
        );
        assert!(gone.to_string().contains("offsets 40..45"), "{gone}");
        assert!(claim(Some(40), Some(pending), 0).resume(41).is_err());
    }

    #[test]
    fn duplicates_below_the_position_are_dropped() {
        let mut buffer = PartitionBuffer::new(&claim(Some(10), None, 0));
        assert!(!buffer.push(9, "old"));
        assert!(buffer.push(10, "a"));
        assert!(!buffer.push(10, "again"));
        assert!(buffer.push(12, "b"), "gaps (compaction, markers) are fine");
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn consecutive_ranges_get_strictly_increasing_timestamps() {
        let mut buffer = PartitionBuffer::new(&claim(Some(0), None, 1_000));
        for offset in 0..5 {
            buffer.push(offset, offset);
        }
        let first = buffer.seal(10).expect("sealed");
        assert_eq!(
            first.pending,
            Pending {
                start: 0,
                end: 5,
                base_timestamp: 1_001
            }
        );
        assert!(!first.recovery);
        assert!(buffer.seal(10).is_none(), "nothing buffered");
        buffer.push(5, 5);
        let second = buffer.seal(10).expect("sealed");
        assert_eq!(second.pending.base_timestamp, first.pending.ceiling() + 1);
        let last_first = first.pending.timestamp_of(4);
        assert!(second.pending.timestamp_of(5) > last_first);
    }

    #[test]
    fn recovery_rewrites_exactly_the_pending_range_with_its_base() {
        let pending = Pending {
            start: 20,
            end: 25,
            base_timestamp: 7_000,
        };
        // A previous owner reserved up to 7_004; the ceiling persisted with it.
        let mut buffer = PartitionBuffer::new(&claim(Some(20), Some(pending), 7_004));
        assert!(buffer.is_recovering());
        for offset in 20..24 {
            buffer.push(offset, offset);
        }
        assert!(
            buffer.seal(1).is_none(),
            "incomplete recovery range is not sealed"
        );
        buffer.push(24, 24);
        buffer.push(25, 25);
        buffer.push(26, 26);
        let recovered = buffer.seal(1).expect("recovery sealed");
        assert!(recovered.recovery);
        assert_eq!(recovered.pending, pending);
        assert_eq!(
            recovered
                .records
                .iter()
                .map(|(o, _)| *o)
                .collect::<Vec<_>>(),
            vec![20, 21, 22, 23, 24]
        );
        let next = buffer.seal(1).expect("the rest");
        assert!(!next.recovery);
        assert_eq!((next.pending.start, next.pending.end), (25, 27));
        assert_eq!(next.pending.base_timestamp, 7_005);
    }

    #[test]
    fn a_compacted_away_last_record_still_completes_recovery() {
        let pending = Pending {
            start: 0,
            end: 10,
            base_timestamp: 100,
        };
        let mut buffer = PartitionBuffer::new(&claim(None, Some(pending), 109));
        buffer.push(3, ());
        buffer.push(12, ()); // offsets 4..=11 compacted away
        let recovered = buffer.seal(0).expect("sealed");
        assert_eq!(recovered.records.len(), 1);
        assert_eq!(recovered.pending, pending);
    }
}
