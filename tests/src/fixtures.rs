//! Keyspaces, topics and records for tests, on the real servers.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::Settings;

/// A session on the local Cassandra.
pub async fn cassandra(settings: &Settings) -> anyhow::Result<Session> {
    let mut builder = SessionBuilder::new().known_nodes(settings.contact_points());
    if let Some(layout) = &settings.cluster {
        // Requests coordinated in the workers' datacenter, so LOCAL_QUORUM means the same for both.
        let policy = scylla::policies::load_balancing::DefaultPolicy::builder()
            .prefer_datacenter(layout.datacenter.clone())
            .token_aware(true)
            .permit_dc_failover(false)
            .build();
        let profile = scylla::client::execution_profile::ExecutionProfile::builder()
            .load_balancing_policy(policy)
            .build();
        builder = builder.default_execution_profile_handle(profile.into_handle());
    }
    builder.build().await.map_err(|error| {
        anyhow::anyhow!("cannot reach Cassandra at {}: {error}", settings.cassandra)
    })
}

/// A session on the local password-protected Cassandra node (`cassandra-auth`), as its superuser.
/// Retries for a while: the node creates its default role just after it starts listening.
pub async fn cassandra_auth() -> anyhow::Result<Session> {
    let node = crate::env_or("CASSANDRA_AUTH_CONTACT_POINTS", "127.0.0.1:9043");
    let user = crate::env_or("CASSANDRA_AUTH_USERNAME", "cassandra");
    let password = crate::env_or("CASSANDRA_AUTH_PASSWORD", "cassandra");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match SessionBuilder::new()
            .known_node(&node)
            .user(&user, &password)
            .build()
            .await
        {
            Ok(session) => return Ok(session),
            Err(error) if std::time::Instant::now() > deadline => {
                anyhow::bail!("cannot log in to Cassandra at {node}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Drops a test's keyspace. The drop is done once the node that ran it answers; the driver then waits
/// for every node to agree on the schema, which a cluster node that another test is restarting may
/// not do within the driver's minute. Nothing reads the dropped keyspace afterwards (every test's
/// name is its own), so only that wait's timeout is let pass.
pub async fn drop_keyspace(session: &Session, keyspace: &str) -> anyhow::Result<()> {
    use scylla::errors::{ExecutionError, SchemaAgreementError};
    match session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await
    {
        Ok(_) | Err(ExecutionError::SchemaAgreementError(SchemaAgreementError::Timeout(_))) => {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// The datacenter of the local node.
pub async fn datacenter(session: &Session) -> anyhow::Result<String> {
    let (datacenter,) = session
        .query_unpaged("SELECT data_center FROM system.local", ())
        .await?
        .into_rows_result()?
        .single_row::<(String,)>()?;
    Ok(datacenter)
}

/// Creates a keyspace replicated once in the node's datacenter, unless it exists.
pub async fn create_keyspace(session: &Session, keyspace: &str) -> anyhow::Result<()> {
    let datacenter = datacenter(session).await?;
    create_keyspace_with(session, keyspace, &[(datacenter, 1)]).await
}

/// Creates a keyspace with `copies` in each named datacenter, unless it exists.
pub async fn create_keyspace_with(
    session: &Session,
    keyspace: &str,
    copies: &[(String, u32)],
) -> anyhow::Result<()> {
    let datacenters: Vec<String> = copies
        .iter()
        .map(|(datacenter, count)| format!("'{datacenter}': {count}"))
        .collect();
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                 {{'class': 'NetworkTopologyStrategy', {}}}",
                datacenters.join(", ")
            ),
            (),
        )
        .await?;
    session.await_schema_agreement().await?;
    Ok(())
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(settings: &Settings, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .create()?;
    for result in admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(
                    settings
                        .cluster
                        .as_ref()
                        .map_or(1, |layout| layout.topic_copies),
                ),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await?
    {
        result.map_err(|(name, code)| anyhow::anyhow!("creating topic {name}: {code}"))?;
    }
    Ok(())
}

/// Deletes the records of `partition` below `before` (as retention would).
pub async fn delete_records(
    settings: &Settings,
    topic: &str,
    partition: i32,
    before: i64,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .create()?;
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets.add_partition_offset(topic, partition, rdkafka::Offset::Offset(before))?;
    admin.delete_records(&offsets, &AdminOptions::new()).await?;
    Ok(())
}

/// An idempotent producer (order per partition is kept across retries).
pub fn producer(settings: &Settings) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?)
}

/// Sends one record to a partition and waits for the acknowledgement.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
    value: &[u8],
) -> anyhow::Result<()> {
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| anyhow::anyhow!("producing to {topic}: {error}"))?;
    Ok(())
}

/// Sends a tombstone (a key and no value) to a partition and waits for the acknowledgement.
pub async fn send_tombstone(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
) -> anyhow::Result<()> {
    producer
        .send(
            FutureRecord::<str, [u8]>::to(topic)
                .partition(partition)
                .key(key),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| anyhow::anyhow!("producing to {topic}: {error}"))?;
    Ok(())
}

/// The end offset (high watermark) of each partition.
pub fn end_offsets(
    settings: &Settings,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .set("group.id", "end-offsets")
        .create()?;
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        ends.insert(partition, high);
    }
    Ok(ends)
}

/// Committed offsets of a sink's topic, by partition, read from its committer table.
pub async fn committed(
    session: &Session,
    keyspace: &str,
    table: &str,
    (sink_id, topic): (&str, &str),
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, (Option<i64>, i64, Option<i64>)>> {
    let key = cassandra_sink_worker::committer::row_key(sink_id, topic);
    committed_under(session, keyspace, table, &key, partitions).await
}

/// [`committed_under`] once the rows have stopped changing. A worker killed -9 may have sent a
/// commit that Cassandra applies after the process is gone (the request is already on the wire), so a
/// test that reads "what the killed worker left" waits until two reads two seconds apart agree.
pub async fn settled_under(
    session: &Session,
    keyspace: &str,
    table: &str,
    key: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, (Option<i64>, i64, Option<i64>)>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = committed_under(session, keyspace, table, key, partitions).await?;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let now = committed_under(session, keyspace, table, key, partitions).await?;
        if now == last {
            return Ok(now);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the committer rows under {key} kept changing: {last:?} then {now:?}"
        );
        last = now;
    }
}

/// Committed offset, epoch and records of the committer rows keyed `key` (`<sink id>#<topic>`, or
/// the bare sink id of a release that read one topic per sink), by partition.
pub async fn committed_under(
    session: &Session,
    keyspace: &str,
    table: &str,
    key: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, (Option<i64>, i64, Option<i64>)>> {
    let mut result = BTreeMap::new();
    for partition in 0..partitions {
        let row = session
            .query_unpaged(
                format!(
                    "SELECT committed_offset, epoch, records_committed FROM {keyspace}.{table} \
                     WHERE sink_id = ? AND source_partition = ?"
                ),
                (key, partition),
            )
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>, Option<i64>, Option<i64>)>()?;
        if let Some((offset, epoch, records)) = row {
            result.insert(partition, (offset, epoch.unwrap_or(0), records));
        }
    }
    Ok(result)
}
