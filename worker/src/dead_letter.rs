//! Where invalid records go, with their source coordinates and the reason: a Cassandra table (the
//! default) or a Kafka topic.
//!
//! Table rows are keyed by (sink and topic, partition, offset) — `sink_id` holds
//! [`crate::committer::row_key`], `<sink id>#<topic>`, so topics with the same partition numbers never
//! share a row — and written with the record's own deterministic
//! write timestamp as part of its checkpoint, so a replay writes the same row again: dead-lettering is
//! exactly-once too. A topic gets the record again after a crash replays it (at-least-once); its
//! headers carry the coordinates so consumers can drop duplicates.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::source::OwnedRecord;

/// Errors writing to the dead-letter destination.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Cassandra refused or failed.
    #[error("dead-letter table {table}: {message}")]
    Table {
        /// The table.
        table: String,
        /// The driver's message.
        message: String,
    },
    /// Kafka refused or failed.
    #[error("dead-letter topic {topic}: {message}")]
    Topic {
        /// The topic.
        topic: String,
        /// librdkafka's message.
        message: String,
    },
}

/// A record that does not fit, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The record.
    pub record: OwnedRecord,
    /// Stable kind for metrics.
    pub kind: &'static str,
    /// The reason, for people.
    pub reason: String,
    /// Its deterministic write timestamp.
    pub write_timestamp: i64,
}

/// A dead-letter destination.
pub enum DeadLetter {
    /// A Cassandra table.
    Table {
        /// Session of the committer's cluster.
        session: Arc<Session>,
        /// The insert.
        insert: PreparedStatement,
        /// `keyspace.table`.
        table: String,
        /// Sink id.
        sink_id: String,
    },
    /// A Kafka topic.
    Topic {
        /// Producer.
        producer: FutureProducer,
        /// The dead-letter topic.
        topic: String,
        /// Sink id.
        sink_id: String,
    },
}

impl DeadLetter {
    /// Prepares the table destination.
    pub async fn table(
        session: Arc<Session>,
        keyspace: &str,
        table: &str,
        sink_id: &str,
    ) -> Result<Self, DeadLetterError> {
        let qualified = format!("{keyspace}.{table}");
        let insert = session
            .prepare(format!(
                "INSERT INTO {qualified} (sink_id, source_partition, source_offset, topic, record_key, \
                 record_value, record_timestamp, kind, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await
            .map_err(|error| DeadLetterError::Table {
                table: qualified.clone(),
                message: error.to_string(),
            })?;
        Ok(DeadLetter::Table {
            session,
            insert,
            table: qualified,
            sink_id: sink_id.to_owned(),
        })
    }

    /// Writes one rejected record.
    pub async fn write(&self, rejected: &Rejected) -> Result<(), DeadLetterError> {
        let record = &rejected.record;
        match self {
            DeadLetter::Table {
                session,
                insert,
                table,
                sink_id,
            } => {
                let mut statement = insert.clone();
                statement.set_timestamp(Some(rejected.write_timestamp));
                statement.set_is_idempotent(true);
                session
                    .execute_unpaged(
                        &statement,
                        (
                            crate::committer::row_key(sink_id, &record.topic),
                            record.partition,
                            record.offset,
                            &*record.topic,
                            record.key.as_deref(),
                            record.value.as_deref(),
                            record.timestamp_ms.map(CqlTimestamp),
                            rejected.kind,
                            &rejected.reason,
                        ),
                    )
                    .await
                    .map_err(|error| DeadLetterError::Table {
                        table: table.clone(),
                        message: error.to_string(),
                    })?;
                Ok(())
            }
            DeadLetter::Topic {
                producer,
                topic,
                sink_id,
            } => {
                let partition = record.partition.to_string();
                let offset = record.offset.to_string();
                let headers = OwnedHeaders::new()
                    .insert(header("cassandra-sink.sink", sink_id))
                    .insert(header("cassandra-sink.topic", &record.topic))
                    .insert(header("cassandra-sink.partition", &partition))
                    .insert(header("cassandra-sink.offset", &offset))
                    .insert(header("cassandra-sink.kind", rejected.kind))
                    .insert(header("cassandra-sink.reason", &rejected.reason));
                let mut message = FutureRecord::to(topic).headers(headers);
                if let Some(key) = &record.key {
                    message = message.key(key);
                }
                if let Some(value) = &record.value {
                    message = message.payload(value);
                }
                producer
                    .send(message, Duration::from_secs(30))
                    .await
                    .map_err(|(error, _)| DeadLetterError::Topic {
                        topic: topic.clone(),
                        message: error.to_string(),
                    })?;
                Ok(())
            }
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
