//! Resetting a stopped sink's committed positions through the annotation
//! `cassandra-sink.io/reset-positions`. Pure: parsing the request and turning it into an offset per
//! partition against the topic's watermarks. The controller applies the plan through the committer
//! table (each reset bumps the partition's epoch, so a worker still holding it is fenced).
//!
//! Grammar: `earliest` or `latest` for every partition, or a comma-separated list of
//! `<partition>=<offset|earliest|latest>`, e.g. `0=1200, 3=latest`.

use std::collections::BTreeMap;

use crate::kafka::Watermarks;

/// The annotation that asks for a reset.
pub const ANNOTATION: &str = "cassandra-sink.io/reset-positions";

/// Where a reset request stands, as `status.positionsReset.phase` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// For the sink to be stopped and its workers gone, or for Kafka or Cassandra to answer.
    Waiting,
    /// Done.
    Applied,
    /// Cannot be done as asked; the message says why.
    Refused,
}

impl Phase {
    /// The text in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "Waiting",
            Phase::Applied => "Applied",
            Phase::Refused => "Refused",
        }
    }
}

/// Where one partition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The first offset Kafka still holds.
    Earliest,
    /// The end: records already in the topic are skipped.
    Latest,
    /// This offset.
    Offset(i64),
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every partition of the topic to the same place.
    All(Target),
    /// The partitions listed, each to its target.
    Partitions(BTreeMap<i32, Target>),
}

/// What is wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetError {
    /// The annotation's value does not follow the grammar.
    #[error(
        "annotation {ANNOTATION}: cannot read {text:?}: {why}; write `earliest`, `latest` or \
         `<partition>=<offset|earliest|latest>,…`"
    )]
    Syntax {
        /// The part that could not be read.
        text: String,
        /// Why.
        why: String,
    },
    /// A listed partition is not in the topic.
    #[error("annotation {ANNOTATION}: partition {partition} is not in the topic (it has {count})")]
    NoPartition {
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },
    /// An offset outside what Kafka holds: the workers would stop with RangeGone.
    #[error(
        "annotation {ANNOTATION}: offset {offset} of partition {partition} is outside what Kafka \
         holds ({low}..={high})"
    )]
    OutOfRange {
        /// The partition.
        partition: i32,
        /// The offset asked for.
        offset: i64,
        /// First offset held.
        low: i64,
        /// End of the partition.
        high: i64,
    },
}

fn target(text: &str) -> Result<Target, ResetError> {
    match text.trim() {
        "earliest" => Ok(Target::Earliest),
        "latest" => Ok(Target::Latest),
        number => number
            .parse::<i64>()
            .ok()
            .filter(|offset| *offset >= 0)
            .map(Target::Offset)
            .ok_or_else(|| ResetError::Syntax {
                text: number.to_owned(),
                why: "not earliest, latest or an offset ≥ 0".to_owned(),
            }),
    }
}

/// Reads the annotation's value.
pub fn parse(value: &str) -> Result<Request, ResetError> {
    let value = value.trim();
    if !value.contains('=') {
        return match target(value)? {
            Target::Offset(_) => Err(ResetError::Syntax {
                text: value.to_owned(),
                why: "an offset needs its partition (`<partition>=<offset>`)".to_owned(),
            }),
            all => Ok(Request::All(all)),
        };
    }
    let mut partitions = BTreeMap::new();
    for item in value.split(',').filter(|item| !item.trim().is_empty()) {
        let (partition, to) = item.split_once('=').ok_or_else(|| ResetError::Syntax {
            text: item.trim().to_owned(),
            why: "expected <partition>=<target>".to_owned(),
        })?;
        let partition = partition
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|partition| *partition >= 0)
            .ok_or_else(|| ResetError::Syntax {
                text: partition.trim().to_owned(),
                why: "not a partition number".to_owned(),
            })?;
        if partitions.insert(partition, target(to)?).is_some() {
            return Err(ResetError::Syntax {
                text: item.trim().to_owned(),
                why: format!("partition {partition} is listed twice"),
            });
        }
    }
    Ok(Request::Partitions(partitions))
}

/// The offset each partition is reset to.
pub fn plan(request: &Request, watermarks: &Watermarks) -> Result<BTreeMap<i32, i64>, ResetError> {
    let resolve = |partition: i32, to: Target| -> Result<i64, ResetError> {
        let &(low, high) = watermarks.get(&partition).ok_or(ResetError::NoPartition {
            partition,
            count: watermarks.len(),
        })?;
        match to {
            Target::Earliest => Ok(low),
            Target::Latest => Ok(high),
            Target::Offset(offset) if (low..=high).contains(&offset) => Ok(offset),
            Target::Offset(offset) => Err(ResetError::OutOfRange {
                partition,
                offset,
                low,
                high,
            }),
        }
    };
    match request {
        Request::All(to) => watermarks
            .keys()
            .map(|&partition| Ok((partition, resolve(partition, *to)?)))
            .collect(),
        Request::Partitions(targets) => targets
            .iter()
            .map(|(&partition, &to)| Ok((partition, resolve(partition, to)?)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks() -> Watermarks {
        Watermarks::from([(0, (0, 100)), (1, (20, 50))])
    }

    #[test]
    fn every_partition_goes_to_an_edge() {
        assert_eq!(parse(" earliest "), Ok(Request::All(Target::Earliest)));
        assert_eq!(
            plan(&parse("earliest").expect("parses"), &marks()),
            Ok(BTreeMap::from([(0, 0), (1, 20)]))
        );
        assert_eq!(
            plan(&parse("latest").expect("parses"), &marks()),
            Ok(BTreeMap::from([(0, 100), (1, 50)]))
        );
    }

    #[test]
    fn listed_partitions_go_where_they_are_told() {
        let request = parse("0=42, 1=latest,").expect("parses");
        assert_eq!(
            request,
            Request::Partitions(BTreeMap::from([
                (0, Target::Offset(42)),
                (1, Target::Latest)
            ]))
        );
        assert_eq!(
            plan(&request, &marks()),
            Ok(BTreeMap::from([(0, 42), (1, 50)]))
        );
    }

    #[test]
    fn malformed_requests_say_what_and_how() {
        for bad in ["", "soon", "42", "x=1", "0=-5", "0=1,0=2", "0"] {
            let error = parse(bad).expect_err(bad);
            assert!(error.to_string().contains(ANNOTATION), "{bad}: {error}");
        }
    }

    #[test]
    fn offsets_outside_kafka_and_unknown_partitions_are_refused() {
        assert_eq!(
            plan(&parse("1=5").expect("parses"), &marks()),
            Err(ResetError::OutOfRange {
                partition: 1,
                offset: 5,
                low: 20,
                high: 50
            })
        );
        assert_eq!(
            plan(&parse("7=earliest").expect("parses"), &marks()),
            Err(ResetError::NoPartition {
                partition: 7,
                count: 2
            })
        );
    }
}
