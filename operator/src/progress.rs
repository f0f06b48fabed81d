//! A sink's progress as the status shows it: committed positions from the committer's positions
//! table, set against the topics' watermarks, by topic and partition. Pure; the reads are in [`crate::committer`] and
//! [`crate::kafka`].

use cassandra_sink_worker::committer::Position;

use crate::crd::{PartitionProgress, Progress};
use crate::kafka::Watermarks;

/// Records a partition still has to deliver: from the committed position (or, never committed, the
/// first offset Kafka holds, where a worker starts) to the end of the partition.
pub fn partition_lag(committed: Option<i64>, (low, high): (i64, i64)) -> i64 {
    let from = committed.unwrap_or(low).max(low);
    (high - from).max(0)
}

/// The status progress: totals, the newest commit, and each partition known to the committer table
/// or to Kafka. Without watermarks (Kafka unreachable) the lag is unknown, not zero.
pub fn summarize(rows: &[Position], watermarks: Option<&Watermarks>) -> Progress {
    let mut partitions: Vec<PartitionProgress> = rows
        .iter()
        .map(|row| PartitionProgress {
            topic: row.topic.clone(),
            partition: row.partition,
            committed_offset: row.committed,
            end_offset: None,
            lag: None,
            epoch: Some(row.epoch),
        })
        .collect();
    if let Some(watermarks) = watermarks {
        for (source, &marks) in watermarks {
            let index = match partitions
                .iter()
                .position(|p| p.partition == source.partition && *p.topic == *source.topic)
            {
                Some(index) => index,
                None => {
                    partitions.push(PartitionProgress {
                        topic: source.topic.to_string(),
                        partition: source.partition,
                        committed_offset: None,
                        end_offset: None,
                        lag: None,
                        epoch: None,
                    });
                    partitions.len() - 1
                }
            };
            let entry = &mut partitions[index];
            entry.end_offset = Some(marks.1);
            entry.lag = Some(partition_lag(entry.committed_offset, marks));
        }
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let newest = rows.iter().filter_map(|row| row.committed_at_ms).max();
    Progress {
        records_committed: rows.iter().map(|row| row.records_committed).sum(),
        lag: watermarks.map(|_| partitions.iter().filter_map(|p| p.lag).sum()),
        last_commit_time: newest
            .and_then(|millis| k8s_openapi::jiff::Timestamp::from_millisecond(millis).ok())
            .map(|time| time.to_string()),
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cassandra_sink_worker::checkpoint::SourcePartition;

    fn row(topic: &str, partition: i32, committed: Option<i64>, records: i64) -> Position {
        Position {
            topic: topic.to_owned(),
            partition,
            committed,
            records_committed: records,
            epoch: 3,
            committed_at_ms: Some(1_700_000_000_000 + i64::from(partition)),
        }
    }

    #[test]
    fn lag_counts_from_the_committed_position_or_the_first_held_offset() {
        assert_eq!(partition_lag(Some(40), (0, 100)), 60);
        assert_eq!(partition_lag(None, (25, 100)), 75);
        // Retention removed records below the committed position's start: count from what is held.
        assert_eq!(partition_lag(Some(10), (25, 100)), 75);
        assert_eq!(partition_lag(Some(100), (0, 100)), 0);
        // A committed position past the end (a topic re-created smaller) is no negative lag.
        assert_eq!(partition_lag(Some(150), (0, 100)), 0);
    }

    #[test]
    fn a_summary_joins_positions_and_watermarks_by_topic_and_partition() {
        let rows = [
            row("a", 1, Some(90), 90),
            row("a", 0, Some(10), 10),
            row("b", 0, Some(4), 4),
        ];
        let marks = |topic: &str, partition: i32| SourcePartition::new(topic, partition);
        let watermarks = Watermarks::from([
            (marks("a", 0), (0, 50)),
            (marks("a", 1), (0, 90)),
            (marks("a", 2), (5, 8)),
            (marks("b", 0), (0, 6)),
        ]);
        let progress = summarize(&rows, Some(&watermarks));
        assert_eq!(progress.records_committed, 104);
        assert_eq!(progress.lag, Some(40 + 3 + 2));
        type Row<'a> = (&'a str, i32, Option<i64>, Option<i64>, Option<i64>);
        let partitions: Vec<Row> = progress
            .partitions
            .iter()
            .map(|p| {
                (
                    p.topic.as_str(),
                    p.partition,
                    p.committed_offset,
                    p.end_offset,
                    p.lag,
                )
            })
            .collect();
        assert_eq!(
            partitions,
            vec![
                ("a", 0, Some(10), Some(50), Some(40)),
                ("a", 1, Some(90), Some(90), Some(0)),
                ("a", 2, None, Some(8), Some(3)),
                ("b", 0, Some(4), Some(6), Some(2)),
            ]
        );
        assert_eq!(
            progress.last_commit_time.as_deref(),
            Some("2023-11-14T22:13:20.001Z")
        );
    }

    #[test]
    fn without_watermarks_the_lag_is_unknown() {
        let progress = summarize(&[row("a", 0, Some(10), 10)], None);
        assert_eq!(progress.lag, None);
        assert_eq!(progress.partitions[0].lag, None);
        assert_eq!(progress.partitions[0].committed_offset, Some(10));
    }
}
