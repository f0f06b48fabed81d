//! Kafka is real: create a topic, produce and consume through rdkafka, the client the worker uses.

use std::time::Duration;

use cassandra_sink_tests::{Settings, unique_name};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::test]
async fn produce_and_consume_through_rdkafka() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let topic = unique_name("smoke").replace('_', "-");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .create()?;
    let created = admin
        .create_topics(
            [&NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .map_err(|error| anyhow::anyhow!("cannot reach Kafka at {}: {error}", settings.kafka))?;
    for result in created {
        result.map_err(|(name, code)| anyhow::anyhow!("creating topic {name}: {code}"))?;
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .set("enable.idempotence", "true")
        .create()?;
    for index in 0..10 {
        let payload = format!("{{\"id\":\"k{index}\",\"counter\":{index}}}");
        let key = format!("k{index}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(index % 2)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| anyhow::anyhow!("producing to {topic}: {error}"))?;
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka)
        .set("group.id", &topic)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut payloads = Vec::new();
    while payloads.len() < 10 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!("no record from {topic} after 30s; got {}", payloads.len())
            })??;
        let payload = message
            .payload_view::<str>()
            .transpose()?
            .unwrap_or_default();
        payloads.push(payload.to_owned());
    }
    payloads.sort();
    let mut expected: Vec<String> = (0..10)
        .map(|index| format!("{{\"id\":\"k{index}\",\"counter\":{index}}}"))
        .collect();
    expected.sort();
    assert_eq!(payloads, expected);

    admin.delete_topics(&[&topic], &AdminOptions::new()).await?;
    Ok(())
}
