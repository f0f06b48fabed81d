//! What can be known wrong about a `CassandraSink` without touching any server: the statement's shape,
//! the guarantee it asks for (P5), and the syntax of names. Pure: unit-tested here; the controller turns
//! problems into a Degraded condition instead of starting workers that would crash-loop.

use cassandra_sink_worker::config::Guarantee;
use cassandra_sink_worker::statement;

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
    match statement::analyze(&spec.insert_query) {
        Err(error) => problems.push(problem(
            Reason::InvalidStatement,
            format!("spec.insertQuery: {error}"),
        )),
        Ok(analysis) => {
            if spec.guarantee == Guarantee::ExactlyOnce && !analysis.not_idempotent.is_empty() {
                let reasons: Vec<String> = analysis
                    .not_idempotent
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                problems.push(problem(
                    Reason::NotExactlyOnce,
                    format!(
                        "spec.insertQuery cannot be applied exactly once: {}. Use an idempotent \
                         statement, or set spec.guarantee: at-least-once",
                        reasons.join("; ")
                    ),
                ));
            }
        }
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
    fn identifiers() {
        assert!(is_identifier("checkpoints"));
        assert!(is_identifier("a1_b"));
        assert!(!is_identifier("1a"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
        assert!(!is_identifier(&"a".repeat(49)));
    }
}
