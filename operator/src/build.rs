//! The children a `CassandraSink` wants, computed without I/O: the worker configuration (the worker's
//! own [`SinkConfig`] type, rendered into a ConfigMap), the worker Deployment and a metrics Service.
//! Snapshot-tested against `operator/tests/snapshots/`.
//!
//! Secrets are referenced, never copied: they are mounted into the worker pods, and the rendered
//! configuration points at the mounted files.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use cassandra_sink_worker::config::{
    CassandraConfig, CommitterConfig, Credentials, HumanDuration, KafkaSasl, KafkaSecurity,
    KafkaSource, SchemaRegistry, SecretSource, SinkConfig, SourceConfig, TlsConfig,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{CassandraConnection, CassandraSink, RESTART_ANNOTATION, SecretTls, SinkState};

/// Where the worker container finds its configuration.
pub const CONFIG_DIR: &str = "/etc/cassandra-sink/config";
/// Where referenced Secrets are mounted, one folder each.
pub const SECRETS_DIR: &str = "/etc/cassandra-sink/secrets";
/// The worker's HTTP port (health, readiness, metrics).
pub const HTTP_PORT: i32 = 8080;

/// Operator settings that shape the children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The worker image.
    pub worker_image: String,
    /// Its pull policy.
    pub image_pull_policy: String,
}

/// Errors building the children.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The object has no namespace or name (never for objects from the API server).
    #[error("the CassandraSink has no {0}")]
    Missing(&'static str),
    /// The worker configuration could not be rendered.
    #[error("rendering the worker configuration: {0}")]
    Render(String),
}

/// Everything the operator applies for one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// The worker configuration.
    pub config_map: ConfigMap,
    /// The workers.
    pub deployment: Deployment,
    /// Their metrics endpoint.
    pub service: Service,
}

/// The labels every child carries, and the selector of the worker pods.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "cassandra-sink-worker".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "cassandra-sink-operator".to_owned(),
        ),
    ])
}

fn selector(name: &str) -> BTreeMap<String, String> {
    let mut labels = labels(name);
    labels.remove("app.kubernetes.io/managed-by");
    labels
}

/// The label selector of the worker pods as a string (for the scale subresource).
pub fn selector_string(name: &str) -> String {
    selector(name)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Names of the children.
pub fn deployment_name(sink: &str) -> String {
    format!("{sink}-worker")
}

fn config_map_name(sink: &str) -> String {
    format!("{sink}-worker-config")
}

fn service_name(sink: &str) -> String {
    format!("{sink}-worker-metrics")
}

/// A Secret mounted at `SECRETS_DIR/<volume>`; returns the mount folder.
struct Mounts {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    /// TLS Secrets that hold a client certificate and key (`tls.crt`, `tls.key`).
    client_certs: BTreeSet<String>,
}

impl Mounts {
    fn secret(&mut self, volume: &str, secret: &str) -> String {
        let path = format!("{SECRETS_DIR}/{volume}");
        if !self.volumes.iter().any(|v| v.name == volume) {
            self.volumes.push(Volume {
                name: volume.to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_owned()),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            self.mounts.push(VolumeMount {
                name: volume.to_owned(),
                mount_path: path.clone(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        path
    }
}

fn file(folder: &str, key: &str) -> SecretSource {
    SecretSource::File(format!("{folder}/{key}").into())
}

fn tls(mounts: &mut Mounts, volume: &str, tls: &SecretTls) -> TlsConfig {
    let folder = mounts.secret(volume, &tls.secret_name);
    // Mutual TLS only when the Secret carries a client certificate: a CA-only Secret is common.
    let mutual = mounts.client_certs.contains(&tls.secret_name);
    TlsConfig {
        ca_file: Some(format!("{folder}/ca.crt").into()),
        cert_file: mutual.then(|| format!("{folder}/tls.crt").into()),
        key_file: mutual.then(|| format!("{folder}/tls.key").into()),
        verify_hostname: tls.verify_hostname,
    }
}

/// A username and password Secret, mounted as the folder `name`.
fn credentials(mounts: &mut Mounts, name: &str, secret: &str) -> Credentials {
    let folder = mounts.secret(name, secret);
    Credentials {
        username: file(&folder, "username"),
        password: file(&folder, "password"),
    }
}

fn cassandra(
    mounts: &mut Mounts,
    prefix: &str,
    connection: &CassandraConnection,
) -> CassandraConfig {
    CassandraConfig {
        contact_points: connection.contact_points.clone(),
        local_datacenter: connection.local_datacenter.clone(),
        credentials: connection
            .credentials_secret
            .as_ref()
            .map(|secret| credentials(mounts, &format!("{prefix}-credentials"), secret)),
        tls: connection
            .tls
            .as_ref()
            .map(|secret| tls(mounts, &format!("{prefix}-tls"), secret)),
        consistency: connection.consistency,
        request_timeout: HumanDuration(std::time::Duration::from_secs(12)),
    }
}

/// The worker configuration for a sink, and the Secret mounts it relies on.
fn worker_config(
    sink: &CassandraSink,
    namespace: &str,
    name: &str,
    mounts: &mut Mounts,
) -> SinkConfig {
    let spec = &sink.spec;
    let kafka = &spec.source.kafka;
    let security =
        if kafka.security_protocol.is_some() || kafka.sasl.is_some() || kafka.tls.is_some() {
            Some(KafkaSecurity {
                protocol: kafka
                    .security_protocol
                    .unwrap_or(cassandra_sink_worker::config::KafkaProtocol::Plaintext),
                sasl: kafka.sasl.as_ref().map(|sasl| {
                    let folder = mounts.secret("kafka-credentials", &sasl.secret_name);
                    KafkaSasl {
                        mechanism: sasl.mechanism,
                        username: file(&folder, "username"),
                        password: file(&folder, "password"),
                    }
                }),
                tls: kafka
                    .tls
                    .as_ref()
                    .map(|secret| tls(mounts, "kafka-tls", secret)),
            })
        } else {
            None
        };
    SinkConfig {
        sink_id: sink_id(namespace, name),
        cassandra: cassandra(mounts, "cassandra", &spec.cassandra),
        create_query: spec.create_query.clone(),
        insert_query: spec.insert_query.clone(),
        committer: CommitterConfig {
            keyspace: spec.committer.keyspace.clone(),
            table: spec.committer.table.clone(),
            cassandra: spec
                .committer
                .cassandra
                .as_ref()
                .map(|connection| cassandra(mounts, "committer", connection)),
            serial_consistency: spec.committer.serial_consistency.unwrap_or_default(),
        },
        source: SourceConfig {
            kafka: KafkaSource {
                bootstrap_servers: kafka.bootstrap_servers.clone(),
                topic: kafka.topic.clone(),
                topics: kafka.topics.clone(),
                topic_pattern: kafka.topic_pattern.clone(),
                group_id: kafka.group_id.clone(),
                security,
                properties: kafka.properties.clone(),
                value_format: kafka.value_format,
                key_format: kafka.key_format,
                schema_registry: kafka
                    .schema_registry
                    .as_ref()
                    .map(|registry| SchemaRegistry {
                        url: registry.url.clone(),
                        credentials: registry
                            .credentials_secret
                            .as_ref()
                            .map(|secret| credentials(mounts, "registry-credentials", secret)),
                        tls: registry
                            .tls
                            .as_ref()
                            .map(|secret| tls(mounts, "registry-tls", secret)),
                        reader_schema: registry.reader_schema,
                    }),
            },
        },
        mapping: spec.mapping.clone(),
        delete: spec.delete.clone(),
        on_tombstone: spec.on_tombstone,
        fan_out: spec.fan_out.clone(),
        ignore_when: spec.ignore_when.clone(),
        topic_statements: spec.topic_statements.clone(),
        checkpoint: spec.checkpoint.clone(),
        guarantee: spec.guarantee,
        on_invalid_record: spec.on_invalid_record,
        dead_letter: spec.dead_letter.clone(),
        limits: spec.limits.clone(),
        superseded_writes: spec.superseded_writes,
        // The operator runs the DDL once per change of the spec (see `crate::schema`).
        manage_schema: false,
    }
}

/// Workers wanted: the parallelism while running, none while paused or stopped.
pub fn replicas(sink: &CassandraSink) -> i32 {
    match sink.spec.state {
        SinkState::Running => sink.spec.parallelism,
        SinkState::Paused | SinkState::Stopped => 0,
    }
}

fn pod_annotations(
    sink: &CassandraSink,
    config_hash: String,
    secrets_version: &str,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        ("cassandra-sink.io/config-hash".to_owned(), config_hash),
        (
            "cassandra-sink.io/secrets-hash".to_owned(),
            hash(secrets_version),
        ),
    ]);
    if let Some(restart) = sink.annotations().get(RESTART_ANNOTATION) {
        annotations.insert(RESTART_ANNOTATION.to_owned(), restart.clone());
    }
    annotations
}

/// A short stable hash, for the pod-template annotation that rolls the workers on a change.
pub(crate) fn hash(text: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's default hasher.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    text.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The Secrets a sink references, with the spec field that names each (for messages).
pub fn referenced_secrets(sink: &CassandraSink) -> Vec<(&'static str, String)> {
    let spec = &sink.spec;
    let mut secrets = Vec::new();
    let mut connection =
        |field_credentials: &'static str, field_tls: &'static str, c: &CassandraConnection| {
            if let Some(secret) = &c.credentials_secret {
                secrets.push((field_credentials, secret.clone()));
            }
            if let Some(tls) = &c.tls {
                secrets.push((field_tls, tls.secret_name.clone()));
            }
        };
    connection(
        "spec.cassandra.credentialsSecret",
        "spec.cassandra.tls.secretName",
        &spec.cassandra,
    );
    if let Some(committer) = &spec.committer.cassandra {
        connection(
            "spec.committer.cassandra.credentialsSecret",
            "spec.committer.cassandra.tls.secretName",
            committer,
        );
    }
    if let Some(sasl) = &spec.source.kafka.sasl {
        secrets.push((
            "spec.source.kafka.sasl.secretName",
            sasl.secret_name.clone(),
        ));
    }
    if let Some(tls) = &spec.source.kafka.tls {
        secrets.push(("spec.source.kafka.tls.secretName", tls.secret_name.clone()));
    }
    if let Some(registry) = &spec.source.kafka.schema_registry {
        if let Some(secret) = &registry.credentials_secret {
            secrets.push((
                "spec.source.kafka.schemaRegistry.credentialsSecret",
                secret.clone(),
            ));
        }
        if let Some(tls) = &registry.tls {
            secrets.push((
                "spec.source.kafka.schemaRegistry.tls.secretName",
                tls.secret_name.clone(),
            ));
        }
    }
    secrets
}

/// The sink's id in the committer table and in its workers' configuration: `<namespace>/<name>`.
pub fn sink_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The sink's namespace and name, which every child's name and the sink id derive from.
fn namespace_and_name(sink: &CassandraSink) -> Result<(String, String), BuildError> {
    let namespace = sink.namespace().ok_or(BuildError::Missing("namespace"))?;
    let name = sink
        .meta()
        .name
        .clone()
        .ok_or(BuildError::Missing("name"))?;
    Ok((namespace, name))
}

/// The worker configuration of a sink as the operator renders it, without the Secret mounts (for the
/// operator's own use of the spec: its DDL and committer reads).
pub fn sink_config(sink: &CassandraSink) -> Result<SinkConfig, BuildError> {
    let (namespace, name) = namespace_and_name(sink)?;
    let mut mounts = Mounts {
        volumes: Vec::new(),
        mounts: Vec::new(),
        client_certs: BTreeSet::new(),
    };
    Ok(worker_config(sink, &namespace, &name, &mut mounts))
}

/// What the operator saw of the Secrets a sink references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsSeen {
    /// Identifies their content (for example names and resource versions): when it changes, the pod
    /// template changes and the workers roll.
    pub version: String,
    /// TLS Secrets that hold `tls.crt` and `tls.key`, which the workers then present as a client
    /// certificate.
    pub client_certs: BTreeSet<String>,
}

impl SecretsSeen {
    /// Secrets seen at `version`, none with a client certificate.
    pub fn at(version: &str) -> Self {
        Self {
            version: version.to_owned(),
            client_certs: BTreeSet::new(),
        }
    }
}

/// The children of a sink, given what was seen of its Secrets.
pub fn children(
    sink: &CassandraSink,
    settings: &Settings,
    secrets: &SecretsSeen,
) -> Result<Children, BuildError> {
    let (namespace, name) = namespace_and_name(sink)?;
    let owner = sink
        .controller_owner_ref(&())
        .ok_or(BuildError::Missing("uid"))?;
    let metadata = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels(&name)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let mut mounts = Mounts {
        client_certs: secrets.client_certs.clone(),
        volumes: vec![Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(&name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }],
        mounts: vec![VolumeMount {
            name: "config".to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }],
    };
    let config = worker_config(sink, &namespace, &name, &mut mounts);
    let (config_map, config_hash) = config_map(metadata(config_map_name(&name)), &config)?;
    let annotations = pod_annotations(sink, config_hash, &secrets.version);
    Ok(Children {
        config_map,
        deployment: deployment(
            sink,
            settings,
            metadata(deployment_name(&name)),
            mounts,
            annotations,
        ),
        service: service(metadata(service_name(&name)), &name),
    })
}

/// The worker configuration as a ConfigMap, and a hash of it (which rolls the workers when it
/// changes).
fn config_map(
    metadata: ObjectMeta,
    config: &SinkConfig,
) -> Result<(ConfigMap, String), BuildError> {
    let yaml =
        serde_saphyr::to_string(config).map_err(|error| BuildError::Render(error.to_string()))?;
    let config_hash = hash(&yaml);
    Ok((
        ConfigMap {
            metadata,
            data: Some(BTreeMap::from([("sink.yaml".to_owned(), yaml)])),
            ..ConfigMap::default()
        },
        config_hash,
    ))
}

/// The workers: `replicas(sink)` pods of the worker image, with the configuration and Secrets
/// mounted.
fn deployment(
    sink: &CassandraSink,
    settings: &Settings,
    metadata: ObjectMeta,
    mounts: Mounts,
    annotations: BTreeMap<String, String>,
) -> Deployment {
    let name = sink.name_any();
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "worker".to_owned(),
        image: Some(settings.worker_image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        args: Some(
            [
                "run",
                "--config",
                &format!("{CONFIG_DIR}/sink.yaml"),
                "--listen",
                &format!("0.0.0.0:{HTTP_PORT}"),
                "--log-format",
                "json",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        env: Some(vec![EnvVar {
            name: "CASSANDRA_SINK_WORKER_ID".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: HTTP_PORT,
            ..ContainerPort::default()
        }]),
        // The worker writes `reason=…: message` there when it stops for good; without it, the
        // end of its log. The operator puts it in the sink's status.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(crate::resources::worker(
            sink.spec.resources.as_ref(),
            sink.spec.checkpoint.max_bytes,
        )),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts.mounts),
        ..Container::default()
    };
    let mut template_labels = labels(&name);
    template_labels.extend(selector(&name));
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas(sink)),
            selector: LabelSelector {
                match_labels: Some(selector(&name)),
                ..LabelSelector::default()
            },
            // One pod at a time, never more than `parallelism`: a replaced worker's partitions are
            // claimed (and its epoch fenced) by the others before its successor starts.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(mounts.volumes),
                    // Time to commit what is buffered and release partitions on SIGTERM.
                    termination_grace_period_seconds: Some(60),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        // The mounted Secrets' files belong to this group, so the worker may read
                        // them (they are not world-readable).
                        fs_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The workers' metrics endpoint: headless, so Prometheus scrapes each worker pod, and a thousand
/// sinks do not use up the cluster's service IP range.
fn service(metadata: ObjectMeta, name: &str) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector(name)),
            ports: Some(vec![ServicePort {
                name: Some("http-metrics".to_owned()),
                port: HTTP_PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::tests_support::seed_sink;

    fn settings() -> Settings {
        Settings {
            worker_image: "cassandra-sink-worker:0.1.0".to_owned(),
            image_pull_policy: "IfNotPresent".to_owned(),
        }
    }

    /// The worker pod template's metadata (labels and the annotations that roll the pods).
    fn template_metadata(children: &Children) -> ObjectMeta {
        children
            .deployment
            .spec
            .as_ref()
            .expect("spec")
            .template
            .metadata
            .clone()
            .expect("template metadata")
    }

    /// Compares with the committed snapshot; `UPDATE_SNAPSHOTS=1` rewrites it.
    fn snapshot(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().expect("folder")).expect("snapshot folder");
            std::fs::write(&path, actual).expect("write snapshot");
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == actual,
            "{} differs; review and run with UPDATE_SNAPSHOTS=1:\n{actual}",
            path.display()
        );
    }

    #[test]
    fn superseded_writes_reach_the_worker_and_the_default_is_left_unsaid() {
        // Unsaid, a worker of a release before the setting still reads the rendered file.
        let rendered = |sink: &CassandraSink| {
            let children = children(sink, &settings(), &SecretsSeen::at("")).expect("children");
            children.config_map.data.expect("data")["sink.yaml"].clone()
        };
        let mut sink = seed_sink();
        assert!(!rendered(&sink).contains("supersededWrites"));
        sink.spec.superseded_writes = cassandra_sink_worker::config::SupersededWrites::Write;
        assert!(rendered(&sink).contains("supersededWrites: write"));
    }

    #[test]
    fn the_seed_sink_builds_these_children() {
        let children = children(&seed_sink(), &settings(), &SecretsSeen::at("")).expect("children");
        let rendered = [
            serde_saphyr::to_string(&children.config_map).expect("yaml"),
            serde_saphyr::to_string(&children.deployment).expect("yaml"),
            serde_saphyr::to_string(&children.service).expect("yaml"),
        ]
        .join("---\n");
        snapshot("seed-children.yaml", &rendered);
    }

    #[test]
    fn the_rendered_configuration_is_what_the_worker_reads() {
        let children = children(&seed_sink(), &settings(), &SecretsSeen::at("")).expect("children");
        let yaml = &children.config_map.data.expect("data")["sink.yaml"];
        let parsed =
            SinkConfig::from_yaml(yaml, std::path::Path::new("sink.yaml")).expect("parses");
        assert_eq!(parsed.sink_id, "analytics/values");
        assert_eq!(parsed.committer.table, "checkpoints");
    }

    #[test]
    fn the_registry_credentials_secret_is_mounted_and_named_for_the_worker() {
        let mut sink = seed_sink();
        sink.spec.source.kafka.value_format = cassandra_sink_worker::config::RecordFormat::Avro;
        sink.spec.source.kafka.schema_registry = Some(crate::crd::SchemaRegistrySpec {
            url: "https://registry.kafka.svc:8081".into(),
            credentials_secret: Some("registry-creds".into()),
            tls: Some(SecretTls {
                secret_name: "registry-ca".into(),
                verify_hostname: true,
            }),
            reader_schema: cassandra_sink_worker::config::ReaderSchema::Latest,
        });
        let built = children(&sink, &settings(), &SecretsSeen::at("")).expect("children");
        let yaml = &built.config_map.data.as_ref().expect("data")["sink.yaml"];
        let parsed =
            SinkConfig::from_yaml(yaml, std::path::Path::new("sink.yaml")).expect("parses");
        let registry = parsed.source.kafka.schema_registry.expect("registry");
        let credentials = registry.credentials.expect("credentials");
        assert_eq!(
            credentials.password,
            SecretSource::File("/etc/cassandra-sink/secrets/registry-credentials/password".into())
        );
        assert_eq!(
            registry.tls.and_then(|tls| tls.ca_file),
            Some("/etc/cassandra-sink/secrets/registry-tls/ca.crt".into())
        );
        assert_eq!(
            registry.reader_schema,
            cassandra_sink_worker::config::ReaderSchema::Latest
        );
        let named: Vec<&str> = referenced_secrets(&sink)
            .into_iter()
            .map(|(field, _)| field)
            .filter(|field| field.contains("schemaRegistry"))
            .collect();
        assert_eq!(
            named,
            vec![
                "spec.source.kafka.schemaRegistry.credentialsSecret",
                "spec.source.kafka.schemaRegistry.tls.secretName"
            ]
        );
    }

    #[test]
    fn secrets_are_mounted_not_copied_and_changes_roll_the_pods() {
        let mut sink = seed_sink();
        sink.spec.cassandra.credentials_secret = Some("cassandra-creds".into());
        let with_secret = children(&sink, &settings(), &SecretsSeen::at("")).expect("children");
        let yaml = &with_secret.config_map.data.as_ref().expect("data")["sink.yaml"];
        assert!(
            yaml.contains("/etc/cassandra-sink/secrets/cassandra-credentials/password"),
            "{yaml}"
        );
        let pod = with_secret
            .deployment
            .spec
            .as_ref()
            .expect("spec")
            .template
            .spec
            .as_ref()
            .expect("pod");
        let volumes = pod.volumes.as_ref().expect("volumes");
        assert!(volumes.iter().any(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some("cassandra-creds"))
        }));
        let annotation = |children: &Children| {
            template_metadata(children)
                .annotations
                .expect("annotations")["cassandra-sink.io/config-hash"]
                .clone()
        };
        let plain = children(&seed_sink(), &settings(), &SecretsSeen::at("")).expect("children");
        assert_ne!(annotation(&plain), annotation(&with_secret));
    }

    #[test]
    fn secret_and_restart_changes_roll_the_pods_and_stopping_scales_to_zero() {
        let template = template_metadata;
        let base = children(&seed_sink(), &settings(), &SecretsSeen::at("v1")).expect("children");
        let rotated =
            children(&seed_sink(), &settings(), &SecretsSeen::at("v2")).expect("children");
        assert_ne!(
            template(&base),
            template(&rotated),
            "a Secret change rolls the workers"
        );
        let mut restarted = seed_sink();
        restarted.annotations_mut().insert(
            RESTART_ANNOTATION.to_owned(),
            "2026-11-25T10:00:00Z".to_owned(),
        );
        let restarted =
            children(&restarted, &settings(), &SecretsSeen::at("v1")).expect("children");
        assert_ne!(
            template(&base),
            template(&restarted),
            "the restart annotation rolls the workers"
        );
        for state in [SinkState::Paused, SinkState::Stopped] {
            let mut sink = seed_sink();
            sink.spec.state = state;
            let built = children(&sink, &settings(), &SecretsSeen::at("v1")).expect("children");
            assert_eq!(
                built.deployment.spec.expect("spec").replicas,
                Some(0),
                "{state:?}"
            );
        }
    }

    #[test]
    fn referenced_secrets_name_their_fields() {
        let mut sink = seed_sink();
        assert!(referenced_secrets(&sink).is_empty());
        sink.spec.cassandra.credentials_secret = Some("cassandra-creds".into());
        sink.spec.source.kafka.sasl = Some(crate::crd::KafkaSaslSecret {
            mechanism: cassandra_sink_worker::config::SaslMechanism::ScramSha512,
            secret_name: "kafka-creds".into(),
        });
        assert_eq!(
            referenced_secrets(&sink),
            vec![
                (
                    "spec.cassandra.credentialsSecret",
                    "cassandra-creds".to_owned()
                ),
                (
                    "spec.source.kafka.sasl.secretName",
                    "kafka-creds".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn parallelism_is_the_replica_count() {
        let mut sink = seed_sink();
        sink.spec.parallelism = 3;
        let built = children(&sink, &settings(), &SecretsSeen::at("")).expect("children");
        assert_eq!(built.deployment.spec.expect("spec").replicas, Some(3));
    }
}
