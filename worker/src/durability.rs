//! Whether a committed checkpoint survives the loss of a node, given the keyspaces' replication and
//! the consistency levels the sink writes and commits with.
//!
//! A checkpoint is committed after every write of it was acknowledged at the configured consistency.
//! If that acknowledgement can come from a single replica (`ONE`, `LOCAL_ONE`, or `LOCAL_QUORUM` in a
//! datacenter holding one copy) while the keyspace has several, losing that replica before the others
//! have the write loses a record whose offset is already committed: the sink would never write it
//! again. Such a spec is refused. A consistency that more replicas must acknowledge than exist where
//! it counts (`THREE` with replication factor 2, `LOCAL_QUORUM` in a datacenter without replicas) can
//! never succeed, and is refused too. A keyspace with a single copy (a development cluster) loses data
//! with its node whatever the consistency: that is the cluster's choice, and is only warned about.
//!
//! The committer's transactions are Paxos rounds among the replicas of the committer row in the
//! scope of the serial consistency (`LOCAL_SERIAL`: the local datacenter; `SERIAL`: every one), and
//! its reads are serial reads in the same scope; a transaction a quorum of that scope accepted
//! survives the loss of one node when the scope holds two copies or more.
//!
//! [`check`] and [`check_serial`] are the pure decisions; [`read_replication`] asks Cassandra for a
//! keyspace's replication, and [`verify`] judges a sink's every use of a keyspace with them (the
//! worker at start, the operator before it starts workers).

use std::collections::BTreeMap;

use scylla::client::session::Session;

use crate::config::{CassandraConfig, Consistency, SerialConsistency, SinkConfig};

/// A keyspace's replication, as `system_schema.keyspaces` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy`: this many copies, datacenters ignored.
    Simple(u32),
    /// `NetworkTopologyStrategy`: copies in each named datacenter.
    ByDatacenter(BTreeMap<String, u32>),
    /// A strategy of Cassandra's own (`LocalStrategy`, `EverywhereStrategy`) or one this check does
    /// not know: it is not judged.
    Other(String),
}

impl Replication {
    /// Reads the `replication` map of `system_schema.keyspaces` (a transient count such as `3/1` counts
    /// its full replicas only).
    pub fn from_options(options: &BTreeMap<String, String>) -> Replication {
        let class = options.get("class").map(String::as_str).unwrap_or_default();
        let copies = |value: &String| {
            value
                .split('/')
                .next()
                .and_then(|count| count.trim().parse::<u32>().ok())
                .unwrap_or(0)
        };
        let short = class.rsplit('.').next().unwrap_or(class);
        match short {
            "SimpleStrategy" => {
                Replication::Simple(options.get("replication_factor").map_or(0, copies))
            }
            "NetworkTopologyStrategy" => Replication::ByDatacenter(
                options
                    .iter()
                    .filter(|(key, _)| key.as_str() != "class")
                    .map(|(datacenter, value)| (datacenter.clone(), copies(value)))
                    .collect(),
            ),
            _ => Replication::Other(class.to_owned()),
        }
    }

    fn total(&self) -> u32 {
        match self {
            Replication::Simple(copies) => *copies,
            Replication::ByDatacenter(datacenters) => datacenters.values().sum(),
            Replication::Other(_) => 0,
        }
    }

    /// Copies in the local datacenter; without one named, the fewest of any datacenter that holds
    /// some (the coordinator may be in any of them).
    fn local(&self, local_datacenter: Option<&str>) -> u32 {
        match (self, local_datacenter) {
            (Replication::Simple(copies), _) => *copies,
            (Replication::ByDatacenter(datacenters), Some(local)) => {
                datacenters.get(local).copied().unwrap_or(0)
            }
            (Replication::ByDatacenter(datacenters), None) => datacenters
                .values()
                .copied()
                .filter(|copies| *copies > 0)
                .min()
                .unwrap_or(0),
            (Replication::Other(_), _) => 0,
        }
    }
}

/// What is written, to which keyspace: the words of a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use<'a> {
    /// What the writes are (`data writes`, `the committer's commits`).
    pub what: &'a str,
    /// Where their consistency is set (`cassandra.consistency`).
    pub field: &'a str,
    /// The keyspace written.
    pub keyspace: &'a str,
}

/// A consistency the keyspace's replication makes unsafe or impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurabilityError {
    /// An acknowledgement from one replica, with more copies than that: a committed checkpoint
    /// would not survive the loss of that node.
    #[error(
        "{field} {consistency} lets one replica acknowledge {what} to keyspace {keyspace}, which \
         keeps {copies} copies: a checkpoint committed on that one acknowledgement is lost with its \
         node; use LOCAL_QUORUM (or QUORUM) so a committed checkpoint survives the loss of any one node"
    )]
    SingleAcknowledgement {
        /// Where the consistency is set.
        field: String,
        /// The consistency.
        consistency: Consistency,
        /// What is written.
        what: String,
        /// The keyspace.
        keyspace: String,
        /// Copies of each row the keyspace keeps.
        copies: u32,
    },
    /// More acknowledgements than there are replicas where they are counted.
    #[error(
        "{field} {consistency} needs {needed} replicas to acknowledge {what}, but keyspace \
         {keyspace} keeps {copies} {scope}: every write would fail"
    )]
    Unreachable {
        /// Where the consistency is set.
        field: String,
        /// The consistency.
        consistency: Consistency,
        /// What is written.
        what: String,
        /// The keyspace.
        keyspace: String,
        /// Acknowledgements needed.
        needed: u32,
        /// Copies where they are counted.
        copies: u32,
        /// Where they are counted (`in datacenter dc1`, `in all`).
        scope: String,
    },
    /// The committer's serial consistency has no replicas to run its transactions on.
    #[error(
        "committer.serialConsistency {serial} runs the committer's transactions among the copies \
         of keyspace {keyspace} {scope}, and there are none"
    )]
    NoSerialReplicas {
        /// The serial consistency.
        serial: SerialConsistency,
        /// The committer keyspace.
        keyspace: String,
        /// Where they are counted.
        scope: String,
    },
}

/// What a consistency that is not refused still deserves a word about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The keyspace keeps one copy: its node's loss loses data whatever the sink does.
    SingleCopy {
        /// The keyspace.
        keyspace: String,
    },
    /// The keyspace's replication strategy is not one this check knows.
    Unjudged {
        /// The keyspace.
        keyspace: String,
        /// Its strategy class.
        class: String,
    },
}

fn quorum(copies: u32) -> u32 {
    copies / 2 + 1
}

/// Acknowledgements a consistency waits for, and how many copies exist where they are counted.
fn acknowledgements(
    consistency: Consistency,
    replication: &Replication,
    local_datacenter: Option<&str>,
) -> (u32, u32, String) {
    let total = replication.total();
    let local = replication.local(local_datacenter);
    let in_local = || match local_datacenter {
        Some(datacenter) => format!("in datacenter {datacenter}"),
        None => "in its smallest datacenter".to_owned(),
    };
    let everywhere = || "in all".to_owned();
    match consistency {
        Consistency::One => (1, total, everywhere()),
        Consistency::Two => (2, total, everywhere()),
        Consistency::Three => (3, total, everywhere()),
        Consistency::Quorum => (quorum(total), total, everywhere()),
        Consistency::All => (total, total, everywhere()),
        Consistency::LocalOne => (1, local, in_local()),
        Consistency::LocalQuorum => (quorum(local), local, in_local()),
        Consistency::EachQuorum => match replication {
            Replication::ByDatacenter(datacenters) => (
                datacenters
                    .values()
                    .filter(|copies| **copies > 0)
                    .map(|copies| quorum(*copies))
                    .sum(),
                total,
                everywhere(),
            ),
            _ => (quorum(total), total, everywhere()),
        },
    }
}

/// Judges writes at `consistency` to a keyspace replicated as `replication`: refused when they can
/// never succeed or when one node's loss can lose a committed write; a warning when the keyspace
/// itself keeps one copy.
pub fn check(
    usage: &Use<'_>,
    consistency: Consistency,
    replication: &Replication,
    local_datacenter: Option<&str>,
) -> Result<Option<Warning>, DurabilityError> {
    if let Replication::Other(class) = replication {
        return Ok(Some(Warning::Unjudged {
            keyspace: usage.keyspace.to_owned(),
            class: class.clone(),
        }));
    }
    let (needed, copies, scope) = acknowledgements(consistency, replication, local_datacenter);
    if needed > copies || copies == 0 {
        return Err(DurabilityError::Unreachable {
            field: usage.field.to_owned(),
            consistency,
            what: usage.what.to_owned(),
            keyspace: usage.keyspace.to_owned(),
            needed,
            copies,
            scope,
        });
    }
    let total = replication.total();
    if needed < 2 && total >= 2 {
        return Err(DurabilityError::SingleAcknowledgement {
            field: usage.field.to_owned(),
            consistency,
            what: usage.what.to_owned(),
            keyspace: usage.keyspace.to_owned(),
            copies: total,
        });
    }
    Ok((total == 1).then(|| Warning::SingleCopy {
        keyspace: usage.keyspace.to_owned(),
    }))
}

/// Judges the committer's transactions: the scope of `serial` must hold copies of its keyspace.
pub fn check_serial(
    keyspace: &str,
    serial: SerialConsistency,
    replication: &Replication,
    local_datacenter: Option<&str>,
) -> Result<(), DurabilityError> {
    if matches!(replication, Replication::Other(_)) {
        return Ok(());
    }
    let (copies, scope) = match serial {
        SerialConsistency::Serial => (replication.total(), "in all".to_owned()),
        SerialConsistency::LocalSerial => (
            replication.local(local_datacenter),
            local_datacenter.map_or("in its smallest datacenter".to_owned(), |datacenter| {
                format!("in datacenter {datacenter}")
            }),
        ),
    };
    if copies == 0 {
        return Err(DurabilityError::NoSerialReplicas {
            serial,
            keyspace: keyspace.to_owned(),
            scope,
        });
    }
    Ok(())
}

/// The replication of `keyspace`, read from `system_schema.keyspaces`; `None` when it does not exist.
pub async fn read_replication(
    session: &Session,
    keyspace: &str,
) -> Result<Option<Replication>, ReadReplicationError> {
    // The schema tables are on every node: one answer suffices, whatever the sink's consistency.
    let mut query = scylla::statement::Statement::new(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
    );
    query.set_consistency(scylla::statement::Consistency::LocalOne);
    let rows = session
        .query_unpaged(query, (keyspace,))
        .await
        .map_err(Box::new)?
        .into_rows_result()
        .map_err(Box::new)?;
    let row = rows
        .maybe_first_row::<(BTreeMap<String, String>,)>()
        .map_err(Box::new)?;
    Ok(row.map(|(options,)| Replication::from_options(&options)))
}

/// Judges every keyspace a sink writes: `data_keyspaces` (its statements') at
/// `cassandra.consistency`, the committer's at the committer cluster's consistency and its serial
/// consistency. A keyspace that does not exist is left to the statements' PREPARE, which names it.
pub async fn verify(
    config: &SinkConfig,
    session: &Session,
    committer_session: &Session,
    data_keyspaces: &[&str],
) -> Result<Vec<Warning>, VerifyError> {
    let mut warnings = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for keyspace in data_keyspaces {
        if seen.contains(keyspace) {
            continue;
        }
        seen.push(keyspace);
        let usage = Use {
            what: "data writes",
            field: "cassandra.consistency",
            keyspace,
        };
        judge(session, &usage, &config.cassandra, &mut warnings).await?;
    }
    let (field, cluster) = match &config.committer.cassandra {
        Some(cluster) => ("committer.cassandra.consistency", cluster),
        None => ("cassandra.consistency", &config.cassandra),
    };
    let usage = Use {
        what: "the committer's commits and dead letters",
        field,
        keyspace: &config.committer.keyspace,
    };
    if let Some(replication) = judge(committer_session, &usage, cluster, &mut warnings).await? {
        check_serial(
            usage.keyspace,
            config.committer.serial_consistency,
            &replication,
            cluster.local_datacenter.as_deref(),
        )?;
    }
    warnings.dedup();
    Ok(warnings)
}

/// Judges one use of a keyspace; its replication, or `None` when the keyspace does not exist.
async fn judge(
    session: &Session,
    usage: &Use<'_>,
    cluster: &CassandraConfig,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Replication>, VerifyError> {
    let Some(replication) = read_replication(session, usage.keyspace).await? else {
        return Ok(None);
    };
    let local = cluster.local_datacenter.as_deref();
    warnings.extend(check(usage, cluster.consistency, &replication, local)?);
    Ok(Some(replication))
}

/// [`verify`] refused, or could not ask.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A consistency the replication makes unsafe or impossible.
    #[error(transparent)]
    Unsafe(#[from] DurabilityError),
    /// The replication could not be read.
    #[error(transparent)]
    Read(#[from] ReadReplicationError),
}

/// Reading a keyspace's replication failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadReplicationError {
    /// The query failed.
    #[error("reading system_schema.keyspaces: {0}")]
    Query(#[from] Box<scylla::errors::ExecutionError>),
    /// The answer was not rows.
    #[error("reading system_schema.keyspaces: {0}")]
    Rows(#[from] Box<scylla::errors::IntoRowsResultError>),
    /// A row did not have the expected columns.
    #[error("reading system_schema.keyspaces: {0}")]
    Row(#[from] Box<scylla::errors::MaybeFirstRowError>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_datacenter(pairs: &[(&str, u32)]) -> Replication {
        Replication::ByDatacenter(
            pairs
                .iter()
                .map(|(datacenter, copies)| ((*datacenter).to_owned(), *copies))
                .collect(),
        )
    }

    const DATA: Use<'static> = Use {
        what: "data writes",
        field: "cassandra.consistency",
        keyspace: "app",
    };

    #[test]
    fn replication_is_read_from_the_schema_options() {
        let options = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            Replication::from_options(&options(&[
                ("class", "org.apache.cassandra.locator.SimpleStrategy"),
                ("replication_factor", "3")
            ])),
            Replication::Simple(3)
        );
        assert_eq!(
            Replication::from_options(&options(&[
                (
                    "class",
                    "org.apache.cassandra.locator.NetworkTopologyStrategy"
                ),
                ("dc1", "3/1"),
                ("dc2", "1")
            ])),
            by_datacenter(&[("dc1", 3), ("dc2", 1)])
        );
        assert_eq!(
            Replication::from_options(&options(&[(
                "class",
                "org.apache.cassandra.locator.LocalStrategy"
            )])),
            Replication::Other("org.apache.cassandra.locator.LocalStrategy".into())
        );
    }

    #[test]
    fn the_default_survives_one_node_lost_on_three_copies() {
        for replication in [Replication::Simple(3), by_datacenter(&[("dc1", 3)])] {
            assert_eq!(
                check(&DATA, Consistency::LocalQuorum, &replication, Some("dc1")),
                Ok(None)
            );
        }
    }

    #[test]
    fn one_acknowledgement_of_several_copies_is_refused() {
        for consistency in [Consistency::One, Consistency::LocalOne] {
            let refused = check(&DATA, consistency, &Replication::Simple(3), None);
            assert!(
                matches!(
                    refused,
                    Err(DurabilityError::SingleAcknowledgement { copies: 3, .. })
                ),
                "{consistency:?}: {refused:?}"
            );
        }
        // LOCAL_QUORUM of a datacenter that keeps one copy, when another keeps more.
        let refused = check(
            &DATA,
            Consistency::LocalQuorum,
            &by_datacenter(&[("dc1", 1), ("dc2", 3)]),
            Some("dc1"),
        );
        assert!(matches!(
            refused,
            Err(DurabilityError::SingleAcknowledgement { .. })
        ));
        let message = refused
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("cassandra.consistency") && message.contains("keyspace app"),
            "{message}"
        );
    }

    #[test]
    fn a_single_copy_cluster_is_warned_about_not_refused() {
        for consistency in [Consistency::One, Consistency::LocalQuorum, Consistency::All] {
            assert_eq!(
                check(&DATA, consistency, &Replication::Simple(1), None),
                Ok(Some(Warning::SingleCopy {
                    keyspace: "app".into()
                }))
            );
        }
    }

    #[test]
    fn more_acknowledgements_than_copies_is_refused() {
        let cases = [
            (Consistency::Three, Replication::Simple(2), None),
            (
                Consistency::LocalQuorum,
                by_datacenter(&[("dc1", 3)]),
                Some("dc2"),
            ),
            (Consistency::Two, Replication::Simple(1), None),
        ];
        for (consistency, replication, local) in cases {
            let refused = check(&DATA, consistency, &replication, local);
            assert!(
                matches!(refused, Err(DurabilityError::Unreachable { .. })),
                "{consistency:?} {replication:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn quorums_count_every_datacenter_or_the_local_one() {
        let two_datacenters = by_datacenter(&[("dc1", 3), ("dc2", 1)]);
        for consistency in [
            Consistency::Quorum,
            Consistency::EachQuorum,
            Consistency::Two,
        ] {
            assert_eq!(
                check(&DATA, consistency, &two_datacenters, Some("dc1")),
                Ok(None),
                "{consistency:?}"
            );
        }
        // Without a local datacenter named, LOCAL_QUORUM is judged by the smallest datacenter.
        assert!(check(&DATA, Consistency::LocalQuorum, &two_datacenters, None).is_err());
        assert_eq!(
            check(
                &DATA,
                Consistency::LocalQuorum,
                &by_datacenter(&[("dc1", 3), ("dc2", 3)]),
                None
            ),
            Ok(None)
        );
    }

    #[test]
    fn the_serial_scope_must_hold_copies() {
        let remote_only = by_datacenter(&[("dc2", 3)]);
        assert!(matches!(
            check_serial(
                "sinks",
                SerialConsistency::LocalSerial,
                &remote_only,
                Some("dc1")
            ),
            Err(DurabilityError::NoSerialReplicas { .. })
        ));
        assert_eq!(
            check_serial(
                "sinks",
                SerialConsistency::Serial,
                &remote_only,
                Some("dc1")
            ),
            Ok(())
        );
        assert_eq!(
            check_serial(
                "sinks",
                SerialConsistency::LocalSerial,
                &Replication::Simple(3),
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn unknown_strategies_are_not_judged() {
        assert!(matches!(
            check(
                &DATA,
                Consistency::One,
                &Replication::Other("EverywhereStrategy".into()),
                None
            ),
            Ok(Some(Warning::Unjudged { .. }))
        ));
    }
}
