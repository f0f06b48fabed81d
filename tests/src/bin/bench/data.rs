//! The benchmark's records: every key is updated several times in quick succession with a value that
//! falls, so a sink that does not apply a key's updates in their topic order is caught by the table.
//! Flink's write-ahead-log sink, for one, stamps every row of a checkpoint with the same write
//! timestamp; Cassandra then breaks the tie by keeping the larger value, which here is the older one.

use std::collections::BTreeMap;

/// Keys updated together: all updates of these keys lie within `WINDOW × updates` consecutive records,
/// well inside one checkpoint of any sink measured here.
const WINDOW: usize = 1_000;

/// One row of the table: `(id, counter, seq)`.
pub type Row = (String, i32, i64);

/// The sequence of records for a given size.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Records in the sequence.
    pub records: usize,
    /// Distinct keys.
    pub keys: usize,
    updates: usize,
    window: usize,
}

impl Shape {
    /// `records` over `keys`, each key updated `records / keys` times.
    pub fn new(records: usize, keys: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            keys > 0 && records >= keys && records.is_multiple_of(keys),
            "--records ({records}) must be a multiple of --keys ({keys})"
        );
        let window = WINDOW.min(keys);
        anyhow::ensure!(
            keys.is_multiple_of(window),
            "--keys ({keys}) must be a multiple of {WINDOW} or smaller than it"
        );
        Ok(Self {
            records,
            keys,
            updates: records / keys,
            window,
        })
    }

    /// The key number of record `index`.
    fn key(&self, index: usize) -> usize {
        let block = index / (self.window * self.updates);
        block * self.window + index % self.window
    }

    /// Record `index`: its key's update number `u` (0 first) carries the counter `updates - 1 - u`,
    /// falling to 0 at the key's last update; `seq` is the record's index.
    pub fn record(&self, index: usize) -> Row {
        let update = (index % (self.window * self.updates)) / self.window;
        (
            format!("id{}", self.key(index)),
            (self.updates - 1 - update) as i32,
            index as i64,
        )
    }

    /// The partition record `index` goes to: by key, as a keyed producer would.
    pub fn partition(&self, index: usize, partitions: i32) -> i32 {
        (self.key(index) % partitions as usize) as i32
    }

    /// The table a sink must leave: the last update of every key.
    pub fn last_rows(&self) -> BTreeMap<String, (i32, i64)> {
        (0..self.records)
            .map(|index| {
                let (id, counter, seq) = self.record(index);
                (id, (counter, seq))
            })
            .collect()
    }
}

/// How many keys of `expected` the table `actual` does not hold at their last update.
pub fn stale_keys(
    expected: &BTreeMap<String, (i32, i64)>,
    actual: &BTreeMap<String, (i32, i64)>,
) -> usize {
    expected
        .iter()
        .filter(|(id, last)| actual.get(*id) != Some(last))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_updated_equally_often_with_a_falling_value_ending_at_zero() {
        let shape = Shape::new(20_000, 2_000).expect("divisible sizes");
        let mut seen: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for index in 0..shape.records {
            let (id, counter, seq) = shape.record(index);
            assert_eq!(seq, index as i64);
            seen.entry(id).or_default().push(counter);
        }
        assert_eq!(seen.len(), 2_000);
        for counters in seen.values() {
            assert_eq!(counters, &(0..10).rev().collect::<Vec<_>>());
        }
        assert!(shape.last_rows().values().all(|(counter, _)| *counter == 0));
    }

    #[test]
    fn a_keys_updates_lie_close_together_and_in_one_partition() {
        let shape = Shape::new(1_000_000, 100_000).expect("divisible sizes");
        let mut span: BTreeMap<String, (usize, usize, i32)> = BTreeMap::new();
        for index in 0..shape.records {
            let (id, _, _) = shape.record(index);
            let partition = shape.partition(index, 6);
            let entry = span.entry(id).or_insert((index, index, partition));
            entry.1 = index;
            assert_eq!(entry.2, partition);
        }
        assert!(
            span.values()
                .all(|(first, last, _)| last - first < WINDOW * 10)
        );
    }

    #[test]
    fn sizes_that_do_not_divide_are_refused() {
        assert!(Shape::new(1_000_001, 100_000).is_err());
        assert!(Shape::new(3_000, 1_500).is_err());
        assert!(Shape::new(500, 500).is_ok());
    }

    #[test]
    fn stale_keys_counts_keys_missing_or_older() {
        let expected = BTreeMap::from([("a".into(), (0, 9)), ("b".into(), (0, 8))]);
        let actual = BTreeMap::from([("a".into(), (0, 9)), ("b".into(), (1, 8))]);
        assert_eq!(stale_keys(&expected, &actual), 1);
        assert_eq!(stale_keys(&expected, &BTreeMap::new()), 2);
        assert_eq!(stale_keys(&expected, &expected), 0);
    }
}
