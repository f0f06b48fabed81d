//! Resetting a stopped sink's committed positions through the annotation
//! `cassandra-sink.io/reset-positions`. Pure: parsing the request and turning it into an offset per
//! partition against the topics' watermarks. The controller applies the plan through the committer
//! table (each reset bumps the partition's epoch, so a worker still holding it is fenced).
//!
//! Grammar: `earliest` or `latest` for every partition, or a comma-separated list of
//! `[<topic>/]<partition>=<offset|earliest|latest>`, e.g. `0=1200, 3=latest` or
//! `orders/0=1200, refunds/2=earliest`. The topic may be left out when the sink reads one topic.

use std::collections::BTreeMap;

use cassandra_sink_worker::checkpoint::SourcePartition;

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

/// A partition as a request names it: with its topic, or without when the sink reads one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Named {
    /// The topic, if given.
    pub topic: Option<String>,
    /// The partition.
    pub partition: i32,
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.topic {
            Some(topic) => write!(f, "{topic}/{}", self.partition),
            None => write!(f, "{}", self.partition),
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every partition of every topic to the same place.
    All(Target),
    /// The partitions listed, each to its target.
    Partitions(BTreeMap<Named, Target>),
}

/// What is wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetError {
    /// The annotation's value does not follow the grammar.
    #[error(
        "annotation {ANNOTATION}: cannot read {text:?}: {why}; write `earliest`, `latest` or \
         `[<topic>/]<partition>=<offset|earliest|latest>,…`"
    )]
    Syntax {
        /// The part that could not be read.
        text: String,
        /// Why.
        why: String,
    },
    /// A listed partition is not one the sink reads.
    #[error(
        "annotation {ANNOTATION}: partition {partition} is not one this sink reads (it reads {count} \
         partitions)"
    )]
    NoPartition {
        /// The partition asked for.
        partition: String,
        /// How many partitions the sink reads.
        count: usize,
    },
    /// A partition named without its topic, while the sink reads several topics.
    #[error(
        "annotation {ANNOTATION}: this sink reads {topics} topics; name partition {partition}'s topic \
         as <topic>/{partition}"
    )]
    TopicNeeded {
        /// The partition asked for.
        partition: i32,
        /// How many topics the sink reads.
        topics: usize,
    },
    /// An offset outside what Kafka holds: the workers would stop with RangeGone.
    #[error(
        "annotation {ANNOTATION}: offset {offset} of partition {partition} is outside what Kafka \
         holds ({low}..={high})"
    )]
    OutOfRange {
        /// The partition.
        partition: SourcePartition,
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
        let (named, to) = item.split_once('=').ok_or_else(|| ResetError::Syntax {
            text: item.trim().to_owned(),
            why: "expected [<topic>/]<partition>=<target>".to_owned(),
        })?;
        let (topic, partition) = match named.trim().rsplit_once('/') {
            Some((topic, partition)) => (Some(topic.trim().to_owned()), partition),
            None => (None, named),
        };
        if let Some(topic) = &topic
            && let Err(why) = cassandra_sink_worker::topics::check_name(topic)
        {
            return Err(ResetError::Syntax {
                text: topic.clone(),
                why: format!("not a topic name: {why}"),
            });
        }
        let partition = partition
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|partition| *partition >= 0)
            .ok_or_else(|| ResetError::Syntax {
                text: partition.trim().to_owned(),
                why: "not a partition number".to_owned(),
            })?;
        let named = Named { topic, partition };
        let listed = named.to_string();
        if partitions.insert(named, target(to)?).is_some() {
            return Err(ResetError::Syntax {
                text: item.trim().to_owned(),
                why: format!("partition {listed} is listed twice"),
            });
        }
    }
    Ok(Request::Partitions(partitions))
}

/// The offset each partition is reset to.
pub fn plan(
    request: &Request,
    watermarks: &Watermarks,
) -> Result<BTreeMap<SourcePartition, i64>, ResetError> {
    let topics: std::collections::BTreeSet<&str> =
        watermarks.keys().map(|source| &*source.topic).collect();
    let find = |named: &Named| -> Result<SourcePartition, ResetError> {
        let topic = match (&named.topic, topics.iter().next()) {
            (Some(topic), _) => topic.as_str(),
            (None, Some(only)) if topics.len() == 1 => only,
            (None, _) => {
                return Err(ResetError::TopicNeeded {
                    partition: named.partition,
                    topics: topics.len(),
                });
            }
        };
        Ok(SourcePartition::new(topic, named.partition))
    };
    let resolve = |partition: SourcePartition, to: Target| -> Result<i64, ResetError> {
        let &(low, high) = watermarks
            .get(&partition)
            .ok_or_else(|| ResetError::NoPartition {
                partition: partition.to_string(),
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
            .map(|partition| Ok((partition.clone(), resolve(partition.clone(), *to)?)))
            .collect(),
        Request::Partitions(targets) => targets
            .iter()
            .map(|(named, &to)| {
                let partition = find(named)?;
                Ok((partition.clone(), resolve(partition, to)?))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32) -> SourcePartition {
        SourcePartition::new(topic, partition)
    }

    fn marks() -> Watermarks {
        Watermarks::from([(at("t", 0), (0, 100)), (at("t", 1), (20, 50))])
    }

    fn named(topic: Option<&str>, partition: i32) -> Named {
        Named {
            topic: topic.map(str::to_owned),
            partition,
        }
    }

    #[test]
    fn every_partition_goes_to_an_edge() {
        assert_eq!(parse(" earliest "), Ok(Request::All(Target::Earliest)));
        assert_eq!(
            plan(&parse("earliest").expect("parses"), &marks()),
            Ok(BTreeMap::from([(at("t", 0), 0), (at("t", 1), 20)]))
        );
        assert_eq!(
            plan(&parse("latest").expect("parses"), &marks()),
            Ok(BTreeMap::from([(at("t", 0), 100), (at("t", 1), 50)]))
        );
    }

    #[test]
    fn listed_partitions_go_where_they_are_told() {
        let request = parse("0=42, 1=latest,").expect("parses");
        assert_eq!(
            request,
            Request::Partitions(BTreeMap::from([
                (named(None, 0), Target::Offset(42)),
                (named(None, 1), Target::Latest)
            ]))
        );
        assert_eq!(
            plan(&request, &marks()),
            Ok(BTreeMap::from([(at("t", 0), 42), (at("t", 1), 50)]))
        );
    }

    #[test]
    fn with_several_topics_each_partition_names_its_topic() {
        let marks = Watermarks::from([
            (at("orders", 0), (0, 100)),
            (at("refunds", 0), (0, 7)),
            (at("refunds", 1), (3, 9)),
        ]);
        let request = parse("orders/0=42, refunds/1=earliest").expect("parses");
        assert_eq!(
            plan(&request, &marks),
            Ok(BTreeMap::from([
                (at("orders", 0), 42),
                (at("refunds", 1), 3)
            ]))
        );
        assert_eq!(
            plan(&parse("0=1").expect("parses"), &marks),
            Err(ResetError::TopicNeeded {
                partition: 0,
                topics: 2
            })
        );
        assert_eq!(
            plan(&parse("orders/1=1").expect("parses"), &marks),
            Err(ResetError::NoPartition {
                partition: "orders/1".into(),
                count: 3
            })
        );
        assert_eq!(
            plan(&parse("latest").expect("parses"), &marks).map(|plan| plan.len()),
            Ok(3)
        );
    }

    #[test]
    fn malformed_requests_say_what_and_how() {
        for bad in [
            "",
            "soon",
            "42",
            "x=1",
            "0=-5",
            "0=1,0=2",
            "0",
            "a b/0=1",
            "t/0=1,t/0=2",
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(error.to_string().contains(ANNOTATION), "{bad}: {error}");
        }
    }

    #[test]
    fn offsets_outside_kafka_and_unknown_partitions_are_refused() {
        assert_eq!(
            plan(&parse("1=5").expect("parses"), &marks()),
            Err(ResetError::OutOfRange {
                partition: at("t", 1),
                offset: 5,
                low: 20,
                high: 50
            })
        );
        assert_eq!(
            plan(&parse("7=earliest").expect("parses"), &marks()),
            Err(ResetError::NoPartition {
                partition: "t/7".into(),
                count: 2
            })
        );
    }
}
