//! Writes a checkpoint need not send: an INSERT whose row a later INSERT of the same statement, in the
//! same checkpoint, replaces entirely. A key updated ten times within a second (an order's status, a
//! device's last reading, a CDC stream of one hot row) then costs Cassandra one write per checkpoint
//! instead of ten, and the table ends the same.
//!
//! # The decision, step by step
//! 1. Each write of a checkpoint is offered to [`Superseding::decide`], best latest first (the
//!    checkpoint's records in reverse): only the first write of a row seen can leave others out.
//! 2. The first write seen of a row (its statement and the bytes of the markers that fill its primary
//!    key) is sent, and becomes the row's *superseder*.
//! 3. A later-offered write of that row is left out when the superseder's write timestamp is strictly
//!    higher and the superseder sets every marker it sets. Otherwise it is sent too.
//! 4. Once every write was sent, [`Superseding::behind`] hands back the writes left out behind a
//!    superseder Cassandra refused for good (its record is then dead-lettered or stops the sink): they
//!    are decided again among themselves from step 1, and sent, until no superseder is refused.
//!
//! # Guarantees
//! * A write is left out only behind a write that landed before the checkpoint commits (step 4), and
//!   whose every cell carries a higher timestamp than the left-out write's: Cassandra keeps, for every
//!   cell, the value with the highest timestamp, so the table holds what it would hold had the left-out
//!   write landed too. A tombstone (a DELETE, or a `null` written) between the two timestamps would have
//!   shadowed the left-out write's cells anyway.
//! * A replay of the checkpoint (after a crash, with the same timestamps) decides the same way, so P2
//!   and P4 hold as for any write.
//!
//! # Assumptions
//! * The statement is an INSERT with every primary-key column filled by a marker, without `IF` (a
//!   conditional insert keeps the first write, not the last), without `USING TIMESTAMP` and without
//!   functions evaluated at write time: the worker offers only such statements ([`crate::statement`]).
//!   An INSERT writes every column it names, and the row's liveness, at its timestamp; a marker left
//!   unset writes nothing, which is why step 3 compares the markers set.
//! * Write timestamps follow offsets within a Kafka partition (see [`crate::checkpoint`]); two writes
//!   of one row from different partitions may carry any timestamps, and step 3 decides by timestamp,
//!   not by position.
//! * Nobody needs every intermediate write: a trigger or Cassandra's CDC log on the table sees only
//!   the last write of a row per checkpoint. `supersededWrites: write` turns this off.

use std::collections::{HashMap, HashSet};

/// The row a write targets: the statement's index and the serialized primary-key markers, compared
/// by their bytes (a hash collision must never leave a write out).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey(Box<[u8]>);

impl RowKey {
    /// The row of statement `target` whose key cells are `cells`, each as the protocol frames it
    /// (length first, so that the concatenation is unambiguous).
    pub fn new(target: usize, cells: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(8 + cells.len());
        bytes.extend_from_slice(&(target as u64).to_le_bytes());
        bytes.extend_from_slice(cells);
        Self(bytes.into_boxed_slice())
    }
}

/// The markers a write sets (a marker left unset writes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerSet(Vec<u64>);

impl MarkerSet {
    /// From each marker's "is set", in marker order.
    pub fn new(set: impl IntoIterator<Item = bool>) -> Self {
        let mut words = Vec::new();
        for (index, is_set) in set.into_iter().enumerate() {
            if index / 64 == words.len() {
                words.push(0);
            }
            if is_set {
                words[index / 64] |= 1 << (index % 64);
            }
        }
        Self(words)
    }

    /// Whether every marker `other` sets is set here too.
    pub fn covers(&self, other: &MarkerSet) -> bool {
        other.0.iter().enumerate().all(|(index, &word)| {
            let mine = self.0.get(index).copied().unwrap_or(0);
            word & !mine == 0
        })
    }
}

/// One statement of one record of the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId {
    /// The record's index in the checkpoint.
    pub record: usize,
    /// The statement's index.
    pub target: usize,
}

/// A write as the decision sees it.
#[derive(Debug, Clone)]
pub struct Write {
    /// Which write.
    pub id: WriteId,
    /// Its row.
    pub row: RowKey,
    /// Its write timestamp.
    pub timestamp: i64,
    /// The markers it sets.
    pub sets: MarkerSet,
}

/// Whether a write goes to Cassandra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it.
    Send,
    /// Leave it out: a later write of its row replaces it.
    Skip,
}

/// The superseder of a row and the records left out behind it.
#[derive(Debug)]
struct Superseder {
    id: WriteId,
    timestamp: i64,
    sets: MarkerSet,
    behind: Vec<usize>,
}

/// The decisions of one round (steps 1–3) over one set of writes.
#[derive(Debug, Default)]
pub struct Superseding {
    rows: HashMap<RowKey, Superseder>,
    skipped: usize,
}

impl Superseding {
    /// Steps 2 and 3 for one write.
    pub fn decide(&mut self, write: Write) -> Decision {
        match self.rows.get_mut(&write.row) {
            Some(superseder)
                if superseder.timestamp > write.timestamp
                    && superseder.sets.covers(&write.sets) =>
            {
                superseder.behind.push(write.id.record);
                self.skipped += 1;
                Decision::Skip
            }
            Some(_) => Decision::Send,
            None => {
                self.rows.insert(
                    write.row,
                    Superseder {
                        id: write.id,
                        timestamp: write.timestamp,
                        sets: write.sets,
                        behind: Vec::new(),
                    },
                );
                Decision::Send
            }
        }
    }

    /// Writes left out so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Step 4: the writes left out behind any of `refused`, latest record first (the order step 1
    /// wants for the next round).
    pub fn behind(&self, refused: &HashSet<WriteId>) -> Vec<WriteId> {
        if refused.is_empty() {
            return Vec::new();
        }
        let mut behind: Vec<WriteId> = self
            .rows
            .values()
            .filter(|superseder| refused.contains(&superseder.id))
            .flat_map(|superseder| {
                superseder.behind.iter().map(|&record| WriteId {
                    record,
                    target: superseder.id.target,
                })
            })
            .collect();
        behind.sort_unstable_by(|a, b| b.cmp(a));
        behind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A write of the model: row, timestamp, the value of each of two markers (`None`: unset), and
    /// whether Cassandra refuses it.
    #[derive(Debug, Clone, Copy)]
    struct Modelled {
        row: u8,
        timestamp: i64,
        markers: [Option<u8>; 2],
        refused: bool,
    }

    /// Cassandra's cells: per (row, marker), the (timestamp, value) with the highest timestamp, ties
    /// broken by the larger value, as Cassandra breaks them.
    type Cells = BTreeMap<(u8, usize), (i64, u8)>;

    fn apply(cells: &mut Cells, write: &Modelled) {
        if write.refused {
            return;
        }
        for (marker, value) in write.markers.iter().enumerate() {
            if let Some(value) = value {
                let cell = cells.entry((write.row, marker)).or_insert((i64::MIN, 0));
                *cell = (*cell).max((write.timestamp, *value));
            }
        }
    }

    fn offered(writes: &[Modelled], record: usize) -> Write {
        let write = &writes[record];
        Write {
            id: WriteId { record, target: 0 },
            row: RowKey::new(0, &[write.row]),
            timestamp: write.timestamp,
            sets: MarkerSet::new(write.markers.iter().map(Option::is_some)),
        }
    }

    /// Steps 1–4 as the sink runs them: rounds until no superseder is refused; returns the cells and
    /// how many writes were sent.
    fn superseded(writes: &[Modelled]) -> (Cells, usize) {
        let mut cells = Cells::new();
        let mut sent = 0;
        let mut round: Vec<usize> = (0..writes.len()).rev().collect();
        while !round.is_empty() {
            let mut superseding = Superseding::default();
            let mut refused = HashSet::new();
            for &record in &round {
                if superseding.decide(offered(writes, record)) == Decision::Send {
                    sent += 1;
                    apply(&mut cells, &writes[record]);
                    if writes[record].refused {
                        refused.insert(WriteId { record, target: 0 });
                    }
                }
            }
            round = superseding
                .behind(&refused)
                .into_iter()
                .map(|id| id.record)
                .collect();
        }
        (cells, sent)
    }

    fn every_write(writes: &[Modelled]) -> Cells {
        let mut cells = Cells::new();
        for write in writes {
            apply(&mut cells, write);
        }
        cells
    }

    /// Every write a test draws from: two rows, three timestamps (ties included), each marker unset or
    /// one of two values, refused or not.
    fn choices() -> Vec<Modelled> {
        let mut all = Vec::new();
        for row in 0..2 {
            for timestamp in 1..=3 {
                for first in [None, Some(1), Some(2)] {
                    for second in [None, Some(1), Some(2)] {
                        for refused in [false, true] {
                            all.push(Modelled {
                                row,
                                timestamp,
                                markers: [first, second],
                                refused,
                            });
                        }
                    }
                }
            }
        }
        all
    }

    #[test]
    fn every_sequence_of_three_writes_leaves_the_table_as_sending_all_would() {
        let choices = choices();
        let mut skipped_some = false;
        for a in &choices {
            for b in &choices {
                for c in &choices {
                    let writes = [*a, *b, *c];
                    let (cells, sent) = superseded(&writes);
                    assert_eq!(cells, every_write(&writes), "{writes:?}");
                    skipped_some |= sent < writes.len();
                }
            }
        }
        assert!(skipped_some, "the model never left a write out");
    }

    #[test]
    fn every_sequence_of_four_writes_to_one_row_leaves_the_table_as_sending_all_would() {
        // One row, and the second marker never 2, keep the count of sequences near 330,000.
        let choices: Vec<Modelled> = choices()
            .into_iter()
            .filter(|w| w.row == 0 && w.markers[0].is_some() && w.markers[1] != Some(2))
            .collect();
        for a in &choices {
            for b in &choices {
                for c in &choices {
                    for d in &choices {
                        let writes = [*a, *b, *c, *d];
                        assert_eq!(superseded(&writes).0, every_write(&writes), "{writes:?}");
                    }
                }
            }
        }
    }

    fn set(row: u8, timestamp: i64, refused: bool) -> Modelled {
        Modelled {
            row,
            timestamp,
            markers: [Some(1), Some(1)],
            refused,
        }
    }

    #[test]
    fn a_rows_updates_cost_one_write() {
        let writes: Vec<Modelled> = (1..=10).map(|timestamp| set(0, timestamp, false)).collect();
        assert_eq!(superseded(&writes).1, 1);
    }

    #[test]
    fn a_refused_last_update_sends_the_one_before_it() {
        let writes = [set(0, 1, false), set(0, 2, false), set(0, 3, true)];
        let (cells, sent) = superseded(&writes);
        // The refused write, then the second; the first stays left out behind the second.
        assert_eq!(sent, 2);
        assert_eq!(cells.get(&(0, 0)), Some(&(2, 1)));
    }

    #[test]
    fn a_write_setting_fewer_markers_leaves_nothing_out() {
        let mut last = set(0, 2, false);
        last.markers[1] = None;
        assert_eq!(superseded(&[set(0, 1, false), last]).1, 2);
    }

    #[test]
    fn equal_timestamps_leave_nothing_out() {
        // From two Kafka partitions, Cassandra breaks the tie by value: both must land.
        assert_eq!(superseded(&[set(0, 1, false), set(0, 1, false)]).1, 2);
    }

    #[test]
    fn different_rows_and_statements_do_not_supersede() {
        assert_eq!(superseded(&[set(0, 1, false), set(1, 2, false)]).1, 2);
        let mut superseding = Superseding::default();
        let write = |target, timestamp| Write {
            id: WriteId { record: 0, target },
            row: RowKey::new(target, &[7]),
            timestamp,
            sets: MarkerSet::new([true]),
        };
        assert_eq!(superseding.decide(write(1, 2)), Decision::Send);
        assert_eq!(superseding.decide(write(2, 1)), Decision::Send);
        assert_eq!(superseding.decide(write(1, 1)), Decision::Skip);
        assert_eq!(superseding.skipped(), 1);
    }

    #[test]
    fn marker_sets_compare_beyond_sixty_four_markers() {
        let all = MarkerSet::new((0..70).map(|_| true));
        let without_last = MarkerSet::new((0..70).map(|index| index != 69));
        let short = MarkerSet::new((0..3).map(|_| true));
        assert!(all.covers(&without_last));
        assert!(!without_last.covers(&all));
        assert!(all.covers(&short));
        assert!(!short.covers(&all));
        assert!(short.covers(&MarkerSet::new([])));
    }
}
