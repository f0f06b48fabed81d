//! The `CassandraSink` custom resource: what a user declares. Doc comments here become the text of
//! `kubectl explain cassandrasinks.spec…`, so they are written for users.
//!
//! The parts a worker reads verbatim (mapping, checkpoint, guarantee, limits…) are the worker's own
//! configuration types, shared through `cassandra_sink_worker::config`, so the operator renders exactly
//! what the worker parses. The parts that differ in Kubernetes are credentials and TLS, which here name
//! Secrets instead of files: the operator mounts them and points the worker at the mounted files.

use cassandra_sink_worker::config::{
    CheckpointConfig, Consistency, DeadLetterConfig, DeleteConfig, FanOutStatement, FieldMatch,
    Guarantee, KafkaProtocol, Limits, Mapping, OnInvalidRecord, OnTombstone, ReaderSchema,
    RecordFormat, SaslMechanism, SerialConsistency, Statements, SupersededWrites, TopicStatements,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the CassandraSink resource.
pub const GROUP: &str = "cassandra-sink.io";

/// A stream from Kafka written into Apache Cassandra exactly once.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "cassandra-sink.io",
    version = "v1alpha1",
    kind = "CassandraSink",
    plural = "cassandrasinks",
    shortname = "csink",
    namespaced,
    status = "CassandraSinkStatus",
    scale(
        spec_replicas_path = ".spec.parallelism",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","jsonPath":".spec.parallelism"}"#,
    printcolumn = r#"{"name":"Committed","type":"integer","description":"Records written by committed checkpoints","jsonPath":".status.progress.recordsCommitted"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.progress.lag"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.onTombstone) || self.onTombstone != 'delete' || has(self.delete)").message("onTombstone: delete needs a delete statement (spec.delete)"))]
pub struct CassandraSinkSpec {
    /// The Cassandra cluster that receives the data (the seed's "host address").
    pub cassandra: CassandraConnection,
    /// A CREATE TABLE (or CREATE TYPE / KEYSPACE) statement run once per change of the spec before the
    /// workers write; "already exists" is not an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.matches('(?i)^\\s*create\\s')").message("createQuery must be a CREATE statement"))]
    pub create_query: Option<String>,
    /// The statement each record fills: an INSERT or UPDATE with bind markers (`?` or `:name`).
    #[x_kube(validation = Rule::new(r"self.matches('(?i)^\\s*(insert|update|delete)\\s')").message("insertQuery must be an INSERT, UPDATE or DELETE statement"))]
    pub insert_query: String,
    /// The table that keeps completed checkpoints and fencing epochs, one row per source partition.
    pub committer: Committer,
    /// Where records come from.
    pub source: Source,
    /// How each record fills the bind markers. Default: the record value is a JSON array whose elements
    /// fill the markers in order.
    #[serde(default)]
    pub mapping: Mapping,
    /// Records that delete a row instead of writing one: a DELETE statement (`query`), how a record
    /// fills its markers (`mapping`, e.g. from `key.id`), and optionally `when`, a field whose value
    /// marks a record with a value as a delete (e.g. Debezium's `value.op` equal to `d`). A delete
    /// carries its record's offset-derived write timestamp: a replay or a zombie can neither bring a
    /// deleted row back nor delete a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.query.matches('(?i)^\\s*delete\\s')").message("delete.query must be a DELETE statement"))]
    pub delete: Option<DeleteConfig>,
    /// What a tombstone (a record with no value) does: `delete` (runs `delete`; the default when
    /// `delete` is set), `ignore` (commits its offset, changes nothing), or `invalid` (the default
    /// without `delete`: `onInvalidRecord` decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_tombstone: Option<OnTombstone>,
    /// More statements a record runs beside `insertQuery` (`on: write`, the default) or beside
    /// `delete.query` (`on: delete`), each with its own `mapping`, and optionally only for records
    /// whose field matches (`when`): a row by user beside the row by id, the same record in two
    /// tables. Each is checked like `insertQuery` (a problem is a condition on the sink, naming
    /// `fanOut[n]`), and every statement of a checkpoint lands before it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fan_out: Vec<FanOutStatement>,
    /// Records with a value that run no statement: those matching any of these rules, e.g.
    /// `{field: value.op, equals: [t, m]}` for Debezium's truncates and messages, or `{field:
    /// value.ddl}` (no `equals`: any value) for schema-change records. Their offsets commit with their
    /// checkpoint, and they are counted as skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_when: Vec<FieldMatch>,
    /// Statements for the records of some topics (by name), in place of `insertQuery`, `mapping`,
    /// `delete`, `onTombstone`, `fanOut` and `ignoreWhen` above: each entry has those fields, checked
    /// and prepared like the sink's own. Records of other topics run the sink's own. Each topic named
    /// must be one the sink reads.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub topic_statements: std::collections::BTreeMap<String, TopicStatements>,
    /// When a checkpoint is sealed and committed.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Number of workers. One Kafka partition is the unit of parallelism: workers beyond the number of
    /// partitions stand by.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1))]
    pub parallelism: i32,
    /// `exactly-once` (default) refuses statements Cassandra cannot apply idempotently;
    /// `at-least-once` accepts any statement and may apply a record twice after a crash.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// `dead-letter` (default) sets invalid records aside with the reason and goes on; `fail` stops
    /// the sink with the reason in its status.
    #[serde(default)]
    pub on_invalid_record: OnInvalidRecord,
    /// Where invalid records go: a Cassandra table or a Kafka topic. Default: a table
    /// `<committer table>_dead_letter` in the committer keyspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Bounds on requests in flight and record sizes.
    #[serde(default)]
    pub limits: Limits,
    /// `skip` (default) leaves out an INSERT whose row a later record of the same checkpoint replaces
    /// entirely: Cassandra gets one write per row and checkpoint, and the table ends the same.
    /// `write` sends every record's write, for tables whose every write someone reads (a trigger,
    /// Cassandra's CDC log).
    #[serde(default)]
    pub superseded_writes: SupersededWrites,
    /// `running` (default); `paused` or `stopped` scale the workers to zero after they commit what
    /// they buffered, keeping every committed position. A stopped sink's positions are listed in
    /// `status.progress.partitions` and reset with the annotation `cassandra-sink.io/reset-positions`.
    #[serde(default)]
    pub state: SinkState,
    /// What happens to the sink's committer rows when the CassandraSink is deleted: `Retain` (default,
    /// as the seed's committer: positions survive a re-creation) or `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// CPU and memory of each worker container. Unset parts default to requests of 250m CPU and
    /// 128Mi, and a memory limit of 256Mi, or 64Mi plus twice `checkpoint.maxBytes` when that is more
    /// (a worker holds one checkpoint being written and the next one read ahead). A memory limit too
    /// small for that is refused with the reason `InsufficientMemory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// What deleting a CassandraSink does to its committer rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep them: a sink created again with the same namespace and name resumes where it stopped.
    #[default]
    Retain,
    /// Delete them (the data table and dead letters are kept).
    Delete,
}

/// Whether the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkState {
    /// Workers run.
    #[default]
    Running,
    /// Workers scaled to zero for a while.
    Paused,
    /// Workers scaled to zero until further notice.
    Stopped,
}

/// Annotation on a CassandraSink whose change restarts its workers (any value, e.g. a time).
pub const RESTART_ANNOTATION: &str = "cassandra-sink.io/restart";

const fn default_parallelism() -> i32 {
    1
}

/// How to reach a Cassandra cluster from inside Kubernetes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CassandraConnection {
    /// `host:port` (or `host`, port 9042) of one or more nodes, e.g. `cassandra.db.svc:9042`.
    #[schemars(length(min = 1))]
    pub contact_points: Vec<String>,
    /// The datacenter whose nodes coordinate requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_datacenter: Option<String>,
    /// Name of a Secret in the sink's namespace with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// TLS towards Cassandra, with certificates from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SecretTls>,
    /// Consistency level of data writes (default LOCAL_QUORUM; ANY is not allowed).
    #[serde(default)]
    pub consistency: Consistency,
}

/// TLS files taken from a Secret: `ca.crt`, and `tls.crt` / `tls.key` for mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTls {
    /// Name of the Secret in the sink's namespace.
    pub secret_name: String,
    /// Check that the server certificate names the host connected to.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

const fn default_true() -> bool {
    true
}

/// The committer table (the seed's CassandraCommitter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Committer {
    /// Keyspace of the committer table; it must exist.
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_]{0,47}$"))]
    pub keyspace: String,
    /// Committer table name; created if absent.
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_]{0,47}$"))]
    pub table: String,
    /// A separate cluster for the committer; the data cluster when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<CassandraConnection>,
    /// Where the committer's transactions and serial reads run: `LOCAL_SERIAL` (default) among the
    /// committer row's replicas in the local datacenter, `SERIAL` among all of them (needed when one
    /// sink's workers run in more than one datacenter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_consistency: Option<SerialConsistency>,
}

impl CassandraSinkSpec {
    /// Every set of statements: the sink's own first, then each of `topicStatements`, by topic.
    pub fn statement_sets(&self) -> Vec<Statements<'_>> {
        Statements {
            topic: None,
            insert_query: &self.insert_query,
            mapping: &self.mapping,
            delete: self.delete.as_ref(),
            on_tombstone: self.on_tombstone,
            fan_out: &self.fan_out,
            ignore_when: &self.ignore_when,
        }
        .with_topics(&self.topic_statements)
    }
}

/// The source of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// A Kafka topic.
    pub kafka: KafkaSourceSpec,
}

/// Kafka topics, read through a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.topic) ? 1 : 0) + (has(self.topics) ? 1 : 0) + (has(self.topicPattern) ? 1 : 0) == 1").message("set exactly one of topic, topics and topicPattern"))]
pub struct KafkaSourceSpec {
    /// `host:port` of one or more brokers.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: Vec<String>,
    /// The topic to read. Set one of `topic`, `topics` and `topicPattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub topic: Option<String>,
    /// Several topics to read, with the same statements; positions are kept per topic and
    /// partition, so the topics may have different partition counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(min = 1, max = 100),
        inner(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))
    )]
    pub topics: Vec<String>,
    /// A regular expression: every topic whose whole name matches is read, including topics created
    /// later (found within librdkafka's `topic.metadata.refresh.interval.ms`, 5 minutes by default;
    /// a new topic is read from its beginning). A pattern that matches the dead-letter topic is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub topic_pattern: Option<String>,
    /// Consumer group; `cassandra-sink.<namespace>.<name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// `security.protocol` towards the brokers (default PLAINTEXT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<KafkaProtocol>,
    /// SASL mechanism and a Secret with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSaslSecret>,
    /// TLS towards the brokers, with certificates from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SecretTls>,
    /// Further librdkafka consumer properties, passed through as given.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub properties: std::collections::BTreeMap<String, String>,
    /// How record values are encoded: `json` (the default; `value` alone in a mapping is the raw
    /// bytes) or `avro` (the Confluent wire format, schemas from `schemaRegistry`).
    #[serde(default, skip_serializing_if = "RecordFormat::is_json")]
    pub value_format: RecordFormat,
    /// How record keys are encoded, as `valueFormat`.
    #[serde(default, skip_serializing_if = "RecordFormat::is_json")]
    pub key_format: RecordFormat,
    /// The schema registry that resolves the schema ids of Avro records (the Confluent API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySpec>,
}

/// A schema registry with the Confluent API, reached from inside Kubernetes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRegistrySpec {
    /// Base URL of the API, e.g. `http://registry.kafka.svc:8080/apis/ccompat/v7` (Apicurio) or
    /// `https://schema-registry.kafka.svc:8081` (Confluent).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Name of a Secret in the sink's namespace with keys `username` and `password`, sent with HTTP
    /// basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// TLS towards an `https://` registry, with certificates from a Secret (`ca.crt`; `tls.crt` and
    /// `tls.key` for mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SecretTls>,
    /// `writer` (the default): a record is read with the schema it was written with. `latest`: into
    /// the newest version of its subject, so records written before a field was added read the
    /// field's default.
    #[serde(default)]
    pub reader_schema: ReaderSchema,
}

/// SASL towards Kafka with credentials from a Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSaslSecret {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// Name of a Secret with keys `username` and `password`.
    pub secret_name: String,
}

/// What the operator observed, written only by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CassandraSinkStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, Progressing and Degraded, each with a reason and a message a
    /// person can act on. Ready: the sink is as its spec asks (running: every worker ready and
    /// committing; paused or stopped: no worker left). Reconciling and Stalled follow the kstatus
    /// conventions that Flux and `kubectl wait` read: Stalled=True means a person must change
    /// something.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// Workers that are running (the scale subresource reads it).
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the worker pods (the scale subresource reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// How far the sink has got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Digest of what the operator last checked against the sink's cluster: the DDL it ran
    /// (createQuery, the committer and dead-letter tables) and insertQuery with the mapping, prepared.
    /// It runs them again only when they change; the workers do not run the DDL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_schema: Option<String>,
    /// The outcome of the last `cassandra-sink.io/reset-positions` request; cleared when the
    /// annotation is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions_reset: Option<PositionsReset>,
}

/// What became of a request to reset the committed positions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PositionsReset {
    /// The annotation's value this outcome is for.
    pub request: String,
    /// `Waiting` (for the sink to be stopped and its workers gone), `Applied` or `Refused`.
    pub phase: String,
    /// What was done, or what to do.
    pub message: String,
    /// When the phase was reached (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Progress read from the committer table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Records written by committed checkpoints, over all partitions.
    pub records_committed: i64,
    /// Records in the topic not yet committed, over all partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// When the newest checkpoint was committed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_time: Option<String>,
    /// Each Kafka partition: committed position, end of the partition and lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionProgress>,
}

/// One Kafka partition's committed position and lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionProgress {
    /// Kafka topic.
    #[serde(default)]
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// The next offset the sink applies; absent before the first commit (it starts at the first
    /// offset Kafka holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_offset: Option<i64>,
    /// The partition's end (the offset of the next record Kafka will write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<i64>,
    /// Records not yet committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Fencing epoch of the last commit or reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// Fixtures for the operator's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The seed's example as a spec.
    pub fn seed_spec() -> CassandraSinkSpec {
        seed_sink().spec
    }

    /// The seed's example as an object the API server returned (namespace, name and uid set).
    pub fn seed_sink() -> CassandraSink {
        serde_saphyr::from_str(
            r#"
apiVersion: cassandra-sink.io/v1alpha1
kind: CassandraSink
metadata: { name: values, namespace: analytics, uid: 7d3c0a52-4c43-4b8e-9d5a-0c1d2e3f4a5b }
spec:
  cassandra: { contactPoints: ["cassandra.db.svc:9042"], localDatacenter: dc1 }
  createQuery: "CREATE TABLE example.values (id text PRIMARY KEY, counter int);"
  insertQuery: "INSERT INTO example.values (id, counter) VALUES (?, ?);"
  committer: { keyspace: example, table: checkpoints }
  source: { kafka: { bootstrapServers: ["kafka.streams.svc:9092"], topic: values } }
"#,
        )
        .expect("the seed example parses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_has_status_scale_and_a_short_name() {
        let crd = CassandraSink::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.names.short_names, Some(vec!["csink".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let subresources = version.subresources.as_ref().expect("subresources");
        assert!(subresources.status.is_some());
        let scale = subresources.scale.as_ref().expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.parallelism");
    }

    #[test]
    fn the_seed_example_deserialises_with_defaults() {
        let sink: CassandraSink = serde_saphyr::from_str(
            r#"
apiVersion: cassandra-sink.io/v1alpha1
kind: CassandraSink
metadata: { name: values, namespace: analytics }
spec:
  cassandra: { contactPoints: ["cassandra.db.svc:9042"], localDatacenter: dc1 }
  createQuery: "CREATE TABLE example.values (id text PRIMARY KEY, counter int);"
  insertQuery: "INSERT INTO example.values (id, counter) VALUES (?, ?);"
  committer: { keyspace: example, table: checkpoints }
  source: { kafka: { bootstrapServers: ["kafka:9092"], topic: values } }
"#,
        )
        .expect("seed example parses");
        assert_eq!(sink.spec.parallelism, 1);
        assert_eq!(sink.spec.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(sink.spec.mapping, Mapping::JsonArray {});
    }
}
