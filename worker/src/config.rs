//! The sink configuration: what a worker reads from `--config sink.yaml`, and what the operator renders
//! from a `CassandraSink` into the worker's ConfigMap. One set of types serves both, so the two can never
//! disagree about a field.
//!
//! Parsing is strict: an unknown key is an error that names it (`deny_unknown_fields` on every struct),
//! because a misspelt `onInvalidRecord` silently falling back to a default would be a data-loss bug.
//! Secrets never appear in this type: credentials are references to files or environment variables,
//! resolved at connection time and never logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::encoding::{ReaderSchema, RecordFormat, SchemaRegistry};

/// Everything a worker needs to move Kafka topics into Cassandra statements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkConfig {
    /// Stable identity of the sink. The committer table is keyed by it (and by source partition), so it
    /// must stay the same across restarts, upgrades and rescaling. The operator sets `namespace/name`.
    pub sink_id: String,
    /// The Cassandra cluster that receives the data.
    pub cassandra: CassandraConfig,
    /// A CREATE TABLE (or CREATE TYPE / CREATE KEYSPACE) statement run once before writing; "already
    /// exists" is not an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_query: Option<String>,
    /// The statement each record fills: an INSERT or UPDATE with bind markers.
    pub insert_query: String,
    /// Where completed checkpoints (and the fencing epochs) are kept.
    pub committer: CommitterConfig,
    /// Where the records come from.
    pub source: SourceConfig,
    /// How a record fills the statement's bind markers.
    #[serde(default)]
    pub mapping: Mapping,
    /// Records that delete a row instead of writing one, and the DELETE statement they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteConfig>,
    /// What a tombstone (a record with no value) does. Default: `delete` when `delete` is set,
    /// otherwise `invalid` (the record has no value to write, so it is an invalid record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_tombstone: Option<OnTombstone>,
    /// More statements a record runs beside `insertQuery` (or `delete.query`): a row of another table
    /// from the same record (a table by user beside the table by id), each with its own mapping. Every
    /// statement of a checkpoint lands before it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fan_out: Vec<FanOutStatement>,
    /// Records with a value that run no statement: those matching any of these rules (e.g. Debezium's
    /// `value.op` equal to `t` or `m`, or a schema-change record, which has `value.ddl`). Their offsets
    /// commit with their checkpoint; without a rule such a record is whatever the other rules make
    /// it (usually invalid: dead-lettered with the reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_when: Vec<FieldMatch>,
    /// Statements for the records of some topics, in place of the ones above (`insertQuery`,
    /// `mapping`, `delete`, `onTombstone`, `fanOut`, `ignoreWhen`), by topic name. Records of the
    /// other topics run the ones above. Each topic named here must be one the sink reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topic_statements: BTreeMap<String, TopicStatements>,
    /// When a checkpoint is sealed and committed.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// `exactly-once` (the default) or `at-least-once`.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// What happens to a record that does not fit the statement.
    #[serde(default)]
    pub on_invalid_record: OnInvalidRecord,
    /// Where invalid records go under `onInvalidRecord: dead-letter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Bounds on requests in flight and record sizes.
    #[serde(default)]
    pub limits: Limits,
    /// What becomes of an INSERT whose row a later record of the same checkpoint replaces entirely.
    /// Left out of the rendered file when it is the default, so that a worker of a release before this
    /// setting still reads what an operator of this one renders.
    #[serde(default, skip_serializing_if = "SupersededWrites::is_default")]
    pub superseded_writes: SupersededWrites,
    /// Run `createQuery` and create the committer and dead-letter tables on start (default). The
    /// operator renders `false`: it runs that DDL itself, once per change of the spec.
    #[serde(default = "default_true")]
    pub manage_schema: bool,
}

/// The statements of one topic, in place of the sink's own: the same fields, with the same meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicStatements {
    /// The statement each record of the topic fills: an INSERT or UPDATE with bind markers.
    pub insert_query: String,
    /// How a record fills its bind markers.
    #[serde(default)]
    pub mapping: Mapping,
    /// Records that delete a row instead of writing one, and the DELETE statement they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteConfig>,
    /// What a tombstone does (as the sink's `onTombstone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_tombstone: Option<OnTombstone>,
    /// More statements a record runs (as the sink's `fanOut`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fan_out: Vec<FanOutStatement>,
    /// Records that run nothing (as the sink's `ignoreWhen`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_when: Vec<FieldMatch>,
}

/// One set of statements, borrowed: the sink's own or a topic's. Everything that checks, prepares
/// or runs statements takes one of these, so a topic's statements are treated exactly like the
/// sink's.
#[derive(Debug, Clone, Copy)]
pub struct Statements<'a> {
    /// The topic whose records run them; `None` for the sink's own (every other topic).
    pub topic: Option<&'a str>,
    /// `insertQuery`.
    pub insert_query: &'a str,
    /// `mapping`.
    pub mapping: &'a Mapping,
    /// `delete`.
    pub delete: Option<&'a DeleteConfig>,
    /// `onTombstone`.
    pub on_tombstone: Option<OnTombstone>,
    /// `fanOut`.
    pub fan_out: &'a [FanOutStatement],
    /// `ignoreWhen`.
    pub ignore_when: &'a [FieldMatch],
}

impl<'a> Statements<'a> {
    /// These (the sink's own) first, then each of `topic_statements`, by topic name: every set a sink
    /// has, in the order the worker keeps them.
    pub fn with_topics(self, topic_statements: &'a BTreeMap<String, TopicStatements>) -> Vec<Self> {
        std::iter::once(self)
            .chain(
                topic_statements
                    .iter()
                    .map(|(topic, statements)| statements.statements(topic)),
            )
            .collect()
    }

    /// Where these statements are in the configuration, as a prefix of their field names:
    /// empty for the sink's own, `topicStatements.<topic>.` for a topic's.
    pub fn place(&self) -> String {
        self.topic
            .map(|topic| format!("topicStatements.{topic}."))
            .unwrap_or_default()
    }
}

impl TopicStatements {
    /// These statements, borrowed, for `topic`.
    pub fn statements<'a>(&'a self, topic: &'a str) -> Statements<'a> {
        Statements {
            topic: Some(topic),
            insert_query: &self.insert_query,
            mapping: &self.mapping,
            delete: self.delete.as_ref(),
            on_tombstone: self.on_tombstone,
            fan_out: &self.fan_out,
            ignore_when: &self.ignore_when,
        }
    }
}

/// A Cassandra cluster to connect to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CassandraConfig {
    /// `host:port` (or `host`, port 9042) of one or more nodes; the driver discovers the rest.
    pub contact_points: Vec<String>,
    /// The datacenter whose nodes coordinate requests (LOCAL_* consistency levels are relative to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_datacenter: Option<String>,
    /// Username and password for PasswordAuthenticator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// TLS for the native protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Consistency level of data writes. Never ANY: a write held as a hint is not durable.
    #[serde(default)]
    pub consistency: Consistency,
    /// How long one request may take before it counts as failed and is retried.
    #[serde(default = "CassandraConfig::default_request_timeout")]
    pub request_timeout: HumanDuration,
}

impl CassandraConfig {
    const fn default_request_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(12))
    }
}

/// Username and password, each read from a file or an environment variable when connecting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// Where the username is.
    pub username: SecretSource,
    /// Where the password is.
    pub password: SecretSource,
}

/// Where a secret value is read from. The value itself never appears in configuration or logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SecretSource {
    /// A file whose content (trailing newline removed) is the value, e.g. a mounted Secret key.
    File(PathBuf),
    /// An environment variable that holds the value.
    Env(String),
}

/// TLS settings: PEM files, typically mounted from a Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle that signs the server certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client private key, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Check that the server certificate names the host connected to.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

/// Cassandra consistency levels a sink may use. ANY is left out on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of all replicas.
    Quorum,
    /// A majority of replicas in the local datacenter.
    #[default]
    LocalQuorum,
    /// A majority in each datacenter.
    EachQuorum,
    /// One replica in the local datacenter.
    LocalOne,
    /// All replicas.
    All,
}

/// The committer table and, optionally, the cluster it lives on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommitterConfig {
    /// Keyspace of the committer table (it must exist).
    pub keyspace: String,
    /// Name of the committer table; created if absent.
    pub table: String,
    /// A separate cluster for the committer; the data cluster when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<CassandraConfig>,
    /// Where the committer's transactions and reads (Paxos) run: `LOCAL_SERIAL` (the default) among
    /// the committer row's replicas in the local datacenter, `SERIAL` among all of them. With workers
    /// of one sink in more than one datacenter, `SERIAL` is what fences a worker of one datacenter
    /// against a worker of another.
    #[serde(default, skip_serializing_if = "SerialConsistency::is_default")]
    pub serial_consistency: SerialConsistency,
}

/// Where the committer's transactions and serial reads run: `LOCAL_SERIAL` (default) among the
/// committer row's replicas in the local datacenter, `SERIAL` among all of them (needed when one
/// sink's workers run in more than one datacenter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SerialConsistency {
    /// A Paxos quorum of the replicas in the local datacenter.
    #[default]
    LocalSerial,
    /// A Paxos quorum of all replicas, every datacenter's.
    Serial,
}

impl SerialConsistency {
    fn is_default(&self) -> bool {
        *self == SerialConsistency::default()
    }
}

impl std::fmt::Display for SerialConsistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SerialConsistency::LocalSerial => "LOCAL_SERIAL",
            SerialConsistency::Serial => "SERIAL",
        })
    }
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Consistency::One => "ONE",
            Consistency::Two => "TWO",
            Consistency::Three => "THREE",
            Consistency::Quorum => "QUORUM",
            Consistency::LocalQuorum => "LOCAL_QUORUM",
            Consistency::EachQuorum => "EACH_QUORUM",
            Consistency::LocalOne => "LOCAL_ONE",
            Consistency::All => "ALL",
        })
    }
}

/// The source of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConfig {
    /// A Kafka topic.
    pub kafka: KafkaSource,
}

/// A Kafka topic read through a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSource {
    /// `host:port` of one or more brokers.
    pub bootstrap_servers: Vec<String>,
    /// The topic to read. Set one of `topic`, `topics` and `topicPattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Several topics to read; positions are kept per topic and partition, so topics may have
    /// different partition counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// A regular expression: every topic whose whole name matches is read, including topics created
    /// later (found within `topic.metadata.refresh.interval.ms`, 5 minutes by default; a new topic
    /// is read from its beginning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_pattern: Option<String>,
    /// Consumer group that spreads partitions over workers; derived from the sink id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// TLS and SASL towards the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<KafkaSecurity>,
    /// Further librdkafka consumer properties, passed through as given (for example `fetch.max.bytes`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// How record values are encoded: `json` (the default) or `avro` (the Confluent wire format,
    /// schemas from `schemaRegistry`).
    #[serde(default, skip_serializing_if = "RecordFormat::is_json")]
    pub value_format: RecordFormat,
    /// How record keys are encoded, as `valueFormat`.
    #[serde(default, skip_serializing_if = "RecordFormat::is_json")]
    pub key_format: RecordFormat,
    /// The schema registry that resolves the schema ids of Avro records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistry>,
}

/// Consumer properties the sink sets itself and a user may not override.
pub const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "bootstrap.servers",
    "enable.partition.eof",
];

/// Kafka security: the protocol, and SASL credentials or TLS files where it needs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub protocol: KafkaProtocol,
    /// SASL mechanism and credentials, for the SASL protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
    /// TLS files, for the SSL protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// Kafka `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KafkaProtocol {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl KafkaProtocol {
    /// librdkafka's `security.protocol` value.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            KafkaProtocol::Plaintext => "plaintext",
            KafkaProtocol::Ssl => "ssl",
            KafkaProtocol::SaslPlaintext => "sasl_plaintext",
            KafkaProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// SASL mechanism and credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// Where the username is.
    pub username: SecretSource,
    /// Where the password is.
    pub password: SecretSource,
}

/// SASL mechanisms supported without a Kerberos library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    /// Username and password in the clear (use with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's `sasl.mechanism` value.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How a record fills the statement's bind markers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Mapping {
    /// The record value is a JSON array whose elements fill the markers in order (the seed's `Tuple2`).
    JsonArray {},
    /// One field path per marker, in marker order. A path is `value` or `value.<field>.<field>…` into a
    /// JSON object value, `key`, `key.<field>…`, `headers.<name>`, `timestamp`, `partition` or `offset`.
    Fields(Vec<String>),
    /// Named markers (`:name`) each filled from a field path.
    Named(BTreeMap<String, String>),
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping::JsonArray {}
    }
}

/// Deletes: the statement a deleting record runs, and which records delete besides tombstones.
///
/// A delete carries the write timestamp derived from its record's offset, like a write, so a replay
/// or a zombie can neither bring a deleted row back nor delete a row written after the delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteConfig {
    /// A DELETE statement with bind markers, e.g. `DELETE FROM shop.users WHERE id = ?`.
    pub query: String,
    /// How a deleting record fills the DELETE's markers, usually from the key (`key.id`) or, for a
    /// change-data-capture record, from the row before the change (`value.before.id`). Every marker
    /// needs a value: a record without one is invalid.
    pub mapping: Mapping,
    /// Records with a value that delete too: those whose field at `field` equals one of `equals`
    /// (e.g. Debezium's `value.op` equal to `d`). Tombstones are governed by `onTombstone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FieldMatch>,
}

/// A statement run beside `insertQuery` or `delete.query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FanOutStatement {
    /// An INSERT, UPDATE or DELETE with bind markers.
    pub query: String,
    /// How a record fills its markers (a DELETE's markers all need a value).
    pub mapping: Mapping,
    /// `write` (default): run by records that run `insertQuery`; `delete`: by records that delete.
    #[serde(default)]
    pub on: RunOn,
    /// Only records whose field matches run it (e.g. `value.type` equal to `order`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FieldMatch>,
}

/// Which records run a fan-out statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunOn {
    /// Records that write (run `insertQuery`).
    #[default]
    Write,
    /// Records that delete (run `delete.query`).
    Delete,
}

/// A rule on one field of a record: it matches when the field reads as one of `equals`, or, without
/// `equals`, when the record has the field at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldMatch {
    /// A field path as in `mapping`: `value.op`, `key.kind`, `headers.<name>`.
    pub field: String,
    /// The values that match, compared with the field's text (a JSON string without its quotes, a
    /// number or boolean as written). Empty or absent: any value matches. A record whose field is
    /// missing or `null` never matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equals: Vec<String>,
}

/// What a tombstone (a record with no value) does. Default: `delete` when `delete` is set, otherwise
/// `invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnTombstone {
    /// Run the `delete` statement, filled from the key (needs `delete`).
    Delete,
    /// Skip it: its offset is committed, nothing is written (e.g. the tombstone Debezium sends after a
    /// delete, once the delete record itself removed the row).
    Ignore,
    /// Treat it as an invalid record (`onInvalidRecord` decides: dead-letter or fail).
    Invalid,
}

/// When a checkpoint is sealed: whichever of the limits is reached first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Longest time records wait in the buffer, e.g. `1s`, `500ms`.
    #[serde(default = "CheckpointConfig::default_interval")]
    pub interval: HumanDuration,
    /// Most records in one checkpoint (over all partitions of the worker).
    #[serde(default = "CheckpointConfig::default_max_records")]
    pub max_records: u32,
    /// Most bytes of record values in one checkpoint.
    #[serde(default = "CheckpointConfig::default_max_bytes")]
    pub max_bytes: u64,
}

impl CheckpointConfig {
    const fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    const fn default_max_records() -> u32 {
        10_000
    }
    const fn default_max_bytes() -> u64 {
        64 * 1024 * 1024
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: Self::default_interval(),
            max_records: Self::default_max_records(),
            max_bytes: Self::default_max_bytes(),
        }
    }
}

/// The delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Each record has exactly one effect, in offset order per partition, whatever crashes or replays.
    /// Statements that Cassandra cannot apply idempotently are refused.
    #[default]
    ExactlyOnce,
    /// Each record has at least one effect; replays after a crash may apply a record again. Any statement.
    AtLeastOnce,
}

/// What becomes of an INSERT whose row a later INSERT of the same statement, in the same checkpoint,
/// replaces entirely (every column it sets, set again with a later timestamp); see
/// the worker's `supersede` module for the conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SupersededWrites {
    /// Leave it out: Cassandra gets the row's last write of the checkpoint only, and the table ends
    /// the same as if every write had landed.
    #[default]
    Skip,
    /// Send it: every record is a write, for tables whose every write someone reads (a trigger,
    /// Cassandra's CDC log).
    Write,
}

impl SupersededWrites {
    fn is_default(&self) -> bool {
        *self == SupersededWrites::default()
    }
}

/// What happens to a record that does not fit the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnInvalidRecord {
    /// Write it, with its source coordinates and the reason, to the dead-letter destination; go on.
    #[default]
    DeadLetter,
    /// Stop the sink with the reason.
    Fail,
}

/// Where invalid records go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum DeadLetterConfig {
    /// A Cassandra table (created if absent) in the committer's keyspace unless `keyspace` is given.
    Table {
        /// Keyspace; the committer's when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keyspace: Option<String>,
        /// Table name.
        table: String,
    },
    /// A Kafka topic on the source cluster.
    Topic(String),
}

/// Bounds that keep the worker and the cluster healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Most write requests in flight to one Cassandra node.
    #[serde(default = "Limits::default_in_flight_per_node")]
    pub max_in_flight_per_node: u32,
    /// Most rows in one unlogged batch. Only rows of one Cassandra partition (same partition key,
    /// different clustering key) from one Kafka partition share a batch; 1 turns batching off.
    #[serde(default = "Limits::default_max_batch_rows")]
    pub max_batch_rows: u32,
    /// Most bytes of record values in one batch (Cassandra warns about batches over 5 KiB).
    #[serde(default = "Limits::default_max_batch_bytes")]
    pub max_batch_bytes: u32,
    /// Largest record value accepted; a larger one is an invalid record.
    #[serde(default = "Limits::default_max_record_bytes")]
    pub max_record_bytes: u32,
    /// A field that is missing or JSON `null` leaves its column unset instead of writing a tombstone.
    #[serde(default = "default_true")]
    pub null_means_unset: bool,
}

impl Limits {
    const fn default_in_flight_per_node() -> u32 {
        256
    }
    const fn default_max_record_bytes() -> u32 {
        1024 * 1024
    }
    const fn default_max_batch_rows() -> u32 {
        16
    }
    const fn default_max_batch_bytes() -> u32 {
        4096
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight_per_node: Self::default_in_flight_per_node(),
            max_batch_rows: Self::default_max_batch_rows(),
            max_batch_bytes: Self::default_max_batch_bytes(),
            max_record_bytes: Self::default_max_record_bytes(),
            null_means_unset: true,
        }
    }
}

const fn default_true() -> bool {
    true
}

/// A duration written the way people write them: `1s`, `250ms`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|error| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?} ({error}); write e.g. 1s, 500ms, 2m"
                ))
            })
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as 1s, 500ms, 2m or 1h 30m.",
            "pattern": "^([0-9]+ ?(ns|us|ms|s|m|h|d) ?)+$"
        })
    }
}

/// Errors from reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the schema (the message names the key and position).
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
}

impl SinkConfig {
    /// The sink's own statements, run by the records of every topic without `topicStatements`.
    pub fn statements(&self) -> Statements<'_> {
        Statements {
            topic: None,
            insert_query: &self.insert_query,
            mapping: &self.mapping,
            delete: self.delete.as_ref(),
            on_tombstone: self.on_tombstone,
            fan_out: &self.fan_out,
            ignore_when: &self.ignore_when,
        }
    }

    /// Every set of statements: the sink's own first, then each topic's, by topic name.
    pub fn statement_sets(&self) -> Vec<Statements<'_>> {
        self.statements().with_topics(&self.topic_statements)
    }

    /// Parses YAML (JSON is YAML too). `origin` names the source in error messages.
    pub fn from_yaml(text: &str, origin: &std::path::Path) -> Result<Self, ConfigError> {
        serde_saphyr::from_str(text).map_err(|error| ConfigError::Parse {
            path: origin.to_owned(),
            message: error.to_string(),
        })
    }

    /// Reads and parses a YAML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::from_file_with_overrides(path, std::iter::empty())
    }

    /// Reads a YAML file, then applies overrides from environment variables named
    /// `CASSANDRA_SINK__<KEY>__<KEY>…` (see [`apply_overrides`]). Only variables with that prefix are
    /// looked at; pass `std::env::vars()`.
    pub fn from_file_with_overrides(
        path: &std::path::Path,
        environment: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let overrides: Vec<(String, String)> = environment
            .filter(|(name, _)| name.starts_with(OVERRIDE_PREFIX))
            .collect();
        if overrides.is_empty() {
            // Straight from YAML, so errors carry line and column.
            return Self::from_yaml(&text, path);
        }
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let mut tree: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|error| parse_error(error.to_string()))?;
        apply_overrides(&mut tree, &overrides).map_err(parse_error)?;
        serde_json::from_value(tree).map_err(|error| {
            parse_error(format!(
                "{error} (after applying {OVERRIDE_PREFIX}… overrides)"
            ))
        })
    }

    /// The consumer group: the configured one, or one derived from the sink id.
    pub fn group_id(&self) -> String {
        self.source
            .kafka
            .group_id
            .clone()
            .unwrap_or_else(|| default_group_id(&self.sink_id))
    }
}

/// The consumer group of a sink that names none: derived from its sink id.
pub fn default_group_id(sink_id: &str) -> String {
    format!("cassandra-sink.{}", sink_id.replace('/', "."))
}

/// Prefix of environment variables that override configuration keys.
pub const OVERRIDE_PREFIX: &str = "CASSANDRA_SINK__";

/// Applies `CASSANDRA_SINK__CHECKPOINT__INTERVAL=500ms`-style overrides to a configuration tree.
/// Each `__`-separated segment names a key, matched without regard to case or `_`
/// (`CONTACT_POINTS` matches `contactPoints`); a segment with no matching key becomes a new camelCase
/// key, which strict parsing then refuses if it is unknown. The value is read as YAML, so
/// `["a:9042","b:9042"]`, `500ms` and `true` all work.
pub fn apply_overrides(
    tree: &mut serde_json::Value,
    overrides: &[(String, String)],
) -> Result<(), String> {
    for (name, raw) in overrides {
        let Some(path) = name.strip_prefix(OVERRIDE_PREFIX) else {
            continue;
        };
        let segments: Vec<&str> = path.split("__").collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(format!("environment variable {name}: empty key segment"));
        }
        let value: serde_json::Value = serde_saphyr::from_str(raw)
            .map_err(|error| format!("environment variable {name}: {error}"))?;
        let mut node = &mut *tree;
        for (index, segment) in segments.iter().enumerate() {
            let serde_json::Value::Object(map) = node else {
                return Err(format!(
                    "environment variable {name}: `{}` is not a section",
                    segments[..index].join("__")
                ));
            };
            let wanted: String = segment
                .chars()
                .filter(|c| *c != '_')
                .collect::<String>()
                .to_lowercase();
            let key = map
                .keys()
                .find(|key| key.to_lowercase() == wanted)
                .cloned()
                .unwrap_or_else(|| camel_case(segment));
            if index + 1 == segments.len() {
                map.insert(key, value.clone());
                break;
            }
            node = map
                .entry(key)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
    }
    Ok(())
}

fn camel_case(segment: &str) -> String {
    let mut out = String::new();
    for (index, word) in segment.split('_').filter(|w| !w.is_empty()).enumerate() {
        let lower = word.to_lowercase();
        if index == 0 {
            out.push_str(&lower);
        } else {
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_reach_nested_keys_and_stay_strict() {
        let dir = std::env::temp_dir().join(format!("sink-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("sink.yaml");
        std::fs::write(&path, SEED).expect("write");
        let env = vec![
            (
                "CASSANDRA_SINK__CASSANDRA__CONTACT_POINTS".to_owned(),
                "[\"10.0.0.9:9042\"]".to_owned(),
            ),
            (
                "CASSANDRA_SINK__CHECKPOINT__INTERVAL".to_owned(),
                "250ms".to_owned(),
            ),
            (
                "CASSANDRA_SINK__GUARANTEE".to_owned(),
                "at-least-once".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let config = SinkConfig::from_file_with_overrides(&path, env.into_iter()).expect("parses");
        assert_eq!(
            config.cassandra.contact_points,
            vec!["10.0.0.9:9042".to_owned()]
        );
        assert_eq!(config.checkpoint.interval.0, Duration::from_millis(250));
        assert_eq!(config.guarantee, Guarantee::AtLeastOnce);
        let unknown = vec![(
            "CASSANDRA_SINK__CASSANDRA__PORTNUMBER".to_owned(),
            "1".to_owned(),
        )];
        let error = SinkConfig::from_file_with_overrides(&path, unknown.into_iter())
            .expect_err("unknown key refused");
        assert!(error.to_string().contains("portnumber"), "{error}");
        std::fs::remove_dir_all(dir).ok();
    }

    const SEED: &str = r#"
sinkId: analytics/values
cassandra:
  contactPoints: ["127.0.0.1:9042"]
  localDatacenter: datacenter1
createQuery: "CREATE TABLE example.values (id text PRIMARY KEY, counter int);"
insertQuery: "INSERT INTO example.values (id, counter) VALUES (?, ?);"
committer: { keyspace: example, table: checkpoints }
source:
  kafka: { bootstrapServers: ["127.0.0.1:9092"], topic: values }
"#;

    fn parse(text: &str) -> Result<SinkConfig, ConfigError> {
        SinkConfig::from_yaml(text, std::path::Path::new("sink.yaml"))
    }

    #[test]
    fn the_seed_example_parses_with_safe_defaults() {
        let config = parse(SEED).expect("seed config parses");
        assert_eq!(config.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(config.on_invalid_record, OnInvalidRecord::DeadLetter);
        assert_eq!(config.cassandra.consistency, Consistency::LocalQuorum);
        assert_eq!(config.mapping, Mapping::JsonArray {});
        assert_eq!(config.checkpoint.interval.0, Duration::from_secs(1));
        assert_eq!(config.checkpoint.max_records, 10_000);
        assert!(config.limits.null_means_unset);
        assert_eq!(config.group_id(), "cassandra-sink.analytics.values");
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let text = SEED.replace("localDatacenter", "localDataCentre");
        let error = parse(&text).expect_err("misspelt key must be refused");
        let message = error.to_string();
        assert!(message.contains("localDataCentre"), "{message}");
        assert!(message.contains("sink.yaml"), "{message}");
    }

    #[test]
    fn consistency_any_is_not_accepted() {
        let text = SEED.replace(
            "localDatacenter: datacenter1",
            "localDatacenter: datacenter1\n  consistency: ANY",
        );
        let message = parse(&text).expect_err("ANY refused").to_string();
        assert!(message.contains("ANY"), "{message}");
    }

    #[test]
    fn durations_are_written_as_people_write_them() {
        let text = format!("{SEED}checkpoint: {{ interval: 250ms, maxRecords: 10 }}\n");
        let config = parse(&text).expect("parses");
        assert_eq!(config.checkpoint.interval.0, Duration::from_millis(250));
        assert_eq!(config.checkpoint.max_records, 10);
        let bad = format!("{SEED}checkpoint: {{ interval: soon }}\n");
        let message = parse(&bad).expect_err("bad duration").to_string();
        assert!(message.contains("soon"), "{message}");
    }

    #[test]
    fn mappings_and_secrets_round_trip_through_yaml() {
        let text = format!(
            "{SEED}mapping:\n  named: {{ id: value.id, counter: value.counter }}\n\
             deadLetter: {{ table: {{ table: rejects }} }}\n"
        )
        .replace(
            "localDatacenter: datacenter1",
            "localDatacenter: datacenter1\n  credentials:\n    username: { env: CASSANDRA_USER }\n    password: { file: /secrets/password }",
        );
        let config = parse(&text).expect("parses");
        let rendered = serde_saphyr::to_string(&config).expect("serialises");
        let again = parse(&rendered).expect("rendered config parses again");
        assert_eq!(config, again);
        assert!(matches!(config.mapping, Mapping::Named(ref fields) if fields["id"] == "value.id"));
    }
}
