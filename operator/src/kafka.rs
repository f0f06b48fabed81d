//! The operator's read-only view of a sink's topics: each partition's low and high watermarks, for the
//! lag in the status and for resets to `earliest` or `latest`. One client per Kafka cluster and
//! credentials, shared by every sink that reads from it; it never joins a consumer group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cassandra_sink_worker::checkpoint::SourcePartition;
use cassandra_sink_worker::config::RESERVED_KAFKA_PROPERTIES;
use cassandra_sink_worker::topics::{Subscription, TopicsError};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use tokio::sync::Mutex;

use crate::access::{AccessError, Secrets};
use crate::crd::{CassandraSink, KafkaSourceSpec};
use crate::in_use::{self, Gone, InUse};

/// Each partition's (low, high) watermark, by topic and partition: the first offset Kafka still
/// holds and the next offset it will write.
pub type Watermarks = BTreeMap<SourcePartition, (i64, i64)>;

/// Why the watermarks could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A SASL or TLS Secret could not be read.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The client could not be created (a property librdkafka refuses).
    #[error("Kafka {brokers}: cannot create a client: {source}")]
    Client {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// The brokers did not answer, or refused the connection (authentication, TLS).
    #[error("Kafka {brokers}: {source}")]
    Unreachable {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// The brokers refused the connection: the SASL credentials or the TLS handshake.
    #[error("Kafka {brokers} refused the connection: {code}")]
    Refused {
        /// The bootstrap servers.
        brokers: String,
        /// What librdkafka reported.
        code: RDKafkaErrorCode,
    },
    /// The cluster did not answer a short while ago; not tried again yet.
    #[error("Kafka {brokers} did not answer {ago:.0?} ago; next attempt after {RETRY_AFTER:?}")]
    Recent {
        /// The bootstrap servers.
        brokers: String,
        /// How long ago.
        ago: Duration,
    },
    /// The spec's topics are not named right (caught by validation first; here for completeness).
    #[error(transparent)]
    Topics(#[from] TopicsError),
    /// The brokers answered, but the topic does not exist.
    #[error("Kafka {brokers}: topic {topic} does not exist")]
    TopicMissing {
        /// The bootstrap servers.
        brokers: String,
        /// The topic.
        topic: String,
    },
    /// The brokers answered with an error for the topic or one of its partitions.
    #[error("Kafka {brokers}: topic {topic}{}: {code}", partition.map(|p| format!(" partition {p}")).unwrap_or_default())]
    Topic {
        /// The bootstrap servers.
        brokers: String,
        /// The topic.
        topic: String,
        /// The partition, when the error is one partition's.
        partition: Option<i32>,
        /// Kafka's error code.
        code: RDKafkaErrorCode,
    },
}

impl KafkaError {
    /// True when asking again cannot help until a person changes something: credentials or a
    /// certificate the brokers refuse, a property librdkafka refuses, a Secret the operator may not
    /// read. A topic that does not exist is not: it is often created after the sink.
    pub fn is_permanent(&self) -> bool {
        match self {
            KafkaError::Access(_)
            | KafkaError::Client { .. }
            | KafkaError::Refused { .. }
            | KafkaError::Topics(_) => true,
            KafkaError::Unreachable { .. }
            | KafkaError::Recent { .. }
            | KafkaError::TopicMissing { .. }
            | KafkaError::Topic { .. } => false,
        }
    }
}

/// What the operator knows of each Kafka cluster (and credentials), so that an unreachable cluster does
/// not slow every reconcile. A cluster is forgotten, and its client closed, as soon as no sink reads
/// from it (its Secret rotated, its sinks deleted).
pub struct Clients {
    clusters: Mutex<InUse<Cluster>>,
}

impl Clients {
    /// No client yet; `open` is kept equal to the number of clusters known.
    pub fn new(open: prometheus_client::metrics::gauge::Gauge) -> Self {
        Self {
            clusters: Mutex::new(InUse::new(open)),
        }
    }

    /// Closes the clients only sinks that are `gone` read with.
    pub async fn release(&self, gone: &Gone) {
        self.clusters.lock().await.release(gone, Instant::now());
    }
}

/// One cluster's client and recent history.
#[derive(Default)]
struct Cluster {
    client: Option<Arc<BaseConsumer<Refusals>>>,
    /// When the cluster last failed to answer.
    failed: Option<Instant>,
    /// When the cluster last answered. A cluster that answered recently is read without waiting.
    answered: Option<Instant>,
    /// One read at a time while the cluster's state is unknown (first use, or after a failure): the
    /// first read finds out, and the reconciles queued behind it see the failure at once instead of
    /// each waiting out a timeout on a blocking thread of its own.
    turn: Arc<Mutex<()>>,
}

impl Cluster {
    fn answered_recently(&self) -> bool {
        self.answered.is_some_and(|at| at.elapsed() < RETRY_AFTER)
    }
}

/// How long one metadata or offsets request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// After a failure, how long before that cluster is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The refusal librdkafka last reported through its error callback (authentication, TLS), kept until
/// asked for.
#[derive(Default)]
pub struct Refusals {
    last: std::sync::Mutex<Option<RDKafkaErrorCode>>,
}

impl Refusals {
    fn take(&self) -> Option<RDKafkaErrorCode> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl ClientContext for Refusals {
    fn error(&self, error: RdKafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::SSL),
            ) => {
                *self
                    .last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(code);
            }
            _ => tracing::debug!(%error, reason, "Kafka client error"),
        }
    }
}

impl ConsumerContext for Refusals {}

/// librdkafka settings for a read-only client of the sink's brokers, and a key that changes with
/// them (Secret versions included).
async fn client_config(
    secrets: &Secrets,
    kafka: &KafkaSourceSpec,
) -> Result<(ClientConfig, String), KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.bootstrap_servers.join(","));
    let mut key = kafka.bootstrap_servers.join(",");
    if let Some(protocol) = kafka.security_protocol {
        config.set("security.protocol", protocol.librdkafka_name());
        key.push_str(protocol.librdkafka_name());
    }
    if let Some(sasl) = &kafka.sasl {
        let secret = secrets.get(&sasl.secret_name).await?;
        config
            .set("sasl.mechanism", sasl.mechanism.librdkafka_name())
            .set("sasl.username", secret.text("username")?)
            .set("sasl.password", secret.text("password")?);
        key.push_str(&secret.version());
    }
    if let Some(tls) = &kafka.tls {
        let secret = secrets.get(&tls.secret_name).await?;
        let material = secret.tls(tls);
        let text = |pem: &cassandra_sink_worker::cassandra::Pem| {
            String::from_utf8_lossy(&pem.bytes).into_owned()
        };
        if let Some(ca) = &material.ca {
            config.set("ssl.ca.pem", text(ca));
        }
        if let (Some(cert), Some(private)) = (&material.cert, &material.key) {
            config
                .set("ssl.certificate.pem", text(cert))
                .set("ssl.key.pem", text(private));
        }
        if !tls.verify_hostname {
            config.set("ssl.endpoint.identification.algorithm", "none");
        }
        key.push_str(&secret.version());
    }
    for (name, value) in &kafka.properties {
        // The consumer-group settings do not concern a client that only reads offsets.
        if !RESERVED_KAFKA_PROPERTIES.contains(&name.as_str()) {
            config.set(name, value);
            key.push_str(&format!("{name}={value};"));
        }
    }
    key.push('|');
    key.push_str(secrets.namespace());
    Ok((config, key))
}

impl Clients {
    /// The watermarks of every partition of the sink's topics (of each topic its pattern matches).
    pub async fn watermarks(
        &self,
        secrets: &Secrets,
        sink: &CassandraSink,
    ) -> Result<Watermarks, KafkaError> {
        let kafka = &sink.spec.source.kafka;
        let subscription = Subscription::new(
            kafka.topic.as_ref(),
            &kafka.topics,
            kafka.topic_pattern.as_ref(),
        )?;
        let brokers = kafka.bootstrap_servers.join(",");
        let (config, key) = client_config(secrets, kafka).await?;
        let turn = {
            let mut clusters = self.clusters.lock().await;
            clusters.use_by(&in_use::user(sink), "source", &key);
            // No entry for a deleted sink's last reconcile: it reads once, with a client not kept.
            clusters
                .entry(&key, Cluster::default)
                .and_then(|cluster| (!cluster.answered_recently()).then(|| cluster.turn.clone()))
        };
        let _turn = match &turn {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        let (failed, cached) = {
            let mut clusters = self.clusters.lock().await;
            let cluster = clusters.get(&key);
            (
                cluster.as_ref().and_then(|cluster| cluster.failed),
                cluster.and_then(|cluster| cluster.client.clone()),
            )
        };
        if let Some(failed) = failed
            && failed.elapsed() < RETRY_AFTER
        {
            return Err(KafkaError::Recent {
                brokers,
                ago: failed.elapsed(),
            });
        }
        let consumer = match cached {
            Some(consumer) => consumer,
            None => {
                let consumer: BaseConsumer<Refusals> = config
                    .create_with_context(Refusals::default())
                    .map_err(|source| KafkaError::Client {
                        brokers: brokers.clone(),
                        source,
                    })?;
                let consumer = Arc::new(consumer);
                // Kept only if a sink still reads from this cluster (it may have been deleted since).
                if let Some(cluster) = self.clusters.lock().await.get(&key) {
                    cluster.client = Some(consumer.clone());
                }
                consumer
            }
        };
        let reading = brokers.clone();
        // librdkafka's offset requests block: run them off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            read_watermarks(&consumer, &reading, &subscription)
        })
        .await
        .unwrap_or_else(|_| {
            Err(KafkaError::Unreachable {
                brokers: brokers.clone(),
                source: RdKafkaError::Canceled,
            })
        });
        // Only a cluster that does not answer is remembered as failed: a missing topic concerns
        // this sink alone, and a refusal (credentials, TLS) is said at once, every time.
        let unreachable = matches!(result, Err(KafkaError::Unreachable { .. }));
        if let Some(cluster) = self.clusters.lock().await.get(&key) {
            let now = Instant::now();
            cluster.failed = unreachable.then_some(now);
            cluster.answered = (!unreachable).then_some(now);
        }
        result
    }
}

fn read_watermarks(
    consumer: &BaseConsumer<Refusals>,
    brokers: &str,
    subscription: &Subscription,
) -> Result<Watermarks, KafkaError> {
    let mut watermarks = Watermarks::new();
    match subscription {
        Subscription::Topics(topics) => {
            for topic in topics {
                let metadata = read_metadata(consumer, brokers, Some(topic))?;
                topic_watermarks(consumer, brokers, &metadata, topic, &mut watermarks)?;
            }
        }
        Subscription::Pattern(pattern) => {
            let metadata = read_metadata(consumer, brokers, None)?;
            let matching: Vec<String> = metadata
                .topics()
                .iter()
                .map(|described| described.name())
                .filter(|name| pattern.matches(name))
                .map(str::to_owned)
                .collect();
            for topic in &matching {
                topic_watermarks(consumer, brokers, &metadata, topic, &mut watermarks)?;
            }
        }
    }
    Ok(watermarks)
}

/// Metadata of one topic, or of every topic.
fn read_metadata(
    consumer: &BaseConsumer<Refusals>,
    brokers: &str,
    topic: Option<&str>,
) -> Result<rdkafka::metadata::Metadata, KafkaError> {
    consumer
        .fetch_metadata(topic, REQUEST_TIMEOUT)
        .map_err(|source| {
            // A refusal (SASL, TLS) reaches librdkafka's error callback, not the failed request,
            // which only says the transport failed: serve the callbacks (an immediate poll does
            // not; a short one does) and ask.
            consumer.poll(Duration::from_millis(200));
            match consumer.context().take() {
                Some(code) => KafkaError::Refused {
                    brokers: brokers.to_owned(),
                    code,
                },
                None => KafkaError::Unreachable {
                    brokers: brokers.to_owned(),
                    source,
                },
            }
        })
}

/// Adds the watermarks of each partition of `topic`, as `metadata` describes it.
fn topic_watermarks(
    consumer: &BaseConsumer<Refusals>,
    brokers: &str,
    metadata: &rdkafka::metadata::Metadata,
    topic: &str,
    watermarks: &mut Watermarks,
) -> Result<(), KafkaError> {
    let missing = || KafkaError::TopicMissing {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
    };
    let described = metadata
        .topics()
        .iter()
        .find(|described| described.name() == topic)
        .ok_or_else(missing)?;
    if let Some(error) = described.error() {
        let code = RDKafkaErrorCode::from(error);
        if matches!(
            code,
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
        ) {
            return Err(missing());
        }
        return Err(KafkaError::Topic {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            partition: None,
            code,
        });
    }
    for partition in described.partitions() {
        let marks = consumer
            .fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)
            .map_err(|source| KafkaError::Topic {
                brokers: brokers.to_owned(),
                topic: topic.to_owned(),
                partition: Some(partition.id()),
                code: source
                    .rdkafka_error_code()
                    .unwrap_or(RDKafkaErrorCode::Unknown),
            })?;
        watermarks.insert(SourcePartition::new(topic, partition.id()), marks);
    }
    Ok(())
}
