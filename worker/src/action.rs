//! Which statements a record runs. Pure: the rules are compiled once from the configuration and
//! applied to each record without I/O, so every case is unit-tested here.
//!
//! First what the record does ([`Rules::decide`]):
//! * a tombstone (a record with no value) follows `onTombstone`: `delete`, `ignore`, or `invalid`
//!   (the default without a delete statement: the record has nothing to write);
//! * a record with a value that one of `ignoreWhen` matches runs nothing;
//! * another deletes when `delete.when` matches it (its field equals one of the listed values), and
//!   writes otherwise.
//!
//! Then which statements ([`Rules::runs`]): a record that writes runs `insertQuery` and each `fanOut`
//! statement `on: write`; one that deletes runs `delete.query` and each `fanOut` statement
//! `on: delete`; a fan-out statement with `when` only for records whose field matches.
//!
//! Whatever a record runs, it runs with the write timestamp of its offset (see [`crate::checkpoint`]),
//! so the order of writes and deletes of a row is the order of their records, on first delivery and on
//! every replay.

use crate::config::{FieldMatch, OnTombstone, RunOn, SinkConfig, Statements};
use crate::mapping::{FieldPath, InvalidRecord, Parsed, PlanError, SourceRecord};
use crate::statement::Role;

/// What one record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run `insertQuery` (and the fan-out statements on write).
    Write,
    /// Run `delete.query` (and the fan-out statements on delete).
    Delete,
    /// Nothing: the offset is committed with its checkpoint, no row changes.
    Skip,
}

/// Rules that cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A rule's `field` is not a field path.
    #[error("{field}: {source}")]
    Path {
        /// Where: `delete.when.field`, `fanOut[n].when.field`.
        field: String,
        /// Why.
        #[source]
        source: PlanError,
    },
    /// `onTombstone: delete` without a delete statement.
    #[error(
        "onTombstone is `delete` but there is no `delete` statement to run; add `delete` with its \
         query and mapping, or choose `ignore` or `invalid`"
    )]
    TombstoneWithoutDelete,
    /// A fan-out statement `on: delete` in a sink that never deletes.
    #[error(
        "fanOut[{0}] runs `on: delete`, but the sink has no `delete` statement, so no record deletes"
    )]
    FanOutWithoutDelete(usize),
}

/// A field rule, compiled.
type Matcher = (FieldPath, Vec<String>);

fn matcher(field: String, rule: Option<&FieldMatch>) -> Result<Option<Matcher>, RulesError> {
    rule.map(|rule| {
        FieldPath::parse(&rule.field)
            .map(|path| (path, rule.equals.clone()))
            .map_err(|source| RulesError::Path { field, source })
    })
    .transpose()
}

fn matches(
    (field, equals): &Matcher,
    record: &SourceRecord<'_>,
    parsed: &mut Parsed,
) -> Result<bool, InvalidRecord> {
    Ok(field
        .text_in(record, parsed)?
        .is_some_and(|text| equals.is_empty() || equals.contains(&text)))
}

/// The compiled rules of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    on_tombstone: OnTombstone,
    ignore_when: Vec<Matcher>,
    delete_when: Option<Matcher>,
    /// For each statement, in the order of [`crate::prepared::statements`]: its role, the action that runs it, and
    /// its filter.
    statements: Vec<(Role, Action, Option<Matcher>)>,
}

impl Rules {
    /// Compiles the rules of `config`'s own statements.
    pub fn compile(config: &SinkConfig) -> Result<Self, RulesError> {
        Self::compile_set(&config.statements())
    }

    /// Compiles the rules of one set of statements (the operator checks a spec's with it before it
    /// renders a configuration). The statements are numbered as [`crate::prepared::statements`]
    /// lists them: `insertQuery`, `delete.query` if set, `fanOut`.
    pub fn compile_set(set: &Statements<'_>) -> Result<Self, RulesError> {
        let Statements {
            delete,
            on_tombstone,
            fan_out,
            ignore_when,
            ..
        } = *set;
        let ignore_when = ignore_when
            .iter()
            .enumerate()
            .map(|(index, rule)| matcher(format!("ignoreWhen[{index}].field"), Some(rule)))
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, _>>()?;
        let on_tombstone = on_tombstone.unwrap_or(match delete {
            Some(_) => OnTombstone::Delete,
            None => OnTombstone::Invalid,
        });
        if on_tombstone == OnTombstone::Delete && delete.is_none() {
            return Err(RulesError::TombstoneWithoutDelete);
        }
        let delete_when = matcher(
            "delete.when.field".to_owned(),
            delete.and_then(|d| d.when.as_ref()),
        )?;
        let mut statements = vec![(Role::Insert, Action::Write, None)];
        if delete.is_some() {
            statements.push((Role::Delete, Action::Delete, None));
        }
        for (index, statement) in fan_out.iter().enumerate() {
            let on = match statement.on {
                RunOn::Write => Action::Write,
                RunOn::Delete if delete.is_none() => {
                    return Err(RulesError::FanOutWithoutDelete(index));
                }
                RunOn::Delete => Action::Delete,
            };
            let field = format!("fanOut[{index}].when.field");
            statements.push((
                Role::FanOut(index),
                on,
                matcher(field, statement.when.as_ref())?,
            ));
        }
        Ok(Self {
            on_tombstone,
            ignore_when,
            delete_when,
            statements,
        })
    }

    /// What `record` does, or why it is invalid (a tombstone under `invalid`, a rule's field in a
    /// value that is not JSON).
    pub fn decide(&self, record: &SourceRecord<'_>) -> Result<Action, InvalidRecord> {
        self.decide_in(record, &mut Parsed::default())
    }

    /// [`Rules::decide`], sharing `parsed` with the record's other rules and statements.
    pub fn decide_in(
        &self,
        record: &SourceRecord<'_>,
        parsed: &mut Parsed,
    ) -> Result<Action, InvalidRecord> {
        if record.value.is_none() {
            return match self.on_tombstone {
                OnTombstone::Delete => Ok(Action::Delete),
                OnTombstone::Ignore => Ok(Action::Skip),
                OnTombstone::Invalid => Err(InvalidRecord::Tombstone),
            };
        }
        for rule in &self.ignore_when {
            if matches(rule, record, parsed)? {
                return Ok(Action::Skip);
            }
        }
        if let Some(rule) = &self.delete_when
            && matches(rule, record, parsed)?
        {
            return Ok(Action::Delete);
        }
        Ok(Action::Write)
    }

    /// Whether the statement at `index` (in the order of [`crate::prepared::statements`]) runs for `record`, which
    /// does `action`.
    pub fn runs(
        &self,
        index: usize,
        action: Action,
        record: &SourceRecord<'_>,
    ) -> Result<bool, InvalidRecord> {
        self.runs_in(index, action, record, &mut Parsed::default())
    }

    /// [`Rules::runs`], sharing `parsed` with the record's other rules and statements.
    pub fn runs_in(
        &self,
        index: usize,
        action: Action,
        record: &SourceRecord<'_>,
        parsed: &mut Parsed,
    ) -> Result<bool, InvalidRecord> {
        let Some((_, on, when)) = self.statements.get(index) else {
            return Ok(false);
        };
        Ok(*on == action
            && match when {
                Some(rule) => matches(rule, record, parsed)?,
                None => true,
            })
    }

    /// The statements' roles, in the order of [`crate::prepared::statements`].
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.statements.iter().map(|(role, _, _)| *role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeleteConfig, FanOutStatement, Mapping};

    const BASE: &str = "sinkId: t\n\
        cassandra: {contactPoints: [\"127.0.0.1\"]}\n\
        insertQuery: INSERT INTO ks.t (id, v) VALUES (?, ?)\n\
        committer: {keyspace: ks, table: c}\n\
        source: {kafka: {bootstrapServers: [\"127.0.0.1:9092\"], topic: t}}\n";

    fn config(delete: Option<DeleteConfig>, on_tombstone: Option<OnTombstone>) -> SinkConfig {
        let mut config =
            SinkConfig::from_yaml(BASE, std::path::Path::new("test")).expect("base config");
        config.delete = delete;
        config.on_tombstone = on_tombstone;
        config
    }

    fn delete(when: Option<(&str, &[&str])>) -> Option<DeleteConfig> {
        Some(DeleteConfig {
            query: "DELETE FROM ks.t WHERE id = ?".to_owned(),
            mapping: Mapping::Fields(vec!["key.id".to_owned()]),
            when: when.map(|(field, equals)| FieldMatch {
                field: field.to_owned(),
                equals: equals.iter().map(|&e| e.to_owned()).collect(),
            }),
        })
    }

    fn record<'a>(
        value: Option<&'a [u8]>,
        headers: &'a [(String, Option<Vec<u8>>)],
    ) -> SourceRecord<'a> {
        SourceRecord {
            key: Some(br#"{"id": 1}"#),
            value,
            headers,
            timestamp_ms: Some(0),
            topic: "values",
            partition: 0,
            offset: 7,
        }
    }

    #[test]
    fn a_tombstone_deletes_when_there_is_a_delete_statement_and_is_invalid_otherwise() {
        let tombstone = record(None, &[]);
        let rules = Rules::compile(&config(delete(None), None)).expect("rules");
        assert_eq!(rules.decide(&tombstone), Ok(Action::Delete));

        let rules = Rules::compile(&config(None, None)).expect("rules");
        assert_eq!(rules.decide(&tombstone), Err(InvalidRecord::Tombstone));
        assert_eq!(
            Rules::compile(&config(None, Some(OnTombstone::Ignore)))
                .expect("rules")
                .decide(&tombstone),
            Ok(Action::Skip)
        );
        // A delete statement used only by a rule, with tombstones set aside.
        let rules = Rules::compile(&config(
            delete(Some(("value.op", &["d"]))),
            Some(OnTombstone::Ignore),
        ))
        .expect("rules");
        assert_eq!(rules.decide(&tombstone), Ok(Action::Skip));
        let rules =
            Rules::compile(&config(delete(None), Some(OnTombstone::Invalid))).expect("rules");
        assert_eq!(rules.decide(&tombstone), Err(InvalidRecord::Tombstone));
    }

    #[test]
    fn ignore_rules_come_first_and_a_rule_without_values_matches_any_value() {
        let mut config = config(delete(Some(("value.op", &["d"]))), None);
        config.ignore_when = vec![
            FieldMatch {
                field: "value.op".to_owned(),
                equals: vec!["t".to_owned(), "m".to_owned()],
            },
            FieldMatch {
                field: "value.ddl".to_owned(),
                equals: Vec::new(),
            },
        ];
        let rules = Rules::compile(&config).expect("rules");
        let decide = |value: &[u8]| rules.decide(&record(Some(value), &[]));
        assert_eq!(decide(br#"{"op": "t"}"#), Ok(Action::Skip), "a truncate");
        assert_eq!(
            decide(br#"{"ddl": "ALTER TABLE users ADD age int", "op": "d"}"#),
            Ok(Action::Skip),
            "a schema change, whatever else it holds"
        );
        assert_eq!(decide(br#"{"ddl": null, "op": "d"}"#), Ok(Action::Delete));
        assert_eq!(decide(br#"{"op": "c"}"#), Ok(Action::Write));
        assert_eq!(rules.decide(&record(None, &[])), Ok(Action::Delete));

        config.ignore_when[1].field = "ddl".to_owned();
        let error = Rules::compile(&config).expect_err("not a path");
        assert!(
            error.to_string().starts_with("ignoreWhen[1].field: "),
            "{error}"
        );
    }

    #[test]
    fn on_tombstone_delete_needs_a_delete_statement() {
        assert_eq!(
            Rules::compile(&config(None, Some(OnTombstone::Delete))),
            Err(RulesError::TombstoneWithoutDelete)
        );
    }

    #[test]
    fn a_rule_marks_a_record_with_a_value_as_a_delete_by_its_field_text() {
        let rules =
            Rules::compile(&config(delete(Some(("value.op", &["d", "7"]))), None)).expect("rules");
        let decide = |value: &[u8]| rules.decide(&record(Some(value), &[]));
        assert_eq!(
            decide(br#"{"op": "d", "before": {"id": 1}}"#),
            Ok(Action::Delete)
        );
        assert_eq!(
            decide(br#"{"op": 7}"#),
            Ok(Action::Delete),
            "a number by its text"
        );
        assert_eq!(
            decide(br#"{"op": "u", "after": {"id": 1}}"#),
            Ok(Action::Write)
        );
        assert_eq!(decide(br#"{"op": "D"}"#), Ok(Action::Write), "case counts");
        assert_eq!(
            decide(br#"{"after": {"id": 1}}"#),
            Ok(Action::Write),
            "no field"
        );
        assert_eq!(decide(br#"{"op": null}"#), Ok(Action::Write), "null field");
        assert!(
            matches!(
                decide(b"not json"),
                Err(InvalidRecord::NotJson { part: "value", .. })
            ),
            "a value the rule cannot read is invalid, not silently written"
        );
    }

    #[test]
    fn a_rule_can_read_a_header() {
        let rules = Rules::compile(&config(delete(Some(("headers.kind", &["delete"]))), None))
            .expect("rules");
        let headers = [("kind".to_owned(), Some(b"delete".to_vec()))];
        assert_eq!(
            rules.decide(&record(Some(b"anything"), &headers)),
            Ok(Action::Delete)
        );
        assert_eq!(
            rules.decide(&record(Some(b"anything"), &[])),
            Ok(Action::Write)
        );
    }

    #[test]
    fn a_rule_on_something_that_is_not_a_field_path_is_refused() {
        let error =
            Rules::compile(&config(delete(Some(("op", &["d"]))), None)).expect_err("not a path");
        assert!(
            error
                .to_string()
                .starts_with("delete.when.field: invalid field path `op`")
        );
    }

    fn fan_out(on: RunOn, when: Option<(&str, &[&str])>) -> FanOutStatement {
        FanOutStatement {
            query: "INSERT INTO ks.by_user (user, id) VALUES (?, ?)".to_owned(),
            mapping: Mapping::Fields(vec!["value.user".to_owned(), "value.id".to_owned()]),
            on,
            when: when.map(|(field, equals)| FieldMatch {
                field: field.to_owned(),
                equals: equals.iter().map(|&e| e.to_owned()).collect(),
            }),
        }
    }

    #[test]
    fn each_statement_runs_for_the_action_it_is_on_and_where_its_rule_matches() {
        let mut config = config(delete(Some(("value.op", &["d"]))), None);
        config.fan_out = vec![
            fan_out(RunOn::Write, None),
            fan_out(RunOn::Delete, None),
            fan_out(RunOn::Write, Some(("value.kind", &["order"]))),
        ];
        let rules = Rules::compile(&config).expect("rules");
        let listed: Vec<Role> = crate::prepared::statements(&config.statements())
            .into_iter()
            .map(|(role, _, _)| role)
            .collect();
        assert_eq!(rules.roles().collect::<Vec<_>>(), listed);
        assert_eq!(
            rules.roles().collect::<Vec<_>>(),
            vec![
                Role::Insert,
                Role::Delete,
                Role::FanOut(0),
                Role::FanOut(1),
                Role::FanOut(2)
            ]
        );
        let run = |value: Option<&[u8]>| {
            let record = record(value, &[]);
            let action = rules.decide(&record).expect("decided");
            let runs: Vec<usize> = (0..6)
                .filter(|&index| rules.runs(index, action, &record).expect("readable"))
                .collect();
            (action, runs)
        };
        assert_eq!(run(Some(br#"{"op":"c"}"#)), (Action::Write, vec![0, 2]));
        assert_eq!(
            run(Some(br#"{"op":"c","kind":"order"}"#)),
            (Action::Write, vec![0, 2, 4])
        );
        assert_eq!(
            run(Some(br#"{"op":"d","kind":"order"}"#)),
            (Action::Delete, vec![1, 3])
        );
        assert_eq!(
            run(None),
            (Action::Delete, vec![1, 3]),
            "a tombstone deletes"
        );
    }

    #[test]
    fn a_fan_out_statement_on_delete_needs_a_sink_that_deletes_and_a_readable_rule() {
        let mut without = config(None, None);
        without.fan_out = vec![fan_out(RunOn::Write, None), fan_out(RunOn::Delete, None)];
        assert_eq!(
            Rules::compile(&without),
            Err(RulesError::FanOutWithoutDelete(1))
        );
        let mut unreadable = config(None, None);
        unreadable.fan_out = vec![fan_out(RunOn::Write, Some(("kind", &["x"])))];
        let error = Rules::compile(&unreadable).expect_err("not a path");
        assert!(
            error.to_string().starts_with("fanOut[0].when.field: "),
            "{error}"
        );
    }
}
