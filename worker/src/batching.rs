//! Which writes of a checkpoint travel together. Rows that share a Cassandra partition key, come from
//! the same Kafka partition and are distinct rows may go in one unlogged batch: one mutation of one
//! partition on one replica set, instead of one request per row. Nothing else is batched (a batch over
//! several partitions only moves the fan-out to the coordinator).
//!
//! A batch has one write timestamp, that of its last (highest-offset) row. That keeps P4 — a record
//! never overwrites a newer one — because groups are cut so that for any row written twice, every
//! write in the earlier group precedes every write in the later one:
//! * a group only takes rows of one Kafka partition, in offset order, so its timestamp is within that
//!   partition's reserved range and below every later record's;
//! * a group never holds the same row twice: a repeated row closes the group and opens the next;
//! * once a group is closed, no later write joins it.
//!
//! So the later write of a row always carries a higher timestamp than the earlier one, whatever the
//! batch sizes, and a replay that cuts groups differently still ends in the same state.
//!
//! A delete may remove a whole partition or a range of rows, so its row is not one row: it travels
//! alone, and closes the open group of its partition (every open group of its Kafka partition when its
//! partition is unknown). A write before it is then stamped before it, a write after it after it. Pure:
//! exhaustively unit-tested here.

use std::collections::{HashMap, HashSet};

/// What grouping needs to know of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteKey {
    /// The Kafka partition (of its topic) the record came from, numbered within the checkpoint.
    pub source: usize,
    /// A hash of the Cassandra partition key; `None` when it is not known (never batched).
    pub partition_key: Option<u64>,
    /// A hash of the whole primary key (partition and clustering columns).
    pub row: u64,
    /// About how many bytes the write carries.
    pub bytes: usize,
    /// A write that may touch more than its row (a DELETE of a partition or a range): it travels
    /// alone and closes the open group of its partition (of every partition of its Kafka partition
    /// when its partition is not known), so that no earlier write is stamped after it.
    pub alone: bool,
}

/// How large a batch may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most rows in one batch; 1 turns batching off.
    pub rows: usize,
    /// Most bytes in one batch (a lone larger row is still sent, alone). Cassandra warns about
    /// batches over 5 KiB (`batch_size_warn_threshold`) and refuses them over 50 KiB.
    pub bytes: usize,
}

/// Groups of write indexes, each sent as one request (a single write or an unlogged batch). Indexes
/// within a group ascend; `keys` must be in offset order within each Kafka partition.
pub fn group(keys: &[WriteKey], limits: BatchLimits) -> Vec<Vec<usize>> {
    struct Open {
        group: usize,
        rows: HashSet<u64>,
        bytes: usize,
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut open: HashMap<(usize, u64), Open> = HashMap::new();
    for (index, key) in keys.iter().enumerate() {
        if key.alone {
            match key.partition_key {
                Some(partition_key) => {
                    open.remove(&(key.source, partition_key));
                }
                None => open.retain(|(source, _), _| *source != key.source),
            }
            groups.push(vec![index]);
            continue;
        }
        let Some(partition_key) = key.partition_key.filter(|_| limits.rows > 1) else {
            groups.push(vec![index]);
            continue;
        };
        let slot = (key.source, partition_key);
        if let Some(current) = open.get_mut(&slot)
            && groups[current.group].len() < limits.rows
            && current.bytes + key.bytes <= limits.bytes
            && !current.rows.contains(&key.row)
        {
            current.rows.insert(key.row);
            current.bytes += key.bytes;
            groups[current.group].push(index);
            continue;
        }
        groups.push(vec![index]);
        open.insert(
            slot,
            Open {
                group: groups.len() - 1,
                rows: HashSet::from([key.row]),
                bytes: key.bytes,
            },
        );
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source: usize, partition_key: u64, row: u64) -> WriteKey {
        WriteKey {
            source,
            partition_key: Some(partition_key),
            row,
            bytes: 10,
            alone: false,
        }
    }

    fn delete(source: usize, partition_key: Option<u64>) -> WriteKey {
        WriteKey {
            source,
            partition_key,
            row: u64::MAX,
            bytes: 10,
            alone: true,
        }
    }

    fn rows(rows: usize) -> BatchLimits {
        BatchLimits {
            rows,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn rows_of_one_partition_go_together_up_to_the_limit() {
        let keys: Vec<WriteKey> = (0..5).map(|row| key(0, 7, row)).collect();
        assert_eq!(group(&keys, rows(2)), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(
            group(&keys, rows(1)),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
        );
        let bytes = BatchLimits {
            rows: 16,
            bytes: 25,
        };
        assert_eq!(group(&keys, bytes), vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn different_partitions_and_kafka_partitions_never_share_a_batch() {
        let keys = [key(0, 1, 1), key(0, 2, 1), key(1, 1, 2), key(0, 1, 3)];
        assert_eq!(group(&keys, rows(8)), vec![vec![0, 3], vec![1], vec![2]]);
    }

    #[test]
    fn a_repeated_row_closes_the_group() {
        let keys = [key(0, 1, 1), key(0, 1, 2), key(0, 1, 1), key(0, 1, 3)];
        assert_eq!(group(&keys, rows(8)), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn unknown_partition_keys_are_sent_alone() {
        let unknown = WriteKey {
            source: 0,
            partition_key: None,
            row: 1,
            bytes: 1,
            alone: false,
        };
        assert_eq!(group(&[unknown, unknown], rows(8)), vec![vec![0], vec![1]]);
    }

    /// The property P4 rests on, over every small sequence: for two writes of the same row, the
    /// earlier write's group ends (its timestamp) before the later write, and so before the later
    /// write's group ends; and every write is in exactly one group.
    #[test]
    fn an_earlier_write_of_a_row_always_carries_a_lower_timestamp() {
        // Sequences over 2 Kafka partitions × 2 partition keys × 2 rows, lengths up to 5.
        let alphabet: Vec<WriteKey> = (0u8..8)
            .map(|n| {
                key(
                    usize::from(n & 1),
                    u64::from((n >> 1) & 1),
                    u64::from(n >> 2),
                )
            })
            .collect();
        let mut sequences: Vec<Vec<WriteKey>> = vec![Vec::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for sequence in &sequences {
                for symbol in &alphabet {
                    let mut longer = sequence.clone();
                    longer.push(*symbol);
                    next.push(longer);
                }
            }
            for sequence in &next {
                for max_rows in [1, 2, 3, 16] {
                    check(sequence, rows(max_rows));
                    check(
                        sequence,
                        BatchLimits {
                            rows: max_rows,
                            bytes: 20,
                        },
                    );
                }
            }
            sequences = next;
        }
    }

    fn check(keys: &[WriteKey], limits: BatchLimits) {
        let groups = group(keys, limits);
        let mut seen = vec![0; keys.len()];
        let mut group_of = vec![0; keys.len()];
        for (number, members) in groups.iter().enumerate() {
            assert!(members.len() <= limits.rows.max(1));
            assert!(members.windows(2).all(|pair| pair[0] < pair[1]));
            for &member in members {
                seen[member] += 1;
                group_of[member] = number;
                // One Kafka partition and one partition key per group.
                assert_eq!(keys[member].source, keys[members[0]].source);
                assert_eq!(keys[member].partition_key, keys[members[0]].partition_key);
            }
        }
        assert!(seen.iter().all(|&count| count == 1), "{keys:?}");
        // A group's timestamp is its last member's offset order.
        let stamp = |index: usize| *groups[group_of[index]].last().unwrap_or(&index);
        for earlier in 0..keys.len() {
            for later in earlier + 1..keys.len() {
                let same_row = keys[earlier] == keys[later];
                if same_row {
                    assert!(
                        stamp(earlier) < later && stamp(earlier) < stamp(later),
                        "{keys:?} {limits:?}: {groups:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_delete_travels_alone_and_closes_the_groups_it_could_overtake() {
        let keys = [key(0, 1, 1), delete(0, Some(1)), key(0, 1, 2), key(0, 2, 1)];
        assert_eq!(
            group(&keys, rows(8)),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
        // Another partition's group stays open across a delete of a known partition…
        let keys = [key(0, 2, 1), delete(0, Some(1)), key(0, 2, 2)];
        assert_eq!(group(&keys, rows(8)), vec![vec![0, 2], vec![1]]);
        // …but not across one whose partition is unknown, nor does another Kafka partition's.
        let keys = [
            key(0, 2, 1),
            key(1, 2, 1),
            delete(0, None),
            key(0, 2, 2),
            key(1, 2, 2),
        ];
        assert_eq!(
            group(&keys, rows(8)),
            vec![vec![0], vec![1, 4], vec![2], vec![3]]
        );
    }

    /// Deletes among writes, over every small sequence: a write before a delete that may touch it is
    /// stamped before the delete, and a write after it after it, so the delete removes exactly what
    /// the records before it wrote.
    #[test]
    fn a_write_and_a_delete_of_a_partition_are_stamped_in_offset_order() {
        let alphabet = [
            key(0, 0, 0),
            key(0, 0, 1),
            key(0, 1, 0),
            key(0, 1, 1),
            key(1, 0, 0),
            delete(0, Some(0)),
            delete(0, None),
            delete(1, None),
        ];
        let mut sequences: Vec<Vec<WriteKey>> = vec![Vec::new()];
        for _ in 0..5 {
            sequences = sequences
                .iter()
                .flat_map(|sequence| {
                    alphabet.iter().map(move |symbol| {
                        let mut longer = sequence.clone();
                        longer.push(*symbol);
                        longer
                    })
                })
                .collect();
            for sequence in &sequences {
                for max_rows in [2, 16] {
                    check_deletes(sequence, rows(max_rows));
                }
            }
        }
    }

    fn check_deletes(keys: &[WriteKey], limits: BatchLimits) {
        let groups = group(keys, limits);
        let mut group_of = vec![0; keys.len()];
        for (number, members) in groups.iter().enumerate() {
            for &member in members {
                group_of[member] = number;
                assert!(
                    !keys[member].alone || members.len() == 1,
                    "{keys:?}: {groups:?}"
                );
            }
        }
        let stamp = |index: usize| *groups[group_of[index]].last().unwrap_or(&index);
        for (d, deletion) in keys.iter().enumerate().filter(|(_, key)| key.alone) {
            for (w, write) in keys.iter().enumerate().filter(|(_, key)| !key.alone) {
                let touches = write.source == deletion.source
                    && (deletion.partition_key.is_none()
                        || deletion.partition_key == write.partition_key);
                if touches && w < d {
                    assert!(stamp(w) < d, "{keys:?} {limits:?}: {groups:?}");
                }
                if touches && w > d {
                    assert!(stamp(w) > d, "{keys:?} {limits:?}: {groups:?}");
                }
            }
        }
    }
}
