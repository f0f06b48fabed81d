//! Which statement a record runs: the INSERT (`insertQuery`), the DELETE (`delete.query`), or none.
//! Pure: the rules are compiled once from the configuration and applied to each record without I/O,
//! so every case is unit-tested here.
//!
//! * A tombstone (a record with no value) follows `onTombstone`: `delete`, `ignore`, or `invalid`
//!   (the default without a delete statement: the record has nothing to write).
//! * A record with a value deletes when `delete.when` matches it (its field equals one of the listed
//!   values), and writes otherwise.
//!
//! Whatever a record runs, it runs with the write timestamp of its offset (see [`crate::checkpoint`]),
//! so the order of writes and deletes of a row is the order of their records, on first delivery and on
//! every replay.

use crate::config::{OnTombstone, SinkConfig};
use crate::mapping::{FieldPath, InvalidRecord, PlanError, SourceRecord};

/// What one record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run `insertQuery`.
    Write,
    /// Run `delete.query`.
    Delete,
    /// Nothing: the offset is committed with its checkpoint, no row changes.
    Skip,
}

/// Rules that cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// `delete.when.field` is not a field path.
    #[error("delete.when.field: {0}")]
    Path(#[source] PlanError),
    /// `onTombstone: delete` without a delete statement.
    #[error(
        "onTombstone is `delete` but there is no `delete` statement to run; add `delete` with its query and mapping, or choose `ignore` or `invalid`"
    )]
    TombstoneWithoutDelete,
}

/// The compiled rules of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    on_tombstone: OnTombstone,
    delete_when: Option<(FieldPath, Vec<String>)>,
}

impl Rules {
    /// Compiles the rules of `config`.
    pub fn compile(config: &SinkConfig) -> Result<Self, RulesError> {
        let on_tombstone = config.on_tombstone.unwrap_or(match config.delete {
            Some(_) => OnTombstone::Delete,
            None => OnTombstone::Invalid,
        });
        if on_tombstone == OnTombstone::Delete && config.delete.is_none() {
            return Err(RulesError::TombstoneWithoutDelete);
        }
        let delete_when = match config.delete.as_ref().and_then(|d| d.when.as_ref()) {
            Some(when) => Some((
                FieldPath::parse(&when.field).map_err(RulesError::Path)?,
                when.equals.clone(),
            )),
            None => None,
        };
        Ok(Self {
            on_tombstone,
            delete_when,
        })
    }

    /// What `record` does, or why it is invalid (a tombstone under `invalid`, a rule's field in a
    /// value that is not JSON).
    pub fn decide(&self, record: &SourceRecord<'_>) -> Result<Action, InvalidRecord> {
        if record.value.is_none() {
            return match self.on_tombstone {
                OnTombstone::Delete => Ok(Action::Delete),
                OnTombstone::Ignore => Ok(Action::Skip),
                OnTombstone::Invalid => Err(InvalidRecord::Tombstone),
            };
        }
        if let Some((field, equals)) = &self.delete_when
            && let Some(text) = field.text(record)?
            && equals.contains(&text)
        {
            return Ok(Action::Delete);
        }
        Ok(Action::Write)
    }

    /// True when some record may run the delete statement.
    pub fn deletes(&self) -> bool {
        self.on_tombstone == OnTombstone::Delete || self.delete_when.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeleteConfig, DeleteWhen, Mapping};

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
            when: when.map(|(field, equals)| DeleteWhen {
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
            partition: 0,
            offset: 7,
        }
    }

    #[test]
    fn a_tombstone_deletes_when_there_is_a_delete_statement_and_is_invalid_otherwise() {
        let tombstone = record(None, &[]);
        let rules = Rules::compile(&config(delete(None), None)).expect("rules");
        assert_eq!(rules.decide(&tombstone), Ok(Action::Delete));
        assert!(rules.deletes());

        let rules = Rules::compile(&config(None, None)).expect("rules");
        assert_eq!(rules.decide(&tombstone), Err(InvalidRecord::Tombstone));
        assert!(!rules.deletes());
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
        assert!(rules.deletes());
        let rules =
            Rules::compile(&config(delete(None), Some(OnTombstone::Invalid))).expect("rules");
        assert_eq!(rules.decide(&tombstone), Err(InvalidRecord::Tombstone));
        assert!(!rules.deletes());
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
}
