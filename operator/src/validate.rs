//! What can be known wrong about a `CassandraSink` without touching any server: the statement's shape,
//! the guarantee it asks for (P5), and the syntax of names. Pure: unit-tested here; the controller turns
//! problems into a Degraded condition instead of starting workers that would crash-loop.

use cassandra_sink_worker::action::{Rules, RulesError};
use cassandra_sink_worker::config::{DeadLetterConfig, Guarantee, Statements};
use cassandra_sink_worker::encoding;
use cassandra_sink_worker::prepared::statements;
use cassandra_sink_worker::statement::{self, RoleError};
use cassandra_sink_worker::topics::{self, Subscription};

use crate::crd::CassandraSinkSpec;
use crate::reason::Reason;

/// One thing wrong with a spec, with a reason for the condition and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The condition's reason.
    pub reason: Reason,
    /// What is wrong, where, and what to do.
    pub message: String,
}

fn problem(reason: Reason, message: String) -> Problem {
    Problem { reason, message }
}

/// True for a CQL identifier that needs no quotes: a letter, then letters, digits or `_`, at most 48.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 48
}

/// The problems of one set of statements (the sink's own, or a topic's), each named with its field.
fn statement_problems(set: &Statements<'_>, guarantee: Guarantee) -> Vec<Problem> {
    let place = format!("spec.{}", set.place());
    let mut problems = Vec::new();
    for (role, text, _) in statements(set) {
        match statement::check_role(text, role, guarantee) {
            Ok(_) => {}
            Err(error @ RoleError::NotExactlyOnce { .. }) => {
                problems.push(problem(Reason::NotExactlyOnce, format!("{place}{error}")))
            }
            Err(error) => {
                problems.push(problem(Reason::InvalidStatement, format!("{place}{error}")))
            }
        }
    }
    if let Err(error) = Rules::compile_set(set) {
        let reason = match error {
            RulesError::Path { .. } => Reason::InvalidMapping,
            RulesError::TombstoneWithoutDelete | RulesError::FanOutWithoutDelete(_) => {
                Reason::InvalidStatement
            }
        };
        problems.push(problem(reason, format!("{place}{error}")));
    }
    problems
}

/// Every problem found in a spec; empty when it can be run.
pub fn validate(spec: &CassandraSinkSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.cassandra.contact_points.is_empty() {
        problems.push(problem(
            Reason::NoContactPoints,
            "spec.cassandra.contactPoints is empty: list at least one host:port".to_owned(),
        ));
    }
    if spec.source.kafka.bootstrap_servers.is_empty() {
        problems.push(problem(
            Reason::NoBootstrapServers,
            "spec.source.kafka.bootstrapServers is empty: list at least one host:port".to_owned(),
        ));
    }
    let kafka = &spec.source.kafka;
    let dead_letter_topic = match &spec.dead_letter {
        Some(DeadLetterConfig::Topic(topic)) => Some(topic.as_str()),
        _ => None,
    };
    if let Err(error) = Subscription::new(
        kafka.topic.as_ref(),
        &kafka.topics,
        kafka.topic_pattern.as_ref(),
    )
    .and_then(|subscription| {
        topics::check_reading(&subscription, dead_letter_topic)?;
        topics::check_statement_topics(&subscription, spec.topic_statements.keys())
    }) {
        problems.push(problem(Reason::InvalidTopics, format!("spec.{error}")));
    }
    if let Err(error) = encoding::check_formats(
        kafka.value_format,
        kafka.key_format,
        kafka
            .schema_registry
            .as_ref()
            .map(|registry| (registry.url.as_str(), registry.tls.is_some())),
    ) {
        problems.push(problem(Reason::InvalidFormat, format!("spec.{error}")));
    }
    if spec.parallelism < 1 {
        problems.push(problem(
            Reason::InvalidParallelism,
            format!(
                "spec.parallelism is {}; it must be at least 1",
                spec.parallelism
            ),
        ));
    }
    for (field, name) in [
        ("spec.committer.keyspace", &spec.committer.keyspace),
        ("spec.committer.table", &spec.committer.table),
    ] {
        if !is_identifier(name) {
            problems.push(problem(
                Reason::InvalidIdentifier,
                format!(
                    "{field} is {name:?}: use letters, digits and _ (starting with a letter, at most 48)"
                ),
            ));
        }
    }
    for set in spec.statement_sets() {
        problems.extend(statement_problems(&set, spec.guarantee));
    }
    problems.extend(crate::resources::check(
        spec.resources.as_ref(),
        spec.checkpoint.max_bytes,
    ));
    if let Some(create) = &spec.create_query {
        let first = create.split_whitespace().next().unwrap_or_default();
        if !first.eq_ignore_ascii_case("create") {
            problems.push(problem(
                Reason::InvalidStatement,
                format!("spec.createQuery must be a CREATE statement, found {first:?}"),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::tests_support::seed_spec;
    use cassandra_sink_worker::config::{Guarantee, OnTombstone};

    #[test]
    fn the_seed_example_is_valid() {
        assert_eq!(validate(&seed_spec()), vec![]);
    }

    #[test]
    fn each_static_problem_is_named_with_its_field() {
        let mut spec = seed_spec();
        spec.cassandra.contact_points.clear();
        spec.parallelism = 0;
        spec.committer.table = "check-points".into();
        spec.insert_query = "UPDATE example.hits SET n = n + ? WHERE id = ?".into();
        spec.create_query = Some("DROP TABLE example.values".into());
        let reasons: Vec<Reason> = validate(&spec).iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            vec![
                Reason::NoContactPoints,
                Reason::InvalidParallelism,
                Reason::InvalidIdentifier,
                Reason::NotExactlyOnce,
                Reason::InvalidStatement
            ]
        );
        let messages: Vec<String> = validate(&spec).into_iter().map(|p| p.message).collect();
        assert!(
            messages[2].contains("spec.committer.table"),
            "{}",
            messages[2]
        );
        assert!(messages[3].contains("at-least-once"), "{}", messages[3]);
    }

    #[test]
    fn at_least_once_accepts_a_counter_update() {
        let mut spec = seed_spec();
        spec.insert_query = "UPDATE example.hits SET n = n + ? WHERE id = ?".into();
        spec.guarantee = Guarantee::AtLeastOnce;
        assert_eq!(validate(&spec), vec![]);
    }

    #[test]
    fn a_delete_statement_is_checked_like_the_insert_and_its_rule_and_tombstones_too() {
        use cassandra_sink_worker::config::{DeleteConfig, FieldMatch, Mapping};
        let mut spec = seed_spec();
        spec.delete = Some(DeleteConfig {
            query: "DELETE FROM example.values WHERE id = ?".into(),
            mapping: Mapping::Fields(vec!["key".into()]),
            when: Some(FieldMatch {
                field: "value.op".into(),
                equals: vec!["d".into()],
            }),
        });
        assert_eq!(validate(&spec), vec![]);

        let mut wrong = spec.clone();
        if let Some(delete) = wrong.delete.as_mut() {
            delete.query = "INSERT INTO example.values (id) VALUES (?)".into();
            delete.when = Some(FieldMatch {
                field: "op".into(),
                equals: vec!["d".into()],
            });
        }
        let problems = validate(&wrong);
        let reasons: Vec<Reason> = problems.iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            vec![Reason::InvalidStatement, Reason::InvalidMapping]
        );
        assert_eq!(
            problems[0].message,
            "spec.delete.query must be a DELETE statement, found an INSERT"
        );
        assert!(
            problems[1]
                .message
                .starts_with("spec.delete.when.field: invalid field path `op`"),
            "{}",
            problems[1].message
        );

        let mut conditional = spec.clone();
        if let Some(delete) = conditional.delete.as_mut() {
            delete.query = "DELETE FROM example.values WHERE id = ? IF EXISTS".into();
        }
        let problems = validate(&conditional);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, Reason::NotExactlyOnce);
        assert!(
            problems[0]
                .message
                .starts_with("spec.delete.query cannot be applied exactly once")
        );

        let mut tombstones = seed_spec();
        tombstones.on_tombstone = Some(OnTombstone::Delete);
        let problems = validate(&tombstones);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .message
                .starts_with("spec.onTombstone is `delete` but there is no `delete` statement"),
            "{}",
            problems[0].message
        );
        tombstones.on_tombstone = Some(OnTombstone::Ignore);
        assert_eq!(validate(&tombstones), vec![]);
    }

    #[test]
    fn topics_are_named_one_way_with_names_kafka_takes_and_never_the_dead_letter_topic() {
        let named = |spec: &CassandraSinkSpec| -> Vec<(Reason, String)> {
            validate(spec)
                .into_iter()
                .map(|p| (p.reason, p.message))
                .collect()
        };
        let mut several = seed_spec();
        several.source.kafka.topic = None;
        several.source.kafka.topics = vec!["orders".into(), "refunds".into()];
        assert_eq!(named(&several), vec![]);
        let mut both = several.clone();
        both.source.kafka.topic = Some("orders".into());
        let problems = named(&both);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, Reason::InvalidTopics);
        assert!(
            problems[0].1.starts_with("spec.source.kafka: set only one"),
            "{problems:?}"
        );
        let mut bad = several.clone();
        bad.source.kafka.topics[1] = "re funds".into();
        assert!(named(&bad)[0].1.contains("spec.source.kafka.topics[1]"));
        let mut looping = several.clone();
        looping.source.kafka.topics = Vec::new();
        looping.source.kafka.topic_pattern = Some("orders.*".into());
        looping.dead_letter = Some(DeadLetterConfig::Topic("orders-dead".into()));
        let problems = named(&looping);
        assert_eq!(problems[0].0, Reason::InvalidTopics);
        assert!(problems[0].1.contains("orders-dead"), "{problems:?}");
    }

    #[test]
    fn avro_needs_a_registry_with_a_usable_url_and_a_registry_needs_avro() {
        use cassandra_sink_worker::config::RecordFormat;
        let registry = |url: &str| crate::crd::SchemaRegistrySpec {
            url: url.to_owned(),
            credentials_secret: Some("registry-creds".into()),
            tls: None,
            reader_schema: Default::default(),
        };
        let problems = |spec: &CassandraSinkSpec| -> Vec<(Reason, String)> {
            validate(spec)
                .into_iter()
                .map(|p| (p.reason, p.message))
                .collect()
        };
        let mut avro = seed_spec();
        avro.source.kafka.value_format = RecordFormat::Avro;
        avro.source.kafka.schema_registry =
            Some(registry("http://registry.kafka.svc:8080/apis/ccompat/v7"));
        assert_eq!(problems(&avro), vec![]);

        let mut without = avro.clone();
        without.source.kafka.schema_registry = None;
        let found = problems(&without);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, Reason::InvalidFormat);
        assert!(
            found[0]
                .1
                .starts_with("spec.source.kafka.valueFormat is avro"),
            "{found:?}"
        );

        let mut unused = avro.clone();
        unused.source.kafka.value_format = RecordFormat::Json;
        assert_eq!(problems(&unused)[0].0, Reason::InvalidFormat);

        let mut bad_url = avro.clone();
        bad_url.source.kafka.schema_registry = Some(registry("registry:8080"));
        let found = problems(&bad_url);
        assert_eq!(found[0].0, Reason::InvalidFormat);
        assert!(
            found[0]
                .1
                .contains("spec.source.kafka.schemaRegistry.url `registry:8080`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_topics_own_statements_are_checked_like_the_sinks_and_named_with_the_topic() {
        let mut spec = seed_spec();
        spec.source.kafka.topic = None;
        spec.source.kafka.topics = vec!["orders".into(), "refunds".into()];
        let own = |query: &str| -> cassandra_sink_worker::config::TopicStatements {
            serde_json::from_value(serde_json::json!({ "insertQuery": query })).expect("statements")
        };
        spec.topic_statements = [(
            "refunds".to_owned(),
            own("INSERT INTO example.refunds (id) VALUES (?)"),
        )]
        .into();
        assert_eq!(validate(&spec), vec![]);
        spec.topic_statements = [(
            "refunds".to_owned(),
            own("UPDATE example.totals SET n = n + ? WHERE id = ?"),
        )]
        .into();
        let problems = validate(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, Reason::NotExactlyOnce);
        assert!(
            problems[0]
                .message
                .starts_with("spec.topicStatements.refunds.insertQuery"),
            "{problems:?}"
        );
        spec.topic_statements = [(
            "returns".to_owned(),
            own("INSERT INTO example.refunds (id) VALUES (?)"),
        )]
        .into();
        let problems = validate(&spec);
        assert_eq!(problems[0].reason, Reason::InvalidTopics);
        assert!(problems[0].message.contains("returns"), "{problems:?}");
    }

    #[test]
    fn fan_out_statements_are_checked_each_with_its_index() {
        use cassandra_sink_worker::config::{FanOutStatement, Mapping, RunOn};
        let statement = |query: &str, on| FanOutStatement {
            query: query.into(),
            mapping: Mapping::Fields(vec!["key".into()]),
            on,
            when: None,
        };
        let mut spec = seed_spec();
        spec.fan_out = vec![
            statement("INSERT INTO example.by_user (id) VALUES (?)", RunOn::Write),
            statement(
                "UPDATE example.hits SET n = n + 1 WHERE id = ?",
                RunOn::Write,
            ),
        ];
        let problems = validate(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, Reason::NotExactlyOnce);
        assert!(
            problems[0]
                .message
                .starts_with("spec.fanOut[1].query cannot be applied exactly once"),
            "{}",
            problems[0].message
        );
        spec.fan_out = vec![statement(
            "DELETE FROM example.by_user WHERE id = ?",
            RunOn::Delete,
        )];
        let problems = validate(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, Reason::InvalidStatement);
        assert!(
            problems[0].message.contains("fanOut[0] runs `on: delete`"),
            "{}",
            problems[0].message
        );
    }

    /// Every example a user may copy is a valid sink whose rendered configuration the worker accepts,
    /// rules included.
    #[test]
    fn every_example_is_a_valid_sink_the_worker_accepts() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&folder).expect("examples/") {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            // A file may hold the Secrets a sink names too: check its CassandraSink document.
            let Some(document) = text
                .split("\n---\n")
                .find(|document| document.contains("\nkind: CassandraSink"))
            else {
                panic!("{}: no CassandraSink", path.display())
            };
            let mut sink: crate::crd::CassandraSink = serde_saphyr::from_str(document)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            sink.metadata.namespace = Some("examples".to_owned());
            assert_eq!(validate(&sink.spec), vec![], "{}", path.display());
            let config = crate::build::sink_config(&sink).expect("renders");
            let rendered = serde_saphyr::to_string(&config).expect("serialises");
            let parsed = cassandra_sink_worker::config::SinkConfig::from_yaml(&rendered, &path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            cassandra_sink_worker::action::Rules::compile(&parsed)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
        assert!(checked >= 4, "examples checked: {checked}");
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("checkpoints"));
        assert!(is_identifier("a1_b"));
        assert!(!is_identifier("1a"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
        assert!(!is_identifier(&"a".repeat(49)));
    }
}
