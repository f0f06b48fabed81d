//! The benchmark's reads of Cassandra tables: a sink's table, row by row, and how far a sink has
//! committed.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::data::Row;

/// Every row of `keyspace.table`, by id, read in pages.
pub async fn read(
    session: &Session,
    keyspace: &str,
    table: &str,
) -> anyhow::Result<BTreeMap<String, (i32, i64)>> {
    let rows = session
        .query_iter(
            format!("SELECT id, counter, seq FROM {keyspace}.{table}"),
            (),
        )
        .await?
        .rows_stream::<Row>()?
        .map_ok(|(id, counter, seq)| (id, (counter, seq)))
        .try_collect()
        .await?;
    Ok(rows)
}

/// How many records a sink has committed: the sum of its partitions' committed offsets in the
/// keyspace's `checkpoints` (every partition starts at offset 0), read a hundred partitions at a time
/// with one statement, prepared on the first read that finds the table (the worker creates it).
pub struct Committed {
    keyspace: String,
    sink_id: String,
    partitions: i32,
    query: Option<PreparedStatement>,
}

impl Committed {
    /// Reads of the `partitions` partitions of committer rows keyed `sink_id` (see `committer::row_key`).
    pub fn new(keyspace: &str, sink_id: &str, partitions: i32) -> Self {
        Self {
            keyspace: keyspace.to_owned(),
            sink_id: sink_id.to_owned(),
            partitions,
            query: None,
        }
    }

    /// Records committed now; an error while the committer table does not exist yet.
    pub async fn records(&mut self, session: &Session) -> anyhow::Result<i64> {
        let query = match &self.query {
            Some(query) => query.clone(),
            None => {
                let query = session
                    .prepare(format!(
                        "SELECT committed_offset FROM {}.checkpoints \
                         WHERE sink_id = ? AND source_partition IN ?",
                        self.keyspace
                    ))
                    .await?;
                self.query.insert(query).clone()
            }
        };
        let all: Vec<i32> = (0..self.partitions).collect();
        let mut total = 0;
        for chunk in all.chunks(100) {
            let offsets: Vec<(Option<i64>,)> = session
                .execute_iter(query.clone(), (&self.sink_id, chunk))
                .await?
                .rows_stream::<(Option<i64>,)>()?
                .try_collect()
                .await?;
            total += offsets.iter().filter_map(|(offset,)| *offset).sum::<i64>();
        }
        Ok(total)
    }
}
