//! A Kafka reader beside the ceiling (`--ceiling-beside-reader`): while the driver writes, a consumer
//! reads the pre-filled topic and parses every record, kept at most [`LEAD`] records ahead of the
//! writes, as a sink's own reading is. The driver's passes then share the machine's cores with the
//! same Kafka reading and parsing a sink does; what Cassandra spends per record beside it, against
//! what it spends under the driver alone, is what that sharing costs Cassandra on this machine,
//! whichever sink reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

/// How far the reader may run ahead of the writes: about one checkpoint of the worker's.
pub const LEAD: usize = 10_000;

/// What to read: the topic the sinks drain.
#[derive(Debug, Clone)]
pub struct Topic {
    /// The brokers.
    pub bootstrap: String,
    /// The topic.
    pub name: String,
    /// Its partitions.
    pub partitions: i32,
}

/// A reader under way; [`Running::stop`] ends it and says how many records it read.
pub struct Running {
    written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<usize>>,
}

impl Running {
    /// Starts reading `topic` from its beginning, up to `records` records.
    pub fn start(topic: &Topic, records: usize) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &topic.bootstrap)
            .set("group.id", format!("bench-beside-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .create()
            .context("a Kafka reader beside the ceiling")?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..topic.partitions {
            assignment.add_partition_offset(&topic.name, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let written = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (paced, stopped) = (written.clone(), stop.clone());
        let task = tokio::task::spawn_blocking(move || {
            let mut read = 0;
            while read < records && !stopped.load(Ordering::Relaxed) {
                if read >= paced.load(Ordering::Relaxed) + LEAD {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let message = message?;
                // Parsed as a sink parses it, so that the reader costs what a sink's reading does.
                let value: serde_json::Value =
                    serde_json::from_slice(message.payload().unwrap_or_default())?;
                std::hint::black_box(value);
                read += 1;
            }
            Ok(read)
        });
        Ok(Self {
            written,
            stop,
            task,
        })
    }

    /// Counts one write done, letting the reader go one record further.
    pub fn written(&self) {
        self.written.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends the reader; how many records it read.
    pub async fn stop(self) -> anyhow::Result<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}
