//! Avro records in the Confluent wire format, decoded into the document that field paths read
//! (`value.<field>…`, `key.<field>…`), as JSON records are. Pure: the schemas come in a [`Schemas`]
//! that [`crate::registry`] fills before a checkpoint is bound.
//!
//! The wire format: a zero byte, the schema id as 4 big-endian bytes, then the Avro binary encoding
//! of one datum. Subjects follow the topic-name strategy: `<topic>-value` and `<topic>-key`.
//!
//! Guarantees: decoding is a function of the record's bytes and the schemas its id names, which never
//! change in a registry; a record that cannot be decoded is an invalid record (dead-lettered with the
//! reason), never skipped.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::types::Value;
use serde_json::Value as Json;

use crate::config::RecordFormat;
use crate::mapping::{InvalidRecord, Parsed, SourceRecord};

/// The first byte of a framed record.
pub const MAGIC: u8 = 0;

/// Which part of a record a schema is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The key.
    Key,
    /// The value.
    Value,
}

impl Part {
    /// `key` or `value`, as field paths and messages say.
    pub fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }

    /// The subject of this part of a topic's records (the topic-name strategy).
    pub fn subject(self, topic: &str) -> String {
        format!("{topic}-{}", self.name())
    }
}

/// The formats of a sink's keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// Keys.
    pub key: RecordFormat,
    /// Values.
    pub value: RecordFormat,
}

impl Formats {
    /// The parts of a record that are Avro and present, with their bytes.
    fn avro_parts<'r>(
        &self,
        record: &SourceRecord<'r>,
    ) -> impl Iterator<Item = (Part, &'r [u8])> + use<'r> {
        let key = (self.key == RecordFormat::Avro)
            .then_some(record.key)
            .flatten()
            .map(|bytes| (Part::Key, bytes));
        let value = (self.value == RecordFormat::Avro)
            .then_some(record.value)
            .flatten()
            .map(|bytes| (Part::Value, bytes));
        key.into_iter().chain(value)
    }

    /// The schema ids a record's Avro parts name; a part that is not framed names none (it is
    /// refused when decoded).
    pub fn needed<'r>(
        &self,
        record: &SourceRecord<'r>,
    ) -> impl Iterator<Item = (Part, u32)> + use<'r> {
        self.avro_parts(record)
            .filter_map(|(part, bytes)| frame(bytes).ok().map(|(id, _)| (part, id)))
    }
}

/// Splits a framed record into its schema id and Avro body.
pub fn frame(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [MAGIC, ..] => Err(format!(
            "{} bytes are too few for the Confluent wire format (a zero byte and a 4-byte schema id)",
            bytes.len()
        )),
        [first, ..] => Err(format!(
            "the first byte is {first}, not 0: not the Confluent wire format"
        )),
        [] => Err("no bytes".to_owned()),
    }
}

/// The schema a record was written with, and the one it is read into.
#[derive(Debug)]
pub struct Resolved {
    writer: Schema,
    reader: Option<Schema>,
}

impl Resolved {
    /// Parses the writer's schema and, when records are read into another, that one.
    pub fn parse(writer: &str, reader: Option<&str>) -> Result<Self, apache_avro::Error> {
        Ok(Self {
            writer: Schema::parse_str(writer)?,
            reader: reader.map(Schema::parse_str).transpose()?,
        })
    }

    /// Decodes one Avro body into a JSON document.
    pub fn decode(&self, body: &[u8]) -> Result<Json, String> {
        let mut reader = body;
        let value = apache_avro::from_avro_datum(&self.writer, &mut reader, self.reader.as_ref())
            .map_err(|error| error.to_string())?;
        if !reader.is_empty() {
            return Err(format!(
                "{} bytes are left after the datum: the schema id names another schema than the one \
                 it was written with",
                reader.len()
            ));
        }
        Ok(to_json(value))
    }
}

/// The schemas a sink's records were found to name, by topic, part and id: resolved, or the reason
/// records naming them cannot be read (the registry does not know the id, or the schema is not Avro).
/// Keyed by topic first so that a record is looked up by its topic as it comes, without building its
/// subject's name.
#[derive(Debug, Clone)]
pub struct Schemas {
    formats: Formats,
    entries: HashMap<String, HashMap<(Part, u32), Entry>>,
}

/// What one schema id resolves to: the schemas, or why records naming it cannot be read.
pub type Entry = Result<Arc<Resolved>, String>;

impl Schemas {
    /// None looked up yet, for records in `formats`.
    pub fn new(formats: Formats) -> Self {
        Self {
            formats,
            entries: HashMap::new(),
        }
    }

    /// The ids a record names that were not looked up yet.
    pub fn missing<'r>(
        &self,
        record: &SourceRecord<'r>,
    ) -> impl Iterator<Item = (Part, u32)> + use<'_, 'r> {
        let known = self.entries.get(record.topic);
        self.formats
            .needed(record)
            .filter(move |key| !known.is_some_and(|ids| ids.contains_key(key)))
    }

    /// Records what an id of a topic's part resolves to.
    pub fn insert(&mut self, topic: String, part: Part, id: u32, entry: Entry) {
        self.entries
            .entry(topic)
            .or_default()
            .insert((part, id), entry);
    }

    /// The record's Avro parts decoded, for the mapping to read. A part that is not framed, names an
    /// unknown schema or does not decode makes the record invalid.
    pub fn parse(&self, record: &SourceRecord<'_>) -> Result<Parsed, InvalidRecord> {
        let mut key = None;
        let mut value = None;
        for (part, bytes) in self.formats.avro_parts(record) {
            let decoded = self.decode(part, record.topic, bytes).map_err(|reason| {
                InvalidRecord::NotAvro {
                    part: part.name(),
                    reason,
                }
            })?;
            match part {
                Part::Key => key = Some(decoded),
                Part::Value => value = Some(decoded),
            }
        }
        Ok(Parsed::decoded(key, value))
    }

    fn decode(&self, part: Part, topic: &str, bytes: &[u8]) -> Result<Json, String> {
        let (id, body) = frame(bytes)?;
        match self.entries.get(topic).and_then(|ids| ids.get(&(part, id))) {
            Some(Ok(resolved)) => resolved
                .decode(body)
                .map_err(|reason| format!("schema id {id}: {reason}")),
            Some(Err(reason)) => Err(format!("schema id {id}: {reason}")),
            // The registry is asked for every id of a checkpoint before it is bound.
            None => Err(format!("schema id {id} was not looked up")),
        }
    }
}

/// An Avro value as the JSON that field paths read and columns convert from: unions are their
/// branch, records and maps objects, bytes and fixed arrays of byte values (as a blob column takes
/// them), enums their symbol, timestamps milliseconds since the epoch, UUIDs and decimals text.
pub fn to_json(value: Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(value) => Json::Bool(value),
        Value::Int(value) | Value::Date(value) | Value::TimeMillis(value) => Json::from(value),
        Value::Long(value)
        | Value::TimeMicros(value)
        | Value::TimestampMillis(value)
        | Value::LocalTimestampMillis(value) => Json::from(value),
        Value::TimestampMicros(value) | Value::LocalTimestampMicros(value) => {
            Json::from(value.div_euclid(1_000))
        }
        Value::TimestampNanos(value) | Value::LocalTimestampNanos(value) => {
            Json::from(value.div_euclid(1_000_000))
        }
        Value::Float(value) => Json::from(f64::from(value)),
        Value::Double(value) => Json::from(value),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::from(bytes),
        Value::String(text) | Value::Enum(_, text) => Json::String(text),
        Value::Union(_, inner) => to_json(*inner),
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(name, value)| (name, to_json(value)))
                .collect(),
        ),
        Value::Record(fields) => Json::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, to_json(value)))
                .collect(),
        ),
        Value::Uuid(uuid) => Json::String(uuid.to_string()),
        Value::BigDecimal(decimal) => Json::String(decimal.to_string()),
        Value::Decimal(decimal) => Json::from(Vec::<u8>::try_from(decimal).unwrap_or_default()),
        Value::Duration(duration) => Json::from(<[u8; 12]>::from(duration).to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Record;

    const V1: &str = r#"{"type":"record","name":"User","fields":[
        {"name":"id","type":"long"},
        {"name":"name","type":["null","string"],"default":null}]}"#;
    const V2: &str = r#"{"type":"record","name":"User","fields":[
        {"name":"id","type":"long"},
        {"name":"name","type":["null","string"],"default":null},
        {"name":"email","type":"string","default":"unknown"}]}"#;

    fn framed(id: u32, schema: &str, fill: impl FnOnce(&mut Record<'_>)) -> Vec<u8> {
        let schema = Schema::parse_str(schema).expect("schema");
        let mut record = Record::new(&schema).expect("a record schema");
        fill(&mut record);
        let mut bytes = vec![MAGIC];
        bytes.extend(id.to_be_bytes());
        bytes.extend(apache_avro::to_avro_datum(&schema, record).expect("encode"));
        bytes
    }

    fn record<'a>(value: Option<&'a [u8]>, key: Option<&'a [u8]>) -> SourceRecord<'a> {
        SourceRecord {
            key,
            value,
            headers: &[],
            timestamp_ms: None,
            topic: "users",
            partition: 0,
            offset: 7,
        }
    }

    const AVRO_VALUES: Formats = Formats {
        key: RecordFormat::Json,
        value: RecordFormat::Avro,
    };

    fn schemas(entries: &[(u32, &str, Option<&str>)]) -> Schemas {
        let mut schemas = Schemas::new(AVRO_VALUES);
        for (id, writer, reader) in entries {
            let resolved = Resolved::parse(writer, *reader).expect("schemas");
            schemas.insert("users".into(), Part::Value, *id, Ok(Arc::new(resolved)));
        }
        schemas
    }

    #[test]
    fn the_frame_is_a_zero_byte_and_a_big_endian_id() {
        assert_eq!(frame(&[0, 0, 0, 1, 2, 9, 9]), Ok((258, &[9u8, 9][..])));
        assert!(frame(&[0, 0, 1]).expect_err("short").contains("too few"));
        assert!(
            frame(b"{\"id\":1}")
                .expect_err("json")
                .contains("first byte is 123")
        );
        assert!(frame(&[]).is_err());
    }

    #[test]
    fn a_record_decodes_into_the_document_field_paths_read() {
        let bytes = framed(3, V1, |r| {
            r.put("id", 42i64);
            r.put(
                "name",
                Value::Union(1, Box::new(Value::String("ada".into()))),
            );
        });
        let parsed = schemas(&[(3, V1, None)])
            .parse(&record(Some(&bytes), Some(b"{\"k\":1}")))
            .expect("decoded");
        assert_eq!(
            parsed.decoded_value(),
            Some(&serde_json::json!({"id": 42, "name": "ada"}))
        );
        let framed_record = record(Some(&bytes), None);
        assert_eq!(
            Schemas::new(AVRO_VALUES)
                .missing(&framed_record)
                .collect::<Vec<_>>(),
            vec![(Part::Value, 3)]
        );
        assert_eq!(
            schemas(&[(3, V1, None)]).missing(&framed_record).count(),
            0,
            "an id looked up is not asked again"
        );
    }

    #[test]
    fn an_old_record_read_into_a_newer_schema_takes_the_added_fields_default() {
        let old = framed(3, V1, |r| {
            r.put("id", 1i64);
            r.put("name", Value::Union(0, Box::new(Value::Null)));
        });
        let read_as_written = schemas(&[(3, V1, None)]).parse(&record(Some(&old), None));
        assert_eq!(
            read_as_written.expect("decoded").decoded_value(),
            Some(&serde_json::json!({"id": 1, "name": null}))
        );
        let evolved = schemas(&[(3, V1, Some(V2))]).parse(&record(Some(&old), None));
        assert_eq!(
            evolved.expect("decoded").decoded_value(),
            Some(&serde_json::json!({"id": 1, "name": null, "email": "unknown"}))
        );
    }

    #[test]
    fn undecodable_records_are_invalid_with_the_reason() {
        let bytes = framed(3, V1, |r| {
            r.put("id", 1i64);
            r.put("name", Value::Union(0, Box::new(Value::Null)));
        });
        let cases: Vec<(Vec<u8>, Schemas, &str)> = vec![
            (b"{\"id\":1}".to_vec(), schemas(&[]), "first byte is 123"),
            (bytes.clone(), schemas(&[]), "schema id 3 was not looked up"),
            // A long whose varint never ends.
            (
                [&bytes[..5], &[0x80]].concat(),
                schemas(&[(3, V1, None)]),
                "schema id 3",
            ),
            (
                [&bytes[..], &[1, 2]].concat(),
                schemas(&[(3, V1, None)]),
                "left after the datum",
            ),
            (
                bytes.clone(),
                {
                    let mut unknown = Schemas::new(AVRO_VALUES);
                    unknown.insert(
                        "users".into(),
                        Part::Value,
                        3,
                        Err("not in the registry".into()),
                    );
                    unknown
                },
                "schema id 3: not in the registry",
            ),
        ];
        for (value, schemas, expected) in cases {
            let error = schemas
                .parse(&record(Some(&value), None))
                .expect_err(expected);
            assert_eq!(error.kind(), "invalid_avro");
            assert!(
                error.to_string().contains(expected),
                "{error} lacks {expected}"
            );
            assert!(error.to_string().starts_with("value "), "{error}");
        }
    }

    #[test]
    fn a_plain_avro_key_is_read_whole_by_the_path_key() {
        use crate::config::Mapping;
        use crate::mapping::{MarkerSpec, Plan};
        use scylla::cluster::metadata::{ColumnType, NativeType};
        use scylla::value::{CqlValue, MaybeUnset};

        let key_schema = Schema::parse_str(r#""long""#).expect("schema");
        let mut key = vec![MAGIC, 0, 0, 0, 9];
        key.extend(apache_avro::to_avro_datum(&key_schema, Value::Long(77)).expect("encode"));
        let formats = Formats {
            key: RecordFormat::Avro,
            value: RecordFormat::Json,
        };
        let mut schemas = Schemas::new(formats);
        schemas.insert(
            "users".into(),
            Part::Key,
            9,
            Ok(Arc::new(
                Resolved::parse(r#""long""#, None).expect("schema"),
            )),
        );
        let record = record(Some(b"{\"name\":\"ada\"}"), Some(&key));
        let specs = vec![
            MarkerSpec {
                name: "id".into(),
                typ: ColumnType::Native(NativeType::BigInt),
                partition_key: true,
            },
            MarkerSpec {
                name: "name".into(),
                typ: ColumnType::Native(NativeType::Text),
                partition_key: false,
            },
        ];
        let markers = vec![crate::statement::Marker::Positional; 2];
        let plan = Plan::compile(
            &Mapping::Fields(vec!["key".into(), "value.name".into()]),
            &markers,
            specs,
            false,
            1 << 20,
        )
        .expect("plan");
        let mut parsed = schemas.parse(&record).expect("decoded");
        let bound = plan.bind_in(&record, &mut parsed).expect("bound");
        let values: Vec<Option<CqlValue>> = bound
            .into_iter()
            .map(|value| match value {
                MaybeUnset::Set(value) => value,
                MaybeUnset::Unset => None,
            })
            .collect();
        assert_eq!(
            values,
            vec![
                Some(CqlValue::BigInt(77)),
                Some(CqlValue::Text("ada".into()))
            ]
        );
    }

    #[test]
    fn a_tombstone_and_json_parts_are_left_alone() {
        let parsed = Schemas::new(AVRO_VALUES)
            .parse(&record(None, Some(b"{\"id\":1}")))
            .expect("nothing to decode");
        assert_eq!(parsed.decoded_value(), None);
        assert_eq!(
            AVRO_VALUES
                .needed(&record(None, Some(&[0, 0, 0, 0, 1])))
                .count(),
            0
        );
    }

    #[test]
    fn values_become_the_json_columns_convert_from() {
        assert_eq!(
            to_json(Value::Bytes(vec![1, 255])),
            serde_json::json!([1, 255])
        );
        assert_eq!(
            to_json(Value::Enum(1, "RED".into())),
            serde_json::json!("RED")
        );
        assert_eq!(
            to_json(Value::TimestampMicros(1_500_999)),
            serde_json::json!(1_500)
        );
        assert_eq!(to_json(Value::TimestampNanos(-1)), serde_json::json!(-1));
        assert_eq!(
            to_json(Value::Map([("a".to_owned(), Value::Int(1))].into())),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            to_json(Value::Array(vec![Value::Union(
                1,
                Box::new(Value::Long(5))
            )])),
            serde_json::json!([5])
        );
    }
}
