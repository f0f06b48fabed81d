//! (c) Recovery: how long a worker's partitions go without commits when it stops. Two release workers
//! share a topic under a steady flow of records; one is stopped in each way a worker stops in a
//! cluster, and the stall is measured from the stop until every partition it held has committed
//! again. On the local clusters (`--cluster`) a Cassandra node and then a Kafka broker are killed
//! under the remaining worker, and the cost is how long the records produced before the kill take to
//! be committed, next to the same measure with nothing killed. The table is then checked against the
//! records produced: exactly once, through every stop.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cassandra_sink_tests::Settings;
use cassandra_sink_tests::fixtures::{self, create_topic};
use cassandra_sink_tests::nodes::{Down, leader_of_partition_0};
use cassandra_sink_tests::worker::Worker;
use rdkafka::producer::FutureProducer;
use scylla::client::session::Session;

/// Records per second produced while the workers run.
const RATE: u64 = 500;

/// One way of stopping a worker, and the stall it caused.
pub struct Stall {
    /// What was done.
    pub what: &'static str,
    /// From the stop until every partition the worker held had committed again.
    pub stall: Duration,
    /// Partitions the worker held.
    pub partitions: usize,
}

/// Where the workers commit, and what they held.
struct Committer<'a> {
    session: &'a Session,
    keyspace: &'a str,
    /// The committer's row key of the topic's partitions: sink id and topic.
    row_key: String,
    partitions: i32,
}

impl Committer<'_> {
    /// Each partition's owner and committed offset.
    async fn owners(&self) -> anyhow::Result<BTreeMap<i32, (String, i64)>> {
        let mut owners = BTreeMap::new();
        for partition in 0..self.partitions {
            let row = self
                .session
                .query_unpaged(
                    format!(
                        "SELECT owner, committed_offset FROM {}.checkpoints \
                         WHERE sink_id = ? AND source_partition = ?",
                        self.keyspace
                    ),
                    (&self.row_key, partition),
                )
                .await?
                .into_rows_result()?
                .maybe_first_row::<(Option<String>, Option<i64>)>()?;
            if let Some((Some(owner), Some(offset))) = row {
                owners.insert(partition, (owner, offset));
            }
        }
        Ok(owners)
    }

    /// Waits until every partition commits and each of `workers` holds some: the group has settled.
    async fn settled(&self, workers: &[&str]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        // Until the first worker has created the committer table, nothing is committed.
        let mut last = self.owners().await.unwrap_or_default();
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let now = self.owners().await.unwrap_or_default();
            let all_moved = (0..self.partitions).all(|partition| {
                match (now.get(&partition), last.get(&partition)) {
                    (Some((_, offset)), Some((_, before))) => offset > before,
                    _ => false,
                }
            });
            let all_hold = workers
                .iter()
                .all(|worker| now.values().any(|(owner, _)| owner == worker));
            if all_moved && all_hold {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the group did not settle with {workers:?}: {now:?}"
            );
            last = now;
        }
    }

    /// [`Committer::owners`], asked again while Cassandra does not answer: right after a node is
    /// killed, a read the driver sent to it fails until the driver has marked it down.
    async fn owners_patiently(&self) -> anyhow::Result<BTreeMap<i32, (String, i64)>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.owners().await {
                Ok(owners) => return Ok(owners),
                Err(error) if Instant::now() < deadline => {
                    eprintln!("reading the committer table failed ({error}); retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Stops a server with `stop` (`what` says how) and measures until every record produced before
    /// the stop is committed: Kafka's end of each partition is read just before it. The same measure
    /// with nothing stopped is the time a record takes anyway.
    async fn drained_after(
        &self,
        settings: &Settings,
        topic: &str,
        what: &'static str,
        stop: impl FnOnce(),
    ) -> anyhow::Result<Stall> {
        let ends = fixtures::end_offsets(settings, topic, self.partitions)?;
        let stopped = Instant::now();
        stop();
        loop {
            let now = self.owners_patiently().await?;
            let done = ends
                .iter()
                .all(|(partition, end)| now.get(partition).is_some_and(|(_, at)| at >= end));
            if done {
                return Ok(Stall {
                    what,
                    stall: stopped.elapsed(),
                    partitions: ends.len(),
                });
            }
            anyhow::ensure!(
                stopped.elapsed() < Duration::from_secs(120),
                "the records produced before \"{what}\" were not committed within 2 minutes: \
                 Kafka ends {ends:?}, committed {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops `victim` with `stop` (`what` says how) and measures until each partition it held has
    /// committed past where it stood at the stop; `handed_over` when that must be by another worker.
    async fn stall(
        &self,
        what: &'static str,
        victim: &str,
        stop: impl FnOnce(),
        handed_over: bool,
    ) -> anyhow::Result<Stall> {
        let held: Vec<i32> = self
            .owners()
            .await?
            .into_iter()
            .filter(|(_, (owner, _))| owner == victim)
            .map(|(partition, _)| partition)
            .collect();
        anyhow::ensure!(!held.is_empty(), "{victim} holds no partition");
        let stopped = Instant::now();
        stop();
        // Read right after the stop: a killed worker commits nothing more, and a stopping one's last
        // commit is its own, which `handed_over` does not count.
        let at_stop = self.owners().await?;
        loop {
            let now = self.owners().await?;
            let done = held.iter().all(|partition| {
                let (owner, offset) = &now[partition];
                *offset > at_stop[partition].1 && (!handed_over || owner != victim)
            });
            if done {
                return Ok(Stall {
                    what,
                    stall: stopped.elapsed(),
                    partitions: held.len(),
                });
            }
            anyhow::ensure!(
                stopped.elapsed() < Duration::from_secs(120),
                "the partitions of {victim} did not commit again within 2 minutes: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs part (c) on a topic and table of its own in `keyspace`.
pub async fn run(
    settings: &Settings,
    session: &Session,
    keyspace: &str,
    partitions: i32,
    worker: &Path,
) -> anyhow::Result<Vec<Stall>> {
    let topic = format!("{}-recovery", keyspace.replace('_', "-"));
    create_topic(settings, &topic, partitions).await?;
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {keyspace}.recovery (id text PRIMARY KEY, counter int, seq bigint)"
            ),
            (),
        )
        .await?;
    session.await_schema_agreement().await?;
    let dir = std::env::temp_dir().join(format!("{keyspace}-recovery"));
    let sink_id = format!("bench/{keyspace}-recovery");
    // The product's defaults: a checkpoint a second, the worker's Kafka session timeout.
    let config = crate::sink_config(
        settings,
        &dir,
        &sink_id,
        &format!("{keyspace}.recovery"),
        &topic,
        "",
    )?;

    let flowing = Arc::new(AtomicBool::new(true));
    let flow = tokio::spawn(produce(
        fixtures::producer(settings)?,
        topic.clone(),
        partitions,
        flowing.clone(),
    ));
    let committer = Committer {
        session,
        keyspace,
        row_key: cassandra_sink_worker::committer::row_key(&sink_id, &topic),
        partitions,
    };
    let start = |name: &str| Worker::start_binary(worker, &config, name, &[]);
    let mut stalls = Vec::new();
    // Every worker is started with a name, as the operator names each after its pod: a static member.
    let stayed = start("r1");
    let first = start("r0");
    committer.settled(&["r0", "r1"]).await?;

    let mut restarted = None;
    stalls.push(
        committer
            .stall(
                "kill -9, restarted under the same name (a crashed container, restarted in its pod)",
                "r0",
                || {
                    first.kill();
                    restarted = Some(start("r0"));
                },
                false,
            )
            .await?,
    );
    let restarted = restarted.expect("restarted");
    committer.settled(&["r0", "r1"]).await?;

    let mut renamed = None;
    stalls.push(
        committer
            .stall(
                "kill -9, restarted under a new name (no stable identity; a pod lost with its node)",
                "r0",
                || {
                    restarted.kill();
                    renamed = Some(start("r2"));
                },
                false,
            )
            .await?,
    );
    let renamed = renamed.expect("restarted");
    committer.settled(&["r1", "r2"]).await?;

    stalls.push(
        committer
            .stall(
                "SIGTERM (scale-down, rolling update): handed over to the other worker",
                "r2",
                || {
                    renamed.terminate(Duration::from_secs(30));
                },
                true,
            )
            .await?,
    );

    if settings.cluster.is_some() {
        stalls.extend(node_losses(settings, &committer, &topic).await?);
    }

    // Exactly once through all of it: the flow stops, the last worker drains it, and the table holds
    // the last update of every key.
    flowing.store(false, Ordering::SeqCst);
    let (expected, produced) = flow.await??;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed: i64 = committer
            .owners()
            .await?
            .values()
            .map(|(_, offset)| offset)
            .sum();
        if committed >= produced {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{committed} of {produced} records committed a minute after the flow stopped; logs in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stayed.terminate(Duration::from_secs(30)).success());
    let table: BTreeMap<String, (i32, i64)> = session
        .query_unpaged(
            format!("SELECT id, counter, seq FROM {keyspace}.recovery"),
            (),
        )
        .await?
        .into_rows_result()?
        .rows::<(String, i32, i64)>()?
        .map(|row| row.map(|(id, counter, seq)| (id, (counter, seq))))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        table == expected,
        "the table differs from the last update of each key; logs in {}",
        dir.display()
    );
    std::fs::remove_dir_all(dir).ok();
    Ok(stalls)
}

/// On the local clusters, with one worker holding every partition: how long records produced before
/// a server is killed take to be committed, against the same with nothing killed. Each killed node is
/// started again (and the worker seen committing everywhere) before the next.
async fn node_losses(
    settings: &Settings,
    committer: &Committer<'_>,
    topic: &str,
) -> anyhow::Result<Vec<Stall>> {
    committer.settled(&["r1"]).await?;
    let mut stalls = vec![
        committer
            .drained_after(
                settings,
                topic,
                "nothing stopped: records produced until now committed (for comparison)",
                || {},
            )
            .await?,
    ];
    let mut down = None;
    stalls.push(
        committer
            .drained_after(
                settings,
                topic,
                "kill -9 of one Cassandra node of three (three copies, LOCAL_QUORUM): \
                 records produced before it committed",
                || down = Some(Down::kill(&["cluster-cassandra-2"])),
            )
            .await?,
    );
    tokio::task::block_in_place(|| drop(down.take()));
    committer.settled(&["r1"]).await?;
    let leader = leader_of_partition_0(settings, topic)?;
    stalls.push(
        committer
            .drained_after(
                settings,
                topic,
                "kill -9 of the Kafka broker leading partition 0 (three copies, min.insync 2): \
                 records produced before it committed",
                || down = Some(Down::kill(&[leader])),
            )
            .await?,
    );
    tokio::task::block_in_place(|| drop(down.take()));
    committer.settled(&["r1"]).await?;
    Ok(stalls)
}

/// Produces [`RATE`] records a second over 100 keys until `flowing` is cleared; returns the last
/// (counter, seq) of each key and how many records were produced.
async fn produce(
    producer: FutureProducer,
    topic: String,
    partitions: i32,
    flowing: Arc<AtomicBool>,
) -> anyhow::Result<(BTreeMap<String, (i32, i64)>, i64)> {
    let mut expected = BTreeMap::new();
    let mut seq = 0i64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (RATE / 100).max(1) as i64;
    while flowing.load(Ordering::SeqCst) {
        tick.tick().await;
        let mut sends = Vec::new();
        for _ in 0..per_tick {
            let key = seq % 100;
            let id = format!("k{key}");
            let counter = expected
                .get(&id)
                .map_or(1, |(counter, _): &(i32, i64)| counter + 1);
            expected.insert(id.clone(), (counter, seq));
            let value = serde_json::json!([id, counter, seq]).to_string();
            let partition = (key % i64::from(partitions)) as i32;
            let (producer, topic) = (&producer, &topic);
            sends.push(async move {
                fixtures::send(producer, topic, partition, &id, value.as_bytes()).await
            });
            seq += 1;
        }
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
    }
    Ok((expected, seq))
}
