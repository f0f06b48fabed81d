//! The Kafka side: a consumer-group member that claims each partition it is assigned in the committer
//! table *before* reading it, starts it at the position the committer table holds (never Kafka's
//! committed offsets), and hands records to the write loop in offset order.
//!
//! librdkafka runs the rebalance callback on the thread that polls, so polling happens on a dedicated
//! thread: there the callback can wait for Cassandra (claims) and for the write loop (to finish the
//! checkpoint in flight for revoked partitions) without blocking the async runtime.
//!
//! # Guarantees
//! * A partition is assigned only once claimed, at the offset the claim decided; a range Kafka no
//!   longer holds stops the sink with [`SourceError::RangeGone`].
//! * A revoked partition is released only after the write loop acknowledges it is done with it.
//! * Back-pressure: when the write loop is behind, the poll thread waits for room (see `poll_loop`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::cassandra::read_secret;
use crate::checkpoint::{Claim, RangeGone, SourcePartition, StartAt};
use crate::committer::{Committer, CommitterError};
use crate::config::{KafkaSource, RESERVED_KAFKA_PROPERTIES};
use crate::metrics::Metrics;
use crate::topics::Subscription;

/// A record copied out of librdkafka's buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Topic (shared by every record of it).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp in milliseconds.
    pub timestamp_ms: Option<i64>,
}

impl OwnedRecord {
    /// True when the record comes from `partition`.
    pub fn is_from(&self, partition: &SourcePartition) -> bool {
        self.partition == partition.partition && self.topic == partition.topic
    }
}

impl crate::checkpoint::Sizable for OwnedRecord {
    /// Bytes of key and value, for checkpoint size limits.
    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// What the source tells the write loop, in order.
#[derive(Debug)]
pub enum SourceEvent {
    /// These partitions are claimed; their records follow.
    Assigned(Vec<Claim>),
    /// These partitions are being taken away: finish with them, then send on `done`.
    Revoked {
        /// The partitions.
        partitions: Vec<SourcePartition>,
        /// Acknowledgement.
        done: oneshot::Sender<()>,
    },
    /// A record.
    Record(OwnedRecord),
    /// The source cannot go on.
    Failed(SourceError),
}

/// Errors of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A configured property is one the protocol depends on.
    #[error(
        "Kafka property `{0}` is set by the sink itself (positions live in the committer table); remove it"
    )]
    ReservedProperty(String),
    /// A Kafka credential could not be read.
    #[error(transparent)]
    Secret(#[from] crate::cassandra::ConnectError),
    /// The consumer could not be created or subscribed.
    #[error("Kafka consumer for {topic}: {source}")]
    Client {
        /// The topic, or the topics or pattern subscribed to.
        topic: String,
        /// The librdkafka error.
        source: KafkaError,
    },
    /// A needed range is gone from Kafka.
    #[error(transparent)]
    RangeGone(#[from] RangeGone),
    /// Claiming a partition failed for good.
    #[error(transparent)]
    Claim(#[from] CommitterError),
    /// librdkafka stopped the consumer for good; with `FencedInstanceId` (a second time within
    /// two minutes, see `Rejoins`), another worker of the sink runs under the same name
    /// (`group.instance.id`).
    #[error(
        "Kafka stopped this consumer for good: {code}{}",
        if *code == RDKafkaErrorCode::FencedInstanceId {
            "; fenced again within two minutes of joining again, so another worker of this sink \
             runs under the same name (worker id): give each its own"
        } else {
            ""
        }
    )]
    Fatal {
        /// librdkafka's error code.
        code: RDKafkaErrorCode,
    },
    /// The position to read from is outside what Kafka holds.
    #[error(
        "Kafka{}: {code}: the position the committer table holds is outside what Kafka keeps; \
         stopping rather than skipping records",
        partition.map(|partition| format!(" partition {partition}")).unwrap_or_default()
    )]
    OutOfRange {
        /// Partition, when known.
        partition: Option<i32>,
        /// librdkafka's error code.
        code: RDKafkaErrorCode,
    },
}

/// Makes a worker with a stable name a static member of its consumer group (KIP-345), with the name
/// as `group.instance.id`. The operator names each worker after its pod, and a pod keeps its name when
/// the kubelet restarts its crashed container: the restarted worker then takes its partitions back as
/// soon as it rejoins, where a new member would wait until the group gives up on the old one
/// (`session.timeout.ms`). A graceful stop still hands the partitions over at once, since the worker
/// unsubscribes (which leaves the group) before it closes. A name made up at start (host name and
/// process id) is not stable, so such a worker stays a dynamic member; a `group.instance.id` the user
/// sets in the properties wins.
pub fn join_as(source: &mut KafkaSource, stable_name: Option<&str>) {
    if let Some(name) = stable_name {
        source
            .properties
            .entry("group.instance.id".to_owned())
            .or_insert_with(|| name.to_owned());
    }
}

/// The librdkafka configuration of the consumer: the sink's fixed settings, security, then the
/// user's extra properties (which may not touch the reserved ones).
pub fn client_config(source: &KafkaSource, group_id: &str) -> Result<ClientConfig, SourceError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", source.bootstrap_servers.join(","))
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A position outside Kafka's range is an error, never a silent jump.
        .set("auto.offset.reset", "error")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // librdkafka prefetches up to 64 MiB and 100,000 records per partition by default, each
        // record with a few hundred bytes of bookkeeping; the write loop buffers a checkpoint's worth
        // itself, so a smaller prefetch keeps the worker's memory bounded. Each fetch may overshoot
        // these bounds by a whole response, and a compressed 1 MiB response can hold a partition's
        // entire backlog of small records, so fetches are kept small too (a larger record still
        // arrives: librdkafka raises the size until it fits). Small fetches only keep pace if
        // a partition whose queue was full is fetched again soon, not after the default second.
        // The queue bounds are checked before a fetch, and one fetch response (50 MiB by default)
        // may fill many partitions at once: with 64 partitions a worker's memory doubled
        // (docs/benchmarks.md), so a response is kept to 1 MiB, compressed.
        .set("queued.max.messages.kbytes", "8192")
        .set("queued.min.messages", "2000")
        .set("max.partition.fetch.bytes", "131072")
        .set("fetch.max.bytes", "1048576")
        .set("fetch.queue.backoff.ms", "10");
    if let Some(security) = &source.security {
        config.set("security.protocol", security.protocol.librdkafka_name());
        if let Some(sasl) = &security.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.librdkafka_name())
                .set("sasl.username", read_secret("username", &sasl.username)?)
                .set("sasl.password", read_secret("password", &sasl.password)?);
        }
        if let Some(tls) = &security.tls {
            if let Some(ca) = &tls.ca_file {
                config.set("ssl.ca.location", ca.display().to_string());
            }
            if let Some(cert) = &tls.cert_file {
                config.set("ssl.certificate.location", cert.display().to_string());
            }
            if let Some(key) = &tls.key_file {
                config.set("ssl.key.location", key.display().to_string());
            }
            if !tls.verify_hostname {
                config.set("ssl.endpoint.identification.algorithm", "none");
            }
        }
    }
    for (key, value) in &source.properties {
        if RESERVED_KAFKA_PROPERTIES.contains(&key.as_str()) {
            return Err(SourceError::ReservedProperty(key.clone()));
        }
        config.set(key, value);
    }
    Ok(config)
}

/// The consumer's callbacks: claims on assignment, hand-over on revocation.
#[derive(Clone)]
pub struct SourceContext {
    runtime: Handle,
    committer: Arc<Committer>,
    subscription: Subscription,
    events: mpsc::Sender<SourceEvent>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// How long a partition's first offset is asked for before the worker gives up on an assignment.
const WATERMARK_PATIENCE: Duration = Duration::from_secs(120);

/// Whether a failed offset query may succeed once the partition has a leader again.
fn leader_may_return(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::MetadataFetch(code) | KafkaError::OffsetFetch(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::BrokerNotAvailable
            // While leadership moves: the new leader's epoch or high watermark is not settled yet.
            | RDKafkaErrorCode::FencedLeaderEpoch
            | RDKafkaErrorCode::UnknownLeaderEpoch
            | RDKafkaErrorCode::OffsetNotAvailable
            // The query went to a broker the cluster has just dropped from its metadata (a killed
            // broker, once the controller fences it): librdkafka destroys its handle.
            | RDKafkaErrorCode::DestroyBroker
    )
}

impl ClientContext for SourceContext {
    /// librdkafka reports client-wide errors here; "all brokers down" makes the worker unready until
    /// the poll thread reaches Kafka again (librdkafka itself keeps reconnecting).
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            if self.metrics.kafka_available() {
                tracing::warn!(reason, "all Kafka brokers are down; retrying");
            }
            self.metrics.set_kafka_available(false);
            self.metrics.error("kafka_unavailable");
        } else {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let numbers: Vec<SourcePartition> = partitions
            .elements()
            .iter()
            .map(|element| SourcePartition::new(element.topic(), element.partition()))
            .collect();
        match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let claims = match self.claim_all(consumer, &numbers) {
                    Ok(claims) => claims,
                    Err(error) => {
                        tracing::error!(%error, "cannot take the assigned partitions");
                        let _ = self.events.blocking_send(SourceEvent::Failed(error));
                        return;
                    }
                };
                // The write loop learns it owns the partitions only once librdkafka has them, from
                // the committed positions: a partition it cannot start right is never owned. No
                // record of them can arrive before this callback returns.
                let assigned = self.assign(consumer, partitions, &claims, cooperative);
                let event = match assigned {
                    Ok(()) => {
                        SourceEvent::Assigned(claims.into_iter().map(|(claim, _)| claim).collect())
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot start reading the assigned partitions");
                        SourceEvent::Failed(error)
                    }
                };
                let _ = self.events.blocking_send(event);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                if Handle::try_current().is_ok() =>
            {
                // Called on a runtime thread (a consumer closed there): waiting would stall the
                // runtime, and the write loop is gone anyway.
                let _ = consumer.unassign();
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                release(&self.events, &self.runtime, numbers);
                let released = if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                };
                if let Err(error) = released {
                    tracing::error!(%error, "unassigning partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; releasing partitions");
                let _ = consumer.unassign();
            }
        }
    }
}

impl SourceContext {
    /// Sets each partition's start from its claim and hands them to librdkafka.
    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &mut TopicPartitionList,
        claims: &[(Claim, StartAt)],
        cooperative: bool,
    ) -> Result<(), SourceError> {
        let failed = |source: KafkaError| SourceError::Client {
            topic: self.subscription.describe(),
            source,
        };
        for (claim, start) in claims {
            let offset = match start {
                StartAt::Beginning => Offset::Beginning,
                StartAt::Offset(offset) => Offset::Offset(*offset),
            };
            partitions
                .set_partition_offset(&claim.partition.topic, claim.partition.partition, offset)
                .map_err(failed)?;
        }
        if crate::fault::fails("assign") {
            return Err(failed(KafkaError::Subscription(
                "assignment refused (injected fault)".to_owned(),
            )));
        }
        if cooperative {
            consumer.incremental_assign(partitions).map_err(failed)
        } else {
            consumer.assign(partitions).map_err(failed)
        }
    }

    /// Claims every assigned partition (retrying while Cassandra is unavailable) and decides where
    /// each starts.
    fn claim_all(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &[SourcePartition],
    ) -> Result<Vec<(Claim, StartAt)>, SourceError> {
        // Each partition has its own committer row: the claims run side by side, so a rebalance of
        // many partitions costs about one transaction's time.
        let claims = self
            .runtime
            .block_on(futures::future::join_all(
                partitions.iter().map(|partition| self.claim(partition)),
            ))
            .into_iter()
            .collect::<Result<Vec<Claim>, SourceError>>()?;
        let mut result = Vec::with_capacity(partitions.len());
        for claim in claims {
            let partition = &claim.partition;
            let low = self.low_watermark(consumer, partition)?;
            let start = claim.resume(low)?;
            tracing::info!(
                %partition,
                epoch = claim.epoch,
                committed = ?claim.committed,
                pending = ?claim.pending,
                start = ?start,
                "partition claimed"
            );
            result.push((claim, start));
        }
        Ok(result)
    }

    /// The first offset Kafka holds for `partition`. A partition whose leader was just lost (its broker
    /// killed, a new leader not yet elected or known) does not answer for a while: that is retried for
    /// up to [`WATERMARK_PATIENCE`], unready meanwhile, before the worker gives up (and restarts).
    fn low_watermark(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        partition: &SourcePartition,
    ) -> Result<i64, SourceError> {
        let deadline = std::time::Instant::now() + WATERMARK_PATIENCE;
        loop {
            match consumer.fetch_watermarks(
                &partition.topic,
                partition.partition,
                Duration::from_secs(10),
            ) {
                Ok((low, _high)) => return Ok(low),
                Err(error)
                    if leader_may_return(&error)
                        && std::time::Instant::now() < deadline
                        && !self.stop.load(Ordering::Relaxed) =>
                {
                    self.metrics.set_unready(format!(
                        "Kafka does not answer for partition {partition}: {error}"
                    ));
                    tracing::warn!(%partition, %error, "cannot read where the partition starts; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    // Ask any broker that answers who leads the topic's partitions now: until the
                    // partition is read from, nothing else makes librdkafka forget a dead leader.
                    if let Err(error) =
                        consumer.fetch_metadata(Some(&partition.topic), Duration::from_secs(5))
                    {
                        tracing::warn!(%partition, %error, "cannot refresh the topic's leaders");
                    }
                }
                Err(source) => {
                    return Err(SourceError::Client {
                        topic: partition.topic.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Claims one partition, retrying while Cassandra is unavailable.
    async fn claim(&self, partition: &SourcePartition) -> Result<Claim, SourceError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.committer.claim(partition).await {
                Ok(claim) => return Ok(claim),
                Err(CommitterError::Cassandra { .. }) if !self.stop.load(Ordering::Relaxed) => {
                    tracing::warn!(%partition, "claim failed; Cassandra unavailable? retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// The running source: its consumer (for offset commits that lag tools read) and its poll thread.
pub struct Source {
    /// The poll thread's current consumer, shared for offset commits. The poll thread must hold the
    /// last reference: closing the consumer runs the revoke callback, and that may block only off the
    /// async runtime. It is replaced when Kafka fences the worker's membership and the worker joins
    /// again (see [`Rejoins`]).
    consumer: Arc<Mutex<Option<Arc<BaseConsumer<SourceContext>>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Records and events waiting in the source before the write loop takes them.
const QUEUE: usize = 8192;

/// How the poll thread makes a consumer: at start, and again when Kafka fenced the last one.
struct Membership {
    config: ClientConfig,
    context: SourceContext,
    topics: Vec<String>,
    described: String,
}

impl Membership {
    /// A new consumer, subscribed: it joins the group under the configured name.
    fn join(&self) -> Result<Arc<BaseConsumer<SourceContext>>, SourceError> {
        let failed = |source: KafkaError| SourceError::Client {
            topic: self.described.clone(),
            source,
        };
        let consumer: BaseConsumer<SourceContext> = self
            .config
            .create_with_context(self.context.clone())
            .map_err(failed)?;
        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(failed)?;
        Ok(Arc::new(consumer))
    }
}

/// When a worker fenced out of its group joins again with a new consumer.
///
/// Kafka fences a static member (`group.instance.id`) when a request arrives under a member id the
/// group no longer knows for that name, and librdkafka makes that fatal for the client. A worker
/// fences *itself* that way when it loses the group coordinator: its session runs out, it joins
/// again under a new member id, and an offset commit it queued while the coordinator was gone then
/// arrives under the old one. A second worker running under the same name fences it the same way,
/// over and over. So the first fence is answered by joining again (the committer's epochs keep
/// records safe whatever the group does), and a second one within [`Rejoins::WINDOW`] stops the
/// worker with the namesake named as the cause.
#[derive(Debug, Default)]
struct Rejoins {
    last: Option<Instant>,
}

impl Rejoins {
    /// Fences closer together than this mean another worker under the same name.
    const WINDOW: Duration = Duration::from_secs(120);

    /// Whether a worker fenced at `now` joins again (and remembers that it did).
    fn allow(&mut self, now: Instant) -> bool {
        let allowed = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= Self::WINDOW);
        if allowed {
            self.last = Some(now);
        }
        allowed
    }
}

impl Source {
    /// Joins the group and starts polling; events arrive on the returned receiver.
    pub fn start(
        source: &KafkaSource,
        subscription: Subscription,
        group_id: &str,
        committer: Arc<Committer>,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, mpsc::Receiver<SourceEvent>), SourceError> {
        let (events, receiver) = mpsc::channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let described = subscription.describe();
        let topics = match &subscription {
            Subscription::Topics(topics) => topics.clone(),
            Subscription::Pattern(pattern) => vec![pattern.librdkafka()],
        };
        let context = SourceContext {
            runtime: Handle::current(),
            committer,
            subscription,
            events: events.clone(),
            stop: stop.clone(),
            metrics,
        };
        let membership = Membership {
            config: client_config(source, group_id)?,
            context,
            topics,
            described: described.clone(),
        };
        let first = membership.join()?;
        let shared = Arc::new(Mutex::new(Some(first.clone())));
        let thread = std::thread::Builder::new()
            .name("kafka-poll".to_owned())
            .spawn({
                let shared = shared.clone();
                let stop = stop.clone();
                move || run_membership(&membership, first, &shared, &events, &stop)
            })
            .map_err(|error| SourceError::Client {
                topic: described,
                source: KafkaError::Subscription(error.to_string()),
            })?;
        Ok((
            Self {
                consumer: shared,
                stop,
                thread: Some(thread),
            },
            receiver,
        ))
    }

    /// Tells Kafka the committed position too, so consumer-lag tools see the sink's progress. The
    /// committer table stays the source of truth; a failure here is only logged.
    pub fn report_position(&self, partition: &SourcePartition, next_offset: i64) {
        let Some(consumer) = lock(&self.consumer).clone() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(
                &partition.topic,
                partition.partition,
                Offset::Offset(next_offset),
            )
            .is_ok()
            && let Err(error) = consumer.commit(&list, CommitMode::Async)
        {
            tracing::debug!(%error, %partition, "reporting the position to Kafka failed");
        }
    }

    /// Leaves the group (the revoke callback hands partitions over) and stops polling.
    pub fn stop(&mut self) {
        {
            // Under the lock, so the poll thread cannot publish a new consumer after this.
            let mut consumer = lock(&self.consumer);
            self.stop.store(true, Ordering::Relaxed);
            *consumer = None;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `topic/partition` of each, for logs.
fn list(partitions: &[SourcePartition]) -> String {
    partitions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The shared name of each topic seen, so that records carry a reference rather than a copy.
#[derive(Default)]
struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.0.iter().find(|name| ***name == *topic) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(topic);
        self.0.push(name.clone());
        name
    }
}

fn owned(message: &rdkafka::message::BorrowedMessage<'_>, topic: Arc<str>) -> OwnedRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    OwnedRecord {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// The consumer slot shared with [`Source`], poisoned or not (it only ever holds an `Arc`).
fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The poll thread: polls the consumer until the worker stops or the source fails, and joins the
/// group again with a new consumer when Kafka fenced the last one and [`Rejoins`] allows it.
fn run_membership(
    membership: &Membership,
    first: Arc<BaseConsumer<SourceContext>>,
    shared: &Mutex<Option<Arc<BaseConsumer<SourceContext>>>>,
    events: &mpsc::Sender<SourceEvent>,
    stop: &AtomicBool,
) {
    let mut consumer = first;
    let mut rejoins = Rejoins::default();
    loop {
        match poll_loop(&consumer, events, stop) {
            Ended::Stopped => {
                leave(&consumer);
                return;
            }
            Ended::Failed(SourceError::Fatal {
                code: RDKafkaErrorCode::FencedInstanceId,
            }) if rejoins.allow(Instant::now()) => {
                tracing::warn!(
                    "Kafka fenced this worker's group membership (its session ran out while the \
                     group coordinator was away, or another worker runs under the same name); \
                     joining again with a new consumer"
                );
                hand_back(&consumer, events);
                *lock(shared) = None;
                // The last reference: closing a fenced consumer leaves nothing to revoke.
                drop(consumer);
                consumer = match membership.join() {
                    Ok(joined) => joined,
                    Err(error) => {
                        tracing::error!(%error, "Kafka source cannot go on");
                        let _ = events.blocking_send(SourceEvent::Failed(error));
                        return;
                    }
                };
                let mut slot = lock(shared);
                if stop.load(Ordering::Relaxed) {
                    drop(slot);
                    leave(&consumer);
                    return;
                }
                *slot = Some(consumer.clone());
            }
            Ended::Failed(error) => {
                tracing::error!(%error, "Kafka source cannot go on");
                let _ = events.blocking_send(SourceEvent::Failed(error));
                leave(&consumer);
                return;
            }
        }
    }
}

/// Hands the partitions a fenced consumer still holds back to the write loop, which finishes (or
/// abandons, if another worker claimed them since) the checkpoint in flight, and unassigns them.
fn hand_back(consumer: &BaseConsumer<SourceContext>, events: &mpsc::Sender<SourceEvent>) {
    let partitions: Vec<SourcePartition> = consumer
        .assignment()
        .map(|assigned| {
            assigned
                .elements()
                .iter()
                .map(|element| SourcePartition::new(element.topic(), element.partition()))
                .collect()
        })
        .unwrap_or_default();
    if !partitions.is_empty() {
        release(events, &consumer.context().runtime, partitions);
    }
    let _ = consumer.unassign();
}

/// Tells the write loop `partitions` are going and waits until it is done with them: it finishes
/// (or abandons, if fenced) the checkpoint in flight for them before they go to another worker.
/// Called off the async runtime (the poll thread), which it blocks on.
fn release(events: &mpsc::Sender<SourceEvent>, runtime: &Handle, partitions: Vec<SourcePartition>) {
    let described = list(&partitions);
    let (done, finished) = oneshot::channel();
    if events
        .blocking_send(SourceEvent::Revoked { partitions, done })
        .is_ok()
    {
        let _ = runtime.block_on(finished);
    }
    tracing::info!(partitions = %described, "partitions released");
}

/// Why [`poll_loop`] returned.
enum Ended {
    /// The worker stops (or the write loop is gone).
    Stopped,
    /// The source cannot go on with this consumer.
    Failed(SourceError),
}

/// Forwards records, waiting while the write loop is behind, until the worker stops or an error
/// ends this consumer.
///
/// Waiting in `blocking_send` rather than pausing partitions keeps librdkafka's prefetched records:
/// pausing discards them and resuming fetches them again, which measurably halved throughput. While
/// it waits the thread serves no rebalance; the write loop frees room within a checkpoint's time, and if
/// Cassandra is down for longer than `max.poll.interval.ms` the group moves the partitions elsewhere,
/// which fencing makes safe.
fn poll_loop(
    consumer: &BaseConsumer<SourceContext>,
    events: &mpsc::Sender<SourceEvent>,
    stop: &AtomicBool,
) -> Ended {
    let metrics = consumer.context().metrics.clone();
    // The probe asks for one topic's metadata, or for all topics' under a pattern.
    let probe_topic = match &consumer.context().subscription {
        Subscription::Topics(topics) => topics.first().cloned(),
        Subscription::Pattern(_) => None,
    };
    let mut names = TopicNames::default();
    let mut last_probe = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                metrics.set_kafka_available(true);
                let topic = names.get(message.topic());
                if events
                    .blocking_send(SourceEvent::Record(owned(&message, topic)))
                    .is_err()
                {
                    return Ended::Stopped;
                }
            }
            Some(Err(error)) => {
                if let Some(failure) = fatal(&error) {
                    return Ended::Failed(failure);
                }
                tracing::warn!(%error, "Kafka consumer error; retrying");
            }
            None => {}
        }
        // While Kafka is marked down, a cheap metadata request every few seconds tells when it is
        // back even if no record arrives (an idle topic).
        if !metrics.kafka_available() && last_probe.elapsed() >= PROBE_INTERVAL {
            last_probe = Instant::now();
            if consumer
                .fetch_metadata(probe_topic.as_deref(), PROBE_INTERVAL)
                .is_ok()
            {
                tracing::info!("Kafka reachable again");
                metrics.set_kafka_available(true);
            }
        }
    }
    Ended::Stopped
}

/// Leaves the group: unsubscribes, serves the revoke callback that triggers, then gives librdkafka the
/// moment it takes to leave once the assignment is given up. A static member (a worker with a stable
/// name) leaves only this way: closing the consumer never leaves for it (KIP-345), and without the
/// leave its partitions would wait for the session timeout before moving to the other workers.
fn leave(consumer: &BaseConsumer<SourceContext>) {
    consumer.unsubscribe();
    let deadline = Instant::now() + LEAVE_GRACE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = consumer.poll(left);
    }
}

/// How long a stopping worker keeps serving its consumer after unsubscribing.
const LEAVE_GRACE: Duration = Duration::from_millis(500);

/// How often an unreachable Kafka is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Errors after which reading on would skip or invent data.
fn fatal(error: &KafkaError) -> Option<SourceError> {
    match error {
        KafkaError::MessageConsumption(
            code @ (RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset),
        ) => Some(SourceError::OutOfRange {
            partition: None,
            code: *code,
        }),
        KafkaError::MessageConsumptionFatal(code) => Some(SourceError::Fatal { code: *code }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn source(properties: BTreeMap<String, String>) -> KafkaSource {
        KafkaSource {
            bootstrap_servers: vec!["a:9092".into(), "b:9092".into()],
            topic: Some("values".into()),
            topics: Vec::new(),
            topic_pattern: None,
            group_id: None,
            security: None,
            properties,
            value_format: Default::default(),
            key_format: Default::default(),
            schema_registry: None,
        }
    }

    #[test]
    fn positions_never_come_from_kafka() {
        let config = client_config(&source(BTreeMap::new()), "g").expect("config");
        assert_eq!(config.get("bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("auto.offset.reset"), Some("error"));
        assert_eq!(config.get("isolation.level"), Some("read_committed"));
    }

    #[test]
    fn reserved_properties_are_refused_by_name() {
        let properties = BTreeMap::from([("auto.offset.reset".to_owned(), "latest".to_owned())]);
        let error = client_config(&source(properties), "g").expect_err("refused");
        assert!(error.to_string().contains("auto.offset.reset"), "{error}");
        let properties = BTreeMap::from([("fetch.max.bytes".to_owned(), "52428800".to_owned())]);
        let config = client_config(&source(properties), "g").expect("passed through");
        assert_eq!(config.get("fetch.max.bytes"), Some("52428800"));
    }

    #[test]
    fn a_worker_with_a_stable_name_is_a_static_member_unless_the_user_says_otherwise() {
        let mut named = source(BTreeMap::new());
        join_as(&mut named, Some("values-worker-7d9f-abcde"));
        let config = client_config(&named, "g").expect("config");
        assert_eq!(
            config.get("group.instance.id"),
            Some("values-worker-7d9f-abcde")
        );
        let mut unnamed = source(BTreeMap::new());
        join_as(&mut unnamed, None);
        let config = client_config(&unnamed, "g").expect("config");
        assert_eq!(config.get("group.instance.id"), None, "a dynamic member");
        let mut chosen = source(BTreeMap::from([(
            "group.instance.id".to_owned(),
            "mine".to_owned(),
        )]));
        join_as(&mut chosen, Some("pod"));
        let config = client_config(&chosen, "g").expect("config");
        assert_eq!(config.get("group.instance.id"), Some("mine"));
    }

    #[test]
    fn a_fenced_worker_joins_again_once_per_window() {
        let start = Instant::now();
        let mut rejoins = Rejoins::default();
        assert!(
            rejoins.allow(start),
            "the first fence is answered by joining again"
        );
        assert!(
            !rejoins.allow(start + Duration::from_secs(5)),
            "a second fence soon after means a namesake"
        );
        assert!(
            !rejoins.allow(start + Rejoins::WINDOW - Duration::from_millis(1)),
            "the window counts from the last rejoin, not from the refused fence"
        );
        assert!(
            rejoins.allow(start + Rejoins::WINDOW),
            "a fence long after the last is a new coordinator loss"
        );
        assert!(!rejoins.allow(start + Rejoins::WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn a_consumer_fenced_by_a_namesake_stops_saying_why() {
        let failure = fatal(&KafkaError::MessageConsumptionFatal(
            RDKafkaErrorCode::FencedInstanceId,
        ))
        .expect("fatal");
        assert!(
            failure.to_string().contains("same name (worker id)"),
            "{failure}"
        );
        assert!(
            fatal(&KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
            ))
            .is_none(),
            "retried"
        );
    }

    #[test]
    fn prefetch_is_small_by_default_and_the_user_may_change_it() {
        let config = client_config(&source(BTreeMap::new()), "g").expect("config");
        assert_eq!(config.get("max.partition.fetch.bytes"), Some("131072"));
        assert_eq!(config.get("queued.min.messages"), Some("2000"));
        assert_eq!(config.get("fetch.max.bytes"), Some("1048576"));
        // Without a short backoff, small fetches starve the write loop for a second at a time.
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("10"));
        let properties =
            BTreeMap::from([("max.partition.fetch.bytes".to_owned(), "1048576".to_owned())]);
        let config = client_config(&source(properties), "g").expect("overridden");
        assert_eq!(config.get("max.partition.fetch.bytes"), Some("1048576"));
    }

    #[test]
    fn an_offset_query_is_retried_only_while_a_leader_may_return() {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        for code in [
            RDKafkaErrorCode::OperationTimedOut,
            RDKafkaErrorCode::LeaderNotAvailable,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::OffsetNotAvailable,
            RDKafkaErrorCode::DestroyBroker,
        ] {
            assert!(super::leader_may_return(&KafkaError::MetadataFetch(code)));
        }
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(!super::leader_may_return(&KafkaError::MetadataFetch(code)));
        }
    }
}
