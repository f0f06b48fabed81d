//! From a Kafka record to the values of the statement's bind markers. Pure: no I/O, so every rule is
//! unit-tested here, and a record that does not fit becomes an [`InvalidRecord`] with a reason a person
//! can act on (it goes to the dead-letter destination, or stops the sink under `onInvalidRecord: fail`).
//!
//! A [`Plan`] is compiled once, when the statement is prepared, from the configured [`Mapping`] and the
//! types Cassandra reports for the markers; an impossible plan (a field path for a marker that does not
//! exist, a column type the sink cannot fill) is a configuration error before any record is read.
//!
//! # Field paths
//! * `key`, `value`: the raw bytes. A `text`/`ascii` column takes them as UTF-8, a `blob` as they are;
//!   any other type reads them as a JSON scalar (`42`, `true`, `"2024-01-01T00:00:00Z"`).
//! * `key.a.b`, `value.a.b`: a field inside a JSON object (`value.items.0` indexes an array).
//! * `headers.<name>`: a header's raw bytes, read like `value`.
//! * `timestamp` (milliseconds since the epoch), `partition`, `offset`.
//!
//! A field that is missing or JSON `null` leaves its column unset (no tombstone) when `nullMeansUnset`
//! is on (the default); otherwise it writes null. A primary-key column must always have a value.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use scylla::cluster::metadata::{CollectionType, ColumnType, NativeType};
use scylla::value::{CqlTimestamp, CqlTimeuuid, CqlValue, MaybeUnset};
use serde_json::Value as Json;

use crate::config::Mapping;
use crate::statement::Marker;

/// One Kafka record as the mapping sees it.
#[derive(Debug, Clone, Copy)]
pub struct SourceRecord<'a> {
    /// The record key, if any.
    pub key: Option<&'a [u8]>,
    /// The record value, if any (a tombstone has none).
    pub value: Option<&'a [u8]>,
    /// Headers in order; a header may have no value.
    pub headers: &'a [(String, Option<Vec<u8>>)],
    /// Record timestamp in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// A bind marker as prepared by Cassandra: its column name and type, and whether it is part of the
/// partition key.
#[derive(Debug, Clone)]
pub struct MarkerSpec {
    /// Column (or marker) name.
    pub name: String,
    /// Column type.
    pub typ: ColumnType<'static>,
    /// True for partition-key columns, which must never be null or unset.
    pub partition_key: bool,
}

/// Where a marker's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldSource {
    /// Element `n` of the JSON array value.
    ArrayElement(usize),
    /// Raw key bytes, or a path inside the key parsed as JSON.
    Key(Vec<String>),
    /// Raw value bytes, or a path inside the value parsed as JSON.
    Value(Vec<String>),
    /// A header's raw bytes.
    Header(String),
    /// Record timestamp.
    Timestamp,
    /// Source topic.
    Topic,
    /// Source partition.
    Partition,
    /// Source offset.
    Offset,
}

/// One field of a record read as text, for rules that look at a field (which statement a record
/// runs). Compiled once from a field path as `mapping` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(FieldSource);

impl FieldPath {
    /// Compiles `value.op`, `key.kind`, `headers.<name>`…
    pub fn parse(path: &str) -> Result<Self, PlanError> {
        parse_path(path).map(FieldPath)
    }

    /// The field's text: a JSON string without quotes, another JSON scalar or structure as written,
    /// raw bytes as UTF-8 (lossily). `None` when the field is missing or JSON `null`.
    pub fn text(&self, record: &SourceRecord<'_>) -> Result<Option<String>, InvalidRecord> {
        self.text_in(record, &mut Parsed::default())
    }

    /// [`FieldPath::text`], with the record's key and value parsed at most once across calls that
    /// share `parsed`.
    pub fn text_in(
        &self,
        record: &SourceRecord<'_>,
        parsed: &mut Parsed,
    ) -> Result<Option<String>, InvalidRecord> {
        Ok(match parsed.field(&self.0, record)? {
            Field::Missing | Field::Json(Json::Null) => None,
            Field::Json(Json::String(text)) => Some(text),
            Field::Json(other) => Some(other.to_string()),
            Field::Raw(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        })
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How every marker of a statement is filled; compiled once per statement.
#[derive(Debug, Clone)]
pub struct Plan {
    slots: Vec<(FieldSource, MarkerSpec)>,
    json_array: bool,
    null_means_unset: bool,
    /// Every marker needs a value (a DELETE's markers are all in its WHERE clause).
    all_required: bool,
    max_record_bytes: usize,
}

/// A configuration that cannot work with the prepared statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The number of field paths differs from the number of markers.
    #[error("the mapping lists {paths} field paths but the statement has {markers} bind markers")]
    Count {
        /// Paths configured.
        paths: usize,
        /// Markers in the statement.
        markers: usize,
    },
    /// A `named` mapping for a statement with `?` markers.
    #[error(
        "a `named` mapping needs `:name` markers; this statement uses `?` (use `fields` instead)"
    )]
    NamedNeedsNamedMarkers,
    /// A named marker has no field path in the mapping.
    #[error("bind marker :{0} has no field path in the `named` mapping")]
    MissingName(String),
    /// The mapping names a marker the statement does not have.
    #[error("the `named` mapping has `{0}`, but the statement has no marker :{0}")]
    UnknownName(String),
    /// A path that is not one of the documented forms.
    #[error("invalid field path `{path}`: {reason}")]
    Path {
        /// The path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The column type cannot be filled from a record.
    #[error("column `{column}` has type {typ}, which the sink cannot fill from a record")]
    UnsupportedType {
        /// Column name.
        column: String,
        /// Its type.
        typ: String,
    },
}

/// Why a record does not fit the statement. It names the marker and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    /// The value (or key) is not JSON where JSON is needed.
    #[error("{part} is not valid JSON: {error}")]
    NotJson {
        /// `value` or `key`.
        part: &'static str,
        /// Parser message with line and column.
        error: String,
    },
    /// The value (or key) is not an Avro record the registry's schemas decode.
    #[error("{part} is not an Avro record this sink can read: {reason}")]
    NotAvro {
        /// `value` or `key`.
        part: &'static str,
        /// What is wrong: the framing, the schema id, or the datum.
        reason: String,
    },
    /// The record is larger than `maxRecordBytes`.
    #[error("record value is {size} bytes, over the limit of {limit}")]
    Oversized {
        /// Size of the value.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A JSON array record with the wrong number of elements.
    #[error("expected a JSON array of {expected} elements, got {found}")]
    ArrayLength {
        /// Markers in the statement.
        expected: usize,
        /// What came.
        found: String,
    },
    /// A partition-key column without a value.
    #[error("`{column}` is part of the primary key but the record has no value for it ({path})")]
    MissingKey {
        /// Column.
        column: String,
        /// The field path.
        path: String,
    },
    /// A tombstone (no value) that `onTombstone` does not delete or ignore.
    #[error(
        "the record is a tombstone (no value) and the sink neither deletes nor ignores tombstones \
         (set `delete` and `onTombstone: delete`, or `onTombstone: ignore`)"
    )]
    Tombstone,
    /// A value of the wrong type or out of range.
    #[error("`{column}` ({typ}) cannot take {found}: {reason}")]
    Type {
        /// Column.
        column: String,
        /// Its CQL type.
        typ: String,
        /// The value, shortened.
        found: String,
        /// What was expected.
        reason: String,
    },
}

impl InvalidRecord {
    /// A short, stable label for metrics (`errors_total{kind=…}`).
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidRecord::NotJson { .. } => "invalid_json",
            InvalidRecord::NotAvro { .. } => "invalid_avro",
            InvalidRecord::Oversized { .. } => "oversized",
            InvalidRecord::ArrayLength { .. } => "wrong_field_count",
            InvalidRecord::MissingKey { .. } => "missing_field",
            InvalidRecord::Type { .. } => "wrong_type",
            InvalidRecord::Tombstone => "tombstone",
        }
    }
}

/// The values of one statement execution, in marker order.
pub type BoundValues = Vec<MaybeUnset<Option<CqlValue>>>;

impl Plan {
    /// Checks the mapping against the prepared markers and compiles it.
    pub fn compile(
        mapping: &Mapping,
        markers: &[Marker],
        specs: Vec<MarkerSpec>,
        null_means_unset: bool,
        max_record_bytes: usize,
    ) -> Result<Self, PlanError> {
        for spec in &specs {
            check_supported(&spec.name, &spec.typ)?;
        }
        let (sources, json_array) = match mapping {
            Mapping::JsonArray {} => (
                (0..specs.len()).map(FieldSource::ArrayElement).collect(),
                true,
            ),
            Mapping::Fields(paths) => {
                if paths.len() != specs.len() {
                    return Err(PlanError::Count {
                        paths: paths.len(),
                        markers: specs.len(),
                    });
                }
                let sources = paths
                    .iter()
                    .map(|p| parse_path(p))
                    .collect::<Result<Vec<_>, _>>()?;
                (sources, false)
            }
            Mapping::Named(by_name) => (named_sources(by_name, markers)?, false),
        };
        Ok(Plan {
            slots: sources.into_iter().zip(specs).collect(),
            json_array,
            null_means_unset,
            all_required: false,
            max_record_bytes,
        })
    }

    /// The same plan with every marker required: a record without a value for one is invalid
    /// ([`InvalidRecord::MissingKey`]) instead of leaving it unset. For DELETE statements, whose
    /// markers all select the rows to delete.
    pub fn all_required(mut self) -> Self {
        self.all_required = true;
        self
    }

    /// Number of bind markers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the statement has no markers (never, for a valid statement).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Indexes of the partition-key markers, in marker order.
    pub fn partition_key_indexes(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (_, spec))| spec.partition_key)
            .map(|(index, _)| index)
            .collect()
    }

    /// The values for one record, or why it does not fit.
    pub fn bind(&self, record: &SourceRecord<'_>) -> Result<BoundValues, InvalidRecord> {
        self.bind_in(record, &mut Parsed::default())
    }

    /// [`Plan::bind`], with the record's key and value parsed at most once across calls that share
    /// `parsed` (the rules and every statement of one record).
    pub fn bind_in(
        &self,
        record: &SourceRecord<'_>,
        parsed: &mut Parsed,
    ) -> Result<BoundValues, InvalidRecord> {
        let size = record.value.map_or(0, <[u8]>::len);
        if size > self.max_record_bytes {
            return Err(InvalidRecord::Oversized {
                size,
                limit: self.max_record_bytes,
            });
        }
        if self.json_array {
            let array = parsed.value(record)?;
            match array {
                Json::Array(items) if items.len() == self.slots.len() => {}
                Json::Array(items) => {
                    return Err(InvalidRecord::ArrayLength {
                        expected: self.slots.len(),
                        found: format!("{} elements", items.len()),
                    });
                }
                other => {
                    return Err(InvalidRecord::ArrayLength {
                        expected: self.slots.len(),
                        found: describe(other),
                    });
                }
            }
        }
        let mut values = Vec::with_capacity(self.slots.len());
        for (source, spec) in &self.slots {
            let field = parsed.field(source, record)?;
            let value = match field {
                Field::Missing => None,
                Field::Json(Json::Null) => None,
                Field::Json(json) => {
                    Some(
                        from_json(&json, &spec.typ).map_err(|reason| InvalidRecord::Type {
                            column: spec.name.clone(),
                            typ: type_name(&spec.typ),
                            found: describe(&json),
                            reason,
                        })?,
                    )
                }
                Field::Raw(bytes) => Some(from_raw(bytes, spec)?),
            };
            values.push(match value {
                Some(value) => MaybeUnset::Set(Some(value)),
                None if spec.partition_key || self.all_required => {
                    return Err(InvalidRecord::MissingKey {
                        column: spec.name.clone(),
                        path: source.to_string(),
                    });
                }
                None if self.null_means_unset => MaybeUnset::Unset,
                None => MaybeUnset::Set(None),
            });
        }
        Ok(values)
    }
}

impl std::fmt::Display for FieldSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldSource::ArrayElement(index) => write!(f, "element {index} of the value array"),
            FieldSource::Key(path) if path.is_empty() => write!(f, "key"),
            FieldSource::Key(path) => write!(f, "key.{}", path.join(".")),
            FieldSource::Value(path) if path.is_empty() => write!(f, "value"),
            FieldSource::Value(path) => write!(f, "value.{}", path.join(".")),
            FieldSource::Header(name) => write!(f, "headers.{name}"),
            FieldSource::Timestamp => write!(f, "timestamp"),
            FieldSource::Topic => write!(f, "topic"),
            FieldSource::Partition => write!(f, "partition"),
            FieldSource::Offset => write!(f, "offset"),
        }
    }
}

fn named_sources(
    by_name: &BTreeMap<String, String>,
    markers: &[Marker],
) -> Result<Vec<FieldSource>, PlanError> {
    let mut sources = Vec::with_capacity(markers.len());
    for marker in markers {
        let Marker::Named(name) = marker else {
            return Err(PlanError::NamedNeedsNamedMarkers);
        };
        let path = by_name
            .get(name)
            .ok_or_else(|| PlanError::MissingName(name.clone()))?;
        sources.push(parse_path(path)?);
    }
    if let Some(unknown) = by_name
        .keys()
        .find(|name| !markers.contains(&Marker::Named((*name).clone())))
    {
        return Err(PlanError::UnknownName(unknown.clone()));
    }
    Ok(sources)
}

fn parse_path(path: &str) -> Result<FieldSource, PlanError> {
    let invalid = |reason| PlanError::Path {
        path: path.to_owned(),
        reason,
    };
    let mut parts = path.split('.');
    let head = parts.next().unwrap_or_default();
    let rest: Vec<String> = parts.map(str::to_owned).collect();
    if rest.iter().any(String::is_empty) {
        return Err(invalid("empty segment"));
    }
    let no_rest = |source: FieldSource| {
        if rest.is_empty() {
            Ok(source)
        } else {
            Err(invalid("this source has no fields"))
        }
    };
    match head {
        "key" => Ok(FieldSource::Key(rest)),
        "value" => Ok(FieldSource::Value(rest)),
        "headers" => match rest.as_slice() {
            [name] => Ok(FieldSource::Header(name.clone())),
            _ => Err(invalid("write headers.<name>")),
        },
        "timestamp" => no_rest(FieldSource::Timestamp),
        "topic" => no_rest(FieldSource::Topic),
        "partition" => no_rest(FieldSource::Partition),
        "offset" => no_rest(FieldSource::Offset),
        _ => Err(invalid(
            "it must start with key, value, headers, timestamp, topic, partition or offset",
        )),
    }
}

fn check_supported(column: &str, typ: &ColumnType<'_>) -> Result<(), PlanError> {
    let unsupported = || PlanError::UnsupportedType {
        column: column.to_owned(),
        typ: type_name(typ),
    };
    match typ {
        ColumnType::Native(
            NativeType::Decimal
            | NativeType::Duration
            | NativeType::Varint
            | NativeType::Date
            | NativeType::Time,
        ) => Err(unsupported()),
        ColumnType::Native(_) => Ok(()),
        ColumnType::Collection { typ, .. } => match typ {
            CollectionType::List(inner) | CollectionType::Set(inner) => {
                check_supported(column, inner)
            }
            CollectionType::Map(key, value) => {
                check_supported(column, key)?;
                check_supported(column, value)
            }
            _ => Err(unsupported()),
        },
        ColumnType::Tuple(items) => items
            .iter()
            .try_for_each(|item| check_supported(column, item)),
        ColumnType::UserDefinedType { definition, .. } => definition
            .field_types
            .iter()
            .try_for_each(|(_, field)| check_supported(column, field)),
        _ => Err(unsupported()),
    }
}

/// A CQL type as written in CQL, for messages.
pub fn type_name(typ: &ColumnType<'_>) -> String {
    match typ {
        ColumnType::Native(native) => format!("{native:?}").to_lowercase(),
        ColumnType::Collection { typ, .. } => match typ {
            CollectionType::List(inner) => format!("list<{}>", type_name(inner)),
            CollectionType::Set(inner) => format!("set<{}>", type_name(inner)),
            CollectionType::Map(key, value) => {
                format!("map<{}, {}>", type_name(key), type_name(value))
            }
            _ => "collection".to_owned(),
        },
        ColumnType::Tuple(items) => format!(
            "tuple<{}>",
            items.iter().map(type_name).collect::<Vec<_>>().join(", ")
        ),
        ColumnType::UserDefinedType { definition, .. } => format!("{}", definition.name),
        ColumnType::Vector { typ, dimensions } => {
            format!("vector<{}, {dimensions}>", type_name(typ))
        }
        _ => "unknown".to_owned(),
    }
}

/// A record's key and value parsed as JSON, each at most once, for as long as one record is looked
/// at; start each record with a new one.
#[derive(Debug, Default)]
pub struct Parsed {
    key: Option<Json>,
    value: Option<Json>,
    /// The key was decoded (Avro): `key` alone is then the decoded key, not its bytes.
    key_decoded: bool,
    /// The value was decoded, as `key_decoded`.
    value_decoded: bool,
}

enum Field<'a> {
    Missing,
    Json(Json),
    Raw(&'a [u8]),
}

impl Parsed {
    /// A record whose key or value (or both) were decoded already (Avro, see `crate::avro`); a part
    /// left `None` is parsed as JSON when a path reads it. The path `key` (or `value`) alone reads a
    /// decoded part whole (an Avro key is often a plain string or long), not its bytes.
    pub fn decoded(key: Option<Json>, value: Option<Json>) -> Self {
        Self {
            key_decoded: key.is_some(),
            value_decoded: value.is_some(),
            key,
            value,
        }
    }

    /// The value as decoded, if it was.
    #[cfg(test)]
    pub(crate) fn decoded_value(&self) -> Option<&Json> {
        self.value.as_ref()
    }

    fn value(&mut self, record: &SourceRecord<'_>) -> Result<&Json, InvalidRecord> {
        if self.value.is_none() {
            self.value = Some(parse_json("value", record.value)?);
        }
        Ok(self.value.get_or_insert(Json::Null))
    }

    fn key(&mut self, record: &SourceRecord<'_>) -> Result<&Json, InvalidRecord> {
        if self.key.is_none() {
            self.key = Some(parse_json("key", record.key)?);
        }
        Ok(self.key.get_or_insert(Json::Null))
    }

    fn field<'r>(
        &mut self,
        source: &FieldSource,
        record: &SourceRecord<'r>,
    ) -> Result<Field<'r>, InvalidRecord> {
        Ok(match source {
            FieldSource::ArrayElement(index) => {
                let value = self.value(record)?;
                value
                    .get(index)
                    .cloned()
                    .map_or(Field::Missing, Field::Json)
            }
            FieldSource::Value(path) if path.is_empty() && !self.value_decoded => {
                record.value.map_or(Field::Missing, Field::Raw)
            }
            FieldSource::Key(path) if path.is_empty() && !self.key_decoded => {
                record.key.map_or(Field::Missing, Field::Raw)
            }
            FieldSource::Value(path) => lookup(self.value(record)?, path),
            FieldSource::Key(path) => lookup(self.key(record)?, path),
            FieldSource::Header(name) => record
                .headers
                .iter()
                .find(|(header, _)| header == name)
                .and_then(|(_, value)| value.as_deref())
                .map_or(Field::Missing, Field::Raw),
            FieldSource::Timestamp => record
                .timestamp_ms
                .map_or(Field::Missing, |ms| Field::Json(Json::from(ms))),
            FieldSource::Topic => Field::Json(Json::from(record.topic)),
            FieldSource::Partition => Field::Json(Json::from(record.partition)),
            FieldSource::Offset => Field::Json(Json::from(record.offset)),
        })
    }
}

fn parse_json(part: &'static str, bytes: Option<&[u8]>) -> Result<Json, InvalidRecord> {
    match bytes {
        None => Ok(Json::Null),
        Some(bytes) => serde_json::from_slice(bytes).map_err(|error| InvalidRecord::NotJson {
            part,
            error: error.to_string(),
        }),
    }
}

fn lookup<'r>(root: &Json, path: &[String]) -> Field<'r> {
    let mut current = root;
    for segment in path {
        let next = match current {
            Json::Object(fields) => fields.get(segment),
            Json::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return Field::Missing,
        }
    }
    Field::Json(current.clone())
}

fn from_raw(bytes: &[u8], spec: &MarkerSpec) -> Result<CqlValue, InvalidRecord> {
    let type_error = |found: String, reason: String| InvalidRecord::Type {
        column: spec.name.clone(),
        typ: type_name(&spec.typ),
        found,
        reason,
    };
    match &spec.typ {
        ColumnType::Native(NativeType::Blob) => Ok(CqlValue::Blob(bytes.to_vec())),
        ColumnType::Native(NativeType::Text | NativeType::Ascii) => {
            let text = std::str::from_utf8(bytes).map_err(|error| {
                type_error(
                    format!("{} bytes", bytes.len()),
                    format!("not UTF-8: {error}"),
                )
            })?;
            from_json(&Json::String(text.to_owned()), &spec.typ)
                .map_err(|reason| type_error(shorten(text), reason))
        }
        typ => {
            let json: Json = serde_json::from_slice(bytes).map_err(|error| {
                type_error(
                    shorten(&String::from_utf8_lossy(bytes)),
                    format!("not a JSON value: {error}"),
                )
            })?;
            from_json(&json, typ).map_err(|reason| type_error(describe(&json), reason))
        }
    }
}

/// Converts a JSON value to the column's type; the error says what was expected.
fn from_json(json: &Json, typ: &ColumnType<'_>) -> Result<CqlValue, String> {
    match typ {
        ColumnType::Native(native) => native_from_json(json, native),
        ColumnType::Collection { typ, .. } => match (typ, json) {
            (CollectionType::List(inner), Json::Array(items)) => Ok(CqlValue::List(
                items
                    .iter()
                    .map(|item| element(item, inner))
                    .collect::<Result<_, _>>()?,
            )),
            (CollectionType::Set(inner), Json::Array(items)) => Ok(CqlValue::Set(
                items
                    .iter()
                    .map(|item| element(item, inner))
                    .collect::<Result<_, _>>()?,
            )),
            (CollectionType::Map(key_type, value_type), Json::Object(fields)) => {
                let entries = fields
                    .iter()
                    .map(|(key, value)| {
                        let key = from_json(&key_json(key, key_type), key_type)
                            .map_err(|reason| format!("map key {key:?}: {reason}"))?;
                        Ok((key, element(value, value_type)?))
                    })
                    .collect::<Result<_, String>>()?;
                Ok(CqlValue::Map(entries))
            }
            (CollectionType::Map(..), _) => Err("expected a JSON object".to_owned()),
            _ => Err("expected a JSON array".to_owned()),
        },
        ColumnType::Tuple(types) => match json {
            Json::Array(items) if items.len() == types.len() => Ok(CqlValue::Tuple(
                items
                    .iter()
                    .zip(types)
                    .map(|(item, typ)| match item {
                        Json::Null => Ok(None),
                        item => from_json(item, typ).map(Some),
                    })
                    .collect::<Result<_, _>>()?,
            )),
            _ => Err(format!("expected a JSON array of {} elements", types.len())),
        },
        ColumnType::UserDefinedType { definition, .. } => match json {
            Json::Object(fields) => Ok(CqlValue::UserDefinedType {
                keyspace: definition.keyspace.to_string(),
                name: definition.name.to_string(),
                fields: definition
                    .field_types
                    .iter()
                    .map(|(name, typ)| {
                        let value = match fields.get(name.as_ref()) {
                            None | Some(Json::Null) => None,
                            Some(value) => Some(
                                from_json(value, typ)
                                    .map_err(|reason| format!("field {name}: {reason}"))?,
                            ),
                        };
                        Ok((name.to_string(), value))
                    })
                    .collect::<Result<_, String>>()?,
            }),
            _ => Err("expected a JSON object".to_owned()),
        },
        other => Err(format!("{} is not supported", type_name(other))),
    }
}

/// A collection element: null is not allowed inside collections.
fn element(item: &Json, typ: &ColumnType<'_>) -> Result<CqlValue, String> {
    if item.is_null() {
        return Err("collections cannot hold null".to_owned());
    }
    from_json(item, typ)
}

/// JSON object keys are strings; a map with non-text keys reads them as JSON scalars (`{"1": "a"}`).
fn key_json(key: &str, typ: &ColumnType<'_>) -> Json {
    match typ {
        ColumnType::Native(NativeType::Text | NativeType::Ascii) => Json::String(key.to_owned()),
        _ => serde_json::from_str(key).unwrap_or_else(|_| Json::String(key.to_owned())),
    }
}

fn native_from_json(json: &Json, native: &NativeType) -> Result<CqlValue, String> {
    match native {
        NativeType::Text => string(json).map(CqlValue::Text),
        NativeType::Ascii => {
            let text = string(json)?;
            if text.is_ascii() {
                Ok(CqlValue::Ascii(text))
            } else {
                Err("expected ASCII text".to_owned())
            }
        }
        NativeType::Boolean => json
            .as_bool()
            .map(CqlValue::Boolean)
            .ok_or_else(|| "expected true or false".to_owned()),
        NativeType::TinyInt => {
            integer(json, i8::MIN.into(), i8::MAX.into()).map(|v| CqlValue::TinyInt(v as i8))
        }
        NativeType::SmallInt => {
            integer(json, i16::MIN.into(), i16::MAX.into()).map(|v| CqlValue::SmallInt(v as i16))
        }
        NativeType::Int => {
            integer(json, i32::MIN.into(), i32::MAX.into()).map(|v| CqlValue::Int(v as i32))
        }
        NativeType::BigInt => integer(json, i64::MIN, i64::MAX).map(CqlValue::BigInt),
        // A counter column takes the increment (under at-least-once only: see `statement`).
        NativeType::Counter => integer(json, i64::MIN, i64::MAX)
            .map(|delta| CqlValue::Counter(scylla::value::Counter(delta))),
        NativeType::Float => {
            let value = float(json)?;
            let narrowed = value as f32;
            if value.is_finite() && !narrowed.is_finite() {
                return Err(format!("{value} is out of range for a float"));
            }
            Ok(CqlValue::Float(narrowed))
        }
        NativeType::Double => float(json).map(CqlValue::Double),
        NativeType::Timestamp => timestamp(json).map(|ms| CqlValue::Timestamp(CqlTimestamp(ms))),
        NativeType::Uuid => uuid(json).map(CqlValue::Uuid),
        NativeType::Timeuuid => {
            let value = uuid(json)?;
            if value.get_version_num() != 1 {
                return Err("expected a version 1 (time-based) UUID".to_owned());
            }
            Ok(CqlValue::Timeuuid(CqlTimeuuid::from(value)))
        }
        NativeType::Inet => IpAddr::from_str(&string(json)?)
            .map(CqlValue::Inet)
            .map_err(|error| format!("expected an IP address: {error}")),
        NativeType::Blob => {
            // JSON has no bytes: a blob field inside a JSON document is an array of byte values.
            let Json::Array(items) = json else {
                return Err("expected an array of byte values (0-255)".to_owned());
            };
            items
                .iter()
                .map(|item| integer(item, 0, 255).map(|byte| byte as u8))
                .collect::<Result<Vec<u8>, _>>()
                .map(CqlValue::Blob)
        }
        other => Err(format!("{other:?} is not supported").to_lowercase()),
    }
}

fn string(json: &Json) -> Result<String, String> {
    json.as_str()
        .map(str::to_owned)
        .ok_or_else(|| "expected a string".to_owned())
}

/// The largest integer every JSON parser reads exactly (2^53): past it, producers send strings.
const EXACT_IN_JSON: f64 = 9_007_199_254_740_992.0;

/// An integer within [min, max]. One rule for every form a producer may use: the value must be an
/// integer, however it is written. A JSON number (`42`, `42.0`, `1e3`) up to 2^53, past which JSON
/// numbers lose precision, or a string holding one (`"42"`, `"1e3"`, or any decimal integer, which is
/// how large values travel). A fraction (`42.5`, `"42.5"`) is refused, never rounded.
fn integer(json: &Json, min: i64, max: i64) -> Result<i64, String> {
    let value = match json {
        Json::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(value), _) => value,
            (None, Some(float)) if number.is_u64() => {
                return Err(format!("{float} is out of range [{min}, {max}]"));
            }
            (None, Some(float)) => integral(float, &number.to_string())?,
            (None, None) => return Err(format!("expected an integer, got {number}")),
        },
        Json::String(text) => {
            let text = text.trim();
            match text.parse::<i64>() {
                Ok(value) => value,
                Err(_) => match text.parse::<f64>() {
                    Ok(float) => integral(float, text)?,
                    Err(_) => return Err("expected an integer".to_owned()),
                },
            }
        }
        _ => return Err("expected an integer".to_owned()),
    };
    if value < min || value > max {
        return Err(format!("{value} is out of range [{min}, {max}]"));
    }
    Ok(value)
}

/// `float` as an integer when it is one, exactly.
fn integral(float: f64, written: &str) -> Result<i64, String> {
    if float.fract() != 0.0 || !float.is_finite() {
        Err(format!("expected an integer, got {written}"))
    } else if float.abs() > EXACT_IN_JSON {
        Err(format!(
            "{written} is beyond 2^53, where JSON numbers lose precision; send it as a string of \
             digits"
        ))
    } else {
        Ok(float as i64)
    }
}

fn float(json: &Json) -> Result<f64, String> {
    match json {
        Json::Number(number) => number
            .as_f64()
            .ok_or_else(|| format!("{number} is not a number")),
        Json::String(text) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| "expected a number".to_owned()),
        _ => Err("expected a number".to_owned()),
    }
}

/// Milliseconds since the epoch, or an RFC 3339 date-time string.
fn timestamp(json: &Json) -> Result<i64, String> {
    match json {
        Json::Number(_) => integer(json, i64::MIN, i64::MAX),
        Json::String(text) => {
            let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|error| {
                format!("expected milliseconds since the epoch or an RFC 3339 time: {error}")
            })?;
            let since = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| "times before 1970 must be given in milliseconds".to_owned())?;
            i64::try_from(since.as_millis()).map_err(|_| "time out of range".to_owned())
        }
        _ => Err("expected milliseconds since the epoch or an RFC 3339 time".to_owned()),
    }
}

fn uuid(json: &Json) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(&string(json)?).map_err(|error| format!("expected a UUID: {error}"))
}

/// A JSON value for an error message, cut to a readable length.
fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".to_owned(),
        Json::Bool(_) => format!("the boolean {json}"),
        Json::Number(_) => format!("the number {json}"),
        Json::String(text) => format!("the string {}", shorten(&format!("{text:?}"))),
        Json::Array(items) => format!("an array of {} elements", items.len()),
        Json::Object(fields) => format!("an object with {} fields", fields.len()),
    }
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    if text.chars().count() <= LIMIT {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(LIMIT).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spec(name: &str, typ: ColumnType<'static>, partition_key: bool) -> MarkerSpec {
        MarkerSpec {
            name: name.to_owned(),
            typ,
            partition_key,
        }
    }

    fn seed_specs() -> Vec<MarkerSpec> {
        vec![
            spec("id", ColumnType::Native(NativeType::Text), true),
            spec("counter", ColumnType::Native(NativeType::Int), false),
        ]
    }

    fn positional(count: usize) -> Vec<Marker> {
        vec![Marker::Positional; count]
    }

    fn record(value: &[u8]) -> SourceRecord<'_> {
        SourceRecord {
            key: Some(b"k1"),
            value: Some(value),
            headers: &[],
            timestamp_ms: Some(1_700_000_000_000),
            topic: "values",
            partition: 3,
            offset: 42,
        }
    }

    fn json_array_plan() -> Plan {
        Plan::compile(
            &Mapping::JsonArray {},
            &positional(2),
            seed_specs(),
            true,
            1024,
        )
        .expect("plan compiles")
    }

    /// `MaybeUnset` has no `PartialEq`: compare `Some(Some(v))` set, `Some(None)` null, `None` unset.
    type View = Option<Option<CqlValue>>;

    fn set(value: CqlValue) -> View {
        Some(Some(value))
    }

    fn view(values: BoundValues) -> Vec<View> {
        values
            .into_iter()
            .map(|value| match value {
                MaybeUnset::Set(value) => Some(value),
                MaybeUnset::Unset => None,
            })
            .collect()
    }

    fn bind(plan: &Plan, record: &SourceRecord<'_>) -> Vec<View> {
        view(plan.bind(record).expect("binds"))
    }

    #[test]
    fn a_json_array_fills_markers_in_order_like_the_seed_tuple() {
        assert_eq!(
            bind(&json_array_plan(), &record(br#"["a", 7]"#)),
            vec![set(CqlValue::Text("a".into())), set(CqlValue::Int(7))]
        );
    }

    #[test]
    fn invalid_json_and_wrong_shapes_are_invalid_records() {
        let plan = json_array_plan();
        let not_json = plan.bind(&record(b"[\"a\", 7")).expect_err("invalid JSON");
        assert_eq!(not_json.kind(), "invalid_json");
        assert!(
            not_json.to_string().contains("value is not valid JSON"),
            "{not_json}"
        );
        let short = plan.bind(&record(br#"["a"]"#)).expect_err("missing field");
        assert_eq!(
            short.to_string(),
            "expected a JSON array of 2 elements, got 1 elements"
        );
        let extra = plan
            .bind(&record(br#"["a", 1, 2]"#))
            .expect_err("extra field");
        assert_eq!(extra.kind(), "wrong_field_count");
        let object = plan.bind(&record(br#"{"id": "a"}"#)).expect_err("object");
        assert!(
            object.to_string().contains("an object with 1 fields"),
            "{object}"
        );
    }

    #[test]
    fn wrong_types_and_out_of_range_values_name_the_column() {
        let plan = json_array_plan();
        let wrong = plan
            .bind(&record(br#"["a", "seven"]"#))
            .expect_err("wrong type");
        assert_eq!(
            wrong.to_string(),
            "`counter` (int) cannot take the string \"seven\": expected an integer"
        );
        let big = plan
            .bind(&record(br#"["a", 3000000000]"#))
            .expect_err("out of range");
        assert!(big.to_string().contains("out of range"), "{big}");
        let fraction = plan.bind(&record(br#"["a", 1.5]"#)).expect_err("fraction");
        assert!(
            fraction.to_string().contains("expected an integer"),
            "{fraction}"
        );
    }

    #[test]
    fn oversized_records_are_refused_before_parsing() {
        let plan = json_array_plan();
        let big = format!("[\"{}\", 1]", "x".repeat(2000));
        let error = plan.bind(&record(big.as_bytes())).expect_err("oversized");
        assert_eq!(error.kind(), "oversized");
    }

    #[test]
    fn missing_fields_leave_columns_unset_but_keys_are_required() {
        let mapping = Mapping::Fields(vec!["value.id".into(), "value.counter".into()]);
        let plan = Plan::compile(&mapping, &positional(2), seed_specs(), true, 1024).expect("plan");
        assert_eq!(
            bind(&plan, &record(br#"{"id": "a"}"#)),
            vec![set(CqlValue::Text("a".into())), None]
        );
        assert_eq!(
            bind(&plan, &record(br#"{"id": "a", "counter": null}"#))[1],
            None
        );
        let missing_key = plan
            .bind(&record(br#"{"counter": 1}"#))
            .expect_err("no key");
        assert_eq!(
            missing_key.to_string(),
            "`id` is part of the primary key but the record has no value for it (value.id)"
        );
        let writes_null =
            Plan::compile(&mapping, &positional(2), seed_specs(), false, 1024).expect("plan");
        assert_eq!(
            bind(&writes_null, &record(br#"{"id": "a"}"#))[1],
            Some(None)
        );
    }

    #[test]
    fn record_coordinates_headers_and_raw_key_are_sources() {
        let specs = vec![
            spec("id", ColumnType::Native(NativeType::Text), true),
            spec("p", ColumnType::Native(NativeType::Int), false),
            spec("o", ColumnType::Native(NativeType::BigInt), false),
            spec("t", ColumnType::Native(NativeType::Timestamp), false),
            spec("h", ColumnType::Native(NativeType::Text), false),
            spec("n", ColumnType::Native(NativeType::Int), false),
            spec("topic", ColumnType::Native(NativeType::Text), false),
        ];
        let mapping = Mapping::Fields(
            [
                "key",
                "partition",
                "offset",
                "timestamp",
                "headers.source",
                "value.items.1",
                "topic",
            ]
            .map(String::from)
            .to_vec(),
        );
        let plan = Plan::compile(&mapping, &positional(7), specs, true, 1024).expect("plan");
        let headers = vec![("source".to_owned(), Some(b"web".to_vec()))];
        let mut input = record(br#"{"items": [10, 20]}"#);
        input.headers = &headers;
        assert_eq!(
            bind(&plan, &input),
            vec![
                set(CqlValue::Text("k1".into())),
                set(CqlValue::Int(3)),
                set(CqlValue::BigInt(42)),
                set(CqlValue::Timestamp(CqlTimestamp(1_700_000_000_000))),
                set(CqlValue::Text("web".into())),
                set(CqlValue::Int(20)),
                set(CqlValue::Text("values".into())),
            ]
        );
    }

    #[test]
    fn named_markers_take_their_paths_by_name() {
        let markers = vec![Marker::Named("counter".into()), Marker::Named("id".into())];
        let specs = vec![
            spec("counter", ColumnType::Native(NativeType::Int), false),
            spec("id", ColumnType::Native(NativeType::Text), true),
        ];
        let mapping = Mapping::Named(BTreeMap::from([
            ("id".to_owned(), "value.name".to_owned()),
            ("counter".to_owned(), "value.n".to_owned()),
        ]));
        let plan = Plan::compile(&mapping, &markers, specs.clone(), true, 1024).expect("plan");
        assert_eq!(
            bind(&plan, &record(br#"{"name": "x", "n": 5}"#)),
            vec![set(CqlValue::Int(5)), set(CqlValue::Text("x".into()))]
        );
        let mut extra = match mapping {
            Mapping::Named(map) => map,
            _ => unreachable!(),
        };
        extra.insert("other".into(), "value.o".into());
        assert_eq!(
            Plan::compile(&Mapping::Named(extra), &markers, specs.clone(), true, 1024).err(),
            Some(PlanError::UnknownName("other".into()))
        );
        assert_eq!(
            Plan::compile(
                &Mapping::Named(BTreeMap::new()),
                &positional(2),
                specs,
                true,
                1024
            )
            .err(),
            Some(PlanError::NamedNeedsNamedMarkers)
        );
    }

    #[test]
    fn impossible_plans_are_configuration_errors() {
        assert_eq!(
            Plan::compile(
                &Mapping::Fields(vec!["value.id".into()]),
                &positional(2),
                seed_specs(),
                true,
                1
            )
            .err(),
            Some(PlanError::Count {
                paths: 1,
                markers: 2
            })
        );
        assert!(matches!(
            Plan::compile(
                &Mapping::Fields(vec!["body.id".into(), "value".into()]),
                &positional(2),
                seed_specs(),
                true,
                1
            )
            .err(),
            Some(PlanError::Path { .. })
        ));
        let decimal = vec![spec("d", ColumnType::Native(NativeType::Decimal), false)];
        assert_eq!(
            Plan::compile(&Mapping::JsonArray {}, &positional(1), decimal, true, 1).err(),
            Some(PlanError::UnsupportedType {
                column: "d".into(),
                typ: "decimal".into()
            })
        );
    }

    #[test]
    fn collections_tuples_and_user_types_convert() {
        let list = ColumnType::Collection {
            frozen: false,
            typ: CollectionType::List(Box::new(ColumnType::Native(NativeType::Int))),
        };
        let map = ColumnType::Collection {
            frozen: false,
            typ: CollectionType::Map(
                Box::new(ColumnType::Native(NativeType::Int)),
                Box::new(ColumnType::Native(NativeType::Text)),
            ),
        };
        let udt = ColumnType::UserDefinedType {
            frozen: true,
            definition: Arc::new(scylla::cluster::metadata::UserDefinedType {
                name: "point".into(),
                keyspace: "ks".into(),
                field_types: vec![
                    ("x".into(), ColumnType::Native(NativeType::Double)),
                    ("label".into(), ColumnType::Native(NativeType::Text)),
                ],
            }),
        };
        assert_eq!(
            from_json(&serde_json::json!([1, 2]), &list),
            Ok(CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)]))
        );
        assert_eq!(
            from_json(&serde_json::json!({"1": "a"}), &map),
            Ok(CqlValue::Map(vec![(
                CqlValue::Int(1),
                CqlValue::Text("a".into())
            )]))
        );
        assert!(from_json(&serde_json::json!([1, null]), &list).is_err());
        assert_eq!(
            from_json(&serde_json::json!({"x": 1.5}), &udt),
            Ok(CqlValue::UserDefinedType {
                keyspace: "ks".into(),
                name: "point".into(),
                fields: vec![
                    ("x".into(), Some(CqlValue::Double(1.5))),
                    ("label".into(), None)
                ],
            })
        );
    }

    #[test]
    fn scalars_convert_with_their_ranges() {
        let native = |t| ColumnType::Native(t);
        assert_eq!(
            from_json(&serde_json::json!(127), &native(NativeType::TinyInt)),
            Ok(CqlValue::TinyInt(127))
        );
        assert!(from_json(&serde_json::json!(128), &native(NativeType::TinyInt)).is_err());
        assert_eq!(
            from_json(
                &serde_json::json!("9007199254740993"),
                &native(NativeType::BigInt)
            ),
            Ok(CqlValue::BigInt(9_007_199_254_740_993))
        );
        assert_eq!(
            from_json(
                &serde_json::json!("2024-01-01T00:00:00Z"),
                &native(NativeType::Timestamp)
            ),
            Ok(CqlValue::Timestamp(CqlTimestamp(1_704_067_200_000)))
        );
        assert!(from_json(&serde_json::json!(1e300), &native(NativeType::Float)).is_err());
        assert!(from_json(&serde_json::json!("é"), &native(NativeType::Ascii)).is_err());
        assert!(from_json(&serde_json::json!("not-a-uuid"), &native(NativeType::Uuid)).is_err());
        assert_eq!(
            from_json(&serde_json::json!("10.0.0.1"), &native(NativeType::Inet)),
            Ok(CqlValue::Inet("10.0.0.1".parse().expect("ip")))
        );
        assert_eq!(
            from_json(&serde_json::json!(true), &native(NativeType::Boolean)),
            Ok(CqlValue::Boolean(true))
        );
    }

    #[test]
    fn an_integer_column_takes_an_integer_however_it_is_written() {
        let int = ColumnType::Native(NativeType::Int);
        for accepted in [
            serde_json::json!(42),
            serde_json::json!(42.0),
            serde_json::json!(4.2e1),
            serde_json::json!("42"),
            serde_json::json!(" 42 "),
            serde_json::json!("4.2e1"),
        ] {
            assert_eq!(
                from_json(&accepted, &int),
                Ok(CqlValue::Int(42)),
                "{accepted}"
            );
        }
        assert_eq!(
            from_json(&serde_json::json!(1e3), &int),
            Ok(CqlValue::Int(1000))
        );
        for refused in [
            serde_json::json!(42.5),
            serde_json::json!("42.5"),
            serde_json::json!("forty-two"),
            serde_json::json!(true),
            serde_json::json!(3e9),
        ] {
            assert!(from_json(&refused, &int).is_err(), "{refused}");
        }
        let big = ColumnType::Native(NativeType::BigInt);
        assert_eq!(
            from_json(&serde_json::json!("9223372036854775807"), &big),
            Ok(CqlValue::BigInt(i64::MAX)),
            "large values travel as strings"
        );
        let beyond = from_json(&serde_json::json!(1e17), &big).expect_err("imprecise");
        assert!(beyond.contains("2^53"), "{beyond}");
    }
}
