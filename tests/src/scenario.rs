//! A sink under test: its own keyspace, topic and folder, the seed's table with a sequence column, and
//! the expected final state computed from what was produced.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::fixtures::{self, create_keyspace, create_topic};
use crate::{Settings, unique_name};
use rdkafka::producer::FutureProducer;
use scylla::client::session::Session;

/// A dead-letter row: offset, kind, reason and the record's value.
pub type DeadLetterRow = (i64, String, String, Option<Vec<u8>>);

/// One sink's servers-side fixtures.
pub struct Scenario {
    /// Where the servers are.
    pub settings: Settings,
    /// A session on the local Cassandra.
    pub session: Session,
    /// The scenario's own keyspace (also the committer's).
    pub keyspace: String,
    /// The scenario's own topic (the first, when it has several).
    pub topic: String,
    /// Every topic the scenario produces to, with its partition count (the first is `topic`).
    pub topics: Vec<(String, i32)>,
    /// The sink id in the configuration.
    pub sink_id: String,
    /// Partitions of the (first) topic.
    pub partitions: i32,
    /// A folder for the configuration and worker logs.
    pub dir: PathBuf,
    /// The worker configuration file.
    pub config: PathBuf,
    producer: FutureProducer,
    /// Last (counter, seq) produced per id: the state the table must end in.
    pub expected: BTreeMap<String, (i32, i64)>,
    counters: BTreeMap<String, i32>,
    /// Records produced so far.
    pub produced: i64,
    /// Whether records and rows carry the `seq` column (the seed's own table has only id and counter).
    seq: bool,
}

impl Scenario {
    /// Keyspace, topic and a config with the seed's statement extended by a `seq` column, plus `extra`
    /// YAML appended to the configuration (`$KEYSPACE` in it stands for the scenario's keyspace).
    pub async fn new(name: &str, partitions: i32, extra: &str) -> anyhow::Result<Self> {
        let settings = Settings::from_env();
        let session = fixtures::cassandra(&settings).await?;
        Self::on(settings, session, name, partitions, extra).await
    }

    /// Like [`Scenario::new`], on the Cassandra `session` is connected to (whose address is
    /// `settings.cassandra`).
    pub async fn on(
        settings: Settings,
        session: Session,
        name: &str,
        partitions: i32,
        extra: &str,
    ) -> anyhow::Result<Self> {
        Self::build(settings, session, name, &[partitions], extra).await
    }

    /// Like [`Scenario::new`], reading several topics (`source.kafka.topics`), one per entry of
    /// `partitions` with that many partitions, named `<base>-t<n>`. Each id lives in one topic.
    pub async fn several(name: &str, partitions: &[i32], extra: &str) -> anyhow::Result<Self> {
        let settings = Settings::from_env();
        let session = fixtures::cassandra(&settings).await?;
        Self::build(settings, session, name, partitions, extra).await
    }

    async fn build(
        settings: Settings,
        session: Session,
        name: &str,
        partitions: &[i32],
        extra: &str,
    ) -> anyhow::Result<Self> {
        let keyspace = unique_name(name);
        match &settings.cluster {
            Some(layout) => {
                fixtures::create_keyspace_with(&session, &keyspace, &layout.keyspace_copies).await?
            }
            None => create_keyspace(&session, &keyspace).await?,
        }
        let base = keyspace.replace('_', "-");
        let topics: Vec<(String, i32)> = match partitions {
            [only] => vec![(base.clone(), *only)],
            several => several
                .iter()
                .enumerate()
                .map(|(index, count)| (format!("{base}-t{index}"), *count))
                .collect(),
        };
        for (topic, count) in &topics {
            create_topic(&settings, topic, *count).await?;
        }
        let source = match topics.as_slice() {
            [(only, _)] => format!("topic: {only}"),
            several => format!(
                "topics: [{}]",
                several
                    .iter()
                    .map(|(topic, _)| topic.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let (topic, partitions) = topics[0].clone();
        let dir = std::env::temp_dir().join(&keyspace);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("sink.yaml");
        let sink_id = format!("tests/{keyspace}");
        std::fs::write(
            &config,
            format!(
                r#"sinkId: {sink_id}
cassandra:
  contactPoints: [{cassandra}]
  localDatacenter: {datacenter}
createQuery: "CREATE TABLE IF NOT EXISTS {keyspace}.values (id text PRIMARY KEY, counter int, seq bigint);"
insertQuery: "INSERT INTO {keyspace}.values (id, counter, seq) VALUES (?, ?, ?);"
committer: {{ keyspace: {keyspace}, table: checkpoints }}
source:
  kafka: {{ bootstrapServers: ["{kafka}"], {source} }}
{extra}"#,
                extra = extra.replace("$KEYSPACE", &keyspace),
                cassandra = settings.contact_points_yaml(),
                datacenter = settings.datacenter(),
                kafka = settings.kafka,
            ),
        )?;
        let producer = fixtures::producer(&settings)?;
        Ok(Self {
            settings,
            session,
            keyspace,
            topic,
            topics,
            sink_id,
            partitions,
            dir,
            config,
            producer,
            expected: BTreeMap::new(),
            counters: BTreeMap::new(),
            produced: 0,
            seq: true,
        })
    }

    /// Records `[id, counter]` and rows without `seq`: the seed's own example (`examples/seed.yaml`).
    /// Each id's counter counts its updates, so a row still shows a lost, repeated or reordered one.
    pub fn seed_shaped(mut self) -> Self {
        self.seq = false;
        self
    }

    /// Environment for a worker with a static group membership `instance` (a restarted worker gets its
    /// partitions back at once instead of waiting for its old session to expire).
    pub fn worker_env(instance: &str) -> Vec<(&'static str, String)> {
        vec![(
            "CASSANDRA_SINK__SOURCE__KAFKA__PROPERTIES",
            format!("{{group.instance.id: {instance}, session.timeout.ms: \"6000\"}}"),
        )]
    }

    /// Produces `count` updates over `keys` ids (each id always on the same partition), as JSON arrays
    /// `[id, counter, seq]`; `counter` counts the updates of that id.
    pub async fn produce(&mut self, count: i64, keys: usize) -> anyhow::Result<()> {
        self.produce_updates(count, keys, None).await
    }

    /// Like [`Scenario::produce`], but every `delete_every`-th update of an id is a tombstone (key,
    /// no value) that deletes its row; the next update writes it again. Needs a sink that deletes on
    /// tombstones ([`Scenario::DELETE_ON_TOMBSTONE`]).
    pub async fn produce_with_deletes(
        &mut self,
        count: i64,
        keys: usize,
        delete_every: i32,
    ) -> anyhow::Result<()> {
        self.produce_updates(count, keys, Some(delete_every)).await
    }

    /// Configuration of a sink that deletes the row of a tombstone's key.
    pub const DELETE_ON_TOMBSTONE: &str = "delete: { query: \"DELETE FROM $KEYSPACE.values WHERE id = ?\", mapping: { fields: [key] } }\n";

    /// Configuration of a sink that also writes every record to a second table, `mirror` (made by
    /// [`Scenario::create_mirror`]), and deletes it there too.
    pub const FAN_OUT_TO_MIRROR: &str = "fanOut:\n\
        - { query: \"INSERT INTO $KEYSPACE.mirror (id, counter, seq) VALUES (?, ?, ?)\", mapping: { jsonArray: {} } }\n\
        - { query: \"DELETE FROM $KEYSPACE.mirror WHERE id = ?\", mapping: { fields: [key] }, on: delete }\n";

    /// Creates the `mirror` table of [`Scenario::FAN_OUT_TO_MIRROR`].
    pub async fn create_mirror(&self) -> anyhow::Result<()> {
        self.session
            .query_unpaged(
                format!(
                    "CREATE TABLE {}.mirror (id text PRIMARY KEY, counter int, seq bigint)",
                    self.keyspace
                ),
                (),
            )
            .await?;
        self.session.await_schema_agreement().await?;
        Ok(())
    }

    /// [`Scenario::produce`] (`delete_every: None`) or [`Scenario::produce_with_deletes`].
    pub async fn produce_updates(
        &mut self,
        count: i64,
        keys: usize,
        delete_every: Option<i32>,
    ) -> anyhow::Result<()> {
        for _ in 0..count {
            let seq = self.produced;
            // Round robin over the topics; an id belongs to one topic, and to one partition of it.
            let (topic, partitions) = &self.topics[(seq as usize) % self.topics.len()];
            let index = (seq as usize / self.topics.len()) % keys;
            let id = if self.topics.len() == 1 {
                format!("id{index}")
            } else {
                format!("{}-id{index}", topic.rsplit('-').next().unwrap_or_default())
            };
            let counter = self.counters.entry(id.clone()).or_insert(0);
            *counter += 1;
            let partition = (index as i32) % partitions;
            if delete_every.is_some_and(|every| *counter % every == 0) {
                fixtures::send_tombstone(&self.producer, topic, partition, &id).await?;
                self.expected.remove(&id);
                self.produced += 1;
                continue;
            }
            let value = if self.seq {
                serde_json::json!([id, *counter, seq])
            } else {
                serde_json::json!([id, *counter])
            }
            .to_string();
            fixtures::send(&self.producer, topic, partition, &id, value.as_bytes()).await?;
            self.expected
                .insert(id, (*counter, if self.seq { seq } else { -1 }));
            self.produced += 1;
        }
        Ok(())
    }

    /// Produces raw values to partition 0.
    pub async fn produce_raw(&mut self, values: &[&[u8]]) -> anyhow::Result<()> {
        for value in values {
            fixtures::send(&self.producer, &self.topic, 0, "raw", value).await?;
            self.produced += 1;
        }
        Ok(())
    }

    /// Produces a tombstone (key, no value) to partition 0.
    pub async fn produce_tombstone(&mut self, key: &str) -> anyhow::Result<()> {
        fixtures::send_tombstone(&self.producer, &self.topic, 0, key).await?;
        self.produced += 1;
        Ok(())
    }

    /// The table's rows: id → (counter, seq).
    pub async fn table(&self) -> anyhow::Result<BTreeMap<String, (i32, i64)>> {
        self.table_named("values").await
    }

    /// The rows of another table of the scenario's keyspace with the columns id, counter and seq
    /// (seq -1 for a seed-shaped scenario).
    pub async fn table_named(&self, table: &str) -> anyhow::Result<BTreeMap<String, (i32, i64)>> {
        let result = if self.seq {
            self.session
                .query_unpaged(
                    format!("SELECT id, counter, seq FROM {}.{table}", self.keyspace),
                    (),
                )
                .await?
                .into_rows_result()?
                .rows::<(String, Option<i32>, Option<i64>)>()?
                .collect::<Result<Vec<_>, _>>()?
        } else {
            self.session
                .query_unpaged(
                    format!("SELECT id, counter FROM {}.{table}", self.keyspace),
                    (),
                )
                .await?
                .into_rows_result()?
                .rows::<(String, Option<i32>)>()?
                .map(|row| row.map(|(id, counter)| (id, counter, None)))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(result
            .into_iter()
            .map(|(id, counter, seq)| (id, (counter.unwrap_or(0), seq.unwrap_or(-1))))
            .collect())
    }

    /// Creates one more topic, `<base>-t<n>`, with `partitions` partitions; later records are
    /// produced to it too. Returns its name.
    pub async fn add_topic(&mut self, partitions: i32) -> anyhow::Result<String> {
        let base = self.keyspace.replace('_', "-");
        let topic = format!("{base}-t{}", self.topics.len());
        create_topic(&self.settings, &topic, partitions).await?;
        self.topics.push((topic.clone(), partitions));
        Ok(topic)
    }

    /// Committed offset, epoch and records per partition of every topic.
    pub async fn committed_by_topic(
        &self,
    ) -> anyhow::Result<BTreeMap<(String, i32), (Option<i64>, i64, Option<i64>)>> {
        let mut all = BTreeMap::new();
        for (topic, partitions) in &self.topics {
            let rows = fixtures::committed(
                &self.session,
                &self.keyspace,
                "checkpoints",
                (&self.sink_id, topic),
                *partitions,
            )
            .await?;
            all.extend(
                rows.into_iter()
                    .map(|(partition, row)| ((topic.clone(), partition), row)),
            );
        }
        Ok(all)
    }

    /// Committed offset, epoch and records per partition (of the first topic).
    pub async fn committed(
        &self,
    ) -> anyhow::Result<BTreeMap<i32, (Option<i64>, i64, Option<i64>)>> {
        fixtures::committed(
            &self.session,
            &self.keyspace,
            "checkpoints",
            (&self.sink_id, &self.topic),
            self.partitions,
        )
        .await
    }

    /// The rows of the default dead-letter table for partition 0 of the first topic, by offset:
    /// offset, kind, reason and the record's value.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<DeadLetterRow>> {
        Ok(self
            .session
            .query_unpaged(
                format!(
                    "SELECT source_offset, kind, reason, record_value FROM {}.checkpoints_dead_letter \
                     WHERE sink_id = ? AND source_partition = 0",
                    self.keyspace
                ),
                (cassandra_sink_worker::committer::row_key(
                    &self.sink_id,
                    &self.topic,
                ),),
            )
            .await?
            .into_rows_result()?
            .rows::<DeadLetterRow>()?
            .collect::<Result<_, _>>()?)
    }

    /// Checks that `table` holds exactly the last update of every id and that the committed
    /// checkpoints counted every produced record once; returns the committer rows for further checks.
    pub async fn assert_applied_once(
        &self,
        table: &str,
    ) -> anyhow::Result<BTreeMap<i32, (Option<i64>, i64, Option<i64>)>> {
        assert_eq!(
            self.table_named(table).await?,
            self.expected,
            "the table differs from applying every record once, in offset order"
        );
        let counted: i64 = self
            .committed_by_topic()
            .await?
            .values()
            .map(|(_, _, records)| records.unwrap_or(0))
            .sum();
        let committed = self.committed().await?;
        assert_eq!(counted, self.produced, "records committed: {committed:?}");
        Ok(committed)
    }

    /// Waits until every partition's committed offset reaches Kafka's end offset.
    pub async fn wait_until_caught_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut ends = BTreeMap::new();
        for (topic, partitions) in &self.topics {
            for (partition, end) in fixtures::end_offsets(&self.settings, topic, *partitions)? {
                ends.insert((topic.clone(), partition), end);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            // Until the worker has created the committer table, there is nothing committed.
            let committed = self.committed_by_topic().await.unwrap_or_default();
            let caught_up = ends.iter().all(|(partition, end)| {
                *end == 0
                    || committed.get(partition).and_then(|(offset, _, _)| *offset) == Some(*end)
            });
            if caught_up {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "not caught up after {timeout:?}: Kafka ends {ends:?}, committed {committed:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Drops the keyspace and the folder.
    pub async fn clean_up(self) -> anyhow::Result<()> {
        fixtures::drop_keyspace(&self.session, &self.keyspace).await?;
        std::fs::remove_dir_all(&self.dir).ok();
        Ok(())
    }
}

/// Watches the table while workers crash and restart, and records any row whose `seq` went backwards
/// between two reads: a regression a reader could see.
pub struct RegressionWatch {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<String>>>,
}

impl RegressionWatch {
    /// Starts reading the table every 50 ms.
    pub async fn start(settings: &Settings, keyspace: &str) -> anyhow::Result<Self> {
        let session = fixtures::cassandra(settings).await?;
        let query = format!("SELECT id, seq FROM {keyspace}.values");
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut seen: BTreeMap<String, i64> = BTreeMap::new();
            let mut regressions = Vec::new();
            while !*stopped.borrow() {
                if let Ok(result) = session.query_unpaged(query.as_str(), ()).await
                    && let Ok(rows) = result.into_rows_result()
                {
                    for (id, seq) in rows.rows::<(String, Option<i64>)>()?.flatten() {
                        let seq = seq.unwrap_or(-1);
                        let previous = seen.entry(id.clone()).or_insert(seq);
                        if seq < *previous {
                            regressions.push(format!("{id}: seq {previous} then {seq}"));
                        }
                        *previous = (*previous).max(seq);
                    }
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), stopped.changed()).await;
            }
            Ok(regressions)
        });
        Ok(Self { stop, task })
    }

    /// Stops watching; returns every regression seen.
    pub async fn finish(self) -> anyhow::Result<Vec<String>> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}
