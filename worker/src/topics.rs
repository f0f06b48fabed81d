//! Which topics a sink reads: one topic, a list, or a pattern, checked before anything connects.
//!
//! Positions are kept per topic and partition (see [`crate::checkpoint::SourcePartition`]), and a
//! sink's committer rows are keyed by `<sink id>#<topic>`: a Kafka topic name never holds `#`, and a
//! sink id may not, so no two sinks' keys can meet.
//!
//! A pattern must match a topic's whole name (as Kafka's own clients do), and is checked here so that
//! a sink never reads what it writes: a pattern that matches its dead-letter topic is refused.

use std::collections::BTreeSet;

use crate::config::KafkaSource;

/// What to subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// These topics (at least one, no repeats).
    Topics(Vec<String>),
    /// Every topic whose whole name matches.
    Pattern(Pattern),
}

/// A checked topic pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    whole: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl Pattern {
    /// The pattern as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `topic`'s whole name matches.
    pub fn matches(&self, topic: &str) -> bool {
        self.whole.is_match(topic)
    }

    /// The subscription librdkafka takes: a leading `^` makes it a regular expression, and the
    /// anchors make it match whole names only.
    pub fn librdkafka(&self) -> String {
        format!("^({})$", self.source)
    }
}

/// Why a source's topics cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicsError {
    /// None of `topic`, `topics`, `topicPattern` is set.
    #[error("source.kafka: set one of topic, topics or topicPattern")]
    Missing,
    /// More than one of them is set.
    #[error("source.kafka: set only one of topic, topics or topicPattern (found {0})")]
    Several(String),
    /// A topic name Kafka would refuse.
    #[error("source.kafka.{field}: {name:?} is not a Kafka topic name: {reason}")]
    InvalidName {
        /// `topic` or `topics[n]`.
        field: String,
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A topic listed twice.
    #[error("source.kafka.topics: {0} is listed twice")]
    Repeated(String),
    /// The pattern is not a regular expression.
    #[error("source.kafka.topicPattern: {0}")]
    Pattern(String),
    /// The sink would read its own dead letters.
    #[error(
        "source.kafka: the dead-letter topic {0} is one of the topics this sink reads; it would read \
         its own invalid records again"
    )]
    ReadsDeadLetters(String),
    /// `topicStatements` names a topic the sink does not read.
    #[error(
        "topicStatements.{0}: the sink does not read topic {0} (it is not in source.kafka.topic, \
         topics, nor matched by topicPattern)"
    )]
    NotRead(String),
    /// A sink id that could run into another sink's committer keys.
    #[error(
        "sinkId {0:?} may not contain '#' (the committer table keys rows by <sink id>#<topic>)"
    )]
    SinkId(String),
}

/// Checks a Kafka topic name as the brokers do: 1 to 249 characters of ASCII letters, digits, `.`,
/// `_` and `-`, and not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 249 {
        return Err("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not allowed");
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return Err("only ASCII letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

/// The source's subscription, checked.
pub fn subscription(source: &KafkaSource) -> Result<Subscription, TopicsError> {
    Subscription::new(
        source.topic.as_ref(),
        &source.topics,
        source.topic_pattern.as_ref(),
    )
}

/// Kafka's internal topics, which a pattern may not match (a sink must never read the group
/// offsets or transaction state).
const INTERNAL_TOPICS: [&str; 2] = ["__consumer_offsets", "__transaction_state"];

impl Subscription {
    /// The subscription that `topic`, `topics` and `topicPattern` describe, of which exactly one is
    /// set.
    pub fn new(
        topic: Option<&String>,
        topics: &[String],
        topic_pattern: Option<&String>,
    ) -> Result<Self, TopicsError> {
        let set: Vec<&str> = [
            topic.map(|_| "topic"),
            (!topics.is_empty()).then_some("topics"),
            topic_pattern.map(|_| "topicPattern"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.len() > 1 {
            return Err(TopicsError::Several(set.join(" and ")));
        }
        if let Some(pattern) = topic_pattern {
            let whole = regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|error| TopicsError::Pattern(error.to_string()))?;
            if let Some(internal) = INTERNAL_TOPICS.iter().find(|name| whole.is_match(name)) {
                return Err(TopicsError::Pattern(format!(
                    "it matches Kafka's internal topic {internal}; make it more specific"
                )));
            }
            return Ok(Subscription::Pattern(Pattern {
                source: pattern.clone(),
                whole,
            }));
        }
        let named: Vec<(String, &String)> = match topic {
            Some(topic) => vec![("topic".to_owned(), topic)],
            None => topics
                .iter()
                .enumerate()
                .map(|(index, topic)| (format!("topics[{index}]"), topic))
                .collect(),
        };
        if named.is_empty() {
            return Err(TopicsError::Missing);
        }
        let mut seen = BTreeSet::new();
        for (field, name) in &named {
            check_name(name).map_err(|reason| TopicsError::InvalidName {
                field: field.clone(),
                name: (*name).clone(),
                reason,
            })?;
            if !seen.insert(name.as_str()) {
                return Err(TopicsError::Repeated((*name).clone()));
            }
        }
        Ok(Subscription::Topics(
            named.into_iter().map(|(_, name)| name.clone()).collect(),
        ))
    }
}

impl Subscription {
    /// True when the sink reads `topic`.
    pub fn reads(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(topics) => topics.iter().any(|t| t == topic),
            Subscription::Pattern(pattern) => pattern.matches(topic),
        }
    }

    /// For logs and errors: the topics, or the pattern.
    pub fn describe(&self) -> String {
        match self {
            Subscription::Topics(topics) => topics.join(","),
            Subscription::Pattern(pattern) => format!("/{}/", pattern.as_str()),
        }
    }
}

/// Checks everything about a sink's topics: the subscription, that it never reads its own
/// dead-letter topic, and that the sink id keeps committer keys apart.
pub fn check(
    sink_id: &str,
    source: &KafkaSource,
    dead_letter_topic: Option<&str>,
) -> Result<Subscription, TopicsError> {
    if sink_id.contains('#') {
        return Err(TopicsError::SinkId(sink_id.to_owned()));
    }
    let subscription = subscription(source)?;
    check_reading(&subscription, dead_letter_topic)?;
    Ok(subscription)
}

/// Refuses statements for a topic the sink does not read (a misspelt name would otherwise leave
/// that topic's records running the sink's own statements).
pub fn check_statement_topics<'a>(
    subscription: &Subscription,
    topics: impl IntoIterator<Item = &'a String>,
) -> Result<(), TopicsError> {
    match topics.into_iter().find(|topic| !subscription.reads(topic)) {
        Some(topic) => Err(TopicsError::NotRead(topic.clone())),
        None => Ok(()),
    }
}

/// Refuses a subscription that would read the sink's own dead-letter topic.
pub fn check_reading(
    subscription: &Subscription,
    dead_letter_topic: Option<&str>,
) -> Result<(), TopicsError> {
    match dead_letter_topic.filter(|topic| subscription.reads(topic)) {
        Some(topic) => Err(TopicsError::ReadsDeadLetters(topic.to_owned())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(topic: Option<&str>, topics: &[&str], pattern: Option<&str>) -> KafkaSource {
        KafkaSource {
            bootstrap_servers: vec!["127.0.0.1:9092".into()],
            topic: topic.map(str::to_owned),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            topic_pattern: pattern.map(str::to_owned),
            group_id: None,
            security: None,
            properties: Default::default(),
            value_format: Default::default(),
            key_format: Default::default(),
            schema_registry: None,
        }
    }

    #[test]
    fn exactly_one_way_of_naming_topics() {
        assert_eq!(
            subscription(&source(Some("a"), &[], None)),
            Ok(Subscription::Topics(vec!["a".into()]))
        );
        assert_eq!(
            subscription(&source(None, &["a", "b"], None)),
            Ok(Subscription::Topics(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            subscription(&source(None, &[], None)),
            Err(TopicsError::Missing)
        );
        let several = subscription(&source(Some("a"), &["b"], Some("c.*"))).expect_err("several");
        assert_eq!(
            several.to_string(),
            "source.kafka: set only one of topic, topics or topicPattern (found topic and topics and \
             topicPattern)"
        );
    }

    #[test]
    fn names_kafka_refuses_are_refused_with_their_place() {
        let error = subscription(&source(None, &["ok", "bad name"], None)).expect_err("space");
        assert!(
            error
                .to_string()
                .starts_with("source.kafka.topics[1]: \"bad name\""),
            "{error}"
        );
        assert!(check_name(&"x".repeat(250)).is_err());
        assert!(check_name("..").is_err());
        assert!(
            check_name("a#b").is_err(),
            "# would make committer keys ambiguous"
        );
        assert!(check_name("orders.v2_eu-1").is_ok());
        assert_eq!(
            subscription(&source(None, &["a", "a"], None)),
            Err(TopicsError::Repeated("a".into()))
        );
    }

    #[test]
    fn a_pattern_matches_whole_names_only() {
        let Ok(Subscription::Pattern(pattern)) =
            subscription(&source(None, &[], Some("orders-.*|refunds")))
        else {
            panic!("a pattern subscription");
        };
        assert!(pattern.matches("orders-eu"));
        assert!(pattern.matches("refunds"));
        assert!(!pattern.matches("refunds-old"), "whole names only");
        assert!(!pattern.matches("old-orders-eu"), "whole names only");
        assert_eq!(pattern.librdkafka(), "^(orders-.*|refunds)$");
        assert!(matches!(
            subscription(&source(None, &[], Some("orders-("))),
            Err(TopicsError::Pattern(_))
        ));
        let everything = subscription(&source(None, &[], Some(".*"))).expect_err("internal");
        assert!(
            everything.to_string().contains("__consumer_offsets"),
            "{everything}"
        );
    }

    #[test]
    fn a_sink_never_reads_its_own_dead_letters_and_its_id_keeps_keys_apart() {
        let pattern = source(None, &[], Some("orders.*"));
        assert_eq!(
            check("ns/sink", &pattern, Some("orders-dead")),
            Err(TopicsError::ReadsDeadLetters("orders-dead".into()))
        );
        assert!(check("ns/sink", &pattern, Some("dead-letters")).is_ok());
        let listed = source(None, &["a", "dead"], None);
        assert!(check("ns/sink", &listed, Some("dead")).is_err());
        assert_eq!(
            check("a#b", &listed, None),
            Err(TopicsError::SinkId("a#b".into()))
        );
    }
}
